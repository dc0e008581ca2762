// x86 bzImage: the real-mode boot sector, the setup header at 0x1f1 and the compressed payload.
// Offsets follow the Linux x86 boot protocol (Documentation/arch/x86/boot.rst); all little-endian.
import { formatError } from "../errors.js";
import { cstring, view } from "../util.js";
import { type Compression, decompress, detectCompression, lz4LegacyDecode } from "./compress.js";
import { verifyGzip } from "./inflate.js";

export interface SetupHeader {
  setupSects: number;
  /** Bytes of real-mode setup code before the protected-mode kernel: (setup_sects || 4) + 1 sectors. */
  setupSize: number;
  rootFlags: number;
  syssize: number;
  vidMode: number;
  rootDev: number;
  bootFlag: number;
  jump: number;
  /** Boot protocol version as major*256+minor (0x020f = 2.15). */
  version: number;
  kernelVersionOffset: number;
  typeOfLoader: number;
  loadflags: number;
  code32Start: number;
  heapEndPtr: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatableKernel: number;
  minAlignment: number;
  xloadflags: number;
  /** Longest command line the kernel accepts, NUL excluded (255 before protocol 2.06). */
  cmdlineSize: number;
  hardwareSubarch: number;
  payloadOffset: number;
  payloadLength: number;
  prefAddress: bigint;
  initSize: number;
  handoverOffset: number;
  kernelInfoOffset: number;
}

export interface BzImageInfo {
  format: "bzImage";
  header: SetupHeader;
  protocol: string;
  /** The kernel version string the header points to ("6.1.0-56-cloud-amd64 (debian…) #1 SMP …"). */
  versionString: string;
  /** First word of the version string, the `uname -r` of the kernel. */
  release: string;
  is64: boolean;
  canLoadAbove4G: boolean;
  efiStub: boolean;
  /** File offset and length of the compressed kernel. */
  payload: {
    offset: number;
    length: number;
    compression: Compression | "none" | "unknown";
    decompressedSize: number;
  };
  loadflagsNames: string[];
  xloadflagsNames: string[];
}

const XLF = [
  "KERNEL_64",
  "CAN_BE_LOADED_ABOVE_4G",
  "EFI_HANDOVER_32",
  "EFI_HANDOVER_64",
  "EFI_KEXEC",
  "5LEVEL",
  "5LEVEL_ENABLED",
  "MEM_ENCRYPTION",
];
const LF: Record<number, string> = {
  0: "LOADED_HIGH",
  1: "KASLR_FLAG",
  5: "QUIET_FLAG",
  6: "KEEP_SEGMENTS",
  7: "CAN_USE_HEAP",
};

export function isBzImage(buf: Uint8Array): boolean {
  if (buf.length < 0x250) return false;
  const dv = view(buf);
  return dv.getUint16(0x1fe, true) === 0xaa55 && dv.getUint32(0x202, true) === 0x53726448;
}

export function parseSetupHeader(buf: Uint8Array, what = "bzImage"): SetupHeader {
  if (buf.length < 0x250)
    throw formatError(what, `${buf.length} bytes is too short for a bzImage setup header`);
  const dv = view(buf);
  if (dv.getUint16(0x1fe, true) !== 0xaa55) throw formatError(what, "no boot flag 0xAA55 at 0x1fe");
  if (dv.getUint32(0x202, true) !== 0x53726448) throw formatError(what, 'no "HdrS" signature at 0x202');
  const version = dv.getUint16(0x206, true);
  const at = (off: number, size: 1 | 2 | 4, minVersion: number): number => {
    if (version < minVersion || off + size > buf.length) return 0;
    return size === 1 ? dv.getUint8(off) : size === 2 ? dv.getUint16(off, true) : dv.getUint32(off, true);
  };
  const setupSects = dv.getUint8(0x1f1);
  return {
    setupSects,
    setupSize: ((setupSects === 0 ? 4 : setupSects) + 1) * 512,
    rootFlags: dv.getUint16(0x1f2, true),
    syssize: dv.getUint32(0x1f4, true),
    vidMode: dv.getUint16(0x1fa, true),
    rootDev: dv.getUint16(0x1fc, true),
    bootFlag: dv.getUint16(0x1fe, true),
    jump: dv.getUint16(0x200, true),
    version,
    kernelVersionOffset: at(0x20e, 2, 0x200),
    typeOfLoader: at(0x210, 1, 0x200),
    loadflags: at(0x211, 1, 0x200),
    code32Start: at(0x214, 4, 0x200),
    heapEndPtr: at(0x224, 2, 0x201),
    initrdAddrMax: version >= 0x203 ? at(0x22c, 4, 0x203) : 0x37ffffff,
    kernelAlignment: at(0x230, 4, 0x205),
    relocatableKernel: at(0x234, 1, 0x205),
    minAlignment: at(0x235, 1, 0x20a),
    xloadflags: at(0x236, 2, 0x20c),
    cmdlineSize: version >= 0x206 ? at(0x238, 4, 0x206) : 255,
    hardwareSubarch: at(0x23c, 4, 0x207),
    payloadOffset: at(0x248, 4, 0x208),
    payloadLength: at(0x24c, 4, 0x208),
    prefAddress: version >= 0x20a && buf.length >= 0x260 ? dv.getBigUint64(0x258, true) : 0n,
    initSize: at(0x260, 4, 0x20a),
    handoverOffset: at(0x264, 4, 0x20b),
    kernelInfoOffset: at(0x268, 4, 0x20f),
  };
}

/**
 * Refuses a bzImage whose file is shorter than its header says: the setup code, the protected-mode
 * kernel (`syssize`, protocol 2.04+) and the compressed payload (2.08+) must all be in the file.
 * A kernel cut short (an interrupted copy or download) would otherwise be planned, converted and
 * booted, and fail only on the node.
 */
/** `lz4Decoded`: the caller decodes an LZ4 payload itself and checks it (extractVmlinux). */
export function checkBzImageComplete(
  h: SetupHeader,
  buf: Uint8Array,
  what: string,
  opts: { lz4Decoded?: boolean } = {},
): void {
  const cut = (need: number, part: string) =>
    formatError(
      what,
      `truncated: the file is ${buf.length} bytes but its ${part} ends at ${need} (cut short during a copy?)`,
    );
  if (buf.length <= h.setupSize)
    throw formatError(
      what,
      `no protected-mode kernel after the setup code (${h.setupSize} bytes of setup, file of ${buf.length}): truncated?`,
    );
  // syssize counts 16-byte paragraphs, rounded up: the file may end up to 15 bytes before.
  if (h.version >= 0x204 && h.syssize > 0 && h.setupSize + h.syssize * 16 - 15 > buf.length)
    throw cut(h.setupSize + h.syssize * 16, "protected-mode kernel (syssize)");
  const payloadEnd = h.setupSize + h.payloadOffset + h.payloadLength;
  if (h.version >= 0x208 && h.payloadLength > 0 && payloadEnd > buf.length)
    throw cut(payloadEnd, "compressed payload (payload_offset + payload_length)");
  // A gzip payload is decoded whole, as the kernel's decompressor will (every block, CRC32 and
  // size), without keeping what it decodes to; its member must be what payload_length says.
  const payloadStart = h.setupSize + h.payloadOffset;
  if (h.version >= 0x208 && h.payloadLength > 0 && detectCompression(buf, payloadStart) === "gzip") {
    const payload = buf.subarray(payloadStart, payloadEnd);
    const { length } = verifyGzip(payload, `${what} payload`);
    if (length !== h.payloadLength)
      throw formatError(
        what,
        `payload_length is ${h.payloadLength} bytes but its gzip data ends after ${length} (damaged header or payload)`,
      );
  }
  // LZ4 (legacy, as the kernel build writes it) has no checksum: it is decoded whole and must come
  // to the size the build's trailer gives, as the kernel's decompressor needs.
  if (
    !opts.lz4Decoded &&
    h.version >= 0x208 &&
    h.payloadLength > 4 &&
    detectCompression(buf, payloadStart) === "lz4-legacy"
  ) {
    const payload = buf.subarray(payloadStart, payloadEnd);
    const trailer = view(buf).getUint32(payloadEnd - 4, true);
    const out = lz4LegacyDecode(payload.subarray(0, payload.length - 4), `${what} payload`, trailer);
    if (out.length !== trailer)
      throw formatError(
        what,
        `payload decompressed to ${out.length} bytes, trailer says ${trailer} (damaged payload)`,
      );
  }
}

export function parseBzImage(
  buf: Uint8Array,
  what = "bzImage",
  opts: { lz4Decoded?: boolean } = {},
): BzImageInfo {
  const h = parseSetupHeader(buf, what);
  checkBzImageComplete(h, buf, what, opts);
  const versionString = h.kernelVersionOffset ? cstring(buf, h.kernelVersionOffset + 0x200, 512) : "";
  const payloadStart = h.setupSize + h.payloadOffset;
  let compression: BzImageInfo["payload"]["compression"] = "unknown";
  let decompressedSize = 0;
  if (h.payloadLength > 0 && payloadStart + h.payloadLength <= buf.length) {
    compression = detectCompression(buf, payloadStart) ?? "unknown";
    decompressedSize = view(buf).getUint32(payloadStart + h.payloadLength - 4, true);
  }
  return {
    format: "bzImage",
    header: h,
    protocol: `${h.version >> 8}.${(h.version & 0xff).toString().padStart(2, "0")}`,
    versionString,
    release: versionString.split(" ")[0] ?? "",
    is64: (h.xloadflags & 1) !== 0,
    canLoadAbove4G: (h.xloadflags & 2) !== 0,
    efiStub: buf[0] === 0x4d && buf[1] === 0x5a,
    payload: { offset: payloadStart, length: h.payloadLength, compression, decompressedSize },
    loadflagsNames: Object.entries(LF)
      .filter(([bit]) => h.loadflags & (1 << Number(bit)))
      .map(([, n]) => n),
    xloadflagsNames: XLF.filter((_, bit) => h.xloadflags & (1 << bit)),
  };
}

/**
 * Whether a bzImage is a relocatable 64-bit one: boot protocol 2.12 or later, LOADED_HIGH,
 * XLF_KERNEL_64 and XLF_CAN_BE_LOADED_ABOVE_4G. kexec-tools' `bzImage64` loader and the kernel's
 * kexec_file_load take only such kernels; a 64-bit kernel without bit 1 of xloadflags (built
 * without CONFIG_RELOCATABLE) is loaded by the `bzImage` loader through its 32-bit entry.
 */
export function isBzImage64(info: Pick<BzImageInfo, "header">): boolean {
  const h = info.header;
  return h.version >= 0x20c && (h.loadflags & 1) !== 0 && (h.xloadflags & 3) === 3;
}

/**
 * Returns the decompressed payload of a bzImage (the `vmlinux` ELF), checking its size against
 * the 4-byte trailer the kernel build appends to the compressed data.
 */
export function extractVmlinux(buf: Uint8Array, what = "bzImage"): { elf: Uint8Array; info: BzImageInfo } {
  // The payload is decoded here once, checked against the trailer below.
  const info = parseBzImage(buf, what, { lz4Decoded: true });
  const { offset, length, compression, decompressedSize } = info.payload;
  if (length === 0)
    throw formatError(what, `boot protocol ${info.protocol} has no payload fields (needs 2.08)`);
  if (offset + length > buf.length)
    throw formatError(what, "payload extends past the end of the file (truncated?)");
  const payload = buf.subarray(offset, offset + length);
  const out =
    compression === "lz4-legacy"
      ? lz4LegacyDecode(payload, `${what} payload`, decompressedSize)
      : decompress(payload, `${what} payload`);
  if (out.length !== decompressedSize)
    throw formatError(what, `payload decompressed to ${out.length} bytes, trailer says ${decompressedSize}`);
  return { elf: out, info };
}
