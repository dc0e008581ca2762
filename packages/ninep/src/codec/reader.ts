// Bounds-checked little-endian cursor over one frame: every read checks the end and throws one ProtocolError.

import { isUtf8 } from "node:buffer";
import { ProtocolError, type ProtocolErrorReason } from "../errors.js";
import type { Qid } from "./types.js";
import { readU64 } from "./u64.js";

/**
 * Reads 9P fields from `buf` between `pos` and `end`. A read past `end` throws
 * `ProtocolError(reason)` ("truncated" for a message body, "bad-stat" while inside a stat entry),
 * so no decoder ever touches bytes outside its frame. Strings must be valid UTF-8 without NUL
 * ("bad-string"). `bytes()` returns a view of the frame, not a copy.
 */
export class Reader {
  buf: Buffer;
  pos: number;
  end: number;
  /** Message type, for error reports. */
  msgType: number | undefined;
  /** Reason reported when a field runs past `end`. */
  reason: ProtocolErrorReason = "truncated";

  constructor(buf: Buffer, pos = 0, end = buf.length, msgType?: number) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
    this.msgType = msgType;
  }

  /** Bytes left before `end`. */
  get left(): number {
    return this.end - this.pos;
  }

  fail(reason: ProtocolErrorReason, message: string): never {
    throw new ProtocolError(reason, `${typeName(this.msgType)}${message}`, this.msgType);
  }

  overrun(n: number): never {
    return this.fail(
      this.reason,
      `field of ${n} bytes at offset ${this.pos} runs past the end (${this.end})`,
    );
  }

  /** Throws unless `n` more bytes are available. */
  need(n: number): void {
    if (this.pos + n > this.end) this.overrun(n);
  }

  u8(): number {
    const p = this.pos;
    if (p + 1 > this.end) this.overrun(1);
    this.pos = p + 1;
    return this.buf[p] as number;
  }

  u16(): number {
    const p = this.pos;
    if (p + 2 > this.end) this.overrun(2);
    this.pos = p + 2;
    const b = this.buf;
    return (b[p] as number) | ((b[p + 1] as number) << 8);
  }

  u32(): number {
    const p = this.pos;
    if (p + 4 > this.end) this.overrun(4);
    this.pos = p + 4;
    const b = this.buf;
    return (
      ((b[p] as number) | ((b[p + 1] as number) << 8) | ((b[p + 2] as number) << 16)) +
      (b[p + 3] as number) * 0x1000000
    );
  }

  u64(): bigint {
    const p = this.pos;
    if (p + 8 > this.end) this.overrun(8);
    this.pos = p + 8;
    return readU64(this.buf, p);
  }

  /** A `[s]` string: u16 byte count then UTF-8 without NUL. */
  str(): string {
    const n = this.u16();
    if (n === 0) return "";
    const p = this.pos;
    const e = p + n;
    if (e > this.end) {
      this.pos = p - 2;
      this.overrun(n + 2);
    }
    const b = this.buf;
    let ascii = true;
    let h = n;
    for (let i = p; i < e; i++) {
      const c = b[i] as number;
      if (c === 0) this.fail("bad-string", `NUL byte inside a string at offset ${i}`);
      if (c > 0x7f) ascii = false;
      h = (Math.imul(h, 31) + c) | 0;
    }
    this.pos = e;
    if (ascii) {
      if (n > CACHE_MAX_LEN) return b.toString("latin1", p, e);
      // Short ASCII strings (names, uids) repeat a lot: reuse the string made last time.
      const slot = h & (CACHE_SIZE - 1);
      const hit = cache[slot];
      if (hit !== undefined && hit.length === n) {
        let i = 0;
        while (i < n && hit.charCodeAt(i) === b[p + i]) i++;
        if (i === n) return hit;
      }
      const made = b.toString("latin1", p, e);
      cache[slot] = made;
      return made;
    }
    if (!isUtf8(b.subarray(p, e))) {
      this.pos = p - 2;
      this.fail("bad-string", `string at offset ${p - 2} is not valid UTF-8`);
    }
    return b.toString("utf8", p, e);
  }

  qid(): Qid {
    const p = this.pos;
    if (p + 13 > this.end) this.overrun(13);
    this.pos = p + 13;
    const b = this.buf;
    return {
      type: b[p] as number,
      version:
        ((b[p + 1] as number) | ((b[p + 2] as number) << 8) | ((b[p + 3] as number) << 16)) +
        (b[p + 4] as number) * 0x1000000,
      path: readU64(b, p + 5),
    };
  }

  /** `n` bytes as a view into the frame (no copy). */
  bytes(n: number): Buffer {
    const p = this.pos;
    if (p + n > this.end) this.overrun(n);
    this.pos = p + n;
    return this.buf.subarray(p, p + n);
  }
}

const CACHE_SIZE = 1024;
const CACHE_MAX_LEN = 32;
const cache: (string | undefined)[] = new Array(CACHE_SIZE).fill(undefined);

function typeName(t: number | undefined): string {
  return t === undefined ? "" : `type ${t}: `;
}

/** A Buffer view over any Uint8Array, without copying. */
export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
