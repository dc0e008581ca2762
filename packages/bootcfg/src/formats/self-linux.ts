// An x86 bzImage (plus command line and initrd) as a coreboot SELF payload, without cbfstool.
//
// Segments, all uncompressed, none overlapping each other or the kernel's working area:
//   DATA  0x90000   zero page (boot_params): the bzImage setup header copied to 0x1f1, with
//                   type_of_loader 0xff, CAN_USE_HEAP, code32_start, cmd_line_ptr and the initrd
//   CODE  K         the protected-mode kernel at its load address (pref_address for a relocatable
//                   kernel, else 0x100000); in memory it spans max(file bytes, init_size)
//   CODE  T         the trampoline (trampoline-x86.ts) plus its stack, after the command line
//   DATA  0x91000   the command line and its NUL
//   DATA  I         the initrd, 1 MiB-aligned above the kernel's working area, ending at or
//                   below initrd_addr_max
//   ENTR  T
// The E820 table is left empty here: the trampoline fills it from the coreboot tables at boot.
import { BootcfgError, formatError } from "../errors.js";
import { align, hex } from "../util.js";
import { checkBzImageComplete, parseSetupHeader, type SetupHeader } from "./bzimage.js";
import { type SelfInput, writeSelf } from "./cbfs.js";
import { buildTrampoline, type Trampoline } from "./trampoline-x86.js";

export const ZERO_PAGE_ADDR = 0x90000;
export const CMDLINE_ADDR = 0x91000;
/** End of the low-memory area used for the zero page, command line and trampoline. */
export const LOW_AREA_END = 0x9f000;
export const INITRD_ALIGN = 0x100000;
const MiB = 0x100000;
const FOUR_GIB = 2 ** 32;

/** Address ranges a payload segment must never cover. */
export const RESERVED_RANGES: ReadonlyArray<{ name: string; start: number; end: number }> = [
  { name: "real-mode vectors, BIOS data and the coreboot low table (0x0-0xfff)", start: 0, end: 0x1000 },
  { name: "VGA and BIOS area (0xa0000-0xfffff)", start: 0xa0000, end: 0x100000 },
];

export interface LinuxPayloadOptions {
  cmdline?: string;
  initrd?: Uint8Array;
  /** Place the initrd here instead of just above the kernel's working area (4 KiB-aligned). */
  initrdAddress?: number;
}

export interface PayloadRange {
  name: "zero page" | "kernel" | "trampoline" | "command line" | "initrd";
  type: "code" | "data";
  start: number;
  /** File bytes of the segment. */
  len: number;
  /** Bytes the segment occupies in memory (the kernel: up to init_size). */
  memLen: number;
}

export interface LinuxPayload {
  self: Buffer;
  /** The segments in SELF order (ENTR excluded). */
  ranges: PayloadRange[];
  entry: number;
  kernelLoad: number;
  initrd?: { address: number; size: number };
  cmdline: string;
  /** Lowest top of RAM the layout needs (end of the initrd or of the kernel's working area). */
  minMemory: number;
  zeroPage: Buffer;
  trampoline: Trampoline;
  protocol: string;
}

/** Where the protected-mode kernel goes, per the boot protocol. */
export function kernelLoadAddress(h: SetupHeader): number {
  if (h.relocatableKernel && h.version >= 0x20a && h.prefAddress >= 0x100000n) {
    if (h.prefAddress >= BigInt(FOUR_GIB)) throw new BootcfgError("ECHECK", "pref_address is above 4 GiB");
    return Number(h.prefAddress);
  }
  if (h.relocatableKernel && h.kernelAlignment > 0) return align(0x100000, h.kernelAlignment);
  return 0x100000;
}

/** Bytes the kernel needs from its load address while it decompresses and runs. */
export function kernelSpan(h: SetupHeader, kernelBytes: number): number {
  // init_size exists from protocol 2.10; before it, assume the decompressed kernel and its
  // working space fit in four times the compressed image (documented as a limit).
  const need = h.initSize > 0 ? h.initSize : kernelBytes * 4;
  return align(Math.max(need, kernelBytes), 0x1000);
}

/**
 * The zero page (struct boot_params, 4096 bytes) for the 32-bit boot protocol: zeros, the setup
 * header copied from the image at 0x1f1 up to 0x202 + image[0x201], then the loader's fields.
 */
export function buildZeroPage(
  bz: Uint8Array,
  h: SetupHeader,
  f: { kernelLoad: number; cmdlinePtr: number; initrd?: { address: number; size: number } },
): Buffer {
  const zp = Buffer.alloc(4096);
  const end = Math.min(0x202 + (bz[0x201] ?? 0), 0x1000, bz.length);
  zp.set(bz.subarray(0x1f1, end), 0x1f1);
  zp[0x210] = 0xff; // type_of_loader: unregistered loader
  zp[0x211] = (h.loadflags | 0x80) & 0xff; // CAN_USE_HEAP (heap_end_ptr below)
  zp.writeUInt16LE(0xde00, 0x224); // heap_end_ptr (used only by real-mode setup code)
  zp.writeUInt32LE(f.kernelLoad, 0x214); // code32_start: the trampoline jumps here
  zp.writeUInt32LE(f.initrd?.address ?? 0, 0x218); // ramdisk_image
  zp.writeUInt32LE(f.initrd?.size ?? 0, 0x21c); // ramdisk_size
  zp.writeUInt32LE(f.cmdlinePtr, 0x228); // cmd_line_ptr
  zp[0x226] = 0; // ext_loader_ver
  zp[0x227] = 0; // ext_loader_type
  zp[0x1e8] = 0; // e820_entries: filled by the trampoline
  return zp;
}

function overlap(a: { start: number; end: number }, b: { start: number; end: number }): boolean {
  return a.start < b.end && b.start < a.end;
}

/** Throws when two ranges overlap or a range covers low memory the firmware and BIOS use. */
export function checkRanges(ranges: PayloadRange[], what = "payload"): void {
  const spans = ranges.map((r) => ({
    name: r.name,
    start: r.start,
    end: r.start + Math.max(r.len, r.memLen),
  }));
  for (const [i, a] of spans.entries()) {
    if (a.end > FOUR_GIB) throw new BootcfgError("ECHECK", `${what}: the ${a.name} ends above 4 GiB`);
    for (const r of RESERVED_RANGES)
      if (overlap(a, r))
        throw new BootcfgError(
          "ECHECK",
          `${what}: the ${a.name} (${hex(a.start)}-${hex(a.end - 1)}) covers the ${r.name}`,
        );
    for (const b of spans.slice(i + 1))
      if (overlap(a, b))
        throw new BootcfgError(
          "ECHECK",
          `${what}: the ${a.name} (${hex(a.start)}-${hex(a.end - 1)}) overlaps the ${b.name} (${hex(b.start)}-${hex(b.end - 1)})`,
        );
  }
}

/** Converts a bzImage into a SELF payload (see the layout at the top of this file). */
export function bzImageToSelf(
  bz: Uint8Array,
  opts: LinuxPayloadOptions = {},
  what = "bzImage",
): LinuxPayload {
  const h = parseSetupHeader(bz, what);
  const protocol = `${h.version >> 8}.${(h.version & 0xff).toString().padStart(2, "0")}`;
  if (h.version < 0x206)
    throw formatError(
      what,
      `boot protocol ${protocol} is older than 2.06 (needed: cmdline_size and the 32-bit entry as documented)`,
    );
  if (!(h.loadflags & 1))
    throw formatError(what, "not loaded high (LOADED_HIGH clear): a zImage, not a bzImage");
  checkBzImageComplete(h, bz, what);
  const cmdline = opts.cmdline ?? "";
  if (cmdline.includes("\0")) throw new BootcfgError("EUSAGE", "the command line contains a NUL byte");
  const cmdBytes = Buffer.from(`${cmdline}\0`, "latin1");
  if (cmdBytes.length - 1 > h.cmdlineSize)
    throw new BootcfgError(
      "ECHECK",
      `${what}: command line of ${cmdBytes.length - 1} bytes is longer than the kernel's cmdline_size ${h.cmdlineSize}`,
    );

  const kernel = bz.subarray(h.setupSize);
  const kernelLoad = kernelLoadAddress(h);
  const span = kernelSpan(h, kernel.length);
  const trampBase = align(CMDLINE_ADDR + cmdBytes.length, 0x1000);
  const trampoline = buildTrampoline(trampBase, ZERO_PAGE_ADDR);
  if (trampBase + trampoline.memLen > LOW_AREA_END)
    throw new BootcfgError(
      "ECHECK",
      `${what}: the command line (${cmdBytes.length} bytes) leaves no room for the trampoline below ${hex(LOW_AREA_END)}`,
    );

  let initrd: { address: number; size: number } | undefined;
  if (opts.initrd && opts.initrd.length > 0) {
    const size = opts.initrd.length;
    const address = opts.initrdAddress ?? align(kernelLoad + span, INITRD_ALIGN);
    if (address % 0x1000)
      throw new BootcfgError("EUSAGE", `initrd address ${hex(address)} is not 4 KiB-aligned`);
    const last = address + size - 1;
    if (last > h.initrdAddrMax)
      throw new BootcfgError(
        "ECHECK",
        `${what}: initrd of ${size} bytes at ${hex(address)} would end at ${hex(last)}, above the kernel's initrd_addr_max ${hex(h.initrdAddrMax)}`,
      );
    initrd = { address, size };
  }

  const zeroPage = buildZeroPage(bz, h, {
    kernelLoad,
    cmdlinePtr: CMDLINE_ADDR,
    ...(initrd ? { initrd } : {}),
  });
  const ranges: PayloadRange[] = [
    { name: "zero page", type: "data", start: ZERO_PAGE_ADDR, len: zeroPage.length, memLen: zeroPage.length },
    { name: "kernel", type: "code", start: kernelLoad, len: kernel.length, memLen: span },
    {
      name: "trampoline",
      type: "code",
      start: trampBase,
      len: trampoline.code.length,
      memLen: trampoline.memLen,
    },
    {
      name: "command line",
      type: "data",
      start: CMDLINE_ADDR,
      len: cmdBytes.length,
      memLen: cmdBytes.length,
    },
  ];
  if (initrd)
    ranges.push({
      name: "initrd",
      type: "data",
      start: initrd.address,
      len: initrd.size,
      memLen: initrd.size,
    });
  checkRanges(ranges, what);

  const data: Record<PayloadRange["name"], Uint8Array> = {
    "zero page": zeroPage,
    kernel,
    trampoline: trampoline.code,
    "command line": cmdBytes,
    initrd: opts.initrd ?? new Uint8Array(0),
  };
  const segs: SelfInput[] = ranges.map((r) => ({
    type: r.type,
    load: BigInt(r.start),
    data: data[r.name],
    memLen: r.memLen,
  }));
  const self = writeSelf(segs, BigInt(trampoline.entry));
  const minMemory = Math.max(kernelLoad + span, initrd ? initrd.address + initrd.size : 0);
  return {
    self,
    ranges,
    entry: trampoline.entry,
    kernelLoad,
    ...(initrd ? { initrd } : {}),
    cmdline,
    minMemory: align(minMemory, MiB),
    zeroPage,
    trampoline,
    protocol,
  };
}
