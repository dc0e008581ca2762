// F13: `bootcfg serve` as a real child process on a loopback port, read through the ninep client.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Fsys, mount } from "@clustermatic/ninep/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster } from "../src/cluster/resolve.js";
import { FileCache } from "../src/files.js";
import { combinedInitrd, manifest, PlanCache, planNode, renderKexecSh } from "../src/plan.js";
import { toJson } from "../src/report.js";
import { clusterYaml, KERNEL_AMD64, KERNEL_ARM64, need, tempDir, writeBaseInitrd } from "./helpers.js";

const PKG = join(dirname(fileURLToPath(import.meta.url)), "..");
const t = tempDir("bootcfg-serve-");
const BIG = 100 << 20;
let child: ChildProcess | undefined;
let address = "";
let fs: Fsys | undefined;
const ready = existsSync(KERNEL_AMD64) && existsSync(KERNEL_ARM64);

function vmHwmKiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

/** A newc header (and its padded name) for a regular file of `size` bytes; `size` a multiple of 4. */
function newcHeader(name: string, size: number): Buffer {
  const fields = [1, 0o100644, 0, 0, 1, 0, size, 0, 0, 0, 0, name.length + 1, 0];
  const head = `070701${fields.map((f) => f.toString(16).padStart(8, "0")).join("")}${name}\0`;
  return Buffer.from(head.padEnd(Math.ceil(head.length / 4) * 4, "\0"), "latin1");
}

beforeAll(async () => {
  if (!ready) return;
  writeBaseInitrd(join(t.dir, "base.gz"));
  writeBaseInitrd(join(t.dir, "basea64.gz"));
  // a 100 MiB initrd: a newc archive of one file of non-repeating bytes, written in 1 MiB chunks
  const fd = openSync(join(t.dir, "big.img"), "w");
  writeSync(fd, newcHeader("big", BIG));
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < BIG >> 20; i++) {
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32LE((i * 0x9e3779b1 + j * 2654435761) >>> 0, j);
    writeSync(fd, chunk);
  }
  writeSync(fd, newcHeader("TRAILER!!!", 0));
  closeSync(fd);
  writeFileSync(
    join(t.dir, "cluster.yaml"),
    `${clusterYaml()}  - name: big1\n    profiles: [compute]\n    initrds: [big.img]\n  - name: broken1\n    profiles: [compute]\n    kernel: missing.bin\n`,
  );
  child = spawn(
    process.execPath,
    [
      "--conditions=@clustermatic/source",
      "--import",
      "tsx",
      "src/bin/bootcfg.ts",
      "serve",
      join(t.dir, "cluster.yaml"),
      "--listen",
      "tcp!127.0.0.1!0",
    ],
    {
      cwd: PKG,
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  address = await new Promise<string>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 100_000);
    child!.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
      const m = / on (tcp!\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child!.on("exit", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
  fs = await mount(address, { uname: "nobody" });
}, 120_000);

afterAll(async () => {
  await fs?.close();
  if (child?.pid !== undefined && child.exitCode === null) {
    const gone = new Promise((r) => child!.once("exit", r));
    process.kill(child.pid, "SIGTERM");
    await gone;
  }
  t.cleanup();
});

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

describe("bootcfg serve", () => {
  it("lists one directory per node plus /nodes", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64, KERNEL_ARM64] });
    const names = (await fs!.readdir("/")).map((s) => s.name);
    expect(names).toEqual(["nodes", "n01", "n02", "n03", "n04", "s1", "a1", "a2", "big1", "broken1"]);
    expect((await fs!.readFile("/nodes")).toString()).toBe("n01\nn02\nn03\nn04\ns1\na1\na2\nbig1\nbroken1\n");
  });

  it("every file of two nodes (x86_64 and arm64) matches its source by checksum", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64, KERNEL_ARM64] });
    const c = Cluster.load(join(t.dir, "cluster.yaml"));
    const files = new FileCache();
    for (const node of ["n01", "a1"]) {
      const p = planNode(c, c.resolve(node), new PlanCache(files));
      const want: Record<string, string> = {
        kernel: sha(readFileSync(p.kernelPath)),
        initrd: sha(combinedInitrd(p, files)),
        cmdline: sha(`${p.cmdline}\n`),
        "kexec.sh": sha(renderKexecSh(p)),
        "manifest.json": sha(`${toJson(manifest(c, p))}\n`),
      };
      const listed = (await fs!.readdir(`/${node}`)).map((s) => [s.name, Number(s.length)]);
      expect(listed.map(([n]) => n).sort()).toEqual(Object.keys(want).sort());
      for (const [name, hash] of Object.entries(want)) {
        const data = await fs!.readFile(`/${node}/${name}`);
        expect(sha(data), `${node}/${name}`).toBe(hash);
        expect(listed.find(([n]) => n === name)![1]).toBe(data.length);
      }
      expect(p.initrd.sha256).toBe(want.initrd);
    }
  });

  it("an unknown node gets an error naming the node (cut when long) and pointing to /nodes", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64, KERNEL_ARM64] });
    await expect(fs!.stat("/n99/kernel")).rejects.toThrow(
      /^n99: no such node \(read \/nodes for the list\) \(walked 0/,
    );
    // A long name is cut, and the server's own paths are not shown to clients.
    const long = await fs!.stat(`/${"x".repeat(600)}`).catch((e: { ename: string }) => e.ename);
    expect(long).toBe(`${"x".repeat(64)}…: no such node (read /nodes for the list)`);
    await expect(fs!.open("/n01/kernel", 1)).rejects.toThrow(/permission denied/);
    await expect(fs!.readFile("/broken1/kernel")).rejects.toThrow(/missing\.bin: no such file/);
  });

  it("speaks 9P2000.L too, as a Linux boot kernel's plain mount asks: readdir, files, ENOENT for an unknown node", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64, KERNEL_ARM64] });
    const l = await mount(address, { uname: "nobody", version: "9P2000.L" });
    try {
      expect(l.client.dialect).toBe("9P2000.L");
      const names = (await l.readdir("/")).map((s) => s.name);
      expect(names).toEqual(expect.arrayContaining(["nodes", "n01", "a1"]));
      expect(sha(await l.readFile("/n01/kernel"))).toBe(sha(readFileSync(KERNEL_AMD64)));
      // an errno, not only a string: Linux shows "No such file or directory"
      await expect(l.stat("/n99/kernel")).rejects.toMatchObject({ errno: 2 });
    } finally {
      await l.close();
    }
  });

  it("streams a 100 MiB initrd in msize chunks with bounded server memory", {
    timeout: 120_000,
  }, async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64, KERNEL_ARM64] });
    // warm the node (plan, hashes) before measuring the peak
    const cmd = (await fs!.readFile("/big1/cmdline")).toString();
    expect(cmd).toBe("console=ttyS0 panic=-1 quiet bootcfg.profile=compute\n");
    const before = vmHwmKiB(child!.pid!);
    const h = createHash("sha256");
    const t0 = Date.now();
    let n = 0;
    for await (const chunk of fs!.createReadStream("/big1/initrd")) {
      h.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    const after = vmHwmKiB(child!.pid!);
    console.log(
      `served ${n} bytes in ${Date.now() - t0} ms; server peak RSS ${before >> 10} MiB before, ${after >> 10} MiB after`,
    );
    const c = Cluster.load(join(t.dir, "cluster.yaml"));
    const p = planNode(c, c.resolve("big1"), new PlanCache(new FileCache()));
    expect(n).toBe(p.initrd.size);
    expect(n).toBeGreaterThan(BIG);
    expect(h.digest("hex")).toBe(p.initrd.sha256);
    // the server's peak resident memory grew by less than half the file it served (each read's
    // buffer is garbage once answered; how many pile up before a collection varies from run to run)
    expect((after - before) * 1024).toBeLessThan(48 << 20);
  });
});

describe("bootcfg serve --listen errors", () => {
  /** Runs `bootcfg serve` as a child process; it must exit by itself (no server starts). */
  function serveExit(listen: string): { status: number | null; stderr: string } {
    const cluster = join(t.dir, "listen.yaml");
    writeFileSync(cluster, "nodes:\n  - {name: n1, kernel: vmlinuz}\n");
    const r = spawnSync(
      process.execPath,
      [
        "--conditions=@clustermatic/source",
        "--import",
        "tsx",
        "src/bin/bootcfg.ts",
        "serve",
        cluster,
        "--listen",
        listen,
      ],
      { cwd: PKG, timeout: 20_000, encoding: "utf8" },
    );
    return { status: r.status, stderr: r.stderr };
  }

  it("a bad address is a usage error (2) on one line, not an uncaught exception", () => {
    for (const [listen, msg] of [
      ["udp!x!1", 'unknown network "udp"'],
      ["127.0.0.1:99999", "bad port 99999"],
    ] as const) {
      const r = serveExit(listen);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(`^bootcfg: --listen ${listen.replace(/[.!]/g, "\\$&")}: .*${msg}[^\n]*\n$`),
      );
    }
  });

  it("an address in use, or a socket in a missing directory: exit 1, one line with the address and errno", async () => {
    const busy = createServer();
    await new Promise<void>((res) => busy.listen(0, "127.0.0.1", res));
    const port = (busy.address() as { port: number }).port;
    try {
      const r = serveExit(`127.0.0.1:${port}`);
      expect(r).toEqual({
        status: 1,
        stderr: `bootcfg: cannot listen on tcp!127.0.0.1!${port}: address already in use (EADDRINUSE)\n`,
      });
    } finally {
      await new Promise((res) => busy.close(res));
    }
    expect(serveExit("unix!/nonexistent/dir/s")).toEqual({
      status: 1,
      stderr:
        "bootcfg: cannot listen on unix!/nonexistent/dir/s: no such file or directory (ENOENT): /nonexistent/dir does not exist\n",
    });
  });
});
