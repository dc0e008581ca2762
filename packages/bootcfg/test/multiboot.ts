// Test scaffolding for booting a SELF payload under QEMU without coreboot: a multiboot v1 ELF
// whose single PT_LOAD holds a small SELF loader (hand-assembled like the trampoline), a fake
// coreboot table and the SELF payload itself. QEMU's -kernel loads a multiboot ELF and enters it
// in 32-bit protected mode with paging off — the state coreboot leaves a payload in. The loader
// copies the low table (a forward record) to 0x500, copies every SELF segment to its load address
// (zero-filling up to its memory length), and jumps to the ENTR address: what coreboot's payload
// loader does. The trampoline and zero page under test are the product's, unchanged.
import { assemble, I, imm32, L, rel8 } from "../src/formats/trampoline-x86.js";

export interface MemRange {
  start: number;
  size: number;
  /** coreboot memory type: 1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable, 16 coreboot table. */
  type: number;
}

/** The 16-bit ones' complement checksum coreboot tables use (little-endian words, inverted). */
export function ipChecksum(b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < b.length; i++) {
    sum += i & 1 ? b[i]! << 8 : b[i]!;
    if (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  }
  return ~sum & 0xffff;
}

/**
 * A coreboot table: the 24-byte header (signature "LBIO" 0, header_bytes 4, header_checksum 8,
 * table_bytes 12, table_checksum 16, table_entries 20) followed by the records.
 */
export function lbTable(records: Buffer[]): Buffer {
  const body = Buffer.concat(records);
  const hdr = Buffer.alloc(24);
  hdr.write("LBIO", 0, "latin1");
  hdr.writeUInt32LE(24, 4);
  hdr.writeUInt32LE(body.length, 12);
  hdr.writeUInt32LE(ipChecksum(body), 16);
  hdr.writeUInt32LE(records.length, 20);
  hdr.writeUInt32LE(ipChecksum(hdr), 8);
  return Buffer.concat([hdr, body]);
}

export function lbMemory(ranges: MemRange[]): Buffer {
  const r = Buffer.alloc(8 + 20 * ranges.length);
  r.writeUInt32LE(0x01, 0);
  r.writeUInt32LE(r.length, 4);
  ranges.forEach((m, i) => {
    r.writeBigUInt64LE(BigInt(m.start), 8 + i * 20);
    r.writeBigUInt64LE(BigInt(m.size), 16 + i * 20);
    r.writeUInt32LE(m.type, 24 + i * 20);
  });
  return r;
}

export function lbForward(address: number): Buffer {
  const r = Buffer.alloc(16);
  r.writeUInt32LE(0x11, 0);
  r.writeUInt32LE(16, 4);
  r.writeBigUInt64LE(BigInt(address), 8);
  return r;
}

/** A record the trampoline must skip (LB_TAG_VERSION, a NUL-padded string). */
export function lbString(tag: number, text: string): Buffer {
  const s = Buffer.from(`${text}\0`, "latin1");
  const r = Buffer.alloc(8 + Math.ceil(s.length / 4) * 4);
  r.writeUInt32LE(tag, 0);
  r.writeUInt32LE(r.length, 4);
  s.copy(r, 8);
  return r;
}

export const LOW_TABLE_ADDR = 0x500;
const HEADER_AT = 0x000;
const LOW_AT = 0x200;
const HIGH_AT = 0x1000;
const SELF_AT = 0x2000;

/** The loader: copy the low table to 0x500, load the SELF segments, jump to ENTR. */
function loader(base: number, lowLen: number) {
  return assemble(
    [
      I("cli", 0xfa),
      I("cld", 0xfc),
      I("mov esi,low_table", 0xbe, imm32(base + LOW_AT)),
      I("mov edi,0x500", 0xbf, imm32(LOW_TABLE_ADDR)),
      I("mov ecx,low_len", 0xb9, imm32(lowLen)),
      I("rep movsb", 0xf3, 0xa4),
      I("mov ebp,self", 0xbd, imm32(base + SELF_AT)),
      I("mov ebx,ebp", 0x89, 0xeb),
      L("segment"),
      I("mov eax,DWORD PTR [ebx]", 0x8b, 0x03), // type (big-endian)
      I("bswap eax", 0x0f, 0xc8),
      I("cmp eax,0x454e5452", 0x3d, imm32(0x454e5452)), // "ENTR"
      I("je entry", 0x74, rel8("entry")),
      I("mov esi,DWORD PTR [ebx+0x8]", 0x8b, 0x73, 0x08), // offset
      I("bswap esi", 0x0f, 0xce),
      I("add esi,ebp", 0x01, 0xee),
      I("mov edi,DWORD PTR [ebx+0x10]", 0x8b, 0x7b, 0x10), // load address, low half
      I("bswap edi", 0x0f, 0xcf),
      I("mov ecx,DWORD PTR [ebx+0x14]", 0x8b, 0x4b, 0x14), // len
      I("bswap ecx", 0x0f, 0xc9),
      I("mov edx,DWORD PTR [ebx+0x18]", 0x8b, 0x53, 0x18), // mem_len
      I("bswap edx", 0x0f, 0xca),
      I("sub edx,ecx", 0x29, 0xca),
      I("rep movsb", 0xf3, 0xa4),
      I("mov ecx,edx", 0x89, 0xd1),
      I("xor eax,eax", 0x31, 0xc0),
      I("rep stosb", 0xf3, 0xaa),
      I("add ebx,0x1c", 0x83, 0xc3, 0x1c),
      I("jmp segment", 0xeb, rel8("segment")),
      L("entry"),
      I("mov eax,DWORD PTR [ebx+0x10]", 0x8b, 0x43, 0x10),
      I("bswap eax", 0x0f, 0xc8),
      I("jmp eax", 0xff, 0xe0),
    ],
    base + HEADER_AT + 12,
  );
}

/**
 * A multiboot v1 ELF32 loaded at `base` (which must lie above every SELF segment's memory):
 * multiboot header, loader, low table (forward to the high table at base+0x1000), high table
 * with `ranges`, the SELF payload at base+0x2000.
 */
export function multibootSelf(self: Uint8Array, ranges: MemRange[], base: number): Buffer {
  // decoys the trampoline must pass over: a bad header checksum at 0x500, a good header with a
  // bad table checksum at 0x520; the real low table (a forward record) at 0x550
  const badHeader = lbTable([]);
  badHeader.writeUInt32LE(badHeader.readUInt32LE(8) ^ 0x5555, 8);
  const badTable = lbTable([lbForward(0x100)]);
  badTable.writeUInt32LE(0x200, 24 + 8); // forward address changed after the checksum was taken
  const low = Buffer.concat([
    badHeader,
    Buffer.alloc(0x20 - badHeader.length),
    badTable,
    Buffer.alloc(0x30 - badTable.length),
    lbTable([lbForward(base + HIGH_AT)]),
  ]);
  const high = lbTable([lbString(0x04, "bootcfg test table"), lbMemory(ranges)]);
  const code = loader(base, low.length).code;
  if (12 + code.length > LOW_AT || LOW_AT + low.length > HIGH_AT || HIGH_AT + high.length > SELF_AT)
    throw new Error("multiboot image layout overflow");
  const blob = Buffer.alloc(SELF_AT + self.length);
  blob.writeUInt32LE(0x1badb002, 0); // multiboot magic
  blob.writeUInt32LE(0, 4); // flags: none (ELF load, no memory info needed)
  blob.writeUInt32LE(-0x1badb002 >>> 0, 8); // checksum: magic + flags + checksum = 0
  code.copy(blob, 12);
  low.copy(blob, LOW_AT);
  high.copy(blob, HIGH_AT);
  blob.set(self, SELF_AT);
  const elf = Buffer.alloc(0x1000);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0); // ELF32, little-endian, version 1
  elf.writeUInt16LE(2, 16); // ET_EXEC
  elf.writeUInt16LE(3, 18); // EM_386
  elf.writeUInt32LE(1, 20);
  elf.writeUInt32LE(base + 12, 24); // e_entry: the loader
  elf.writeUInt32LE(52, 28); // e_phoff
  elf.writeUInt16LE(52, 40); // e_ehsize
  elf.writeUInt16LE(32, 42); // e_phentsize
  elf.writeUInt16LE(1, 44); // e_phnum
  elf.writeUInt32LE(1, 52); // PT_LOAD
  elf.writeUInt32LE(0x1000, 56); // p_offset
  elf.writeUInt32LE(base, 60); // p_vaddr
  elf.writeUInt32LE(base, 64); // p_paddr
  elf.writeUInt32LE(blob.length, 68); // p_filesz
  elf.writeUInt32LE(blob.length, 72); // p_memsz
  elf.writeUInt32LE(7, 76); // RWX
  elf.writeUInt32LE(0x1000, 80); // p_align
  return Buffer.concat([elf, blob]);
}

/** Where the high table sits (its page is reported as coreboot type 16). */
export const highTableAddress = (base: number) => base + HIGH_AT;
