// xcpufs benchmark: job round trip, sessions per second, idle memory and memory per session.
// Runs the server as a child process (the built bin when present, else the sources through tsx)
// and compares against baselines measured in the same run: a local spawn of /bin/true, and one
// 9P round trip on the same connection (read of `arch`).

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Fid, type Fsys, mount } from "@clustermatic/ninep/client";
import { OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";

const pkg = dirname(dirname(fileURLToPath(import.meta.url)));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const work = mkdtempSync(join(tmpdir(), "xcpufs-bench-"));

function start(): Promise<{ child: ChildProcess; address: string; how: string }> {
  const built = join(pkg, "dist/bin/xcpufs.js");
  const useBuilt = existsSync(built) && process.env.BENCH_SOURCE !== "1";
  const args = useBuilt
    ? [built]
    : ["--conditions=@clustermatic/source", "--import", "tsx", join(pkg, "src/bin/xcpufs.ts")];
  const child = spawn(
    process.execPath,
    [...args, "-p", "0", "--no-auth", "-t", work, "--state-dir", join(work, "state")],
    { stdio: ["ignore", "ignore", "pipe"], env: { PATH: "/usr/bin:/bin" } },
  );
  let err = "";
  return new Promise((resolve, reject) => {
    child.stderr?.on("data", (d) => {
      err += d;
      const m = /listening on (\S+)/.exec(err);
      if (m)
        resolve({ child, address: m[1] as string, how: useBuilt ? "dist/bin/xcpufs.js" : "src via tsx" });
    });
    child.once("exit", () => reject(new Error(`xcpufs exited: ${err}`)));
  });
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
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

/** Per-step times of the timed round trips (ms): where a round trip's time goes. */
const steps = { clone: [] as number[], exec: [] as number[], wait: [] as number[] };

/** clone → argv → exec /bin/true → wait, the way the original clients do it. */
async function roundTrip(fs: Fsys, timed = false): Promise<void> {
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
  if (timed) {
    steps.clone.push(t1 - t0);
    steps.exec.push(t3 - t2);
    steps.wait.push(t4 - t3);
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

const connect = (address: string) =>
  mount(address, {
    uname: "bench",
    n_uname: process.getuid?.() ?? 0,
    msize: 32792,
    authenticate: async () => {},
  });

async function main(): Promise<void> {
  const { child, address, how } = await start();
  const pid = child.pid as number;
  try {
    await new Promise((r) => setTimeout(r, 300));
    const idle = rssKiB(pid);
    const fs = await connect(address);

    // baseline 1: local spawn of /bin/true
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
    // baseline 2: one 9P round trip
    const arch = await fs.open("arch", OREAD);
    const rpcMs: number[] = [];
    for (let i = 0; i < 300; i++) {
      const t = performance.now();
      await arch.read(0, 64);
      rpcMs.push(performance.now() - t);
    }
    await arch.clunk();

    // job round trip, one client
    for (let i = 0; i < 10; i++) await roundTrip(fs);
    const rt: number[] = [];
    const end = Date.now() + SECONDS * 1000;
    while (Date.now() < end) {
      const t = performance.now();
      await roundTrip(fs, true);
      rt.push(performance.now() - t);
    }

    // sessions per second, 16 parallel clients
    const clients = await Promise.all(Array.from({ length: 16 }, () => connect(address)));
    let done = 0;
    const t0 = performance.now();
    const stop = Date.now() + SECONDS * 1000;
    await Promise.all(
      clients.map(async (c) => {
        while (Date.now() < stop) {
          await roundTrip(c);
          done++;
        }
      }),
    );
    const perSec = done / ((performance.now() - t0) / 1000);
    await Promise.all(clients.map((c) => c.close()));

    // memory per live (idle) session
    await new Promise((r) => setTimeout(r, 300));
    const before = rssKiB(pid);
    const N = 500;
    const held: Fid[] = [];
    for (let i = 0; i < N; i++) {
      const clone = await fs.open("clone", OREAD);
      await clone.read(0, 32);
      held.push(clone);
    }
    await new Promise((r) => setTimeout(r, 300));
    const after = rssKiB(pid);
    for (const f of held) await f.clunk();
    await fs.close();

    const med = pct(rt, 50);
    const rows: [string, string, string][] = [
      ["server", how, ""],
      ["baseline: local spawnSync /bin/true, median", `${pct(spawnMs, 50).toFixed(2)} ms`, ""],
      [
        "baseline: local spawn() /bin/true as the server does, median",
        `${pct(spawnExit, 50).toFixed(2)} ms`,
        `until exit; the spawn() call alone ${pct(spawnCall, 50).toFixed(2)} ms`,
      ],
      ["baseline: one 9P read round trip, median", `${pct(rpcMs, 50).toFixed(3)} ms`, ""],
      ["job round trip clone→argv→exec /bin/true→wait, median", `${med.toFixed(2)} ms`, "target < 5 ms"],
      ["job round trip, p99", `${pct(rt, 99).toFixed(2)} ms`, `${rt.length} jobs`],
      ["  (in 9P round trips of this run)", `${(med / pct(rpcMs, 50)).toFixed(1)} x`, "12 requests per job"],
      [
        "  of which: open clone (new session, its directory), median",
        `${pct(steps.clone, 50).toFixed(2)} ms`,
        "",
      ],
      [
        "  of which: exec request (the fork in the server), median",
        `${pct(steps.exec, 50).toFixed(2)} ms`,
        "",
      ],
      ["  of which: wait until the exit status, median", `${pct(steps.wait, 50).toFixed(2)} ms`, ""],
      ["sessions/s, 16 parallel clients", perSec.toFixed(0), `${done} jobs in ${SECONDS}s`],
      ["idle RSS of the server", `${(idle / 1024).toFixed(1)} MB`, "target < 60 MB"],
      [
        "RSS per live idle session",
        `${((after - before) / N).toFixed(1)} KiB`,
        `${N} sessions; target < 256 KiB`,
      ],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(
      `xcpufs bench (${SECONDS}s phases, load average ${readFileSync("/proc/loadavg", "utf8").split(" ")[0]})`,
    );
    for (const [k, v, note] of rows) console.log(`${k.padEnd(w)}  ${v.padStart(14)}  ${note}`);
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
