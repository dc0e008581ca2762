// Passthrough throughput: a file written and read back through our client over TCP loopback,
// served by the passthrough backend and (as the baseline, when installed) by diod, same client,
// same msize. Run: node --import tsx bench/passthrough.ts [MiB]

import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Client, Fsys } from "../src/client/index.js";
import type { Dialect } from "../src/codec/constants.js";
import { passthrough } from "../src/server/passthrough.js";
import { Server } from "../src/server/server.js";
import { diodUnavailable, startDiod } from "../test/helpers/diod.js";

const MIB = Number(process.argv[2] ?? 32);
const data = randomBytes(MIB * 1024 * 1024);
const sum = createHash("sha256").update(data).digest("hex");

async function measure(label: string, address: string, version: Dialect, msize: number, aname: string) {
  const client = await Client.connect(address, { version, msize });
  const fsys = new Fsys(client, await client.attach("nobody", aname, { n_uname: 65534 }));
  const t0 = performance.now();
  await fsys.writeFile("bench.bin", data);
  const t1 = performance.now();
  const back = await fsys.readFile("bench.bin");
  const t2 = performance.now();
  if (createHash("sha256").update(back).digest("hex") !== sum) throw new Error(`${label}: checksum mismatch`);
  await fsys.remove("bench.bin");
  await client.close();
  const rate = (ms: number) => ((MIB / ms) * 1000).toFixed(0).padStart(6);
  console.log(
    `${label.padEnd(34)} ${String(client.msize).padStart(8)} ${rate(t1 - t0)} MiB/s ${rate(t2 - t1)} MiB/s`,
  );
}

const dir = mkdtempSync(path.join(tmpdir(), "pt-bench-"));
chmodSync(dir, 0o777);
const server = new Server({ backend: passthrough(dir), maxMsize: 1024 * 1024 + 24 });
try {
  const a = await server.listen("tcp!127.0.0.1!0");
  if (a.network !== "tcp") throw new Error("tcp");
  const ours = `tcp!127.0.0.1!${a.port}`;
  console.log(`${MIB} MiB file, write then read, sha256 checked; loopback TCP`);
  console.log(
    `${"server / dialect".padEnd(34)} ${"msize".padStart(8)} ${"write".padStart(12)} ${"read".padStart(12)}`,
  );
  if (!diodUnavailable()) {
    const ddir = mkdtempSync(path.join(tmpdir(), "pt-bench-diod-"));
    chmodSync(ddir, 0o777);
    const diod = await startDiod(ddir);
    try {
      await measure("diod (baseline) 9P2000.L", diod.address, "9P2000.L", 65560, ddir);
    } finally {
      await diod.stop();
      rmSync(ddir, { recursive: true, force: true });
    }
  }
  await measure("passthrough 9P2000.L", ours, "9P2000.L", 65560, "");
  await measure("passthrough 9P2000.u", ours, "9P2000.u", 65560, "");
  await measure("passthrough 9P2000", ours, "9P2000", 65560, "");
  await measure("passthrough 9P2000.L", ours, "9P2000.L", 1024 * 1024 + 24, "");
} finally {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
}
