// The 32-bit x86 trampoline of a bzImage-derived SELF payload, as hand-assembled machine code.
//
// coreboot (and a multiboot v1 loader) jumps here in 32-bit flat protected mode with paging off.
// The trampoline loads its own GDT (flat 4 GiB code at selector 0x10, data at 0x18, as the Linux
// 32-bit boot protocol wants), finds the coreboot tables ("LBIO" header on a 16-byte boundary in
// 0x0-0xfff or 0xf0000-0xfffff, both checksums verified, LB_TAG_FORWARD followed), copies every
// LB_TAG_MEMORY range into the zero page's E820 table (entries at 0x2d0, count at 0x1e8, at most
// 128; coreboot types 1-5 kept, others such as 16 "coreboot table" become 2 "reserved"), then
// sets esi = zero page, ebp = edi = ebx = 0 and jumps to the address in the zero page's
// code32_start (0x214) with interrupts off. Without a valid coreboot table the E820 table stays
// empty (e820_entries = 0).
//
// Every instruction below is written as its bytes with the Intel-syntax mnemonic beside them.
// Jump displacements and absolute addresses are filled in from labels for the load address the
// payload builder chooses; the test suite disassembles the result with objdump and compares it
// with these mnemonics.

/** One operand placeholder: an 8- or 32-bit displacement to a label, or a 32-bit absolute. */
export type Part = number | { rel8: string } | { rel32: string } | { abs: string } | { imm32: number };

export interface Insn {
  asm: string;
  parts: Part[];
}
export type Item = Insn | { label: string } | { align: number } | { data: number[]; asm: string };

export interface ListingLine {
  /** Offset from the start of the trampoline. */
  offset: number;
  bytes: number[];
  asm: string;
  /** True for table data (GDT, GDT pointer) rather than instructions. */
  data?: boolean;
}

export interface Trampoline {
  /** Code and data bytes (the CODE segment's file bytes). */
  code: Buffer;
  /** Bytes the segment occupies in memory: code plus a zeroed stack above it. */
  memLen: number;
  /** Address of the first instruction (the payload's entry point). */
  entry: number;
  /** Offset of the first data byte (GDT) — everything before it is instructions. */
  codeEnd: number;
  listing: ListingLine[];
}

/** An instruction: its Intel-syntax text and its bytes (numbers and operand placeholders). */
export const I = (asm: string, ...parts: Part[]): Insn => ({ asm, parts });
/** A label at the current position. */
export const L = (label: string) => ({ label });
export const imm32 = (n: number): Part => ({ imm32: n >>> 0 });
export const abs = (label: string): Part => ({ abs: label });
export const rel8 = (label: string): Part => ({ rel8: label });
export const rel32 = (label: string): Part => ({ rel32: label });

/** Selectors of the Linux 32-bit boot protocol (__BOOT_CS, __BOOT_DS). */
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
/** Zero page offsets the trampoline writes or reads. */
export const ZP_E820_ENTRIES = 0x1e8;
export const ZP_E820_TABLE = 0x2d0;
export const ZP_CODE32_START = 0x214;
export const E820_MAX = 128;
/** coreboot table record tags. */
export const LB_TAG_MEMORY = 0x01;
export const LB_TAG_FORWARD = 0x11;
/** "LBIO" read as a little-endian 32-bit word. */
export const LBIO = 0x4f49424c;
const STACK_BYTES = 256;

function program(zp: number): Item[] {
  const zpCount = imm32(zp + ZP_E820_ENTRIES);
  return [
    // --- entry: own GDT, flat segments, a stack ---
    I("cli", 0xfa),
    I("cld", 0xfc),
    I("lgdtd [gdtr]", 0x0f, 0x01, 0x15, abs("gdtr")), // 0F 01 /2, disp32
    I("jmp 0x10:reload", 0xea, abs("reload"), BOOT_CS, 0x00), // far jump: offset32, selector16
    L("reload"),
    I("mov eax,0x18", 0xb8, imm32(BOOT_DS)),
    I("mov ds,eax", 0x8e, 0xd8),
    I("mov es,eax", 0x8e, 0xc0),
    I("mov ss,eax", 0x8e, 0xd0),
    I("mov fs,eax", 0x8e, 0xe0),
    I("mov gs,eax", 0x8e, 0xe8),
    I("mov esp,stack_top", 0xbc, abs("stack_top")),
    // --- find the coreboot table: 0x0-0xfff, then 0xf0000-0xfffff ---
    I("xor esi,esi", 0x31, 0xf6),
    I("mov edx,0x1000", 0xba, imm32(0x1000)),
    I("call scan", 0xe8, rel32("scan")),
    I("test eax,eax", 0x85, 0xc0),
    I("jne found", 0x75, rel8("found")),
    I("mov esi,0xf0000", 0xbe, imm32(0xf0000)),
    I("mov edx,0x100000", 0xba, imm32(0x100000)),
    I("call scan", 0xe8, rel32("scan")),
    I("test eax,eax", 0x85, 0xc0),
    I("je boot", 0x0f, 0x84, rel32("boot")),
    L("found"), // eax = a verified table header
    I("mov ebp,0x4", 0xbd, imm32(4)), // forward records followed at most 4 times
    L("table"), // (re)start the E820 table: edi = next entry, count = 0
    I("mov edi,e820", 0xbf, imm32(zp + ZP_E820_TABLE)),
    I("mov BYTE PTR [e820_entries],0x0", 0xc6, 0x05, zpCount, 0x00),
    I("mov esi,eax", 0x89, 0xc6),
    I("add esi,DWORD PTR [eax+0x4]", 0x03, 0x70, 0x04), // first record = header + header_bytes
    I("mov edx,esi", 0x89, 0xf2),
    I("add edx,DWORD PTR [eax+0xc]", 0x03, 0x50, 0x0c), // end = records + table_bytes
    L("record"), // esi = record, edx = end of the records
    I("cmp esi,edx", 0x39, 0xd6),
    I("jae boot", 0x0f, 0x83, rel32("boot")),
    I("mov ecx,DWORD PTR [esi+0x4]", 0x8b, 0x4e, 0x04), // record size
    I("cmp ecx,0x8", 0x83, 0xf9, 0x08),
    I("jb boot", 0x0f, 0x82, rel32("boot")), // malformed: stop here
    I("mov eax,DWORD PTR [esi]", 0x8b, 0x06), // record tag
    I("cmp eax,0x11", 0x83, 0xf8, LB_TAG_FORWARD),
    I("je forward", 0x74, rel8("forward")),
    I("cmp eax,0x1", 0x83, 0xf8, LB_TAG_MEMORY),
    I("jne next", 0x75, rel8("next")),
    I("lea ebx,[esi+0x8]", 0x8d, 0x5e, 0x08), // ebx = first range
    I("add ecx,esi", 0x01, 0xf1), // ecx = end of this record
    L("range"), // one 20-byte range: start u64, size u64, type u32 (the E820 layout too)
    I("lea eax,[ebx+0x14]", 0x8d, 0x43, 0x14),
    I("cmp eax,ecx", 0x39, 0xc8),
    I("ja memory_done", 0x77, rel8("memory_done")),
    I("cmp BYTE PTR [e820_entries],0x80", 0x80, 0x3d, zpCount, E820_MAX),
    I("jae boot", 0x0f, 0x83, rel32("boot")), // 128 entries: the table is full
    I("mov eax,DWORD PTR [ebx]", 0x8b, 0x03),
    I("mov DWORD PTR [edi],eax", 0x89, 0x07),
    I("mov eax,DWORD PTR [ebx+0x4]", 0x8b, 0x43, 0x04),
    I("mov DWORD PTR [edi+0x4],eax", 0x89, 0x47, 0x04),
    I("mov eax,DWORD PTR [ebx+0x8]", 0x8b, 0x43, 0x08),
    I("mov DWORD PTR [edi+0x8],eax", 0x89, 0x47, 0x08),
    I("mov eax,DWORD PTR [ebx+0xc]", 0x8b, 0x43, 0x0c),
    I("mov DWORD PTR [edi+0xc],eax", 0x89, 0x47, 0x0c),
    I("mov eax,DWORD PTR [ebx+0x10]", 0x8b, 0x43, 0x10), // coreboot type
    I("dec eax", 0x48),
    I("cmp eax,0x4", 0x83, 0xf8, 0x04),
    I("jbe keep_type", 0x76, rel8("keep_type")), // 1..5 are E820 types too
    I("mov eax,0x1", 0xb8, imm32(1)), // anything else: 2 (reserved) after the inc
    L("keep_type"),
    I("inc eax", 0x40),
    I("mov DWORD PTR [edi+0x10],eax", 0x89, 0x47, 0x10),
    I("add edi,0x14", 0x83, 0xc7, 0x14),
    I("inc BYTE PTR [e820_entries]", 0xfe, 0x05, zpCount),
    I("add ebx,0x14", 0x83, 0xc3, 0x14),
    I("jmp range", 0xeb, rel8("range")),
    L("memory_done"),
    I("mov ecx,DWORD PTR [esi+0x4]", 0x8b, 0x4e, 0x04), // size again
    L("next"),
    I("add esi,ecx", 0x01, 0xce),
    I("jmp record", 0xeb, rel8("record")),
    L("forward"), // LB_TAG_FORWARD: the real table is elsewhere; start over there
    I("dec ebp", 0x4d),
    I("je boot", 0x74, rel8("boot")),
    I("mov eax,DWORD PTR [esi+0x8]", 0x8b, 0x46, 0x08), // forward address, low 32 bits
    I("call check", 0xe8, rel32("check")),
    I("test eax,eax", 0x85, 0xc0),
    I("jne table", 0x0f, 0x85, rel32("table")),
    // --- hand over to the kernel (Linux 32-bit boot protocol) ---
    L("boot"),
    I("mov esi,zero_page", 0xbe, imm32(zp)),
    I("xor ebp,ebp", 0x31, 0xed),
    I("xor edi,edi", 0x31, 0xff),
    I("xor ebx,ebx", 0x31, 0xdb),
    I("jmp DWORD PTR [code32_start]", 0xff, 0x25, imm32(zp + ZP_CODE32_START)),

    // --- scan: esi = start, edx = end; returns eax = verified header or 0 ---
    L("scan"),
    I("cmp esi,edx", 0x39, 0xd6),
    I("jae scan_none", 0x73, rel8("scan_none")),
    I("mov eax,esi", 0x89, 0xf0),
    I("push esi", 0x56),
    I("push edx", 0x52),
    I("call check", 0xe8, rel32("check")),
    I("pop edx", 0x5a),
    I("pop esi", 0x5e),
    I("test eax,eax", 0x85, 0xc0),
    I("jne scan_done", 0x75, rel8("scan_done")),
    I("add esi,0x10", 0x83, 0xc6, 0x10),
    I("jmp scan", 0xeb, rel8("scan")),
    L("scan_none"),
    I("xor eax,eax", 0x31, 0xc0),
    L("scan_done"),
    I("ret", 0xc3),

    // --- check: eax = candidate header; returns eax, or 0 if it is not a valid table ---
    // clobbers ebx, ecx, edx, esi
    L("check"),
    I("cmp DWORD PTR [eax],0x4f49424c", 0x81, 0x38, imm32(LBIO)), // "LBIO"
    I("jne check_bad", 0x75, rel8("check_bad")),
    I("cmp DWORD PTR [eax+0x4],0x18", 0x83, 0x78, 0x04, 0x18), // header_bytes = 24
    I("jne check_bad", 0x75, rel8("check_bad")),
    I("cmp DWORD PTR [eax+0xc],0x10000", 0x81, 0x78, 0x0c, imm32(0x10000)), // table_bytes sane
    I("ja check_bad", 0x77, rel8("check_bad")),
    I("mov esi,eax", 0x89, 0xc6),
    I("mov ecx,0x18", 0xb9, imm32(24)),
    I("call ipsum", 0xe8, rel32("ipsum")),
    I("cmp ebx,0xffff", 0x81, 0xfb, imm32(0xffff)), // header sums to 0xffff (checksum 0)
    I("jne check_bad", 0x75, rel8("check_bad")),
    I("lea esi,[eax+0x18]", 0x8d, 0x70, 0x18),
    I("mov ecx,DWORD PTR [eax+0xc]", 0x8b, 0x48, 0x0c), // table_bytes
    I("call ipsum", 0xe8, rel32("ipsum")),
    I("not ebx", 0xf7, 0xd3),
    I("movzx ebx,bx", 0x0f, 0xb7, 0xdb),
    I("cmp ebx,DWORD PTR [eax+0x10]", 0x3b, 0x58, 0x10), // table_checksum
    I("jne check_bad", 0x75, rel8("check_bad")),
    I("ret", 0xc3),
    L("check_bad"),
    I("xor eax,eax", 0x31, 0xc0),
    I("ret", 0xc3),

    // --- ipsum: esi = data, ecx = length; returns ebx = folded 16-bit ones' complement sum ---
    // (little-endian 16-bit words, a last odd byte as the low half); clobbers ecx, edx, esi
    L("ipsum"),
    I("xor ebx,ebx", 0x31, 0xdb),
    L("ipsum_word"),
    I("cmp ecx,0x2", 0x83, 0xf9, 0x02),
    I("jb ipsum_tail", 0x72, rel8("ipsum_tail")),
    I("movzx edx,WORD PTR [esi]", 0x0f, 0xb7, 0x16),
    I("add ebx,edx", 0x01, 0xd3),
    I("add esi,0x2", 0x83, 0xc6, 0x02),
    I("sub ecx,0x2", 0x83, 0xe9, 0x02),
    I("jmp ipsum_word", 0xeb, rel8("ipsum_word")),
    L("ipsum_tail"),
    I("jecxz ipsum_fold", 0xe3, rel8("ipsum_fold")),
    I("movzx edx,BYTE PTR [esi]", 0x0f, 0xb6, 0x16),
    I("add ebx,edx", 0x01, 0xd3),
    L("ipsum_fold"),
    I("mov edx,ebx", 0x89, 0xda),
    I("shr edx,0x10", 0xc1, 0xea, 0x10),
    I("movzx ebx,bx", 0x0f, 0xb7, 0xdb),
    I("add ebx,edx", 0x01, 0xd3),
    I("mov edx,ebx", 0x89, 0xda),
    I("shr edx,0x10", 0xc1, 0xea, 0x10),
    I("movzx ebx,bx", 0x0f, 0xb7, 0xdb),
    I("add ebx,edx", 0x01, 0xd3),
    I("ret", 0xc3),

    // --- data: GDT (null, unused, flat code 0x10, flat data 0x18) and its pointer ---
    { align: 8 },
    L("gdt"),
    { data: [0, 0, 0, 0, 0, 0, 0, 0], asm: "GDT 0x00: null descriptor" },
    { data: [0, 0, 0, 0, 0, 0, 0, 0], asm: "GDT 0x08: unused" },
    // limit 0xfffff, base 0, access 0x9a (present, ring 0, code, execute/read), flags 0xc (4 KiB, 32-bit)
    { data: [0xff, 0xff, 0, 0, 0, 0x9a, 0xcf, 0], asm: "GDT 0x10: __BOOT_CS flat 4 GiB code" },
    // same with access 0x92 (present, ring 0, data, read/write)
    { data: [0xff, 0xff, 0, 0, 0, 0x92, 0xcf, 0], asm: "GDT 0x18: __BOOT_DS flat 4 GiB data" },
    L("gdtr"),
    I("GDT pointer: limit 0x1f, base gdt", 0x1f, 0x00, abs("gdt")),
  ];
}

function size(p: Part): number {
  return typeof p === "number" ? 1 : "rel8" in p ? 1 : 4;
}

function insnLen(i: Insn): number {
  let n = 0;
  for (const p of i.parts) n += size(p);
  return n;
}

function le32(n: number): number[] {
  const v = n >>> 0;
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}

/**
 * Lays out `items` at address `base`: resolves labels (every instruction has a fixed size) and
 * fills in displacements and absolute addresses. `extra` adds labels computed from the size.
 */
export function assemble(
  items: Item[],
  base: number,
  extra: (size: number) => Record<string, number> = () => ({}),
): { code: Buffer; labels: Map<string, number>; listing: ListingLine[]; size: number } {
  const labels = new Map<string, number>();
  let pos = 0;
  for (const it of items) {
    if ("label" in it) labels.set(it.label, pos);
    else if ("align" in it) pos = Math.ceil(pos / it.align) * it.align;
    else if ("data" in it) pos += it.data.length;
    else pos += insnLen(it);
  }
  for (const [k, v] of Object.entries(extra(pos))) labels.set(k, v);
  const at = (name: string): number => {
    const v = labels.get(name);
    if (v === undefined) throw new Error(`assemble: no label ${name}`);
    return v;
  };
  const out: number[] = [];
  const listing: ListingLine[] = [];
  for (const it of items) {
    if ("label" in it) continue;
    if ("align" in it) {
      while (out.length % it.align) out.push(0x90); // nop
      continue;
    }
    if ("data" in it) {
      listing.push({ offset: out.length, bytes: it.data, asm: it.asm, data: true });
      out.push(...it.data);
      continue;
    }
    const start = out.length;
    const len = insnLen(it);
    const bytes: number[] = [];
    for (const p of it.parts) {
      if (typeof p === "number") bytes.push(p);
      else if ("imm32" in p) bytes.push(...le32(p.imm32));
      else if ("abs" in p) bytes.push(...le32(base + at(p.abs)));
      else {
        const d = at("rel8" in p ? p.rel8 : p.rel32) - (start + len);
        if ("rel8" in p) {
          if (d < -128 || d > 127) throw new Error(`assemble: ${it.asm} is out of rel8 range`);
          bytes.push(d & 0xff);
        } else bytes.push(...le32(d));
      }
    }
    listing.push({ offset: start, bytes, asm: it.asm });
    out.push(...bytes);
  }
  return { code: Buffer.from(out), labels, listing, size: pos };
}

/**
 * Assembles the trampoline for load address `base`, handing a zero page at `zeroPage` to the
 * kernel. Both must be below 4 GiB; the trampoline is position-dependent.
 */
export function buildTrampoline(base: number, zeroPage: number): Trampoline {
  if (base % 16 || base < 0 || base + 0x1000 > 2 ** 32) throw new RangeError("trampoline base");
  const a = assemble(program(zeroPage), base, (size) => ({
    stack_top: Math.ceil((size + STACK_BYTES) / 16) * 16,
  }));
  const codeEnd = a.labels.get("gdt")!;
  const listing = a.listing.map((l) => (l.offset >= codeEnd ? { ...l, data: true } : l));
  return { code: a.code, memLen: a.labels.get("stack_top")!, entry: base, codeEnd, listing };
}
