// dial/listen and the frame transport over real sockets.

import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Dialect, MsgType } from "../codec/constants.js";
import { encode } from "../codec/index.js";
import { ConnectionError, MessageTooLargeError, ProtocolError } from "../errors.js";
import { dial, type Listener, listen } from "./dial.js";
import { FrameTransport } from "./frames.js";

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function pair(): Promise<{ client: net.Socket; server: net.Socket; listener: Listener }> {
  let accepted: (s: net.Socket) => void = () => {};
  const got = new Promise<net.Socket>((r) => {
    accepted = r;
  });
  const listener = await listen("tcp!127.0.0.1!0", (s) => accepted(s));
  const a = listener.address();
  const client = await dial(a);
  const server = await got;
  cleanup.push(() => {
    client.destroy();
    server.destroy();
    return listener.close();
  });
  return { client, server, listener };
}

describe("dial and listen", () => {
  it("connects over TCP with Nagle off and reports the bound port", async () => {
    const { client, listener } = await pair();
    const a = listener.address();
    expect(a.network).toBe("tcp");
    expect(a.network === "tcp" && a.port).toBeGreaterThan(0);
    expect(client.remotePort).toBe(a.network === "tcp" ? a.port : -1);
  });

  it("connects over a Unix socket and replaces a stale socket file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ninep-tr-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, "s");
    // A stale socket file: bound once, then the process "died" without unlinking (simulated).
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(path, () => r()));
    (stale as unknown as { _handle: { close(): void } | null })._handle?.close();
    const l = await listen(`unix!${path}`, (s) => s.end("hi"));
    cleanup.push(() => l.close());
    const s = await dial(path);
    const data = await new Promise<string>((r) => s.once("data", (d) => r(String(d))));
    expect(data).toBe("hi");
    s.destroy();
  });

  it("names the address when the connection is refused", async () => {
    const err = await dial("tcp!127.0.0.1!1").catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toBe("cannot connect to tcp!127.0.0.1!1: ECONNREFUSED");
    expect((err.cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });

  it("a connect that finished while the event loop was stalled wins over its timeout", async () => {
    const listener = await listen("tcp!127.0.0.1!0", (s) => s.destroy());
    cleanup.push(() => listener.close());
    const refused = await listen("tcp!127.0.0.1!0", () => {});
    const refusedAddress = refused.address();
    await refused.close();
    const stall = () => {
      const end = Date.now() + 300;
      while (Date.now() < end) {}
    };
    // The dial issues its connect on the next tick; the stall comes right after it, so the
    // handshake (or the refusal) completes while the 50 ms timer is already due.
    const ok = dial(listener.address(), { timeoutMs: 50 });
    process.nextTick(stall);
    const socket = await ok;
    socket.destroy();
    const no = dial(refusedAddress, { timeoutMs: 50 }).catch((e) => e);
    process.nextTick(stall);
    expect(await no).toBeInstanceOf(ConnectionError);
  });

  it("rejects with the signal's reason when aborted", async () => {
    await expect(dial("tcp!127.0.0.1!1", { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: "AbortError",
    });
  });

  it("fails to listen on a port in use with ConnectionError", async () => {
    const { listener } = await pair();
    const a = listener.address();
    await expect(listen(a, () => {})).rejects.toThrow(/cannot listen on tcp!127\.0\.0\.1!\d+: EADDRINUSE/);
  });
});

describe("FrameTransport", () => {
  it("delivers frames split across chunks and several frames in one chunk", async () => {
    const { client, server } = await pair();
    const frames: Buffer[] = [];
    new FrameTransport(client, { onFrame: (f) => frames.push(f), onClose: () => {} }, { maxSize: 8192 });
    const a = encode({ type: MsgType.Rclunk, tag: 1 }, Dialect.P2000);
    const b = encode({ type: MsgType.Rerror, tag: 2, ename: "file not found" }, Dialect.P2000);
    const all = Buffer.concat([a, b, a]);
    server.write(all.subarray(0, 3));
    await new Promise((r) => setTimeout(r, 20));
    server.write(all.subarray(3));
    for (const end = Date.now() + 10_000; frames.length < 3 && Date.now() < end; )
      await new Promise((r) => setTimeout(r, 10));
    expect(frames.map((f) => f.toString("hex"))).toEqual([a, b, a].map((f) => f.toString("hex")));
  });

  it("refuses to send more than msize", async () => {
    const { client } = await pair();
    const t = new FrameTransport(client, { onFrame: () => {}, onClose: () => {} }, { maxSize: 64 });
    expect(() => t.send(Buffer.alloc(65))).toThrow(MessageTooLargeError);
  });

  it("closes with an error when the peer sends a frame larger than msize", async () => {
    const { client, server } = await pair();
    const closed = new Promise<Error | undefined>((resolve) => {
      new FrameTransport(client, { onFrame: () => {}, onClose: resolve }, { maxSize: 100 });
    });
    const big = Buffer.alloc(200);
    big.writeUInt32LE(200, 0);
    server.write(big);
    const err = await closed;
    expect(err).toBeInstanceOf(Error);
    expect(err instanceof ProtocolError || err instanceof MessageTooLargeError).toBe(true);
  });

  it("reports a peer that hangs up as ConnectionError", async () => {
    const { client, server } = await pair();
    const closed = new Promise<Error | undefined>((resolve) => {
      new FrameTransport(client, { onFrame: () => {}, onClose: resolve }, { maxSize: 100, label: "tcp!x!1" });
    });
    server.end();
    const err = await closed;
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err?.message).toBe("connection closed by tcp!x!1");
  });
});

describe("FrameTransport writes", () => {
  /** Counts the writes the socket makes: plain writes and writevs (with their frame counts). */
  function spy(sock: net.Socket): string[] {
    const calls: string[] = [];
    const s = sock as unknown as {
      _write(c: Buffer, e: string, cb: (e?: Error | null) => void): void;
      _writev(c: { chunk: Buffer }[], cb: (e?: Error | null) => void): void;
    };
    const w = s._write.bind(sock);
    const wv = s._writev.bind(sock);
    s._write = (c, e, cb) => {
      calls.push(`write ${c.length}`);
      w(c, e, cb);
    };
    s._writev = (c, cb) => {
      calls.push(`writev ${c.map((x) => x.chunk.length).join("+")}`);
      wv(c, cb);
    };
    return calls;
  }
  const tick = () => new Promise((r) => setImmediate(r));
  const frame = (n: number) => {
    const b = Buffer.alloc(n);
    b.writeUInt32LE(n, 0);
    return b;
  };

  it("sends a tick's frames in one writev when more were announced, a lone frame at once, in order", async () => {
    const { client, server } = await pair();
    const calls = spy(server);
    const t = new FrameTransport(server, { onFrame: () => {}, onClose: () => {} }, { maxSize: 1 << 20 });
    const got: Buffer[] = [];
    client.on("data", (d: Buffer) => got.push(d));
    t.send(frame(11));
    expect(calls).toEqual(["write 11"]);
    await tick();
    t.send(frame(12), undefined, true);
    t.send(frame(13));
    await Promise.resolve();
    t.send(frame(14));
    expect(calls).toEqual(["write 11"]);
    await tick();
    expect(calls).toEqual(["write 11", "writev 12+13+14"]);
    // A bulk frame goes out at once, after what the tick held.
    t.send(frame(15), undefined, true);
    t.send(frame(20_000));
    t.send(frame(16));
    expect(calls.slice(2)).toEqual(["write 15", "write 20000"]);
    await tick();
    expect(calls.slice(4)).toEqual(["write 16"]);
    const want = [11, 12, 13, 14, 15, 20_000, 16];
    const total = want.reduce((a, b) => a + b, 0);
    for (const end = Date.now() + 10_000; Buffer.concat(got).length < total && Date.now() < end; )
      await tick();
    const all = Buffer.concat(got);
    const sizes: number[] = [];
    for (let off = 0; off < all.length; off += all.readUInt32LE(off)) sizes.push(all.readUInt32LE(off));
    expect(sizes).toEqual(want);
  });

  it("answers to the frames of one incoming chunk leave in one writev", async () => {
    const { client, server } = await pair();
    const calls = spy(server);
    const t: FrameTransport = new FrameTransport(
      server,
      { onFrame: (f) => t.send(frame(f.length + 100)), onClose: () => {} },
      { maxSize: 8192 },
    );
    client.write(Buffer.concat([frame(7), frame(8), frame(9)]));
    for (const end = Date.now() + 10_000; calls.length === 0 && Date.now() < end; ) await tick();
    await tick();
    expect(calls).toEqual(["writev 107+108+109"]);
  });

  it("end() sends a frame held in the same tick before closing", async () => {
    const { client, server } = await pair();
    const t = new FrameTransport(server, { onFrame: () => {}, onClose: () => {} }, { maxSize: 8192 });
    const got: Buffer[] = [];
    client.on("data", (d: Buffer) => got.push(d));
    const ended = new Promise((r) => client.on("end", r));
    t.send(frame(10), undefined, true);
    void t.end();
    await ended;
    expect(Buffer.concat(got).length).toBe(10);
  });
});
