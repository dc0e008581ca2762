// startXcpufs: build the user pool and the tree, listen, and shut down cleanly.

import { execFile } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import { tmpdir as osTmpdir } from "node:os";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { parseAddress } from "@clustermatic/ninep/client";
import { Server } from "@clustermatic/ninep/server";
import { xcpuBackend } from "./fsys.js";
import { type PublicKey, parsePublicKey } from "./keys.js";
import { nativeForkHelper } from "./native-helper.js";
import { ADMIN_NAME, DEFAULT_ADMIN_ID, importUnixUsers, UserDb } from "./users.js";
import { environmentText, type Log, localArch, Xcpufs } from "./xcpufs.js";

export const DEFAULT_PORT = 6667;
export const DEFAULT_ADMIN_KEY = "/etc/xcpu/admin_key.pub";
/** msize offered by the original server (32 KiB of payload plus the header). */
export const XCPU_MSIZE = 32768 + 24;
/**
 * Largest msize this server accepts by default: 1 MiB of payload plus the header. Clients asking
 * for less (the original tools ask for XCPU_MSIZE) get what they asked for; staging a large program
 * takes 32 times fewer messages for clients that ask for more.
 */
export const DEFAULT_MSIZE = 1024 * 1024 + 24;

export interface XcpufsOptions {
  /** TCP port (default 6667; 0 picks a free one). Ignored when `listen` names a port or a Unix socket. */
  port?: number;
  /** Listen address: a host (`0.0.0.0`, `127.0.0.1`, `::1`), a dial string `tcp!host!port`, or a Unix socket path. Default all IPv4 addresses (loopback with `noAuth`). */
  listen?: string;
  /** Where session directories are made (default the system temporary directory); it must exist. A relative path is taken from the current directory. */
  tmpdir?: string;
  /** Admin public key file (default /etc/xcpu/admin_key.pub; a missing default is not an error). */
  adminKeyFile?: string;
  /** Admin public key text (instead of a file). */
  adminKey?: string;
  /** Run every program as the server's own user (`-s`). */
  sameUser?: boolean;
  /** Keep session directories after sessions end (`-r`). */
  retain?: boolean;
  /** Start programs with Node's spawn() instead of the fork helper (`--no-fork-helper`). */
  noForkHelper?: boolean;
  /**
   * Which fork helper (`--fork-helper`): "native" (a small C program built with the node's C
   * compiler on first use; startXcpufs fails when it cannot be built), "perl" (the perl script),
   * "auto" (default: native when it can be built, else perl).
   */
  forkHelper?: ForkHelperKind;
  /** Persist the user pool in `<stateDir>/users.json`. Default: in memory only. */
  stateDir?: string;
  /** Accept unauthenticated attaches; only allowed on loopback addresses and Unix sockets. */
  noAuth?: boolean;
  /** Architecture reported in `arch` (e.g. `/Linux/aarch64`); default this machine's. */
  arch?: string;
  /** One line per 9P message in and out (`-d`). */
  trace?: (line: string) => void;
  /** Structured logger (pino or compatible). Default: silent. */
  logger?: Log;
  /** Import Unix groups and the users that have an `~/.ssh/id_rsa.pub` (`-u`). */
  importUnixUsers?: boolean;
  /** Largest 9P message (default DEFAULT_MSIZE, 1048600; the original offered 32792; a client may ask for less). */
  msize?: number;
  /** Initial root `env` (default: the server's own environment). */
  env?: Record<string, string>;
  /**
   * How long a new connection may take to attach (Tversion, then a successful Tattach; ms; 0 = no
   * limit). Default: the 9P server's default. A VM's port forward connects long before its
   * kernel mounts.
   */
  handshakeTimeoutMs?: number;
  /** Sessions one user may hold at once (default 1024); beyond, opening `clone` fails with EAGAIN. */
  maxSessionsPerUser?: number;
}

export interface XcpufsHandle {
  /** Dial string of the listener, e.g. `tcp!127.0.0.1!6667` or `unix!/path`. */
  address: string;
  /** TCP port (0 for a Unix socket). */
  port: number;
  /** The node state (sessions, users) for in-process inspection. */
  xcpufs: Xcpufs;
  /** Wipe every session (killing process groups, removing directories) and stop listening. */
  close(): Promise<void>;
}

const silent: Log = { debug() {}, info() {}, warn() {}, error() {} };

/** Is this listen address loopback-only? */
export function isLoopback(listen: string): boolean {
  if (listen.startsWith("/") || listen.startsWith("unix!")) return true;
  let host: string;
  try {
    const a = parseAddress(listen, 0);
    if (a.network === "unix") return true;
    host = a.host;
  } catch {
    host = listen;
  }
  host = host.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The node's `xcpu-admin` account id from /etc/passwd, else 65530. */
export function adminId(passwd = "/etc/passwd"): number {
  try {
    for (const line of readFileSync(passwd, "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === ADMIN_NAME && f[2] && /^\d+$/.test(f[2])) return Number(f[2]);
    }
  } catch {
    // no passwd file
  }
  return DEFAULT_ADMIN_ID;
}

function listenAddress(opts: XcpufsOptions): string {
  const port = opts.port ?? DEFAULT_PORT;
  const l = opts.listen ?? (opts.noAuth ? "127.0.0.1" : "0.0.0.0");
  if (l.startsWith("/") || l.includes("!")) return l.startsWith("/") ? `unix!${l}` : l;
  if (l.startsWith("[")) return l.includes("]:") ? l : `${l}:${port}`;
  if (l.includes(":") && !l.includes(".")) return `tcp!${l}!${port}`; // bare IPv6
  if (/:\d+$/.test(l)) return l;
  return `tcp!${l}!${port}`;
}

/** Make foreign binaries runnable: mount binfmt_misc and enable the qemu handler for `cpu` (root only). */
async function prepareForeignArch(arch: string, log: Log): Promise<void> {
  const cpu = arch.trim().split("/").filter(Boolean)[1];
  if (!cpu || process.getuid?.() !== 0) return;
  const run = promisify(execFile);
  const dir = "/proc/sys/fs/binfmt_misc";
  try {
    if (!existsSync(`${dir}/status`)) await run("mount", ["-t", "binfmt_misc", "binfmt_misc", dir]);
    if (!existsSync(`${dir}/qemu-${cpu}`) && existsSync("/usr/sbin/update-binfmts")) {
      await run("/usr/sbin/update-binfmts", ["--enable", `qemu-${cpu}`]);
    }
  } catch (err) {
    log.warn({ err, arch }, "cannot prepare binfmt_misc for foreign binaries");
  }
}

/** Refuses, at start, a session root every `clone` would fail on. */
function checkSessionRoot(dir: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (err) {
    throw new Error(
      `cannot make session directories in ${dir}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such directory" : (err as Error).message}`,
    );
  }
  if (!isDir) throw new Error(`cannot make session directories in ${dir}: not a directory`);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw new Error(`cannot make session directories in ${dir}: not writable`);
  }
}

/** Start an xcpufs in this process. */
export async function startXcpufs(opts: XcpufsOptions = {}): Promise<XcpufsHandle> {
  const log = opts.logger ?? silent;
  const listen = listenAddress(opts);
  if (opts.noAuth && !isLoopback(listen)) {
    throw new Error(`--no-auth only listens on loopback addresses, not ${opts.listen}`);
  }
  let adminKey: PublicKey | undefined;
  if (opts.adminKey) adminKey = parsePublicKey(opts.adminKey);
  else {
    const file = opts.adminKeyFile ?? DEFAULT_ADMIN_KEY;
    let text: string | undefined;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      if (opts.adminKeyFile) throw new Error(`cannot read admin key ${file}: ${(err as Error).message}`);
      (opts.noAuth ? log.info : log.warn).call(log, { file }, "no admin key: admin logins will fail");
    }
    if (text !== undefined) {
      if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text))
        log.warn(
          { file },
          "the admin key file holds a private key: only its public half is used; nodes need only the .pub file",
        );
      try {
        const first = text.split("\n").find((l) => l.trim() !== "" && !l.startsWith("#")) ?? "";
        adminKey = parsePublicKey(text.trimStart().startsWith("-----") ? text : first);
      } catch (err) {
        throw new Error(`${file}: ${(err as Error).message}`);
      }
    }
  }
  // Absolute: programs start with their session directory as cwd and a path inside it.
  const tmpdir = resolve(opts.tmpdir ?? osTmpdir());
  checkSessionRoot(tmpdir);
  const users = new UserDb({ adminId: adminId(), adminKey, stateDir: opts.stateDir });
  if (opts.importUnixUsers) {
    const added = importUnixUsers(users, {}, log);
    log.info({ users: added }, "imported Unix users");
  }
  let arch = opts.arch ? opts.arch.trim() : localArch().trim();
  if (!arch.startsWith("/")) arch = `/${arch}`;
  if (opts.arch) await prepareForeignArch(arch, log);
  const env = opts.env
    ? Object.entries(opts.env)
        .map(([k, v]) => `${k}=${v}`)
        .map(
          (e) =>
            `${e.includes(" ") || e.includes("'") || e.includes("\t") || e.includes("\n") ? `'${e.replaceAll("'", "''")}'` : e}\n`,
        )
        .join("")
    : environmentText();
  const xcpufs = new Xcpufs({
    users,
    tmpdir,
    arch,
    noAuth: opts.noAuth ?? false,
    sameUser: opts.sameUser ?? false,
    retain: opts.retain ?? false,
    forkHelper: !opts.noForkHelper,
    nativeHelper: opts.noForkHelper ? undefined : await chooseNativeHelper(opts.forkHelper ?? "auto", log),
    env,
    log,
    clientTrace: opts.trace ? (l) => opts.trace?.(`client ${l}`) : undefined,
    maxSessionsPerUser: opts.maxSessionsPerUser,
  });
  const server = new Server({
    backend: xcpuBackend(xcpufs),
    maxMsize: opts.msize ?? DEFAULT_MSIZE,
    trace: opts.trace,
    logger: log as unknown as ConstructorParameters<typeof Server>[0]["logger"],
    name: "xcpufs",
    closeGraceMs: 1000,
    ...(opts.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: opts.handshakeTimeoutMs } : {}),
  });
  let bound: Awaited<ReturnType<typeof server.listen>>;
  try {
    bound = await server.listen(listen);
  } catch (err) {
    // Nothing served: the session root made for this server (and its fork helper) go again.
    await xcpufs.shutdown();
    throw err;
  }
  xcpufs.startForkHelper();
  const address = bound.network === "unix" ? `unix!${bound.path}` : `tcp!${bound.host}!${bound.port}`;
  log.info(
    { address, arch: arch.trim(), noAuth: xcpufs.noAuth, switchUsers: xcpufs.switchUsers },
    "xcpufs listening",
  );
  let closing: Promise<void> | undefined;
  return {
    address,
    port: bound.network === "tcp" ? bound.port : 0,
    xcpufs,
    close() {
      closing ??= (async () => {
        await xcpufs.shutdown();
        await server.close();
      })();
      return closing;
    },
  };
}

export type ForkHelperKind = "auto" | "native" | "perl";

/** The native helper's binary when it is to be used (built now if it was not yet). */
async function chooseNativeHelper(kind: ForkHelperKind, log: Log): Promise<string | undefined> {
  if (kind === "perl") return undefined;
  const native = await nativeForkHelper(log);
  if (native.why !== undefined && kind === "native")
    throw new Error(`the native fork helper cannot be used: ${native.why}`);
  return native.path;
}
