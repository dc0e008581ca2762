// The Linux v9fs client mounting the passthrough over TCP loopback (9P2000.L, then 9P2000.u) and
// using it with ordinary tools: ls, cat, cp, mkdir, ln -s, mv, rm. Needs root and a kernel with 9p
// (see /proc/filesystems); otherwise it is skipped with the reason printed. Always unmounts.
// Every command runs asynchronously: the server lives in this process, so a synchronous call on
// the mount would deadlock it.

import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { tempDir } from "./helpers.js";

const run = promisify(execFile);

function unavailable(): string | undefined {
  if (process.platform !== "linux") return "not Linux";
  if (process.getuid?.() !== 0) return "mounting needs root";
  let filesystems = "";
  try {
    filesystems = fs.readFileSync("/proc/filesystems", "utf8");
  } catch {
    return "no /proc/filesystems";
  }
  if (!/\b9p\b/.test(filesystems)) return "the kernel has no 9p filesystem (modprobe 9p 9pnet_tcp)";
  return undefined;
}

const reason = unavailable();
if (reason) console.warn(`skipping v9fs kernel mount test: ${reason}`);

for (const version of ["9p2000.L", "9p2000.u"]) {
  describe.skipIf(reason !== undefined)(`Linux v9fs mounts the passthrough (${version})`, () => {
    let tmp: ReturnType<typeof tempDir>;
    let server: Server;
    let mnt: string;
    let exported: string;
    let mounted = false;

    beforeAll(async () => {
      tmp = tempDir("pt-v9fs-");
      exported = path.join(tmp.dir, "export");
      mnt = path.join(tmp.dir, "mnt");
      fs.mkdirSync(exported);
      fs.mkdirSync(mnt);
      fs.writeFileSync(path.join(exported, "hello.txt"), "hello through the kernel\n");
      server = new Server({ backend: passthrough(exported) });
      const a = await server.listen("tcp!127.0.0.1!0");
      if (a.network !== "tcp") throw new Error("tcp");
      await run("mount", [
        "-t",
        "9p",
        "-o",
        `trans=tcp,port=${a.port},version=${version},msize=262168,uname=root,access=any,cache=none`,
        "127.0.0.1",
        mnt,
      ]);
      mounted = true;
    });

    afterAll(async () => {
      if (mounted) {
        await run("umount", [mnt]).catch(() => run("umount", ["-l", mnt]).catch(() => {}));
      }
      await server?.close();
      tmp?.cleanup();
    });

    it("ls, cat, cp, mkdir, ln -s, mv, rm", async () => {
      expect((await run("ls", ["-1", mnt])).stdout.split("\n")).toContain("hello.txt");
      expect((await run("cat", [path.join(mnt, "hello.txt")])).stdout).toBe("hello through the kernel\n");
      const src = path.join(tmp.dir, "payload.bin");
      const payload = Buffer.alloc(3 * 1024 * 1024 + 123, 7);
      fs.writeFileSync(src, payload);
      await run("cp", [src, path.join(mnt, "copy.bin")]);
      expect(fs.readFileSync(path.join(exported, "copy.bin")).equals(payload)).toBe(true);
      await run("cmp", [src, path.join(mnt, "copy.bin")]);
      await run("mkdir", ["-p", path.join(mnt, "a", "b")]);
      expect(fs.statSync(path.join(exported, "a", "b")).isDirectory()).toBe(true);
      await run("ln", ["-s", "../hello.txt", path.join(mnt, "a", "link")]);
      expect(fs.readlinkSync(path.join(exported, "a", "link"))).toBe("../hello.txt");
      expect((await run("cat", [path.join(mnt, "a", "link")])).stdout).toBe("hello through the kernel\n");
      await run("mv", [path.join(mnt, "copy.bin"), path.join(mnt, "a", "moved.bin")]);
      expect(fs.existsSync(path.join(exported, "a", "moved.bin"))).toBe(true);
      const long = (await run("ls", ["-la", path.join(mnt, "a")])).stdout;
      expect(long).toMatch(/moved\.bin/);
      expect(long).toMatch(/link -> \.\.\/hello\.txt/);
      await run("rm", ["-r", path.join(mnt, "a")]);
      expect(fs.existsSync(path.join(exported, "a"))).toBe(false);
    });
  });
}
