// Cost of the server framework: Tstat round trips (one at a time and 64 in flight), connection
// setup (Tversion + Tattach) and CPU per round trip, against a baseline server that answers
// every frame with a canned reply (no protocol work) in the same run. Client and server share
// this process, so absolute rates are lower than across processes; compare the two columns.

import net from "node:net";
import { MsgType } from "../src/codec/constants.js";
import { Framer } from "../src/codec/framer.js";
import { encode } from "../src/codec/wire.js";
import { Server, SynthDir, staticFile, treeBackend } from "../src/server/index.js";
import { RawClient } from "../src/testing/raw.js";
import type { Address } from "../src/transport/address.js";

const DURATION_MS = Number(process.env.BENCH_MS ?? 1500);

/** Answers Tversion with Rversion and every other frame with one fixed Rstat, echoing the tag. */
async function startBaseline(): Promise<{ addr: Address; close(): Promise<void> }> {
  const stat = {
    type: 0,
    dev: 0,
    qid: { type: 0x80, version: 0, path: 1n },
    mode: 0x800001ed,
    atime: 0,
    mtime: 0,
    length: 0n,
    name: "/",
    uid: "u",
    gid: "u",
    muid: "",
  };
  const rstat = encode({ type: MsgType.Rstat, tag: 0, stat }, "9P2000");
  const rattach = encode({ type: MsgType.Rattach, tag: 0, qid: stat.qid }, "9P2000");
  const srv = net.createServer((s) => {
    const framer = new Framer({ maxSize: 1 << 20 });
    s.on("error", () => {});
    s.on("data", (chunk) => {
      for (const f of framer.push(chunk)) {
        const type = f[4];
        if (type === MsgType.Tversion) {
          s.write(encode({ type: MsgType.Rversion, tag: 0xffff, msize: 8216, version: "9P2000" }, "9P2000"));
          continue;
        }
        const out = Buffer.from(type === MsgType.Tattach ? rattach : rstat);
        out[5] = f[5]!;
        out[6] = f[6]!;
        s.write(out);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const a = srv.address() as net.AddressInfo;
  return {
    addr: { network: "tcp", host: "127.0.0.1", port: a.port },
    close: () => new Promise((r) => srv.close(() => r())),
  };
}

async function startOurs(): Promise<{ addr: Address; server: Server; close(): Promise<void> }> {
  const root = new SynthDir("/", { mode: 0o755, uid: "u" });
  root.add(staticFile("f", "x"));
  const server = new Server({ backend: treeBackend(root) });
  const addr = await server.listen("tcp!127.0.0.1!0");
  return { addr, server, close: () => server.close(100) };
}

async function attached(addr: Address): Promise<RawClient> {
  const c = await RawClient.connect(addr);
  await c.version(8216, "9P2000");
  await c.attach(0);
  return c;
}

async function sequentialRate(addr: Address): Promise<number> {
  const c = await attached(addr);
  let n = 0;
  const end = Date.now() + DURATION_MS;
  while (Date.now() < end) {
    await c.call({ type: MsgType.Tstat, fid: 0 });
    n++;
  }
  c.destroy();
  return (n * 1000) / DURATION_MS;
}

async function pipelinedRate(addr: Address, depth: number): Promise<number> {
  const c = await attached(addr);
  let n = 0;
  const end = Date.now() + DURATION_MS;
  await Promise.all(
    Array.from({ length: depth }, async () => {
      while (Date.now() < end) {
        await c.call({ type: MsgType.Tstat, fid: 0 });
        n++;
      }
    }),
  );
  c.destroy();
  return (n * 1000) / DURATION_MS;
}

async function setupRate(addr: Address, count: number): Promise<number> {
  const t0 = performance.now();
  const conns = await Promise.all(Array.from({ length: count }, () => attached(addr)));
  const ms = performance.now() - t0;
  for (const c of conns) c.destroy();
  return (count * 1000) / ms;
}

/** CPU (client and server together, this process) per Tstat round trip with 64 in flight. */
async function cpuPerRoundTrip(addr: Address): Promise<number> {
  const c = await attached(addr);
  const n = 20_000;
  let i = 0;
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (i < n) {
        i++;
        await c.call({ type: MsgType.Tstat, fid: 0 });
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  c.destroy();
  return (cpu.user + cpu.system) / n;
}

export async function run(): Promise<void> {
  const base = await startBaseline();
  const ours = await startOurs();
  const rows: [string, string, string][] = [];
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
  rows.push([
    "Tstat round trips/s, 1 in flight",
    fmt(await sequentialRate(base.addr)),
    fmt(await sequentialRate(ours.addr)),
  ]);
  rows.push([
    "Tstat round trips/s, 64 in flight",
    fmt(await pipelinedRate(base.addr, 64)),
    fmt(await pipelinedRate(ours.addr, 64)),
  ]);
  rows.push([
    "connections set up/s (200 at once)",
    fmt(await setupRate(base.addr, 200)),
    fmt(await setupRate(ours.addr, 200)),
  ]);
  // Client and server share the process: the baseline column is mostly the client's share.
  const us = (n: number) => n.toFixed(1);
  rows.push([
    "µs CPU per Tstat round trip, 64 in flight",
    us(await cpuPerRoundTrip(base.addr)),
    us(await cpuPerRoundTrip(ours.addr)),
  ]);
  await base.close();
  await ours.close();
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`${"".padEnd(w)}  ${"baseline".padStart(10)}  ${"server".padStart(10)}`);
  for (const [name, a, b] of rows) console.log(`${name.padEnd(w)}  ${a.padStart(10)}  ${b.padStart(10)}`);
}
