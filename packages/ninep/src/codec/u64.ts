// Fast 8-byte little-endian access through a shared BigUint64Array (several times faster than
// Buffer's read/writeBigUInt64LE for single values); falls back to Buffer on big-endian hosts.

const scratch = new BigUint64Array(1);
const bytes = new Uint8Array(scratch.buffer);
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reads a u64 at p (the caller checked bounds). */
export function readU64(b: Uint8Array, p: number): bigint {
  if (!LITTLE) return Buffer.from(b.buffer, b.byteOffset, b.byteLength).readBigUInt64LE(p);
  bytes[0] = b[p] as number;
  bytes[1] = b[p + 1] as number;
  bytes[2] = b[p + 2] as number;
  bytes[3] = b[p + 3] as number;
  bytes[4] = b[p + 4] as number;
  bytes[5] = b[p + 5] as number;
  bytes[6] = b[p + 6] as number;
  bytes[7] = b[p + 7] as number;
  return scratch[0] as bigint;
}

/** Writes a u64 at p (the caller checked the range 0 ≤ v < 2^64). */
export function writeU64(b: Uint8Array, p: number, v: bigint): void {
  if (!LITTLE) {
    Buffer.from(b.buffer, b.byteOffset, b.byteLength).writeBigUInt64LE(v, p);
    return;
  }
  scratch[0] = v;
  b[p] = bytes[0] as number;
  b[p + 1] = bytes[1] as number;
  b[p + 2] = bytes[2] as number;
  b[p + 3] = bytes[3] as number;
  b[p + 4] = bytes[4] as number;
  b[p + 5] = bytes[5] as number;
  b[p + 6] = bytes[6] as number;
  b[p + 7] = bytes[7] as number;
}
