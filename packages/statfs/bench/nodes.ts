// Starts N xcpufs nodes on loopback in this process (a child of the benchmark, so their CPU time
// is not counted as statfs's) and prints their ports as one JSON line. Args: N publicKeyPemFile tmpdir.

import { readFileSync } from "node:fs";
import { startXcpufs } from "@clustermatic/xcpufs";

const [n = "16", pubFile = "", dir = "/tmp"] = process.argv.slice(2);
const adminKey = readFileSync(pubFile, "utf8");
const ports: number[] = [];
for (let i = 0; i < Number(n); i++) {
  const h = await startXcpufs({
    listen: "tcp!127.0.0.1!0",
    adminKey,
    tmpdir: dir,
    env: { PATH: "/usr/bin:/bin" },
  });
  ports.push(h.port);
}
process.stdout.write(`${JSON.stringify(ports)}\n`);
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
