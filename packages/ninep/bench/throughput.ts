// Throughput and latency of the ninep client against our passthrough server (in a child process,
// so client and server do not share an event loop) and against diod, on loopback:
// bulk read and write at msize 8 KiB, 64 KiB and 1 MiB, stat round trips, and server memory per
// idle connection. Besides wall-clock rates (noisy on a shared machine) each row gives the CPU
// time the server process spent per GiB moved (utime + stime from /proc/PID/stat), which depends
// far less on what else the machine is doing.
//
// Our server runs as it is installed: src/bin/ninep.ts bundled by esbuild (BENCH_SOURCE=1 runs
// the TypeScript through tsx instead, which adds its own per-closure costs). Every server is
// warmed up first (untimed 16 MiB reads and writes and BENCH_WARM_STATS stats, default 10000, at
// msize 8 and 64 KiB) so that JIT compilation is not counted.
// Each bulk row runs BENCH_REPEAT times (default: once per server), the servers in a rotated order
// each time (the first one after a write pays for the kernel's leftovers), and shows the means.
// Knobs: BENCH_MB file size (default 256), BENCH_WINDOW reads/writes in flight (16), BENCH_STATS
// stat round trips per round (2000; 3 rounds, servers alternating), BENCH_ONLY a comma list of
// idle,bulk,stat (default all), BENCH_BASE a second ninep entry point (.ts or bundled .mjs/.js,
// e.g. an older checkout) measured as "base" in the same run (BENCH_BASE_FIRST=1: base first).

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { Client, Fsys } from "../src/client/index.js";
import { GETATTR } from "../src/codec/index.js";
import { diodUnavailable, startDiod } from "../test/helpers/diod.js";
import { BUNDLE_OPTIONS, stopChild } from "./child.js";

const here = dirname(fileURLToPath(import.meta.url));

interface Peer {
  name: string;
  address: string;
  pid: number;
  stop(): Promise<void>;
}

/** A server entry point (ours: src/bin/ninep.ts) bundled the way the package build bundles it. */
async function bundleServer(entry: string, outDir: string): Promise<string> {
  const esbuild = await import("esbuild");
  await mkdir(outDir, { recursive: true });
  const out = join(outDir, "ninep.mjs");
  await esbuild.build({
    entryPoints: [entry],
    outfile: out,
    ...BUNDLE_OPTIONS,
  });
  return out;
}

async function startOurs(name: string, bin: string, dir: string): Promise<Peer> {
  const args = bin.endsWith(".ts") ? ["--import", "tsx", bin] : [bin];
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS; // adds ~90 ms to a Node start, nothing per request
  const child: ChildProcess = spawn(
    process.execPath,
    [...args, "serve", dir, "--listen", "tcp!127.0.0.1!0"],
    {
      stdio: ["ignore", "pipe", "inherit"],
      cwd: join(here, ".."),
      env,
    },
  );
  const address = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d) => {
      out += d;
      const m = /on (tcp!\S+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
    child.once("exit", (code) => reject(new Error(`ninep serve exited with ${code}: ${out}`)));
  });
  return {
    name,
    address,
    pid: child.pid as number,
    stop: stopChild(child),
  };
}

/** CPU seconds (user + system) used so far by process `pid`; /proc counts in 1/100 s. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
}

async function mount(address: string, msize: number, root: string): Promise<Fsys> {
  const client = await Client.connect(address, { version: "9P2000.L", msize });
  return new Fsys(client, await client.attach("root", root), { ownsClient: true });
}

function mbps(bytes: number, ms: number): number {
  return bytes / (1024 * 1024) / (ms / 1000);
}

async function timeRead(fs: Fsys, path: string, window: number): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  let bytes = 0;
  await pipeline(
    fs.createReadStream(path, { window }),
    new Writable({
      write(chunk: Buffer, _e, cb) {
        bytes += chunk.length;
        cb();
      },
    }),
  );
  return { ms: performance.now() - t0, bytes };
}

async function timeWrite(fs: Fsys, path: string, size: number, window: number): Promise<number> {
  const block = Buffer.alloc(1024 * 1024, 0x5a);
  const t0 = performance.now();
  await pipeline(
    (async function* () {
      for (let done = 0; done < size; done += block.length)
        yield block.subarray(0, Math.min(block.length, size - done));
    })(),
    fs.createWriteStream(path, { window }),
  );
  return performance.now() - t0;
}

async function statLatency(
  fs: Fsys,
  path: string,
  n: number,
): Promise<{ median: number; p99: number; times: number[] }> {
  const fid = await fs.walk(path);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fid.getattr(GETATTR.BASIC);
    times.push(performance.now() - t0);
  }
  await fid.clunk();
  times.sort((a, b) => a - b);
  return {
    median: (times[Math.floor(n / 2)] ?? 0) * 1000,
    p99: (times[Math.floor(n * 0.99)] ?? 0) * 1000,
    times,
  };
}

/**
 * RSS growth per idle attached connection: one round of `count` connections first (so that code
 * compiled and memory reserved on first use is not counted), then `count` more kept open.
 */
async function idleRss(peer: Peer, root: string, count: number): Promise<number> {
  const open = async (): Promise<Client[]> => {
    const clients: Client[] = [];
    for (let i = 0; i < count; i++) {
      const c = await Client.connect(peer.address, { version: "9P2000.L", msize: 65536 + 24 });
      await c.attach("root", root);
      clients.push(c);
    }
    return clients;
  };
  for (const c of await open()) c.destroy();
  await new Promise((r) => setTimeout(r, 500));
  const before = await rssKiB(peer.pid);
  const clients = await open();
  await new Promise((r) => setTimeout(r, 500));
  const after = await rssKiB(peer.pid);
  for (const c of clients) c.destroy();
  return ((after - before) * 1024) / count;
}

/** Untimed work so that JIT compilation and first-use allocations are not measured. */
/** Untimed stat calls per warm-up connection: the server's request path is only fully optimised after thousands. */
const WARM_STATS = Number(process.env.BENCH_WARM_STATS ?? 10000);

async function warmUp(peer: Peer, dir: string): Promise<void> {
  for (const msize of [8192 + 24, 65536 + 24]) {
    const fs = await mount(peer.address, msize, dir);
    await timeRead(fs, "warm.bin", 16);
    await timeWrite(fs, "warm-w.bin", 16 * 1024 * 1024, 16);
    await statLatency(fs, "warm.bin", WARM_STATS);
    await fs.remove("warm-w.bin");
    await fs.close();
  }
}

export async function run(): Promise<void> {
  const mb = Number(process.env.BENCH_MB ?? 256);
  const size = mb * 1024 * 1024;
  const window = Number(process.env.BENCH_WINDOW ?? 16);
  const nstats = Number(process.env.BENCH_STATS ?? 2000);
  const only = new Set((process.env.BENCH_ONLY ?? "idle,bulk,stat").split(","));
  const dir = await mkdtemp(join(tmpdir(), "ninep-bench-"));
  const work = await mkdtemp(join(tmpdir(), "ninep-bench-bin-"));
  await chmod(dir, 0o777);
  const peers: Peer[] = [];
  const load0 = loadavg()[0] ?? 0;
  try {
    const block = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
    await writeFile(join(dir, "src.bin"), Buffer.concat(Array.from({ length: mb }, () => block)));
    await writeFile(join(dir, "warm.bin"), Buffer.concat(Array.from({ length: 16 }, () => block)));

    const ours =
      process.env.BENCH_SOURCE === "1"
        ? join(here, "../src/bin/ninep.ts")
        : await bundleServer(join(here, "../src/bin/ninep.ts"), work);
    peers.push(await startOurs("ninep", ours, dir));
    const base = process.env.BENCH_BASE;
    if (base) {
      let bin = base;
      if (base.endsWith(".ts") && process.env.BENCH_SOURCE !== "1") {
        // Bundle the other tree's entry point the same way.
        bin = await bundleServer(base, join(work, "base"));
      }
      const b = await startOurs("base", bin, dir);
      // BENCH_BASE_FIRST=1: the base goes first in every row (to see what the order costs).
      if (process.env.BENCH_BASE_FIRST === "1") peers.unshift(b);
      else peers.push(b);
    }
    const diodMissing = diodUnavailable();
    if (diodMissing) console.log(`(diod skipped: ${diodMissing})`);
    else {
      const d = await startDiod(dir);
      peers.push({ name: "diod", address: d.address, pid: d.child.pid as number, stop: d.stop });
    }
    // As many runs per row as servers: each one goes first once.
    const repeat = Number(process.env.BENCH_REPEAT ?? peers.length);
    const diodIndex = peers.findIndex((p) => p.name === "diod");
    const ratio = (values: number[], i: number, higherIsBetter: boolean): string => {
      if (diodIndex < 0) return "-";
      const r = (values[i] as number) / (values[diodIndex] as number);
      return (higherIsBetter ? r : 1 / r).toFixed(2);
    };
    const ratioHeads = peers.filter((p) => p.name !== "diod").map((p) => `${p.name}/diod`);
    const ratioCells = (values: number[], higherIsBetter: boolean) =>
      peers.flatMap((p, i) => (p.name === "diod" ? [] : [ratio(values, i, higherIsBetter)]));
    const gib = size / 2 ** 30;
    // Measured first: bulk transfers leave buffers and garbage behind that blur the figure.
    const idle = new Map<string, number>();
    if (only.has("idle")) for (const p of peers) idle.set(p.name, await idleRss(p, dir, 200));
    for (const p of peers) await warmUp(p, dir);

    if (only.has("bulk")) {
      console.log(
        `\nninep client throughput on loopback, ${mb} MiB file, 9P2000.L, ${window} in flight` +
          `\n(MB/s = MiB/s wall clock; CPU s/GiB = server process CPU time per GiB moved; means of ${repeat}` +
          `\nruns per row, the servers in a different order each time, all in the same run)`,
      );
      const rows: string[][] = [
        [
          "op",
          "msize",
          ...peers.map((p) => `${p.name} MB/s`),
          ...ratioHeads,
          ...peers.map((p) => `${p.name} CPU s/GiB`),
          "msize used",
        ],
      ];
      let rowIndex = 0;
      for (const [label, msize] of [
        ["8 KiB", 8192 + 24],
        ["64 KiB", 65536 + 24],
        ["1 MiB", 1048576 + 24],
      ] as const) {
        for (const op of ["read", "write"] as const) {
          // Whoever goes first after a write pays for the kernel's leftover work (writeback,
          // freeing the removed file's pages): each row is run `repeat` times with the servers
          // in a different order each time, and the figures are the means.
          const rateSum = peers.map(() => 0);
          const cpuSum = peers.map(() => 0);
          const used: string[] = peers.map(() => "");
          for (let rep = 0; rep < repeat; rep++) {
            const shift = (rowIndex + rep) % peers.length;
            for (let k = 0; k < peers.length; k++) {
              const i = (k + shift) % peers.length;
              const p = peers[i] as Peer;
              const fs = await mount(p.address, msize, dir);
              const cpu0 = await cpuSeconds(p.pid);
              let rate: number;
              if (op === "read") {
                const r = await timeRead(fs, "src.bin", window);
                if (r.bytes !== size) throw new Error(`${p.name}: read ${r.bytes} of ${size} bytes`);
                rate = mbps(r.bytes, r.ms);
              } else {
                rate = mbps(size, await timeWrite(fs, `dst-${p.name}.bin`, size, window));
              }
              cpuSum[i] = (cpuSum[i] ?? 0) + ((await cpuSeconds(p.pid)) - cpu0) / gib;
              if (op === "write") {
                await fs.remove(`dst-${p.name}.bin`);
                // Flush what the kernel still owes for that file before the next server runs.
                execFileSync("sync");
              }
              used[i] = String(fs.client.msize);
              rateSum[i] = (rateSum[i] ?? 0) + rate;
              await fs.close();
            }
          }
          rowIndex++;
          const rates = rateSum.map((r) => r / repeat);
          const cpus = cpuSum.map((c) => (c / repeat).toFixed(2));
          rows.push([
            op,
            label,
            ...rates.map((r) => r.toFixed(1)),
            ...ratioCells(rates, true),
            ...cpus,
            used.join("/"),
          ]);
        }
      }
      printTable(rows);
    }

    if (only.has("stat")) {
      const rounds = 3;
      console.log(
        `\nstat round trip (Tgetattr on an open connection; ${rounds} rounds of ${nstats} sequential calls,` +
          "\nthe servers alternating; CPU µs/call = server process CPU time per call)",
      );
      const times = new Map<string, number[]>(peers.map((p) => [p.name, []]));
      const cpu = new Map<string, number>(peers.map((p) => [p.name, 0]));
      for (let round = 0; round < rounds; round++) {
        for (const p of peers) {
          const fs = await mount(p.address, 65536 + 24, dir);
          await statLatency(fs, "src.bin", 200); // this connection's first calls
          const cpu0 = await cpuSeconds(p.pid);
          const l = await statLatency(fs, "src.bin", nstats);
          cpu.set(p.name, (cpu.get(p.name) ?? 0) + (await cpuSeconds(p.pid)) - cpu0);
          times.get(p.name)?.push(...l.times);
          await fs.close();
        }
      }
      const lat: string[][] = [["server", "median µs", "p99 µs", "CPU µs/call"]];
      const medians: number[] = [];
      for (const p of peers) {
        const t = (times.get(p.name) ?? []).sort((a, b) => a - b);
        const median = (t[Math.floor(t.length / 2)] ?? 0) * 1000;
        medians.push(median);
        lat.push([
          p.name,
          median.toFixed(0),
          ((t[Math.floor(t.length * 0.99)] ?? 0) * 1000).toFixed(0),
          (((cpu.get(p.name) ?? 0) / (nstats * rounds)) * 1e6).toFixed(0),
        ]);
      }
      printTable(lat);
      if (diodIndex >= 0) {
        const r = ratioCells(medians, true).join(", ");
        console.log(`median latency ${ratioHeads.join(", ")} (above 1 = slower): ${r}`);
      }
    }

    if (only.has("idle")) {
      console.log("\nserver RSS per idle connection (200 attached connections, after a first round of 200)");
      const mem: string[][] = [["server", "bytes/connection"]];
      for (const p of peers) mem.push([p.name, (idle.get(p.name) ?? Number.NaN).toFixed(0)]);
      printTable(mem);
    }
    console.log(
      `\nload average (1 min) ${load0.toFixed(1)} at the start, ${(loadavg()[0] ?? 0).toFixed(1)} at the end, ` +
        `${cpus().length} CPUs`,
    );
  } finally {
    for (const p of peers) await p.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

function printTable(rows: string[][]): void {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i] ?? 0)).join("  "));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run();
