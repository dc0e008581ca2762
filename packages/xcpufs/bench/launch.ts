// What one xrx-style launch costs a node, in server CPU, by phase. Each launch is one connection
// that sends what `xrx -S --no-key NODE /bin/true` sends (the same requests, pipelined the same
// way), cut short at four depths:
//   connect     connect, Tversion, Tauth, Tattach, disconnect
//   session     + arch, clone, the session files opened, argv written, everything clunked (wiped)
//   stage       + the program (35 KB, /bin/true) created and written in fs/
//   exec        + exec, close stdin, stdout/stderr/wait read until the program's status
// Server CPU (the run time of its threads from /proc, in ns) is read around batches of
// launches; a phase's cost is the difference between two depths. With BENCH_BASELINE=path/to/an
// earlier xcpufs.js both servers run and their batches alternate, so both see the same load.
// Then fresh servers of each build take BENCH_FRESH (default 60) full launches in turns
// (BENCH_FRESH_ROUNDS times, default 2).
//
// Knobs: BENCH_ROUNDS (default 6), BENCH_BATCH (launches per batch, default 25),
// BENCH_BIN (this build, default dist/bin/xcpufs.js), BENCH_BASELINE, BENCH_FRESH,
// BENCH_POOL=N (a user pool of N users), BENCH_PROF=DIR (CPU profile of this build's servers),
// BENCH_NODE_FLAGS (default --v8-pool-size=1, as xcpufs.service starts the server);
// BENCH_ADDRESS=tcp!host!port (with BENCH_DEPTH, BENCH_BATCH) only drives a server started elsewhere.

import { type ChildProcess, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@clustermatic/ninep/client";
import { MsgType, OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import { listening, stop } from "./server.js";

const pkg = dirname(dirname(fileURLToPath(import.meta.url)));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const BATCH = Number(process.env.BENCH_BATCH ?? 25);
const FRESH = Number(process.env.BENCH_FRESH ?? 60);
const FRESH_ROUNDS = Number(process.env.BENCH_FRESH_ROUNDS ?? 2);
const POOL = Number(process.env.BENCH_POOL ?? 0);
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? "--v8-pool-size=1").split(/\s+/).filter(Boolean);
const PROGRAM = readFileSync("/bin/true");
const work = mkdtempSync(join(tmpdir(), "xcpufs-launch-"));

interface Srv {
  label: string;
  bin: string;
  child: ChildProcess;
  address: string;
  pid: number;
}

function start(label: string, bin: string, prof: boolean): Promise<Srv> {
  const dir = mkdtempSync(join(work, `${label}-`));
  if (POOL > 0) {
    // a user pool of POOL users in POOL/10 groups (none of them is the bench's client)
    const groups = Array.from({ length: Math.ceil(POOL / 10) }, (_, i) => ({
      name: `g${i}`,
      gid: 30000 + i,
    }));
    const users = Array.from({ length: POOL }, (_, i) => ({
      name: `u${i}`,
      uid: 30000 + i,
      gid: 30000 + Math.floor(i / 10),
      groups: [`g${Math.floor(i / 10)}`],
    }));
    mkdirSync(join(dir, "state"));
    writeFileSync(join(dir, "state", "users.json"), JSON.stringify({ version: 1, users, groups }));
  }
  const profFlags =
    prof && process.env.BENCH_PROF
      ? ["--cpu-prof", "--cpu-prof-interval=250", "--cpu-prof-dir", resolve(process.env.BENCH_PROF)]
      : [];
  const child = spawn(
    process.execPath,
    [...NODE_FLAGS, ...profFlags, bin, "-p", "0", "--no-auth", "-t", dir, "--state-dir", join(dir, "state")],
    {
      stdio: ["ignore", "ignore", "pipe"],
      // each build its own code cache (written when the first server of the build exits)
      env: { PATH: "/usr/bin:/bin", CLUSTERMATIC_COMPILE_CACHE: join(work, `${label}-v8`) },
    },
  );
  return listening(child).then((address) => ({ label, bin, child, address, pid: child.pid as number }));
}

/**
 * CPU time the process has used, in ms: the sum over its threads of the scheduler's run time
 * (/proc/<pid>/task/<tid>/schedstat, nanoseconds), else utime + stime (10 ms ticks).
 */
function cpuMs(pid: number): number {
  try {
    let ns = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
      } catch {}
    }
    if (ns > 0) return ns / 1e6;
  } catch {}
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

const DEPTHS = ["connect", "session", "stage", "exec"] as const;
type Depth = (typeof DEPTHS)[number];

/** One launch as xrx makes it, down to `depth`. */
async function launch(address: string, depth: Depth): Promise<void> {
  const c = await Client.connect(address, { msize: 1024 * 1024 + 24, version: "9P2000.u" });
  try {
    const uid = process.getuid?.() ?? 0;
    const afid = await c.auth("root", "", { n_uname: uid });
    const root = await c.attach("root", "", { afid: afid ?? undefined, n_uname: uid });
    if (afid) await afid.clunk();
    if (depth === "connect") return;
    const r = root.num;
    const rpc = c.rpc.bind(c);
    const f = () => c.fids.alloc();
    const arch = f();
    const clone = f();
    const [, sidReply] = await Promise.all([
      rpc({ type: MsgType.Twalk, fid: r, newfid: arch, wname: ["arch"] })
        .then(() => rpc({ type: MsgType.Topen, fid: arch, mode: OREAD }))
        .then(() => rpc({ type: MsgType.Tread, fid: arch, offset: 0n, count: 1 << 20 }))
        .then(() => rpc({ type: MsgType.Tclunk, fid: arch })),
      rpc({ type: MsgType.Twalk, fid: r, newfid: clone, wname: ["clone"] })
        .then(() => rpc({ type: MsgType.Topen, fid: clone, mode: OREAD }))
        .then(() => rpc({ type: MsgType.Tread, fid: clone, offset: 0n, count: 64 })),
    ]);
    const sid = Buffer.from(sidReply.data).toString();
    const dir = f();
    const names = ["ctl", "wait", "stdout", "stderr", "stdin"] as const;
    const fids = Object.fromEntries(names.map((n) => [n, f()])) as Record<(typeof names)[number], number>;
    const modes = { ctl: 2, wait: OREAD, stdout: OREAD, stderr: OREAD, stdin: OWRITE };
    await Promise.all([
      rpc({ type: MsgType.Twalk, fid: r, newfid: dir, wname: [sid] }),
      ...names.map((n) =>
        rpc({ type: MsgType.Twalk, fid: r, newfid: fids[n], wname: [sid, n] }).then(() =>
          rpc({ type: MsgType.Topen, fid: fids[n], mode: modes[n] }),
        ),
      ),
    ]);
    await rpc({ type: MsgType.Tclunk, fid: clone });
    const argv = f();
    const fsf = f();
    const argvDone = rpc({ type: MsgType.Twalk, fid: r, newfid: argv, wname: [sid, "argv"] })
      .then(() => rpc({ type: MsgType.Topen, fid: argv, mode: OWRITE | OTRUNC }))
      .then(() => rpc({ type: MsgType.Twrite, fid: argv, offset: 0n, data: Buffer.from("/bin/true") }))
      .then(() => rpc({ type: MsgType.Tclunk, fid: argv }));
    const staged =
      depth === "session"
        ? Promise.resolve()
        : rpc({ type: MsgType.Twalk, fid: dir, newfid: fsf, wname: ["fs"] })
            .then(() =>
              rpc({
                type: MsgType.Tcreate,
                fid: fsf,
                name: "true",
                perm: 0o755,
                mode: OWRITE,
                extension: "",
              }),
            )
            .then(() => rpc({ type: MsgType.Twrite, fid: fsf, offset: 0n, data: PROGRAM }))
            .then(() => rpc({ type: MsgType.Tclunk, fid: fsf }));
    await Promise.all([argvDone, staged]);
    if (depth === "exec") {
      const out = rpc({ type: MsgType.Tread, fid: fids.stdout, offset: 0n, count: 1 << 20 });
      const err = rpc({ type: MsgType.Tread, fid: fids.stderr, offset: 0n, count: 1 << 20 });
      const wait = rpc({ type: MsgType.Tread, fid: fids.wait, offset: 0n, count: 1024 });
      await Promise.all([
        rpc({ type: MsgType.Twrite, fid: fids.ctl, offset: 0n, data: Buffer.from("id /1\nexec true\n") }),
        rpc({ type: MsgType.Twrite, fid: fids.ctl, offset: 0n, data: Buffer.from("close stdin\n") }),
      ]);
      const [, , w] = await Promise.all([out, err, wait]);
      if (Buffer.from(w.data).toString() !== "0") throw new Error(`wait: ${Buffer.from(w.data).toString()}`);
    }
  } finally {
    await c.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Server CPU per launch (ms) of each server for one batch at one depth: the servers take turns
 * launch by launch (the order alternating), so that all of them see the same machine load.
 */
async function batch(servers: Srv[], depth: Depth, n: number): Promise<number[]> {
  await sleep(20);
  const c0 = servers.map((s) => cpuMs(s.pid));
  for (let i = 0; i < n; i++) {
    for (const s of i % 2 ? [...servers].reverse() : servers) await launch(s.address, depth);
  }
  await sleep(40); // wipes finish (directory removal) after the connection has gone
  return servers.map((s, i) => (cpuMs(s.pid) - (c0[i] as number)) / n);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

async function main(): Promise<void> {
  if (process.env.BENCH_ADDRESS) {
    // drive a server started elsewhere (for strace or perf): BENCH_BATCH launches to BENCH_DEPTH
    const depth = (process.env.BENCH_DEPTH ?? "exec") as Depth;
    for (let i = 0; i < BATCH; i++) await launch(process.env.BENCH_ADDRESS, depth);
    return;
  }
  const built = resolve(process.env.BENCH_BIN ?? join(pkg, "dist/bin/xcpufs.js"));
  if (!existsSync(built)) throw new Error("build first: pnpm run build");
  const builds = [{ label: "this", bin: built }];
  if (process.env.BENCH_BASELINE)
    builds.push({ label: "baseline", bin: resolve(process.env.BENCH_BASELINE) });
  const servers: Srv[] = [];
  try {
    for (const b of builds) servers.push(await start(b.label, b.bin, b.label === "this"));
    // warm-up
    for (const s of servers) for (let i = 0; i < 40; i++) await launch(s.address, "exec");
    const res = new Map<string, number[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const depth of DEPTHS) {
        const v = await batch(servers, depth, BATCH);
        servers.forEach((s, i) => {
          const k = `${s.label} ${depth}`;
          res.set(k, [...(res.get(k) ?? []), v[i] as number]);
        });
      }
    }
    for (const s of servers) await stop(s.child);
    // fresh servers: the first FRESH launches
    const fresh = new Map<string, number[]>();
    for (let round = 0; FRESH > 0 && round < FRESH_ROUNDS; round++) {
      const fs: Srv[] = [];
      for (const b of builds) fs.push(await start(b.label, b.bin, b.label === "this"));
      servers.push(...fs);
      await sleep(300);
      const v = await batch(fs, "exec", FRESH);
      fs.forEach((s, i) => {
        fresh.set(s.label, [...(fresh.get(s.label) ?? []), v[i] as number]);
      });
      for (const s of fs) await stop(s.child);
    }
    const f = (x: number) => x.toFixed(2).padStart(7);
    const rng = (xs: number[]) =>
      `${f(median(xs))} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
    console.log(
      `xcpufs launch cost, server CPU ms per launch: median of ${ROUNDS} batches of ${BATCH} (min–max); load ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]}`,
    );
    for (const b of builds) console.log(`${b.label}: ${b.bin}`);
    const cols = builds.map((b) => b.label);
    console.log(["depth".padEnd(34), ...cols.map((c) => c.padStart(22))].join(""));
    for (const d of DEPTHS) {
      console.log(
        [`  ${d}`.padEnd(34), ...cols.map((c) => rng(res.get(`${c} ${d}`) ?? []).padStart(22))].join(""),
      );
    }
    const phase = (c: string, a: Depth, b: Depth) => {
      const A = res.get(`${c} ${a}`) ?? [];
      const B = res.get(`${c} ${b}`) ?? [];
      return rng(B.map((x, i) => x - (A[i] ?? 0)));
    };
    console.log("phase (difference of depths, per round)");
    for (const [name, a, b] of [
      ["  session create + wipe", "connect", "session"],
      ["  staging 35 KB", "session", "stage"],
      ["  exec + wait", "stage", "exec"],
    ] as const) {
      console.log([name.padEnd(34), ...cols.map((c) => phase(c, a, b).padStart(22))].join(""));
    }
    if (FRESH > 0) {
      console.log(
        [
          `fresh server, first ${FRESH} launches`.padEnd(34),
          ...cols.map((c) => rng(fresh.get(c) ?? []).padStart(22)),
        ].join(""),
      );
    }
    if (builds.length > 1) {
      // per round: this build minus the baseline (the same launches, taken in turns)
      const diff = (d: Depth) => {
        const a = res.get(`this ${d}`) ?? [];
        const b = res.get(`baseline ${d}`) ?? [];
        return a.map((x, i) => x - (b[i] ?? 0));
      };
      console.log("this − baseline, per round");
      for (const d of DEPTHS) console.log(`  ${d}`.padEnd(34) + rng(diff(d)).padStart(22));
    }
  } finally {
    for (const s of servers) await stop(s.child);
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
