// xrx when things go wrong on the way: big directories, names 9P cannot carry, a node that
// refuses an argument list or runs out of disk, a program that leaves a daemon holding its output.
import { execFileSync, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xrx } from "../src/cli/xrx.js";
import { xcpuNodes } from "../src/nodes.js";
import { planStaging } from "../src/staging.js";
import { userIdentity, XcpuNode } from "../src/xcpu.js";
import {
  cleanupAll,
  onCleanup,
  PKG,
  runCli,
  sessionDirCount,
  spawnCli,
  startNode,
  type TestNode,
  tempDir,
  until,
} from "./harness.js";

afterAll(cleanupAll);

let node: TestNode;
beforeAll(async () => {
  node = await startNode();
});

/** Live (non-zombie) processes whose command line contains `marker`. */
function liveWith(marker: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, "latin1");
      const st = readFileSync(`/proc/${name}/stat`, "latin1");
      if (cmd.includes(marker) && st.slice(st.lastIndexOf(")") + 2)[0] !== "Z") out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

describe("staging", () => {
  it("copies a directory of thousands of files (a node limits the requests in flight)", async () => {
    const dir = tempDir("xrx-many-");
    mkdirSync(join(dir, "data"));
    for (let i = 0; i < 2000; i++) writeFileSync(join(dir, "data", `f${i}`), `${i}\n`);
    writeFileSync(join(dir, "run"), "#!/bin/sh\nls data | wc -l\ncat data/f1999\n");
    chmodSync(join(dir, "run"), 0o755);
    const r = await runCli(xrx, ["--no-key", "-S", "-e", "run", node.spec, dir]);
    expect({ code: r.code, out: r.stdout, err: r.stderr }).toEqual({ code: 0, out: "2000\n1999\n", err: "" });
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });

  it("refuses a file name that is not UTF-8, naming it", async () => {
    const dir = tempDir("xrx-names-");
    writeFileSync(join(dir, "run"), "#!/bin/sh\necho ran\n");
    chmodSync(join(dir, "run"), 0o755);
    writeFileSync(Buffer.from(`${dir}/bad\xff\xfe.dat`, "latin1"), "x");
    const r = await runCli(xrx, ["--no-key", "-S", "-e", "run", node.spec, dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot stage ${dir}/bad\\xff\\xfe.dat: the file name is not valid UTF-8`);
    expect(r.stdout).toBe("");
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });

  it("names a file too big to read (a sparse 3 GiB file)", async () => {
    const dir = tempDir("xrx-huge-");
    writeFileSync(join(dir, "run"), "#!/bin/sh\necho ran\n");
    chmodSync(join(dir, "run"), 0o755);
    writeFileSync(join(dir, "huge"), "");
    truncateSync(join(dir, "huge"), 3 * 2 ** 30);
    const r = await runCli(xrx, ["--no-key", "-S", "-e", "run", node.spec, dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot stage ${join(dir, "huge")}: `);
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });

  it("says which environment the node refused and how big it was", async () => {
    const vars = Array.from({ length: 12 }, (_, i) => `V${i}=${"e".repeat(100_000)}`).join("\\n");
    const r = await runCli(xrx, ["--no-key", "-l", "-c", "/", node.spec, "/bin/true"], {
      env: { XCPUENV: vars },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `xrx: ${node.spec.replace("!", "\\!")}: error: file too large \\(adding \\d+ bytes to the environment\\)`,
      ),
    );
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });

  it("says which argument list the node refused and how big it was", async () => {
    const big = "a".repeat(100_000);
    const args = Array.from({ length: 12 }, () => big);
    const r = await runCli(xrx, ["--no-key", "-l", "-c", "/", node.spec, "/bin/true", ...args]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `xrx: ${node.spec.replace("!", "\\!")}: error: file too large \\(writing the argument list, \\d+ bytes\\)`,
      ),
    );
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });
});

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn("skipping the full-disk staging test: mounting a small tmpfs needs root");

describe("a node whose disk is too small for the program", () => {
  it.skipIf(!isRoot)("names the file it could not stage", async (ctx) => {
    const small = tempDir("xrx-small-");
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", small], { stdio: "pipe" });
    } catch (err) {
      console.warn(`skipping the full-disk staging test: cannot mount a tmpfs (${(err as Error).message})`);
      ctx.skip();
    }
    onCleanup(() => {
      execFileSync("umount", ["-l", small]);
    });
    const full = await startNode({ tmpdir: small });
    const work = tempDir("xrx-small-prog-");
    const prog = join(work, "big.sh");
    writeFileSync(prog, `#!/bin/sh\necho ran\n#${"x".repeat(1024 * 1024)}\n`);
    chmodSync(prog, 0o755);
    const r = await runCli(xrx, ["--no-key", "-S", full.spec, prog]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `xrx: ${full.spec}: error: no space left on device (staging ${prog} as fs/big.sh)`,
    );
    await until(() => sessionDirCount(small) === 0, 20_000, "session cleanup on the full node");
  });
});

describe("a program that leaves a daemon holding its output", () => {
  it("ends on SIGTERM: the session is wiped, the daemon with it", async () => {
    const marker = `${9000 + (process.pid % 900)}.${Date.now() % 1000}`;
    const work = tempDir("xrx-daemon-");
    const prog = join(work, "daemonize");
    // The daemon keeps the session's stdout and stderr; the main process exits at once.
    writeFileSync(prog, `#!/bin/sh\nsleep ${marker} &\necho started\nexit 0\n`);
    chmodSync(prog, 0o755);
    const signals = new EventEmitter();
    let ended = false;
    const run = runCli(xrx, ["--no-key", "-S", node.spec, prog], { signals }).finally(() => {
      ended = true;
    });
    await until(() => liveWith(marker).length > 0, 20_000, "the daemon to start");
    // Until the main process is known to have ended, a SIGTERM goes to it; afterwards it wipes.
    while (!ended) {
      signals.emit("SIGTERM");
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await run;
    expect(r.stderr).toContain(
      "SIGTERM: wiping 1 session(s) whose program ended but whose output is still held open",
    );
    await until(() => liveWith(marker).length === 0, 20_000, "the daemon to end");
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });
});

describe("a program that ignores SIGINT and SIGTERM", () => {
  it("is forwarded the first Ctrl-C and wiped (killed) by the second, which the summary says", async () => {
    const marker = `${8000 + (process.pid % 900)}.${Date.now() % 1000}`;
    const signals = new EventEmitter();
    const run = runCli(
      xrx,
      ["--no-key", "-l", node.spec, "/bin/sh", "-c", `trap "" INT TERM; exec sleep ${marker}`],
      { signals, cwd: tempDir("xrx-int-cwd-") },
    );
    await until(() => liveWith(marker).length > 0, 20_000, "the program to start");
    signals.emit("SIGINT");
    signals.emit("SIGINT");
    const r = await run;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("xrx: wiping sessions");
    expect(r.stderr).toContain(`xrx: ${node.spec}: error: wiped after a second SIGINT`);
    await until(() => liveWith(marker).length === 0, 20_000, "the program to be killed");
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });
});

describe("a node that shuts down while its program runs", () => {
  it("is reported as such, and the job fails", async () => {
    const marker = `${7000 + (process.pid % 900)}.${Date.now() % 1000}`;
    const other = await startNode();
    const run = runCli(xrx, ["--no-key", "-l", "-c", "/", other.spec, "/bin/sleep", marker]);
    await until(() => liveWith(marker).length > 0, 20_000, "the program to start");
    await other.stop();
    const r = await run;
    expect(r.code).toBe(1);
    // The node wipes its sessions (answering the parked wait with nothing) before it closes.
    expect(r.stderr).toContain(
      `xrx: ${other.spec}: error: the node ended the session before the program exited (node shutting down, or wiped)`,
    );
    expect(liveWith(marker)).toEqual([]);
  });
});

describe("a tree spawn that left files half-written", () => {
  it("is completed by the direct copy, written over the partial files", async () => {
    const dir = tempDir("xrx-partial-");
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "a"), "A".repeat(100_000));
    writeFileSync(join(dir, "sub", "b"), "B".repeat(5000));
    writeFileSync(join(dir, "run"), "#!/bin/sh\ncat a sub/b | wc -c\n");
    chmodSync(join(dir, "run"), 0o755);
    const plan = planStaging({ program: dir, args: [], execName: "run", noLibraries: true });
    const full = new Map(plan.files.map((f) => [f.local, readFileSync(f.local)]));
    // What an interrupted copy leaves: every file there, each cut short.
    const cut = new Map([...full].map(([k, v]) => [k, v.subarray(0, Math.floor(v.length / 2))]));
    const xnode = await XcpuNode.connect(xcpuNodes(node.spec)[0]!, { identity: userIdentity(null) });
    try {
      const s = await xnode.createSession();
      await s.stage(plan, cut);
      expect((await s.verify(plan)).sort()).toEqual(["a", "run", "sub/b"]);
      // A plain copy cannot create them again...
      expect(String(await s.stage(plan, full).catch((e) => e))).toMatch(/file exists \(staging /);
      // ...the retry after a tree spawn writes over them.
      await s.stage(plan, full, undefined, { overwrite: true });
      expect(await s.verify(plan)).toEqual([]);
      await s.setArgv(plan.argv);
      let out = "";
      const pump = s.pump("stdout", (b) => (out += b));
      await s.exec(plan.command, { closeStdin: true });
      expect((await s.wait()).code).toBe(0);
      await pump;
      expect(out.trim()).toBe("105000");
      await s.release();
    } finally {
      xnode.close();
    }
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });
});

/** Runs a command of the package with its standard output on /dev/full. */
function toFullDisk(name: "xrx" | "xps", argv: string[]) {
  const full = openSync("/dev/full", "w");
  try {
    return spawnCli(name, argv, { env: { XRXD_SOCK: "" }, stdin: "", stdoutFd: full });
  } finally {
    closeSync(full);
  }
}

describe.skipIf(!existsSync("/dev/full"))("standard output on a full disk", () => {
  it("ends the job with a message and status 1 (output lost is an error, not a closed pipe)", async () => {
    const { done } = toFullDisk("xrx", [
      "--no-key",
      "-l",
      "-c",
      "/",
      node.spec,
      "/bin/sh",
      "-c",
      "while :; do echo y; sleep 0.05; done",
    ]);
    const { code, stderr } = await done;
    expect(stderr).toContain("xrx: cannot write standard output (ENOSPC: no space left on device, write)");
    expect(code).toBe(1);
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "session cleanup");
  });
});

describe.skipIf(!existsSync("/dev/full"))("xps listing to a full disk", () => {
  it("fails with a message instead of losing the listing silently", async () => {
    const { done } = toFullDisk("xps", ["--no-key", node.spec]);
    const { code, stderr } = await done;
    expect({ code, stderr }).toEqual({
      code: 1,
      stderr: "xps: cannot write standard output (ENOSPC: no space left on device, write)\n",
    });
  });
});

describe("xrx out of file descriptors", () => {
  it("says so for each node it cannot connect to, and how to get more", async () => {
    const nodes: TestNode[] = [];
    for (let i = 0; i < 10; i++) nodes.push(await startNode());
    const list = nodes.map((n) => n.spec).join(",");
    // A child that takes all but a few of the descriptors it may have (looking up its user takes
    // some for a moment), then runs xrx's main() on ten nodes: one descriptor each.
    const code = `
      import { closeSync, openSync } from "node:fs";
      import { EventEmitter } from "node:events";
      const { main } = await import(${JSON.stringify(join(PKG, "src/cli/xrx.ts"))});
      const { emptyInput } = await import(${JSON.stringify(join(PKG, "src/cli/args.ts"))});
      const held = [];
      for (;;) { try { held.push(openSync("/dev/null", "r")); } catch { break; } }
      for (const fd of held.splice(-4)) closeSync(fd);
      const io = { stdin: emptyInput(), stdout: process.stdout, stderr: process.stderr, env: {},
        cwd: "/", signals: new EventEmitter() };
      process.exitCode = await main(["--no-key", "-l", "-c", "/", "${list}", "/bin/true"], io);
    `;
    const child = spawn(
      process.execPath,
      ["--conditions=@clustermatic/source", "--import", "tsx", "--input-type=module", "-e", code],
      { cwd: PKG, stdio: ["ignore", "pipe", "pipe"] },
    );
    onCleanup(() => {
      if (child.exitCode === null) child.kill("SIGKILL");
    });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    child.stdout!.resume();
    const status = await new Promise<number | null>((r) => child.on("close", (c) => r(c)));
    expect(status).toBe(1);
    const failed = stderr.split("\n").filter((l) => / error: /.test(l));
    expect(failed.length).toBeGreaterThan(0);
    for (const line of failed)
      expect(line).toMatch(
        /^xrx: 127\.0\.0\.1!\d+: error: cannot connect to tcp!127\.0\.0\.1!\d+: EMFILE \(out of file descriptors here: one per node is needed; raise `ulimit -n`\)$/,
      );
    for (const n of nodes) await until(() => sessionDirCount(n.tmp) === 0, 20_000, "session cleanup");
  });
});
