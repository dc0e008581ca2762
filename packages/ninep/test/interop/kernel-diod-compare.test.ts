// The Linux kernel's v9fs client (in a throwaway QEMU guest, see ../passthrough/vm/vm.ts) runs the
// same commands on a 9P2000.L mount of diod and of the passthrough, as the squashed user nobody
// (diod -S; our server attached as nobody), and must see the same exit statuses and outputs:
// modes and owners of new files, set-ID bits after writes, hard links, FIFOs, symbolic links,
// renames over directories, long names, a 300-entry directory, sparse files, statfs type...
//
// Two VM boots (about 30 s each under TCG on an idle machine): run only when asked for with
// NINEP_KERNEL_COMPARE=1, and when a test kernel and diod are installed.

import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { DIOD, diodUnavailable, freePort } from "../helpers/diod.js";
import { tempDir } from "../passthrough/helpers.js";
import { buildInitramfs, findVmKernel, runVm, type VmRun } from "../passthrough/vm/vm.js";

const INIT = fileURLToPath(new URL("kernel-compare-init.sh", import.meta.url));

function unavailable(): string | undefined {
  if (!process.env.NINEP_KERNEL_COMPARE) return "set NINEP_KERNEL_COMPARE=1 to run (two VM boots)";
  const k = findVmKernel();
  if (typeof k === "string") return k;
  return diodUnavailable();
}

const reason = unavailable();
if (reason) console.warn(`skipping the kernel comparison with diod: ${reason}`);

/** Waits until something accepts connections on 127.0.0.1:`port` (diod has started). */
async function listening(port: number, child: ChildProcess): Promise<void> {
  const net = await import("node:net");
  for (let i = 0; i < 400; i++) {
    if (child.exitCode !== null) throw new Error("diod exited");
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("diod did not start");
}

describe.skipIf(reason !== undefined)("Linux v9fs sees diod and the passthrough alike", () => {
  let tmp: ReturnType<typeof tempDir>;
  const runs: Record<string, VmRun> = {};

  beforeAll(async () => {
    const k = findVmKernel();
    if (typeof k === "string") throw new Error(k);
    tmp = tempDir("kernel-cmp-");
    // diod checks that the squashed user can reach the export.
    fs.chmodSync(tmp.dir, 0o755);
    const initramfs = await buildInitramfs(k, tmp.dir, INIT);
    for (const who of ["diod", "ours"]) {
      const exp = path.join(tmp.dir, `export-${who}`);
      fs.mkdirSync(exp);
      fs.chmodSync(exp, 0o777);
      let port: number;
      let stop: () => Promise<void>;
      if (who === "diod") {
        // Not through startDiod: the handshake must wait for the guest to boot (QEMU connects at once).
        port = await freePort();
        const child = spawn(
          DIOD,
          ["-f", "-n", "-S", "-c", "/dev/null", "-l", `127.0.0.1:${port}`, "-e", exp],
          {
            stdio: "ignore",
          },
        );
        await listening(port, child);
        stop = () =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGTERM");
          });
      } else {
        const server = new Server({ backend: passthrough(exp), handshakeTimeoutMs: 0 });
        const a = await server.listen("tcp!127.0.0.1!0");
        if (a.network !== "tcp") throw new Error("tcp expected");
        port = a.port;
        stop = () => server.close();
      }
      try {
        // The aname rides on the command line the VM helper builds from its "versions".
        runs[who] = await runVm(k, initramfs, port, ["9p2000.L", `aname=${exp}`], 600_000);
      } finally {
        await stop();
      }
    }
  }, 1_300_000);

  afterAll(() => tmp?.cleanup());

  it("both guests ran to the end, and every step gives the same status and output", () => {
    for (const who of ["diod", "ours"]) {
      if (!runs[who]?.done) console.error(runs[who]?.console.slice(-4000));
      expect(runs[who]?.done).toBe(true);
    }
    const show = (r: VmRun) => r.steps.map((s) => `${s.name} rc=${s.rc}\n${s.out}`);
    expect(runs.diod!.steps.length).toBeGreaterThan(40);
    expect(show(runs.ours!)).toEqual(show(runs.diod!));
    // A few that are the point of the comparison.
    const step = (name: string) => runs.ours!.steps.find((s) => s.name === `L/${name}`);
    expect(step("mount")?.rc).toBe(0);
    expect(step("stat-new")?.out).toBe("644 65534 65534 0 regular empty file 1\n");
    expect(step("after-truncate")?.out).toBe("755 3\n");
    expect(step("statfs")?.out).toBe("1021997 4096 255\n");
  });
});
