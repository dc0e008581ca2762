// The stat entry of Rstat, Twstat and 9P2000/.u directory reads: size, encode, exact decode, don't-touch values.

import { Dialect, NONUNAME } from "./constants.js";
import { asBuffer, Reader } from "./reader.js";
import type { Stat } from "./types.js";
import { badValue, putBits32, putQid, putStr, putU16, putU32, putU64, strSize } from "./writer.js";

/** Bytes of a stat entry before its strings, its own size[2] included. */
const FIXED = 2 + 2 + 4 + 13 + 4 + 4 + 4 + 8;

/**
 * Whole wire size of a stat entry, its own size[2] included: 49 + string bytes for 9P2000,
 * 63 + string bytes for 9P2000.u. Validates the strings.
 */
export function statSize(stat: Stat, dialect: Dialect): number {
  if (stat === null || typeof stat !== "object") badValue("stat", stat);
  let n =
    FIXED +
    strSize(stat.name, "stat.name") +
    strSize(stat.uid, "stat.uid") +
    strSize(stat.gid, "stat.gid") +
    strSize(stat.muid, "stat.muid");
  if (dialect === Dialect.P2000u) n += strSize(stat.extension ?? "", "stat.extension") + 12;
  if (n > 0xffff) badValue("stat entry larger than 65535 bytes", n);
  return n;
}

/** Writes a stat entry (size checked by statSize) at p; returns the position after it. */
export function putStat(b: Buffer, p: number, s: Stat, dialect: Dialect): number {
  const start = p;
  p += 2;
  p = putU16(b, p, s.type, "stat.type");
  p = putU32(b, p, s.dev, "stat.dev");
  p = putQid(b, p, s.qid, "stat.qid");
  p = putBits32(b, p, s.mode, "stat.mode");
  p = putU32(b, p, s.atime, "stat.atime");
  p = putU32(b, p, s.mtime, "stat.mtime");
  p = putU64(b, p, s.length, "stat.length");
  p = putStr(b, p, s.name);
  p = putStr(b, p, s.uid);
  p = putStr(b, p, s.gid);
  p = putStr(b, p, s.muid);
  if (dialect === Dialect.P2000u) {
    p = putStr(b, p, s.extension ?? "");
    p = putU32(b, p, s.n_uid ?? NONUNAME, "stat.n_uid");
    p = putU32(b, p, s.n_gid ?? NONUNAME, "stat.n_gid");
    p = putU32(b, p, s.n_muid ?? NONUNAME, "stat.n_muid");
  }
  b.writeUInt16LE(p - start - 2, start);
  return p;
}

/**
 * Reads the stat entry that starts at r.pos and must end exactly at `end` (the caller's n or
 * the directory-read entry boundary). Everything inside is reported as "bad-stat": an inner size
 * that disagrees with `end`, strings running past the entry, or bytes left after the last field
 * (in 9P2000 that is the signature of a 9P2000.u encoder). Leaves r.pos at `end`.
 */
export function readStat(r: Reader, end: number, dialect: Dialect): Stat {
  const start = r.pos;
  const size = r.u16();
  if (start + 2 + size !== end) {
    r.fail("bad-stat", `stat size ${size} disagrees with its length ${end - start - 2}`);
  }
  const outerEnd = r.end;
  const outerReason = r.reason;
  r.end = end;
  r.reason = "bad-stat";
  const stat: Stat = {
    type: r.u16(),
    dev: r.u32(),
    qid: r.qid(),
    mode: r.u32(),
    atime: r.u32(),
    mtime: r.u32(),
    length: r.u64(),
    name: r.str(),
    uid: r.str(),
    gid: r.str(),
    muid: r.str(),
  };
  if (dialect === Dialect.P2000u) {
    stat.extension = r.str();
    stat.n_uid = r.u32();
    stat.n_gid = r.u32();
    stat.n_muid = r.u32();
  }
  if (r.pos !== end) r.fail("bad-stat", `${end - r.pos} bytes left after the last field of a stat entry`);
  r.end = outerEnd;
  r.reason = outerReason;
  return stat;
}

/** Encodes one stat entry, its own size[2] included. */
export function encodeStat(stat: Stat, dialect: Dialect): Buffer {
  const n = statSize(stat, dialect);
  const b = Buffer.allocUnsafe(n);
  putStat(b, 0, stat, dialect);
  return b;
}

/** Decodes exactly one stat entry: `buf` must hold the entry and nothing else. Throws ProtocolError("bad-stat"). */
export function decodeStat(buf: Uint8Array, dialect: Dialect): Stat {
  const b = asBuffer(buf);
  const r = new Reader(b, 0, b.length);
  r.reason = "bad-stat";
  return readStat(r, b.length, dialect);
}

/**
 * Decodes the concatenated stat entries of a 9P2000/.u directory read. An entry that runs past
 * the data (a split entry) is "bad-stat".
 */
export function decodeStats(data: Uint8Array, dialect: Dialect): Stat[] {
  const b = asBuffer(data);
  const r = new Reader(b, 0, b.length);
  r.reason = "bad-stat";
  const out: Stat[] = [];
  while (r.pos < b.length) {
    if (r.pos + 2 > b.length) r.fail("bad-stat", "a stat entry is cut short in directory data");
    const end = r.pos + 2 + b.readUInt16LE(r.pos);
    if (end > b.length)
      r.fail("bad-stat", `a stat entry of ${end - r.pos} bytes runs past the directory data`);
    out.push(readStat(r, end, dialect));
  }
  return out;
}

/** Encodes several stat entries back to back (a directory read's data). */
export function encodeStats(stats: readonly Stat[], dialect: Dialect): Buffer {
  let n = 0;
  for (const s of stats) n += statSize(s, dialect);
  const b = Buffer.allocUnsafe(n);
  let p = 0;
  for (const s of stats) p = putStat(b, p, s, dialect);
  return b;
}

/**
 * A stat whose every field means "don't touch" in Twstat (~0 numbers, empty strings), with
 * `partial` laid over it: `dontTouchStat({ name: "new" })` is a rename.
 */
export function dontTouchStat(partial?: Partial<Stat>): Stat {
  return {
    type: 0xffff,
    dev: 0xffffffff,
    qid: { type: 0xff, version: 0xffffffff, path: 0xffffffffffffffffn },
    mode: 0xffffffff,
    atime: 0xffffffff,
    mtime: 0xffffffff,
    length: 0xffffffffffffffffn,
    name: "",
    uid: "",
    gid: "",
    muid: "",
    extension: "",
    n_uid: NONUNAME,
    n_gid: NONUNAME,
    n_muid: NONUNAME,
    ...partial,
  };
}

/** True when `v` is the all-ones "don't touch" value of a Twstat field. */
export function isDontTouch(v: number | bigint | string, bytes?: 1 | 2 | 4 | 8): boolean {
  if (typeof v === "string") return v === "";
  if (typeof v === "bigint") return v === 0xffffffffffffffffn;
  if (bytes === 1) return v === 0xff;
  if (bytes === 2) return v === 0xffff;
  return v === 0xffffffff;
}
