// The `state` file of a fixed cluster, byte for byte: two xcpufs nodes on loopback, one with a
// session open, one whose operator set its state, and one address where nothing listens. The
// fixtures carry the ports of the original capture; the nodes listen on free ports (a fixed port
// may be taken by another program or test at that moment) and those replace them in both files.

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { machine, platform, tmpdir } from "node:os";
import { join } from "node:path";
import { mount } from "@clustermatic/ninep/client";
import { OREAD, OWRITE } from "@clustermatic/ninep/codec";
import type { XcpufsHandle } from "@clustermatic/xcpufs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signChallenge } from "../src/auth.js";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { type AdminKeys, makeAdminKey, startNode } from "./helpers/cluster.js";
import { waitFor } from "./helpers/net.js";

const fixtures = join(import.meta.dirname, "fixtures");
const CAPTURE_PORTS = ["42135", "45111"] as const;
const supported = platform() === "linux" && machine() === "x86_64";
if (!supported)
  console.log(
    `golden state test skipped: the golden file is for /Linux/x86_64, this is ${platform()}/${machine()}`,
  );

describe.skipIf(!supported)("golden state table", () => {
  let dir: string;
  let keys: AdminKeys;
  const nodes: XcpufsHandle[] = [];
  let statfs: Statfs;
  const withOurPorts = (text: string) =>
    CAPTURE_PORTS.reduce((t, p, i) => t.replaceAll(`!${p}`, `!${nodes[i]!.port}`), text);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-golden-"));
    keys = await makeAdminKey(dir);
    nodes.push(await startNode(keys, dir), await startNode(keys, dir));
    const conf = join(dir, "golden.conf");
    await writeFile(conf, withOurPorts(await readFile(join(fixtures, "golden.conf"), "latin1")), "latin1");
    statfs = await startStatfs({
      configFile: conf,
      adminKey: keys.privateKey,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      // Seconds-long timeouts: the nodes answer from this process, which a busy machine slows down.
      pollOverrides: { intervalMs: 10_000, connectTimeoutMs: 5000, readTimeoutMs: 5000 },
    });
  });
  afterAll(async () => {
    await statfs?.close();
    for (const n of nodes) await n.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("matches the golden file", async () => {
    const auth = async (afid: {
      read(n: number): Promise<Buffer>;
      write(b: Uint8Array): Promise<number>;
    }) => {
      await afid.write(signChallenge(await afid.read(16), keys.privateKey));
    };
    const node1 = await mount(nodes[0]!.address, { uname: "xcpu-admin", n_uname: 65530, authenticate: auth });
    const clone = await node1.open("clone", OREAD);
    try {
      const admin = await mount(statfs.addresses[0]!, { uname: "xcpu-admin", authenticate: auth });
      const ctl = await admin.open("ctl", OWRITE);
      await waitFor(() => statfs.monitor.node("n2")!.polled.toString() === "up", 20_000, "n2 up");
      await ctl.write(0, "state n2 maintenance\npoll n1\n");
      await ctl.clunk();
      await admin.close();
      // The golden file has the arch the original xcpufs reports (`/Linux/x86_64`, see the wire
      // capture). statfs copies a node's arch verbatim, so if this xcpufs adds a newline the
      // expected table carries it too.
      const archFid = await node1.open("arch", OREAD);
      const arch = (await archFid.read(0, 64)).toString("latin1");
      await archFid.clunk();
      const golden = Buffer.from(
        withOurPorts(await readFile(join(fixtures, "state.golden"), "latin1")).replaceAll(
          "\t/Linux/x86_64\t",
          `\t${arch}\t`,
        ),
        "latin1",
      );
      await waitFor(() => statfs.monitor.table().equals(golden), 20_000, "the golden table");

      // The same bytes come out of the 9P file.
      const reader = await mount(statfs.addresses[0]!, { uname: "nobody" });
      const f = await reader.open("state", OREAD);
      const parts: Buffer[] = [];
      for (let off = 0; ; ) {
        const b = await f.read(off, 50); // small reads: the table is cut across messages
        if (b.length === 0) break;
        parts.push(Buffer.from(b));
        off += b.length;
      }
      await reader.close();
      expect(Buffer.concat(parts).toString("latin1")).toBe(golden.toString("latin1"));
    } finally {
      await clone.clunk();
      await node1.close();
    }
  });
});
