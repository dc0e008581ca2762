// Cleanup is total: programs that leave their session's process group (setsid, a daemon's double
// fork) end with their session all the same, as do those of a server that was killed; a session
// directory a program made hard to remove is removed. Real servers, real processes.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Fsys, mount } from "@clustermatic/ninep/client";
import { OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, describe, expect, it } from "vitest";
import { endMarked, environMarked, pidFloor, processAlive } from "../src/escapees.js";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import {
  listeningOn,
  liveWithMarker,
  openJob,
  PKG,
  readAll,
  STARTERS,
  sessionDirsIn,
  stopChild,
  until,
  write,
  xcpufsArgs,
} from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "xcpufs-escapees-"));
chmodSync(work, 0o755);
const children: ChildProcess[] = [];
const marks: string[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  // Whatever a failed test left running (again while a loop it left may have forked more).
  for (let round = 0; round < 10; round++) {
    const left = marks.flatMap((m) => liveWithMarker(m));
    if (left.length === 0) break;
    for (const pid of left) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
  }
  rmSync(work, { recursive: true, force: true });
});

const uid = process.getuid?.() ?? 0;
const isRoot = uid === 0;

/**
 * Why xcpufs cannot be started as nobody from this checkout (a directory on its path that only
 * root may enter, as a temp directory made by mktemp is), or "" when it can.
 */
function nobodyCannotRun(): string {
  if (!isRoot) return "not root";
  const r = spawnSync(process.execPath, xcpufsArgs("--version"), {
    cwd: PKG,
    uid: NOBODY,
    gid: NOBODY,
    encoding: "utf8",
    timeout: 30_000,
  });
  return r.status === 0
    ? ""
    : `xcpufs cannot run as uid ${NOBODY} from ${PKG}: ${(r.stderr ?? "").split("\n")[0]}`;
}
const anon = (address: string) =>
  mount(address, { uname: "t", n_uname: uid, msize: 65536, authenticate: async () => {} });

/** A number of seconds no other process's command line holds: it finds the process. */
function mark(): string {
  const m = `7${String(Math.floor(Math.random() * 1e8)).padStart(8, "0")}`;
  marks.push(m);
  return m;
}

/** `sleep <m>` as a shell command whose own text does not hold `m` (only the sleep's does). */
const sleep = (m: string) => `sleep "${m.slice(0, 4)}""${m.slice(4)}"`;

/** Session id of the process `pid`. */
function sessionOf(pid: number): number {
  const st = readFileSync(`/proc/${pid}/stat`, "latin1");
  return Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[3]);
}

/**
 * Starts `sh -c '<script>'` in a new session of `fs` and waits until the process `m` runs outside
 * the program's process group and session (it escaped). The job's files stay open.
 */
async function startEscapee(fs: Fsys, script: string, m: string) {
  const job = await openJob(fs);
  await write(fs, `${job.sid}/argv`, `sh -c '${script}'`);
  await job.ctl.write(0, "exec /bin/sh\n");
  // A session (and process group) of its own: setsid has the mark before it makes the session.
  let pid = 0;
  await until(() => {
    const found = liveWithMarker(m);
    pid = found[0] ?? 0;
    try {
      return found.length === 1 && sessionOf(pid) === pid;
    } catch {
      return false;
    }
  });
  return { job, pid };
}

const gone = (m: string) => until(() => liveWithMarker(m).length === 0);

async function inProcess(
  opts: Parameters<typeof startXcpufs>[0] = {},
): Promise<{ h: XcpufsHandle; tmp: string }> {
  const tmp = mkdtempSync(join(work, "node-"));
  const h = await startXcpufs({ listen: "127.0.0.1", port: 0, tmpdir: tmp, noAuth: true, ...opts });
  return { h, tmp };
}

describe("the sweep itself", () => {
  it("reads XCPUPATH entries only, whole and at an entry's start", () => {
    const env = (...e: string[]) => Buffer.from(`${e.join("\0")}\0`);
    const exact = new Set(["/t/xcpu-a"]);
    expect(environMarked(env("A=1", "XCPUPATH=/t/xcpu-a"), exact, [])).toBe(true);
    expect(environMarked(env("XCPUPATH=/t/xcpu-a"), exact, [])).toBe(true);
    expect(environMarked(env("XCPUPATH=/t/xcpu-ab"), exact, [])).toBe(false);
    expect(environMarked(env("NOTXCPUPATH=/t/xcpu-a"), exact, [])).toBe(false);
    expect(environMarked(env("A=XCPUPATH=/t/xcpu-a"), exact, [])).toBe(false);
    expect(environMarked(env("XCPUPATH=/t/root/xcpu-b"), new Set(), ["/t/root"])).toBe(true);
    expect(environMarked(env("XCPUPATH=/t/rootx/xcpu-b"), new Set(), ["/t/root"])).toBe(false);
  });

  it("ends the marked processes started after the floor pid, and no other", async () => {
    const m = mark();
    const other = mark();
    const dir = join(work, `xcpu-${m}`);
    const start = (mk: string, path: string) => {
      const c = spawn("/bin/sh", ["-c", `setsid ${sleep(mk)} & exit 0`], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", XCPUPATH: path },
        stdio: "ignore",
      });
      return c;
    };
    const first = start(m, dir);
    const unmarked = start(other, `${dir}-not`);
    children.push(unmarked);
    await until(() => liveWithMarker(m).length === 1 && liveWithMarker(other).length === 1);
    // The starting shells carry the mark too until they have exited (and been reaped).
    await until(() => first.exitCode !== null && unmarked.exitCode !== null);
    const floor = pidFloor({ pid: first.pid as number, at: Date.now() });
    // Right after a start only newer processes are read (unless pids wrapped around meanwhile:
    // with a pid_max of 32768 another user's forks may do that; then every one is).
    expect([first.pid, 0]).toContain(floor);
    expect(await endMarked({ exact: [dir] }, new Set([process.pid]), floor)).toBe(1);
    await gone(m);
    expect(liveWithMarker(other)).toHaveLength(1);
    for (const pid of liveWithMarker(other)) process.kill(pid, "SIGKILL");
    // Long ago: every process is read.
    expect(pidFloor({ pid: first.pid as number, at: Date.now() - 3_600_000 })).toBe(0);
  });

  it("takes a zombie for a process that is gone", async () => {
    // A parent that never waits: a shell could reap its background job before it execs.
    const holder = spawn(
      "perl",
      ["-e", '$| = 1; my $p = fork(); if ($p == 0) { exit 0 } print "$p\\n"; sleep 600'],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    children.push(holder);
    let out = "";
    holder.stdout?.on("data", (d) => {
      out += d;
    });
    await until(() => /^\d+\n/.test(out));
    const pid = Number(out.trim());
    await until(() => readFileSync(`/proc/${pid}/stat`, "latin1").includes(") Z "));
    expect(processAlive(pid)).toBe(false);
    expect(processAlive(holder.pid as number)).toBe(true);
    holder.kill("SIGKILL");
  });
});

describe("a program that left its process group", () => {
  for (const { label, opts } of STARTERS) {
    it(`is killed by wipe (${label})`, async () => {
      const { h, tmp } = await inProcess(opts);
      const fs = await anon(h.address);
      try {
        const m = mark();
        // setsid: a session of its own; in a subshell that exits: a double fork, reparented.
        const m2 = mark();
        const { job } = await startEscapee(
          fs,
          `setsid ${sleep(m)} & (setsid ${sleep(m2)} &); exec sleep 100`,
          m,
        );
        await until(() => liveWithMarker(m2).length === 1);
        await job.ctl.write(0, "wipe\n");
        await gone(m);
        await gone(m2);
        await job.close();
      } finally {
        await fs.close();
        await h.close();
      }
      expect(sessionDirsIn(tmp)).toEqual([]);
    });
  }

  it("is killed by wipe with all it started, when it keeps forking", async () => {
    const { h } = await inProcess();
    const fs = await anon(h.address);
    try {
      const m = mark();
      const job = await openJob(fs);
      // Its command line holds the mark as well as each sleep's: one count for all of them.
      const loop = await fs.create(`${job.sid}/fs/loop.sh`, 0o644, OWRITE);
      await loop.write(0, 'i=0\nwhile [ $i -lt 1000 ]; do sleep "$1" & i=$((i+1)); sleep 0.02; done\n');
      await loop.clunk();
      await write(fs, `${job.sid}/argv`, `sh -c 'setsid sh loop.sh ${m} & exec sleep 100'`);
      await job.ctl.write(0, "exec /bin/sh\n");
      await until(() => liveWithMarker(m).length >= 5);
      await job.ctl.write(0, "wipe\n");
      await gone(m);
      await job.close();
    } finally {
      await fs.close();
      await h.close();
    }
  });

  it("is killed when the client of its normal session goes away, after its program ended (-s)", async () => {
    const { h } = await inProcess({ sameUser: true });
    const fs = await anon(h.address);
    try {
      const m = mark();
      const { job } = await startEscapee(fs, `setsid ${sleep(m)} & echo started`, m);
      // The program itself has ended: only what it left outside its group runs.
      expect((await readAll(job.wait)).toString()).toBe("0");
      expect(liveWithMarker(m)).toHaveLength(1);
      await fs.close();
      await gone(m);
    } finally {
      await h.close();
    }
  });

  it("of a persistent session stays until that session is wiped", async () => {
    const { h } = await inProcess();
    let fs = await anon(h.address);
    try {
      const kept = mark();
      const { job } = await startEscapee(fs, `setsid ${sleep(kept)} & exec sleep 100`, kept);
      await job.ctl.write(0, "type persistent\n");
      const sid = job.sid;
      await fs.close();
      // Another session's escapee, left by a client that goes away, is killed: a sweep ran since.
      fs = await anon(h.address);
      const other = mark();
      await startEscapee(fs, `setsid ${sleep(other)} & exec sleep 100`, other);
      await fs.close();
      await gone(other);
      expect(liveWithMarker(kept)).toHaveLength(1);
      fs = await anon(h.address);
      const ctl = await fs.open(`${sid}/ctl`, OWRITE);
      await ctl.write(0, "wipe\n");
      await ctl.clunk();
      await gone(kept);
    } finally {
      await fs.close();
      await h.close();
    }
  });

  it("is killed when the server stops on SIGTERM (which exits 0)", async () => {
    const tmp = mkdtempSync(join(work, "term-"));
    const child = spawn(
      process.execPath,
      xcpufsArgs("--no-auth", "--listen", "127.0.0.1", "-p", "0", "-t", tmp, "--state-dir", tmp),
      { cwd: PKG, stdio: ["ignore", "ignore", "pipe"] },
    );
    children.push(child);
    const { address } = await listeningOn(child);
    const fs = await anon(address);
    const m = mark();
    await startEscapee(fs, `setsid ${sleep(m)} & exec sleep 100`, m);
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    await fs.close().catch(() => {});
    // Gone by the time the server exited (a killed process may still be being reaped by init).
    await until(() => liveWithMarker(m).length === 0, 2000);
    expect(sessionDirsIn(tmp)).toEqual([]);
  });
});

describe.skipIf(!isRoot)("the programs of a server killed with SIGKILL", () => {
  it.each([
    ["", false],
    [" (-s: programs run as the server's user)", true],
  ])(
    "are killed by the next server on the same tmpdir, before it removes their directory%s",
    async (_label, sameUser) => {
      const tmp = mkdtempSync(join(work, "killed-"));
      // The server's parent never reaps it: once killed it stays a zombie, as under a supervisor
      // that has not looked yet.
      const holder = spawn(
        "/bin/sh",
        [
          "-c",
          '"$@" & echo "$!"; exec sleep 600',
          "sh",
          process.execPath,
          ...xcpufsArgs(
            "--no-auth",
            "--listen",
            "127.0.0.1",
            "-p",
            "0",
            "-t",
            tmp,
            "--state-dir",
            tmp,
            ...(sameUser ? ["-s"] : []),
          ),
        ],
        { cwd: PKG, stdio: ["ignore", "pipe", "pipe"] },
      );
      children.push(holder);
      let out = "";
      holder.stdout?.on("data", (d) => {
        out += d;
      });
      const { address } = await listeningOn(holder);
      await until(() => /^\d+\n/.test(out));
      const serverPid = Number(out.trim());
      const fs = await anon(address);
      const escaped = mark();
      const inGroup = mark();
      await startEscapee(fs, `setsid ${sleep(escaped)} & exec ${sleep(inGroup)}`, escaped);
      await until(() => liveWithMarker(inGroup).length === 1);
      const roots = readdirSync(tmp).filter((n) => n.startsWith("xcpufs-"));
      expect(roots).toHaveLength(1);
      process.kill(serverPid, "SIGKILL");
      await until(() => readFileSync(`/proc/${serverPid}/stat`, "latin1").includes(") Z "));
      fs.close().catch(() => {});
      // Killed with their server, they were not.
      expect(liveWithMarker(escaped)).toHaveLength(1);
      expect(liveWithMarker(inGroup)).toHaveLength(1);
      const next = await startXcpufs({ listen: "127.0.0.1", port: 0, tmpdir: tmp, noAuth: true, sameUser });
      try {
        await gone(escaped);
        await gone(inGroup);
        await until(() => !existsSync(join(tmp, roots[0] as string)));
      } finally {
        await next.close();
        holder.kill("SIGKILL");
      }
      expect(readdirSync(tmp)).toEqual([]);
    },
  );
});

/** A uid that is not root, for a server that must not have root's rights. */
const NOBODY = 65534;

describe("a session directory its program made hard to remove", () => {
  const script =
    "mkdir -p d/e; touch d/e/f; chmod 500 d/e; chmod 000 d; mkdir g; touch g/h; chmod 0 g/h; chmod 100 g; echo done";

  async function check(address: string, tmp: string): Promise<void> {
    const fs = await anon(address);
    try {
      const job = await openJob(fs);
      await write(fs, `${job.sid}/argv`, `sh -c '${script}'`);
      await job.ctl.write(0, "exec /bin/sh\n");
      const [out, status] = await Promise.all([readAll(job.stdout), readAll(job.wait)]);
      expect(out.toString()).toBe("done\n");
      expect(status.toString()).toBe("0");
      expect(sessionDirsIn(tmp)).toHaveLength(1);
      await job.close();
      await until(() => sessionDirsIn(tmp).length === 0);
    } finally {
      await fs.close();
    }
  }

  it.skipIf(isRoot)("is removed (an unprivileged server)", async () => {
    const { h, tmp } = await inProcess();
    try {
      await check(h.address, tmp);
    } finally {
      await h.close();
    }
  });

  const whyNot = nobodyCannotRun();
  if (whyNot && isRoot) console.log(`skipping the unprivileged-server case: ${whyNot}`);
  it.skipIf(whyNot !== "")("is removed (a server running as an unprivileged user)", async () => {
    const tmp = mkdtempSync(join(work, "nobody-"));
    chownSync(tmp, NOBODY, NOBODY);
    const child = spawn(
      process.execPath,
      xcpufsArgs("--no-auth", "--listen", "127.0.0.1", "-p", "0", "-t", tmp, "--state-dir", tmp),
      {
        cwd: PKG,
        stdio: ["ignore", "ignore", "pipe"],
        uid: NOBODY,
        gid: NOBODY,
        env: { ...process.env, HOME: tmp },
      },
    );
    children.push(child);
    const { address } = await listeningOn(child);
    try {
      await check(address, tmp);
      // Its programs' escapees (its own uid's processes) are found and killed as well.
      const fs = await anon(address);
      try {
        const m = mark();
        const { job, pid } = await startEscapee(fs, `setsid ${sleep(m)} & exec sleep 100`, m);
        expect(readFileSync(`/proc/${pid}/status`, "latin1")).toMatch(
          new RegExp(`^Uid:\\s+${NOBODY}\\s`, "m"),
        );
        await job.ctl.write(0, "wipe\n");
        await gone(m);
      } finally {
        await fs.close();
      }
    } finally {
      await stopChild(child);
    }
    expect(child.exitCode).toBe(0);
  });
});
