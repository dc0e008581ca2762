// Client behaviour against our own server on real sockets: many requests in flight, Tflush on
// abort and timeout, connection loss, close/destroy, version negotiation, walks and streams.

import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  Client,
  type ClientOptions,
  Fsys,
  memoryPair,
  VersionError,
  WalkError,
} from "../../src/client/index.js";
import { Dialect, decode, encode, Framer, MsgType, OREAD } from "../../src/codec/index.js";
import { ClosedError, ConnectionError, ProtocolError, RemoteError, TimeoutError } from "../../src/errors.js";
import {
  abortable,
  BytesFile,
  Server,
  SynthDir,
  SynthFile,
  staticFile,
  treeBackend,
} from "../../src/server/index.js";

const ALL = [Dialect.P2000, Dialect.P2000u, Dialect.P2000L];

/** A file whose reads wait until the test releases them (or the server aborts them on Tflush). */
class Gate {
  waiting = 0;
  aborted = 0;
  #release: Array<() => void> = [];
  file(name: string): SynthFile {
    return new SynthFile(name, {
      mode: 0o444,
      read: async (_h, offset, _count, ctx) => {
        if (offset > 0n) return "";
        this.waiting++;
        ctx.signal.addEventListener("abort", () => this.aborted++, { once: true });
        try {
          await abortable(new Promise<void>((r) => this.#release.push(r)), ctx.signal);
        } finally {
          this.waiting--;
        }
        return "released";
      },
    });
  }
  releaseAll(): void {
    for (const r of this.#release.splice(0)) r();
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function makeTree(gate: Gate): SynthDir {
  const root = new SynthDir("/", { mode: 0o777 });
  root.add(staticFile("hello", "hello, world\n"));
  root.add(gate.file("block"));
  root.add(new BytesFile("data", "", { mode: 0o666 }));
  let d = root;
  for (let i = 0; i < 20; i++) {
    const sub = new SynthDir(`d${i}`, { mode: 0o777 });
    d.add(sub);
    d = sub;
  }
  d.add(staticFile("deep", "bottom\n"));
  return root;
}

describe("client against the ninep server", () => {
  const gate = new Gate();
  let server: Server;
  let tcp: string;
  let unix: string;
  let tmp: string;
  const clients: Client[] = [];

  async function connect(opts: ClientOptions = {}, addr = tcp): Promise<Client> {
    const c = await Client.connect(addr, opts);
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "ninep-client-"));
    server = new Server({ backend: treeBackend(makeTree(gate), { dialects: ALL }) });
    const a = await server.listen("tcp!127.0.0.1!0");
    tcp = `tcp!127.0.0.1!${a.network === "tcp" ? a.port : 0}`;
    unix = `unix!${join(tmp, "9p.sock")}`;
    await server.listen(unix);
  });

  afterEach(async () => {
    gate.releaseAll();
    for (const c of clients.splice(0)) c.destroy();
  });

  afterAll(async () => {
    await server.close(0);
    await rm(tmp, { recursive: true, force: true });
  });

  for (const version of ALL) {
    for (const via of ["tcp", "unix"] as const) {
      it(`reads and writes files over ${via} in ${version}`, async () => {
        const c = await connect({ version, msize: 8192 + 24 }, via === "tcp" ? tcp : unix);
        expect(c.dialect).toBe(version);
        const fs = new Fsys(c, await c.attach("glenda", ""));
        expect((await fs.readFile("hello")).toString()).toBe("hello, world\n");
        const blob = randomBytes(200_000); // many iounits of 8 KiB, pipelined
        await fs.writeFile("data", blob);
        expect((await fs.readFile("data", { window: 16 })).equals(blob)).toBe(true);
        const chunks: Buffer[] = [];
        for await (const ch of fs.createReadStream("data", { window: 4 })) chunks.push(ch);
        expect(Buffer.concat(chunks).equals(blob)).toBe(true);
        const names = (await fs.readdir("/")).map((s) => s.name).sort();
        expect(names).toEqual(["block", "d0", "data", "hello"]);
        const st = await fs.stat("hello");
        expect(st.name).toBe("hello");
        expect(st.length).toBe(13n);
        await fs.close();
      });
    }
  }

  it("works over an in-memory Duplex pair and closes cleanly", async () => {
    const [near, far] = memoryPair();
    server.serveDuplex(far, "memory");
    const c = await Client.connect(near, { version: Dialect.P2000L, label: "memory" });
    const fs = new Fsys(c, await c.attach("glenda", ""), { ownsClient: true });
    expect((await fs.readFile("hello")).toString()).toBe("hello, world\n");
    await fs.close();
    expect(c.closed).toBe(true);
    await expect(c.attach("glenda", "")).rejects.toBeInstanceOf(ClosedError);
    await until(() => far.destroyed || far.writableEnded, "the server side to end");
  });

  it("keeps 64 requests in flight and matches every reply to its caller", async () => {
    const c = await connect();
    const root = await c.attach("glenda", "");
    const fids = await Promise.all(Array.from({ length: 64 }, () => root.walk("block")));
    await Promise.all(fids.map((f) => f.open(OREAD)));
    const reads = fids.map((f) => f.read(0, 100));
    await until(() => gate.waiting === 64, "64 blocked reads on the server");
    expect(c.inFlight).toBe(64);
    gate.releaseAll();
    const got = await Promise.all(reads);
    expect(got.every((b) => b.toString() === "released")).toBe(true);
    expect(c.inFlight).toBe(0);
  });

  it("aborting a blocked read sends Tflush, rejects with AbortError and frees the tag after Rflush", async () => {
    const lines: string[] = [];
    const c = await connect({ trace: (l) => lines.push(l) });
    const root = await c.attach("glenda", "");
    const f = await root.walk("block");
    await f.open(OREAD);
    const ac = new AbortController();
    const abortedBefore = gate.aborted;
    const p = f.read(0, 10, { signal: ac.signal });
    await until(() => gate.waiting === 1, "the read to block");
    ac.abort();
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(DOMException);
    expect((err as DOMException).name).toBe("AbortError");
    const readLine = lines.find((l) => l.startsWith("-> Tread"));
    const tag = /tag (\d+)/.exec(readLine ?? "")?.[1];
    expect(lines.some((l) => l.startsWith("-> Tflush") && l.includes(`oldtag ${tag}`))).toBe(true);
    await until(() => c.inFlight === 0, "Rflush");
    expect(lines.some((l) => l.startsWith("<- Rflush"))).toBe(true);
    expect(gate.aborted).toBe(abortedBefore + 1);
    // The connection goes on working.
    const h = await root.walk("hello");
    await h.open(OREAD);
    expect((await h.read(0, 5)).toString()).toBe("hello");
  });

  it("a timed-out call is flushed and rejects with TimeoutError", async () => {
    const lines: string[] = [];
    const c = await connect({ trace: (l) => lines.push(l) });
    const root = await c.attach("glenda", "");
    const f = await root.walk("block");
    await f.open(OREAD);
    const err = await f.read(0, 10, { timeoutMs: 50 }).catch((e) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toMatch(/Tread .* timed out after 50 ms/);
    await until(() => c.inFlight === 0, "Rflush");
    expect(lines.some((l) => l.startsWith("-> Tflush"))).toBe(true);
  });

  it("calls with different time limits each time out at their own, and the others go on", async () => {
    const c = await connect({ timeoutMs: 60_000 });
    const root = await c.attach("glenda", "");
    const open = async () => {
      const f = await root.walk("block");
      await f.open(OREAD);
      return f;
    };
    const [a, b, d] = await Promise.all([open(), open(), open()]);
    const short = a.read(0, 10, { timeoutMs: 50 }).catch((e) => e);
    const longer = b.read(0, 10, { timeoutMs: 300 }).catch((e) => e);
    const plain = d.read(0, 10); // the client's 60 s limit
    const first = await Promise.race([short, longer]);
    expect((first as Error).message).toMatch(/Tread .* timed out after 50 ms/);
    expect(((await longer) as Error).message).toMatch(/Tread .* timed out after 300 ms/);
    await until(() => gate.waiting === 1, "the flushed reads to end");
    gate.releaseAll();
    expect((await plain).toString()).toBe("released");
    expect(c.inFlight).toBe(0);
  });

  it("a large Twrite is sent from the caller's buffer intact, and one over msize is refused", async () => {
    const lines: string[] = [];
    const c = await connect({ msize: 65536 + 24, trace: (l) => lines.push(l) });
    const fs = new Fsys(c, await c.attach("glenda", ""));
    const blob = randomBytes(300_000); // 64 KiB messages, pipelined, and a short last one
    await fs.writeFile("data", blob);
    expect((await fs.readFile("data")).equals(blob)).toBe(true);
    expect(lines.some((l) => /^-> Twrite .* data 65536 /.test(l))).toBe(true);
    const f = await fs.root.walk("data");
    await f.open(OREAD | 1);
    const tooBig = Buffer.alloc(c.msize - 23 + 1); // a Twrite header is 23 bytes
    await expect(c.rpc({ type: MsgType.Twrite, fid: f.num, offset: 0n, data: tooBig })).rejects.toMatchObject(
      { name: "MessageTooLargeError" },
    );
    // Nothing went out for it: the connection goes on working.
    expect(await f.write(0, Buffer.from("abc"))).toBe(3);
    expect(c.inFlight).toBe(0);
  });

  it("walkThen sends the walk and the requests on the new fid in one round trip", async () => {
    const lines: string[] = [];
    const c = await connect({ version: Dialect.P2000u, trace: (l) => lines.push(l) });
    const root = await c.attach("glenda", "");
    const { fid, value } = await root.walkThen("hello", async (f) => {
      const [, data] = await Promise.all([f.open(OREAD), f.read(0, 64)]);
      return data.toString();
    });
    expect(value).toBe("hello, world\n");
    expect(fid.opened).toBe(true);
    expect(fid.name).toBe("hello");
    // Twalk, Topen and Tread all left before the first reply came.
    const sent = lines.findIndex((l) => l.startsWith("-> Twalk"));
    const firstReply = lines.findIndex((l, i) => i > sent && l.startsWith("<-"));
    expect(lines.slice(sent, firstReply).map((l) => l.split(" ")[1])).toEqual(["Twalk", "Topen", "Tread"]);
    await fid.clunk();

    // A failed walk throws its own error, not the open's about a fid that does not exist, and
    // leaves nothing behind.
    const before = lines.length;
    const err = await root.walkThen("d0/nope", (f) => f.open(OREAD)).catch((e) => e);
    expect(err).toBeInstanceOf(WalkError);
    expect((err as WalkError).walked).toBe(1);
    expect(lines.slice(before).some((l) => l.startsWith("-> Tclunk"))).toBe(false);
    const missing = await root.walkThen("nope", (f) => f.open(OREAD)).catch((e) => e);
    expect(missing).toBeInstanceOf(WalkError);
    expect((missing as WalkError).walked).toBe(0);

    // When what follows the walk fails, the new fid is clunked and that error is thrown.
    const n = lines.length;
    const denied = await root.walkThen("d0", (f) => f.open(1 /* OWRITE on a directory */)).catch((e) => e);
    expect(denied).toBeInstanceOf(RemoteError);
    await until(() => c.inFlight === 0, "the clunk");
    expect(lines.slice(n).some((l) => l.startsWith("-> Tclunk"))).toBe(true);
    // The connection goes on working, with no fid leaked on either side.
    const again = await root.walkThen("hello", (f) => f.open(OREAD));
    expect(again.fid.opened).toBe(true);
    await again.fid.clunk();
  });

  it("an already-aborted signal sends nothing", async () => {
    const lines: string[] = [];
    const c = await connect({ trace: (l) => lines.push(l) });
    const root = await c.attach("glenda", "");
    const n = lines.length;
    await expect(root.walk("hello", { signal: AbortSignal.abort() })).rejects.toMatchObject({
      name: "AbortError",
    });
    expect(lines.length).toBe(n);
  });

  it("connection loss rejects every pending call with ConnectionError", async () => {
    const own = new Server({ backend: treeBackend(makeTree(gate), { dialects: ALL }) });
    const a = await own.listen("tcp!127.0.0.1!0");
    const c = await connect({}, `tcp!127.0.0.1!${a.network === "tcp" ? a.port : 0}`);
    const root = await c.attach("glenda", "");
    const fids = await Promise.all(Array.from({ length: 5 }, () => root.walk("block")));
    await Promise.all(fids.map((f) => f.open(OREAD)));
    const before = gate.waiting;
    const reads = fids.map((f) => f.read(0, 10).catch((e) => e));
    await until(() => gate.waiting === before + 5, "5 blocked reads");
    await own.close(0);
    const errs = await Promise.all(reads);
    for (const e of errs) expect(e).toBeInstanceOf(ConnectionError);
    await expect(root.walk("hello")).rejects.toBeInstanceOf(ConnectionError);
  });

  it("close() refuses new calls and waits for those in flight", async () => {
    const c = await connect();
    const root = await c.attach("glenda", "");
    const f = await root.walk("block");
    await f.open(OREAD);
    const read = f.read(0, 100);
    await until(() => gate.waiting >= 1, "blocked read");
    let closed = false;
    const closing = c.close().then(() => {
      closed = true;
    });
    await expect(root.walk("hello")).rejects.toBeInstanceOf(ClosedError);
    await new Promise((r) => setTimeout(r, 30));
    expect(closed).toBe(false);
    gate.releaseAll();
    expect((await read).toString()).toBe("released");
    await closing;
    expect(closed).toBe(true);
  });

  it("destroy(err) rejects every call in flight with err", async () => {
    const c = await connect();
    const root = await c.attach("glenda", "");
    const f = await root.walk("block");
    await f.open(OREAD);
    const read = f.read(0, 100).catch((e) => e);
    await until(() => gate.waiting >= 1, "blocked read");
    const boom = new Error("boom");
    c.destroy(boom);
    expect(await read).toBe(boom);
  });

  it("falls back to a plainer dialect when the server offers no more (V4)", async () => {
    const plain = new Server({ backend: treeBackend(makeTree(gate)), dialects: [Dialect.P2000] });
    const a = await plain.listen("tcp!127.0.0.1!0");
    try {
      const addr = `tcp!127.0.0.1!${a.network === "tcp" ? a.port : 0}`;
      for (const version of [Dialect.P2000u, Dialect.P2000L]) {
        const c = await connect({ version }, addr);
        expect(c.dialect).toBe(Dialect.P2000);
        const fs = new Fsys(c, await c.attach("glenda", ""));
        expect((await fs.readFile("hello")).toString()).toBe("hello, world\n");
        const err = await fs.stat("nope").catch((e) => e);
        expect(err).toBeInstanceOf(RemoteError);
        expect((err as RemoteError).ename).toBe("file not found");
        expect((err as RemoteError).errno).toBeUndefined(); // plain 9P2000 Rerror has no errno
      }
    } finally {
      await plain.close(0);
    }
  });

  it("rejects Rversion 'unknown' with VersionError and clamps msize to the server's", async () => {
    const err = await Client.connect(tcp, { version: "9P3000" as Dialect }).catch((e) => e);
    expect(err).toBeInstanceOf(VersionError);
    expect((err as VersionError).answer).toBe("unknown");
    const small = new Server({ backend: treeBackend(makeTree(gate)), maxMsize: 4096 });
    const a = await small.listen("tcp!127.0.0.1!0");
    try {
      const c = await connect({ msize: 1 << 20 }, `tcp!127.0.0.1!${a.network === "tcp" ? a.port : 0}`);
      expect(c.msize).toBe(4096);
      expect(c.iounit).toBe(4096 - 24);
    } finally {
      await small.close(0);
    }
  });

  it("walks more than 16 names in steps and reports a partial walk (W6)", async () => {
    const c = await connect();
    const fs = new Fsys(c, await c.attach("glenda", ""));
    const deep = `${Array.from({ length: 20 }, (_, i) => `d${i}`).join("/")}/deep`;
    expect((await fs.readFile(deep)).toString()).toBe("bottom\n");
    const err = await fs.walk("d0/d1/nope/x").catch((e) => e);
    expect(err).toBeInstanceOf(WalkError);
    expect((err as WalkError).walked).toBe(2);
    expect((err as WalkError).ename).toBe("file not found");
    const err2 = await fs.walk(`${deep.replace("deep", "missing")}`).catch((e) => e);
    expect(err2).toBeInstanceOf(WalkError);
    expect((err2 as WalkError).walked).toBe(20);
  });

  it("answers a Tflush of a tag not in flight with Rflush (FL2)", async () => {
    const c = await connect();
    const r = await c.rpc({ type: MsgType.Tflush, oldtag: 1234 });
    expect(r.type).toBe(MsgType.Rflush);
  });

  it("rejects a reply of the wrong type with ProtocolError and carries on", async () => {
    // A deliberately broken peer: answers Tversion properly, then every request with Rclunk.
    const peer = net.createServer((sock) => {
      const framer = new Framer({ maxSize: 1 << 20 });
      sock.on("data", (chunk) => {
        for (const frame of framer.push(chunk)) {
          const m = decode(frame, Dialect.P2000u, { msize: 1 << 20 });
          if (m.type === MsgType.Tversion) {
            sock.write(
              encode(
                { type: MsgType.Rversion, tag: m.tag, msize: 8192, version: "9P2000.u" },
                Dialect.P2000u,
              ),
            );
          } else {
            sock.write(encode({ type: MsgType.Rclunk, tag: m.tag }, Dialect.P2000u));
          }
        }
      });
    });
    await new Promise<void>((r) => peer.listen(0, "127.0.0.1", () => r()));
    try {
      const port = (peer.address() as net.AddressInfo).port;
      const c = await connect({}, `127.0.0.1:${port}`);
      const err = await c.attach("glenda", "").catch((e) => e);
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).reason).toBe("unexpected");
      const r = await c.rpc({ type: MsgType.Tclunk, fid: 7 });
      expect(r.type).toBe(MsgType.Rclunk);
    } finally {
      for (const c of clients.splice(0)) c.destroy();
      await new Promise((r) => peer.close(r));
    }
  });

  it("times out a version negotiation the server never answers", async () => {
    const mute = net.createServer(() => {});
    await new Promise<void>((r) => mute.listen(0, "127.0.0.1", () => r()));
    try {
      const port = (mute.address() as net.AddressInfo).port;
      // The same timeout covers the TCP connect, which must not run out on a busy machine.
      const err = await Client.connect(`127.0.0.1:${port}`, { connectTimeoutMs: 2000 }).catch((e) => e);
      expect(err).toBeInstanceOf(TimeoutError);
      expect((err as Error).message).toBe(
        `version negotiation with tcp!127.0.0.1!${port} timed out after 2000 ms`,
      );
    } finally {
      mute.close();
    }
  });

  it("refuses to dial a closed port with ConnectionError naming the address", async () => {
    const err = await Client.connect("tcp!127.0.0.1!1").catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toContain("tcp!127.0.0.1!1");
    expect((err as Error).message).toContain("ECONNREFUSED");
  });
});

describe("flush races (FL5) with a scripted peer", () => {
  it("clunks the new fid of a walk whose Rwalk beat the Rflush", async () => {
    // The peer holds the Twalk, and on Tflush sends the Rwalk first, then the Rflush: the walk
    // happened, so the client must clunk newfid itself.
    const seen: string[] = [];
    const peer = net.createServer((sock) => {
      const framer = new Framer({ maxSize: 1 << 20 });
      let held: { tag: number } | undefined;
      sock.on("data", (chunk) => {
        for (const frame of framer.push(chunk)) {
          const m = decode(frame, Dialect.P2000u, { msize: 1 << 20 });
          seen.push(m.type === MsgType.Tclunk ? `Tclunk ${m.fid}` : String(m.type));
          const reply = (r: Parameters<typeof encode>[0]) => sock.write(encode(r, Dialect.P2000u));
          if (m.type === MsgType.Tversion)
            reply({ type: MsgType.Rversion, tag: m.tag, msize: 8192, version: "9P2000.u" });
          else if (m.type === MsgType.Tattach)
            reply({ type: MsgType.Rattach, tag: m.tag, qid: { type: 0x80, version: 0, path: 1n } });
          else if (m.type === MsgType.Twalk) held = { tag: m.tag };
          else if (m.type === MsgType.Tflush && held) {
            reply({ type: MsgType.Rwalk, tag: held.tag, wqid: [{ type: 0, version: 0, path: 2n }] });
            reply({ type: MsgType.Rflush, tag: m.tag });
          } else if (m.type === MsgType.Tclunk) reply({ type: MsgType.Rclunk, tag: m.tag });
        }
      });
    });
    await new Promise<void>((r) => peer.listen(0, "127.0.0.1", () => r()));
    const c = await Client.connect(`127.0.0.1:${(peer.address() as net.AddressInfo).port}`);
    try {
      const root = await c.attach("glenda", "");
      const ac = new AbortController();
      const walking = root.walk("x", { signal: ac.signal });
      await until(() => seen.includes(String(MsgType.Twalk)), "Twalk at the peer");
      ac.abort();
      await expect(walking).rejects.toMatchObject({ name: "AbortError" });
      await until(() => seen.includes("Tclunk 1"), "the background Tclunk of newfid 1");
      await until(() => c.inFlight === 0, "everything answered");
    } finally {
      c.destroy();
      await new Promise((r) => peer.close(r));
    }
  });
});
