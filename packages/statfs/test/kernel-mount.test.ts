// The Linux kernel's v9fs client mounting statfs in a throwaway QEMU guest, where the tools look
// for it (/mnt/statfs): the `state` table and the per-node files read with cat, and an admin hold
// set and lifted with `echo … > ctl` (a truncating open, then a wstat of length and times, then
// the write), in 9P2000.u and with the kernel's default options (9P2000.L asked for). The guest
// cannot authenticate, so this statfs lets unauthenticated clients write ctl files.
//
// Uses the VM of the ninep package's tests (a Debian kernel unpacked by
// packages/ninep/scripts/fetch-test-kernel.sh); skips with the reason printed where it cannot run.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { XcpufsHandle } from "@clustermatic/xcpufs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildInitramfs,
  findVmKernel,
  runVm,
  stepOf,
  type VmRun,
} from "../../ninep/test/passthrough/vm/vm.js";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { statusOf } from "../src/monitor.js";
import { type AdminKeys, makeAdminKey, startNode } from "./helpers/cluster.js";
import { deadPort, waitFor } from "./helpers/net.js";

const vmKernel = process.env.NINEP_SKIP_VM ? "NINEP_SKIP_VM is set" : findVmKernel();
if (typeof vmKernel === "string") console.warn(`skipping statfs under Linux v9fs in a VM: ${vmKernel}`);
const GUEST = fileURLToPath(new URL("vm/guest-statfs.sh", import.meta.url));

describe.skipIf(typeof vmKernel === "string")("Linux v9fs in a VM reads and drives statfs", () => {
  let dir: string;
  let keys: AdminKeys;
  let node: XcpufsHandle | undefined;
  let statfs: Statfs | undefined;
  let result: VmRun;
  const step = (name: string) => stepOf(result, name);

  beforeAll(async () => {
    if (typeof vmKernel === "string") return;
    dir = await mkdtemp(join(tmpdir(), "statfs-vm-"));
    keys = await makeAdminKey(dir);
    node = await startNode(keys, dir);
    const conf = join(dir, "statfs.conf");
    await writeFile(conf, `up1=tcp!127.0.0.1!${node.port}\ndead=tcp!127.0.0.1!${await deadPort()}\n`);
    // QEMU's guestfwd connects when QEMU starts; the guest's kernel sends Tversion only once it
    // has booted: no handshake limit, or a slow boot would find the connection closed.
    statfs = await startStatfs({
      configFile: conf,
      adminKey: keys.privateKey,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      ctlWithoutAuth: true,
      handshakeTimeoutMs: 0,
      pollOverrides: { intervalMs: 1000 },
    });
    const monitor = statfs.monitor;
    await waitFor(
      () =>
        statusOf(monitor.node("up1")!).toString() === "up" &&
        statusOf(monitor.node("dead")!).toString() !== "down(initializing)",
      30_000,
      "both nodes polled",
    );
    const initramfs = await buildInitramfs(vmKernel, dir, GUEST);
    const port = Number(statfs.addresses[0]!.split("!").pop());
    result = await runVm(vmKernel, initramfs, port, ["9p2000.u"], 600_000);
  }, 660_000);

  afterAll(async () => {
    await statfs?.close();
    await node?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the guest ran every step to the end", () => {
    if (!result.done) console.error(result.console.slice(-4000));
    expect(result.done).toBe(true);
    const failed = result.steps.filter((s) => s.rc !== 0 && !["bad-command", "write-state"].includes(s.name));
    expect(failed.map((s) => `${s.name} rc=${s.rc}: ${s.out}`)).toEqual([]);
  });

  it("state and the per-node files read as the table says", () => {
    expect(step("ls").out.split("\n").filter(Boolean)).toEqual(["ctl", "json", "nodes", "state"]);
    const rows = step("state")
      .out.split("\n")
      .filter(Boolean)
      .map((l) => l.split("\t"));
    expect(rows.map((r) => [r[0], r[1], r[3]])).toEqual([
      ["up1", `tcp!127.0.0.1!${node?.port}`, "up"],
      ["dead", expect.stringMatching(/^tcp!127\.0\.0\.1!\d+$/), expect.stringMatching(/^down\(/)],
    ]);
    expect(step("nodes").out).toBe("dead\nup1\n");
    expect(step("status").out).toMatch(/^up\ndown\(.+\)\n$/);
    expect(step("state-default").out).toBe(step("state").out);
  });

  it("echo down/up > ctl holds and releases a node; other writes are refused", () => {
    expect(step("hold").out).toBe("down(maintenance)\n");
    expect(step("release").out).toBe("up\n");
    expect(step("bad-command").rc).not.toBe(0);
    expect(step("bad-command").out).toMatch(/write error/);
    expect(step("write-state").rc).not.toBe(0);
  });
});
