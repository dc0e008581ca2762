// ELF32/ELF64 headers, program headers and notes (System V ABI). Both byte orders.
import { formatError } from "../errors.js";
import { align, cstring, view } from "../util.js";

export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;

export const EM: Record<number, string> = {
  3: "i386",
  20: "ppc",
  21: "ppc64",
  40: "arm",
  62: "x86_64",
  183: "aarch64",
  243: "riscv",
  22: "s390",
};

export interface ElfProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  paddr: bigint;
  filesz: number;
  memsz: number;
  align: bigint;
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

export interface ElfInfo {
  format: "elf";
  class: 32 | 64;
  littleEndian: boolean;
  type: number;
  machine: number;
  machineName: string;
  entry: bigint;
  phoff: number;
  phnum: number;
  phentsize: number;
  programHeaders: ElfProgramHeader[];
  notes: ElfNote[];
  /** XEN_ELFNOTE_PHYS32_ENTRY (type 18 in a "Xen" note): the PVH entry point, if present. */
  pvhEntry?: number;
  /** File offset of a multiboot (v1) header, if the image has one. */
  multibootHeader?: number;
}

const MULTIBOOT_MAGIC = 0x1badb002;

/**
 * Finds a multiboot v1 header: the magic 0x1BADB002 on a 4-byte boundary within the first 8192
 * bytes, followed by flags and a checksum that make the three words sum to 0 (mod 2^32).
 */
export function findMultibootHeader(buf: Uint8Array): number | undefined {
  const dv = view(buf);
  const end = Math.min(buf.length, 8192) - 12;
  for (let o = 0; o <= end; o += 4) {
    if (dv.getUint32(o, true) !== MULTIBOOT_MAGIC) continue;
    if ((MULTIBOOT_MAGIC + dv.getUint32(o + 4, true) + dv.getUint32(o + 8, true)) >>> 0 === 0) return o;
  }
  return undefined;
}

export function isElf(buf: Uint8Array): boolean {
  return buf.length >= 16 && buf[0] === 0x7f && buf[1] === 0x45 && buf[2] === 0x4c && buf[3] === 0x46;
}

export function parseElf(buf: Uint8Array, what = "ELF"): ElfInfo {
  if (!isElf(buf)) throw formatError(what, "no ELF magic");
  const cls = buf[4];
  if (cls !== 1 && cls !== 2) throw formatError(what, `bad ELF class ${cls}`);
  const le = buf[5] !== 2;
  const is64 = cls === 2;
  if (buf.length < (is64 ? 64 : 52)) throw formatError(what, "truncated ELF header");
  const dv = view(buf);
  const u16 = (o: number) => dv.getUint16(o, le);
  const u32 = (o: number) => dv.getUint32(o, le);
  const u64 = (o: number) => dv.getBigUint64(o, le);
  const word = (o: number) => (is64 ? u64(o) : BigInt(u32(o)));
  const machine = u16(18);
  const phoff = Number(word(is64 ? 32 : 28));
  const phentsize = u16(is64 ? 54 : 42);
  const phnum = u16(is64 ? 56 : 44);
  const phMin = is64 ? 56 : 32;
  if (phnum > 0 && phentsize < phMin)
    throw formatError(what, `e_phentsize ${phentsize} is smaller than a program header (${phMin} bytes)`);
  if (phnum > 0 && phoff + phnum * phentsize > buf.length)
    throw formatError(what, "program headers past the end of the file");
  const programHeaders: ElfProgramHeader[] = [];
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    programHeaders.push(
      is64
        ? {
            type: u32(p),
            flags: u32(p + 4),
            offset: Number(u64(p + 8)),
            vaddr: u64(p + 16),
            paddr: u64(p + 24),
            filesz: Number(u64(p + 32)),
            memsz: Number(u64(p + 40)),
            align: u64(p + 48),
          }
        : {
            type: u32(p),
            offset: u32(p + 4),
            vaddr: BigInt(u32(p + 8)),
            paddr: BigInt(u32(p + 12)),
            filesz: u32(p + 16),
            memsz: u32(p + 20),
            flags: u32(p + 24),
            align: BigInt(u32(p + 28)),
          },
    );
  }
  const notes: ElfNote[] = [];
  for (const ph of programHeaders) {
    if (ph.type !== PT_NOTE) continue;
    let o = ph.offset;
    const end = Math.min(buf.length, ph.offset + ph.filesz);
    while (o + 12 <= end) {
      const namesz = u32(o);
      const descsz = u32(o + 4);
      const type = u32(o + 8);
      const nameOff = o + 12;
      // (arithmetic, not `& ~3`: sizes near 2^32 would turn negative and walk backwards)
      const descOff = nameOff + align(namesz, 4);
      const next = descOff + align(descsz, 4);
      if (next > end) break;
      notes.push({
        name: cstring(buf, nameOff, namesz),
        type,
        desc: buf.subarray(descOff, descOff + descsz),
      });
      o = next;
    }
  }
  // A loader copies p_filesz bytes from p_offset and clears up to p_memsz at p_paddr: each must
  // make sense, or the image is damaged (a vmlinux cut short, a corrupted header).
  const addrEnd = is64 ? 1n << 64n : 1n << 32n;
  programHeaders.forEach((ph, i) => {
    if (ph.type !== PT_LOAD) return;
    if (ph.filesz > 0 && ph.offset + ph.filesz > buf.length)
      throw formatError(
        what,
        `PT_LOAD ${i} (${ph.filesz} bytes at file offset 0x${ph.offset.toString(16)}) runs past the end of the file (${buf.length} bytes): truncated?`,
      );
    if (ph.filesz > ph.memsz)
      throw formatError(
        what,
        `PT_LOAD ${i}: file size ${ph.filesz} is larger than its memory size ${ph.memsz}`,
      );
    if (ph.paddr + BigInt(ph.memsz) > addrEnd)
      throw formatError(
        what,
        `PT_LOAD ${i}: ${ph.memsz} bytes at 0x${ph.paddr.toString(16)} run past the end of the address space`,
      );
  });
  const pvh = notes.find((n) => n.name === "Xen" && n.type === 18);
  let pvhEntry: number | undefined;
  if (pvh && pvh.desc.length >= 4) {
    const d = view(pvh.desc);
    pvhEntry = pvh.desc.length >= 8 ? Number(d.getBigUint64(0, le)) : d.getUint32(0, le);
  }
  const multibootHeader = findMultibootHeader(buf);
  return {
    format: "elf",
    class: is64 ? 64 : 32,
    littleEndian: le,
    type: u16(16),
    machine,
    machineName: EM[machine] ?? `machine ${machine}`,
    entry: word(24),
    phoff,
    phnum,
    phentsize,
    programHeaders,
    notes,
    ...(pvhEntry !== undefined ? { pvhEntry } : {}),
    ...(multibootHeader !== undefined ? { multibootHeader } : {}),
  };
}

/** Loadable segments, as boot loaders see them (by physical address). */
export function loadSegments(info: ElfInfo): ElfProgramHeader[] {
  return info.programHeaders.filter((p) => p.type === PT_LOAD);
}
