// The client against a hostile or broken server on a real socket: wrong tags, duplicated and
// stray replies, wrong reply types, garbage errors, replies that carry more than was asked for,
// size fields that lie, frames over msize, truncated frames, silence, and bytes one at a time.
// Whatever the server does, every call settles (resolves, or rejects with one of this package's
// errors) within a bound, nothing is left unhandled, and the client closes without a leak.

import net from "node:net";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Client, type ClientOptions, type Fid, Fsys, VersionError } from "../../src/client/index.js";
import {
  Dialect,
  decode,
  dontTouchStat,
  encode,
  encodeDirents,
  encodeStats,
  Framer,
  MsgType,
  OREAD,
  OWRITE,
  QTDIR,
} from "../../src/codec/index.js";
import type * as T from "../../src/codec/types.js";
import { ConnectionError, NinepError, ProtocolError, RemoteError, TimeoutError } from "../../src/errors.js";

const MSIZE = 8192 + 24;
const DIR_QID: T.Qid = { type: QTDIR, version: 0, path: 1n };
const FILE_QID: T.Qid = { type: 0, version: 0, path: 2n };
const FILE = Buffer.from("0123456789".repeat(10));

// ---- process-level listeners: nothing may escape as an unhandled rejection or exception ----

const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);
beforeAll(() => {
  process.on("unhandledRejection", onEscape);
  process.on("uncaughtException", onEscape);
});
afterAll(() => {
  process.off("unhandledRejection", onEscape);
  process.off("uncaughtException", onEscape);
});
afterEach(async () => {
  // A rejection is reported as unhandled one turn after the promise is dropped: let it surface.
  await new Promise((r) => setTimeout(r, 20));
  expect(escaped).toEqual([]);
});

// ---- the scripted peer ----

interface Conn {
  sock: net.Socket;
  send(b: Uint8Array): void;
  reply(m: T.RMessage): void;
  /** Per-connection scratch state for a behaviour. */
  state: Record<string, unknown>;
}
type Behaviour = (m: T.TMessage, c: Conn) => void;

interface Peer {
  addr: string;
  /** Server-side sockets still open. */
  open: Set<net.Socket>;
  close(): Promise<void>;
}

async function startPeer(behave: Behaviour): Promise<Peer> {
  const open = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    open.add(sock);
    // Replies sent in several writes (duplicates, strays, trickles) must not wait for ACKs.
    sock.setNoDelay(true);
    sock.on("close", () => open.delete(sock));
    sock.on("error", () => {});
    const framer = new Framer({ maxSize: 1 << 20 });
    const conn: Conn = {
      sock,
      send: (b) => {
        if (!sock.destroyed) sock.write(b);
      },
      reply: (m) => conn.send(encodeAny(m)),
      state: {},
    };
    sock.on("data", (chunk) => {
      let frames: Buffer[];
      try {
        frames = framer.push(chunk);
      } catch {
        sock.destroy();
        return;
      }
      for (const f of frames) {
        let m: T.Message;
        try {
          m = decode(f, Dialect.P2000L);
        } catch {
          m = decode(f, Dialect.P2000u);
        }
        behave(m as T.TMessage, conn);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    addr: `tcp!127.0.0.1!${port}`,
    open,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Encodes in 9P2000.u, or in 9P2000.L for the messages only .L has. */
function encodeAny(m: T.Message): Buffer {
  try {
    return encode(m, Dialect.P2000u);
  } catch {
    return encode(m, Dialect.P2000L);
  }
}

/** What a correct server with one directory and one 100-byte file would answer. */
function honest(m: T.TMessage): T.RMessage | undefined {
  const tag = m.tag;
  switch (m.type) {
    case MsgType.Tversion:
      return {
        type: MsgType.Rversion,
        tag,
        msize: Math.min(m.msize, MSIZE),
        version: m.version === Dialect.P2000L ? Dialect.P2000L : Dialect.P2000u,
      };
    case MsgType.Tauth:
      return { type: MsgType.Rerror, tag, ename: "authentication not required", errno: 0 };
    case MsgType.Tattach:
      return { type: MsgType.Rattach, tag, qid: DIR_QID };
    case MsgType.Twalk:
      return {
        type: MsgType.Rwalk,
        tag,
        wqid: m.wname.map((n) => (n === "dir" ? DIR_QID : FILE_QID)),
      };
    case MsgType.Topen:
      return { type: MsgType.Ropen, tag, qid: FILE_QID, iounit: 0 };
    case MsgType.Tlopen:
      return { type: MsgType.Rlopen, tag, qid: DIR_QID, iounit: 0 };
    case MsgType.Tcreate:
      return { type: MsgType.Rcreate, tag, qid: FILE_QID, iounit: 0 };
    case MsgType.Tread: {
      const off = Number(m.offset);
      return { type: MsgType.Rread, tag, data: FILE.subarray(Math.min(off, FILE.length), off + m.count) };
    }
    case MsgType.Twrite:
      return { type: MsgType.Rwrite, tag, count: m.data.length };
    case MsgType.Tclunk:
      return { type: MsgType.Rclunk, tag };
    case MsgType.Tremove:
      return { type: MsgType.Rremove, tag };
    case MsgType.Tstat:
      return { type: MsgType.Rstat, tag, stat: fileStat("f") };
    case MsgType.Twstat:
      return { type: MsgType.Rwstat, tag };
    case MsgType.Tflush:
      return { type: MsgType.Rflush, tag };
    default:
      return { type: MsgType.Rerror, tag, ename: "not supported", errno: 95 };
  }
}

function fileStat(name: string): T.Stat {
  return dontTouchStat({ name, qid: FILE_QID, mode: 0o644, length: BigInt(FILE.length), uid: "u", gid: "g" });
}

/** A frame by hand: size type tag body, with the size field given or right. */
function rawFrame(type: number, tag: number, body: Uint8Array, size = 7 + body.length): Buffer {
  const b = Buffer.alloc(7 + body.length);
  b.writeUInt32LE(size >>> 0, 0);
  b[4] = type;
  b.writeUInt16LE(tag, 5);
  Buffer.from(body).copy(b, 7);
  return b;
}

/** An Rerror whose ename is any bytes (invalid UTF-8, NULs...). */
function garbageRerror(tag: number, ename: Uint8Array): Buffer {
  const body = Buffer.alloc(2 + ename.length + 4);
  body.writeUInt16LE(ename.length, 0);
  Buffer.from(ename).copy(body, 2);
  body.writeUInt32LE(5, 2 + ename.length);
  return rawFrame(MsgType.Rerror, tag, body);
}

/** Answers honestly, except the requests `bad` claims (it returns true when it handled one). */
function honestExcept(bad: (m: T.TMessage, c: Conn) => boolean): Behaviour {
  return (m, c) => {
    if (bad(m, c)) return;
    const r = honest(m);
    if (r) c.reply(r);
  };
}

// ---- the client side ----

/** Resolves with how `p` settled, or "pending" if it has not within `ms` (a hang). */
async function settle<V>(
  p: Promise<V>,
  ms = 10_000,
): Promise<{ ok: true; value: V } | { ok: false; err: unknown } | "pending"> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<"pending">((r) => {
    timer = setTimeout(() => r("pending"), ms);
  });
  try {
    return await Promise.race([
      p.then(
        (value) => ({ ok: true as const, value }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
      bound,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Errors a call may end with when the server misbehaves. */
function isOurs(err: unknown): boolean {
  return err instanceof NinepError || (err instanceof DOMException && err.name === "AbortError");
}

async function expectError<E extends Error>(
  p: Promise<unknown>,
  cls: abstract new (...a: never[]) => E,
): Promise<E> {
  const r = await settle(p);
  expect(r, "the call settled").not.toBe("pending");
  if (r === "pending" || r.ok) throw new Error(`expected ${cls.name}, the call succeeded`);
  expect(r.err).toBeInstanceOf(cls);
  return r.err as E;
}

async function expectOk<V>(p: Promise<V>): Promise<V> {
  const r = await settle(p);
  expect(r, "the call settled").not.toBe("pending");
  if (r === "pending") throw new Error("pending");
  if (!r.ok) throw r.err;
  return r.value;
}

/** Live sockets and ref'ed timers of this process, by kind. */
function resources(): { sockets: number; timers: number } {
  const all = process.getActiveResourcesInfo();
  return {
    sockets: all.filter((k) => k === "TCPSocketWrap" || k === "PipeWrap").length,
    timers: all.filter((k) => k === "Timeout").length,
  };
}

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Calls the peer never answers end by this time limit; answered ones must never reach it, even on a
// loaded machine (300 ms was once exceeded by a Tstat while a guest VM and a test suite shared both cores).
const OPTS: ClientOptions = { msize: MSIZE, connectTimeoutMs: 2000, timeoutMs: 1000 };

/**
 * Runs `body` against a peer behaving as `behave`, then closes the client and checks that the
 * client's socket is gone on both ends and no timer of ours keeps the process alive.
 */
async function against(
  behave: Behaviour,
  body: (connect: (o?: ClientOptions) => Promise<Client>) => Promise<void>,
  close: "close" | "destroy" = "close",
): Promise<void> {
  const before = resources();
  const peer = await startPeer(behave);
  const clients: Client[] = [];
  try {
    await body(async (o) => {
      const c = await Client.connect(peer.addr, { ...OPTS, ...o });
      clients.push(c);
      return c;
    });
    for (const c of clients) {
      if (close === "destroy") c.destroy();
      else expect(await settle(c.close()), "close() settled").not.toBe("pending");
    }
    await until(() => peer.open.size === 0, "the peer to see the client's socket close");
  } finally {
    for (const c of clients) c.destroy();
    await peer.close();
  }
  await until(() => {
    const now = resources();
    return now.sockets <= before.sockets && now.timers <= before.timers;
  }, "sockets and timers to be released");
}

describe("version negotiation with a hostile server", () => {
  const cases: Array<[string, Behaviour, abstract new (...a: never[]) => Error]> = [
    [
      "an msize larger than asked",
      (m, c) => c.reply({ type: MsgType.Rversion, tag: m.tag, msize: MSIZE * 2, version: "9P2000.u" }),
      VersionError,
    ],
    [
      "an msize of 7",
      (m, c) => c.reply({ type: MsgType.Rversion, tag: m.tag, msize: 7, version: "9P2000.u" }),
      VersionError,
    ],
    [
      "another dialect than asked",
      (m, c) => c.reply({ type: MsgType.Rversion, tag: m.tag, msize: MSIZE, version: "9P2000.L" }),
      VersionError,
    ],
    [
      "a version nobody knows",
      (m, c) => c.reply({ type: MsgType.Rversion, tag: m.tag, msize: MSIZE, version: "9P2001.x" }),
      VersionError,
    ],
    [
      "an Rversion with the wrong tag",
      (_m, c) => c.reply({ type: MsgType.Rversion, tag: 0, msize: MSIZE, version: "9P2000.u" }),
      TimeoutError,
    ],
    ["silence", () => {}, TimeoutError],
    [
      "an Rerror whose text is not UTF-8",
      (m, c) => c.send(garbageRerror(m.tag, Buffer.from([0xff, 0xfe, 0x00, 0x41]))),
      ProtocolError,
    ],
    [
      "an Rread instead of Rversion",
      (m, c) => c.reply({ type: MsgType.Rread, tag: m.tag, data: Buffer.from("x") }),
      ProtocolError,
    ],
    [
      "a frame larger than msize",
      (m, c) => c.send(rawFrame(MsgType.Rversion, m.tag, Buffer.alloc(MSIZE + 100))),
      ProtocolError,
    ],
    [
      "a size field below 7",
      (m, c) => c.send(rawFrame(MsgType.Rversion, m.tag, Buffer.alloc(0), 3)),
      ProtocolError,
    ],
    [
      "a frame cut short, then close",
      (m, c) => {
        const f = encode(
          { type: MsgType.Rversion, tag: m.tag, msize: MSIZE, version: "9P2000.u" },
          Dialect.P2000u,
        );
        c.sock.end(f.subarray(0, f.length - 3));
      },
      ConnectionError,
    ],
    ["a close before any answer", (_m, c) => c.sock.destroy(), ConnectionError],
  ];
  for (const [what, behave, cls] of cases) {
    it(`fails cleanly on ${what}`, async () => {
      await against(behave, async (connect) => {
        // Short only where the timeout is the answer: elsewhere a stalled loop must not turn
        // the expected error into a timeout.
        await expectError(connect({ connectTimeoutMs: cls === TimeoutError ? 500 : 5000 }), cls);
      });
    });
  }

  it("takes an Rversion that arrives one byte at a time", async () => {
    await against(
      (m, c) => {
        const f = honest(m);
        if (!f) return;
        const bytes = encode(f, Dialect.P2000u);
        let i = 0;
        const drip = () => {
          if (i < bytes.length && !c.sock.destroyed) {
            c.sock.write(bytes.subarray(i, i + 1));
            i++;
            setImmediate(drip);
          }
        };
        drip();
      },
      async (connect) => {
        const c = await expectOk(connect());
        const root = await expectOk(c.attach("u", ""));
        expect(
          (await expectOk(root.walk("f").then((f) => f.open(OREAD).then(() => f.read(0, 10))))).toString(),
        ).toBe("0123456789");
      },
    );
  });
});

describe("replies that are wrong after the handshake", () => {
  /** Attaches, walks to "f", opens it and returns the fid. */
  async function openFile(c: Client, mode = OREAD) {
    const root = await expectOk(c.attach("u", ""));
    const f = await expectOk(root.walk("f"));
    await expectOk(f.open(mode));
    return { root, f };
  }

  it("a reply with the wrong tag: the call times out, the connection goes on", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Tread || c.state.done) return false;
        c.state.done = true;
        c.reply({ type: MsgType.Rread, tag: (m.tag + 1) & 0xffff, data: Buffer.from("x") });
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        await expectError(f.read(0, 10), TimeoutError);
        expect((await expectOk(f.read(0, 10))).toString()).toBe("0123456789");
      },
    );
  });

  it("duplicated replies and replies for tags not in flight are ignored", async () => {
    await against(
      (m, c) => {
        const r = honest(m);
        if (!r) return;
        c.reply({ type: MsgType.Rread, tag: 4321, data: Buffer.from("stray") });
        c.reply(r);
        c.reply(r);
      },
      async (connect) => {
        const c = await connect();
        const { root, f } = await openFile(c);
        expect((await expectOk(f.read(0, 10))).toString()).toBe("0123456789");
        expect((await expectOk(f.stat())).name).toBe("f");
        await expectOk(f.clunk());
        await expectOk(root.clunk());
      },
    );
  });

  it("a reply of the wrong type rejects with ProtocolError", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type === MsgType.Tread) c.reply({ type: MsgType.Rflush, tag: m.tag });
        else if (m.type === MsgType.Tstat) c.reply({ type: MsgType.Tclunk, tag: m.tag, fid: 1 } as never);
        else return false;
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        expect((await expectError(f.read(0, 10), ProtocolError)).reason).toBe("unexpected");
        expect((await expectError(f.stat(), ProtocolError)).reason).toBe("unexpected");
      },
    );
  });

  it("Rerror with garbage text: ProtocolError for bytes that are no string, RemoteError otherwise", async () => {
    const long = "x".repeat(MSIZE - 20);
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Tread) return false;
        const n = Number(m.offset);
        if (n === 0) c.send(garbageRerror(m.tag, Buffer.from([0xc3, 0x28, 0xa0, 0xa1])));
        else if (n === 1) c.send(garbageRerror(m.tag, Buffer.from("abc\0def")));
        else c.send(garbageRerror(m.tag, Buffer.from(long)));
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        expect((await expectError(f.read(0, 10), ProtocolError)).reason).toBe("bad-string");
        expect((await expectError(f.read(1, 10), ProtocolError)).reason).toBe("bad-string");
        expect((await expectError(f.read(2, 10), RemoteError)).ename).toBe(long);
      },
    );
  });

  it("an Rerror carrying only an errno (nfs-ganesha's error on every dialect) is that errno", async () => {
    const errnoOnly = (tag: number, errno: number) => {
      const body = Buffer.alloc(4);
      body.writeUInt32LE(errno, 0);
      return rawFrame(MsgType.Rerror, tag, body);
    };
    await against(
      honestExcept((m, c) => {
        if (m.type === MsgType.Tread && m.offset < 2n) c.send(errnoOnly(m.tag, m.offset === 0n ? 2 : 17));
        else if (m.type === MsgType.Tversion && m.version === Dialect.P2000) c.send(errnoOnly(m.tag, 2));
        else return false;
        return true;
      }),
      async (connect) => {
        for (const version of [Dialect.P2000L, Dialect.P2000u]) {
          const c = await connect({ version });
          const { f } = await openFile(c);
          const enoent = await expectError(f.read(0, 10), RemoteError);
          expect([enoent.errno, enoent.ename]).toEqual([2, "file not found"]);
          expect((await expectError(f.read(1, 10), RemoteError)).errno).toBe(17);
          expect((await expectOk(f.read(2, 3))).toString()).toBe("234"); // the connection goes on
        }
        const refused = await expectError(connect({ version: Dialect.P2000 }), VersionError);
        expect(refused.message).toMatch(/refused version 9P2000: file not found/);
      },
    );
  });

  it("an Rread with more bytes than asked for is refused, not returned", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Tread) return false;
        c.reply({ type: MsgType.Rread, tag: m.tag, data: Buffer.alloc(m.count + 5, 0x61) });
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        expect((await expectError(f.read(0, 10), ProtocolError)).reason).toBe("unexpected");
        // The path-level helpers, which pipeline reads by offset, must not splice in the excess.
        const fs = new Fsys(c, await expectOk(c.attach("u", "")));
        await expectError(fs.readFile("f"), ProtocolError);
      },
    );
  });

  it("an Rwalk with more qids than names is refused", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Twalk) return false;
        c.reply({ type: MsgType.Rwalk, tag: m.tag, wqid: [...m.wname.map(() => FILE_QID), DIR_QID] });
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const root = await expectOk(c.attach("u", ""));
        expect((await expectError(root.walk("f"), ProtocolError)).reason).toBe("unexpected");
        expect((await expectError(root.clone(), ProtocolError)).reason).toBe("unexpected");
        await expectError(
          root.walkThen("f", (f) => f.open(OREAD)),
          ProtocolError,
        );
      },
    );
  });

  it("an Rwrite that claims more bytes than were sent is refused", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Twrite) return false;
        c.reply({ type: MsgType.Rwrite, tag: m.tag, count: m.data.length + 1000 });
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c, OWRITE);
        expect((await expectError(f.write(0, "hello"), ProtocolError)).reason).toBe("unexpected");
      },
    );
  });

  it("size fields that disagree with the data", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Tread) return false;
        const n = Number(m.offset);
        const body = Buffer.alloc(4 + 3);
        body.writeUInt32LE(n === 0 ? 50 : 1, 0); // count says 50 (or 1), 3 bytes follow
        body.write("abc", 4);
        if (n < 2) c.send(rawFrame(MsgType.Rread, m.tag, body));
        else c.sock.end(rawFrame(MsgType.Rread, m.tag, body, 200)); // size says 200, then close
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        expect((await expectError(f.read(0, 100), ProtocolError)).reason).toBe("truncated");
        expect((await expectError(f.read(1, 100), ProtocolError)).reason).toBe("trailing-bytes");
        await expectError(f.read(2, 100), ConnectionError);
        await expectError(f.stat(), ConnectionError);
      },
    );
  });

  it("a frame larger than msize ends the connection with ProtocolError", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Tread) return false;
        c.send(rawFrame(MsgType.Rread, m.tag, Buffer.alloc(16), MSIZE + 1));
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        const reading = [f.read(0, 10), f.read(10, 10)];
        expect((await expectError(reading[0]!, ProtocolError)).reason).toBe("too-large");
        await expectError(reading[1]!, ProtocolError);
        await expectError(f.read(0, 10), ConnectionError);
      },
    );
  });

  it("a server that closes mid-frame fails every call in flight with ConnectionError", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Tread) return false;
        const f = encode({ type: MsgType.Rread, tag: m.tag, data: FILE }, Dialect.P2000u);
        c.sock.write(f.subarray(0, 20), () => c.sock.destroy());
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        const [a, b] = [f.stat(), f.read(0, 100)];
        await expectError(b, ConnectionError);
        await settle(a);
        await expectError(f.stat(), ConnectionError);
      },
    );
  });

  it("silence: calls time out, and close() returns although no Rflush ever comes", async () => {
    await against(
      honestExcept((m) => m.type === MsgType.Tread || m.type === MsgType.Tflush || m.type === MsgType.Tclunk),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        await expectError(f.read(0, 10), TimeoutError);
        // A clunk the server never answers still ends (under the client's time limit).
        await expectOk(f.clunk());
        expect(c.inFlight).toBeGreaterThan(0); // the unanswered Tflushes
      },
    );
  });

  it("silence: close() called while a call is in flight returns once that call times out", async () => {
    await against(
      honestExcept((m) => m.type === MsgType.Tread || m.type === MsgType.Tflush),
      async (connect) => {
        const c = await connect();
        const { f } = await openFile(c);
        const reading = f.read(0, 10);
        const closing = c.close();
        await expectError(reading, TimeoutError);
        await expectOk(closing);
      },
    );
  });

  it("a server that sends every byte on its own still works", async () => {
    await against(
      (m, c) => {
        const r = honest(m);
        if (!r) return;
        const bytes = encode(r, Dialect.P2000u);
        for (let i = 0; i < bytes.length; i++) c.send(bytes.subarray(i, i + 1));
      },
      async (connect) => {
        const c = await connect({ timeoutMs: 10_000 });
        const fs = new Fsys(c, await expectOk(c.attach("u", "")));
        expect(await expectOk(fs.readFile("f"))).toEqual(FILE);
      },
    );
  });

  it("directory data that does not decode rejects with ProtocolError", async () => {
    await against(
      honestExcept((m, c) => {
        if (m.type !== MsgType.Tread) return false;
        const good = encodeStats([fileStat("a")], Dialect.P2000u);
        c.reply({
          type: MsgType.Rread,
          tag: m.tag,
          data: m.offset === 0n ? good.subarray(0, good.length - 4) : Buffer.alloc(0),
        });
        return true;
      }),
      async (connect) => {
        const c = await connect();
        const root = await expectOk(c.attach("u", ""));
        expect((await expectError(root.readdir(), ProtocolError)).reason).toBe("bad-stat");
      },
    );
  });

  it("9P2000.L directory entries whose offsets never advance are refused, not read forever", async () => {
    await against(
      (m, c) => {
        if (m.type === MsgType.Treaddir) {
          const d = encodeDirents([{ qid: FILE_QID, offset: m.offset, type: 0, name: "same" }]);
          c.reply({ type: MsgType.Rreaddir, tag: m.tag, data: d });
          return;
        }
        const r = honest(m);
        if (r) c.reply(r);
      },
      async (connect) => {
        const c = await connect({ version: Dialect.P2000L });
        const root = await expectOk(c.attach("u", ""));
        const dir = await expectOk(root.clone());
        await expectOk(dir.lopen(0));
        expect((await expectError(dir.lreaddir(), ProtocolError)).reason).toBe("unexpected");
      },
    );
  });
});

// ---- random mutations of an honest server's replies ----

type Mutation =
  | { k: "ok" }
  | { k: "drop" }
  | { k: "dup" }
  | { k: "tag"; x: number }
  | { k: "stray"; tag: number }
  | { k: "type"; t: number }
  | { k: "rerror"; ename: Uint8Array }
  | { k: "grow"; n: number }
  | { k: "size"; delta: number }
  | { k: "flip"; at: number; v: number }
  | { k: "cut"; at: number }
  | { k: "huge" }
  | { k: "trickle" }
  | { k: "late"; ms: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ k: "ok" as const }) },
  fc.constant({ k: "drop" as const }),
  fc.constant({ k: "dup" as const }),
  fc.record({ k: fc.constant("tag" as const), x: fc.integer({ min: 1, max: 0xffff }) }),
  fc.record({ k: fc.constant("stray" as const), tag: fc.integer({ min: 0, max: 0xffff }) }),
  fc.record({ k: fc.constant("type" as const), t: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ k: fc.constant("rerror" as const), ename: fc.uint8Array({ maxLength: 40 }) }),
  fc.record({ k: fc.constant("grow" as const), n: fc.integer({ min: 1, max: 40 }) }),
  fc.record({
    k: fc.constant("size" as const),
    delta: fc.integer({ min: -20, max: 20 }).filter((d) => d !== 0),
  }),
  fc.record({
    k: fc.constant("flip" as const),
    at: fc.integer({ min: 4, max: 60 }),
    v: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({ k: fc.constant("cut" as const), at: fc.integer({ min: 1, max: 30 }) }),
  fc.constant({ k: "huge" as const }),
  fc.constant({ k: "trickle" as const }),
  fc.record({ k: fc.constant("late" as const), ms: fc.integer({ min: 1, max: 30 }) }),
);

/** Sends the honest reply `r` to `m` as `mut` distorts it. */
function mutate(mut: Mutation, m: T.TMessage, r: T.RMessage, c: Conn) {
  const frame = encodeAny(r);
  switch (mut.k) {
    case "ok":
      return c.send(frame);
    case "drop":
      return;
    case "dup":
      c.send(frame);
      return c.send(frame);
    case "tag":
      frame.writeUInt16LE((m.tag ^ mut.x) & 0xffff, 5);
      return c.send(frame);
    case "stray":
      frame.writeUInt16LE(mut.tag, 5);
      c.send(frame);
      return c.send(encodeAny(r));
    case "type":
      frame[4] = mut.t;
      return c.send(frame);
    case "rerror":
      return c.send(garbageRerror(m.tag, mut.ename));
    case "grow":
      if (r.type === MsgType.Rread) return c.reply({ ...r, data: Buffer.alloc(r.data.length + mut.n, 0x62) });
      if (r.type === MsgType.Rwalk)
        return c.reply({
          ...r,
          wqid: [...r.wqid, ...Array.from({ length: Math.min(mut.n, 16 - r.wqid.length) }, () => FILE_QID)],
        });
      if (r.type === MsgType.Rwrite) return c.reply({ ...r, count: r.count + mut.n });
      return c.send(frame);
    case "size":
      frame.writeUInt32LE(Math.max(0, frame.length + mut.delta), 0);
      return c.send(frame);
    case "flip":
      if (mut.at < frame.length) frame[mut.at] = mut.v;
      return c.send(frame);
    case "cut":
      c.sock.end(frame.subarray(0, Math.min(mut.at, frame.length - 1)));
      return;
    case "huge":
      frame.writeUInt32LE(MSIZE + 1 + frame.length, 0);
      return c.send(frame);
    case "trickle":
      for (let i = 0; i < frame.length; i++) c.send(frame.subarray(i, i + 1));
      return;
    case "late":
      setTimeout(() => c.send(frame), mut.ms);
      return;
  }
}

type Op =
  | "walk"
  | "clone"
  | "open"
  | "read"
  | "write"
  | "stat"
  | "wstat"
  | "readdir"
  | "clunk"
  | "readFile"
  | "abort"
  | "burst";
const op: fc.Arbitrary<Op> = fc.constantFrom(
  "walk",
  "clone",
  "open",
  "read",
  "write",
  "stat",
  "wstat",
  "readdir",
  "clunk",
  "readFile",
  "abort",
  "burst",
);

describe("random mutations of every reply (property)", () => {
  it("every call settles with a result or one of the package's errors, and nothing leaks", async () => {
    let script: Mutation[] = [];
    let next = 0;
    const peer = await startPeer((m, c) => {
      const r = honest(m);
      if (!r) return;
      mutate(script[next++] ?? { k: "ok" }, m, r, c);
    });
    const before = resources();
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(mutation, { maxLength: 12 }),
          fc.array(op, { minLength: 1, maxLength: 8 }),
          async (muts, ops) => {
            script = muts;
            next = 0;
            const connected = await settle(
              Client.connect(peer.addr, { msize: MSIZE, connectTimeoutMs: 300, timeoutMs: 50 }),
            );
            if (connected === "pending") throw new Error("connect never settled");
            if (!connected.ok) {
              if (!isOurs(connected.err)) throw connected.err;
              return;
            }
            const c = connected.value;
            const failure = await exercise(c, ops).then(
              () => undefined,
              (err: unknown) => err,
            );
            if (ops.length % 2 === 0) c.destroy();
            else if ((await settle(c.close())) === "pending") throw new Error("close() never settled");
            if (failure !== undefined) throw failure;
          },
        ),
        { seed: 0x9b1d, numRuns: 80, endOnFailure: true },
      );
      await until(() => peer.open.size === 0, "every connection to close");
    } finally {
      await peer.close();
    }
    await until(() => {
      const now = resources();
      return now.sockets <= before.sockets && now.timers <= before.timers;
    }, "sockets and timers to be released");
  });
});

/** Attaches and runs `ops`; every call must settle, and fail only with one of the package's errors. */
async function exercise(c: Client, ops: readonly Op[]): Promise<void> {
  const root = await settle(c.attach("u", ""));
  if (root === "pending") throw new Error("attach never settled");
  if (!root.ok) {
    if (!isOurs(root.err)) throw root.err;
    return;
  }
  let fid = root.value;
  for (const o of ops) {
    const r = await settle(runOp(o, c, root.value, fid));
    if (r === "pending") throw new Error(`${o} never settled`);
    if (!r.ok) {
      if (!isOurs(r.err)) throw r.err;
    } else if (r.value) fid = r.value;
  }
}

/** One client operation; resolves with a new current fid when it made one. */
async function runOp(o: Op, c: Client, root: Fid, fid: Fid) {
  switch (o) {
    case "walk":
      return root.walk("dir/f");
    case "clone":
      return fid.clunked ? root.clone() : fid.clone();
    case "open":
      await fid.open(OREAD);
      return;
    case "read":
      await fid.read(0, 64);
      return;
    case "write":
      await fid.write(0, "some bytes");
      return;
    case "stat":
      await fid.stat();
      return;
    case "wstat":
      await fid.wstat({ name: "g" });
      return;
    case "readdir":
      await root.readdir();
      return;
    case "clunk":
      await fid.clunk();
      return;
    case "readFile":
      await new Fsys(c, root).readFile("f");
      return;
    case "burst": {
      // Several calls in flight at once: a reply with a wrong tag may reach another of them.
      const calls = [fid.read(0, 8), root.walk("f"), fid.stat(), fid.read(8, 8), root.clone()];
      const done = await Promise.allSettled(calls);
      for (const d of done) if (d.status === "rejected" && !isOurs(d.reason)) throw d.reason;
      for (const d of done)
        if (d.status === "fulfilled" && d.value instanceof Object && "clunk" in d.value) void d.value.clunk();
      return;
    }
    case "abort": {
      const ac = new AbortController();
      const p = fid.read(0, 10, { signal: ac.signal });
      ac.abort();
      await p;
      return;
    }
  }
}
