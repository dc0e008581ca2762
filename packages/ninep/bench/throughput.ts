// Throughput and latency of the ninep client against our passthrough server (in a child process,
// so client and server do not share an event loop) and against diod, on loopback:
// bulk read and write at msize 8 KiB, 64 KiB and 1 MiB, stat round trips, and server memory per
// idle connection. Besides wall-clock rates (noisy on a shared machine) each row gives the CPU
// time the server process spent per GiB moved (utime + stime from /proc/PID/stat), which depends
// far less on what else the machine is doing. BENCH_MB sets the file size (default 256),
// BENCH_WINDOW the reads/writes in flight (16), BENCH_STATS the stat round trips (2000).

import { type ChildProcess, spawn } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { Client, Fsys } from "../src/client/index.js";
import { GETATTR } from "../src/codec/index.js";
import { diodUnavailable, startDiod } from "../test/helpers/diod.js";

const here = dirname(fileURLToPath(import.meta.url));

interface Peer {
  name: string;
  address: string;
  pid: number;
  stop(): Promise<void>;
}

async function startOurs(dir: string): Promise<Peer> {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", join(here, "../src/bin/ninep.ts"), "serve", dir, "--listen", "tcp!127.0.0.1!0"],
    { stdio: ["ignore", "pipe", "inherit"], cwd: join(here, "..") },
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
    name: "ninep",
    address,
    pid: child.pid as number,
    stop: () =>
      new Promise((r) => {
        if (child.exitCode !== null) return r();
        child.once("exit", () => r());
        child.kill("SIGTERM");
      }),
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

export async function run(): Promise<void> {
  const mb = Number(process.env.BENCH_MB ?? 256);
  const size = mb * 1024 * 1024;
  const window = Number(process.env.BENCH_WINDOW ?? 16);
  const nstats = Number(process.env.BENCH_STATS ?? 2000);
  const dir = await mkdtemp(join(tmpdir(), "ninep-bench-"));
  await chmod(dir, 0o777);
  const peers: Peer[] = [];
  const load0 = loadavg()[0] ?? 0;
  try {
    const block = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
    await writeFile(join(dir, "src.bin"), Buffer.concat(Array.from({ length: mb }, () => block)));

    peers.push(await startOurs(dir));
    const diodMissing = diodUnavailable();
    if (diodMissing) console.log(`(diod skipped: ${diodMissing})`);
    else {
      const d = await startDiod(dir);
      peers.push({ name: "diod", address: d.address, pid: d.child.pid as number, stop: d.stop });
    }
    const gib = size / 2 ** 30;
    // Measured first: bulk transfers leave buffers and garbage behind that blur the figure.
    const idle = new Map<string, number>();
    for (const p of peers) idle.set(p.name, await idleRss(p, dir, 200));

    console.log(
      `\nninep client throughput on loopback, ${mb} MiB file, 9P2000.L, ${window} in flight` +
        `\n(MB/s = MiB/s wall clock; CPU s/GiB = server process CPU time per GiB moved; the two servers` +
        `\nalternate row by row in the same run)`,
    );
    const rows: string[][] = [
      [
        "op",
        "msize",
        ...peers.map((p) => `${p.name} MB/s`),
        "ours/diod",
        ...peers.map((p) => `${p.name} CPU s/GiB`),
        "msize used",
      ],
    ];
    for (const [label, msize] of [
      ["8 KiB", 8192 + 24],
      ["64 KiB", 65536 + 24],
      ["1 MiB", 1048576 + 24],
    ] as const) {
      for (const op of ["read", "write"] as const) {
        const rates: number[] = [];
        const cpus: string[] = [];
        const used: string[] = [];
        for (const p of peers) {
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
          cpus.push((((await cpuSeconds(p.pid)) - cpu0) / gib).toFixed(2));
          if (op === "write") await fs.remove(`dst-${p.name}.bin`);
          used.push(String(fs.client.msize));
          rates.push(rate);
          await fs.close();
        }
        rows.push([
          op,
          label,
          ...rates.map((r) => r.toFixed(1)),
          rates.length === 2 ? ((rates[0] as number) / (rates[1] as number)).toFixed(2) : "-",
          ...cpus,
          used.join("/"),
        ]);
      }
    }
    printTable(rows);

    console.log(
      `\nstat round trip (Tgetattr on an open connection, ${nstats} sequential calls after 200 warm-up;` +
        "\nCPU µs/call = server process CPU time per call)",
    );
    const lat: string[][] = [["server", "median µs", "p99 µs", "CPU µs/call"]];
    for (const p of peers) {
      const fs = await mount(p.address, 65536 + 24, dir);
      await statLatency(fs, "src.bin", 200); // warm-up
      const cpu0 = await cpuSeconds(p.pid);
      const l = await statLatency(fs, "src.bin", nstats);
      const cpu = (await cpuSeconds(p.pid)) - cpu0;
      lat.push([p.name, l.median.toFixed(0), l.p99.toFixed(0), ((cpu / nstats) * 1e6).toFixed(0)]);
      await fs.close();
    }
    printTable(lat);

    console.log("\nserver RSS per idle connection (200 attached connections, after a first round of 200)");
    const mem: string[][] = [["server", "bytes/connection"]];
    for (const p of peers) mem.push([p.name, (idle.get(p.name) ?? Number.NaN).toFixed(0)]);
    printTable(mem);
    console.log(
      `\nload average (1 min) ${load0.toFixed(1)} at the start, ${(loadavg()[0] ?? 0).toFixed(1)} at the end, ` +
        `${cpus().length} CPUs`,
    );
  } finally {
    for (const p of peers) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function printTable(rows: string[][]): void {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i] ?? 0)).join("  "));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run();
