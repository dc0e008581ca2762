// Verifies a gzip member (RFC 1952) without holding its decoded data: a DEFLATE (RFC 1951)
// decoder that keeps only the 32 KiB window, counts the bytes and computes their CRC32 as it goes,
// and stops at a size limit. node:zlib decodes only into one buffer of the whole output, which a
// small gzip bomb (1 MB expanding to 1 GiB) would make as large as the bomb.
import { crc32 } from "node:zlib";
import { formatError } from "../errors.js";

/** Decoded sizes above this are refused (no kernel or initrd we verify comes near it). */
export const GZIP_VERIFY_LIMIT = 512 * 1024 * 1024;

const WINDOW = 32 * 1024;
const FLUSH_AT = 1 << 20;
const MAX_MATCH = 258;

const LEN_BASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195,
  227, 258,
];
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
  6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA = [
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];
const CLEN_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** A canonical Huffman code: how many codes of each length 1..15, and the symbols in code order. */
interface Code {
  counts: Uint16Array;
  symbols: Uint16Array;
}

class Damaged extends Error {}

/** Builds a code from code lengths; returns how many codes are left unused (< 0: over-subscribed). */
function buildCode(lengths: Uint8Array, n: number): { code: Code; left: number } {
  const counts = new Uint16Array(16);
  for (let i = 0; i < n; i++) counts[lengths[i]!]!++;
  let left = 1;
  for (let len = 1; len < 16; len++) {
    left = left * 2 - counts[len]!;
    if (left < 0) return { code: { counts, symbols: new Uint16Array(0) }, left };
  }
  const offs = new Uint16Array(16);
  for (let len = 1; len < 15; len++) offs[len + 1] = offs[len]! + counts[len]!;
  const symbols = new Uint16Array(n);
  for (let s = 0; s < n; s++) if (lengths[s]) symbols[offs[lengths[s]!]!++] = s;
  return { code: { counts, symbols }, left };
}

let fixed: { lit: Code; dist: Code } | undefined;
function fixedCodes(): { lit: Code; dist: Code } {
  if (!fixed) {
    const l = new Uint8Array(288);
    l.fill(8, 0, 144);
    l.fill(9, 144, 256);
    l.fill(7, 256, 280);
    l.fill(8, 280, 288);
    const d = new Uint8Array(30).fill(5);
    fixed = { lit: buildCode(l, 288).code, dist: buildCode(d, 30).code };
  }
  return fixed;
}

class Verifier {
  private pos: number;
  private bitBuf = 0;
  private bitCnt = 0;
  private readonly out = new Uint8Array(FLUSH_AT + MAX_MATCH + WINDOW);
  private op = 0;
  private flushed = 0;
  total = 0;
  crc = 0;

  constructor(
    private readonly src: Uint8Array,
    start: number,
    private readonly limit: number,
  ) {
    this.pos = start;
  }

  /** Byte offset just after the last byte the decoder used. */
  get end(): number {
    return this.pos;
  }

  private bits(n: number): number {
    let v = this.bitBuf;
    while (this.bitCnt < n) {
      if (this.pos >= this.src.length) throw new Damaged("the data ends inside the compressed stream");
      v |= this.src[this.pos++]! << this.bitCnt;
      this.bitCnt += 8;
    }
    this.bitBuf = v >>> n;
    this.bitCnt -= n;
    return v & ((1 << n) - 1);
  }

  private decode(c: Code): number {
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len < 16; len++) {
      code |= this.bits(1);
      const count = c.counts[len]!;
      if (code - count < first) return c.symbols[index + (code - first)]!;
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    throw new Damaged("invalid Huffman code");
  }

  /** Hands the decoded bytes to the CRC and the count, keeping the last 32 KiB as the window. */
  private flush(): void {
    const { out, op } = this;
    this.crc = crc32(out.subarray(this.flushed, op), this.crc);
    this.total += op - this.flushed;
    if (this.total > this.limit)
      throw new Damaged(`it decodes to more than ${this.limit} bytes (refused: a gzip bomb?)`);
    if (op >= FLUSH_AT) {
      out.copyWithin(0, op - WINDOW, op);
      this.op = WINDOW;
    }
    this.flushed = this.op;
  }

  private stored(): void {
    this.bitBuf = 0;
    this.bitCnt = 0;
    if (this.pos + 4 > this.src.length) throw new Damaged("the data ends inside a stored block header");
    const len = this.src[this.pos]! | (this.src[this.pos + 1]! << 8);
    const nlen = this.src[this.pos + 2]! | (this.src[this.pos + 3]! << 8);
    this.pos += 4;
    if (len !== (~nlen & 0xffff)) throw new Damaged("stored block length does not match its complement");
    if (this.pos + len > this.src.length) throw new Damaged("the data ends inside a stored block");
    let done = 0;
    while (done < len) {
      if (this.op >= FLUSH_AT) this.flush();
      const n = Math.min(len - done, FLUSH_AT - this.op);
      this.out.set(this.src.subarray(this.pos + done, this.pos + done + n), this.op);
      this.op += n;
      done += n;
    }
    this.pos += len;
  }

  private codes(lit: Code, dist: Code): void {
    const out = this.out;
    for (;;) {
      if (this.op >= FLUSH_AT) this.flush();
      const sym = this.decode(lit);
      if (sym < 256) out[this.op++] = sym;
      else if (sym === 256) return;
      else {
        const li = sym - 257;
        if (li >= 29) throw new Damaged(`invalid length symbol ${sym}`);
        const len = LEN_BASE[li]! + this.bits(LEN_EXTRA[li]!);
        const di = this.decode(dist);
        if (di >= 30) throw new Damaged(`invalid distance symbol ${di}`);
        const d = DIST_BASE[di]! + this.bits(DIST_EXTRA[di]!);
        if (d > this.op) throw new Damaged(`distance ${d} reaches before the start of the data`);
        let from = this.op - d;
        for (let i = 0; i < len; i++) out[this.op++] = out[from++]!;
      }
    }
  }

  private dynamic(): { lit: Code; dist: Code } {
    const nlen = this.bits(5) + 257;
    const ndist = this.bits(5) + 1;
    const ncode = this.bits(4) + 4;
    if (nlen > 286 || ndist > 30) throw new Damaged("bad code counts in a dynamic block");
    const lengths = new Uint8Array(320);
    for (let i = 0; i < ncode; i++) lengths[CLEN_ORDER[i]!] = this.bits(3);
    const lencode = buildCode(lengths, 19);
    if (lencode.left !== 0) throw new Damaged("incomplete code-length code");
    lengths.fill(0);
    for (let i = 0; i < nlen + ndist; ) {
      const sym = this.decode(lencode.code);
      if (sym < 16) lengths[i++] = sym;
      else {
        let len = 0;
        let rep: number;
        if (sym === 16) {
          if (i === 0) throw new Damaged("repeat with no previous length");
          len = lengths[i - 1]!;
          rep = 3 + this.bits(2);
        } else if (sym === 17) rep = 3 + this.bits(3);
        else rep = 11 + this.bits(7);
        if (i + rep > nlen + ndist) throw new Damaged("code lengths run past their count");
        while (rep--) lengths[i++] = len;
      }
    }
    if (lengths[256] === 0) throw new Damaged("no end-of-block code");
    const lit = buildCode(lengths, nlen);
    if (lit.left < 0 || (lit.left > 0 && nlen - lit.code.counts[0]! !== 1))
      throw new Damaged("bad literal/length code");
    const dist = buildCode(lengths.subarray(nlen), ndist);
    if (dist.left < 0 || (dist.left > 0 && ndist - dist.code.counts[0]! !== 1))
      throw new Damaged("bad distance code");
    return { lit: lit.code, dist: dist.code };
  }

  run(): void {
    let last: number;
    do {
      last = this.bits(1);
      const type = this.bits(2);
      if (type === 0) this.stored();
      else if (type === 1) {
        const f = fixedCodes();
        this.codes(f.lit, f.dist);
      } else if (type === 2) {
        const d = this.dynamic();
        this.codes(d.lit, d.dist);
      } else throw new Damaged("invalid block type 3");
    } while (!last);
    this.flush();
  }
}

/**
 * Where the deflate data of the gzip member at the start of `buf` begins (RFC 1952: the fixed 10
 * bytes, then the optional extra field, name, comment and header CRC its flags announce).
 */
export function gzipHeaderEnd(buf: Uint8Array): number {
  const flg = buf[3]!;
  let p = 10;
  if (flg & 4) p += 2 + (buf[p]! | (buf[p + 1]! << 8));
  if (flg & 8) while (p < buf.length && buf[p++] !== 0);
  if (flg & 16) while (p < buf.length && buf[p++] !== 0);
  if (flg & 2) p += 2;
  return p;
}

/**
 * Decodes the gzip member at the start of `buf` only to verify it, as the kernel's decompressor
 * would: every block, then the CRC32 and size (mod 2^32) in its trailer. Returns the decoded size
 * and the member's length in bytes. Memory stays at about 1 MiB whatever the data decodes to;
 * past `limit` decoded bytes it stops with an error.
 */
export function verifyGzip(
  buf: Uint8Array,
  what = "gzip data",
  limit = GZIP_VERIFY_LIMIT,
): { size: number; length: number } {
  if (buf.length < 18 || buf[0] !== 0x1f || buf[1] !== 0x8b)
    throw formatError(what, "damaged gzip data (no gzip header)");
  if (buf[2] !== 8) throw formatError(what, `damaged gzip data (compression method ${buf[2]}, not deflate)`);
  const v = new Verifier(buf, gzipHeaderEnd(buf), limit);
  try {
    v.run();
  } catch (err) {
    if (err instanceof Damaged) throw formatError(what, `damaged gzip data (${err.message})`);
    throw err;
  }
  const length = v.end + 8;
  if (length > buf.length)
    throw formatError(what, "damaged gzip data (cut short: no CRC32 and size trailer)");
  const dv = new DataView(buf.buffer, buf.byteOffset + length - 8, 8);
  const crc = dv.getUint32(0, true);
  const isize = dv.getUint32(4, true);
  if (v.crc !== crc)
    throw formatError(
      what,
      `damaged gzip data (CRC32 0x${v.crc.toString(16)} of the data, 0x${crc.toString(16)} in the trailer)`,
    );
  if (v.total % 2 ** 32 !== isize)
    throw formatError(what, `damaged gzip data (${v.total} bytes decoded, ${isize} in the trailer)`);
  return { size: v.total, length };
}
