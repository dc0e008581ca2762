// Compression wrappers found in kernels and initramfs images: recognised by magic; gzip is
// decoded with node:zlib, the kernel's LZ4 legacy format by the decoder below. Other formats are
// recognised and named, so callers can say which external tool would decode them.
import { spawnSync } from "node:child_process";
import { gunzipSync } from "node:zlib";
import { formatError } from "../errors.js";
import { startsWith } from "../util.js";
import { GZIP_VERIFY_LIMIT } from "./inflate.js";

export type Compression = "gzip" | "xz" | "zstd" | "lz4-legacy" | "lz4" | "lzma" | "bzip2" | "lzo";

const MAGICS: ReadonlyArray<[Compression, readonly number[]]> = [
  ["gzip", [0x1f, 0x8b]],
  ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["zstd", [0x28, 0xb5, 0x2f, 0xfd]],
  ["lz4-legacy", [0x02, 0x21, 0x4c, 0x18]],
  ["lz4", [0x04, 0x22, 0x4d, 0x18]],
  ["bzip2", [0x42, 0x5a, 0x68]],
  ["lzo", [0x89, 0x4c, 0x5a, 0x4f]],
  ["lzma", [0x5d, 0x00, 0x00]],
];

/** Names the compression of `buf` from its first bytes, or undefined. */
export function detectCompression(buf: Uint8Array, at = 0): Compression | undefined {
  for (const [name, magic] of MAGICS) if (startsWith(buf, magic, at)) return name;
  return undefined;
}

/** The Debian/upstream tool that decodes a format we do not decode ourselves. */
export const EXTERNAL_DECODER: Record<Compression, string> = {
  gzip: "gzip -dc",
  xz: "xz -dc",
  zstd: "zstd -dc",
  "lz4-legacy": "lz4 -dc",
  lz4: "lz4 -dc",
  lzma: "lzma -dc",
  bzip2: "bzip2 -dc",
  lzo: "lzop -dc",
};

/** The Debian package that installs each tool of EXTERNAL_DECODER. */
export const DECODER_PACKAGE: Record<Compression, string> = {
  gzip: "gzip",
  xz: "xz-utils",
  zstd: "zstd",
  "lz4-legacy": "lz4",
  lz4: "lz4",
  lzma: "xz-utils",
  bzip2: "bzip2",
  lzo: "lzop",
};

/**
 * Decodes `data` with the format's own tool (EXTERNAL_DECODER), when it is installed: returns the
 * decoded bytes, or `missing` naming the tool and its Debian package; throws when the tool says
 * the data is damaged (its first line of complaint is quoted).
 */
export function decodeWithTool(
  kind: Compression,
  data: Uint8Array,
  what = "input",
): { data: Uint8Array } | { missing: string } {
  const [tool, ...args] = EXTERNAL_DECODER[kind].split(" ") as [string, ...string[]];
  const r = spawnSync(tool, args, { input: data, maxBuffer: 2 ** 32 - 1 });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT")
    return { missing: `${tool} is not installed (Debian package ${DECODER_PACKAGE[kind]})` };
  if (r.error) throw formatError(what, `${tool} could not decode it (${r.error.message})`);
  if (r.status !== 0) {
    const why = r.stderr
      .toString("utf8")
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l !== "");
    throw formatError(what, `does not decompress (${tool}: ${why ?? `exit status ${r.status ?? r.signal}`})`);
  }
  return { data: r.stdout };
}

/** Decompresses gzip or LZ4-legacy; other formats raise an error naming the tool to use. */
export function decompress(buf: Uint8Array, what = "input"): Uint8Array {
  const kind = detectCompression(buf);
  if (kind === "gzip") {
    try {
      return gunzipSync(buf, { maxOutputLength: GZIP_VERIFY_LIMIT });
    } catch (err) {
      throw formatError(what, `damaged gzip data (${(err as Error).message})`);
    }
  }
  if (kind === "lz4-legacy") return lz4LegacyDecode(buf, what);
  if (kind === undefined) throw formatError(what, "not compressed in a known format");
  throw formatError(what, `${kind} is not decoded by bootcfg; decode it with \`${EXTERNAL_DECODER[kind]}\``);
}

const LZ4_LEGACY_MAGIC = 0x184c2102;
const LZ4_LEGACY_BLOCK = 8 << 20;

/**
 * Decodes an LZ4 legacy stream (`lz4 -l`, the kernel's CONFIG_KERNEL_LZ4 format): a 4-byte magic
 * then blocks of `u32le compressed size` + LZ4 block, each decoding to at most 8 MiB. Stops at
 * the end of input or at a size that cannot be a block (the kernel appends its decompressed size
 * as 4 trailing bytes). `expectedSize`, when known, sizes the output exactly.
 */
export function lz4LegacyDecode(src: Uint8Array, what = "lz4 stream", expectedSize?: number): Uint8Array {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  if (src.length < 4 || dv.getUint32(0, true) !== LZ4_LEGACY_MAGIC)
    throw formatError(what, "no LZ4 legacy magic");
  let out = new Uint8Array(expectedSize ?? Math.max(src.length * 4, 1 << 20));
  let op = 0;
  let ip = 4;
  while (ip + 4 <= src.length) {
    const size = dv.getUint32(ip, true);
    if (size === LZ4_LEGACY_MAGIC) {
      ip += 4;
      continue;
    }
    if (size === 0 || size > src.length - ip - 4) break; // trailer or end
    ip += 4;
    if (expectedSize === undefined && out.length - op < LZ4_LEGACY_BLOCK) {
      const bigger = new Uint8Array(Math.max(out.length * 2, op + LZ4_LEGACY_BLOCK));
      bigger.set(out.subarray(0, op));
      out = bigger;
    }
    op = lz4BlockDecode(src, ip, ip + size, out, op, what);
    ip += size;
  }
  return op === out.length ? out : out.slice(0, op);
}

/** Decodes one LZ4 block from src[ip, end) into dst at op; returns the new output position. */
export function lz4BlockDecode(
  src: Uint8Array,
  ip: number,
  end: number,
  dst: Uint8Array,
  op: number,
  what = "lz4 block",
): number {
  while (ip < end) {
    const token = src[ip++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (ip >= end) throw formatError(what, "truncated literal length");
        b = src[ip++]!;
        lit += b;
      } while (b === 255);
    }
    if (ip + lit > end) throw formatError(what, "literal run past the end of the block");
    if (op + lit > dst.length) throw formatError(what, "output larger than the declared size");
    dst.set(src.subarray(ip, ip + lit), op);
    ip += lit;
    op += lit;
    if (ip >= end) break; // last sequence has literals only
    if (ip + 2 > end) throw formatError(what, "truncated match offset");
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) throw formatError(what, `bad match offset ${offset}`);
    let len = (token & 15) + 4;
    if ((token & 15) === 15) {
      let b: number;
      do {
        if (ip >= end) throw formatError(what, "truncated match length");
        b = src[ip++]!;
        len += b;
      } while (b === 255);
    }
    if (op + len > dst.length) throw formatError(what, "output larger than the declared size");
    let from = op - offset;
    if (offset >= len) {
      dst.copyWithin(op, from, from + len);
      op += len;
    } else {
      // overlapping copy: repeat the last `offset` bytes
      const stop = op + len;
      while (op < stop) dst[op++] = dst[from++]!;
    }
  }
  return op;
}
