// Splits an initramfs buffer the way the kernel reads it:
//   initramfs := ("\0" | cpio_archive | compressed(cpio_archive))*
// gzip members are decoded with node:zlib; other compressed members are named and skipped over
// only when they are last (their length cannot be known without decoding them).
import { inflateRawSync } from "node:zlib";
import { formatError } from "../errors.js";
import { type Compression, detectCompression } from "./compress.js";
import { type CpioListEntry, readCpio } from "./cpio.js";

export interface InitramfsMember {
  offset: number;
  length: number;
  compression: Compression | "none";
  entries?: CpioListEntry[];
  /** Decompressed size, when decoded. */
  size?: number;
}

/** Decodes one gzip member at the start of `buf`; returns its data and its compressed length. */
export function gunzipMember(buf: Uint8Array, what = "gzip member"): { data: Buffer; length: number } {
  if (buf.length < 18 || buf[0] !== 0x1f || buf[1] !== 0x8b || buf[2] !== 8)
    throw formatError(what, "not a gzip member");
  const flg = buf[3]!;
  let p = 10;
  if (flg & 4) p += 2 + (buf[p]! | (buf[p + 1]! << 8));
  if (flg & 8) while (p < buf.length && buf[p++] !== 0);
  if (flg & 16) while (p < buf.length && buf[p++] !== 0);
  if (flg & 2) p += 2;
  let r: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    r = inflateRawSync(buf.subarray(p), { info: true }) as unknown as typeof r;
  } catch (err) {
    throw formatError(what, `damaged gzip data (${(err as Error).message})`);
  }
  const length = p + r.engine.bytesWritten + 8;
  if (length > buf.length) throw formatError(what, "gzip member cut short (no CRC32/ISIZE trailer)");
  return { data: r.buffer, length };
}

export function splitInitramfs(buf: Uint8Array, what = "initramfs"): InitramfsMember[] {
  const out: InitramfsMember[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) {
      pos++;
      continue;
    }
    const rest = buf.subarray(pos);
    const comp = detectCompression(rest);
    if (comp === "gzip") {
      const { data, length } = gunzipMember(rest, `${what} at offset ${pos}`);
      const inner = `${what}: gzip member at offset ${pos}`;
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
      out.push({ offset: pos, length, compression: "gzip", entries, size: data.length });
      pos += length;
    } else if (comp) {
      out.push({ offset: pos, length: rest.length, compression: comp });
      break;
    } else {
      const { entries, end } = readCpio(rest, `${what} at offset ${pos}`);
      if (end === 0) throw formatError(what, `offset ${pos}: neither a cpio archive nor a compressed one`);
      out.push({ offset: pos, length: end, compression: "none", entries, size: end });
      pos += end;
    }
  }
  return out;
}
