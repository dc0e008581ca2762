// Synthetic boot files built byte by byte for unit tests (a few hundred bytes each).
import { gzipSync } from "node:zlib";

/** A bzImage-shaped buffer: boot sector + setup header fields, with a gzip payload. */
export function synthBzImage(
  o: {
    version?: number;
    xloadflags?: number;
    cmdlineSize?: number;
    payload?: Buffer;
    initSize?: number;
  } = {},
): Buffer {
  const payload = o.payload ?? gzipSync(Buffer.from("not really a kernel"));
  const setupSects = 1;
  const setup = (setupSects + 1) * 512;
  const b = Buffer.alloc(setup + payload.length);
  b[0x1f1] = setupSects;
  b.writeUInt16LE(0xaa55, 0x1fe);
  b.writeUInt32LE(0x53726448, 0x202);
  b.writeUInt16LE(o.version ?? 0x020f, 0x206);
  b.writeUInt16LE(0x300 - 0x200, 0x20e);
  b.write("9.9.9-test (synthetic) #1", 0x300, "latin1");
  b[0x211] = 1;
  b.writeUInt32LE(0x100000, 0x214);
  b.writeUInt32LE(0x7fffffff, 0x22c);
  b.writeUInt16LE(o.xloadflags ?? 1, 0x236);
  b.writeUInt32LE(o.cmdlineSize ?? 2047, 0x238);
  b.writeUInt32LE(0, 0x248);
  b.writeUInt32LE(payload.length, 0x24c);
  b.writeBigUInt64LE(0x1000000n, 0x258);
  b.writeUInt32LE(o.initSize ?? 0x100000, 0x260);
  payload.copy(b, setup);
  return b;
}

/** A minimal ELF64 (or ELF32) with the given PT_LOADs and an optional PVH note. */
export function synthElf(
  o: {
    machine?: number;
    class?: 32 | 64;
    entry?: number;
    loads?: Array<{ paddr: number; data: Buffer; memsz?: number; flags?: number }>;
    pvh?: number;
  } = {},
): Buffer {
  const is64 = (o.class ?? 64) === 64;
  const loads = o.loads ?? [{ paddr: 0x100000, data: Buffer.from("CODECODE"), flags: 5 }];
  const ehsize = is64 ? 64 : 52;
  const phent = is64 ? 56 : 32;
  const note = o.pvh !== undefined ? Buffer.alloc(12 + 4 + 4) : undefined;
  if (note) {
    note.writeUInt32LE(4, 0);
    note.writeUInt32LE(4, 4);
    note.writeUInt32LE(18, 8);
    note.write("Xen\0", 12, "latin1");
    note.writeUInt32LE(o.pvh!, 16);
  }
  const phnum = loads.length + (note ? 1 : 0);
  let off = ehsize + phnum * phent;
  const chunks: Buffer[] = [];
  const ph = Buffer.alloc(phnum * phent);
  loads.forEach((l, i) => {
    const p = i * phent;
    if (is64) {
      ph.writeUInt32LE(1, p);
      ph.writeUInt32LE(l.flags ?? 5, p + 4);
      ph.writeBigUInt64LE(BigInt(off), p + 8);
      ph.writeBigUInt64LE(BigInt(l.paddr) + 0xffffffff80000000n, p + 16);
      ph.writeBigUInt64LE(BigInt(l.paddr), p + 24);
      ph.writeBigUInt64LE(BigInt(l.data.length), p + 32);
      ph.writeBigUInt64LE(BigInt(l.memsz ?? l.data.length), p + 40);
      ph.writeBigUInt64LE(0x1000n, p + 48);
    } else {
      ph.writeUInt32LE(1, p);
      ph.writeUInt32LE(off, p + 4);
      ph.writeUInt32LE(l.paddr, p + 8);
      ph.writeUInt32LE(l.paddr, p + 12);
      ph.writeUInt32LE(l.data.length, p + 16);
      ph.writeUInt32LE(l.memsz ?? l.data.length, p + 20);
      ph.writeUInt32LE(l.flags ?? 5, p + 24);
      ph.writeUInt32LE(0x1000, p + 28);
    }
    chunks.push(l.data);
    off += l.data.length;
  });
  if (note) {
    const p = loads.length * phent;
    ph.writeUInt32LE(4, p);
    if (is64) {
      ph.writeBigUInt64LE(BigInt(off), p + 8);
      ph.writeBigUInt64LE(BigInt(note.length), p + 32);
    } else {
      ph.writeUInt32LE(off, p + 4);
      ph.writeUInt32LE(note.length, p + 16);
    }
    chunks.push(note);
  }
  const h = Buffer.alloc(ehsize);
  h.write("\x7fELF", 0, "latin1");
  h[4] = is64 ? 2 : 1;
  h[5] = 1;
  h[6] = 1;
  h.writeUInt16LE(2, 16);
  h.writeUInt16LE(o.machine ?? 0x3e, 18);
  h.writeUInt32LE(1, 20);
  if (is64) {
    h.writeBigUInt64LE(BigInt(o.entry ?? 0x100000), 24);
    h.writeBigUInt64LE(BigInt(ehsize), 32);
    h.writeUInt16LE(ehsize, 52);
    h.writeUInt16LE(phent, 54);
    h.writeUInt16LE(phnum, 56);
  } else {
    h.writeUInt32LE(o.entry ?? 0x100000, 24);
    h.writeUInt32LE(ehsize, 28);
    h.writeUInt16LE(ehsize, 40);
    h.writeUInt16LE(phent, 42);
    h.writeUInt16LE(phnum, 44);
  }
  return Buffer.concat([h, ph, ...chunks]);
}

export function synthArm64Image(o: { imageSize?: bigint; flags?: bigint; magic?: number } = {}): Buffer {
  const b = Buffer.alloc(4096);
  b.writeUInt32LE(0xfa405a4d, 0);
  b.writeBigUInt64LE(0n, 8);
  b.writeBigUInt64LE(o.imageSize ?? 0x1ab0000n, 16);
  b.writeBigUInt64LE(o.flags ?? 0xan, 24);
  b.writeUInt32LE(o.magic ?? 0x644d5241, 56);
  b.writeUInt32LE(0x40, 60);
  return b;
}
