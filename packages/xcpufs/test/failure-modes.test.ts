// What a node does when its own resources fail: no file descriptors left, its session root
// removed from under it. Real servers (a child process under prlimit where the limit matters).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Fid } from "@clustermatic/ninep/client";
import { mount } from "@clustermatic/ninep/client";
import { OREAD, OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, describe, expect, it } from "vitest";
import { findPerl } from "../src/fork-helper.js";
import { startXcpufs } from "../src/index.js";
import {
  listeningOn,
  openJob,
  PKG,
  readAll,
  run,
  STARTERS,
  sessionDirsIn,
  until,
  write,
  xcpufsArgs,
} from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "xcpufs-failure-"));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

const uid = process.getuid?.() ?? 0;
const isRoot = uid === 0;
const prlimit = ["/usr/bin/prlimit", "/bin/prlimit"].find((p) => existsSync(p));
const anon = (address: string) =>
  mount(address, { uname: "t", n_uname: uid, msize: 65536, authenticate: async () => {} });

/** xcpufs from source as a child process with at most `nofile` descriptors. */
async function startLimited(nofile: number, tmp: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(
    prlimit!,
    [
      `--nofile=${nofile}`,
      process.execPath,
      ...xcpufsArgs("--no-auth", "--listen", "127.0.0.1", "-p", "0", "-t", tmp, "--state-dir", tmp),
    ],
    { cwd: PKG, stdio: ["ignore", "pipe", "pipe"] },
  );
  children.push(child);
  child.stdout?.resume();
  return { child, address: (await listeningOn(child)).address };
}

/** Waits until process `pid` has had the same number of open descriptors for a few polls. */
async function settled(pid: number): Promise<void> {
  let last = -1;
  let same = 0;
  await until(() => {
    const n = readdirSync(`/proc/${pid}/fd`).length;
    same = n === last ? same + 1 : 0;
    last = n;
    return same >= 5;
  });
}

describe.skipIf(!prlimit || !findPerl())("a node out of file descriptors", () => {
  it("fails the exec with EMFILE, keeps no descriptor of the failed start, and recovers", async () => {
    const tmp = mkdtempSync(join(work, "nofile-"));
    const { child, address } = await startLimited(128, tmp);
    const fs = await anon(address);
    try {
      expect((await run(fs, "/bin/echo", "echo warm")).out).toBe("warm\n");
      // The warm-up's pipe ends close as their streams end: wait until the server's descriptors
      // stop changing, so that the count taken below stays what it is.
      await settled(child.pid!);
      const job = await openJob(fs);
      await write(fs, `${job.sid}/argv`, "sh -c 'echo never'");
      await (await fs.create(`${job.sid}/fs/filler`, 0o644, OWRITE)).clunk();
      // Each open fid of a file in fs/ holds one of the server's descriptors: take them all.
      const held: Fid[] = [];
      for (;;) {
        try {
          held.push(await fs.open(`${job.sid}/fs/filler`, OREAD));
        } catch (err) {
          expect(String(err)).toMatch(/too many open files|EMFILE/i);
          break;
        }
        if (held.length > 256) throw new Error("the descriptor limit did not apply");
      }
      // Two free: the fork helper's start gets two of the program's three pipe ends, not the third.
      await held.pop()!.clunk();
      await held.pop()!.clunk();
      // With a working directory: as root, spawn() then runs a command that enters it as the
      // user; the message names the program asked for all the same.
      await job.ctl.write(0, "exec /bin/sh /\n");
      const [out, err, status] = await Promise.all([
        readAll(job.stdout),
        readAll(job.stderr),
        readAll(job.wait),
      ]);
      expect(out.toString()).toBe("");
      expect(err.toString()).toBe("/bin/sh: Too many open files\n");
      // The exit status is the errno (EMFILE = 24), as for any program that could not start.
      expect(Number(status.toString()) >> 8).toBe(24);
      await job.close();
      // The two descriptors are free again: nothing of the failed start kept them.
      held.push(await fs.open(`${job.sid}/fs/filler`, OREAD));
      held.push(await fs.open(`${job.sid}/fs/filler`, OREAD));
      await Promise.all(held.splice(0).map((f) => f.clunk()));
      expect((await run(fs, "/bin/echo", "echo recovered")).out).toBe("recovered\n");
      expect(child.exitCode).toBeNull();
    } finally {
      await fs.close();
      child.kill("SIGTERM");
    }
  }, 120_000);
});

describe.skipIf(!isRoot)("a node whose session root is removed", () => {
  it("makes a new one and goes on creating sessions", async () => {
    const tmp = mkdtempSync(join(work, "root-"));
    const node = await startXcpufs({ listen: "127.0.0.1", port: 0, tmpdir: tmp, noAuth: true });
    const fs = await anon(node.address);
    try {
      expect((await run(fs, "/bin/echo", "echo before")).out).toBe("before\n");
      const roots = readdirSync(tmp).filter((n) => n.startsWith("xcpufs-"));
      expect(roots).toHaveLength(1);
      rmSync(join(tmp, roots[0]!), { recursive: true, force: true });
      const r = await run(fs, "/bin/sh", "sh -c 'echo after; echo $XCPUPATH'");
      const [text, path] = r.out.trim().split("\n");
      expect(text).toBe("after");
      const now = readdirSync(tmp).filter((n) => n.startsWith("xcpufs-"));
      expect(now).toHaveLength(1);
      expect(now[0]).not.toBe(roots[0]);
      expect(path!.startsWith(join(tmp, now[0]!))).toBe(true);
    } finally {
      await fs.close();
      await node.close();
    }
    expect(sessionDirsIn(tmp)).toEqual([]);
    // close() removes the new root as it removed the first.
    expect(readdirSync(tmp)).toEqual([]);
  });
});

describe("a node that cannot start", () => {
  it.skipIf(!isRoot)("leaves no session root behind when its port is taken", async () => {
    const tmp = mkdtempSync(join(work, "busy-"));
    const first = await startXcpufs({ listen: "127.0.0.1", port: 0, tmpdir: tmp, noAuth: true });
    try {
      const before = readdirSync(tmp);
      expect(before).toHaveLength(1);
      await expect(
        startXcpufs({ listen: "127.0.0.1", port: first.port, tmpdir: tmp, noAuth: true }),
      ).rejects.toThrow(/EADDRINUSE|in use/i);
      expect(readdirSync(tmp)).toEqual(before);
    } finally {
      await first.close();
    }
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("names a user pool file it cannot read", async () => {
    const state = mkdtempSync(join(work, "state-"));
    const tmp = mkdtempSync(join(work, "pool-"));
    const file = join(state, "users.json");
    for (const text of ['{"users": [garbage', '{"version":1,"groups":5,"users":[]}']) {
      writeFileSync(file, text);
      await expect(
        startXcpufs({ listen: "127.0.0.1", port: 0, tmpdir: tmp, noAuth: true, stateDir: state }),
      ).rejects.toThrow(`${file}: broken user pool file: `);
    }
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("names a state directory it cannot use", async () => {
    const tmp = mkdtempSync(join(work, "pool-"));
    const file = join(work, "state-is-a-file");
    writeFileSync(file, "");
    for (const [stateDir, why] of [
      [file, "not a directory"],
      [join(file, "below"), "not a directory"],
    ]) {
      await expect(
        startXcpufs({ listen: "127.0.0.1", port: 0, tmpdir: tmp, noAuth: true, stateDir }),
      ).rejects.toThrow(`cannot use state directory ${stateDir}: ${why}`);
    }
    expect(readdirSync(tmp)).toEqual([]);
  });
});

describe.skipIf(!isRoot)("a node started after one that was killed", () => {
  it("removes the directory the dead server left, and only that", async () => {
    const ns = /^pid:\[(\d+)\]$/.exec(readlinkSync("/proc/self/ns/pid"))?.[1];
    expect(ns).toBeDefined();
    const tmp = mkdtempSync(join(work, "stale-"));
    const gone = spawnSync("/bin/true").pid!;
    const alive = spawn("/bin/sleep", ["600"]);
    children.push(alive);
    const outside = mkdtempSync(join(work, "outside-"));
    writeFileSync(join(outside, "canary"), "keep");
    const make = (name: string) => {
      const d = join(tmp, name);
      mkdirSync(join(d, "xcpu-abcdef"), { recursive: true });
      writeFileSync(join(d, "xcpu-abcdef", "output"), "left behind");
      // A program of the dead session may have left a link out: it must not be followed.
      symlinkSync(outside, join(d, "xcpu-abcdef", "link"));
      return d;
    };
    const stale = make(`xcpufs-${ns}-${gone}-Abc123`);
    // A server run with -r marks its root to be kept: its server is gone, but it stays.
    const retained = make(`xcpufs-${ns}-${gone}-Mno345`);
    writeFileSync(join(retained, ".retained"), "");
    const kept = [
      make(`xcpufs-${ns}-${alive.pid}-Def456`), // its server still runs
      make(`xcpufs-1-${gone}-Ghi789`), // another pid namespace's
      make("xcpufs-Jkl012"), // not named by its pid
      retained,
    ];
    const node = await startXcpufs({ listen: "127.0.0.1", port: 0, tmpdir: tmp, noAuth: true });
    try {
      await until(() => !existsSync(stale));
      for (const d of kept) expect(existsSync(join(d, "xcpu-abcdef", "output"))).toBe(true);
      expect(existsSync(join(outside, "canary"))).toBe(true);
    } finally {
      await node.close();
      alive.kill("SIGKILL");
    }
  });
});

describe("a script whose interpreter is missing", () => {
  for (const { label, opts } of STARTERS) {
    for (const cwd of ["", " /"]) {
      it(`is reported with the interpreter's name (${label}${cwd ? ", a working directory" : ""})`, async () => {
        const tmp = mkdtempSync(join(work, "interp-"));
        const node = await startXcpufs({
          listen: "127.0.0.1",
          port: 0,
          tmpdir: tmp,
          noAuth: true,
          ...opts,
        });
        const fs = await anon(node.address);
        try {
          const job = await openJob(fs);
          const f = await fs.create(`${job.sid}/fs/script`, 0o755, OWRITE);
          await f.write(0, "#!/no-such-dir-for-xcpufs/interp -x\necho never\n");
          await f.clunk();
          await write(fs, `${job.sid}/argv`, "script");
          await job.ctl.write(0, `exec script${cwd}\n`);
          const [out, err, status] = await Promise.all([
            readAll(job.stdout),
            readAll(job.stderr),
            readAll(job.wait),
          ]);
          expect(out.toString()).toBe("");
          expect(err.toString()).toMatch(
            /^\/\S+\/script: No such file or directory \(interpreter \/no-such-dir-for-xcpufs\/interp not found\)\n$/,
          );
          expect(Number(status.toString()) >> 8).toBe(2);
          await job.close();
        } finally {
          await fs.close();
          await node.close();
        }
      });
    }
  }
});
