// Small raw TCP servers that misbehave like broken nodes, and a port nobody listens on.

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

/** A loopback port with nothing listening on it (connects are refused). */
export async function deadPort(): Promise<number> {
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
