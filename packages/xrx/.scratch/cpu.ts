import { readFileSync } from "node:fs";
import { runJob, userIdentity, xcpuNodes } from "../src/index.js";

const list = readFileSync("/tmp/cc/l16", "utf8").trim();
const hostPids = process.argv.slice(2).map(Number);
const serverCpu = () =>
  hostPids.reduce((a, p) => {
    const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]!.split(" ");
    return a + Number(f[11]) + Number(f[12]);
  }, 0) * 10;
const sink = { write: () => true, end: () => {} } as any;
for (const n of [1, 16]) {
  const nodes = xcpuNodes(list).slice(0, n);
  const run = () =>
    runJob({
      nodes,
      identity: userIdentity(null),
      program: "/bin/true",
      args: [],
      noLibraries: true,
      stdout: sink,
      stderr: sink,
    });
  for (let i = 0; i < 5; i++) await run();
  const reps = 30;
  const c0 = process.cpuUsage();
  const s0 = serverCpu();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const r = await run();
    if (r.exitCode !== 0) throw new Error("fail " + JSON.stringify(r.outcomes[0]));
  }
  const c = process.cpuUsage(c0);
  const wall = (performance.now() - t0) / reps;
  console.log(
    `${n} nodes: wall ${wall.toFixed(1)} ms/launch, client cpu ${((c.user + c.system) / 1000 / reps).toFixed(1)} ms/launch, servers cpu ${((serverCpu() - s0) / reps).toFixed(1)} ms/launch`,
  );
}
process.exit(0);
