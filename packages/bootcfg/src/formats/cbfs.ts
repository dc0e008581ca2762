// coreboot CBFS files and SELF payloads (coreboot commonlib cbfs_serialized.h). Big-endian.
import { formatError } from "../errors.js";
import { align, cstring, hex, view } from "../util.js";
import { type ElfInfo, loadSegments, PF_X, parseElf } from "./elf.js";

export const CBFS_MAGIC = "LARCHIVE";
export const CBFS_ALIGN = 64;
export const CBFS_TYPE: Record<number, string> = {
  32: "simple elf",
  33: "fit",
  16: "stage",
  17: "stage",
  80: "raw",
  48: "optionrom",
  64: "bootsplash",
  170: "cmos_default",
  426: "cmos_layout",
  4294967295: "null",
  0: "deleted",
};
export const CBFS_TYPE_SELF = 0x20;
export const CBFS_TYPE_NULL = 0xffffffff;
const COMPRESSION = ["none", "LZMA", "LZ4"];

export const SEG = {
  CODE: 0x434f4445,
  DATA: 0x44415441,
  BSS: 0x42535320,
  PARA: 0x50415241,
  ENTR: 0x454e5452,
} as const;
const SEG_NAME: Record<number, SelfSegment["type"]> = {
  [SEG.CODE]: "code",
  [SEG.DATA]: "data",
  [SEG.BSS]: "bss",
  [SEG.PARA]: "params",
  [SEG.ENTR]: "entry",
};

export interface SelfSegment {
  type: "code" | "data" | "bss" | "params" | "entry";
  compression: string;
  /** Offset of the segment data from the start of the payload. */
  offset: number;
  load: bigint;
  len: number;
  memLen: number;
}

export interface CbfsFile {
  /** Offset of the file header in the image. */
  offset: number;
  name: string;
  type: number;
  typeName: string;
  /** Offset of the data from the file header. */
  dataOffset: number;
  len: number;
  compression: string;
  segments?: SelfSegment[];
}

export interface CbfsInfo {
  format: "cbfs";
  size: number;
  files: CbfsFile[];
}

/** Parses a SELF payload's segment table (up to and including ENTR). */
export function parseSelf(buf: Uint8Array, what = "SELF payload"): SelfSegment[] {
  const dv = view(buf);
  const segs: SelfSegment[] = [];
  for (let o = 0; o + 28 <= buf.length; o += 28) {
    const type = SEG_NAME[dv.getUint32(o, false)];
    if (!type)
      throw formatError(what, `unknown segment type 0x${dv.getUint32(o, false).toString(16)} at offset ${o}`);
    const seg: SelfSegment = {
      type,
      compression: COMPRESSION[dv.getUint32(o + 4, false)] ?? `comp ${dv.getUint32(o + 4, false)}`,
      offset: dv.getUint32(o + 8, false),
      load: dv.getBigUint64(o + 12, false),
      len: dv.getUint32(o + 20, false),
      memLen: dv.getUint32(o + 24, false),
    };
    // A loader copies `len` bytes from `offset` and clears up to `memLen`: both must hold.
    const n = segs.length;
    if ((type === "code" || type === "data" || type === "params") && seg.offset + seg.len > buf.length)
      throw formatError(
        what,
        `segment ${n} (${type}) has ${seg.len} bytes at offset 0x${seg.offset.toString(16)}, past the end of the ${buf.length}-byte payload (damaged or truncated)`,
      );
    if ((type === "code" || type === "data") && seg.compression === "none" && seg.len > seg.memLen)
      throw formatError(
        what,
        `segment ${n} (${type}) has ${seg.len} bytes of data but a memory length of ${seg.memLen}`,
      );
    // no compressed stream is empty: Debian's cbfstool 4.15 writes such segments (and exits 0)
    // when its LZMA encoder fails ("LzmaEnc_Encode failed 9"), dropping the data
    if ((type === "code" || type === "data") && seg.compression !== "none" && seg.len === 0 && seg.memLen > 0)
      throw formatError(
        what,
        `segment ${n} (${type}, ${seg.compression}) holds 0 bytes for ${seg.memLen} bytes of memory: its data was lost (a failed \`cbfstool add-payload -c lzma\`? use -c none)`,
      );
    segs.push(seg);
    if (type === "entry") return segs;
  }
  throw formatError(what, "no ENTR segment");
}

export function isCbfs(buf: Uint8Array): boolean {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).indexOf(CBFS_MAGIC, 0, "latin1") >= 0;
}

/** Finds every CBFS file in an image (a flat CBFS or a ROM with CBFS regions). */
export function parseCbfs(buf: Uint8Array, what = "CBFS image"): CbfsInfo {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const dv = view(buf);
  const files: CbfsFile[] = [];
  let pos = b.indexOf(CBFS_MAGIC, 0, "latin1");
  while (pos >= 0 && pos + 24 <= buf.length) {
    const len = dv.getUint32(pos + 8, false);
    const type = dv.getUint32(pos + 12, false);
    const attrOff = dv.getUint32(pos + 16, false);
    const dataOffset = dv.getUint32(pos + 20, false);
    if (dataOffset < 24 || pos + dataOffset + len > buf.length) {
      pos = b.indexOf(CBFS_MAGIC, pos + 8, "latin1");
      continue;
    }
    const nameEnd = attrOff ? attrOff : dataOffset;
    let compression = "none";
    if (attrOff) {
      for (let a = pos + attrOff; a + 8 <= pos + dataOffset; ) {
        const tag = dv.getUint32(a, false);
        const alen = dv.getUint32(a + 4, false);
        if (tag === 0x42435a4c && alen >= 16)
          compression = COMPRESSION[dv.getUint32(a + 8, false)] ?? "unknown";
        if (alen < 8) break;
        a += alen;
      }
    }
    const f: CbfsFile = {
      offset: pos,
      name: cstring(buf, pos + 24, nameEnd - 24),
      type,
      typeName: CBFS_TYPE[type] ?? `0x${type.toString(16)}`,
      dataOffset,
      len,
      compression,
    };
    if (type === CBFS_TYPE_SELF)
      f.segments = parseSelf(buf.subarray(pos + dataOffset, pos + dataOffset + len), `${what}: ${f.name}`);
    files.push(f);
    pos = b.indexOf(CBFS_MAGIC, pos + dataOffset + len, "latin1");
  }
  if (files.length === 0) throw formatError(what, 'no "LARCHIVE" file headers');
  return { format: "cbfs", size: buf.length, files };
}

/** The bytes of one CBFS file's data. */
export function cbfsFileData(buf: Uint8Array, f: CbfsFile): Uint8Array {
  return buf.subarray(f.offset + f.dataOffset, f.offset + f.dataOffset + f.len);
}

export interface SelfOptions {
  /** Extra data segments (e.g. a command line) placed at fixed load addresses. */
  extra?: Array<{ type: "data" | "params"; load: bigint; data: Uint8Array }>;
}

/** One segment to write into a SELF payload: file bytes `data`, `memLen` bytes in memory. */
export interface SelfInput {
  type: "code" | "data" | "bss" | "params";
  load: bigint;
  data: Uint8Array;
  memLen: number;
}

const SEG_CODE: Record<SelfInput["type"], number> = {
  code: SEG.CODE,
  data: SEG.DATA,
  bss: SEG.BSS,
  params: SEG.PARA,
};

/**
 * Writes a SELF payload: the 28-byte segment table (the given segments, then ENTR at `entry`),
 * then each segment's bytes in table order. No compression (coreboot forces none for Linux
 * payloads). A segment without file bytes (BSS) has the offset where its bytes would start, as
 * cbfstool writes it (so the same ELF gives the same bytes).
 */
export function writeSelf(segments: SelfInput[], entry: bigint): Buffer {
  const table = Buffer.alloc((segments.length + 1) * 28);
  let dataPos = table.length;
  // offsets and lengths are 32-bit fields: a value past them would be written cut (or throw)
  segments.forEach((s, i) => {
    for (const [field, v] of [
      ["data offset", dataPos],
      ["file length", s.data.length],
      ["memory length", s.memLen],
    ] as const)
      if (!(v >= 0 && v <= 0xffffffff))
        throw formatError(
          "SELF payload",
          `segment ${i} (${s.type}): ${field} ${hex(v)} does not fit the segment's 32-bit field`,
        );
    dataPos += s.data.length;
  });
  dataPos = table.length;
  segments.forEach((s, i) => {
    const o = i * 28;
    table.writeUInt32BE(SEG_CODE[s.type], o);
    table.writeUInt32BE(0, o + 4);
    table.writeUInt32BE(dataPos, o + 8);
    table.writeBigUInt64BE(s.load, o + 12);
    table.writeUInt32BE(s.data.length, o + 20);
    table.writeUInt32BE(s.memLen, o + 24);
    dataPos += s.data.length;
  });
  const o = segments.length * 28;
  table.writeUInt32BE(SEG.ENTR, o);
  table.writeBigUInt64BE(entry, o + 12);
  return Buffer.concat([table, ...segments.map((s) => s.data)]);
}

/**
 * Converts an ELF into a SELF payload: one CODE (executable) or DATA segment per PT_LOAD, loaded
 * at p_paddr, in program-header order; then the extra segments; then ENTR at e_entry. Segments
 * with no file bytes become BSS.
 */
export function elfToSelf(elf: Uint8Array, opts: SelfOptions = {}, what = "ELF"): Buffer {
  const info: ElfInfo = parseElf(elf, what);
  const loads = loadSegments(info);
  if (loads.length === 0) throw formatError(what, "no PT_LOAD segments");
  const segs: SelfInput[] = [];
  for (const ph of loads) {
    if (ph.offset + ph.filesz > elf.length) throw formatError(what, "PT_LOAD past the end of the file");
    // a SELF segment's lengths are 32 bits (coreboot loads payloads below 4 GiB)
    if (ph.memsz > 0xffffffff)
      throw formatError(
        what,
        `PT_LOAD ${info.programHeaders.indexOf(ph)}: memory size ${hex(ph.memsz)} (at ${hex(ph.paddr)}) does not fit a SELF segment's 32-bit memory length`,
      );
    segs.push({
      type: ph.filesz === 0 ? "bss" : ph.flags & PF_X ? "code" : "data",
      load: ph.paddr,
      data: elf.subarray(ph.offset, ph.offset + ph.filesz),
      memLen: ph.memsz,
    });
  }
  for (const e of opts.extra ?? [])
    segs.push({ type: e.type, load: e.load, data: e.data, memLen: e.data.length });
  return writeSelf(segs, info.entry);
}

function fileHeader(name: string, type: number, len: number): Buffer {
  const nameLen = align(Buffer.byteLength(name) + 1, 4);
  const h = Buffer.alloc(24 + nameLen);
  h.write(CBFS_MAGIC, 0, "latin1");
  h.writeUInt32BE(len, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(0, 16);
  h.writeUInt32BE(24 + nameLen, 20);
  h.write(name, 24, "utf8");
  return h;
}

/**
 * Creates an empty x86 CBFS image of `size` bytes laid out as `cbfstool create -m x86 -s SIZE`
 * lays out an image without FMAP: 0xff fill, one null file spanning the space, the legacy master
 * header ("ORBC") 36 bytes from the end and, in the last 4 bytes, its offset relative to the end
 * (-36, little-endian) where x86 looks for it.
 */
export function createCbfs(size: number): Buffer {
  if (size < 4096) throw formatError("CBFS image", "size must be at least 4 KiB");
  const img = Buffer.alloc(size, 0xff);
  const h = fileHeader("", CBFS_TYPE_NULL, 0);
  h.writeUInt32BE(size - CBFS_ALIGN - h.length, 8);
  h.copy(img, 0);
  const m = size - 36;
  img.write("ORBC", m, "latin1");
  img.writeUInt32BE(0x31313132, m + 4); // header version 2
  img.writeUInt32BE(size, m + 8);
  img.writeUInt32BE(0, m + 12); // boot block size
  img.writeUInt32BE(CBFS_ALIGN, m + 16);
  img.writeUInt32BE(0, m + 20); // offset of the first file
  img.writeUInt32BE(1, m + 24); // architecture x86
  img.writeInt32LE(-36, size - 4);
  return img;
}

/** Adds a file into the first null (free) entry large enough, splitting off the rest as free space. */
export function cbfsAddFile(image: Uint8Array, name: string, type: number, data: Uint8Array): Buffer {
  const img = Buffer.from(image);
  const info = parseCbfs(img);
  if (info.files.some((f) => f.name === name && f.type !== CBFS_TYPE_NULL))
    throw formatError("CBFS image", `a file named "${name}" already exists`);
  const header = fileHeader(name, type, data.length);
  for (const free of info.files) {
    if (free.type !== CBFS_TYPE_NULL) continue;
    const start = free.offset;
    const end = free.offset + free.dataOffset + free.len;
    const next = align(start + header.length + data.length, CBFS_ALIGN);
    const nullHead = fileHeader("", CBFS_TYPE_NULL, 0);
    if (next + nullHead.length > end) continue;
    img.fill(0xff, start, end);
    header.copy(img, start);
    img.set(data, start + header.length);
    nullHead.writeUInt32BE(end - next - nullHead.length, 8);
    nullHead.copy(img, next);
    return img;
  }
  throw formatError("CBFS image", `no free space for ${data.length + header.length} bytes of "${name}"`);
}
