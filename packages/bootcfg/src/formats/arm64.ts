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
const RISCV_MAGIC = 0x05435352; // "RSC\x05"

export function isArm64Image(buf: Uint8Array): boolean {
  return buf.length >= 64 && view(buf).getUint32(56, true) === ARM64_MAGIC;
}

export function isRiscvImage(buf: Uint8Array): boolean {
  return buf.length >= 64 && view(buf).getUint32(52, true) === RISCV_MAGIC;
}

export function parseKernelImage(buf: Uint8Array, what = "Image"): ImageInfo {
  const arm = isArm64Image(buf);
  if (!arm && !isRiscvImage(buf)) throw formatError(what, 'no "ARM\\x64" magic at offset 56');
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
    pageSize: (["unspecified", "4K", "16K", "64K"] as const)[page]!,
    physicalPlacementAnywhere: arm ? (flags & 8n) === 8n : false,
    efiStub: buf[0] === 0x4d && buf[1] === 0x5a,
    peOffset: dv.getUint32(60, true),
  };
}
