// Opens and accepts 9P byte streams over TCP and Unix-domain sockets.

// node:fs/promises (with readline and the fs watchers it loads) costs a command that only dials
// ~2 ms at start: it is reached through fs.promises, on first use, by listen() alone.
import { promises as fsp } from "node:fs";
import net from "node:net";
import { ConnectionError, TimeoutError } from "../errors.js";
import { afterIoTimeout } from "../io-timeout.js";
import { type Address, DEFAULT_9P_PORT, formatAddress, parseAddress } from "./address.js";

export interface DialOptions {
  /** Give up connecting after this many milliseconds (TimeoutError). Default: no limit. */
  timeoutMs?: number;
  /** Abort the connect attempt; rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Port used when the address has none. Default 564. */
  defaultPort?: number;
}

function toAddress(addr: string | Address, defaultPort: number): Address {
  return typeof addr === "string" ? parseAddress(addr, defaultPort) : addr;
}

/**
 * Connects to a TCP or Unix-socket address. TCP sockets get `setNoDelay` (9P is request/response,
 * Nagle only adds latency) and keepalive probes after a minute idle. A refused or failed connect
 * rejects with ConnectionError naming the address (the Node error is `cause`); a connect timeout
 * rejects with TimeoutError.
 */
export function dial(addr: string | Address, opts: DialOptions = {}): Promise<net.Socket> {
  let address: Address;
  try {
    address = toAddress(addr, opts.defaultPort ?? DEFAULT_9P_PORT);
  } catch (err) {
    return Promise.reject(err);
  }
  const where = formatAddress(address);
  const { signal, timeoutMs } = opts;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const socket =
      address.network === "unix"
        ? net.connect({ path: address.path })
        : net.connect({ host: address.host, port: address.port });
    let cancelTimeout: (() => void) | undefined;
    const cleanup = () => {
      cancelTimeout?.();
      socket.off("connect", onConnect);
      socket.off("error", onError);
      signal?.removeEventListener("abort", onAbort);
    };
    const fail = (err: unknown) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onConnect = () => {
      cleanup();
      if (address.network === "tcp") {
        socket.setNoDelay(true);
        // A backstop for a peer that vanished (link down) while nothing was being sent: the kernel
        // probes an idle connection after a minute and ends it when the probes go unanswered (with
        // the system's default counts, some ten minutes later).
        socket.setKeepAlive(true, 60_000);
      }
      resolve(socket);
    };
    const onError = (err: Error) => {
      const code = (err as NodeJS.ErrnoException).code;
      fail(new ConnectionError(`cannot connect to ${where}: ${code ?? err.message}`, { cause: err }));
    };
    const onAbort = () => fail(signal?.reason);
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined && timeoutMs > 0) {
      cancelTimeout = afterIoTimeout(timeoutMs, () =>
        fail(new TimeoutError(`connect to ${where} timed out after ${timeoutMs} ms`)),
      );
    }
  });
}

/** A listening socket made by `listen`. */
export interface Listener {
  /** The bound address (with the real port when 0 was asked for). */
  address(): Address;
  /** Stops accepting; open connections are left alone. Removes a Unix socket file it created. */
  close(): Promise<void>;
  /** The underlying Node server. */
  readonly server: net.Server;
}

export interface ListenOptions {
  /** Port used when the address has none. Default 564. */
  defaultPort?: number;
  /** Listen backlog. Default 511 (Node's). */
  backlog?: number;
}

async function removeStaleSocket(path: string): Promise<void> {
  const st = await fsp.lstat(path).catch(() => undefined);
  if (!st?.isSocket()) return;
  // Only remove it if nobody answers on it.
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.connect({ path });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
  if (!alive) await fsp.unlink(path).catch(() => {});
}

/**
 * Listens on a TCP or Unix-socket address and calls `onConnection` for each accepted socket
 * (TCP sockets get `setNoDelay`). A stale Unix socket file nobody listens on is replaced.
 */
export async function listen(
  addr: string | Address,
  onConnection: (socket: net.Socket) => void,
  opts: ListenOptions = {},
): Promise<Listener> {
  const address = toAddress(addr, opts.defaultPort ?? DEFAULT_9P_PORT);
  const server = net.createServer((socket) => {
    if (address.network === "tcp") socket.setNoDelay(true);
    onConnection(socket);
  });
  if (address.network === "unix") await removeStaleSocket(address.path);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      reject(
        new ConnectionError(
          `cannot listen on ${formatAddress(address)}: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
          { cause: err },
        ),
      );
    };
    server.once("error", onError);
    const done = () => {
      server.off("error", onError);
      resolve();
    };
    if (address.network === "unix") server.listen({ path: address.path, backlog: opts.backlog }, done);
    else server.listen({ host: address.host, port: address.port, backlog: opts.backlog }, done);
  });
  return {
    server,
    address(): Address {
      if (address.network === "unix") return address;
      const bound = server.address();
      if (bound && typeof bound === "object") return { network: "tcp", host: address.host, port: bound.port };
      return address;
    },
    close(): Promise<void> {
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
