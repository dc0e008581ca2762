// The Linux kernel's v9fs client (9P2000.u) mounting xcpufs in a throwaway QEMU guest, and an
// operator driving it with busybox tools only: cat arch, ls, a session held by an open clone
// descriptor, argv/env written with shell redirections, `exec` through ctl, a script copied into
// fs/ with cp, one copied onto the legacy `exec` file (the papers' way), stdin fed by echo and
// closed through ctl, procs, wipe (guest script: vm/guest-xcpufs.sh). The programs run on this
// host: xcpufs runs in this process.
//
// Uses the VM of the ninep package's tests (a Debian kernel unpacked by
// packages/ninep/scripts/fetch-test-kernel.sh); skips with the reason printed where it cannot run.
// Also documents what cache=loose cannot do (synthetic files report length 0).
// One boot for everything: ~40 s under TCG on an idle machine, several times that under load.

import * as fs from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildInitramfs,
  findVmKernel,
  runVm,
  stepOf,
  type VmRun,
} from "../../ninep/test/passthrough/vm/vm.js";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { liveWithMarker, sessionDirsIn, until } from "./helpers.js";

const vmKernel = process.env.NINEP_SKIP_VM ? "NINEP_SKIP_VM is set" : findVmKernel();
if (typeof vmKernel === "string") console.warn(`skipping xcpufs under Linux v9fs in a VM: ${vmKernel}`);

// Debugging: XCPUFS_VM_TRACE=FILE appends the server's 9P trace, XCPUFS_VM_CONSOLE=FILE keeps the
// guest's console.
const traceFile = process.env.XCPUFS_VM_TRACE;
const consoleFile = process.env.XCPUFS_VM_CONSOLE;
const GUEST = fileURLToPath(new URL("vm/guest-xcpufs.sh", import.meta.url));

describe.skipIf(typeof vmKernel === "string")("Linux v9fs (9P2000.u) in a VM drives xcpufs", () => {
  let work: string;
  let nodeTmp: string;
  let h: XcpufsHandle | undefined;
  let result: VmRun;
  const step = (name: string) => stepOf(result, name);

  beforeAll(async () => {
    if (typeof vmKernel === "string") return;
    work = fs.mkdtempSync(path.join(tmpdir(), "xcpufs-vm-"));
    nodeTmp = path.join(work, "node");
    fs.mkdirSync(nodeTmp);
    const initramfs = await buildInitramfs(vmKernel, work, GUEST);
    // QEMU's guestfwd connects when QEMU starts; the guest's kernel sends Tversion only once it
    // has booted: no handshake limit, or a slow boot would find the connection closed.
    h = await startXcpufs({
      port: 0,
      noAuth: true,
      tmpdir: nodeTmp,
      env: { PATH: "/usr/bin:/bin" },
      handshakeTimeoutMs: 0,
      trace: traceFile ? (l) => fs.appendFileSync(traceFile, `${l}\n`) : undefined,
    });
    result = await runVm(vmKernel, initramfs, h.port, ["9p2000.u"], 600_000);
    if (consoleFile) fs.writeFileSync(consoleFile, result.console);
  }, 660_000);

  afterAll(async () => {
    await h?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it("the guest ran every step to the end", () => {
    if (!result.done) console.error(result.console.slice(-4000));
    expect(result.done).toBe(true);
    const failed = result.steps.filter((s) => s.rc !== 0 && !s.name.startsWith("clone-"));
    expect(failed.map((s) => `${s.name} rc=${s.rc}: ${s.out}`)).toEqual([]);
  });

  it("mount, cat arch, ls", () => {
    expect(step("arch").out).toBe(`${h?.xcpufs.arch.toString().trim()}\n`);
    const root = step("ls").out.split("\n").filter(Boolean);
    for (const f of ["arch", "clone", "ctl", "env", "procs", "sysinfo"]) expect(root).toContain(f);
  });

  it("a session opened through clone runs /bin/echo; stdout and wait", () => {
    const sid = step("clone-3").out.trim();
    expect(sid).toMatch(/^\d+$/);
    expect(step("ls-session").out.split("\n").filter(Boolean)).toEqual(
      expect.arrayContaining(["argv", "ctl", "env", "fs", "stdin", "stdout", "stderr", "wait"]),
    );
    expect(step("argv").out).toBe("echo hello from xcpufs\n");
    expect(step("env").out).toBe("PATH=/usr/bin:/bin\nGREETING=hi\n");
    expect(step("stdout").out).toBe("hello from xcpufs\n");
    expect(step("wait").out).toBe("0\n");
  });

  it("a script copied into fs/ with cp runs from there", () => {
    const sid = step("clone-4").out.trim();
    expect(step("cp").out).toMatch(/-rwx.* run\.sh/);
    expect(step("script-stdout").out).toBe(`script first in session ${sid}\n`);
    expect(step("script-wait").out).toBe("768\n");
  });

  it("a script copied onto the legacy exec file with cp runs by a bare exec", () => {
    const sid = step("clone-6").out.trim();
    expect(step("legacy-stdout").out).toBe(`script legacy in session ${sid}\n`);
    expect(step("legacy-wait").out).toBe("768\n");
  });

  it("stdin written with echo, closed through ctl; procs lists the running program", () => {
    const sid = step("clone-5").out.trim();
    const line =
      step("procs")
        .out.split("\n")
        .find((l) => l.includes("kmount-marker")) ?? "";
    expect(line).toMatch(new RegExp(` ${sid} \\S+ \\) $`));
    expect(step("stdin-stdout").out).toBe("line one\nline two\nend\n");
    expect(step("stdin-wait").out).toBe("0\n");
  });

  it("wipe removes the session; closing the descriptors ends the others", () => {
    const [a, b, c] = ["clone-3", "clone-4", "clone-5"].map((n) => step(n).out.trim());
    const listed = (name: string) => step(name).out.split("\n").filter(Boolean);
    expect(listed("ls-wiped")).not.toContain(a);
    const d = step("clone-6").out.trim();
    expect(listed("ls-wiped")).toEqual(expect.arrayContaining([b, c, d]));
    expect(listed("ls-end")).not.toContain(b);
    expect(listed("ls-end")).not.toContain(c);
    expect(listed("ls-end")).not.toContain(d);
  });

  // Not ours to fix: with cache=loose the kernel reads through the page cache up to the size stat
  // reported, and a synthetic file made at open (sysinfo, procs, session streams) reports 0, as
  // the original's do. Files of known size (arch) read fine; O_DIRECT reads bypass the limit.
  it("cache=loose: files reporting length 0 read as empty (documented kernel behaviour)", () => {
    expect(step("loose-arch").out).toBe(`${h?.xcpufs.arch.toString().trim()}\n`);
    expect(step("loose-sysinfo").out).toBe("0\n");
    expect(Number(step("loose-sysinfo-dd").out)).toBeGreaterThan(0);
  });

  it("the host is left clean: no session, no session directory, no process", async () => {
    await until(() => h?.xcpufs.sessions.size === 0, 60_000);
    await until(() => sessionDirsIn(nodeTmp).length === 0, 60_000);
    expect(liveWithMarker("kmount-marker")).toEqual([]);
  });
});
