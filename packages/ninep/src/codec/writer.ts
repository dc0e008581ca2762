// Size and put helpers for the two-pass encoder: sizes validate, puts write at a position and return the next one.

import { ProtocolError } from "../errors.js";
import type { Qid } from "./types.js";
import { writeU64 } from "./u64.js";

const MAX_U64 = 0xffffffffffffffffn;

export function badValue(what: string, value: unknown): never {
  const shown =
    typeof value === "bigint"
      ? `${value}n`
      : typeof value === "string"
        ? JSON.stringify(value)
        : String(value);
  throw new ProtocolError("bad-value", `${what}: invalid value ${shown}`);
}

/**
 * Wire size of a `[s]` string (2 + UTF-8 bytes). Rejects non-strings, NUL, lone surrogates
 * (they would not survive a round trip) and strings over 65535 bytes.
 */
export function strSize(s: string, what = "string"): number {
  if (typeof s !== "string") badValue(what, s);
  const len = s.length;
  if (len < 32) {
    // Short ASCII strings: one pass in JS checks for NUL and gives the byte count.
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c === 0 || c > 0x7f) break;
    }
    if (i === len) return 2 + len;
  }
  const n = Buffer.byteLength(s, "utf8");
  if (n > 0xffff) badValue(`${what} longer than 65535 bytes`, `${n} bytes`);
  if (s.indexOf("\0") !== -1) badValue(`${what} contains NUL`, s);
  if (n !== s.length && !(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    badValue(`${what} is not well-formed UTF-16`, s);
  }
  return 2 + n;
}

export function putU8(b: Buffer, p: number, v: number, what = "u8"): number {
  if ((v & 0xff) !== v) badValue(what, v);
  b[p] = v;
  return p + 1;
}

export function putU16(b: Buffer, p: number, v: number, what = "u16"): number {
  if ((v & 0xffff) !== v) badValue(what, v);
  b[p] = v;
  b[p + 1] = v >>> 8;
  return p + 2;
}

export function putU32(b: Buffer, p: number, v: number, what = "u32"): number {
  if (v >>> 0 !== v) badValue(what, v);
  b[p] = v;
  b[p + 1] = v >>> 8;
  b[p + 2] = v >>> 16;
  b[p + 3] = v >>> 24;
  return p + 4;
}

/**
 * A u32 bit field (perm, mode, flags, valid). Also accepts the negative int32 that JavaScript's
 * bitwise operators produce (`DMDIR | 0o755` is -2147483155) and writes its unsigned value;
 * decode always returns the unsigned number.
 */
export function putBits32(b: Buffer, p: number, v: number, what = "u32"): number {
  if (v >>> 0 !== v && (v | 0) !== v) badValue(what, v);
  b[p] = v;
  b[p + 1] = v >>> 8;
  b[p + 2] = v >>> 16;
  b[p + 3] = v >>> 24;
  return p + 4;
}

export function putU64(b: Buffer, p: number, v: bigint, what = "u64"): number {
  if (typeof v !== "bigint" || v < 0n || v > MAX_U64) badValue(what, v);
  writeU64(b, p, v);
  return p + 8;
}

/** Writes a string whose size was checked by strSize in the first pass. */
export function putStr(b: Buffer, p: number, s: string): number {
  const n = s.length;
  // Short ASCII strings are copied by hand: cheaper than a native call.
  if (n < 32) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      b[p + 2 + i] = c;
    }
    if (i === n) {
      b[p] = n;
      b[p + 1] = n >>> 8;
      return p + 2 + n;
    }
  }
  const w = b.write(s, p + 2, "utf8");
  b[p] = w;
  b[p + 1] = w >>> 8;
  return p + 2 + w;
}

export function putQid(b: Buffer, p: number, q: Qid, what = "qid"): number {
  if (q === null || typeof q !== "object") badValue(what, q);
  putU8(b, p, q.type, `${what}.type`);
  putU32(b, p + 1, q.version, `${what}.version`);
  putU64(b, p + 5, q.path, `${what}.path`);
  return p + 13;
}

export function putData(b: Buffer, p: number, d: Uint8Array): number {
  b.set(d, p);
  return p + d.length;
}

/** Size of a data field's bytes; rejects non-byte-arrays. */
export function dataSize(d: Uint8Array, what = "data"): number {
  if (!(d instanceof Uint8Array)) badValue(what, d);
  return d.length;
}
