// Splits an initramfs buffer the way the kernel reads it:
//   initramfs := ("\0" | cpio_archive | compressed(cpio_archive))*
// where a cpio archive starts on a 4-byte boundary and is newc ("070701") or crc ("070702").
// gzip members are decoded with node:zlib and LZ4 legacy ones by our own decoder; a zstd frame is
// walked block by block (its end and truncation need no decoding). Other compressed members, and
// the contents of zstd frames, are decoded only by a caller-supplied decoder (`bootcfg check` runs
// the Debian tool when it is installed); otherwise they are named and marked unverified. Members
// whose end cannot be found without decoding them (xz, lzma, bzip2, lzo, LZ4 legacy) are taken
// to run to the end of the buffer.
import { crc32, inflateRawSync } from "node:zlib";
import { formatError } from "../errors.js";
import { type Compression, detectCompression, lz4LegacyDecode } from "./compress.js";
import { type CpioListEntry, readCpio } from "./cpio.js";
import { gzipHeaderEnd } from "./inflate.js";

export interface InitramfsMember {
  offset: number;
  length: number;
  compression: Compression | "none";
  entries?: CpioListEntry[];
  /** Decompressed size, when decoded. */
  size?: number;
  /** Why the member's contents were not read (no decoder for its compression). */
  unverified?: string;
}

/**
 * Decodes a whole compressed member bootcfg has no decoder for. Returns undefined when no decoder
 * is available (with the reason), throws when the data does not decompress.
 */
export type ExternalDecoder = (
  kind: Compression,
  data: Uint8Array,
  what: string,
) => { data: Uint8Array } | { missing: string };

export interface SplitOptions {
  decode?: ExternalDecoder;
}

/** Decodes one gzip member at the start of `buf`; returns its data and its compressed length. */
export function gunzipMember(buf: Uint8Array, what = "gzip member"): { data: Buffer; length: number } {
  if (buf.length < 18 || buf[0] !== 0x1f || buf[1] !== 0x8b || buf[2] !== 8)
    throw formatError(what, "not a gzip member");
  const p = gzipHeaderEnd(buf);
  let r: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    r = inflateRawSync(buf.subarray(p), { info: true }) as unknown as typeof r;
  } catch (err) {
    throw formatError(what, `damaged gzip data (${(err as Error).message})`);
  }
  const length = p + r.engine.bytesWritten + 8;
  if (length > buf.length) throw formatError(what, "gzip member cut short (no CRC32/ISIZE trailer)");
  // The trailer, as the kernel checks it: CRC32 and size (mod 2^32) of the decoded data.
  const dv = new DataView(buf.buffer, buf.byteOffset + length - 8, 8);
  const [crc, isize] = [dv.getUint32(0, true), dv.getUint32(4, true)];
  if (crc32(r.buffer) !== crc)
    throw formatError(
      what,
      `damaged gzip data (CRC32 0x${crc32(r.buffer).toString(16)} of the data, 0x${crc.toString(16)} in the trailer)`,
    );
  if (r.buffer.length % 2 ** 32 !== isize)
    throw formatError(what, `damaged gzip data (${r.buffer.length} bytes decoded, ${isize} in the trailer)`);
  return { data: r.buffer, length };
}

/**
 * Length of the zstd frame (or skippable frame) at the start of `buf`, found from its block
 * headers without decoding; throws when the frame is cut short or has a reserved block type.
 */
export function zstdFrameLength(buf: Uint8Array, what = "zstd frame"): number {
  const u32 = (at: number) =>
    (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0;
  const cut = (where: string) =>
    formatError(what, `zstd frame cut short (${where}; the file ends at byte ${buf.length} of the member)`);
  if (buf.length < 8) throw cut("in its header");
  const magic = u32(0);
  if ((magic & 0xfffffff0) === 0x184d2a50) {
    const end = 8 + u32(4);
    if (end > buf.length) throw cut("in a skippable frame");
    return end;
  }
  const fhd = buf[4]!;
  if (fhd & 0x08) throw formatError(what, "zstd frame header has its reserved bit set");
  const single = (fhd >> 5) & 1;
  const fcsSize = [single, 2, 4, 8][fhd >> 6]!;
  let p = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]! + fcsSize;
  for (;;) {
    if (p + 3 > buf.length) throw cut(`at the block header at offset ${p}`);
    const bh = buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16);
    const type = (bh >> 1) & 3;
    if (type === 3)
      throw formatError(what, `zstd block at offset ${p} has the reserved type 3 (damaged data)`);
    const size = type === 1 ? 1 : bh >>> 3;
    p += 3 + size;
    if (p > buf.length) throw cut(`in the block at offset ${p - size - 3}`);
    if (bh & 1) break;
  }
  if (fhd & 0x04) p += 4;
  if (p > buf.length) throw cut("in its content checksum");
  return p;
}

/** Reads a decoded member: one or more cpio archives, with nothing but NULs after them. */
function readMember(data: Uint8Array, inner: string): { entries: CpioListEntry[] } {
  const { entries, end } = readCpio(data, inner);
  // The kernel refuses anything inside a compressed member that is not cpio (or NUL padding).
  const junk = data.subarray(end).findIndex((b) => b !== 0);
  if (junk >= 0)
    throw formatError(
      inner,
      end === 0
        ? "does not hold a cpio archive"
        : `${data.length - end - junk} bytes after the archive are not cpio (at offset ${end + junk})`,
    );
  return { entries };
}

export function splitInitramfs(
  buf: Uint8Array,
  what = "initramfs",
  opts: SplitOptions = {},
): InitramfsMember[] {
  const out: InitramfsMember[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) {
      pos++;
      continue;
    }
    const rest = buf.subarray(pos);
    const comp = detectCompression(rest);
    const inner = `${what}: ${comp} member at offset ${pos}`;
    if (buf[pos] === 0x30 /* "0" */) {
      // The kernel reads a cpio header only on a 4-byte boundary; elsewhere "0" is no known magic.
      if (pos & 3)
        throw formatError(
          what,
          `offset ${pos}: a cpio archive must start on a 4-byte boundary (pad what comes before it with NULs)`,
        );
      if (Buffer.from(rest.subarray(0, 6)).toString("latin1") === "070707")
        throw formatError(
          what,
          `offset ${pos}: old portable (odc, "070707") cpio archive; the kernel reads only newc ("070701") and crc ("070702"): write it with cpio -H newc`,
        );
      const { entries, end } = readCpio(rest, `${what} at offset ${pos}`);
      if (end === 0)
        throw formatError(what, `offset ${pos}: bad cpio magic "${printable(rest.subarray(0, 6))}"`);
      out.push({ offset: pos, length: end, compression: "none", entries, size: end });
      pos += end;
    } else if ((buf[pos] === 0xc7 && buf[pos + 1] === 0x71) || (buf[pos] === 0x71 && buf[pos + 1] === 0xc7)) {
      throw formatError(
        what,
        `offset ${pos}: old binary cpio archive; the kernel reads only newc ("070701") and crc ("070702"): write it with cpio -H newc`,
      );
    } else if (comp === "gzip") {
      const { data, length } = gunzipMember(rest, `${what} at offset ${pos}`);
      const { entries } = readMember(data, inner);
      out.push({ offset: pos, length, compression: "gzip", entries, size: data.length });
      pos += length;
    } else if (comp === "lz4") {
      throw formatError(
        what,
        `offset ${pos}: LZ4 frame format; the kernel decodes only the legacy LZ4 format (lz4 -l)`,
      );
    } else if (comp === "lz4-legacy") {
      const data = lz4LegacyDecode(rest, inner);
      const { entries } = readMember(data, inner);
      out.push({ offset: pos, length: rest.length, compression: comp, entries, size: data.length });
      break;
    } else if (comp) {
      // zstd: one frame per member (the kernel's decoder stops after it); others run to the end
      const length = comp === "zstd" ? zstdFrameLength(rest, inner) : rest.length;
      const member: InitramfsMember = { offset: pos, length, compression: comp };
      const decoded = opts.decode?.(comp, rest.subarray(0, length), inner);
      if (!decoded) member.unverified = `${comp} is not decoded by bootcfg itself`;
      else if ("missing" in decoded) member.unverified = decoded.missing;
      else {
        member.entries = readMember(decoded.data, inner).entries;
        member.size = decoded.data.length;
      }
      out.push(member);
      pos += length;
    } else {
      throw formatError(
        what,
        `offset ${pos}: neither a cpio archive nor compressed data the kernel knows (bytes ${Buffer.from(rest.subarray(0, 4)).toString("hex")})`,
      );
    }
  }
  return out;
}

function printable(b: Uint8Array): string {
  return Buffer.from(b)
    .toString("latin1")
    .replace(/[^\x20-\x7e]/g, ".");
}
