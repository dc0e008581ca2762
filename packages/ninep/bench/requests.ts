// Server CPU and latency per 9P request on a synthetic tree (bench/tree-server.ts in a child
// process, bundled by esbuild as the package build bundles a bin), 9P2000.u over TCP loopback:
// - mix: the requests a launch makes of the xcpufs tree, one at a time: walk, open, read or write,
//   clunk of clone, argv, env, ctl and wait, then a Tstat of the root (21 requests per launch);
// - mix x8: eight such launches at once on one connection (CPU only);
// - stat: sequential Tstat round trips of the root.
// Server CPU is the child's CPU time (every thread, from /proc/PID/task/*/schedstat, in ns) per
// request. The client is a minimal one written here, the same for every server. "floor" is a bare
// Node socket server answering every request with a canned reply: what Node and the kernel cost
// per request before any protocol work.
//
// BENCH_BASE=<another checkout>/packages/ninep measures that tree's server as "base" in the same
// run. The servers take turns batch by batch (a batch is ~10-20 ms of work), so load from
// elsewhere on a shared machine falls on all of them alike; the table shows medians over the
// batches (CPU) and over all calls (latency), then the paired per-batch differences to the base.
// Knobs: BENCH_BATCHES per workload and server (default 60), BENCH_ONLY a comma list of workloads
// (mix, mix x8, stat), BENCH_SERVER_FLAGS extra node flags for the servers (e.g. "--cpu-prof
// --cpu-prof-dir=/tmp/p").

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Dialect, MsgType, NOFID, OREAD, OTRUNC, OWRITE } from "../src/codec/constants.js";
import { Framer } from "../src/codec/framer.js";
import type { TMessage } from "../src/codec/types.js";
import { type DistributiveOmit, decode, encodeTagged } from "../src/codec/wire.js";
import { BUNDLE_OPTIONS, stopChild } from "./child.js";

const here = dirname(fileURLToPath(import.meta.url));
const BATCHES = Number(process.env.BENCH_BATCHES ?? 60);
const DIALECT = Dialect.P2000u;

/** bench/tree-server.ts bundled with its `../src/` imports resolved in package root `pkg`. */
async function bundle(pkg: string, out: string, entry = "serve"): Promise<string> {
  const esbuild = await import("esbuild");
  const serverScript = join(here, "tree-server.ts");
  await esbuild.build({
    stdin: {
      contents: `import { ${entry} } from ${JSON.stringify(serverScript)}; await ${entry}();`,
      resolveDir: here,
      loader: "ts",
    },
    outfile: out,
    ...BUNDLE_OPTIONS,
    plugins: [
      {
        name: "tree-under-test",
        setup(b) {
          b.onResolve({ filter: /^\.\.\/src\// }, (args) =>
            args.importer === serverScript
              ? { path: resolve(pkg, args.path.slice(3)).replace(/\.js$/, ".ts") }
              : undefined,
          );
        },
      },
    ],
  });
  return out;
}

interface Peer {
  name: string;
  address: { host: string; port: number };
  pid: number;
  stop(): Promise<void>;
}

async function start(name: string, bundled: string): Promise<Peer> {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const flags = process.env.BENCH_SERVER_FLAGS?.split(" ").filter(Boolean) ?? [];
  const child: ChildProcess = spawn(process.execPath, [...flags, bundled], {
    stdio: ["ignore", "pipe", "inherit"],
    env,
  });
  const port = await new Promise<number>((res, rej) => {
    let out = "";
    child.stdout?.on("data", (d) => {
      out += d;
      const m = /listening on tcp!127\.0\.0\.1!(\d+)/.exec(out);
      if (m) res(Number(m[1]));
    });
    child.once("exit", (code) => rej(new Error(`${name} server exited with ${code}: ${out}`)));
  });
  return {
    name,
    address: { host: "127.0.0.1", port },
    pid: child.pid as number,
    stop: stopChild(child),
  };
}

/** CPU time in ns of every thread of process `pid` (the first field of each task's schedstat). */
async function cpuNs(pid: number): Promise<number> {
  let sum = 0;
  for (const t of await readdir(`/proc/${pid}/task`)) {
    try {
      sum += Number((await readFile(`/proc/${pid}/task/${t}/schedstat`, "utf8")).split(" ")[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return sum;
}

type Req = DistributiveOmit<TMessage, "tag">;

/** A minimal 9P client: one pending reply per tag, replies checked by type only. */
class Conn {
  #sock: net.Socket;
  #framer = new Framer({ maxSize: 1 << 20 });
  #waiting = new Map<number, { type: number; resolve(f: Buffer): void; reject(e: Error): void }>();
  #tag = 0;

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.setNoDelay(true);
    sock.on("data", (chunk: Buffer) => {
      for (const f of this.#framer.push(chunk)) {
        const tag = f.readUInt16LE(5);
        const w = this.#waiting.get(tag);
        if (!w) continue;
        this.#waiting.delete(tag);
        if (f[4] === w.type) w.resolve(f);
        else w.reject(new Error(`unexpected reply ${JSON.stringify(decode(f, DIALECT))}`));
      }
    });
  }

  static async open(addr: { host: string; port: number }): Promise<Conn> {
    const sock = net.connect(addr.port, addr.host);
    await new Promise<void>((res, rej) => {
      sock.once("connect", res);
      sock.once("error", rej);
    });
    const c = new Conn(sock);
    await c.call({ type: MsgType.Tversion, msize: 65560, version: DIALECT }, 0xffff);
    await c.call({ type: MsgType.Tattach, fid: 0, afid: NOFID, uname: "bench", aname: "", n_uname: 1000 });
    return c;
  }

  call(msg: Req, tag?: number): Promise<Buffer> {
    const t = tag ?? (this.#tag = (this.#tag + 1) & 0x7fff);
    return new Promise((res, rej) => {
      this.#waiting.set(t, { type: msg.type + 1, resolve: res, reject: rej });
      this.#sock.write(encodeTagged(msg, t, DIALECT));
    });
  }

  close(): void {
    this.#sock.destroy();
  }
}

/** One launch's requests on fids base+1..base+5; each round trip's time goes to `times` (ms). */
async function launch(c: Conn, base: number, times?: number[]): Promise<void> {
  const rt = async (m: Req): Promise<Buffer> => {
    const t0 = performance.now();
    const f = await c.call(m);
    times?.push(performance.now() - t0);
    return f;
  };
  const file = async (fid: number, path: string[], mode: number, data?: string): Promise<void> => {
    await rt({ type: MsgType.Twalk, fid: 0, newfid: fid, wname: path });
    await rt({ type: MsgType.Topen, fid, mode });
    if (data === undefined) await rt({ type: MsgType.Tread, fid, offset: 0n, count: 8168 });
    else await rt({ type: MsgType.Twrite, fid, offset: 0n, data: Buffer.from(data) });
    await rt({ type: MsgType.Tclunk, fid });
  };
  await file(base + 1, ["clone"], OREAD);
  await file(base + 2, ["0", "argv"], OWRITE | OTRUNC, "/bin/true -v x");
  await file(base + 3, ["0", "env"], OWRITE | OTRUNC, "PATH=/bin:/usr/bin\nHOME=/\n");
  await file(base + 4, ["0", "ctl"], OWRITE, "exec\n");
  await file(base + 5, ["0", "wait"], OREAD);
  await rt({ type: MsgType.Tstat, fid: 0 });
}
const PER_LAUNCH = 21;

/** A measured workload: `unit` makes `reqs` requests (pushing round-trip times, in ms, to `times`). */
interface Work {
  name: string;
  reqs: number;
  /** Units per batch. */
  batch: number;
  unit(c: Conn, times: number[]): Promise<void>;
}

const WORKS: Work[] = [
  { name: "mix", reqs: PER_LAUNCH, batch: 10, unit: (c, times) => launch(c, 0, times) },
  {
    name: "mix x8",
    reqs: 8 * PER_LAUNCH,
    batch: 2,
    unit: async (c) => {
      await Promise.all(Array.from({ length: 8 }, (_, k) => launch(c, 10 * (k + 1))));
    },
  },
  {
    name: "stat",
    reqs: 1,
    batch: 200,
    unit: async (c, times) => {
      const t0 = performance.now();
      await c.call({ type: MsgType.Tstat, fid: 0 });
      times.push(performance.now() - t0);
    },
  },
];

/** Per server and workload: CPU µs per request of each batch, and every round-trip time (ms). */
type Results = Map<string, Map<string, { cpu: number[]; times: number[] }>>;

/**
 * Runs every workload in batches, the servers taking turns batch by batch (the first one
 * rotating), so that a burst of load elsewhere on the machine falls on all of them alike.
 */
const only = process.env.BENCH_ONLY?.split(",");

async function measure(peers: Peer[], conns: Conn[], batches: number, out?: Results): Promise<void> {
  for (const w of WORKS) {
    if (only && !only.includes(w.name)) continue;
    for (let b = 0; b < batches; b++) {
      for (let k = 0; k < peers.length; k++) {
        const i = (b + k) % peers.length;
        const p = peers[i] as Peer;
        const times: number[] = [];
        const cpu0 = await cpuNs(p.pid);
        for (let u = 0; u < w.batch; u++) await w.unit(conns[i] as Conn, times);
        const cpu = ((await cpuNs(p.pid)) - cpu0) / 1000 / (w.batch * w.reqs);
        const r = out?.get(p.name)?.get(w.name);
        r?.cpu.push(cpu);
        r?.times.push(...times);
      }
    }
  }
}

const quantile = (v: number[], q: number): number => {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))] ?? Number.NaN;
};

export async function run(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "ninep-bench-req-"));
  const peers: Peer[] = [];
  const conns: Conn[] = [];
  const load0 = loadavg()[0] ?? 0;
  try {
    peers.push(await start("ninep", await bundle(join(here, ".."), join(work, "ours.mjs"))));
    const base = process.env.BENCH_BASE;
    if (base) peers.push(await start("base", await bundle(resolve(base), join(work, "base.mjs"))));
    const canned = await bundle(join(here, ".."), join(work, "floor.mjs"), "serveCanned");
    peers.push(await start("floor", canned));
    for (const p of peers) conns.push(await Conn.open(p.address));
    // Warm-up: the request path is compiled by V8's optimising compiler after thousands of calls.
    await measure(peers, conns, 15);
    const results: Results = new Map(
      peers.map((p) => [p.name, new Map(WORKS.map((w) => [w.name, { cpu: [], times: [] }]))]),
    );
    await measure(peers, conns, BATCHES, results);

    const f1 = (n: number) => (Number.isNaN(n) ? "-" : n.toFixed(1));
    const median = (v: number[]) => quantile(v, 0.5);
    const rows: string[][] = [
      [
        "server",
        "mix median µs",
        "mix p99 µs",
        "mix CPU µs/req",
        "mix x8 CPU µs/req",
        "stat median µs",
        "stat p99 µs",
        "stat CPU µs/req",
      ],
    ];
    for (const p of peers) {
      const r = (w: string) => results.get(p.name)?.get(w) ?? { cpu: [], times: [] };
      rows.push([
        p.name,
        f1(median(r("mix").times) * 1000),
        f1(quantile(r("mix").times, 0.99) * 1000),
        f1(median(r("mix").cpu)),
        f1(median(r("mix x8").cpu)),
        f1(median(r("stat").times) * 1000),
        f1(quantile(r("stat").times, 0.99) * 1000),
        f1(median(r("stat").cpu)),
      ]);
    }
    console.log(
      `\nserver cost per request, synthetic tree, 9P2000.u, ${BATCHES} batches per workload and server` +
        ` (mix: ${WORKS[0]?.batch} launches of ${PER_LAUNCH} requests one at a time; mix x8: 8 launches at` +
        ` once, twice; stat: 200 Tstats), the servers taking turns batch by batch` +
        "\n(latency: over all calls; CPU: median over the batches of the server process's CPU time per request)",
    );
    printTable(rows);
    if (base) {
      console.log("\nserver CPU µs/request, ninep − base, paired batches: median (quartiles)");
      for (const w of WORKS) {
        if (only && !only.includes(w.name)) continue;
        const o = results.get("ninep")?.get(w.name)?.cpu ?? [];
        const b = results.get("base")?.get(w.name)?.cpu ?? [];
        const d = o.map((x, i) => x - (b[i] ?? Number.NaN));
        console.log(
          `${w.name.padStart(6)}: ${f1(median(d))} (${f1(quantile(d, 0.25))} … ${f1(quantile(d, 0.75))})`,
        );
      }
    }
    console.log(
      `load average (1 min) ${load0.toFixed(1)} at the start, ${(loadavg()[0] ?? 0).toFixed(1)} at the end`,
    );
  } finally {
    for (const c of conns) c.close();
    for (const p of peers) await p.stop();
    await rm(work, { recursive: true, force: true });
  }
}

function printTable(rows: string[][]): void {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) console.log(r.map((c, i) => c.padStart(widths[i] ?? 0)).join("  "));
}
