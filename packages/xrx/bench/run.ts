// Wall time of the built xrx (a fresh process per run, as a user would start it) against xcpufs
// nodes on loopback ports, hosted by BENCH_HOSTS child processes (bench/host.ts, default 8; each
// node forks its programs from its host process, whose size sets the cost of every fork; hosts run
// with --v8-pool-size=1 as xcpufs.service starts a node).
// Prints medians per case and the cost of starting Node itself in the same run.
//
//   pnpm bench                 (after pnpm build)
//   BENCH_REPS=9 pnpm bench    (more runs per case)
//   BENCH_WARMUP=0 pnpm bench  (no warm-up runs over all 64 nodes before the table; default 10)
//   BENCH_XRX=/path/xrx.js     (another build of xrx, e.g. an older one, against the same nodes)
//   BENCH_BASELINE=/path/xrx.js (a second build run in turn with this one, run by run: two columns)
//   BENCH_XRXD=0               (no "through xrxd" columns: each case is also run handed to an xrxd
//                               started for the benchmark, in turn with the plain runs)
//   BENCH_FORK_HELPER=perl     (the nodes' fork helper, as xcpufs --fork-helper: native, perl or
//                               auto, the default; BENCH_NO_FORK_HELPER=1: spawn())
//   BENCH_ORIGINAL=DIR         (the original C xcpufs, xrx and xuserset: every case is also run by
//                               the original xrx against 64 original xcpufs daemons, in turn with
//                               this build's runs; throwaway keys, the user registered with xuserset)
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  accessSync,
  chmodSync,
  closeSync,
  constants,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { publicKeyLine } from "@clustermatic/ninep/keys";
import {
  makeOriginalKeys,
  type OriginalKeys,
  type OriginalNode,
  originalDir,
  registerOriginalUser,
  startOriginalXcpufs,
  stopOriginal,
} from "../../../tools/bench/original.js";

const PKG = join(dirname(fileURLToPath(import.meta.url)), "..");
const XRX = process.env.BENCH_XRX ?? join(PKG, "dist/bin/xrx.js");
const REPS = Number(process.env.BENCH_REPS ?? 5);
const BASELINE = process.env.BENCH_BASELINE;
const WARMUP = Math.max(0, Number(process.env.BENCH_WARMUP ?? 10));
const XRXD = process.env.BENCH_XRXD !== "0" ? join(dirname(XRX), "xrxd.js") : undefined;
const ORIGINAL = originalDir();

if (!existsSync(XRX)) {
  console.error(`bench: ${XRX} is missing: run "pnpm build" first`);
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), "xrx-bench-"));
const HOSTS = Math.max(1, Number(process.env.BENCH_HOSTS ?? 8));
const nodes: { port: number }[] = [];
const hosts: ChildProcess[] = [];
let xrxd: ChildProcess | undefined;
let xrxdSock: string | undefined;
const originalNodes: OriginalNode[] = [];
let originalKeys: OriginalKeys | undefined;
const cleanup = async () => {
  await Promise.all(originalNodes.map((n) => stopOriginal(n)));
  if (xrxd && xrxd.exitCode === null) {
    const gone = new Promise((r) => xrxd!.once("exit", r));
    xrxd.kill("SIGTERM");
    await gone;
  }
  await Promise.all(
    hosts.map(
      (h) =>
        new Promise((r) => {
          h.once("exit", r);
          h.stdin?.end();
        }),
    ),
  );
  rmSync(work, { recursive: true, force: true });
};

/** Starts a host process with `count` nodes; resolves with their ports. */
function startHost(count: number): Promise<number[]> {
  const child = spawn(
    process.execPath,
    // One V8 worker thread, as xcpufs.service starts a node: its forks copy less.
    [...process.execArgv, "--v8-pool-size=1", join(PKG, "bench/host.ts"), String(count), work],
    {
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  hosts.push(child);
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("\n")) resolve(JSON.parse(out) as number[]);
    });
    child.once("exit", (code) => reject(new Error(`node host exited (${code})`)));
  });
}
process.on("SIGINT", () => {
  void cleanup().then(() => process.exit(130));
});

/** A 1 MiB static program: a static C program padded to 1 MiB when gcc can link statically. */
function makeBinary(): { path: string; what: string } {
  const path = join(work, "mib");
  try {
    writeFileSync(join(work, "t.c"), "int main(void) { return 0; }\n");
    execFileSync("gcc", ["-static", "-O2", "-o", path, join(work, "t.c")], { stdio: "ignore" });
    truncateSync(path, 1024 * 1024); // trailing bytes are ignored by the loader
    return { path, what: "1 MiB static binary (-S)" };
  } catch {
    writeFileSync(path, `#!/bin/sh\nexit 0\n${"#".repeat(1024 * 1024 - 18)}`);
    chmodSync(path, 0o755);
    return { path, what: "1 MiB program (padded script, no static gcc) (-S)" };
  }
}

/** Starts xrxd in the foreground on a socket in the work directory; resolves once it listens. */
function startXrxd(file: string): Promise<string> {
  const sock = join(work, "xrxd.sock");
  xrxd = spawn(file, ["-D", "-s", "-a", sock], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    xrxd!.stdout!.on("data", (d) => {
      out += d;
      if (out.includes("echo xrxd pid")) resolve(sock);
    });
    xrxd!.once("exit", (code) => reject(new Error(`xrxd exited (${code})`)));
  });
}

function runOnce(
  args: string[],
  xrx = XRX,
  viaXrxd = false,
): Promise<{ ms: number; code: number; err: string }> {
  return new Promise((resolve) => {
    // Started as a user's shell starts it (its "#!" line decides), unless it is not executable.
    const [cmd, argv] = isExecutable(xrx) ? [xrx, []] : [process.execPath, [xrx]];
    const t0 = performance.now();
    const child = spawn(cmd, [...argv, "--no-key", ...args], {
      stdio: ["ignore", "ignore", "pipe"],
      // Two builds run in turn would each delete the other's code cache (a cache keeps one build
      // of a command): each gets a cache directory of its own, so both start as they do for a user.
      env: {
        ...process.env,
        ...(BASELINE ? { CLUSTERMATIC_COMPILE_CACHE: cacheDirFor(xrx) } : {}),
        XRXD_SOCK: viaXrxd ? xrxdSock : "",
      },
    });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => resolve({ ms: performance.now() - t0, code: code ?? 1, err }));
  });
}

/**
 * One run of the original xrx against the original nodes (it exits 0 even when a node failed: a
 * message on stderr counts as a failure here). `signal` is set when it died of one.
 */
function runOriginal(args: string[]): Promise<{ ms: number; code: number; err: string; signal?: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(join(ORIGINAL!, "xrx"), ["-k", originalKeys!.userKey, ...args], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code, signal) =>
      resolve({
        ms: performance.now() - t0,
        code: code === 0 && err.trim() !== "" ? 1 : (code ?? 1),
        err,
        signal: signal ?? undefined,
      }),
    );
  });
}

const cacheDirs = new Map<string, string>();
function cacheDirFor(xrx: string): string {
  let dir = cacheDirs.get(xrx);
  if (!dir) {
    dir = join(work, `cache-${cacheDirs.size}`);
    cacheDirs.set(xrx, dir);
  }
  return dir;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    const fd = openSync(path, "r");
    const head = Buffer.alloc(2);
    readSync(fd, head, 0, 2, 0);
    closeSync(fd);
    return head.toString("latin1") === "#!";
  } catch {
    return false;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The node list of the first `n` nodes. */
const list = (n: number, of: readonly { port: number }[] = nodes) =>
  of
    .slice(0, n)
    .map((h) => `127.0.0.1!${h.port}`)
    .join(",");

async function bench(label: string, n: number, args: (nodeList: string) => string[], reps = REPS) {
  await runOnce(args(list(n))); // warm-up
  if (BASELINE) await runOnce(args(list(n)), BASELINE);
  if (xrxdSock) await runOnce(args(list(n)), XRX, true);
  if (ORIGINAL) await runOriginal(args(list(n, originalNodes)));
  const origTimes: number[] = [];
  const origFailures: string[] = [];
  const times: number[] = [];
  const baseTimes: number[] = [];
  const xrxdTimes: number[] = [];
  for (let i = 0; i < reps; i++) {
    const r = await runOnce(args(list(n)));
    if (r.code !== 0) throw new Error(`${label} on ${n} nodes failed (${r.code}): ${r.err}`);
    times.push(r.ms);
    if (BASELINE) {
      const b = await runOnce(args(list(n)), BASELINE);
      if (b.code !== 0) throw new Error(`baseline: ${label} on ${n} nodes failed (${b.code}): ${b.err}`);
      baseTimes.push(b.ms);
    }
    if (xrxdSock) {
      const x = await runOnce(args(list(n)), XRX, true);
      if (x.code !== 0) throw new Error(`through xrxd: ${label} on ${n} nodes failed (${x.code}): ${x.err}`);
      xrxdTimes.push(x.ms);
    }
    // The original xrx sometimes dies of SIGSEGV as it tears its sessions down (its stdin
    // handler writes to a session already freed), and its tree spawn loses nodes ("Text file
    // busy"): such runs are counted, their first message kept, and run again.
    for (let tries = 0; ORIGINAL && tries < 5; tries++) {
      const o = await runOriginal(args(list(n, originalNodes)));
      if (o.signal || o.code !== 0) {
        origFailures.push(o.signal ?? (o.err.trim().split("\n")[0] || `exit ${o.code}`));
        continue;
      }
      origTimes.push(o.ms);
      break;
    }
  }
  const baseline = BASELINE ? median(baseTimes) : undefined;
  const viaXrxd = xrxdSock ? { median: median(xrxdTimes), min: Math.min(...xrxdTimes) } : undefined;
  const original = ORIGINAL
    ? { median: origTimes.length > 0 ? median(origTimes) : undefined, failures: origFailures }
    : undefined;
  return { label, n, median: median(times), min: Math.min(...times), reps, baseline, viaXrxd, original };
}

async function main() {
  // 64 nodes spread over the hosts round-robin, so the first n nodes of a case use min(n, HOSTS) hosts.
  const perHost = await Promise.all(
    Array.from({ length: HOSTS }, (_, i) => startHost(Math.ceil((64 - i) / HOSTS))),
  );
  for (let i = 0; nodes.length < 64; i++) nodes.push({ port: perHost[i % HOSTS]![Math.floor(i / HOSTS)]! });
  if (ORIGINAL) {
    originalKeys = makeOriginalKeys(join(work, "original-keys"), publicKeyLine);
    for (let i = 0; i < 64; i++)
      originalNodes.push(await startOriginalXcpufs(ORIGINAL, join(work, `o${i}`), originalKeys.adminPub));
    registerOriginalUser(ORIGINAL, originalKeys, originalNodes);
  }
  const bin = makeBinary();
  // Baseline in the same run: starting node with an empty script (process start cost).
  const empty = join(work, "empty.mjs");
  writeFileSync(empty, "");
  const startTime = (env: NodeJS.ProcessEnv) => {
    const times: number[] = [];
    for (let i = 0; i < REPS; i++) {
      const t0 = performance.now();
      execFileSync(process.execPath, [empty], { env });
      times.push(performance.now() - t0);
    }
    return median(times);
  };
  const base = startTime(process.env);
  // NODE_EXTRA_CA_CERTS makes every Node process load the certificate file at start.
  const { NODE_EXTRA_CA_CERTS: extraCa, ...noCa } = process.env;
  const baseNoCa = extraCa ? startTime(noCa) : undefined;
  // A node's first launches are its dearest (V8 is still compiling its code); a cluster's nodes
  // run for days. The first run on fresh nodes is printed on its own, then every node is warmed.
  const cold = await runOnce(["-S", list(16), "/bin/true"]);
  if (cold.code !== 0) throw new Error(`first run on 16 fresh nodes failed (${cold.code}): ${cold.err}`);
  for (let i = 0; i < WARMUP; i++) {
    const r = await runOnce(["-S", list(64), "/bin/true"]);
    if (r.code !== 0) throw new Error(`warm-up run failed (${r.code}): ${r.err}`);
  }
  if (XRXD && existsSync(XRXD)) {
    xrxdSock = await startXrxd(XRXD);
    for (let i = 0; i < WARMUP; i++) {
      const r = await runOnce(["-S", list(64), "/bin/true"], XRX, true);
      if (r.code !== 0) throw new Error(`warm-up run through xrxd failed (${r.code}): ${r.err}`);
    }
  }
  const rows = [];
  for (const n of [1, 4, 16, 64]) rows.push(await bench("/bin/true -S", n, (l) => ["-S", l, "/bin/true"]));
  for (const n of [1, 4, 16, 64])
    rows.push(await bench("/bin/true (with its libraries)", n, (l) => [l, "/bin/true"], n === 64 ? 3 : REPS));
  for (const n of [16, 64]) {
    rows.push(await bench(bin.what, n, (l) => ["-S", l, bin.path]));
    rows.push(await bench(`${bin.what}, -n 8`, n, (l) => ["-S", "-n", "8", l, bin.path]));
  }
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(
    `\nxrx wall time, nodes on loopback in ${HOSTS} host processes, median of ${REPS} runs, load average ${load}`,
  );
  console.log(`node start alone (empty script): ${base.toFixed(0)} ms`);
  if (baseNoCa !== undefined)
    console.log(`  (NODE_EXTRA_CA_CERTS is set; without it node starts in ${baseNoCa.toFixed(0)} ms)`);
  console.log(`first run on 16 fresh nodes (/bin/true -S): ${cold.ms.toFixed(0)} ms`);
  console.log(`then ${WARMUP} warm-up runs over all 64 nodes (BENCH_WARMUP) before the table`);
  console.log("");
  if (BASELINE) console.log(`baseline: ${BASELINE}, run in turn with this build`);
  if (xrxdSock)
    console.log(
      "through xrxd: the same xrx handed to a running xrxd (XRXD_SOCK), run in turn with the plain runs",
    );
  const head = ["case", "nodes", "median ms", "min ms"];
  if (BASELINE) head.push("baseline median ms");
  if (xrxdSock) head.push("through xrxd median ms", "through xrxd min ms");
  if (ORIGINAL) head.push("original C xrx and xcpufs median ms");
  console.log(`| ${head.join(" | ")} |`);
  console.log(
    `|---|${head
      .slice(1)
      .map(() => "---:")
      .join("|")}|`,
  );
  for (const r of rows) {
    const cells = [r.label, String(r.n), r.median.toFixed(0), r.min.toFixed(0)];
    if (r.baseline !== undefined) cells.push(r.baseline.toFixed(0));
    if (r.viaXrxd) cells.push(r.viaXrxd.median.toFixed(0), r.viaXrxd.min.toFixed(0));
    if (r.original) {
      const failed = r.original.failures;
      const why = [...new Set(failed)].join("; ");
      const cell = r.original.median === undefined ? "every run failed" : r.original.median.toFixed(0);
      cells.push(
        failed.length > 0
          ? `${cell} (${failed.length} ${failed.length === 1 ? "run" : "runs"} failed: ${why})`
          : cell,
      );
    }
    console.log(`| ${cells.join(" | ")} |`);
  }
  if (ORIGINAL)
    console.log(
      `\noriginal: ${ORIGINAL}/xrx against 64 ${ORIGINAL}/xcpufs daemons on loopback, run in turn with this build;` +
        " a run that failed (it exits 0 then, with a message) or died of a signal was run again, up to 5 times",
    );
  else console.log("\nNo original C xrx/xcpufs given (BENCH_ORIGINAL=DIR): no side-by-side column.");
}

main()
  .then(cleanup)
  .catch(async (err) => {
    console.error(`bench: ${err.message}`);
    await cleanup();
    process.exit(1);
  });
