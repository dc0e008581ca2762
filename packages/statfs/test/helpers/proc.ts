// Runs the statfs and xstat command-line programs as real child processes (TypeScript sources
// through tsx, resolving workspace packages to their sources).

import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const bin = (name: string) => join(import.meta.dirname, "..", "..", "src", "bin", `${name}.ts`);
// By its file: `--import tsx` would be looked up from the process's working directory.
const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;

export interface Child {
  proc: ChildProcess;
  stderr(): string;
  stdout(): string;
  exited: Promise<number | null>;
  /** Waits until stderr matches `re` (or the process exits). */
  waitStderr(re: RegExp, ms?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
}

export function run(name: "statfs" | "xstat", args: string[], opts: { cwd?: string } = {}): Child {
  const proc = spawn(
    process.execPath,
    ["--conditions=@clustermatic/source", "--import", tsx, bin(name), ...args],
    {
      stdio: ["ignore", "pipe", "pipe"],
      cwd: opts.cwd,
    },
  );
  let out = "";
  let err = "";
  const waiters: (() => void)[] = [];
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
    err += d;
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  exited.then(() => {
    for (const w of waiters.splice(0)) w();
  });
  let done = false;
  exited.then(() => (done = true));
  return {
    proc,
    stderr: () => err,
    stdout: () => out,
    exited,
    kill: (signal = "SIGTERM") => {
      if (!done) proc.kill(signal);
    },
    waitStderr: async (re, ms = 20_000) => {
      const end = Date.now() + ms;
      while (!re.test(err)) {
        if (done) throw new Error(`process exited before printing ${re}; stderr:\n${err}`);
        if (Date.now() > end) throw new Error(`timed out waiting for ${re}; stderr:\n${err}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
    },
  };
}

/**
 * The pid of the background statfs started with config file `conf`, if one runs (`marked`: only a
 * process started as the background one, not a starter still waiting for it).
 */
export function daemonOf(conf: string, marked = false): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let argv: string[];
    let env = "";
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "latin1").split("\0");
      if (marked) env = readFileSync(`/proc/${entry}/environ`, "latin1");
    } catch {
      continue; // gone
    }
    if (marked && !env.split("\0").includes("STATFS_BACKGROUND_CHILD=1")) continue;
    if (argv.includes(conf) && argv.some((a) => a.endsWith("statfs.ts") || a.endsWith("statfs.js")))
      return Number(entry);
  }
  return undefined;
}

/**
 * What a test file starts: statfs children, background statfs processes it found (by pid) and
 * xcpufs nodes. `stop()` ends them all, whatever an assertion did.
 */
export function processScope() {
  const children: Child[] = [];
  const daemons = new Set<number>();
  const nodes: { close(): Promise<void> }[] = [];
  return {
    daemons,
    /** Starts statfs with `args`, to be stopped by stop(). */
    spawnStatfs(args: string[], opts: { cwd?: string } = {}): Child {
      const c = run("statfs", args, opts);
      children.push(c);
      return c;
    },
    /** Closes `node` at stop(); returns it. */
    keep<T extends { close(): Promise<void> }>(node: T): T {
      nodes.push(node);
      return node;
    },
    async stop(): Promise<void> {
      for (const pid of daemons) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      for (const c of children) {
        c.kill("SIGKILL");
        await c.exited;
      }
      for (const n of nodes) await n.close();
    },
  };
}
