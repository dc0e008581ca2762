// Property tests: valid messages round-trip, any bytes decode or fail with ProtocolError, and the
// Framer reassembles any cutting of a valid stream and rejects bad sizes at once.

import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import {
  type Dialect,
  decode,
  decodeDirents,
  decodeStat,
  decodeStats,
  encode,
  encodeDirent,
  encodeStat,
  Framer,
  formatMessage,
  MsgType,
  statSize,
} from "../../src/codec/index.js";
import { ProtocolError } from "../../src/errors.js";
import { anyMessageArb, messageArb, namesFor, qid, statArb, str, u8, u64 } from "./arbitraries.js";

const DIALECTS: Dialect[] = ["9P2000", "9P2000.u", "9P2000.L"];

/** Runs f; returns "ok", or the ProtocolError reason; anything else is rethrown (a failure). */
function outcome(f: () => unknown): string {
  try {
    f();
    return "ok";
  } catch (e) {
    if (e instanceof ProtocolError) return e.reason;
    throw e;
  }
}

for (const d of DIALECTS) {
  describe(`round trip in ${d}`, () => {
    for (const name of namesFor(d)) {
      test.prop([messageArb(name, d)], { numRuns: 60 })(name, (m) => {
        const b = encode(m, d);
        expect(b.readUInt32LE(0)).toBe(b.length);
        expect(b[4]).toBe(m.type);
        const back = decode(b, d, { msize: b.length });
        expect(back).toEqual(m);
        expect(encode(back, d).equals(b)).toBe(true);
        expect(typeof formatMessage(back)).toBe("string");
      });
    }
  });

  describe(`hostile bytes in ${d}`, () => {
    test.prop([fc.uint8Array({ maxLength: 120 })], { numRuns: 1500 })(
      "random bytes decode or throw ProtocolError",
      (u) => {
        outcome(() => decode(u, d));
      },
    );

    const typed = fc
      .record({
        type: fc.constantFrom(...Object.values(MsgType), 0, 99, 200),
        tag: fc.integer({ min: 0, max: 0xffff }),
        body: fc.uint8Array({ maxLength: 100 }),
      })
      .map(({ type, tag, body }) => {
        const b = Buffer.alloc(7 + body.length);
        b.writeUInt32LE(b.length, 0);
        b[4] = type;
        b.writeUInt16LE(tag, 5);
        b.set(body, 7);
        return b;
      });
    test.prop([typed], { numRuns: 3000 })(
      "well-sized frames with random bodies decode or throw ProtocolError",
      (b) => {
        let m: unknown;
        const r = outcome(() => {
          m = decode(b, d);
        });
        // Whatever decodes is canonical: re-encoding gives the same bytes (except the .u Tauth
        // without n_uname, accepted from old XCPU clients and re-encoded with NONUNAME).
        if (r === "ok") {
          const msg = m as Parameters<typeof encode>[0];
          const quirk = d === "9P2000.u" && msg.type === MsgType.Tauth && msg.n_uname === undefined;
          if (!quirk) expect(encode(msg, d).equals(b)).toBe(true);
        }
      },
    );

    const mutated = fc
      .record({
        m: anyMessageArb(d),
        edits: fc.array(fc.record({ at: fc.nat(), v: u8 }), { minLength: 1, maxLength: 4 }),
        cut: fc.option(fc.nat()),
        fixSize: fc.boolean(),
      })
      .map(({ m, edits, cut, fixSize }) => {
        let b = Buffer.from(encode(m, d));
        for (const e of edits) b[e.at % b.length] = e.v;
        if (cut !== null) b = b.subarray(0, cut % (b.length + 1));
        if (fixSize && b.length >= 4) b.writeUInt32LE(b.length, 0);
        return b;
      });
    test.prop([mutated], { numRuns: 3000 })("mutated valid frames decode or throw ProtocolError", (b) => {
      outcome(() => decode(b, d));
    });
  });

  describe(`stat and dirent data in ${d}`, () => {
    test.prop([fc.array(statArb(d), { maxLength: 5 })], { numRuns: 100 })(
      "stat entries round-trip",
      (stats) => {
        const parts = stats.map((s) => encodeStat(s, d));
        parts.forEach((p, i) => {
          expect(p.length).toBe(statSize(stats[i] as (typeof stats)[number], d));
          expect(p.readUInt16LE(0)).toBe(p.length - 2);
          expect(decodeStat(p, d)).toEqual(stats[i]);
        });
        expect(decodeStats(Buffer.concat(parts), d)).toEqual(stats);
      },
    );
    test.prop([fc.uint8Array({ maxLength: 200 })], { numRuns: 500 })(
      "random directory data decodes or throws ProtocolError",
      (u) => {
        outcome(() => decodeStats(u, d));
        outcome(() => decodeStat(u, d));
        outcome(() => decodeDirents(u));
      },
    );
  });
}

describe("dirents", () => {
  const dirent = fc.record({ qid, offset: u64, type: u8, name: str });
  test.prop([fc.array(dirent, { maxLength: 6 })], { numRuns: 200 })("round-trip", (ds) => {
    expect(decodeDirents(Buffer.concat(ds.map(encodeDirent)))).toEqual(ds);
  });
});

/** Splits a buffer at the given cut points (any numbers; reduced modulo the length and sorted). */
function chunks(b: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, b.length]) {
    out.push(b.subarray(prev, c));
    prev = c;
  }
  return out;
}

describe("Framer", () => {
  test.prop(
    [
      fc.array(anyMessageArb("9P2000.L"), { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      fc.nat({ max: 40 }),
    ],
    { numRuns: 400 },
  )("a valid stream cut anywhere yields the same frames", (msgs, cuts, tail) => {
    const frames = msgs.map((m) => encode(m, "9P2000.L"));
    const stream = Buffer.concat(frames);
    // a partial frame at the end stays buffered
    const last = frames[frames.length - 1] as Buffer;
    const partial = last.subarray(0, Math.min(tail, last.length - 1));
    const f = new Framer({ maxSize: 1 << 20 });
    const got: Buffer[] = [];
    for (const c of chunks(Buffer.concat([stream, partial]), cuts)) got.push(...f.push(c));
    expect(got.map((x) => x.toString("hex"))).toEqual(frames.map((x) => x.toString("hex")));
    expect(f.buffered).toBe(partial.length);
  });

  test.prop(
    [
      fc.array(anyMessageArb("9P2000"), { maxLength: 4 }),
      fc.oneof(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1001, max: 0xffffffff })),
      fc.uint8Array({ maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 10 }),
    ],
    { numRuns: 400 },
  )("a bad size field is rejected as soon as its 4 bytes are there", (msgs, size, junk, cuts) => {
    const good = msgs.map((m) => encode(m, "9P2000")).filter((b) => b.length <= 1000);
    const head = Buffer.alloc(4);
    head.writeUInt32LE(size, 0);
    const goodLen = good.reduce((n, b) => n + b.length, 0);
    const stream = Buffer.concat([...good, head, junk]);
    const f = new Framer({ maxSize: 1000 });
    const got: Buffer[] = [];
    let pos = 0;
    let threw: ProtocolError | undefined;
    for (const c of chunks(stream, cuts)) {
      const end = pos + c.length;
      try {
        got.push(...f.push(c));
      } catch (e) {
        expect(e).toBeInstanceOf(ProtocolError);
        threw = e as ProtocolError;
        // the chunk that completed the size field is the one that threw
        expect(end).toBeGreaterThanOrEqual(goodLen + 4);
        expect(pos).toBeLessThan(goodLen + 4);
        break;
      }
      pos = end;
    }
    expect(threw?.reason).toBe(size < 7 ? "bad-size" : "too-large");
    for (let i = 0; i < got.length; i++) expect(got[i]?.equals(good[i] as Buffer)).toBe(true);
    expect(() => f.push(Buffer.alloc(1))).toThrow(ProtocolError);
  });
});
