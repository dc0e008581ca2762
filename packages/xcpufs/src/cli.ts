// The xcpufs command line.

import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { argsMistake } from "@clustermatic/ninep/args";
import { pino } from "pino";
import { DEFAULT_ADMIN_KEY, DEFAULT_PORT, startXcpufs } from "./server.js";
import { PACKAGE_VERSION } from "./version.js";

export interface CliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** Resolves when the server should stop (default: SIGTERM, SIGINT or SIGHUP). */
  stop?: Promise<unknown>;
  /** Called once the server listens, with its address. */
  ready?: (address: string) => void;
}

export const USAGE = `usage: xcpufs [-p port] [--listen ADDR] [-t tmpdir] [-a adminkey] [-s] [-r] [-u] [-m msize] [-d] [-D]
              [--state-dir DIR] [--no-auth] [--arch STRING] [--log-level LEVEL] [--max-sessions N]
              [--fork-helper KIND] [--no-fork-helper]

XCPU node server: a 9P file server (9P2000.u, 9P2000) whose files start and control processes.

  -p, --port PORT       TCP port (default ${DEFAULT_PORT})
      --listen ADDR     listen address: host, tcp!host!port (its port wins over -p), or a
                        Unix socket path (default 0.0.0.0; 127.0.0.1 with --no-auth)
  -t, --tmpdir DIR      where session directories are created (default: system temp dir)
  -a, --admin-key FILE  admin public key (default ${DEFAULT_ADMIN_KEY})
  -s, --same-user       run every program as the server's user (implied when not root)
  -r, --retain          keep session directories after sessions end
      --fork-helper K   how programs start: native (a small C program; a start that finds no
                        binary of it in the cache compiles one with cc, which needs the libc
                        headers), perl (a perl script) or auto (default: native when it can be
                        built or used, else perl, with the reason logged at info). native: exit
                        1 when it cannot. Cache: $XCPUFS_HELPER_CACHE (0: no native helper),
                        else $XDG_CACHE_HOME/clustermatic, else ~/.cache/clustermatic
      --no-fork-helper  start programs from xcpufs itself, not through a fork helper; wins over
                        --fork-helper (the helpers fork faster; when neither can be used,
                        spawn() is used anyway)
  -m, --msize N         largest 9P message (default 1048600; the original's was 32792)
      --max-sessions N  sessions one user may hold at once (default 1024)
  -u, --unix-users      add the node's groups and the users with a readable ~/.ssh/id_rsa.pub
                        (else ~/.ssh/id_ed25519.pub) to the pool
  -d, --debug           print every 9P message, one line each, on stderr
  -D, --client-debug    print the 9P messages of this node's own connections (tree spawn)
      --state-dir DIR   keep the user/group pool in DIR/users.json
                        (default /var/lib/xcpufs as root, else $XDG_STATE_HOME/xcpufs, else
                        ~/.local/state/xcpufs)
      --no-auth         accept attaches without authentication (loopback only; development)
      --arch STRING     report this architecture, e.g. /Linux/aarch64 (foreign binaries run
                        through qemu-user-static and binfmt_misc)
      --log-level LVL   fatal, error, warn, info, debug (default warn; XCPUFS_LOG also works)
  -n                    accepted, no effect (as by the original)
  -h, --help            show this help
  -V, --version         print "xcpufs <version>"

On SIGTERM, SIGINT or SIGHUP every session is wiped (process groups killed, directories removed)
and xcpufs exits with status 0.
`;

/** The options main() accepts (every one is named in USAGE). */
export const OPTIONS = {
  port: { type: "string", short: "p" },
  listen: { type: "string" },
  tmpdir: { type: "string", short: "t" },
  "admin-key": { type: "string", short: "a" },
  "same-user": { type: "boolean", short: "s" },
  retain: { type: "boolean", short: "r" },
  "no-fork-helper": { type: "boolean" },
  "fork-helper": { type: "string" },
  debug: { type: "boolean", short: "d" },
  "client-debug": { type: "boolean", short: "D" },
  "state-dir": { type: "string" },
  "no-auth": { type: "boolean" },
  arch: { type: "string" },
  "log-level": { type: "string" },
  msize: { type: "string", short: "m" },
  "max-sessions": { type: "string" },
  "unix-users": { type: "boolean", short: "u" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
  n: { type: "boolean", short: "n" },
} as const;

function defaultStateDir(): string {
  if (process.getuid?.() === 0) return "/var/lib/xcpufs";
  const base = process.env.XDG_STATE_HOME || join(homedir(), ".local", "state");
  return join(base, "xcpufs");
}

/** Run xcpufs with `argv` (without node and script); resolves with the exit status. */
export async function main(
  argv: string[],
  io: CliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let values: ReturnType<typeof parse>["values"];
  function parse(args: string[]) {
    return parseArgs({ args, allowPositionals: false, options: OPTIONS });
  }
  try {
    values = parse(argv).values;
  } catch (err) {
    io.stderr.write(`xcpufs: ${argsMistake(err)} (see xcpufs --help)\n`);
    return 2;
  }
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    io.stdout.write(`xcpufs ${PACKAGE_VERSION}\n`);
    return 0;
  }
  let port = DEFAULT_PORT;
  if (values.port !== undefined) {
    if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) {
      io.stderr.write(`xcpufs: invalid port: ${values.port}\n`);
      return 2;
    }
    port = Number(values.port);
  }
  let msize: number | undefined;
  if (values.msize !== undefined) {
    if (
      !/^\d+$/.test(values.msize) ||
      Number(values.msize) < 256 ||
      Number(values.msize) > 16 * 1024 * 1024
    ) {
      io.stderr.write(`xcpufs: invalid msize: ${values.msize} (256 to 16777216)\n`);
      return 2;
    }
    msize = Number(values.msize);
  }
  let maxSessionsPerUser: number | undefined;
  if (values["max-sessions"] !== undefined) {
    const n = values["max-sessions"];
    if (!/^\d+$/.test(n) || Number(n) < 1 || Number(n) > 1_000_000) {
      io.stderr.write(`xcpufs: invalid --max-sessions: ${n} (1 to 1000000)\n`);
      return 2;
    }
    maxSessionsPerUser = Number(n);
  }
  for (const [flag, dir] of [
    ["-t", values.tmpdir],
    ["--state-dir", values["state-dir"]],
  ] as const) {
    // An empty name would mean the directory xcpufs was started from.
    if (dir === "") {
      io.stderr.write(`xcpufs: ${flag} needs a directory name\n`);
      return 2;
    }
  }
  const forkHelper = values["fork-helper"] ?? "auto";
  if (forkHelper !== "auto" && forkHelper !== "native" && forkHelper !== "perl") {
    io.stderr.write(`xcpufs: invalid fork helper: ${forkHelper} (auto, native or perl)\n`);
    return 2;
  }
  const level = values["log-level"] ?? process.env.XCPUFS_LOG ?? "warn";
  if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(level)) {
    io.stderr.write(`xcpufs: invalid log level: ${level}\n`);
    return 2;
  }
  const logger = pino({ name: "xcpufs", level }, pino.destination(2));
  const trace = values.debug ? (line: string) => io.stderr.write(`${line}\n`) : undefined;
  // Listened to from before the server listens: a SIGTERM sent as soon as it could be reached, or
  // as soon as it said where it listens (a supervisor, a test), found no handler yet, and the
  // process died at once without wiping its sessions. One that comes during the start stops the
  // server once it has started.
  let stopWith: (why: string) => void = () => {};
  const stop = io.stop ?? new Promise<string>((resolve) => (stopWith = resolve));
  const onTerm = () => stopWith("SIGTERM");
  const onInt = () => stopWith("SIGINT");
  // A hangup (the terminal it was started from went away) ends it too, but as cleanly.
  const onHup = () => stopWith("SIGHUP");
  if (!io.stop) {
    process.once("SIGTERM", onTerm);
    process.once("SIGINT", onInt);
    process.once("SIGHUP", onHup);
  }
  let handle: Awaited<ReturnType<typeof startXcpufs>>;
  try {
    handle = await startXcpufs({
      port,
      listen: values.listen,
      tmpdir: values.tmpdir,
      adminKeyFile: values["admin-key"],
      sameUser: values["same-user"] ?? false,
      retain: values.retain ?? false,
      noForkHelper: values["no-fork-helper"] ?? false,
      forkHelper,
      stateDir: values["state-dir"] ?? defaultStateDir(),
      noAuth: values["no-auth"] ?? false,
      arch: values.arch,
      msize,
      maxSessionsPerUser,
      importUnixUsers: values["unix-users"] ?? false,
      trace:
        trace || values["client-debug"]
          ? (line) => {
              if (line.startsWith("client ") ? values["client-debug"] : trace) io.stderr.write(`${line}\n`);
            }
          : undefined,
      logger,
    });
  } catch (err) {
    process.off("SIGTERM", onTerm);
    process.off("SIGINT", onInt);
    process.off("SIGHUP", onHup);
    io.stderr.write(`Error: ${(err as Error).message}\n`);
    return 1;
  }
  io.ready?.(handle.address);
  if (values["no-auth"] && process.getuid?.() === 0)
    io.stderr.write(
      "xcpufs: warning: --no-auth as root: any local user who can connect runs programs as root or as any other user (development only)\n",
    );
  // With an ephemeral port (-p 0, or port 0 in a --listen dial string, whose port wins over -p)
  // nobody could find the server otherwise; any other port than -p's is named as well.
  if (handle.port !== 0 && handle.port !== port) io.stderr.write(`xcpufs: listening on ${handle.address}\n`);
  process.on("SIGPIPE", () => {});
  // A bug must not leave programs running without their server: wipe everything, then exit 1.
  const fatal = (err: unknown) => {
    logger.fatal({ err }, "internal error, wiping every session");
    handle.close().finally(() => process.exit(1));
  };
  process.once("uncaughtException", fatal);
  process.once("unhandledRejection", fatal);
  const why = await stop;
  logger.info({ why }, "shutting down");
  await handle.close();
  return 0;
}
