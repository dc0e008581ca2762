// Malformed frames: each must fail with ProtocolError and the exact reason, never anything else.

import { describe, expect, it } from "vitest";
import {
  type Dialect,
  decode,
  decodeDirents,
  decodeHeader,
  decodeStat,
  decodeStats,
  encode,
  type Message,
  MsgType,
} from "../../src/codec/index.js";
import { ProtocolError, type ProtocolErrorReason } from "../../src/errors.js";
import { hexOf } from "../vectors/hex.js";

const P = "9P2000" as const;
const U = "9P2000.u" as const;
const L = "9P2000.L" as const;

function reasonOf(f: () => unknown): ProtocolErrorReason | "no error" {
  try {
    f();
  } catch (e) {
    if (e instanceof ProtocolError) return e.reason;
    throw e;
  }
  return "no error";
}

function bytes(listing: string): Buffer {
  return Buffer.from(hexOf(listing), "hex");
}

/** Copy of `b` with the size field rewritten to its own length. */
function resized(b: Buffer): Buffer {
  const c = Buffer.from(b);
  c.writeUInt32LE(c.length, 0);
  return c;
}

const twalk = bytes(`1b 00 00 00 6e 02 00 00 00 00 00 01 00 00 00 02 00 03 00 75 73 72 03 00 6c 69 62`);
const rstat = bytes(`
  3d 00 00 00 7d 04 00 | Rstat tag 4
  34 00 | n 52
  32 00 | size 50
  00 00 00 00 00 00 80 00 00 00 00 2a 00 00 00 00 00 00 00 ed 01 00 80
  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
  01 00 2f 01 00 75 01 00 67 00 00
`);
const twrite = bytes(`1a 00 00 00 76 09 00 02 00 00 00 f0 de bc 9a 78 56 34 12 03 00 00 00 61 62 63`);
const tcreateU = bytes(`1a 00 00 00 72 08 00 01 00 00 00 02 00 6c 6e ff 01 00 02 00 04 00 2f 65 74 63`);
const rerrorU = bytes(`1b 00 00 00 6b 02 00 0e 00 66 69 6c 65 20 6e 6f 74 20 66 6f 75 6e 64 02 00 00 00`);
const tlcreate = bytes(
  `1e 00 00 00 0e 02 00 01 00 00 00 05 00 66 2e 74 78 74 41 00 00 00 a4 01 00 00 e8 03 00 00`,
);

const frames: [string, Buffer, Dialect][] = [
  ["Twalk", twalk, P],
  ["Rstat", rstat, P],
  ["Twrite", twrite, P],
  ["Tcreate .u", tcreateU, U],
  ["Rerror .u", rerrorU, U],
  ["Tlcreate", tlcreate, L],
];

describe("sanity: the base frames decode", () => {
  for (const [name, f, d] of frames) it(name, () => expect(reasonOf(() => decode(f, d))).toBe("no error"));
});

describe("truncation at every byte", () => {
  for (const [name, f, d] of frames) {
    it(`${name}: every prefix is "truncated"`, () => {
      for (let k = 0; k < f.length; k++) {
        const cut = f.subarray(0, k);
        // a prefix of 4..6 bytes holds a size field ≥ 7, so it is short, not bad-size
        expect(
          reasonOf(() => decode(cut, d)),
          `prefix of ${k} bytes`,
        ).toBe("truncated");
      }
    });
    it(`${name}: every prefix with its size field rewritten to match is "truncated" (or bad-size below 7)`, () => {
      for (let k = 4; k < f.length; k++) {
        const cut = resized(f.subarray(0, k));
        const want = k < 7 ? "bad-size" : "truncated";
        expect(
          reasonOf(() => decode(cut, d)),
          `prefix of ${k} bytes`,
        ).toBe(want);
      }
    });
  }
});

describe("size field", () => {
  it("below 7 is bad-size", () => {
    for (let s = 0; s < 7; s++) {
      const f = Buffer.from(twalk);
      f.writeUInt32LE(s, 0);
      expect(reasonOf(() => decode(f, P))).toBe("bad-size");
      expect(reasonOf(() => decodeHeader(f))).toBe("bad-size");
    }
  });
  it("larger than the frame is truncated; smaller than the frame is bad-size", () => {
    const longer = Buffer.from(twalk);
    longer.writeUInt32LE(twalk.length + 1, 0);
    expect(reasonOf(() => decode(longer, P))).toBe("truncated");
    const shorter = Buffer.from(twalk);
    shorter.writeUInt32LE(twalk.length - 1, 0);
    expect(reasonOf(() => decode(shorter, P))).toBe("bad-size");
    expect(reasonOf(() => decode(Buffer.concat([twalk, Buffer.alloc(1)]), P))).toBe("bad-size");
  });
  it("above msize is too-large", () => {
    expect(reasonOf(() => decode(twalk, P, { msize: 26 }))).toBe("too-large");
    expect(reasonOf(() => decode(twalk, P, { msize: 27 }))).toBe("no error");
  });
  it("decodeHeader needs 7 bytes but not the body", () => {
    expect(reasonOf(() => decodeHeader(twalk.subarray(0, 3)))).toBe("truncated");
    expect(reasonOf(() => decodeHeader(twalk.subarray(0, 6)))).toBe("truncated");
    expect(decodeHeader(twalk.subarray(0, 7))).toEqual({ size: 27, type: MsgType.Twalk, tag: 2 });
  });
});

describe("fields", () => {
  it("nwname 17 is too-many-wnames", () => {
    const names = Array.from({ length: 17 }, () => "01 00 61").join(" ");
    const f = resized(bytes(`00 00 00 00 6e 01 00 00 00 00 00 01 00 00 00 11 00 ${names}`));
    expect(reasonOf(() => decode(f, P))).toBe("too-many-wnames");
  });
  it("nwqid 17 is too-many-wnames", () => {
    const qids = Array.from({ length: 17 }, () => "00 00 00 00 00 00 00 00 00 00 00 00 00").join(" ");
    const f = resized(bytes(`00 00 00 00 6f 01 00 11 00 ${qids}`));
    expect(reasonOf(() => decode(f, P))).toBe("too-many-wnames");
  });
  it("a string length running past the end is truncated", () => {
    // Tversion whose version claims 0xff bytes but has 6
    const f = bytes(`13 00 00 00 64 ff ff 18 20 00 00 ff 00 39 50 32 30 30 30`);
    expect(reasonOf(() => decode(f, P))).toBe("truncated");
  });
  it("a data count running past the end is truncated", () => {
    const f = Buffer.from(twrite);
    f.writeUInt32LE(4, 19); // count 4, 3 bytes present
    expect(reasonOf(() => decode(f, P))).toBe("truncated");
  });
  it("bytes after the last field are trailing-bytes", () => {
    expect(reasonOf(() => decode(resized(bytes(`00 00 00 00 78 03 00 01 00 00 00 00`)), P))).toBe(
      "trailing-bytes",
    );
    expect(reasonOf(() => decode(resized(bytes(`00 00 00 00 79 03 00 00`)), P))).toBe("trailing-bytes");
    const w = Buffer.from(twrite);
    w.writeUInt32LE(2, 19); // count 2, 3 bytes present
    expect(reasonOf(() => decode(w, P))).toBe("trailing-bytes");
  });
  it("a 9P2000.u Rerror on a 9P2000 connection has trailing bytes", () => {
    expect(reasonOf(() => decode(rerrorU, P))).toBe("trailing-bytes");
  });
  it("a 9P2000 Rerror on a 9P2000.u connection is truncated", () => {
    expect(reasonOf(() => decode(resized(rerrorU.subarray(0, rerrorU.length - 4)), U))).toBe("truncated");
  });
  it("NUL inside a string is bad-string", () => {
    const f = bytes(`13 00 00 00 64 ff ff 18 20 00 00 06 00 39 50 00 30 30 30`);
    expect(reasonOf(() => decode(f, P))).toBe("bad-string");
  });
  it("invalid UTF-8 is bad-string; valid multibyte UTF-8 is fine", () => {
    const bad = resized(bytes(`00 00 00 00 6e 01 00 00 00 00 00 01 00 00 00 01 00 02 00 c3 28`));
    expect(reasonOf(() => decode(bad, P))).toBe("bad-string");
    const lone = resized(bytes(`00 00 00 00 6e 01 00 00 00 00 00 01 00 00 00 01 00 01 00 ff`));
    expect(reasonOf(() => decode(lone, P))).toBe("bad-string");
    const surrogate = resized(bytes(`00 00 00 00 6e 01 00 00 00 00 00 01 00 00 00 01 00 03 00 ed a0 80`));
    expect(reasonOf(() => decode(surrogate, P))).toBe("bad-string");
    const ok = resized(bytes(`00 00 00 00 6e 01 00 00 00 00 00 01 00 00 00 01 00 04 00 f0 9f 98 80`));
    expect(decode(ok, P)).toMatchObject({ wname: ["😀"] });
  });
});

describe("types", () => {
  it("unknown numbers are unknown-type", () => {
    for (const t of [0, 5, 99, 128, 200, 255]) {
      const f = bytes(`07 00 00 00 ${t.toString(16).padStart(2, "0")} 01 00`);
      for (const d of [P, U, L])
        expect(
          reasonOf(() => decode(f, d)),
          `type ${t} ${d}`,
        ).toBe("unknown-type");
    }
  });
  it("9P2000.L types are unknown-type on 9P2000 and 9P2000.u", () => {
    for (const d of [P, U]) {
      expect(reasonOf(() => decode(tlcreate, d))).toBe("unknown-type");
      expect(reasonOf(() => decode(bytes(`0b 00 00 00 07 02 00 02 00 00 00`), d))).toBe("unknown-type");
    }
  });
  it("Topen, Tcreate, Tstat, Twstat and their replies are unknown-type on 9P2000.L", () => {
    expect(reasonOf(() => decode(bytes(`0c 00 00 00 70 06 00 01 00 00 00 00`), L))).toBe("unknown-type");
    expect(reasonOf(() => decode(rstat, L))).toBe("unknown-type");
    expect(reasonOf(() => decode(bytes(`0b 00 00 00 7c 04 00 00 00 00 00`), L))).toBe("unknown-type");
  });
  it("Terror and Tlerror are bad-type in every dialect", () => {
    for (const d of [P, U, L]) {
      expect(reasonOf(() => decode(bytes(`09 00 00 00 6a 01 00 00 00`), d))).toBe("bad-type");
      expect(reasonOf(() => decode(bytes(`0b 00 00 00 06 01 00 00 00 00 00`), d))).toBe("bad-type");
    }
  });
  it("the error carries the message type", () => {
    try {
      decode(resized(twalk.subarray(0, 20)), P);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ProtocolError);
      expect((e as ProtocolError).msgType).toBe(MsgType.Twalk);
      expect((e as ProtocolError).code).toBe("E9P_PROTOCOL");
    }
  });
});

describe("stat entries", () => {
  it("an inner size that disagrees with n is bad-stat", () => {
    for (const inner of [0x31, 0x33, 0x00, 0xffff]) {
      const f = Buffer.from(rstat);
      f.writeUInt16LE(inner, 9);
      expect(
        reasonOf(() => decode(f, P)),
        `inner ${inner}`,
      ).toBe("bad-stat");
    }
  });
  it("n running past the frame is truncated", () => {
    const f = Buffer.from(rstat);
    f.writeUInt16LE(53, 7);
    expect(reasonOf(() => decode(f, P))).toBe("truncated");
  });
  it("strings that do not end exactly at size + 2 are bad-stat", () => {
    // muid claims 1 byte: the strings run past the entry
    const over = Buffer.from(rstat);
    over.writeUInt16LE(1, over.length - 2);
    expect(reasonOf(() => decode(over, P))).toBe("bad-stat");
    // an entry one byte longer than its strings (n, size and frame grown by one)
    const longer = Buffer.concat([rstat, Buffer.alloc(1)]);
    longer.writeUInt32LE(longer.length, 0);
    longer.writeUInt16LE(53, 7);
    longer.writeUInt16LE(51, 9);
    expect(reasonOf(() => decode(longer, P))).toBe("bad-stat");
  });
  it("a 9P2000.u stat on a 9P2000 connection is bad-stat (extra bytes); the reverse is bad-stat (short)", () => {
    const u = encode(
      {
        type: MsgType.Rstat,
        tag: 1,
        stat: {
          type: 0,
          dev: 0,
          qid: { type: 0, version: 0, path: 1n },
          mode: 0o644,
          atime: 0,
          mtime: 0,
          length: 0n,
          name: "f",
          uid: "",
          gid: "",
          muid: "",
        },
      } as Message,
      U,
    );
    expect(reasonOf(() => decode(u, P))).toBe("bad-stat");
    expect(reasonOf(() => decode(rstat, U))).toBe("bad-stat");
  });
  it("decodeStat is exact; decodeStats rejects an entry split at the end", () => {
    const entry = rstat.subarray(9);
    expect(decodeStat(entry, P).name).toBe("/");
    expect(reasonOf(() => decodeStat(Buffer.concat([entry, Buffer.alloc(1)]), P))).toBe("bad-stat");
    expect(reasonOf(() => decodeStat(entry.subarray(0, 10), P))).toBe("bad-stat");
    expect(reasonOf(() => decodeStat(entry.subarray(0, 1), P))).toBe("bad-stat");
    expect(decodeStats(Buffer.concat([entry, entry]), P)).toHaveLength(2);
    expect(decodeStats(Buffer.alloc(0), P)).toEqual([]);
    for (let k = 1; k < entry.length; k++) {
      expect(
        reasonOf(() => decodeStats(Buffer.concat([entry, entry.subarray(0, k)]), P)),
        `cut ${k}`,
      ).toBe("bad-stat");
    }
  });
  it("decodeDirents rejects an entry cut short", () => {
    const d = bytes(`80 00 00 00 00 02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 04 01 00 2e`);
    expect(decodeDirents(d)).toHaveLength(1);
    for (let k = 1; k < d.length; k++) {
      expect(
        reasonOf(() => decodeDirents(Buffer.concat([d, d.subarray(0, k)]))),
        `cut ${k}`,
      ).toBe("truncated");
    }
  });
});

describe("encode rejects values the wire cannot carry (bad-value)", () => {
  const base = { type: MsgType.Tread, tag: 1, fid: 1, offset: 0n, count: 1 };
  const cases: [string, Record<string, unknown>][] = [
    ["fid -1", { ...base, fid: -1 }],
    ["fid 2^32", { ...base, fid: 2 ** 32 }],
    ["fid 1.5", { ...base, fid: 1.5 }],
    ["fid NaN", { ...base, fid: Number.NaN }],
    ["fid as string", { ...base, fid: "1" }],
    ["tag 65536", { ...base, tag: 65536 }],
    ["offset -1n", { ...base, offset: -1n }],
    ["offset 2^64", { ...base, offset: 2n ** 64n }],
    ["offset as number", { ...base, offset: 5 }],
    ["Topen mode 256", { type: MsgType.Topen, tag: 1, fid: 1, mode: 256 }],
    ["Tflush oldtag -1", { type: MsgType.Tflush, tag: 1, oldtag: -1 }],
    ["string with NUL", { type: MsgType.Tversion, tag: 0xffff, msize: 8192, version: "9P\0" }],
    [
      "string of 65536 bytes",
      { type: MsgType.Tversion, tag: 0xffff, msize: 8192, version: "x".repeat(65536) },
    ],
    ["lone surrogate", { type: MsgType.Tversion, tag: 0xffff, msize: 8192, version: "\ud800" }],
    ["17 names", { type: MsgType.Twalk, tag: 1, fid: 0, newfid: 1, wname: Array(17).fill("a") }],
    ["17 qids", { type: MsgType.Rwalk, tag: 1, wqid: Array(17).fill({ type: 0, version: 0, path: 0n }) }],
    ["data not bytes", { type: MsgType.Rread, tag: 1, data: "abc" }],
    ["missing qid", { type: MsgType.Rattach, tag: 1 }],
    ["qid.type 256", { type: MsgType.Rattach, tag: 1, qid: { type: 256, version: 0, path: 0n } }],
    ["unknown type", { type: 200, tag: 1 }],
    ["type as a string", { type: "120", tag: 1, fid: 1 }],
    ["Terror", { type: MsgType.Terror, tag: 1 }],
    ["Tlopen on 9P2000", { type: MsgType.Tlopen, tag: 1, fid: 1, flags: 0 }],
  ];
  for (const [name, m] of cases) {
    it(name, () => expect(reasonOf(() => encode(m as unknown as Message, P))).toBe("bad-value"));
  }
  it("a stat entry over 65535 bytes", () => {
    const stat = {
      type: 0,
      dev: 0,
      qid: { type: 0, version: 0, path: 0n },
      mode: 0,
      atime: 0,
      mtime: 0,
      length: 0n,
      name: "x".repeat(40000),
      uid: "y".repeat(30000),
      gid: "",
      muid: "",
    };
    expect(reasonOf(() => encode({ type: MsgType.Rstat, tag: 1, stat }, P))).toBe("bad-value");
  });
  it("a string of exactly 65535 bytes is fine", () => {
    const m = { type: MsgType.Tversion, tag: 0xffff, msize: 8192, version: "é".repeat(32767) + "x" } as const;
    expect(decode(encode(m, P), P)).toEqual(m);
  });
});
