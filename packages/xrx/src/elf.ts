// A small ELF reader: enough to find what a program needs to run on another machine
// (its interpreter, the libraries it names and where it asks for them to be searched).
// Handles 32- and 64-bit files of either byte order. Never throws on a malformed file
// without saying which file and why.

import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";

/** What xrx needs to know about an ELF file. */
export interface ElfInfo {
  /** 32 or 64. */
  bits: 32 | 64;
  /** Byte order of the file. */
  littleEndian: boolean;
  /** e_machine (62 = x86-64, 183 = AArch64, 40 = ARM, 3 = i386, 20 = PPC, 21 = PPC64...). */
  machine: number;
  /** e_type (2 = executable, 3 = shared object / PIE). */
  type: number;
  /** PT_INTERP contents without the trailing NUL, when present. */
  interpreter?: string;
  /** DT_NEEDED entries, in file order. */
  needed: string[];
  /** DT_RPATH split on ':' (empty when absent). */
  rpath: string[];
  /** DT_RUNPATH split on ':' (empty when absent). */
  runpath: string[];
  /** DT_SONAME when present. */
  soname?: string;
}

/** Raised for a file that is not a well-formed ELF object. */
export class ElfError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`cannot parse file ${file}: ${reason}`);
    this.name = "ElfError";
  }
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

/** True when the buffer starts with the ELF magic. */
export function isElf(buf: Uint8Array): boolean {
  return buf.length >= 4 && buf[0] === 0x7f && buf[1] === 0x45 && buf[2] === 0x4c && buf[3] === 0x46;
}

/** An ELF file's bytes by position: held in memory, or read from a descriptor when asked for. */
interface ElfSource {
  readonly size: number;
  /** `len` bytes at `off`; the caller has checked that they lie inside the file. */
  bytes(off: number, len: number): Uint8Array;
}

/** Parses the headers and dynamic section of an ELF image held in memory. */
export function parseElf(data: Uint8Array, name = "<buffer>"): ElfInfo {
  return parseElfSource({ size: data.length, bytes: (off, len) => data.subarray(off, off + len) }, name);
}

/**
 * The first `n` bytes of the regular file at `path` (fewer when it is shorter); undefined when it
 * cannot be read or is not a regular file. Opened without waiting on a FIFO put in its place.
 */
export function readFileHead(path: string, n: number): Buffer | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    if (!fstatSync(fd).isFile()) return undefined;
    const head = Buffer.alloc(n);
    return head.subarray(0, readSync(fd, head, 0, n, 0));
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Parses the headers and dynamic section of the ELF file at `path`, reading only those (a few
 * KiB, where reading a whole 2 MB libc into fresh memory costs milliseconds). Throws what
 * parseElf throws for the same bytes, and the file system's error when the file cannot be read.
 */
export function parseElfFile(path: string, name = path): ElfInfo {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const size = fstatSync(fd).size;
    return parseElfSource(
      {
        size,
        bytes(off, len) {
          const b = Buffer.allocUnsafe(len);
          let got = 0;
          while (got < len) {
            const n = readSync(fd, b, got, len - got, off + got);
            if (n === 0) throw new ElfError(name, "the file was cut short while it was read");
            got += n;
          }
          return b;
        },
      },
      name,
    );
  } finally {
    closeSync(fd);
  }
}

/** Strings are read from a file in pieces of this many bytes until their NUL. */
const STRING_PIECE = 256;

function parseElfSource(src: ElfSource, name: string): ElfInfo {
  const size = src.size;
  const ident = src.bytes(0, Math.min(size, 64));
  if (!isElf(ident)) throw new ElfError(name, "not an ELF file");
  if (size < 52) throw new ElfError(name, "truncated header");
  const cls = ident[4];
  const enc = ident[5];
  if (cls !== 1 && cls !== 2) throw new ElfError(name, `unknown ELF class ${cls}`);
  if (enc !== 1 && enc !== 2) throw new ElfError(name, `unknown ELF data encoding ${enc}`);
  const bits = cls === 1 ? 32 : 64;
  const le = enc === 1;
  if (bits === 64 && size < 64) throw new ElfError(name, "truncated header");
  const need = (off: number, len: number, what: string) => {
    if (off < 0 || off + len > size) throw new ElfError(name, `${what} lies outside the file`);
  };
  /** Field readers over one region of the file that starts at `base`. */
  const fields = (base: number, region: Uint8Array) => {
    const dv = new DataView(region.buffer, region.byteOffset, region.byteLength);
    const u16 = (off: number) => {
      need(off, 2, "field");
      return dv.getUint16(off - base, le);
    };
    const u32 = (off: number) => {
      need(off, 4, "field");
      return dv.getUint32(off - base, le);
    };
    const word = (off: number): number => {
      if (bits === 32) return u32(off);
      need(off, 8, "field");
      const v = dv.getBigUint64(off - base, le);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(name, "64-bit value out of range");
      return Number(v);
    };
    return { u16, u32, word };
  };
  const hdr = fields(0, ident);
  const type = hdr.u16(16);
  const machine = hdr.u16(18);
  const phoff = bits === 32 ? hdr.u32(28) : hdr.word(32);
  const phentsize = hdr.u16(bits === 32 ? 42 : 54);
  const phnum = hdr.u16(bits === 32 ? 44 : 56);
  const minEnt = bits === 32 ? 32 : 56;
  if (phnum > 0 && phentsize < minEnt) throw new ElfError(name, `bad program header size ${phentsize}`);
  need(phoff, phnum * phentsize, "program header table");

  interface Seg {
    type: number;
    offset: number;
    vaddr: number;
    filesz: number;
  }
  const segs: Seg[] = [];
  const ph = fields(phoff, src.bytes(phoff, phnum * phentsize));
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (bits === 32) {
      segs.push({ type: ph.u32(p), offset: ph.u32(p + 4), vaddr: ph.u32(p + 8), filesz: ph.u32(p + 16) });
    } else {
      segs.push({ type: ph.u32(p), offset: ph.word(p + 8), vaddr: ph.word(p + 16), filesz: ph.word(p + 32) });
    }
  }
  const info: ElfInfo = { bits, littleEndian: le, machine, type, needed: [], rpath: [], runpath: [] };
  /** The NUL-terminated string at `off`, which must end before `limit` (a file offset). */
  const cstr = (off: number, limit: number): string => {
    if (off < 0 || off >= limit) throw new ElfError(name, "string offset out of range");
    const pieces: Uint8Array[] = [];
    for (let at = off; at < limit; ) {
      const piece = src.bytes(at, Math.min(STRING_PIECE, limit - at));
      const nul = piece.indexOf(0);
      if (nul >= 0) {
        pieces.push(piece.subarray(0, nul));
        return Buffer.concat(pieces).toString("utf8");
      }
      pieces.push(piece);
      at += piece.length;
    }
    throw new ElfError(name, "unterminated string");
  };
  const interp = segs.find((s) => s.type === PT_INTERP);
  if (interp) {
    need(interp.offset, interp.filesz, "PT_INTERP");
    info.interpreter = cstr(interp.offset, interp.offset + interp.filesz);
  }
  const dyn = segs.find((s) => s.type === PT_DYNAMIC);
  if (!dyn) return info;
  need(dyn.offset, dyn.filesz, "PT_DYNAMIC");
  const entSize = bits === 32 ? 8 : 16;
  const d = fields(dyn.offset, src.bytes(dyn.offset, dyn.filesz));
  const entries: Array<[number, number]> = [];
  for (let off = dyn.offset; off + entSize <= dyn.offset + dyn.filesz; off += entSize) {
    const tag = bits === 32 ? d.u32(off) : d.word(off);
    const val = bits === 32 ? d.u32(off + 4) : d.word(off + 8);
    if (tag === DT_NULL) break;
    entries.push([tag, val]);
  }
  const strtabAddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  if (strtabAddr === undefined) return info;
  // DT_STRTAB holds a virtual address: map it back to a file offset through the PT_LOAD segments.
  const load = segs.find(
    (s) => s.type === PT_LOAD && strtabAddr >= s.vaddr && strtabAddr < s.vaddr + s.filesz,
  );
  if (!load) throw new ElfError(name, "DT_STRTAB is not inside a loaded segment");
  const strOff = load.offset + (strtabAddr - load.vaddr);
  const strLimit = Math.min(size, load.offset + load.filesz);
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) info.needed.push(cstr(strOff + val, strLimit));
    else if (tag === DT_RPATH) info.rpath = splitPath(cstr(strOff + val, strLimit));
    else if (tag === DT_RUNPATH) info.runpath = splitPath(cstr(strOff + val, strLimit));
    else if (tag === DT_SONAME) info.soname = cstr(strOff + val, strLimit);
  }
  return info;
}

function splitPath(s: string): string[] {
  return s.split(":").filter((p) => p.length > 0);
}

/** Names for the common e_machine values, for messages. */
export function machineName(machine: number): string {
  const names: Record<number, string> = {
    3: "i386",
    8: "mips",
    20: "powerpc",
    21: "ppc64",
    22: "s390",
    40: "arm",
    62: "x86_64",
    183: "aarch64",
    243: "riscv",
  };
  return names[machine] ?? `machine ${machine}`;
}
