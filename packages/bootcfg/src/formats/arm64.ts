// arm64 and RISC-V `Image` headers (Documentation/arch/arm64/booting.rst, riscv/boot-image-header.rst).
import { formatError } from "../errors.js";
import { view } from "../util.js";

export interface ImageInfo {
  format: "arm64-image" | "riscv-image";
  arch: "arm64" | "riscv64";
  textOffset: bigint;
  imageSize: bigint;
  flags: bigint;
  bigEndian: boolean;
  pageSize: "unspecified" | "4K" | "16K" | "64K";
  physicalPlacementAnywhere: boolean;
  efiStub: boolean;
  peOffset: number;
}

const ARM64_MAGIC = 0x644d5241; // "ARM\x64"
// RISC-V: "RSC\x05" (magic2) at 56, where arm64 has "ARM\x64"; the older 8-byte "RISCV\0\0\0" sits at 48.
const RISCV_MAGIC = 0x05435352; // "RSC\x05"
const RISCV_MAGIC1 = Buffer.from("RISCV\0\0\0", "latin1");

export function isArm64Image(buf: Uint8Array): boolean {
  return buf.length >= 64 && view(buf).getUint32(56, true) === ARM64_MAGIC;
}

export function isRiscvImage(buf: Uint8Array): boolean {
  if (buf.length < 64) return false;
  // header version 0.1 kernels have only the 8-byte magic
  return (
    view(buf).getUint32(56, true) === RISCV_MAGIC || Buffer.from(buf.subarray(48, 56)).equals(RISCV_MAGIC1)
  );
}

export function parseKernelImage(buf: Uint8Array, what = "Image"): ImageInfo {
  const arm = isArm64Image(buf);
  if (!arm && !isRiscvImage(buf)) throw formatError(what, 'no "ARM\\x64" or "RSC\\x05" magic at offset 56');
  const dv = view(buf);
  const flags = dv.getBigUint64(24, true);
  const page = Number((flags >> 1n) & 3n);
  return {
    format: arm ? "arm64-image" : "riscv-image",
    arch: arm ? "arm64" : "riscv64",
    textOffset: dv.getBigUint64(8, true),
    imageSize: dv.getBigUint64(16, true),
    flags,
    bigEndian: (flags & 1n) === 1n,
    // flag bits 1-2 (page size) and 3 (placement) are arm64's; RISC-V defines bit 0 only
    pageSize: arm ? (["unspecified", "4K", "16K", "64K"] as const)[page]! : "unspecified",
    physicalPlacementAnywhere: arm ? (flags & 8n) === 8n : false,
    efiStub: buf[0] === 0x4d && buf[1] === 0x5a,
    peOffset: dv.getUint32(60, true),
  };
}
