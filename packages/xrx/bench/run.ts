// Wall time of the built xrx (a fresh process per run, as a user would start it) against xcpufs
// nodes on loopback ports, hosted in this process. Prints medians per case.
//
//   pnpm bench                 (after pnpm build)
//   BENCH_REPS=9 pnpm bench    (more runs per case)
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { startXcpufs, type XcpufsHandle } from "@clustermatic/xcpufs";

const PKG = join(dirname(fileURLToPath(import.meta.url)), "..");
const XRX = join(PKG, "dist/bin/xrx.js");
const REPS = Number(process.env.BENCH_REPS ?? 5);

if (!existsSync(XRX)) {
  console.error(`bench: ${XRX} is missing: run "pnpm build" first`);
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), "xrx-bench-"));
const nodes: XcpufsHandle[] = [];
const cleanup = async () => {
  await Promise.all(nodes.map((n) => n.close()));
  rmSync(work, { recursive: true, force: true });
};
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

function runOnce(args: string[]): Promise<{ ms: number; code: number; err: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [XRX, "--no-key", ...args], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => resolve({ ms: performance.now() - t0, code: code ?? 1, err }));
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function bench(label: string, n: number, args: (list: string) => string[], reps = REPS) {
  const list = nodes
    .slice(0, n)
    .map((h) => `127.0.0.1!${h.port}`)
    .join(",");
  await runOnce(args(list)); // warm-up
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const r = await runOnce(args(list));
    if (r.code !== 0) throw new Error(`${label} on ${n} nodes failed (${r.code}): ${r.err}`);
    times.push(r.ms);
  }
  return { label, n, median: median(times), min: Math.min(...times), reps };
}

async function main() {
  for (let i = 0; i < 64; i++) {
    nodes.push(
      await startXcpufs({ listen: "127.0.0.1", port: 0, tmpdir: mkdtempSync(join(work, "n")), noAuth: true }),
    );
  }
  const bin = makeBinary();
  // Baseline in the same run: starting node with an empty script (process start cost).
  const empty = join(work, "empty.mjs");
  writeFileSync(empty, "");
  const base: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    execFileSync(process.execPath, [empty]);
    base.push(performance.now() - t0);
  }
  const rows = [];
  for (const n of [1, 4, 16, 64]) rows.push(await bench("/bin/true -S", n, (l) => ["-S", l, "/bin/true"]));
  for (const n of [1, 4, 16, 64])
    rows.push(await bench("/bin/true (with its libraries)", n, (l) => [l, "/bin/true"], n === 64 ? 3 : REPS));
  for (const n of [16, 64]) {
    rows.push(await bench(bin.what, n, (l) => ["-S", l, bin.path]));
    rows.push(await bench(`${bin.what}, -n 8`, n, (l) => ["-S", "-n", "8", l, bin.path]));
  }
  console.log(
    `\nxrx wall time, nodes on loopback, median of ${REPS} runs (node start alone: ${median(base).toFixed(0)} ms)\n`,
  );
  console.log("| case | nodes | median ms | min ms |");
  console.log("|---|---:|---:|---:|");
  for (const r of rows) console.log(`| ${r.label} | ${r.n} | ${r.median.toFixed(0)} | ${r.min.toFixed(0)} |`);
  console.log("\nThe original C xrx/xcpufs are not installed here: no side-by-side column.");
}

main()
  .then(cleanup)
  .catch(async (err) => {
    console.error(`bench: ${err.message}`);
    await cleanup();
    process.exit(1);
  });
