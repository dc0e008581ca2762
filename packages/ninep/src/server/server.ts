// The 9P server: listens on TCP or Unix sockets (or serves any Duplex), owns the options, the
// backend and the server-wide DMEXCL locks, and hands each stream to a ServerConnection.

import { lstatSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import { dirname } from "node:path";
import type { Duplex } from "node:stream";
import { Dialect, IOHDRSZ } from "../codec/constants.js";
import { type Address, formatAddress, parseAddress } from "../transport/address.js";
import type { Backend } from "./backend.js";
import { MIN_MSIZE, ServerConnection } from "./connection.js";

/** Idle time before TCP keepalive probes start on a served connection. */
const KEEPALIVE_DELAY_MS = 60_000;

/** A pino-compatible logger: any object with these four methods (pino, console-like wrappers). */
export interface Logger {
  debug(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
}

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Default largest message: 1 MiB of payload plus the I/O header. */
export const DEFAULT_MAX_MSIZE = 1024 * 1024 + IOHDRSZ;

export interface ServerOptions {
  /** What to serve. */
  backend: Backend;
  /** Largest msize offered in Rversion (client's value is clamped to it). Default 1 MiB + 24. Minimum 256. */
  maxMsize?: number;
  /**
   * Dialects the server will agree to, intersected with `backend.dialects`. Default: all three;
   * a backend without `dialects` serves 9P2000 and 9P2000.u.
   */
  dialects?: readonly Dialect[];
  /** Fids per connection; more → Rerror "too many fids". Default 4096. */
  maxFidsPerConnection?: number;
  /** Auth fids per connection (Tauth); more → Rerror "too many authentication fids". Default 4. */
  maxAuthFidsPerConnection?: number;
  /** Open connections; a new one beyond it is closed at once. Default 4096. */
  maxConnections?: number;
  /**
   * Connections from one address that have not attached yet (nobody known behind them); a new one
   * from that address beyond it is closed at once, so that clients nobody knows cannot hold the
   * server's memory, nor, from one address, lock the others out. Default 256.
   */
  maxUnattachedPerAddress?: number;
  /** Requests being processed per connection; more → Rerror "too many outstanding requests" (Tflush, Tclunk and Tremove exempt). Default 1024. */
  maxOutstandingPerConnection?: number;
  /** Close a connection that has not attached (Tversion, then a successful Tattach) in this time. 0 = never. Default 30 000. */
  handshakeTimeoutMs?: number;
  /** Close a connection with no traffic and no outstanding request for this long. 0 = never (default). */
  idleTimeoutMs?: number;
  /**
   * How long Tflush (and Tversion's clunks) wait for a handler that ignores its abort signal before
   * giving up on it (its reply is then dropped). Default 1000.
   */
  flushTimeoutMs?: number;
  /** Default grace period of close(). Default 5000. */
  closeGraceMs?: number;
  /** Called with one line per message in and out ("<conn> <- Twalk tag=1 …"). */
  trace?: (line: string) => void;
  /** Where diagnostics go (default: nowhere). */
  logger?: Logger;
  /** Name used in messages such as "<name>: authentication not required". Default "ninep". */
  name?: string;
}

/** Resolved options, shared with connections. */
export interface ResolvedOptions {
  maxFidsPerConnection: number;
  maxAuthFidsPerConnection: number;
  maxConnections: number;
  maxUnattachedPerAddress: number;
  maxOutstandingPerConnection: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  flushTimeoutMs: number;
  closeGraceMs: number;
  trace: ((line: string) => void) | undefined;
}

/** What a ServerConnection needs from its server. @internal */
export interface ServerCore {
  readonly backend: Backend;
  readonly maxMsize: number;
  readonly opts: ResolvedOptions;
  readonly logger: Logger;
  readonly name: string;
  chooseDialect(version: string): Dialect | undefined;
  exclAcquire(path: bigint): boolean;
  exclRelease(path: bigint): void;
  forget(conn: ServerConnection): void;
}

/**
 * A 9P file server.
 *
 * @example
 * const server = new Server({ backend: treeBackend(root) });
 * const addr = await server.listen("tcp!127.0.0.1!0");
 * // ... later
 * await server.close();
 */
export class Server {
  readonly backend: Backend;
  readonly maxMsize: number;
  readonly logger: Logger;
  readonly opts: ResolvedOptions;
  readonly name: string;
  #dialects: Dialect[];
  #conns = new Set<ServerConnection>();
  #lastRefusalLog = 0;
  #listeners: { server: net.Server; address: Address; unixPath?: string }[] = [];
  #nextId = 1;
  #excl = new Set<bigint>();
  #closing: Promise<void> | undefined;
  #core: ServerCore;

  constructor(opts: ServerOptions) {
    if (!opts || typeof opts.backend?.attach !== "function") {
      throw new TypeError("Server: options.backend with an attach() method is required");
    }
    this.backend = opts.backend;
    const maxMsize = opts.maxMsize ?? DEFAULT_MAX_MSIZE;
    if (!Number.isInteger(maxMsize) || maxMsize < MIN_MSIZE || maxMsize > 0xffffffff) {
      throw new RangeError(
        `Server: maxMsize must be an integer from ${MIN_MSIZE} to 4294967295, got ${maxMsize}`,
      );
    }
    this.maxMsize = maxMsize;
    this.logger = opts.logger ?? silent;
    this.name = opts.name ?? "ninep";
    const wanted = opts.dialects ?? [Dialect.P2000, Dialect.P2000u, Dialect.P2000L];
    const supported = opts.backend.dialects ?? [Dialect.P2000, Dialect.P2000u];
    this.#dialects = wanted.filter((d) => supported.includes(d));
    if (this.#dialects.length === 0)
      throw new RangeError("Server: no dialect is both allowed and supported by the backend");
    this.opts = {
      maxFidsPerConnection: positive(opts.maxFidsPerConnection, 4096, "maxFidsPerConnection"),
      maxAuthFidsPerConnection: positive(opts.maxAuthFidsPerConnection, 4, "maxAuthFidsPerConnection"),
      maxConnections: positive(opts.maxConnections, 4096, "maxConnections"),
      maxUnattachedPerAddress: positive(opts.maxUnattachedPerAddress, 256, "maxUnattachedPerAddress"),
      maxOutstandingPerConnection: positive(
        opts.maxOutstandingPerConnection,
        1024,
        "maxOutstandingPerConnection",
      ),
      handshakeTimeoutMs: nonNegative(opts.handshakeTimeoutMs, 30_000, "handshakeTimeoutMs"),
      idleTimeoutMs: nonNegative(opts.idleTimeoutMs, 0, "idleTimeoutMs"),
      flushTimeoutMs: nonNegative(opts.flushTimeoutMs, 1000, "flushTimeoutMs"),
      closeGraceMs: nonNegative(opts.closeGraceMs, 5000, "closeGraceMs"),
      trace: opts.trace,
    };
    const self = this;
    this.#core = {
      backend: this.backend,
      maxMsize: this.maxMsize,
      opts: this.opts,
      logger: this.logger,
      name: this.name,
      chooseDialect: (v) => this.chooseDialect(v),
      exclAcquire(path) {
        if (self.#excl.has(path)) return false;
        self.#excl.add(path);
        return true;
      },
      exclRelease(path) {
        self.#excl.delete(path);
      },
      forget(conn) {
        self.#conns.delete(conn);
      },
    };
  }

  /** Dialects this server agrees to. */
  get dialects(): readonly Dialect[] {
    return this.#dialects;
  }

  /** Number of open connections. */
  get connectionCount(): number {
    return this.#conns.size;
  }

  /** The open connections (a snapshot). */
  get connections(): ServerConnection[] {
    return [...this.#conns];
  }

  /**
   * The reply to a Tversion string (V3, V4): the dialect to use, or undefined for "unknown".
   * "9P2000.u"/"9P2000.L" when offered and enabled; any other "9P2000.<suffix>" (or a disabled
   * extension) falls back to "9P2000" when that is enabled.
   */
  chooseDialect(version: string): Dialect | undefined {
    const base = version.split(".")[0];
    if (base !== "9P2000") return undefined;
    if (version === Dialect.P2000u && this.#dialects.includes(Dialect.P2000u)) return Dialect.P2000u;
    if (version === Dialect.P2000L && this.#dialects.includes(Dialect.P2000L)) return Dialect.P2000L;
    return this.#dialects.includes(Dialect.P2000) ? Dialect.P2000 : undefined;
  }

  /**
   * Starts listening on `address`: "tcp!host!port", "host:port", "[::1]:port", "unix!/path" or a
   * path starting with "/". Port 0 picks a free port; see address() for the result. A stale Unix
   * socket file is replaced.
   */
  async listen(address: string | Address): Promise<Address> {
    if (this.#closing) throw new Error("Server: listen() after close()");
    const addr = typeof address === "string" ? parseAddress(address) : address;
    const srv = net.createServer({ noDelay: true }, (sock) => this.#accept(sock));
    if (addr.network === "unix") {
      rmStaleSocket(addr.path);
    }
    await new Promise<void>((resolve, reject) => {
      const onErr = (e: Error) => reject(listenError(addr, e));
      srv.once("error", onErr);
      const done = () => {
        // Failing to listen is the caller's error (the promise rejects); only later ones are logged.
        srv.on("error", (err) => this.logger.error({ err }, "9p: listener error"));
        srv.off("error", onErr);
        resolve();
      };
      if (addr.network === "unix") srv.listen({ path: addr.path, backlog: 511 }, done);
      else srv.listen({ host: addr.host, port: addr.port, backlog: 511 }, done);
    });
    let bound: Address = addr;
    if (addr.network === "tcp") {
      const a = srv.address() as net.AddressInfo;
      bound = { network: "tcp", host: a.address, port: a.port };
    }
    this.#listeners.push({
      server: srv,
      address: bound,
      unixPath: addr.network === "unix" ? addr.path : undefined,
    });
    this.logger.info({ address: bound }, "9p: listening");
    return bound;
  }

  /** The address of the first listener (undefined before listen()). */
  address(): Address | undefined {
    return this.#listeners[0]?.address;
  }

  /** Addresses of every listener. */
  addresses(): Address[] {
    return this.#listeners.map((l) => l.address);
  }

  #accept(sock: net.Socket): void {
    if (this.#closing) {
      sock.destroy();
      return;
    }
    const refused = this.#overLimit(sock.remoteAddress);
    if (refused) {
      sock.destroy();
      const now = Date.now();
      if (now - this.#lastRefusalLog >= 10_000) {
        this.#lastRefusalLog = now;
        this.logger.warn(
          { remote: sock.remoteAddress, limit: refused },
          `9p: too many connections (${refused}); refusing new ones`,
        );
      }
      return;
    }
    // Small RPC replies must not wait for Nagle's algorithm (spec section 8).
    if (sock.remoteAddress) {
      sock.setNoDelay(true);
      // A client whose host vanished (power, cable, firewall) never closes its connection; without
      // probes its fids, and xcpufs's sessions and programs, would stay forever. The kernel's
      // default probe interval and count apply after this first delay (about 12 min on Linux).
      sock.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    }
    const remote = sock.remoteAddress ? `${sock.remoteAddress}:${sock.remotePort}` : "unix";
    this.serveDuplex(sock, remote);
  }

  /** The limit a new connection from `host` would pass, if any. */
  #overLimit(host: string | undefined): string | undefined {
    if (this.#conns.size >= this.opts.maxConnections) return `maxConnections ${this.opts.maxConnections}`;
    const prefix = host ? `${host}:` : "unix";
    let unattached = 0;
    for (const c of this.#conns) if (!c.attached && c.info.remote.startsWith(prefix)) unattached++;
    if (unattached >= this.opts.maxUnattachedPerAddress)
      return `maxUnattachedPerAddress ${this.opts.maxUnattachedPerAddress}`;
    return undefined;
  }

  /** Serves 9P on any Duplex (a socket, a child's stdio pair, an in-memory pair). */
  serveDuplex(stream: Duplex, remote = "duplex"): ServerConnection {
    if (this.#closing) throw new Error("Server: serveDuplex() after close()");
    const conn = new ServerConnection(this.#core, stream, { id: this.#nextId++, remote });
    this.#conns.add(conn);
    return conn;
  }

  /**
   * Graceful shutdown: stop accepting, let in-flight requests finish for up to `graceMs`
   * (default options.closeGraceMs), then abort the rest, clunk every fid and close every connection.
   */
  close(graceMs: number = this.opts.closeGraceMs): Promise<void> {
    this.#closing ??= (async () => {
      const listeners = this.#listeners;
      // net.Server.close() stops accepting at once but calls back only after every socket closed.
      const stopped = listeners.map(
        (l) =>
          new Promise<void>((r) => {
            l.server.close(() => r());
          }),
      );
      await Promise.all([...this.#conns].map((c) => c.shutdown(graceMs)));
      await Promise.all(stopped);
      for (const l of listeners) if (l.unixPath) rmStaleSocket(l.unixPath);
    })();
    return this.#closing;
  }
}

function positive(v: number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1)
    throw new RangeError(`Server: ${what} must be a positive integer, got ${v}`);
  return v;
}

function nonNegative(v: number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v < 0) throw new RangeError(`Server: ${what} must be ≥ 0, got ${v}`);
  return v;
}

function rmStaleSocket(path: string): void {
  try {
    // Only ever remove a socket file (left by a previous run), never anything else.
    if (lstatSync(path).isSocket()) rmSync(path, { force: true });
  } catch {
    // not ours to worry about: listen() will report the real problem
  }
}

const LISTEN_FAILURES: Record<string, string> = {
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "no such local address",
  EACCES: "permission denied",
  EPERM: "permission denied",
  ENOENT: "no such file or directory",
  ENOTDIR: "not a directory",
  EROFS: "read-only file system",
  ENAMETOOLONG: "socket path too long",
  EINVAL: "invalid argument",
};

/**
 * "cannot listen on tcp!127.0.0.1!6667: address already in use (EADDRINUSE)", keeping `code`. For
 * a Unix socket whose directory is missing (libuv reports that bind as EACCES) it says so.
 */
function listenError(addr: Address, err: NodeJS.ErrnoException): Error {
  let code = typeof err.code === "string" ? err.code : undefined;
  let detail = "";
  if (addr.network === "unix") {
    const dir = dirname(addr.path);
    try {
      if (!statSync(dir).isDirectory()) {
        code = "ENOTDIR";
        detail = `: ${dir} is not a directory`;
      }
    } catch (e) {
      const c = (e as NodeJS.ErrnoException).code;
      if (c === "ENOENT" || c === "ENOTDIR") {
        code = c;
        detail = c === "ENOENT" ? `: ${dir} does not exist` : `: a part of ${dir} is not a directory`;
      }
    }
  }
  const why = code ? `${LISTEN_FAILURES[code] ?? err.message} (${code})` : err.message;
  return Object.assign(
    new Error(`cannot listen on ${formatAddress(addr)}: ${why}${detail}`, { cause: err }),
    {
      code,
    },
  );
}
