// statfs: polls every configured xcpufs node and serves the cluster status over 9P and HTTP.

import { type ChildProcess, spawn } from "node:child_process";
import { isAbsolute, resolve } from "node:path";
import { parseArgs } from "node:util";
import { argsMistake } from "@clustermatic/ninep/args";
import { parseAddress } from "@clustermatic/ninep/client";
import { KeyError, loadPrivateKey } from "../auth.js";
import { ConfigError, type PollSettings, parseDuration } from "../config.js";
import { DEFAULT_HTTP, STATFS_PORT, type Statfs, startStatfs } from "../daemon.js";
import { PACKAGE_VERSION } from "../version.js";
import { LogFile, readPidFile, removePidFile, writePidFile } from "./daemon-files.js";
import { type CliIo, EXIT_FAIL, EXIT_OK, EXIT_USAGE, processIo } from "./io.js";

export const STATFS_USAGE = `usage: statfs [options]

Polls the xcpufs nodes of a cluster and serves their status: the original \`state\`
table and per-node files over 9P, Prometheus metrics and JSON over HTTP.

options:
  -c, --config FILE         node list: statfs.conf (name=address lines) or .yaml/.yml/.json
                            (default /etc/xcpu/statfs.conf)
  -a, --admin-key FILE      admin private key (RSA or Ed25519; PEM or OpenSSH format,
                            unencrypted) used to log in to the nodes as xcpu-admin
                            (default /etc/xcpu/admin_key)
      --no-auth             log in without a key (nodes run xcpufs --no-auth)
  -p, --port PORT           9P port on all IPv4 addresses (default ${STATFS_PORT})
  -l, --listen ADDR         9P listen address instead (tcp!host!port, host:port,
                            unix!/path); repeatable
      --http ADDR           HTTP listen address host:port (default ${DEFAULT_HTTP}), or "off"
  -i, --interval DUR        poll interval (default 5s; the config file's poll.interval wins)
      --concurrency N       polls in flight at once (default 128)
      --connect-timeout DUR connect timeout (default 2s, or the interval if shorter; a
                            longer one than the interval is refused)
      --read-timeout DUR    read timeout per poll (default and limit as --connect-timeout)
      --hold-file FILE      keep admin holds (ctl "down") in FILE across restarts
      --ctl-noauth          let unauthenticated 9P clients write ctl files (development)
      --pid-file FILE       write the pid of the serving process to FILE once it serves
                            (removed when it stops); refuse to start while FILE names a
                            running statfs
      --log-file FILE       append the messages (otherwise on stderr) to FILE, each after
                            an ISO 8601 UTC timestamp; SIGHUP reopens it (logrotate)
  -f, --foreground          stay in the foreground, logging on stderr (for systemd and
                            other supervisors); without it statfs goes into the background
                            once it serves, as the original did
  -d, --debug               trace the 9P server on stderr (stays in the foreground)
  -D, --debug-client        trace the 9P traffic to the nodes on stderr (foreground)
  -h, --help                show this help
  -V, --version             print "statfs <version>"

Started in the background, statfs prints its start-up messages (or what stopped it, with
exit status 1) and returns once it serves; it then logs only to --log-file, if given.

Signals: SIGHUP re-reads the configuration (a broken file is reported and the old
configuration stays in force) and reopens --log-file; SIGTERM and SIGINT stop.
`;

/** The options of the statfs command line (the help test holds STATFS_USAGE to them). */
export const OPTIONS = {
  config: { type: "string", short: "c" },
  "admin-key": { type: "string", short: "a" },
  "no-auth": { type: "boolean" },
  port: { type: "string", short: "p" },
  listen: { type: "string", short: "l", multiple: true },
  http: { type: "string" },
  interval: { type: "string", short: "i" },
  concurrency: { type: "string" },
  "connect-timeout": { type: "string" },
  "read-timeout": { type: "string" },
  "hold-file": { type: "string" },
  "ctl-noauth": { type: "boolean" },
  "pid-file": { type: "string" },
  "log-file": { type: "string" },
  foreground: { type: "boolean", short: "f" },
  debug: { type: "boolean", short: "d" },
  "debug-client": { type: "boolean", short: "D" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

/** Runs statfs until a signal (or io.signal) stops it. Resolves with the exit code. */
export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  let values: ReturnType<typeof parse>["values"];
  function parse(args: string[]) {
    return parseArgs({ args, strict: true, allowPositionals: false, options: OPTIONS });
  }
  const usage = (msg: string) => {
    io.stderr.write(`statfs: ${msg} (see statfs --help)\n`);
    return EXIT_USAGE;
  };
  try {
    values = parse(argv).values;
  } catch (err) {
    return usage(argsMistake(err));
  }
  if (values.help) {
    io.stdout.write(STATFS_USAGE);
    return EXIT_OK;
  }
  if (values.version) {
    io.stdout.write(`statfs ${PACKAGE_VERSION}\n`);
    return EXIT_OK;
  }
  const overrides: Partial<PollSettings> = {};
  try {
    if (values.interval !== undefined) overrides.intervalMs = positiveDuration(values.interval, "--interval");
    if (values["connect-timeout"] !== undefined) {
      overrides.connectTimeoutMs = positiveDuration(values["connect-timeout"], "--connect-timeout");
    }
    if (values["read-timeout"] !== undefined)
      overrides.readTimeoutMs = positiveDuration(values["read-timeout"], "--read-timeout");
    if (values.concurrency !== undefined) {
      if (!/^\d+$/.test(values.concurrency) || Number(values.concurrency) < 1)
        throw new Error("--concurrency: expected a positive integer");
      overrides.concurrency = Number(values.concurrency);
    }
  } catch (err) {
    return usage((err as Error).message);
  }
  let listen: string[] | undefined = values.listen;
  if (values.port !== undefined) {
    if (!/^\d{1,5}$/.test(values.port) || Number(values.port) > 65535)
      return usage(`bad port "${values.port}"`);
    if (listen) return usage("use either --port or --listen");
    listen = [`tcp!0.0.0.0!${values.port}`];
  }
  if (values["no-auth"] && values["admin-key"]) return usage("--no-auth and --admin-key exclude each other");
  if (values["pid-file"] === "") return usage("--pid-file: expected a file name");
  if (values["log-file"] === "") return usage("--log-file: expected a file name");
  const foreground = values.foreground || values.debug || values["debug-client"];
  // The background process: its messages go to the starting process until it serves, then only
  // to the log file.
  const daemonChild = process.env[DAEMON_ENV] === "1" && typeof process.send === "function";
  // The command that starts the background process and returns once that one serves.
  const starter = io.detach && !foreground && !daemonChild;
  // Named from where statfs was started (the background process works from / once it serves,
  // and reopens the log file there).
  const pidFile = values["pid-file"] === undefined ? undefined : resolve(values["pid-file"]);
  const logPath = values["log-file"] === undefined ? undefined : resolve(values["log-file"]);
  let toParent = daemonChild;
  let logFile: LogFile | undefined;
  let staleNote: string | undefined;
  const inDir = (file: string) => (daemonChild ? resolve(file) : file);
  // A Unix socket named relative to where statfs was started: its file is removed at exit, when
  // the background process works from `/`.
  const listenIn = (addr: string) => {
    let a: ReturnType<typeof parseAddress>;
    try {
      a = parseAddress(addr, STATFS_PORT);
    } catch {
      return addr; // refused with its message by startStatfs
    }
    return a.network === "unix" && !isAbsolute(a.path) ? `unix!${inDir(a.path)}` : addr;
  };
  // Messages on their way to the starting process: a failing start waits for them before it
  // returns (and the process exits), or a long one (a configuration's every error) would be lost.
  const sending: Promise<void>[] = [];
  const log = (line: string) => {
    logFile?.write(line);
    // (A callback: a channel that closes meanwhile must not raise an unhandled 'error'.)
    if (toParent && process.connected)
      sending.push(new Promise((sent) => process.send?.({ log: line }, undefined, {}, () => sent())));
    else if (!daemonChild && !logFile) io.stderr.write(`statfs: ${line}\n`);
  };
  // A start that cannot go on: once what it logged has left, exit status 1.
  const failed = async () => {
    await Promise.all(sending);
    logFile?.close();
    return EXIT_FAIL;
  };
  const fail = (msg: string) => {
    log(msg);
    return failed();
  };

  // A stale pid file may name, pids having been reused, this process or the command that started it.
  const ours = daemonChild ? [process.pid, process.ppid] : [process.pid];
  // A second statfs given the pid file of one that runs is refused before it goes into the
  // background or takes any address; a stale file is replaced once this one serves.
  if (pidFile) {
    let state: ReturnType<typeof readPidFile>;
    try {
      state = readPidFile(pidFile, ours);
    } catch (err) {
      return fail((err as Error).message);
    }
    if (state.kind === "running")
      return fail(
        `already running as pid ${state.pid} (pid file ${pidFile}); stop it first or use another --pid-file`,
      );
    // Said once, by the process that will serve.
    if (state.kind === "stale" && !starter)
      staleNote = `replacing stale pid file ${pidFile}: ${state.reason}`;
  }
  // The log file must open before going into the background, where its failure would go unseen.
  if (logPath) {
    try {
      logFile = new LogFile(logPath);
    } catch (err) {
      return fail((err as Error).message);
    }
  }
  if (starter) {
    logFile?.close();
    logFile = undefined;
    return detach(argv, io);
  }
  if (staleNote) log(staleNote);

  let key: Awaited<ReturnType<typeof loadPrivateKey>> | undefined;
  if (!values["no-auth"]) {
    const path = values["admin-key"] ?? "/etc/xcpu/admin_key";
    try {
      key = await loadPrivateKey(path);
    } catch (err) {
      return fail(
        `${(err as Error).message}${err instanceof KeyError && !values["admin-key"] ? " (use -a FILE, or --no-auth for nodes without authentication)" : ""}`,
      );
    }
  }

  // A SIGTERM or SIGINT from the moment statfs may have said it serves (a supervisor that stops
  // it as soon as it reads that line) is kept, and honoured once it is up: with no handler yet it
  // killed the process at once, before it could clean up.
  const handle = io.handleSignals !== false;
  let stopAsked = false;
  const askStop = () => {
    stopAsked = true;
  };
  if (handle) {
    process.on("SIGTERM", askStop);
    process.on("SIGINT", askStop);
  }
  const dropEarlyHandlers = () => {
    if (!handle) return;
    process.off("SIGTERM", askStop);
    process.off("SIGINT", askStop);
  };
  let statfs: Statfs;
  try {
    statfs = await startStatfs({
      // The background process leaves its directory (below): its files are named from the start.
      configFile: inDir(values.config ?? "/etc/xcpu/statfs.conf"),
      adminKey: key,
      listen: daemonChild ? listen?.map(listenIn) : listen,
      http: values.http === "off" ? null : values.http,
      pollOverrides: overrides,
      ctlWithoutAuth: values["ctl-noauth"],
      holdFile: values["hold-file"] === undefined ? undefined : inDir(values["hold-file"]),
      log,
      traceServer: values.debug ? (l) => io.stderr.write(`9p ${l}\n`) : undefined,
      traceClient: values["debug-client"] ? (node, l) => io.stderr.write(`${node} ${l}\n`) : undefined,
    });
  } catch (err) {
    dropEarlyHandlers();
    return fail(
      err instanceof ConfigError ? `configuration rejected:\n${err.message}` : (err as Error).message,
    );
  }
  logOutages(statfs, log);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      cleanup();
      await statfs.close();
      if (pidFile) removePidFile(pidFile, process.pid);
      log("stopped");
      logFile?.close();
      resolve(EXIT_OK);
    };
    const hup = () => {
      // logrotate renamed the file: carry on in a new one of that name.
      try {
        logFile?.reopen();
      } catch (err) {
        log(`${(err as Error).message}; still writing to the file opened before`);
      }
      statfs.reload().catch((err) => {
        log(`reload rejected, keeping the running configuration:\n${(err as Error).message}`);
      });
    };
    const cleanup = () => {
      if (handle) {
        process.off("SIGHUP", hup);
        process.off("SIGTERM", stop);
        process.off("SIGINT", stop);
      }
      io.signal?.removeEventListener("abort", stop);
    };
    // Listened to before the pid file names this process: a SIGTERM sent as soon as the file
    // appears (a supervisor, a stop script) found no handler yet, and the process died at once,
    // leaving the file behind.
    if (handle) {
      process.on("SIGHUP", hup);
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
    }
    dropEarlyHandlers();
    if (stopAsked) {
      void stop();
      return;
    }
    if (pidFile) {
      try {
        // Another statfs may have started at the same time, found no pid file either, and written
        // it first: that one keeps it, this one stops.
        writePidFile(pidFile, process.pid, ours);
      } catch (err) {
        cleanup();
        stopping = true;
        log(`${(err as Error).message}; stopped`);
        resolve(statfs.close().then(failed));
        return;
      }
    }

    if (daemonChild) {
      // As the original daemon: out of the directory it was started in (which may be unmounted).
      process.chdir("/");
      toParent = false;
      if (process.connected) {
        // Disconnect once the message has left (the channel may be gone if the starter died).
        process.send?.({ ready: true }, undefined, {}, () => {
          if (process.connected) process.disconnect?.();
        });
      }
    }
    if (io.signal?.aborted) void stop();
    io.signal?.addEventListener("abort", stop);
  });
}

/**
 * Logs a node going down (`node n2 is down: down(connect_failed) (connect ECONNREFUSED …)`) and
 * coming back (`node n2 is up`), so that a log shows outages. A node's first status (at start, or
 * when a reload adds it) is not a change and is not logged: the table shows it.
 */
function logOutages(statfs: Statfs, log: (line: string) => void): void {
  const wasUp = new Map<string, boolean>();
  // The status is the node's own text: no control character of it may break a log line.
  const printable = (s: string) =>
    s.replace(/\p{Cc}/gu, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  statfs.monitor.on("change", (v) => {
    if (v.status === "down(initializing)") return;
    const before = wasUp.get(v.name);
    wasUp.set(v.name, v.up);
    if (before === undefined || before === v.up) return;
    log(
      v.up
        ? `node ${v.name} is up`
        : `node ${v.name} is down: ${printable(v.status)}${v.error ? ` (${printable(v.error)})` : ""}`,
    );
  });
  statfs.monitor.on("reload", (config) => {
    const names = new Set(config.nodes.map((n) => n.name));
    for (const name of wasUp.keys()) if (!names.has(name)) wasUp.delete(name);
  });
}

function positiveDuration(text: string, flag: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new Error(`${flag}: ${(err as Error).message}`);
  }
  if (ms <= 0) throw new Error(`${flag}: must be greater than zero`);
  return ms;
}

/** Marks the background process that {@link detach} starts. */
const DAEMON_ENV = "STATFS_BACKGROUND_CHILD";

/**
 * Goes into the background as the original statfs did (it forked, called setsid and carried on):
 * starts this program again in a session of its own with the same arguments, relays its start-up
 * messages, and returns 0 once it serves, or its status when it stops before (bad configuration,
 * unreadable key, address in use).
 */
function detach(argv: string[], io: CliIo): Promise<number> {
  const script = process.argv[1];
  if (!script) {
    io.stderr.write("statfs: cannot go into the background: no script path; use -f\n");
    return Promise.resolve(EXIT_FAIL);
  }
  // Stopped before the background process serves (Ctrl-C, a supervisor giving up): that process
  // is stopped too, rather than left to start serving unseen. Not on SIGHUP: a closed terminal
  // (or nohup) leaves the background process to carry on, as it does once it serves. Listened to
  // before the process is started: it exists (and can be seen) before spawn() returns.
  let started: ChildProcess | undefined;
  let stopped: NodeJS.Signals | undefined;
  const stop = (sig: NodeJS.Signals) => {
    stopped = sig;
    started?.kill("SIGTERM");
  };
  const signals: NodeJS.Signals[] = io.handleSignals === false ? [] : ["SIGINT", "SIGTERM"];
  for (const s of signals) process.on(s, stop);
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...process.execArgv, script, ...argv], {
      detached: true,
      stdio: ["ignore", "ignore", "ignore", "ipc"],
      env: { ...process.env, [DAEMON_ENV]: "1" },
    });
  } catch (err) {
    for (const s of signals) process.off(s, stop);
    io.stderr.write(`statfs: cannot go into the background: ${(err as Error).message}\n`);
    return Promise.resolve(EXIT_FAIL);
  }
  started = child;
  return new Promise<number>((resolve) => {
    let settled = false;
    const settle = (code: number) => {
      if (settled) return;
      settled = true;
      for (const s of signals) process.off(s, stop);
      if (child.connected) child.disconnect();
      child.unref();
      resolve(code);
    };
    child.on("message", (m: { log?: unknown; ready?: unknown }) => {
      if (typeof m?.log === "string") io.stderr.write(`statfs: ${m.log}\n`);
      if (m?.ready === true && !stopped) settle(EXIT_OK);
    });
    // 'close', not 'exit': the messages sent before the process ended are all read by then.
    child.on("close", (code, signal) => {
      if (!settled && stopped) io.stderr.write(`statfs: stopped by ${stopped} before serving\n`);
      else if (!settled && signal)
        io.stderr.write(`statfs: the background process was killed by ${signal}\n`);
      settle(stopped ? EXIT_FAIL : (code ?? EXIT_FAIL));
    });
    child.on("error", (err) => {
      io.stderr.write(`statfs: cannot go into the background: ${err.message}\n`);
      settle(EXIT_FAIL);
    });
  });
}
