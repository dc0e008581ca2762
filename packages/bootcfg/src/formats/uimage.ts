// Legacy U-Boot image: a 64-byte big-endian header, CRC32 of header and data.
import { crc32 } from "node:zlib";
import { BootcfgError, formatError } from "../errors.js";
import { cstring, view } from "../util.js";

export const UIMAGE_MAGIC = 0x27051956;
/** U-Boot's IH_ARCH_* codes (include/image.h). */
const ARCH: Record<number, string> = {
  2: "arm",
  3: "i386",
  7: "ppc",
  9: "sh",
  22: "arm64",
  24: "x86_64",
  26: "riscv",
};
const TYPE: Record<number, string> = {
  1: "standalone",
  2: "kernel",
  3: "ramdisk",
  4: "multi",
  5: "firmware",
  6: "script",
  8: "flat_dt",
};
const COMP: Record<number, string> = {
  0: "none",
  1: "gzip",
  2: "bzip2",
  3: "lzma",
  4: "lzo",
  5: "lz4",
  6: "zstd",
};
const OS: Record<number, string> = { 5: "linux", 17: "u-boot" };

export interface UImageInfo {
  format: "uimage";
  headerCrc: number;
  headerCrcOk: boolean;
  time: number;
  /** The data size the header gives (the file is 64 bytes more when whole). */
  dataSize: number;
  load: number;
  entry: number;
  dataCrc: number;
  dataCrcOk: boolean;
  os: string;
  arch: string;
  type: string;
  compression: string;
  name: string;
}

export function isUImage(buf: Uint8Array): boolean {
  return buf.length >= 64 && view(buf).getUint32(0, false) === UIMAGE_MAGIC;
}

export function parseUImage(buf: Uint8Array, what = "uImage"): UImageInfo {
  if (!isUImage(buf)) throw formatError(what, "no uImage magic 0x27051956");
  const dv = view(buf);
  const hdr = Buffer.from(buf.subarray(0, 64));
  hdr.writeUInt32BE(0, 4);
  const size = dv.getUint32(12, false);
  const data = buf.subarray(64, 64 + size);
  return {
    format: "uimage",
    headerCrc: dv.getUint32(4, false),
    headerCrcOk: crc32(hdr) === dv.getUint32(4, false),
    time: dv.getUint32(8, false),
    dataSize: size,
    load: dv.getUint32(16, false),
    entry: dv.getUint32(20, false),
    dataCrc: dv.getUint32(24, false),
    dataCrcOk: data.length === size && crc32(data) === dv.getUint32(24, false),
    os: OS[buf[28]!] ?? `os ${buf[28]}`,
    arch: ARCH[buf[29]!] ?? `arch ${buf[29]}`,
    type: TYPE[buf[30]!] ?? `type ${buf[30]}`,
    compression: COMP[buf[31]!] ?? `comp ${buf[31]}`,
    name: cstring(buf, 32, 32),
  };
}

/**
 * What makes a uImage unbootable (U-Boot's bootm refuses it: "Bad Header Checksum", "Bad Data
 * CRC"), or undefined when both CRCs hold. The same words for inspect, check and plans.
 */
export function uimageProblem(i: UImageInfo, fileSize: number): string | undefined {
  if (!i.headerCrcOk) return "uImage header CRC mismatch (file damaged?)";
  if (fileSize < 64 + i.dataSize)
    return `uImage data is cut short: the header says ${i.dataSize} bytes, the file holds ${fileSize - 64} (truncated?)`;
  if (!i.dataCrcOk) return "uImage data CRC mismatch (file damaged?)";
  return undefined;
}

export interface UImageOptions {
  arch: "arm" | "arm64" | "riscv" | "x86_64" | "i386" | "ppc";
  type?: "kernel" | "ramdisk";
  load: number;
  entry: number;
  name: string;
  /** Seconds since the epoch; 0 (the default) keeps output reproducible. */
  time?: number;
}

/** Wraps `data` (uncompressed) in a legacy uImage header. */
export function writeUImage(data: Uint8Array, opts: UImageOptions): Buffer {
  for (const [what, v] of [
    ["load", opts.load],
    ["entry", opts.entry],
  ] as const)
    if (!(Number.isInteger(v) && v >= 0 && v <= 0xffffffff))
      throw new BootcfgError(
        "EUSAGE",
        `uImage ${what} address ${Number.isFinite(v) ? `0x${v.toString(16)}` : v} does not fit the header's 32 bits`,
      );
  const out = Buffer.alloc(64 + data.length);
  const code = (table: Record<number, string>, name: string) =>
    Number(Object.entries(table).find(([, v]) => v === name)![0]);
  out.writeUInt32BE(UIMAGE_MAGIC, 0);
  out.writeUInt32BE(opts.time ?? 0, 8);
  out.writeUInt32BE(data.length, 12);
  out.writeUInt32BE(opts.load, 16);
  out.writeUInt32BE(opts.entry, 20);
  out.writeUInt32BE(crc32(data), 24);
  out[28] = 5;
  out[29] = code(ARCH, opts.arch);
  out[30] = code(TYPE, opts.type ?? "kernel");
  out[31] = 0;
  out.write(opts.name.slice(0, 31), 32, "latin1");
  out.set(data, 64);
  out.writeUInt32BE(crc32(out.subarray(0, 64)), 4);
  return out;
}
