// Test harness: real xcpufs servers on loopback ports (in this process, or as child processes when
// a test must kill one), and xrx/xk/xps runs with captured output.
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { startXcpufs } from "@clustermatic/xcpufs";
import type { CliIo } from "../src/cli/args.js";

export const PKG = join(dirname(fileURLToPath(import.meta.url)), "..");
export const ROOT = join(PKG, "../..");

export interface TestNode {
  port: number;
  /** Node-list element for it. */
  spec: string;
  tmp: string;
  stop(): Promise<void>;
}

export interface NodeOptions {
  arch?: string;
  noAuth?: boolean;
  adminKeyFile?: string;
  /** The node's largest 9P message. */
  msize?: number;
  /** Where the node makes its session directories (default: a fresh temporary directory). */
  tmpdir?: string;
  /** Receives the node's one-line trace of every 9P message. */
  trace?: (line: string) => void;
}

const cleanups: Array<() => Promise<void> | void> = [];

/** Registers something to undo in afterAll. */
export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

/** Runs every registered cleanup (call from afterAll). */
export async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch {
      // keep cleaning
    }
  }
}

/**
 * How many session directories (`xcpu-*`) a node's tmpdir holds: directly, or in the node's own
 * `xcpufs-*` directory there (an xcpufs running as root makes one).
 */
export function sessionDirCount(tmp: string): number {
  let n = 0;
  for (const e of readdirSync(tmp)) {
    if (e.startsWith("xcpu-")) n++;
    else if (e.startsWith("xcpufs-"))
      n += readdirSync(join(tmp, e)).filter((m) => m.startsWith("xcpu-")).length;
  }
  return n;
}

/** A temporary directory removed at cleanup. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Starts one xcpufs in this process on 127.0.0.1, port 0. */
export async function startNode(opts: NodeOptions = {}): Promise<TestNode> {
  const tmp = opts.tmpdir ?? tempDir("xrx-node-");
  const server = await startXcpufs({
    listen: "127.0.0.1",
    port: 0,
    tmpdir: tmp,
    noAuth: opts.noAuth ?? true,
    arch: opts.arch,
    adminKeyFile: opts.adminKeyFile,
    msize: opts.msize,
    trace: opts.trace,
  });
  const port = server.port;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await server.close();
  };
  onCleanup(stop);
  return { port, spec: `127.0.0.1!${port}`, tmp, stop };
}

/** Starts `n` nodes; returns them and their node list. */
export async function startCluster(
  n: number,
  opts: NodeOptions = {},
): Promise<{ nodes: TestNode[]; list: string }> {
  const nodes: TestNode[] = [];
  for (let i = 0; i < n; i++) nodes.push(await startNode(opts));
  return { nodes, list: nodes.map((x) => x.spec).join(",") };
}

export interface ChildNode extends TestNode {
  child: ChildProcess;
  kill(): void;
}

/**
 * Starts xcpufs as a child process (its own process group) so that a test can kill it. It listens
 * on a port the system picks and says which: a port probed free earlier may be taken meanwhile, and
 * a probe by connecting could then reach someone else's server.
 */
export async function startChildNode(extra: string[] = []): Promise<ChildNode> {
  const tmp = tempDir("xrx-cnode-");
  const bin = join(ROOT, "packages/xcpufs/src/bin/xcpufs.ts");
  const child = spawn(
    process.execPath,
    [
      "--conditions=@clustermatic/source",
      "--import",
      "tsx",
      bin,
      "--no-auth",
      "--listen",
      "127.0.0.1",
      "-p",
      "0",
      "-t",
      tmp,
      "--state-dir",
      tmp,
      ...extra,
    ],
    { cwd: PKG, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let exited = false;
  let errText = "";
  child.stderr!.on("data", (d) => (errText += d));
  child.stdout!.resume();
  child.once("exit", () => {
    exited = true;
  });
  const kill = () => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  };
  onCleanup(kill);
  const listening = /listening on \S*!(\d+)\n/;
  await until(() => exited || listening.test(errText), 60_000, "xcpufs child to listen");
  if (exited) throw new Error(`xcpufs child exited at start: ${errText}`);
  const port = Number(listening.exec(errText)![1]);
  return { port, spec: `127.0.0.1!${port}`, tmp, child, kill, stop: async () => kill() };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a CLI main() in this process with captured stdio. */
export async function runCli(
  main: (argv: readonly string[], io: CliIo) => Promise<number>,
  argv: string[],
  opts: {
    stdin?: string | Readable;
    env?: NodeJS.ProcessEnv;
    signals?: EventEmitter;
    cwd?: string;
    ttyStderr?: boolean;
    /** Sees stderr as it is written (runCli's result has all of it only at the end). */
    onStderr?: (text: string) => void;
  } = {},
): Promise<RunResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  stdout.on("data", (d) => out.push(d));
  stderr.on("data", (d) => {
    err.push(d);
    opts.onStderr?.(Buffer.concat(err).toString());
  });
  if (opts.ttyStderr) (stderr as PassThrough & { isTTY?: boolean }).isTTY = true;
  const stdin =
    opts.stdin instanceof Readable
      ? opts.stdin
      : Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]);
  const io: CliIo = {
    stdin,
    stdout,
    stderr,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...opts.env },
    cwd: opts.cwd ?? process.cwd(),
    signals: opts.signals ?? new EventEmitter(),
  };
  const code = await main(argv, io);
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

/** Runs a CLI as a real process (tsx), for behaviour that needs one (signals, exit). */
export function spawnCli(
  name: "xrx" | "xk" | "xps",
  argv: string[],
  opts: { env?: NodeJS.ProcessEnv; stdin?: string; stdoutFd?: number } = {},
): { child: ChildProcess; done: Promise<RunResult> } {
  const child = spawn(
    process.execPath,
    ["--conditions=@clustermatic/source", "--import", "tsx", join(PKG, `src/bin/${name}.ts`), ...argv],
    {
      cwd: PKG,
      env: { ...process.env, ...opts.env },
      // stdoutFd: the command writes there itself (a file, /dev/full), not to a pipe of ours
      stdio: ["pipe", opts.stdoutFd ?? "pipe", "pipe"],
    },
  );
  onCleanup(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
  const done = new Promise<RunResult>((resolve) => {
    child.on("close", (code, sig) =>
      resolve({ code: code ?? 128 + (sig === "SIGKILL" ? 9 : 15), stdout, stderr }),
    );
  });
  return { child, done };
}

/** Waits until `fn` returns true (polling), or fails after `ms`. */
export async function until(
  fn: () => boolean | Promise<boolean>,
  ms = 10_000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Pids of the processes whose command line contains `text` (programs started on the nodes). */
export function pidsWith(text: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "latin1").includes(text)) out.push(Number(pid));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * Pids of the processes whose command line is exactly `argv`: a program started on a node, and
 * not the xrx (or shell) that asked for it, whose command line holds the same words after others.
 */
export function pidsOf(argv: readonly string[]): number[] {
  const want = `${argv.join("\0")}\0`;
  const out: number[] = [];
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "latin1") === want) out.push(Number(pid));
    } catch {
      // gone
    }
  }
  return out;
}

/** Is the process asleep in a write to a full pipe? */
export function blockedOnPipe(pid: number): boolean {
  try {
    return /pipe_write/.test(readFileSync(`/proc/${pid}/wchan`, "latin1"));
  } catch {
    return false;
  }
}
