// Small raw TCP servers that misbehave like broken nodes, and a port nobody listens on.

import { readFileSync } from "node:fs";
import net from "node:net";

export interface RawServer {
  port: number;
  /** Connections accepted so far. */
  connections: number;
  close(): Promise<void>;
}

async function serve(onConn: (s: net.Socket) => void): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  const info = { connections: 0 };
  const server = net.createServer((s) => {
    info.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    onConn(s);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get connections() {
      return info.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Answers whatever it is sent with bytes that are not 9P (a size field claiming 1 GiB, then text). */
export function garbageServer(): Promise<RawServer> {
  return serve((s) => {
    s.once("data", () => {
      const junk = Buffer.alloc(64, 0x41);
      junk.writeUInt32LE(0x40000000, 0);
      s.write(junk);
      s.write("HTTP/1.0 400 Bad Request\r\n\r\n");
    });
  });
}

/** Accepts connections and never says anything. */
export function silentServer(): Promise<RawServer> {
  return serve(() => {});
}

const PORTS_FROM = 10_000;
const PORTS_PER_WORKER = 1000;

/**
 * First port of this worker's slice, below the kernel's ephemeral range; undefined when that range
 * leaves no room for one.
 */
const sliceBase = ((): number | undefined => {
  let low = 32768;
  try {
    const read = Number(
      readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0],
    );
    if (Number.isInteger(read) && read > 0) low = read;
  } catch {
    // the usual default
  }
  const slices = Math.floor((low - PORTS_FROM) / PORTS_PER_WORKER);
  const worker = Number(process.env.VITEST_POOL_ID ?? process.env.VITEST_WORKER_ID ?? 1);
  if (slices < 1 || !Number.isInteger(worker)) return undefined;
  return PORTS_FROM + ((worker - 1) % slices) * PORTS_PER_WORKER;
})();
let nextPortInSlice = Math.floor(Math.random() * PORTS_PER_WORKER);

/** Whether `port` on 127.0.0.1 cannot be bound now (something listens there). */
function portTaken(port: number): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once("error", () => resolve(true));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(false)));
  });
}

/**
 * A loopback port with nothing listening on it (connects are refused), which a test may also bind
 * later, or bind again after a restart. A port that `listen(0)` handed out and was then released
 * could go to any other `listen(0)` or outgoing connection meanwhile; this one comes from below the
 * ephemeral range, which the kernel never hands out, from a slice of its own for each concurrently
 * running test worker.
 */
export async function deadPort(): Promise<number> {
  if (sliceBase === undefined) return releasedPort();
  for (let tries = 0; tries < PORTS_PER_WORKER; tries++) {
    const port = sliceBase + (nextPortInSlice++ % PORTS_PER_WORKER);
    if (!(await portTaken(port))) return port;
  }
  return releasedPort();
}

async function releasedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Polls `check` every 20 ms until it returns a truthy value or `ms` passes. */
export async function waitFor<T>(check: () => T | Promise<T>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A TCP relay to a node whose answers can be held back (a slow link), and released. */
export interface HoldingRelay {
  port: number;
  /** Keep what the node sends from now on, until release(). */
  hold(): void;
  /** Forward what was held, and everything after it. */
  release(): void;
  /** Whole 9P messages the node sent while held, not yet forwarded. */
  readonly heldMessages: number;
  close(): Promise<void>;
}

export async function holdingRelay(targetPort: number): Promise<HoldingRelay> {
  let holding = false;
  const pending: { to: net.Socket; data: Buffer }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const node = net.connect(targetPort, "127.0.0.1");
    for (const s of [client, node]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        node.destroy();
      });
    }
    client.on("data", (d) => node.write(d));
    node.on("data", (d) => {
      if (holding) pending.push({ to: client, data: d });
      else client.write(d);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const p of pending.splice(0)) p.to.write(p.data);
    },
    get heldMessages() {
      const bytes = Buffer.concat(pending.map((p) => p.data));
      let n = 0;
      for (let at = 0; at + 4 <= bytes.length; n++) {
        const size = bytes.readUInt32LE(at);
        if (size < 7 || at + size > bytes.length) break;
        at += size;
      }
      return n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
