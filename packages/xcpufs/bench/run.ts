// xcpufs benchmark: job round trip (sequential and pipelined client), sessions per second, idle
// memory and memory per session. The server runs as a child process (the built bin when present,
// else the sources through tsx). Baselines measured in the same run: a local spawn of /bin/true,
// one 9P round trip on the same connection (read of `arch`), and optionally another server build
// (BENCH_BASELINE=path/to/xcpufs.js, e.g. a copy of an earlier dist/bin) whose round trips are
// interleaved with this build's so that both see the same machine load.
//
// Knobs: BENCH_NODE_FLAGS (the server's Node options; default as xcpufs.service starts it,
// --v8-pool-size=1), BENCH_SECONDS (length of each timed phase, default 3), BENCH_SOURCE=1 (run
// the sources even when a build exists), BENCH_BASELINE (see above), BENCH_BASELINE_ARGS (xcpufs
// options of the baseline server, e.g. BENCH_BASELINE=dist/bin/xcpufs.js
// BENCH_BASELINE_ARGS=--no-fork-helper compares the fork helper with spawn()), BENCH_PROF=DIR (CPU
// profile of this build's server written to DIR), BENCH_ORIGINAL=DIR (a directory with the original
// C xcpufs and xuserset: that server becomes a column too, jobs interleaved with this build's; it
// runs as on a node, in the background, and the client logs in with a throwaway admin key).

import { spawn, spawnSync } from "node:child_process";
import { sign } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Fid, type Fsys, mount, type Request } from "@clustermatic/ninep/client";
import { MsgType, OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import { publicKeyLine } from "@clustermatic/ninep/keys";
import {
  makeOriginalKeys,
  type OriginalKeys,
  originalDir,
  startOriginalXcpufs,
  stopOriginal,
} from "../../../tools/bench/original.js";
import { listening, stop } from "./server.js";

const pkg = dirname(dirname(fileURLToPath(import.meta.url)));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
/**
 * Node options of the server: by default those of xcpufs.service (one V8 worker thread: a fork of
 * the server then copies less and `exec` is faster). BENCH_NODE_FLAGS="" runs plain `node`.
 */
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? "--v8-pool-size=1").split(/\s+/).filter(Boolean);
const work = mkdtempSync(join(tmpdir(), "xcpufs-bench-"));

interface Srv {
  label: string;
  address: string;
  how: string;
  pid: number;
  idleKiB: number;
  stop: () => Promise<void>;
  /** Set for the original server: log in as xcpu-admin with this key (it has no --no-auth). */
  admin?: OriginalKeys["admin"];
}

function start(
  label: string,
  bin: string | undefined,
  extraNode: string[] = [],
  serverArgs: string[] = [],
): Promise<Srv> {
  const built = join(pkg, "dist/bin/xcpufs.js");
  let args: string[];
  let how: string;
  if (bin) {
    args = [bin];
    how = bin.startsWith(pkg) ? bin.slice(pkg.length + 1) : bin;
  } else if (existsSync(built) && process.env.BENCH_SOURCE !== "1") {
    args = [built];
    how = "dist/bin/xcpufs.js";
  } else {
    args = ["--conditions=@clustermatic/source", "--import", "tsx", join(pkg, "src/bin/xcpufs.ts")];
    how = "src via tsx";
  }
  const flags = extraNode.filter((f) => !f.startsWith("--cpu-prof"));
  if (flags.length > 0) how = `node ${flags.join(" ")} ${how}`;
  if (serverArgs.length > 0) how = `${how} ${serverArgs.join(" ")}`;
  const dir = mkdtempSync(join(work, `${label}-`));
  const child = spawn(
    process.execPath,
    [
      ...extraNode,
      ...args,
      "-p",
      "0",
      "--no-auth",
      "-t",
      dir,
      "--state-dir",
      join(dir, "state"),
      ...serverArgs,
    ],
    { stdio: ["ignore", "ignore", "pipe"], env: { PATH: "/usr/bin:/bin" } },
  );
  return listening(child).then((address) => ({
    label,
    address,
    how,
    pid: child.pid as number,
    idleKiB: 0,
    stop: () => stop(child),
  }));
}

async function startOriginal(dir: string): Promise<Srv> {
  const keys: OriginalKeys = makeOriginalKeys(join(work, "original-keys"), publicKeyLine);
  const node = await startOriginalXcpufs(dir, mkdtempSync(join(work, "original-")), keys.adminPub);
  return {
    label: "original",
    address: node.address,
    how: `${join(dir, "xcpufs")} (C), as xcpu-admin`,
    pid: node.pid,
    idleKiB: 0,
    stop: () => stopOriginal(node),
    admin: keys.admin,
  };
}

function memKiB(pid: number): { rss: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  let anon = 0;
  try {
    anon = Number(/Anonymous:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? 0);
  } catch {}
  return { rss, anon };
}

/** CPU time (user + system) the process has used, in ms. */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

async function drain(fid: Fid): Promise<void> {
  let off = 0n;
  for (;;) {
    const b = await fid.read(off, 64);
    if (b.length === 0) return;
    off += BigInt(b.length);
  }
}

/** Times of the timed round trips (ms): the total and where it goes. */
type Steps = Record<string, number[]>;

/**
 * Sequential: clone → argv → exec /bin/true → wait the way the original clients do it, each
 * request waiting for the previous reply (12 requests, 17 messages with the walks; `wait` read
 * until end of file).
 */
async function sequential(fs: Fsys, steps?: Steps): Promise<void> {
  const t0 = performance.now();
  const clone = await fs.open("clone", OREAD);
  const t1 = performance.now();
  const sid = (await clone.read(0, 32)).toString();
  const ctl = await fs.open(`${sid}/ctl`, OWRITE);
  const wait = await fs.open(`${sid}/wait`, OREAD);
  await clone.clunk();
  const argv = await fs.open(`${sid}/argv`, OWRITE | OTRUNC);
  await argv.write(0, "true");
  await argv.clunk();
  const t2 = performance.now();
  await ctl.write(0, "id /1\nexec /bin/true\n");
  const t3 = performance.now();
  await drain(wait);
  const t4 = performance.now();
  await ctl.clunk();
  await wait.clunk();
  if (steps) {
    steps.total?.push(performance.now() - t0);
    steps.clone?.push(t1 - t0);
    steps.exec?.push(t3 - t2);
    steps.wait?.push(t4 - t3);
  }
}

/** Send the requests at once (in this order) and wait for all replies; the first error is thrown. */
async function batch(fs: Fsys, reqs: Request[]): Promise<unknown[]> {
  const out = await Promise.allSettled(reqs.map((r) => fs.client.rpc(r)));
  const bad = out.find((o) => o.status === "rejected");
  if (bad) throw (bad as PromiseRejectedResult).reason;
  return out.map((o) => (o as PromiseFulfilledResult<unknown>).value);
}

/**
 * Pipelined: the same job by a client that sends every request whose inputs it already has
 * without waiting for earlier replies (the server orders requests on the same fid). Four waits:
 * (1) walk+open+read of `clone`; (2) walk+open of ctl and wait, walk+open+write+clunk of argv;
 * (3) the exec write, the clunk of `clone` and the read of `wait` (complete in one read: the
 * status text is short); (4) clunk of ctl and wait. Requests on different fids run concurrently
 * on the server, so a step that depends on another fid's result waits for its reply.
 */
async function pipelined(fs: Fsys, steps?: Steps): Promise<void> {
  const c = fs.client;
  const root = fs.root.num;
  const clone = c.fids.alloc();
  const ctl = c.fids.alloc();
  const wait = c.fids.alloc();
  const argv = c.fids.alloc();
  const t0 = performance.now();
  const r1 = await batch(fs, [
    { type: MsgType.Twalk, fid: root, newfid: clone, wname: ["clone"] },
    { type: MsgType.Topen, fid: clone, mode: OREAD },
    { type: MsgType.Tread, fid: clone, offset: 0n, count: 32 },
  ]);
  const sid = Buffer.from((r1[2] as { data: Uint8Array }).data).toString();
  const t1 = performance.now();
  await batch(fs, [
    { type: MsgType.Twalk, fid: root, newfid: ctl, wname: [sid, "ctl"] },
    { type: MsgType.Topen, fid: ctl, mode: OWRITE },
    { type: MsgType.Twalk, fid: root, newfid: wait, wname: [sid, "wait"] },
    { type: MsgType.Topen, fid: wait, mode: OREAD },
    { type: MsgType.Twalk, fid: root, newfid: argv, wname: [sid, "argv"] },
    { type: MsgType.Topen, fid: argv, mode: OWRITE | OTRUNC },
    { type: MsgType.Twrite, fid: argv, offset: 0n, data: Buffer.from("true") },
    { type: MsgType.Tclunk, fid: argv },
  ]);
  const t2 = performance.now();
  const r3 = await batch(fs, [
    { type: MsgType.Twrite, fid: ctl, offset: 0n, data: Buffer.from("id /1\nexec /bin/true\n") },
    { type: MsgType.Tclunk, fid: clone },
    { type: MsgType.Tread, fid: wait, offset: 0n, count: 32 },
  ]);
  const status = Buffer.from((r3[2] as { data: Uint8Array }).data).toString();
  if (status !== "0") throw new Error(`pipelined job: wait status ${JSON.stringify(status)}`);
  const t3 = performance.now();
  await batch(fs, [
    { type: MsgType.Tclunk, fid: ctl },
    { type: MsgType.Tclunk, fid: wait },
  ]);
  for (const f of [clone, ctl, wait, argv]) c.fids.free(f);
  if (steps) {
    steps.total?.push(performance.now() - t0);
    steps.clone?.push(t1 - t0);
    steps.files?.push(t2 - t1);
    steps.execwait?.push(t3 - t2);
  }
}

/** What the server does for `exec`, timed here: spawn() with pipes in a new session, until exit. */
async function localSpawn(): Promise<{ call: number; exit: number }> {
  const t0 = performance.now();
  const c = spawn("/bin/true", [], { stdio: "pipe", detached: true });
  const t1 = performance.now();
  await new Promise((r) => c.once("exit", r));
  return { call: t1 - t0, exit: performance.now() - t0 };
}

/** The original's admin user: its uid when the node has no xcpu-admin account. */
const XCPU_ADMIN_UID = 65530;

const connect = (s: Srv) => {
  const admin = s.admin;
  return mount(s.address, {
    uname: admin ? "xcpu-admin" : "bench",
    n_uname: admin ? XCPU_ADMIN_UID : (process.getuid?.() ?? 0),
    msize: 32792,
    authenticate: admin
      ? async (afid) => {
          const challenge = await afid.read(4096);
          await afid.write(sign("sha1", challenge, admin));
        }
      : async () => {},
  });
};

interface Result {
  seq: Steps;
  pipe: Steps;
  perSec: number;
  jobs: number;
  anonAfter: number;
  perSessionKiB: number;
  /** Server CPU time used during the timed round trips, ms. */
  cpu: number;
}

const newSteps = (...names: string[]): Steps => Object.fromEntries(names.map((n) => [n, [] as number[]]));

async function sessionsPerSecond(s: Srv, seconds: number): Promise<{ ms: number; done: number }> {
  const clients = await Promise.all(Array.from({ length: 16 }, () => connect(s)));
  let done = 0;
  const t0 = performance.now();
  const stopAt = Date.now() + seconds * 1000;
  await Promise.all(
    clients.map(async (c) => {
      while (Date.now() < stopAt) {
        await sequential(c);
        done++;
      }
    }),
  );
  const ms = performance.now() - t0;
  await Promise.all(clients.map((c) => c.close()));
  return { ms, done };
}

async function perSession(s: Srv, fs: Fsys): Promise<number> {
  await new Promise((r) => setTimeout(r, 300));
  const before = memKiB(s.pid).rss;
  const N = 500;
  const held: Fid[] = [];
  for (let i = 0; i < N; i++) {
    const clone = await fs.open("clone", OREAD);
    await clone.read(0, 32);
    held.push(clone);
  }
  await new Promise((r) => setTimeout(r, 300));
  const after = memKiB(s.pid).rss;
  for (const f of held) await f.clunk();
  return (after - before) / N;
}

async function main(): Promise<void> {
  const prof = process.env.BENCH_PROF
    ? ["--cpu-prof", "--cpu-prof-dir", resolve(process.env.BENCH_PROF)]
    : [];
  const baselineBin = process.env.BENCH_BASELINE ? resolve(process.env.BENCH_BASELINE) : undefined;
  const baselineArgs = (process.env.BENCH_BASELINE_ARGS ?? "").split(/\s+/).filter(Boolean);
  const servers: Srv[] = [];
  const results = new Map<Srv, Result>();
  try {
    // Inside the try: a baseline that cannot start (a wrong path, missing modules) must not leave
    // the first server running.
    servers.push(await start("this", undefined, [...NODE_FLAGS, ...prof]));
    if (baselineBin) servers.push(await start("baseline", baselineBin, NODE_FLAGS, baselineArgs));
    const original = originalDir();
    if (original) servers.push(await startOriginal(original));
    await new Promise((r) => setTimeout(r, 300));
    for (const s of servers) s.idleKiB = memKiB(s.pid).rss;
    const mounts = new Map<Srv, Fsys>();
    for (const s of servers) mounts.set(s, await connect(s));
    const fsA = mounts.get(servers[0] as Srv) as Fsys;

    // baseline: local spawn of /bin/true
    const spawnMs: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      spawnSync("/bin/true");
      spawnMs.push(performance.now() - t);
    }
    const spawnCall: number[] = [];
    const spawnExit: number[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await localSpawn();
      spawnCall.push(r.call);
      spawnExit.push(r.exit);
    }
    // baseline: one 9P round trip, once V8 has compiled both sides' paths (over the first
    // thousands of reads of a fresh client and server the median is 1.3-2 times as long)
    const arch = await fsA.open("arch", OREAD);
    const rpcMs: number[] = [];
    for (let i = 0; i < 3000; i++) await arch.read(0, 64);
    for (let i = 0; i < 1000; i++) {
      const t = performance.now();
      await arch.read(0, 64);
      rpcMs.push(performance.now() - t);
    }
    await arch.clunk();

    // job round trips, one client per server: sequential and pipelined, interleaved in small
    // batches across servers and client kinds so that every column sees the same load.
    for (const s of servers) {
      results.set(s, {
        seq: newSteps("total", "clone", "exec", "wait"),
        pipe: newSteps("total", "clone", "files", "execwait"),
        perSec: 0,
        jobs: 0,
        anonAfter: 0,
        perSessionKiB: 0,
        cpu: 0,
      });
      const fs = mounts.get(s) as Fsys;
      for (let i = 0; i < 10; i++) {
        await sequential(fs);
        await pipelined(fs);
      }
    }
    const end = Date.now() + SECONDS * 1000 * servers.length;
    while (Date.now() < end) {
      for (const s of servers) {
        const fs = mounts.get(s) as Fsys;
        const r = results.get(s) as Result;
        const c0 = cpuMs(s.pid);
        for (let i = 0; i < 4; i++) await sequential(fs, r.seq);
        for (let i = 0; i < 4; i++) await pipelined(fs, r.pipe);
        r.cpu += cpuMs(s.pid) - c0;
      }
    }
    for (const s of servers) (results.get(s) as Result).anonAfter = memKiB(s.pid).anon;

    // 16 clients at once: in halves, this build first then last, so both see the same load
    const order = [...servers, ...[...servers].reverse()];
    const spent = new Map<Srv, number>();
    for (const s of order) {
      const r = results.get(s) as Result;
      const { ms, done } = await sessionsPerSecond(s, SECONDS / 2);
      r.jobs += done;
      spent.set(s, (spent.get(s) ?? 0) + ms);
    }
    for (const s of servers) {
      const r = results.get(s) as Result;
      r.perSec = r.jobs / ((spent.get(s) ?? 1) / 1000);
      r.perSessionKiB = await perSession(s, mounts.get(s) as Fsys);
    }
    for (const fs of mounts.values()) await fs.close();

    const ms = (x: number) => `${x.toFixed(2)} ms`;
    const col = (f: (r: Result, s: Srv) => string) => servers.map((s) => f(results.get(s) as Result, s));
    const rows: string[][] = [
      ["server", ...servers.map((s) => s.label), ""],
      [
        "job round trip, sequential client, median",
        ...col((r) => ms(pct(r.seq.total ?? [], 50))),
        "target < 5 ms (this sequential figure)",
      ],
      ["  p99", ...col((r) => ms(pct(r.seq.total ?? [], 99))), ""],
      ["  open clone (new session), median", ...col((r) => ms(pct(r.seq.clone ?? [], 50))), ""],
      ["  exec request (the fork in the server), median", ...col((r) => ms(pct(r.seq.exec ?? [], 50))), ""],
      ["  wait until end of file, median", ...col((r) => ms(pct(r.seq.wait ?? [], 50))), "2 reads"],
      ["  jobs timed", ...col((r) => String(r.seq.total?.length ?? 0)), ""],
      [
        "job round trip, pipelined client, median",
        ...col((r) => ms(pct(r.pipe.total ?? [], 50))),
        "4 waits for replies; not the target's figure",
      ],
      ["  p99", ...col((r) => ms(pct(r.pipe.total ?? [], 99))), ""],
      ["  clone walk+open+read, median", ...col((r) => ms(pct(r.pipe.clone ?? [], 50))), ""],
      ["  session files and argv, median", ...col((r) => ms(pct(r.pipe.files ?? [], 50))), ""],
      ["  exec and wait status, median", ...col((r) => ms(pct(r.pipe.execwait ?? [], 50))), ""],
      ["  jobs timed", ...col((r) => String(r.pipe.total?.length ?? 0)), ""],
      [
        "server CPU time per job (user + system)",
        ...col((r) => ms(r.cpu / ((r.seq.total?.length ?? 0) + (r.pipe.total?.length ?? 0) || 1))),
        "both clients; 10 ms clock ticks",
      ],
      ["sessions/s, 16 parallel sequential clients", ...col((r) => r.perSec.toFixed(0)), `${SECONDS}s`],
      ["idle RSS of the server", ...col((_r, s) => `${(s.idleKiB / 1024).toFixed(1)} MB`), "target < 60 MB"],
      [
        "anonymous memory after the round trips",
        ...col((r) => `${(r.anonAfter / 1024).toFixed(1)} MB`),
        "what a fork copies",
      ],
      [
        "RSS per live idle session",
        ...col((r) => `${r.perSessionKiB.toFixed(1)} KiB`),
        "500 sessions; target < 256 KiB",
      ],
      [
        "baseline: local spawnSync /bin/true, median",
        ms(pct(spawnMs, 50)),
        ...servers.slice(1).map(() => ""),
        "",
      ],
      [
        "baseline: local spawn() /bin/true as the server does",
        ms(pct(spawnExit, 50)),
        ...servers.slice(1).map(() => ""),
        `until exit; the call alone ${ms(pct(spawnCall, 50))}`,
      ],
      [
        "baseline: one 9P read round trip, median",
        `${pct(rpcMs, 50).toFixed(3)} ms`,
        ...servers.slice(1).map(() => ""),
        "",
      ],
    ];
    const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
    console.log(
      `xcpufs bench (${SECONDS}s phases, load average ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`,
    );
    for (const s of servers) console.log(`${s.label}: ${s.how}`);
    for (const r of rows) {
      console.log(
        r
          .map((cell, i) =>
            i === 0 || i === r.length - 1
              ? cell.padEnd(widths[i] ?? 0)
              : cell.padStart(Math.max(widths[i] ?? 0, 12)),
          )
          .join("  ")
          .trimEnd(),
      );
    }
  } finally {
    for (const s of servers) await s.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
