// xrxd and the hand-off of xrx runs to it, with the built commands (the hand-off lives in the
// built xrx's start-up shim) against real xcpufs nodes.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeFrame, Frame, FrameReader, XRXD_PROTOCOL } from "../src/xrxd/protocol.js";
import {
  blockedOnPipe,
  cleanupAll,
  onCleanup,
  PKG,
  pidsOf,
  pidsWith,
  sessionDirCount,
  startNode,
  type TestNode,
  tempDir,
  until,
} from "./harness.js";

const BIN = join(PKG, "dist/bin");
const built = ["xrx.js", "xrx.cjs", "xrx-handoff.cjs", "xrxd.js", "xrxd.cjs"].every((f) =>
  existsSync(join(BIN, f)),
);
if (!built && process.env.CI) throw new Error("xrx/xrxd not built (pnpm run build)");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Starts a built command; `input` (when given) is its standard input, else /dev/null. */
function start(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {},
): { child: ChildProcess; done: Promise<Result> } {
  const child = spawn(file, args, {
    cwd: opts.cwd ?? PKG,
    env: { ...process.env, ...opts.env },
    stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  const done = new Promise<Result>((resolve) =>
    child.on("close", (code, sig) =>
      resolve({ code: code ?? 128 + (sig === "SIGKILL" ? 9 : 15), stdout, stderr }),
    ),
  );
  return { child, done };
}

const run = (file: string, args: string[], opts: Parameters<typeof start>[2] = {}) =>
  start(file, args, opts).done;

describe.skipIf(!built)("xrxd", () => {
  let node: TestNode;
  let sock: string;
  let xrxd: ChildProcess;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    node = await startNode();
    sock = join(tempDir("xrxd-test-"), "sock");
    const started = start(join(BIN, "xrxd.js"), ["-D", "-s", "-a", sock]);
    xrxd = started.child;
    let out = "";
    xrxd.stdout!.on("data", (d) => (out += d));
    await until(() => out.includes("echo xrxd pid"), 30_000, "xrxd to listen");
    expect(out).toContain(`XRXD_SOCK=${sock}; export XRXD_SOCK;`);
    expect(out).toContain(`XRXD_PID=${xrxd.pid}; export XRXD_PID;`);
    // Cache directory of the test's own: the runs here must not depend on (or fill) the user's.
    env = { XRXD_SOCK: sock, CLUSTERMATIC_COMPILE_CACHE: tempDir("xrxd-cc-") };
  }, 60_000);
  afterAll(async () => {
    if (xrxd.exitCode === null) {
      xrxd.kill("SIGTERM");
      await new Promise((r) => xrxd.once("exit", r));
    }
    await cleanupAll();
  });

  it("takes the run: an xrx without its own bundle still runs a job, output and status intact", async () => {
    // A copy of the commands without xrx.cjs: only the hand-off can run this xrx.
    const dir = tempDir("xrxd-nobundle-");
    for (const f of ["xrx.js", "xrx-handoff.cjs", "package.json"]) copyFileSync(join(BIN, f), join(dir, f));
    chmodSync(join(dir, "xrx.js"), 0o755);
    const ok = await run(join(dir, "xrx.js"), ["--no-key", "-p", node.spec, "/bin/echo", "hello"], { env });
    expect(ok).toEqual({ code: 0, stdout: `${node.spec}: hello\n`, stderr: "" });
    const failed = await run(
      join(dir, "xrx.js"),
      ["--no-key", node.spec, "/bin/sh", "-c", "echo oops >&2; exit 3"],
      {
        env,
      },
    );
    expect(failed.code).toBe(3);
    expect(failed.stderr).toContain("oops");
    expect(failed.stderr).toContain(`xrx: ${node.spec}: exit 3`);
    // Without xrxd that copy has nothing to run.
    const alone = await run(join(dir, "xrx.js"), ["--version"], { env: { XRXD_SOCK: join(dir, "none") } });
    expect(alone.code).not.toBe(0);
  });

  it("uses the caller's working directory, PATH and environment, not its own", async () => {
    const cwd = tempDir("xrxd-cwd-");
    writeFileSync(join(cwd, "prog.sh"), '#!/bin/sh\necho "foo=$FOO args=$*"\n');
    chmodSync(join(cwd, "prog.sh"), 0o755);
    mkdirSync(join(cwd, "bin"));
    writeFileSync(join(cwd, "bin/onpath"), "#!/bin/sh\necho found on PATH\n");
    chmodSync(join(cwd, "bin/onpath"), 0o755);
    const xrx = join(BIN, "xrx.js");
    const rel = await run(xrx, ["--no-key", node.spec, "./prog.sh", "a b"], {
      cwd,
      env: { ...env, XCPUENV: "FOO=bar" },
    });
    expect(rel).toEqual({ code: 0, stdout: "foo=bar args=a b\n", stderr: "" });
    const onPath = await run(xrx, ["--no-key", node.spec, "onpath"], {
      cwd,
      env: { ...env, PATH: `${join(cwd, "bin")}:${process.env.PATH}` },
    });
    expect(onPath).toEqual({ code: 0, stdout: "found on PATH\n", stderr: "" });
    const nodes = await run(xrx, ["--no-key", "/bin/echo", "from NODES"], {
      env: { ...env, NODES: node.spec },
    });
    expect(nodes.stdout).toBe("from NODES\n");
  });

  it("forwards standard input, all of it, in order", async () => {
    const text = Array.from({ length: 20000 }, (_, i) => `line ${i}\n`).join("");
    const r = await run(join(BIN, "xrx.js"), ["--no-key", node.spec, "/bin/cat"], { env, input: text });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(text);
  });

  it("forwards a fast input of many megabytes whole (xrx waits for its socket, not only for xrxd's pause)", async () => {
    // xrxd asks for a pause a round trip late. While it is slow to read (here: stopped), xrx must
    // stop reading its input once the socket is full; had it read on, all it read would reach
    // xrxd after the pause (the program takes nothing yet), more than xrxd keeps for a run, and
    // the run would be dropped.
    // A size of its own: the source is found by its command line.
    const size = 64 * 1024 * 1024 + (process.pid % 1000);
    const marker = `xrxd-fast-input-${process.pid}`;
    const go = join(tempDir("xrxd-fast-input-"), "go");
    const program = `while [ ! -e ${go} ]; do sleep 0.1; done; wc -c; : ${marker}`;
    // A shell pipe, as a user's `head … | xrx …` (a pipe that holds 64 KiB, not a socket pair).
    const client = spawn(
      "/bin/sh",
      [
        "-c",
        `head -c ${size} /dev/zero | "${join(BIN, "xrx.js")}" --no-key ${node.spec} /bin/sh -c '${program}'`,
      ],
      { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true },
    );
    onCleanup(() => {
      if (client.exitCode === null) process.kill(-client.pid!, "SIGKILL");
    });
    let stdout = "";
    let stderr = "";
    client.stdout!.on("data", (d) => (stdout += d));
    client.stderr!.on("data", (d) => (stderr += d));
    let ended = false;
    const code = new Promise<number | null>((r) =>
      client.on("close", (c) => {
        ended = true;
        r(c);
      }),
    );
    // The program itself (sh, as xrx names a program it copies): the shell and the xrx that
    // started it have the marker in their command lines from the start.
    await until(() => pidsOf(["sh", "-c", program]).length > 0, 20_000, "the program to start");
    const source = pidsWith(`head\0-c\0${size}\0`);
    // The source sleeps on its full pipe: xrx stopped reading it. No source: it wrote all.
    const stopped = async () => {
      if (sourceDone() || !source.every(blockedOnPipe)) return false;
      await new Promise((r) => setTimeout(r, 300));
      return source.every(blockedOnPipe);
    };
    const sourceDone = () => pidsWith(`head\0-c\0${size}\0`).length === 0;
    xrxd.kill("SIGSTOP");
    try {
      await until(async () => sourceDone() || (await stopped()), 30_000, "xrx to read on or stop");
    } finally {
      xrxd.kill("SIGCONT");
    }
    // What xrx read meanwhile reaches xrxd now; the program starts reading only once that is over.
    await until(async () => ended || (await stopped()), 30_000, "xrxd to take what was sent");
    writeFileSync(go, "");
    expect(await code).toBe(0);
    expect({ stdout, stderr }).toEqual({ stdout: `${size}\n`, stderr: "" });
    expect(xrxd.exitCode).toBeNull();
  });

  it("forwards signals to the program, and wipes the sessions of an xrx that is killed", async () => {
    const marker = `xrxd-signal-${process.pid}`;
    // The program as the node runs it: xrx's own command line holds the same words, after others.
    const program = ["sh", "-c", `sleep 30; : ${marker}`];
    const term = start(join(BIN, "xrx.js"), ["--no-key", node.spec, "/bin/sh", ...program.slice(1)], {
      env,
    });
    await until(() => pidsOf(program).length > 0, 20_000, "the program to start");
    term.child.kill("SIGTERM");
    const r = await term.done;
    expect(r.code).toBe(128 + 15);
    await until(() => pidsWith(marker).length === 0 && sessionDirCount(node.tmp) === 0, 20_000, "cleanup");

    const killed = start(join(BIN, "xrx.js"), ["--no-key", node.spec, "/bin/sh", ...program.slice(1)], {
      env,
    });
    await until(() => pidsOf(program).length > 0, 20_000, "the program to start");
    killed.child.kill("SIGKILL");
    await killed.done;
    await until(
      () => pidsWith(marker).length === 0 && sessionDirCount(node.tmp) === 0,
      20_000,
      "sessions wiped",
    );
    expect(xrxd.exitCode).toBeNull();
  });

  it("ends the job when the caller's output goes away (xrx | head -1)", async () => {
    const r = await new Promise<{ out: string; code: number | null }>((resolve) => {
      execFile(
        "/bin/sh",
        ["-c", `"${join(BIN, "xrx.js")}" --no-key ${node.spec} /usr/bin/yes | head -n 1`],
        { env: { ...process.env, ...env } },
        (err, stdout) => resolve({ out: stdout, code: err ? ((err as { code?: number }).code ?? 1) : 0 }),
      );
    });
    expect(r.out).toBe("y\n");
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "the session of yes to be wiped");
  });

  it("falls back to running the job itself when XRXD_SOCK names nothing", async () => {
    const r = await run(join(BIN, "xrx.js"), ["--no-key", node.spec, "/bin/echo", "alone"], {
      env: { ...env, XRXD_SOCK: join(tempDir("xrxd-none-"), "sock") },
    });
    expect(r).toEqual({ code: 0, stdout: "alone\n", stderr: "" });
  });

  it("drops a client that sends input after being asked to pause, and wipes its run", async () => {
    const s = connect(sock);
    const closed = new Promise<void>((r) => s.once("close", () => r()));
    s.on("error", () => {});
    s.on("data", () => {});
    await new Promise((r) => s.once("connect", r));
    s.write(
      encodeFrame(
        Frame.Start,
        JSON.stringify({
          protocol: XRXD_PROTOCOL,
          version: JSON.parse(readFileSync(join(PKG, "package.json"), "utf8")).version,
          argv: ["--no-key", node.spec, "/bin/sleep", "600"],
          env: { PATH: process.env.PATH },
          cwd: "/",
          stdin: "stream",
          tty: { stdin: false, stdout: false, stderr: false },
        }),
      ),
    );
    // 64 MiB, paced by the socket only: far more than xrxd keeps for a run that does not read it.
    const chunk = encodeFrame(Frame.Stdin, Buffer.alloc(1 << 20, 0x61));
    for (let i = 0; i < 64 && !s.destroyed; i++) {
      if (!s.write(chunk)) await Promise.race([new Promise((r) => s.once("drain", r)), closed]);
    }
    await closed;
    await until(() => sessionDirCount(node.tmp) === 0, 20_000, "the run's session to be wiped");
    const r = await run(join(BIN, "xrx.js"), ["--no-key", node.spec, "/bin/echo", "still up"], { env });
    expect(r.stdout).toBe("still up\n");
  });

  it("refuses a client of another version or a malformed start, and stays up", async () => {
    const ask = (frame: Buffer) =>
      new Promise<{ type: number; text: string }>((resolve, reject) => {
        const s = connect(sock);
        const reader = new FrameReader((type, payload) => {
          resolve({ type, text: payload.toString() });
          s.destroy();
        });
        s.on("data", (d) => reader.push(d));
        s.on("error", reject);
        s.on("connect", () => s.write(frame));
      });
    const start = (version: string) =>
      encodeFrame(
        Frame.Start,
        JSON.stringify({
          protocol: XRXD_PROTOCOL,
          version,
          argv: ["--version"],
          env: {},
          cwd: "/",
          stdin: "null",
          tty: { stdin: false, stdout: false, stderr: false },
        }),
      );
    const other = await ask(start("0.0.0-other"));
    expect(other.type).toBe(Frame.Refuse);
    expect(other.text).toContain("not 0.0.0-other");
    const bad = await ask(encodeFrame(Frame.Start, "{not json"));
    expect(bad.type).toBe(Frame.Refuse);
    const r = await run(join(BIN, "xrx.js"), ["--no-key", node.spec, "/bin/echo", "still up"], { env });
    expect(r.stdout).toBe("still up\n");
  });
});

describe.skipIf(!built)("xrxd in the background", () => {
  afterAll(cleanupAll);

  it("starts detached, prints the lines to evaluate, and xrxd -k stops it and removes its socket", async () => {
    const runtime = tempDir("xrxd-runtime-");
    const env = { XDG_RUNTIME_DIR: runtime, SHELL: "/bin/bash" };
    const started = await run(join(BIN, "xrxd.js"), [], { env });
    expect(started.code).toBe(0);
    const sock = /XRXD_SOCK=(\S+);/.exec(started.stdout)?.[1];
    const pid = Number(/XRXD_PID=(\d+);/.exec(started.stdout)?.[1]);
    expect(sock?.startsWith(`${runtime}/xrxd-`)).toBe(true);
    onCleanup(() => {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    });
    expect(existsSync(sock!)).toBe(true);
    const node = await startNode();
    const r = await run(join(BIN, "xrx.js"), ["--no-key", node.spec, "/bin/echo", "via background xrxd"], {
      env: { XRXD_SOCK: sock, CLUSTERMATIC_COMPILE_CACHE: tempDir("xrxd-cc-") },
    });
    expect(r.stdout).toBe("via background xrxd\n");
    const stopped = await run(join(BIN, "xrxd.js"), ["-k"], { env: { ...env, XRXD_PID: String(pid) } });
    expect(stopped).toEqual({
      code: 0,
      stdout: `unset XRXD_SOCK;\nunset XRXD_PID;\necho xrxd pid ${pid} killed;\n`,
      stderr: "",
    });
    await until(() => !existsSync(dirname(sock!)), 10_000, "xrxd to remove its socket directory");
    rmSync(runtime, { recursive: true, force: true });
  });

  it("with -t, exits once it has had no run for that long, and removes its socket", async () => {
    const sock = join(tempDir("xrxd-idle-"), "sock");
    const started = Date.now();
    const r = await run(join(BIN, "xrxd.js"), ["-D", "-s", "-a", sock, "-t", "0.5"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`XRXD_SOCK=${sock};`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(existsSync(sock)).toBe(false);
  });

  it("explains what is wrong: no XRXD_PID for -k, a bad -t, a live socket", async () => {
    const noPid = await run(join(BIN, "xrxd.js"), ["-k"], { env: { XRXD_PID: "" } });
    expect(noPid.code).toBe(1);
    expect(noPid.stderr).toContain("XRXD_PID is not set");
    const badIdle = await run(join(BIN, "xrxd.js"), ["-t", "soon"]);
    expect(badIdle.code).toBe(2);
    expect(badIdle.stderr).toContain("usage: xrxd");
    const file = join(tempDir("xrxd-notsock-"), "file");
    writeFileSync(file, "");
    const notSock = await run(join(BIN, "xrxd.js"), ["-D", "-a", file]);
    expect(notSock.code).toBe(1);
    expect(notSock.stderr).toContain("is not a socket");
  });
});
