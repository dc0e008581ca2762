// `bootcfg inspect`: recognise a boot file and decode everything bootcfg knows about it.
import { readFileSync } from "node:fs";
import { BootcfgError } from "./errors.js";
import { type ImageInfo, isArm64Image, isRiscvImage, parseKernelImage } from "./formats/arm64.js";
import { type BeobootInfo, isBeoboot, parseBeoboot } from "./formats/beoboot.js";
import { type BzImageInfo, isBzImage, parseBzImage } from "./formats/bzimage.js";
import { type CbfsInfo, isCbfs, parseCbfs } from "./formats/cbfs.js";
import { type Compression, detectCompression } from "./formats/compress.js";
import { isCpio } from "./formats/cpio.js";
import { type ElfInfo, isElf, parseElf } from "./formats/elf.js";
import { gunzipMember, type InitramfsMember, splitInitramfs } from "./formats/initramfs.js";
import { isUImage, parseUImage, type UImageInfo } from "./formats/uimage.js";
import { sha256 } from "./util.js";

export interface InitramfsInfo {
  format: "initramfs";
  members: InitramfsMember[];
}
export interface CompressedInfo {
  format: "compressed";
  compression: Compression;
}

export type Inspection = (
  | BzImageInfo
  | ElfInfo
  | ImageInfo
  | UImageInfo
  | BeobootInfo
  | CbfsInfo
  | InitramfsInfo
  | CompressedInfo
) & {
  file?: string;
  size: number;
  sha256: string;
};

/** The kernel formats a node can boot, as named in cluster files and plans. */
export type KernelFormat = "bzImage" | "elf" | "arm64-image" | "riscv-image" | "uimage";

/** Identifies and decodes `buf`. Throws EUNKNOWN for bytes in no known format, EFORMAT for damaged ones. */
export function inspectBuffer(buf: Uint8Array, what = "input"): Inspection {
  try {
    return inspectUnchecked(buf, what);
  } catch (err) {
    // A decoder that missed a bounds check reads outside the file: still a damaged file, not a crash.
    if (err instanceof RangeError)
      throw new BootcfgError(
        "EFORMAT",
        `${what}: damaged: a field points outside the file (${err.message})`,
        {
          cause: err,
        },
      );
    throw err;
  }
}

function inspectUnchecked(buf: Uint8Array, what: string): Inspection {
  const base = { size: buf.length, sha256: sha256(buf) };
  if (isBzImage(buf)) return { ...parseBzImage(buf, what), ...base };
  if (isElf(buf)) return { ...parseElf(buf, what), ...base };
  if (isArm64Image(buf) || isRiscvImage(buf)) return { ...parseKernelImage(buf, what), ...base };
  if (isUImage(buf)) return { ...parseUImage(buf, what), ...base };
  if (isBeoboot(buf)) return { ...parseBeoboot(buf, what), ...base };
  if (isCpio(buf)) return { format: "initramfs", members: splitInitramfs(buf, what), ...base };
  const comp = detectCompression(buf);
  if (comp === "gzip") {
    try {
      return { format: "initramfs", members: splitInitramfs(buf, what), ...base };
    } catch (err) {
      // Not an initramfs: gzip of something else, unless the gzip data itself is damaged or it
      // holds a cpio archive that is (then the initramfs error is the one to report).
      if (isCpio(gunzipMember(buf, what).data)) throw err;
      return { format: "compressed", compression: comp, ...base };
    }
  }
  if (comp) return { format: "compressed", compression: comp, ...base };
  if (isCbfs(buf)) return { ...parseCbfs(buf, what), ...base };
  throw new BootcfgError(
    "EUNKNOWN",
    `${what}: unknown format (not a bzImage, ELF, arm64/RISC-V Image, uImage, beoboot, CBFS, cpio or compressed file)`,
  );
}

export function inspectFile(path: string): Inspection {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new BootcfgError("EIO", `${path}: ${(err as Error).message}`, { cause: err });
  }
  return { file: path, ...inspectBuffer(buf, path) };
}

/** Kernel format of an inspection, or undefined when it is not a kernel. */
export function kernelFormatOf(i: Inspection): KernelFormat | undefined {
  switch (i.format) {
    case "bzImage":
    case "elf":
    case "arm64-image":
    case "riscv-image":
    case "uimage":
      return i.format;
    default:
      return undefined;
  }
}
