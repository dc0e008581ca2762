// Fuzzing the server over real sockets: 100,000+ random and mutated frames (flipped bytes, changed
// sizes, truncations, splices, random types), then a fresh client must still be served and the
// heap must not have grown without bound. Seeded: set NINEP_FUZZ_SEED to replay a run.

import net from "node:net";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Dialect, DMDIR, MsgType, NOFID, NOTAG, ORDWR, OREAD, OWRITE } from "../../src/codec/constants.js";
import { dontTouchStat } from "../../src/codec/stat.js";
import type { TMessage } from "../../src/codec/types.js";
import { encode } from "../../src/codec/wire.js";
import {
  abortable,
  CtlTable,
  generatedFile,
  Server,
  SynthDir,
  SynthFile,
  staticFile,
  treeBackend,
} from "../../src/server/index.js";
import { RawClient } from "../../src/testing/raw.js";
import type { Address } from "../../src/transport/address.js";
import { prng } from "../helpers/prng.js";

const SEED = Number(process.env.NINEP_FUZZ_SEED ?? Date.now() % 1_000_000);
const FRAMES_IN_STREAMS = 98_400;
const FRAMES_PER_STREAM = 2_050;
const KILLER_CONNECTIONS = 600;

const rnd = prng(SEED);
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

function getGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

let server: Server;
let addr: Address;

beforeAll(async () => {
  // Owned by someone else: the fuzz user ("fuzz") may read everything but rename or remove nothing.
  const root = new SynthDir("/", { mode: 0o755, uid: "glenda" });
  root.add(staticFile("hello", "hello, world\n"));
  root.add(generatedFile("gen", () => "generated\n".repeat(100)));
  const dir = root.add(new SynthDir("dir", { mode: 0o755 }));
  for (let i = 0; i < 30; i++) dir.add(staticFile(`f${i}`, `file ${i}\n`));
  root.add(
    new SynthFile<undefined>("block", {
      read: (_h, _o, _c, ctx) => abortable(new Promise<string>(() => {}), ctx.signal),
    }),
  );
  root.add(new CtlTable([{ cmd: "ping", run: () => {} }]).file("ctl", { mode: 0o666 }));
  server = new Server({
    backend: treeBackend(root, { dialects: [Dialect.P2000, Dialect.P2000u, Dialect.P2000L] }),
    flushTimeoutMs: 50,
    handshakeTimeoutMs: 5000,
  });
  addr = await server.listen("tcp!127.0.0.1!0");
});

afterAll(async () => {
  await server.close(100);
});

const names = ["hello", "gen", "dir", "block", "ctl", "..", "f1", "f2", "nope", ""];

/** A valid request of a random kind, using fids 0–7 and tags 1–200. */
function validFrame(dialect: Dialect): Buffer {
  const tag = 1 + int(200);
  const fid = int(8);
  const newfid = int(8);
  const k = int(14);
  let m: TMessage;
  switch (k) {
    case 0:
      m = { type: MsgType.Twalk, tag, fid, newfid, wname: Array.from({ length: int(4) }, () => pick(names)) };
      break;
    case 1:
      m = { type: MsgType.Topen, tag, fid, mode: pick([OREAD, OWRITE, ORDWR, 0x10, 0x40]) };
      break;
    case 2:
      m = { type: MsgType.Tread, tag, fid, offset: BigInt(int(3) === 0 ? int(5000) : 0), count: int(9000) };
      break;
    case 3:
      m = {
        type: MsgType.Twrite,
        tag,
        fid,
        offset: 0n,
        data: Buffer.from(pick(["ping\n", "bad cmd\n", "x"])),
      };
      break;
    case 4:
      m = { type: MsgType.Tclunk, tag, fid };
      break;
    case 5:
      m = { type: MsgType.Tstat, tag, fid };
      break;
    case 6:
      m = { type: MsgType.Tflush, tag, oldtag: 1 + int(200) };
      break;
    case 7:
      m = { type: MsgType.Tattach, tag, fid, afid: NOFID, uname: "fuzz", aname: "" };
      break;
    case 8:
      m = {
        type: MsgType.Tcreate,
        tag,
        fid,
        name: pick(names),
        perm: pick([0o644, DMDIR | 0o755]),
        mode: OREAD,
      };
      break;
    case 9:
      m = { type: MsgType.Tremove, tag, fid };
      break;
    case 10:
      m = { type: MsgType.Tauth, tag, afid: fid, uname: "fuzz", aname: "" };
      break;
    case 11:
      m = {
        type: MsgType.Twstat,
        tag,
        fid,
        stat: dontTouchStat({ name: pick(["", "renamed"]) }),
      };
      break;
    case 12:
      // An occasional Tversion: resets the session mid-stream.
      if (int(20) === 0) {
        m = {
          type: MsgType.Tversion,
          tag: NOTAG,
          msize: pick([8216, 65560, 300]),
          version: pick(["9P2000", "9P2000.u", "9P2000.L", "junk"]),
        };
        break;
      }
      m = { type: MsgType.Tstat, tag, fid };
      break;
    default:
      m = { type: MsgType.Treaddir, tag, fid, offset: 0n, count: int(4000) };
  }
  try {
    return encode(m, dialect);
  } catch {
    // Not a message of this dialect (Topen on .L, Treaddir on .u…): send it anyway, in another form.
    return encode(m, m.type < 100 ? Dialect.P2000L : Dialect.P2000u);
  }
}

function setSize(b: Buffer): Buffer {
  if (b.length >= 4) b.writeUInt32LE(b.length, 0);
  return b;
}

/** A frame whose size field is consistent (the connection should survive it). */
function mutatedFrame(dialect: Dialect): { frame: Buffer; kind: string } {
  const base = validFrame(dialect);
  switch (int(6)) {
    case 0: {
      // flip 1–4 bytes after the size field
      const b = Buffer.from(base);
      for (let i = int(4) + 1; i > 0; i--) if (b.length > 4) b[4 + int(b.length - 4)] = int(256);
      return { frame: b, kind: "flip" };
    }
    case 1: {
      // truncate the body, fix the size (fields then run past the end)
      const cut = 7 + int(Math.max(1, base.length - 7));
      return { frame: setSize(Buffer.from(base.subarray(0, Math.min(cut, base.length)))), kind: "truncate" };
    }
    case 2: {
      // splice: header of one message, body of another
      const other = validFrame(dialect);
      return {
        frame: setSize(
          Buffer.concat([
            base.subarray(0, 7 + int(Math.max(1, base.length - 7))),
            other.subarray(7 + int(Math.max(1, other.length - 7))),
          ]),
        ),
        kind: "splice",
      };
    }
    case 3: {
      // random type and body
      const body = Buffer.alloc(int(64));
      for (let i = 0; i < body.length; i++) body[i] = int(256);
      const b = Buffer.concat([Buffer.alloc(7), body]);
      b[4] = int(256);
      b.writeUInt16LE(int(0x10000), 5);
      return { frame: setSize(b), kind: "random" };
    }
    case 4: {
      // extra trailing bytes
      return { frame: setSize(Buffer.concat([base, Buffer.alloc(1 + int(8), int(256))])), kind: "trailing" };
    }
    default:
      return { frame: base, kind: "valid" };
  }
}

/** Opens a raw socket, negotiates, attaches fid 0; replies are drained and discarded. */
function openStream(version: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (addr.network !== "tcp") throw new Error("tcp expected");
    const s = net.connect({ host: addr.host, port: addr.port });
    s.on("error", () => {});
    s.once("connect", () => {
      s.write(encode({ type: MsgType.Tversion, tag: NOTAG, msize: 65560, version }, "9P2000"));
      s.write(
        encode(
          { type: MsgType.Tattach, tag: 1, fid: 0, afid: NOFID, uname: "fuzz", aname: "" },
          version === "9P2000" ? "9P2000" : "9P2000.u",
        ),
      );
      resolve(s);
    });
    s.once("error", reject);
    s.on("data", () => {});
  });
}

/**
 * Sends `frames`, then either a final Tstat (tag 0xfffe) and resolves when it is answered or the
 * server closes ("answered" / "closed"), or (eof) half-closes and waits for the server to close.
 */
function feed(s: net.Socket, frames: Buffer[], eof = false): Promise<"answered" | "closed" | "timeout"> {
  return new Promise((resolve) => {
    let tail = Buffer.alloc(0);
    let settled = false;
    const done = (how: "answered" | "closed" | "timeout") => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      s.destroy();
      resolve(how);
    };
    s.on("close", () => done("closed"));
    // A stuck connection never gets there; a slow one (a stream takes seconds on a busy machine)
    // must not be taken for one.
    const t = setTimeout(() => done("timeout"), 60_000);
    if (!eof) {
      s.on("data", (chunk: Buffer) => {
        // Look for the final reply's tag without decoding everything: keep the last bytes only.
        tail = Buffer.concat([tail, chunk]).subarray(-65_536);
        if (tail.includes(Buffer.from([0xfe, 0xff]))) done("answered");
      });
    }
    s.write(Buffer.concat(frames));
    if (eof) s.end();
    else s.write(encode({ type: MsgType.Tstat, tag: 0xfffe, fid: 0 }, "9P2000"));
  });
}

it(`survives ${FRAMES_IN_STREAMS + KILLER_CONNECTIONS * 3} random and mutated frames (seed ${SEED})`, {
  timeout: 300_000, // about 45 s under a load like CI's
}, async () => {
  const gc = getGc();
  const baseline = await RawClient.connect(addr);
  await baseline.version(8216, "9P2000");
  await baseline.attach(0);
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  let sent = 0;
  const kinds: Record<string, number> = {};
  const outcomes = { answered: 0, closed: 0, timeout: 0 };

  // 1. Long streams of frames whose size fields are right: every one reaches a handler or the decoder.
  const streams = FRAMES_IN_STREAMS / FRAMES_PER_STREAM;
  const workers = 4;
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < streams) {
        next++;
        const version = pick(["9P2000", "9P2000.u", "9P2000.L"]);
        const dialect = version as Dialect;
        const frames: Buffer[] = [];
        for (let i = 0; i < FRAMES_PER_STREAM; i++) {
          const { frame, kind } = mutatedFrame(dialect);
          kinds[kind] = (kinds[kind] ?? 0) + 1;
          frames.push(frame);
        }
        sent += frames.length;
        const how = await feed(await openStream(version), frames);
        outcomes[how]++;
      }
    }),
  );

  const t1 = Date.now();
  // 2. Frames that break the byte stream (size field changed, garbage, cut short then EOF): each on
  //    its own connection, between valid frames.
  let k = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (k < KILLER_CONNECTIONS) {
        k++;
        const s = await openStream("9P2000.u");
        const a = validFrame(Dialect.P2000u);
        let bad: Buffer;
        const mode = int(4);
        if (mode === 0) {
          bad = Buffer.from(validFrame(Dialect.P2000u));
          bad.writeUInt32LE(pick([0, 3, 6, bad.length + 1 + int(100), 0xffffffff, int(0x100000000)]), 0);
          kinds.size = (kinds.size ?? 0) + 1;
        } else if (mode === 1) {
          bad = Buffer.alloc(1 + int(200));
          for (let i = 0; i < bad.length; i++) bad[i] = int(256);
          kinds.garbage = (kinds.garbage ?? 0) + 1;
        } else if (mode === 2) {
          const f = validFrame(Dialect.P2000u);
          bad = f.subarray(0, int(f.length));
          kinds.cut = (kinds.cut ?? 0) + 1;
        } else {
          bad = Buffer.concat([validFrame(Dialect.P2000u), validFrame(Dialect.P2000u)]);
          bad.writeUInt32LE(bad.length, 0); // two messages glued under one size
          kinds.glued = (kinds.glued ?? 0) + 1;
        }
        sent += 3;
        const how = await feed(s, [a, bad, validFrame(Dialect.P2000u)], true);
        outcomes[how]++;
      }
    }),
  );

  const t2 = Date.now();
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `fuzz: streams ${t1 - t0} ms, stream breakers ${t2 - t1} ms wall, ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms CPU (client and server)`,
  );
  expect(sent).toBeGreaterThanOrEqual(100_000);
  // A stream that neither got its final answer nor was closed means a stuck connection.
  expect(outcomes.timeout).toBe(0);
  // Every fuzz connection goes away; only the baseline client stays.
  await expect.poll(() => server.connectionCount, { timeout: 10_000 }).toBe(1);

  // The server still answers: the old client, and a fresh one.
  expect((await baseline.stat(0)).name).toBe("/");
  const fresh = await RawClient.connect(addr);
  await fresh.version(8216, "9P2000.u");
  await fresh.attach(0);
  expect((await fresh.walk(0, 1, "hello")).type).toBe(MsgType.Rwalk);
  expect((await fresh.call({ type: MsgType.Topen, fid: 1, mode: OREAD })).type).toBe(MsgType.Ropen);
  const r = await fresh.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 100 });
  expect(r.type === MsgType.Rread && Buffer.from(r.data).toString()).toBe("hello, world\n");
  fresh.destroy();
  baseline.destroy();
  await expect.poll(() => server.connectionCount).toBe(0);

  gc();
  await new Promise((res) => setTimeout(res, 50));
  gc();
  const growth = process.memoryUsage().heapUsed - heapBefore;
  // Everything the fuzz created is gone: a leak of even a few bytes per frame would exceed this.
  expect(growth).toBeLessThan(24 * 1024 * 1024);
  console.log(
    `fuzz seed ${SEED}: ${sent} frames, kinds ${JSON.stringify(kinds)}, outcomes ${JSON.stringify(outcomes)}, heap growth ${(growth / 1048576).toFixed(1)} MiB`,
  );
});
