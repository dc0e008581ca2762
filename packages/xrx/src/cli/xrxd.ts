// xrxd: keeps an xrx loaded and compiled, so that each xrx run skips starting one. Started like
// ssh-agent: it prints shell lines that set XRXD_SOCK (and XRXD_PID), and every xrx that sees
// XRXD_SOCK hands its run to it.
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, rmdirSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { dirname, join, resolve } from "node:path";
import { PACKAGE_VERSION } from "../version.js";
import { XRXD_SOCK_ENV } from "../xrxd/protocol.js";
import { serveXrxd } from "../xrxd/server.js";
import { type CliIo, parseCommandLine, reportError, secondsOption, UsageError } from "./args.js";
import { main as xrxMain } from "./xrx.js";

export const XRXD_USAGE = "usage: xrxd [-D] [-c | -s] [-a socket] [-t idle-seconds] | xrxd -k";

const HELP = `${XRXD_USAGE}

Keep xrx loaded and ready: an xrx that finds XRXD_SOCK in its environment hands its whole run to
xrxd (same nodes, files, output, signals and exit status) instead of starting from scratch, which
saves most of its start-up time. Runs from xrxd use the environment and working directory of the
xrx that asked. Without XRXD_SOCK, or when xrxd is gone, xrx runs the job itself.

  eval "$(xrxd)"      start xrxd in the background and set XRXD_SOCK and XRXD_PID
  eval "$(xrxd -k)"   stop the xrxd named by XRXD_PID and unset both

Options:
  -D            stay in the foreground (print the lines, then serve until SIGINT or SIGTERM)
  -a SOCKET     socket path (default: a new private directory in $XDG_RUNTIME_DIR or $TMPDIR)
  -t SECONDS    exit after this long without a run (default: never)
  -c / -s       print csh / sh commands (default: by $SHELL)
  -k            stop the xrxd whose pid XRXD_PID holds
  -h, --help    this text
  -V, --version print "xrxd <version>"

A run in progress when xrxd stops has its sessions wiped, and its xrx exits with status 1.
`;

export const OPTIONS = {
  D: { type: "boolean", short: "D" },
  a: { type: "string", short: "a" },
  t: { type: "string", short: "t" },
  c: { type: "boolean", short: "c" },
  s: { type: "boolean", short: "s" },
  k: { type: "boolean", short: "k" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const { values: v, positionals } = parseCommandLine(argv, OPTIONS);
    if (v.help) {
      io.stdout.write(HELP);
      return 0;
    }
    if (v.version) {
      io.stdout.write(`xrxd ${PACKAGE_VERSION}\n`);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    if (v.c && v.s) throw new UsageError("-c and -s exclude each other");
    const csh = v.c ? true : v.s ? false : /csh$/.test(io.env.SHELL ?? "");
    if (v.k) return kill(io, csh);
    const idleMs = secondsOption(v.t as string | undefined, "-t");
    const socketPath = v.a ? resolve(io.cwd, v.a as string) : join(privateDir(io.env), "sock");
    if (v.a) await takeOverStale(socketPath);
    if (v.D) return await serveForeground(socketPath, idleMs, csh, io);
    return await startBackground(socketPath, v.t as string | undefined, csh, io);
  } catch (e) {
    return reportError(e, "xrxd", XRXD_USAGE, io.stderr);
  }
}

async function serveForeground(socketPath: string, idleMs: number | undefined, csh: boolean, io: CliIo) {
  let stop!: () => void;
  const stopped = new Promise<void>((r) => {
    stop = r;
  });
  const server = await serveXrxd({ socketPath, main: xrxMain, idleMs, onIdle: () => stop() });
  // Listened to before the lines name this process: a stop sent as soon as they are read
  // (`eval "$(xrxd)"; xrxd -k`) found no handler yet, and xrxd died leaving its socket behind.
  for (const sig of STOP_SIGNALS) io.signals?.on(sig, () => stop());
  io.stdout.write(shellLines(socketPath, process.pid, csh));
  // Whoever started us may stop reading (the background start does, once it has the lines).
  io.stdout.on?.("error", () => {});
  io.stderr.on?.("error", () => {});
  await stopped;
  await server.close();
  removeOwnDir(socketPath);
  return 0;
}

/** Starts `xrxd -D` detached from this terminal and prints its lines once it listens. */
async function startBackground(socketPath: string, idle: string | undefined, csh: boolean, io: CliIo) {
  const script = process.argv[1];
  if (!script) throw new Error("cannot find xrxd's own script to start it");
  const child = spawn(
    process.execPath,
    [...process.execArgv, script, "-D", csh ? "-c" : "-s", "-a", socketPath, ...(idle ? ["-t", idle] : [])],
    { detached: true, stdio: ["ignore", "pipe", "pipe"], cwd: "/", env: io.env },
  );
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const outcome = await new Promise<"ready" | "exited" | "timeout">((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), 20_000);
    child.stdout!.on("data", () => {
      if (/echo [^\n]*\n$/.test(out)) {
        clearTimeout(timer);
        resolve("ready");
      }
    });
    child.once("exit", () => {
      clearTimeout(timer);
      resolve("exited");
    });
  });
  if (outcome !== "ready") {
    if (outcome === "timeout") child.kill("SIGKILL");
    removeOwnDir(socketPath);
    throw new Error(
      `xrxd did not start${err ? `: ${err.trim()}` : outcome === "timeout" ? " (timed out)" : ""}`,
    );
  }
  child.stdout!.destroy();
  child.stderr!.destroy();
  child.unref();
  io.stdout.write(out);
  return 0;
}

function kill(io: CliIo, csh: boolean): number {
  const pid = Number(io.env.XRXD_PID);
  if (!Number.isInteger(pid) || pid <= 0) {
    io.stderr.write("xrxd: XRXD_PID is not set: no xrxd to stop\n");
    return 1;
  }
  try {
    process.kill(pid, "SIGTERM");
  } catch (e) {
    io.stderr.write(`xrxd: cannot stop pid ${pid}: ${(e as NodeJS.ErrnoException).code ?? e}\n`);
    return 1;
  }
  io.stdout.write(
    csh
      ? `unsetenv ${XRXD_SOCK_ENV};\nunsetenv XRXD_PID;\necho xrxd pid ${pid} killed;\n`
      : `unset ${XRXD_SOCK_ENV};\nunset XRXD_PID;\necho xrxd pid ${pid} killed;\n`,
  );
  return 0;
}

function shellLines(socketPath: string, pid: number, csh: boolean): string {
  const q = shellQuote(socketPath);
  return csh
    ? `setenv ${XRXD_SOCK_ENV} ${q};\nsetenv XRXD_PID ${pid};\necho xrxd pid ${pid};\n`
    : `${XRXD_SOCK_ENV}=${q}; export ${XRXD_SOCK_ENV};\nXRXD_PID=${pid}; export XRXD_PID;\necho xrxd pid ${pid};\n`;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** A new directory only this user can enter, for the socket. */
function privateDir(env: NodeJS.ProcessEnv): string {
  const runtime = env.XDG_RUNTIME_DIR;
  let base = env.TMPDIR || "/tmp";
  try {
    if (runtime && statSync(runtime).isDirectory() && statSync(runtime).uid === process.getuid?.())
      base = runtime;
  } catch {}
  return mkdtempSync(join(base, "xrxd-"));
}

/** Removes a socket nobody answers on; refuses a live one or a path that is not a socket. */
async function takeOverStale(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (live) throw new Error(`${path}: an xrxd (or something else) already listens there`);
  rmSync(path, { force: true });
}

/** Removes the socket's directory when it is one xrxd made (xrxd-*) and now empty. */
function removeOwnDir(socketPath: string): void {
  const dir = dirname(socketPath);
  try {
    if (/^xrxd-/.test(dir.split("/").pop() ?? "") && readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {}
}
