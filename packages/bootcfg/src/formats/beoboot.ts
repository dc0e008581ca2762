// Clustermatic beoboot network boot image: "BeoB", arch, flags, cmdline size, kernel and initrd
// sizes, then the NUL-terminated command line, the bzImage and the initrd.
// The original writer stored cmdline_size big-endian while kexec-tools reads it in host order;
// we write the order kexec-tools (the reader still in use) expects, little-endian, and the parser
// accepts both, choosing the one that matches the file's length.
import { formatError } from "../errors.js";
import { cstring, view } from "../util.js";

export const BEOBOOT_FLAG_INITRD = 1;
const ARCHES: Record<number, string> = { 1: "x86", 2: "alpha", 3: "ppc", 4: "ppc64" };

export interface BeobootInfo {
  format: "beoboot";
  arch: string;
  flags: number;
  cmdline: string;
  cmdlineSizeByteOrder: "little" | "big";
  kernelOffset: number;
  kernelSize: number;
  initrdOffset: number;
  initrdSize: number;
}

export function isBeoboot(buf: Uint8Array): boolean {
  return buf.length >= 16 && buf[0] === 0x42 && buf[1] === 0x65 && buf[2] === 0x6f && buf[3] === 0x42;
}

export function parseBeoboot(buf: Uint8Array, what = "beoboot image"): BeobootInfo {
  if (!isBeoboot(buf)) throw formatError(what, 'no "BeoB" magic');
  const dv = view(buf);
  const kernelSize = dv.getUint32(8, true);
  const initrdSize = dv.getUint32(12, true);
  const fits = (cmd: number) => 16 + cmd + kernelSize + initrdSize === buf.length;
  const le = dv.getUint16(6, true);
  const be = dv.getUint16(6, false);
  const order = fits(le) || !fits(be) ? "little" : "big";
  const cmdlineSize = order === "little" ? le : be;
  if (16 + cmdlineSize + kernelSize + initrdSize > buf.length)
    throw formatError(
      what,
      `sizes in the header (command line ${cmdlineSize}, kernel ${kernelSize}, initrd ${initrdSize}) exceed the file length ${buf.length}: truncated?`,
    );
  return {
    format: "beoboot",
    arch: ARCHES[buf[4]!] ?? `arch ${buf[4]}`,
    flags: buf[5]!,
    cmdline: cstring(buf, 16, cmdlineSize),
    cmdlineSizeByteOrder: order,
    kernelOffset: 16 + cmdlineSize,
    kernelSize,
    initrdOffset: 16 + cmdlineSize + kernelSize,
    initrdSize,
  };
}

export function writeBeoboot(kernel: Uint8Array, initrd: Uint8Array | undefined, cmdline: string): Buffer {
  const cmd = Buffer.from(`${cmdline}\0`, "latin1");
  if (cmd.length > 0xffff) throw formatError("beoboot image", "command line longer than 65535 bytes");
  const head = Buffer.alloc(16);
  head.write("BeoB", 0, "latin1");
  head[4] = 1;
  head[5] = initrd ? BEOBOOT_FLAG_INITRD : 0;
  head.writeUInt16LE(cmd.length, 6);
  head.writeUInt32LE(kernel.length, 8);
  head.writeUInt32LE(initrd?.length ?? 0, 12);
  return Buffer.concat([head, cmd, kernel, ...(initrd ? [initrd] : [])]);
}
