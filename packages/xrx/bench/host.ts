// Hosts `count` xcpufs nodes on loopback for the benchmark, in a process of its own (as on a real
// cluster, session programs are then not forked from the benchmark's large process). Prints the
// ports as one JSON line; ends its nodes when its standard input closes.
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { type ForkHelperKind, startXcpufs, type XcpufsHandle } from "@clustermatic/xcpufs";

const [count, work] = [Number(process.argv[2] ?? 1), process.argv[3] ?? "/tmp"];
const nodes: XcpufsHandle[] = [];
for (let i = 0; i < count; i++) {
  nodes.push(
    await startXcpufs({
      listen: "127.0.0.1",
      port: 0,
      tmpdir: mkdtempSync(join(work, "n")),
      noAuth: true,
      // BENCH_NO_FORK_HELPER=1: nodes start programs with spawn(), as xcpufs --no-fork-helper;
      // BENCH_FORK_HELPER=perl|native: that fork helper, as xcpufs --fork-helper (default auto)
      noForkHelper: process.env.BENCH_NO_FORK_HELPER === "1",
      forkHelper: (process.env.BENCH_FORK_HELPER ?? "auto") as ForkHelperKind,
    }),
  );
}
process.stdout.write(`${JSON.stringify(nodes.map((n) => n.port))}\n`);
process.stdin.resume();
process.stdin.on("end", () => {
  void Promise.all(nodes.map((n) => n.close())).then(() => process.exit(0));
});
