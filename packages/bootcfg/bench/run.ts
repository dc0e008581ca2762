// bootcfg benchmarks: initramfs build vs `cpio -o -H newc | gzip`, plans for 1,000 nodes, and
// `bootcfg serve` read throughput for a 100 MiB file. Short runs; prints one table.
import { execFileSync } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount } from "@clustermatic/ninep/client";
import { Cluster } from "../src/cluster/resolve.js";
import { FileCache } from "../src/files.js";
import { CBFS_TYPE_SELF, cbfsAddFile, createCbfs } from "../src/formats/cbfs.js";
import { bzImageToSelf } from "../src/formats/self-linux.js";
import { buildInitramfs, writeInitramfs } from "../src/initrd.js";
import { manifest, PlanCache, planNode, renderKexecSh, renderPlanJson } from "../src/plan.js";
import { serveCluster } from "../src/serve.js";

const MiB = 1 << 20;
const work = mkdtempSync(join(tmpdir(), "bootcfg-bench-"));
const rows: Array<[string, string, string]> = [];
const best = async (n: number, fn: () => unknown) => {
  let t = Number.POSITIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await fn();
    t = Math.min(t, performance.now() - s);
  }
  return t;
};

try {
  // 1. a 64 MiB tree of real binaries and libraries (compressible like a real initramfs)
  const tree = join(work, "tree");
  let total = 0;
  for (const src of ["/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/sbin", "/usr/share/doc"]) {
    if (!existsSync(src)) continue;
    const dst = join(tree, src.replaceAll("/", "_"));
    mkdirSync(dst, { recursive: true });
    for (const name of readdirSync(src).sort()) {
      if (total >= 64 * MiB) break;
      const p = join(src, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st?.isFile() || st.size > 8 * MiB) continue;
      copyFileSync(p, join(dst, name));
      total += st.size;
    }
  }
  const ours = join(work, "ours.cpio.gz");
  const theirs = join(work, "theirs.cpio.gz");
  const tOurs = await best(3, () => writeInitramfs({ trees: [tree] }, ours, { level: 6 }));
  const tTheirs = await best(3, () =>
    execFileSync("sh", [
      "-c",
      `cd '${tree}' && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -6 > '${theirs}'`,
    ]),
  );
  const mbs = (bytes: number, ms: number) => `${(bytes / MiB / (ms / 1000)).toFixed(1)} MB/s`;
  rows.push([
    "initramfs build, 64 MiB tree (bootcfg, gzip -6)",
    `${(tOurs / 1000).toFixed(2)} s`,
    mbs(total, tOurs),
  ]);
  rows.push([
    "initramfs build, same tree (cpio -H newc | gzip -6)",
    `${(tTheirs / 1000).toFixed(2)} s`,
    mbs(total, tTheirs),
  ]);
  rows.push([
    "  ratio (cpio+gzip time / bootcfg time; target ≥ 1.0)",
    (tTheirs / tOurs).toFixed(2),
    `sizes ${(statSync(ours).size / MiB).toFixed(1)} vs ${(statSync(theirs).size / MiB).toFixed(1)} MiB`,
  ]);

  // 2. plans for 1,000 nodes sharing a kernel and a base initrd
  const fixture = join(import.meta.dirname, "../../../.cache/bootcfg/amd64/vmlinuz");
  const kernel = existsSync(fixture) ? fixture : join(work, "vmlinuz");
  if (!existsSync(fixture)) {
    const b = Buffer.alloc(4 * MiB);
    b[0x1f1] = 1;
    b.writeUInt16LE(0xaa55, 0x1fe);
    b.writeUInt32LE(0x53726448, 0x202);
    b.writeUInt16LE(0x020f, 0x206);
    b.writeUInt16LE(1, 0x236);
    b.writeUInt32LE(2047, 0x238);
    writeFileSync(kernel, b);
  }
  writeFileSync(
    join(work, "base.gz"),
    buildInitramfs({
      entries: [{ name: "init", type: "file", perm: 0o755, data: Buffer.alloc(2 * MiB, 7) }],
    }),
  );
  writeFileSync(
    join(work, "cluster.yaml"),
    `defaults:\n  cmdline: [console=ttyS0, panic=-1]\nprofiles:\n  compute:\n    arch: x86_64\n    kernel: ${kernel}\n    initrds: [base.gz]\n    overlay:\n      /etc/hostname: "{{node}}"\nnodes:\n  - name: n[0001-1000]\n    profiles: [compute]\n    ip: 10.1.0.1\n    mac: 52:54:00:10:00:01\n    cmdline: ["bootcfg.node={{node}}"]\n`,
  );
  const tPlans = await best(3, () => {
    const c = Cluster.load(join(work, "cluster.yaml"));
    const cache = new PlanCache(new FileCache());
    for (const n of c.nodes()) {
      const p = planNode(c, c.resolve(n), cache);
      renderKexecSh(p);
      renderPlanJson(c, p);
      manifest(c, p);
    }
  });
  rows.push([
    "plans for 1,000 nodes (load, resolve, overlay, sh+json+manifest; target < 1 s)",
    `${(tPlans / 1000).toFixed(3)} s`,
    `${(1000 / (tPlans / 1000)).toFixed(0)} nodes/s`,
  ]);

  // 3. bootcfg serve: read a node's 100 MiB initrd through the ninep client over loopback TCP
  const big = join(work, "big.img");
  const fd = openSync(big, "w");
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < 100; i++) {
    chunk.fill(i);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  writeFileSync(
    join(work, "serve.yaml"),
    `defaults:\n  kernel: ${kernel}\n  initrds: [big.img]\nnodes:\n  - name: big1\n`,
  );
  const srv = await serveCluster(Cluster.load(join(work, "serve.yaml")), "tcp!127.0.0.1!0");
  const fs = await mount(srv.address, { uname: "bench", msize: 1024 * 1024 + 24 });
  await fs.stat("/big1/initrd");
  let got = 0;
  const tServe = await best(2, async () => {
    got = 0;
    for await (const c of fs.createReadStream("/big1/initrd", { window: 8 })) got += (c as Buffer).length;
  });
  const fs64 = await mount(srv.address, { uname: "bench" });
  const tServe64 = await best(1, async () => {
    for await (const _ of fs64.createReadStream("/big1/initrd")) void _;
  });
  await fs.close();
  await fs64.close();
  await srv.close();
  rows.push([
    "bootcfg serve, 100 MiB initrd, msize 1 MiB, 8 reads in flight",
    `${(tServe / 1000).toFixed(2)} s`,
    mbs(got, tServe),
  ]);
  rows.push([
    "bootcfg serve, 100 MiB initrd, msize 64 KiB (client default)",
    `${(tServe64 / 1000).toFixed(2)} s`,
    mbs(got, tServe64),
  ]);

  // 4. coreboot payload from the fixture bzImage + the 2 MiB initrd into a fresh 32 MiB CBFS:
  //    bootcfg (our trampoline) against cbfstool create + add-payload (its own)
  const hasCbfstool = (() => {
    try {
      execFileSync("cbfstool", ["--help"], { stdio: "ignore" });
      return true;
    } catch (e) {
      return (e as { status?: number }).status !== undefined; // ran, but exits non-zero on --help
    }
  })();
  if (existsSync(fixture) && hasCbfstool) {
    const cmdline = "console=ttyS0 panic=-1 bootcfg.node=n0001";
    const initrd = join(work, "base.gz");
    const romOurs = join(work, "ours.rom");
    const romTheirs = join(work, "theirs.rom");
    const tPayload = await best(3, () => {
      const k = readFileSync(fixture);
      const p = bzImageToSelf(k, { cmdline, initrd: readFileSync(initrd) });
      writeFileSync(romOurs, cbfsAddFile(createCbfs(32 * MiB), "fallback/payload", CBFS_TYPE_SELF, p.self));
    });
    const tCbfstool = await best(3, () => {
      rmSync(romTheirs, { force: true });
      execFileSync("cbfstool", [romTheirs, "create", "-m", "x86", "-s", "32M"], { stdio: "ignore" });
      execFileSync(
        "cbfstool",
        [romTheirs, "add-payload", "-f", fixture, "-n", "fallback/payload", "-C", cmdline, "-I", initrd],
        { stdio: "ignore" },
      );
    });
    rows.push([
      "payload build: Debian bzImage + 2 MiB initrd → SELF in a 32 MiB CBFS (bootcfg)",
      `${(tPayload / 1000).toFixed(3)} s`,
      "",
    ]);
    rows.push([
      "same with cbfstool create + add-payload",
      `${(tCbfstool / 1000).toFixed(3)} s`,
      `ratio ${(tCbfstool / tPayload).toFixed(2)}`,
    ]);
  } else rows.push(["payload build (needs the fixture kernel and cbfstool)", "skipped", ""]);
} finally {
  rmSync(work, { recursive: true, force: true });
}

const w0 = Math.max(...rows.map((r) => r[0].length));
console.log(`${"benchmark".padEnd(w0)}  ${"time".padStart(8)}  rate`);
for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padStart(8)}  ${c}`);
