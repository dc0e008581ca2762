// One xcpufs node reached through a relay that can hold its answers back, watched by a statfs
// that polls it as n1 (ctl open to any user): for tests of a node that is late or silent.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startXcpufs, type XcpufsHandle } from "@clustermatic/xcpufs";
import type { PollSettings } from "../../src/config.js";
import { type Statfs, startStatfs } from "../../src/daemon.js";
import { type HoldingRelay, holdingRelay } from "./net.js";

export interface RelayedNode {
  node: XcpufsHandle;
  relay: HoldingRelay;
  statfs: Statfs;
  close(): Promise<void>;
}

export async function relayedNode(prefix: string, poll: Partial<PollSettings>): Promise<RelayedNode> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const node = await startXcpufs({ listen: "tcp!127.0.0.1!0", noAuth: true, tmpdir: dir });
  const relay = await holdingRelay(Number(node.address.split("!")[2]));
  const conf = join(dir, "statfs.conf");
  await writeFile(conf, `n1=tcp!127.0.0.1!${relay.port}\n`);
  const statfs = await startStatfs({
    configFile: conf,
    listen: ["tcp!127.0.0.1!0"],
    http: null,
    ctlWithoutAuth: true,
    pollOverrides: poll,
  });
  return {
    node,
    relay,
    statfs,
    async close() {
      await statfs.close();
      relay.release();
      await relay.close();
      await node.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
