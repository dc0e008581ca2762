// The Linux kernel's v9fs client mounting the passthrough and using it with ordinary tools (ls,
// cat, cp, cmp, mkdir, ln -s, readlink, mv, >>, chmod, truncate, stat, touch -d, rm -r), in
// 9P2000.L, 9P2000.u and 9P2000, including a working directory renamed away under a shell and
// open files renamed or unlinked (the kernel keeps using its fids of them).
//
// Two ways, whichever is available (each skips with the reason printed otherwise):
// - host: as root, when the running kernel has 9p (/proc/filesystems); always unmounts;
// - VM: a throwaway QEMU guest (vm/vm.ts) booting an unpacked Debian kernel with a busybox
//   initramfs; the guest reaches only our server's port. Slow under TCG (~40 s), so one boot
//   mounts all three dialects in turn.
// Every command on the host runs asynchronously: the server lives in this process, so a
// synchronous call on the mount would deadlock it.

import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { tempDir } from "./helpers.js";
import { buildInitramfs, findVmKernel, runVm, type VmRun } from "./vm/vm.js";

const run = promisify(execFile);
const VERSIONS = ["9p2000.L", "9p2000.u", "9p2000"];

function hostUnavailable(): string | undefined {
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return "mounting needs root";
  let filesystems = "";
  try {
    filesystems = fs.readFileSync("/proc/filesystems", "utf8");
  } catch {
    return "no /proc/filesystems";
  }
  if (!/\b9p\b/.test(filesystems)) return "the running kernel has no 9p filesystem (modprobe 9p 9pnet_tcp)";
  return undefined;
}

const hostReason = hostUnavailable();
if (hostReason) console.warn(`skipping v9fs mount on the host kernel: ${hostReason}`);
const vmKernel = process.env.NINEP_SKIP_VM ? "NINEP_SKIP_VM is set" : findVmKernel();
if (typeof vmKernel === "string") console.warn(`skipping v9fs mount in a VM: ${vmKernel}`);

/** Seeds one subdirectory per dialect with the file the steps expect. */
function seed(exported: string): void {
  for (const v of VERSIONS) {
    fs.mkdirSync(path.join(exported, v));
    fs.writeFileSync(path.join(exported, v, "hello.txt"), "hello through the kernel\n");
  }
}

/** What every dialect's run must have left on the host, and printed in the guest. */
function checkHost(exported: string, v: string): void {
  const dir = path.join(exported, v);
  expect(fs.readdirSync(dir).sort()).toEqual(["hello.txt", "kept.txt"]);
  expect(fs.readFileSync(path.join(dir, "hello.txt"), "utf8")).toBe("hello");
  expect(fs.statSync(path.join(dir, "hello.txt")).mode & 0o777).toBe(0o600);
  expect(fs.readFileSync(path.join(dir, "kept.txt"), "utf8")).toBe("one\ntwo\n");
}

describe.skipIf(typeof vmKernel === "string")("Linux v9fs in a VM mounts the passthrough", () => {
  let tmp: ReturnType<typeof tempDir>;
  let server: Server;
  let exported: string;
  let result: VmRun;

  beforeAll(async () => {
    if (typeof vmKernel === "string") return;
    tmp = tempDir("pt-vm-");
    exported = path.join(tmp.dir, "export");
    fs.mkdirSync(exported);
    seed(exported);
    const initramfs = await buildInitramfs(vmKernel, tmp.dir);
    // QEMU's guestfwd connects to the server when QEMU starts; the guest sends Tversion only once
    // it has booted, which takes longer than the default handshake timeout (30 s) on a busy
    // machine. Closed early, that connection leaves the guest's mount hanging until the VM is killed.
    server = new Server({ backend: passthrough(exported), handshakeTimeoutMs: 0 });
    const a = await server.listen("tcp!127.0.0.1!0");
    if (a.network !== "tcp") throw new Error("tcp expected");
    // About 40 s under TCG on an idle machine; several times that while CI runs everything else.
    result = await runVm(vmKernel, initramfs, a.port, VERSIONS, 600_000);
  }, 660_000);

  afterAll(async () => {
    await server?.close();
    tmp?.cleanup();
  });

  it("the guest ran to the end", () => {
    if (!result.done) console.error(result.console.slice(-4000));
    expect(result.done).toBe(true);
  });

  for (const v of VERSIONS) {
    it(`${v}: every step succeeds and the host sees the result`, () => {
      const steps = new Map(
        result.steps.filter((s) => s.name.startsWith(`${v}/`)).map((s) => [s.name.slice(v.length + 1), s]),
      );
      // Plain 9P2000 has no symbolic links: the kernel itself refuses ln -s (EPERM).
      const links = v !== "9p2000";
      const mustFail = new Set(["missing", ...(links ? [] : ["ln", "readlink", "cat-link"])]);
      const wrong = [...steps.entries()].filter(([name, s]) =>
        mustFail.has(name) ? s.rc === 0 : s.rc !== 0,
      );
      expect(wrong.map(([, s]) => `${s.name} rc=${s.rc}: ${s.out}`)).toEqual([]);
      // 9P2000.L (Linux's default) also runs a workload of everyday tools (sed -i, tar, cpio, mv
      // over an open file, hard links, renames of held directories) and must print what it
      // printed on tmpfs; the other dialects lack what it needs (renames across directories, nlink)
      const workload = v === "9p2000.L";
      expect(steps.size).toBe(workload ? 27 : 26);
      if (workload) expect(steps.get("workload-as-tmpfs")?.out).toBe("");
      expect(steps.get("cat")?.out).toBe("hello through the kernel\n");
      if (links) {
        expect(steps.get("readlink")?.out).toBe("../hello.txt\n");
        expect(steps.get("cat-link")?.out).toBe("hello through the kernel\n");
        expect(steps.get("ls-a")?.out).toMatch(/link -> \.\.\/hello\.txt/);
      } else {
        expect(steps.get("ln")?.out).toMatch(/Operation not permitted/);
      }
      expect(steps.get("ls-a")?.out).toMatch(/1982256|moved\.bin/);
      expect(steps.get("append")?.out).toBe("one\ntwo\n");
      expect(steps.get("stat")?.out).toBe("600 5 regular file\n");
      expect(steps.get("mtime")?.out).toBe("1000000000\n");
      // the kernel's fids of a renamed directory and of renamed or unlinked open files still work
      expect(steps.get("cwd-renamed")?.out).toBe("x\nnew\n");
      expect(steps.get("open-renamed")?.out).toBe("3\n600\n");
      expect(steps.get("open-unlinked")?.out).toBe("3\nww\n");
      expect(steps.get("ls-after")?.out).toBe("hello.txt\nkept.txt\n");
      expect(steps.get("missing")?.out).toMatch(/No such file or directory/);
      checkHost(exported, v);
    });
  }
});

describe.skipIf(hostReason !== undefined)("Linux v9fs on this host mounts the passthrough", () => {
  let tmp: ReturnType<typeof tempDir>;
  let server: Server;
  let port: number;
  let exported: string;

  beforeAll(async () => {
    tmp = tempDir("pt-v9fs-");
    exported = path.join(tmp.dir, "export");
    fs.mkdirSync(exported);
    seed(exported);
    server = new Server({ backend: passthrough(exported) });
    const a = await server.listen("tcp!127.0.0.1!0");
    if (a.network !== "tcp") throw new Error("tcp expected");
    port = a.port;
  });

  afterAll(async () => {
    await server?.close();
    tmp?.cleanup();
  });

  for (const v of VERSIONS) {
    it(`${v}: ls, cat, cp, mkdir, ln -s, mv, chmod, truncate, touch, rm`, async () => {
      const mnt = path.join(tmp.dir, `mnt-${v}`);
      fs.mkdirSync(mnt);
      const opts = `trans=tcp,port=${port},version=${v},msize=262168,uname=root,access=any,cache=none`;
      await run("mount", ["-t", "9p", "-o", opts, "127.0.0.1", mnt]);
      try {
        const D = path.join(mnt, v);
        const sh = (cmd: string) => run("sh", ["-c", cmd], { env: { ...process.env, D } });
        expect((await sh('ls -1 "$D"')).stdout.split("\n")).toContain("hello.txt");
        expect((await sh('cat "$D/hello.txt"')).stdout).toBe("hello through the kernel\n");
        await sh('cp /bin/sh "$D/copy.bin" && cmp /bin/sh "$D/copy.bin"');
        await sh('mkdir -p "$D/a/b"');
        if (v !== "9p2000") {
          await sh('ln -s ../hello.txt "$D/a/link"');
          expect((await sh('readlink "$D/a/link"')).stdout).toBe("../hello.txt\n");
          expect((await sh('cat "$D/a/link"')).stdout).toBe("hello through the kernel\n");
        }
        await sh('mv "$D/copy.bin" "$D/a/moved.bin"');
        expect(
          (await sh('echo one >> "$D/a/app.txt" && echo two >> "$D/a/app.txt" && cat "$D/a/app.txt"')).stdout,
        ).toBe("one\ntwo\n");
        await sh('chmod 600 "$D/hello.txt" && truncate -s 5 "$D/hello.txt"');
        await sh('touch -d "2001-09-09 01:46:40" "$D/a/app.txt" && cp "$D/a/app.txt" "$D/kept.txt"');
        expect((await sh('stat -c %Y "$D/kept.txt"')).stdout).not.toBe("");
        expect((await sh('stat -c %Y "$D/a/app.txt"')).stdout).toBe("1000000000\n");
        await sh('rm -r "$D/a"');
        await expect(sh('cat "$D/no-such-file"')).rejects.toThrow(/No such file/);
      } finally {
        await run("umount", [mnt]).catch(() => run("umount", ["-l", mnt]).catch(() => {}));
      }
      checkHost(exported, v);
    });
  }
});
