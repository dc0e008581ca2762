// statfs benchmark: 1,000 configured nodes (16 real xcpufs nodes in a child process, the rest
// loopback ports where nothing listens), polled every 5 s with the real 9P connector.
// Prints: wall time of a full poll round, CPU time per node per poll, memory per configured node,
// and a baseline in the same run (plain TCP connects to the same 1,000 addresses, same concurrency).

import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { loadConfig } from "../src/config.js";
import { Monitor } from "../src/monitor.js";
import { XcpufsConnector } from "../src/xcpufs-session.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const TOTAL = Number(process.env.STATFS_BENCH_NODES ?? 1000);
const REAL = 16;
const INTERVAL = 5000;

async function deadPorts(n: number): Promise<number[]> {
  const out: number[] = [];
  const servers: net.Server[] = [];
  // Hold them all open while choosing, so no port is picked twice, then release.
  for (let i = 0; i < n; i++) {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    out.push((s.address() as net.AddressInfo).port);
    servers.push(s);
  }
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return out;
}

async function baselineConnects(addrs: (readonly [string, number])[], concurrency: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < addrs.length) {
      const [host, port] = addrs[next++]!;
      await new Promise<void>((resolve) => {
        const s = net.connect({ host, port });
        s.once("connect", () => {
          s.destroy();
          resolve();
        });
        s.once("error", () => resolve());
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return performance.now() - t0;
}

const fmt = (n: number, d = 1) => n.toFixed(d);

async function main() {
  const dir = await mkdtemp(join(tmpdir(), "statfs-bench-"));
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pubFile = join(dir, "admin_key.pub");
  await writeFile(pubFile, publicKey.export({ type: "spki", format: "pem" }));
  const child = spawn(
    process.execPath,
    [
      "--conditions=@clustermatic/source",
      "--import",
      "tsx",
      join(import.meta.dirname, "nodes.ts"),
      String(REAL),
      pubFile,
      dir,
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  try {
    const realPorts: number[] = await new Promise((resolve, reject) => {
      let buf = "";
      child.stdout!.setEncoding("utf8").on("data", (d: string) => {
        buf += d;
        if (buf.includes("\n")) resolve(JSON.parse(buf));
      });
      child.on("exit", (c) => reject(new Error(`node process exited with ${c}`)));
    });
    const dead = await deadPorts(TOTAL - REAL);
    // Real nodes spread through the list.
    const lines: string[] = [];
    let d = 0;
    const step = Math.floor(TOTAL / REAL);
    for (let i = 0; i < TOTAL; i++) {
      const real = i % step === 0 && i / step < REAL;
      // Unreachable nodes use other loopback addresses (127.77.x.y), where no test server listens.
      const host = real ? "127.0.0.1" : `127.77.${d >> 7}.${(d & 127) + 1}`;
      const port = real ? realPorts[i / step]! : dead[d++]!;
      lines.push(`n${String(i + 1).padStart(4, "0")}=tcp!${host}!${port}`);
    }
    const conf = join(dir, "statfs.conf");
    await writeFile(conf, `${lines.join("\n")}\n`);
    const config = await loadConfig(conf);
    config.poll.intervalMs = INTERVAL;

    const base = await baselineConnects(
      config.nodes.map((n) => [n.host, n.port] as const),
      config.poll.concurrency,
    );

    gc();
    const heap0 = process.memoryUsage().heapUsed;
    const rss0 = process.memoryUsage().rss;
    const mon = new Monitor(config, { connector: new XcpufsConnector({ key: privateKey }) });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const wall0 = Date.now();
    mon.start();
    // First full round (includes the 16 logins).
    while (mon.lastRoundMs < 0) await new Promise((r) => setTimeout(r, 5));
    const firstRound = mon.lastRoundMs;
    const doneAt = (real: boolean) =>
      Math.max(
        ...mon
          .nodes()
          .filter((n) => (n.config.host === "127.0.0.1") === real)
          .map((n) => n.since),
      ) - wall0;
    const deadDone = doneAt(false);
    const realDone = doneAt(true);
    const cpuFirst = process.cpuUsage(cpu0);
    // Steady state: 2 more intervals.
    const polls0 = mon.nodes().reduce((a, n) => a + n.polls, 0);
    const wait0 = [...mon.queueWait.counts];
    const cpu1 = process.cpuUsage();
    const t1 = performance.now();
    await new Promise((r) => setTimeout(r, 2 * INTERVAL));
    const cpuSteady = process.cpuUsage(cpu1);
    const wallSteady = performance.now() - t1;
    const polls = mon.nodes().reduce((a, n) => a + n.polls, 0) - polls0;
    const upPolls = mon.nodes().filter((n) => n.polled.toString() === "up");
    const waitDelta = mon.queueWait.counts.map((c, i) => c - wait0[i]!);
    // Buckets: ..., 0.005, 0.01 (index 3), ...: polls that waited more than 10 ms for a slot.
    const waitedLong = waitDelta.slice(4).reduce((a, b) => a + b, 0);
    const realLatency = mon
      .nodes()
      .filter((n) => n.polled.toString() === "up")
      .map((n) => n.lastPollMs)
      .sort((a, b) => a - b);
    gc();
    const heap1 = process.memoryUsage().heapUsed;
    const rss1 = process.memoryUsage().rss;
    const up = upPolls.length;
    await mon.stop();
    void t0;

    // Same 16 real nodes alone, 1 s interval for 5 s: the cost of one poll of a node that is up.
    const realConf = join(dir, "real.conf");
    await writeFile(realConf, realPorts.map((p, i) => `r${i}=tcp!127.0.0.1!${p}`).join("\n") + "\n");
    const rc = await loadConfig(realConf);
    rc.poll = { ...rc.poll, intervalMs: 1000, connectTimeoutMs: 1000, readTimeoutMs: 1000 };
    const m2 = new Monitor(rc, { connector: new XcpufsConnector({ key: privateKey }) });
    m2.start();
    while (m2.lastRoundMs < 0) await new Promise((r) => setTimeout(r, 5));
    const p2a = m2.nodes().reduce((a, n) => a + n.polls, 0);
    const c2 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 5000));
    const cpuReal = process.cpuUsage(c2);
    const p2 = m2.nodes().reduce((a, n) => a + n.polls, 0) - p2a;
    await m2.stop();

    const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;
    const rows: [string, string][] = [
      ["configured nodes (real / unreachable)", `${TOTAL} (${REAL} / ${TOTAL - REAL})`],
      ["nodes up after the first round", `${up}`],
      ["baseline: plain TCP connect to all addresses", `${fmt(base)} ms`],
      [
        "first full poll round (connect + login + poll)",
        `${fmt(firstRound)} ms (${fmt(firstRound / base, 1)}x baseline)`,
      ],
      ["  of which: all unreachable nodes polled once", `${fmt(deadDone, 0)} ms`],
      ["  of which: all 16 real nodes logged in and polled", `${fmt(realDone, 0)} ms`],
      [
        "CPU for the first round",
        `${fmt(cpuMs(cpuFirst))} ms (${fmt((cpuMs(cpuFirst) / TOTAL) * 1000, 0)} µs/node)`,
      ],
      ["steady state: polls in 2 intervals", `${polls}`],
      ["steady state: CPU per node per poll", `${fmt((cpuMs(cpuSteady) / polls) * 1000, 0)} µs`],
      ["steady state: CPU use (one core = 100%)", `${fmt((cpuMs(cpuSteady) / wallSteady) * 100)} %`],
      ["heap per configured node", `${fmt((heap1 - heap0) / TOTAL / 1024, 2)} KiB`],
      ["RSS growth per configured node", `${fmt((rss1 - rss0) / TOTAL / 1024, 2)} KiB`],
      ["steady state: polls that waited > 10 ms for a slot", `${waitedLong} of ${polls}`],
      ["poll latency of up nodes (median, wall)", `${fmt(realLatency[realLatency.length >> 1] ?? 0, 2)} ms`],
      ["16 up nodes alone: CPU per poll", `${fmt((cpuMs(cpuReal) / p2) * 1000, 0)} µs (${p2} polls)`],
      ["machine load average (1 min) at the end", `${fmt(loadavg()[0]!, 2)} on ${cpus().length} cores`],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`statfs benchmark, interval ${INTERVAL / 1000} s, concurrency ${config.poll.concurrency}`);
    for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
  } finally {
    child.stdin!.end();
    child.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
