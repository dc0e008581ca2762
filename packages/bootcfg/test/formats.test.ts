// Format codecs on synthetic inputs built in the test (a few hundred bytes each).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32, gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { BootcfgError } from "../src/errors.js";
import { parseKernelImage } from "../src/formats/arm64.js";
import { parseBeoboot, writeBeoboot } from "../src/formats/beoboot.js";
import { extractVmlinux, parseBzImage } from "../src/formats/bzimage.js";
import {
  CBFS_TYPE_SELF,
  cbfsAddFile,
  cbfsFileData,
  createCbfs,
  elfToSelf,
  parseCbfs,
  parseSelf,
} from "../src/formats/cbfs.js";
import { detectCompression, lz4BlockDecode, lz4LegacyDecode } from "../src/formats/compress.js";
import { readCpio, writeCpio } from "../src/formats/cpio.js";
import { parseElf } from "../src/formats/elf.js";
import { splitInitramfs } from "../src/formats/initramfs.js";
import { parseUImage, type UImageOptions, writeUImage } from "../src/formats/uimage.js";
import { inspectBuffer } from "../src/inspect.js";
import { need, sh, tempDir } from "./helpers.js";
import { synthArm64Image, synthBzImage, synthElf } from "./synth.js";

describe("bzImage", () => {
  it("decodes the setup header fields and the version string", () => {
    const info = parseBzImage(synthBzImage({ xloadflags: 0x7f, cmdlineSize: 0x7ff }));
    expect(info.protocol).toBe("2.15");
    expect(info.header.setupSize).toBe(1024);
    expect(info.header.cmdlineSize).toBe(2047);
    expect(info.is64).toBe(true);
    expect(info.xloadflagsNames).toContain("CAN_BE_LOADED_ABOVE_4G");
    expect(info.versionString).toBe("9.9.9-test (synthetic) #1");
    expect(info.release).toBe("9.9.9-test");
    expect(info.payload.compression).toBe("gzip");
  });
  it("uses 255 as the command line limit before protocol 2.06", () => {
    expect(parseBzImage(synthBzImage({ version: 0x0205 })).header.cmdlineSize).toBe(255);
  });
  it("setup_sects 0 means 4", () => {
    // (padded: four sectors of setup is more than the synthetic image has, and a bzImage whose
    // file ends inside its setup code is refused as truncated)
    const b = Buffer.concat([synthBzImage(), Buffer.alloc(4096)]);
    b[0x1f1] = 0;
    expect(parseBzImage(b).header.setupSize).toBe(5 * 512);
  });
  it("extracts a gzip payload and checks the trailing size", () => {
    const elf = synthElf();
    const b = synthBzImage({ payload: gzipSync(elf) });
    expect(Buffer.from(extractVmlinux(b).elf).equals(elf)).toBe(true);
  });
  it("rejects a missing HdrS signature", () => {
    const b = synthBzImage();
    b.writeUInt32LE(0, 0x202);
    expect(() => parseBzImage(b)).toThrow(/HdrS/);
  });
});

describe("LZ4 legacy", () => {
  it("decodes literals, matches and overlapping matches", () => {
    // token 0x52: 5 literals "abcde", match len 2+4=6 at offset 5 -> "abcdea"; then 1 literal (last)
    const block = Buffer.from([0x52, ...Buffer.from("abcde"), 5, 0, 0x10, 0x21]);
    const out = new Uint8Array(32);
    const n = lz4BlockDecode(block, 0, block.length, out, 0);
    expect(Buffer.from(out.subarray(0, n)).toString()).toBe("abcdeabcdea!");
    // overlap: "a" then match offset 1 length 7 -> "aaaaaaaa"
    const rle = Buffer.from([0x13, 0x61, 1, 0, 0x10, 0x62]);
    const o2 = new Uint8Array(16);
    expect(Buffer.from(o2.subarray(0, lz4BlockDecode(rle, 0, rle.length, o2, 0))).toString()).toBe(
      "aaaaaaaab",
    );
  });
  it("reads the legacy frame and stops at the kernel's size trailer", () => {
    const block = Buffer.from([0x52, ...Buffer.from("abcde"), 5, 0, 0x10, 0x21]);
    const frame = Buffer.alloc(4 + 4 + block.length + 4);
    frame.writeUInt32LE(0x184c2102, 0);
    frame.writeUInt32LE(block.length, 4);
    block.copy(frame, 8);
    frame.writeUInt32LE(12, 8 + block.length);
    expect(Buffer.from(lz4LegacyDecode(frame)).toString()).toBe("abcdeabcdea!");
  });
  it("rejects a match offset before the start of output", () => {
    const bad = Buffer.from([0x10, 0x61, 9, 0, 0x10, 0x62]);
    expect(() => lz4BlockDecode(bad, 0, bad.length, new Uint8Array(32), 0)).toThrow(/offset/);
  });
});

describe("ELF", () => {
  it("reads PT_LOADs by physical address and the PVH note", () => {
    const e = parseElf(
      synthElf({
        pvh: 0x1000850,
        loads: [
          { paddr: 0x1000000, data: Buffer.alloc(16, 1) },
          { paddr: 0x2000000, data: Buffer.alloc(8), memsz: 64, flags: 6 },
        ],
      }),
    );
    expect(e.class).toBe(64);
    expect(e.machineName).toBe("x86_64");
    expect(e.programHeaders.filter((p) => p.type === 1).map((p) => p.paddr)).toEqual([
      0x1000000n,
      0x2000000n,
    ]);
    expect(e.pvhEntry).toBe(0x1000850);
  });
  it("reads ELF32", () => {
    const e = parseElf(synthElf({ class: 32, machine: 3, entry: 0x40000 }));
    expect(e.class).toBe(32);
    expect(e.entry).toBe(0x40000n);
    expect(e.machineName).toBe("i386");
  });
});

describe("arm64 Image", () => {
  it("decodes the 64-byte header", () => {
    const i = parseKernelImage(synthArm64Image());
    expect(i.arch).toBe("arm64");
    expect(i.imageSize).toBe(0x1ab0000n);
    expect(i.pageSize).toBe("4K");
    expect(i.physicalPlacementAnywhere).toBe(true);
    expect(i.efiStub).toBe(true);
  });
});

describe("RISC-V Image", () => {
  // Laid out as riscv/boot-image-header.rst has it: code0, code1, text_offset, image_size, flags,
  // version, res1, res2, magic "RISCV\0\0\0" at 48, magic2 "RSC\x05" at 56, res3 (PE offset).
  const rv = Buffer.alloc(4096);
  rv.writeUInt32LE(0x5a4d, 0); // "MZ" of an EFI stub
  rv.writeBigUInt64LE(0x200000n, 8);
  rv.writeBigUInt64LE(0x1400000n, 16);
  rv.writeBigUInt64LE(0n, 24);
  rv.writeUInt32LE(0x2, 32); // header version 0.2
  rv.write("RISCV\0\0\0", 48, "latin1");
  rv.write("RSC\x05", 56, "latin1");
  rv.writeUInt32LE(0x40, 60);
  it("is found by its magic at 56 and decoded", () => {
    expect(inspectBuffer(rv).format).toBe("riscv-image");
    expect(parseKernelImage(rv)).toMatchObject({
      arch: "riscv64",
      textOffset: 0x200000n,
      imageSize: 0x1400000n,
      bigEndian: false,
      pageSize: "unspecified",
      physicalPlacementAnywhere: false,
      efiStub: true,
      peOffset: 0x40,
    });
  });
  it("either magic is enough (header 0.1 has only the one at 48); neither is no Image", () => {
    const old = Buffer.from(rv);
    old.fill(0, 56, 60);
    expect(inspectBuffer(old).format).toBe("riscv-image");
    old.fill(0, 48, 56);
    expect(() => parseKernelImage(old)).toThrow(/no "ARM\\x64" or "RSC\\x05" magic at offset 56/);
  });
});

describe("uImage", () => {
  it("architecture codes are U-Boot's, as file(1) names them", (ctx) => {
    need(ctx, { tools: ["file"] });
    const t = tempDir();
    try {
      const names: Record<string, string> = {
        arm: "Linux/ARM,",
        arm64: "Linux/ARM 64-bit,",
        i386: "Linux/Intel x86,",
        x86_64: "Linux/x86_64,",
        ppc: "Linux/PowerPC,",
        riscv: "Linux/RISC-V,",
      };
      for (const [arch, name] of Object.entries(names)) {
        const img = writeUImage(Buffer.from("kernel"), {
          arch: arch as UImageOptions["arch"],
          load: 0x80000,
          entry: 0x80000,
          name: "L",
        });
        const f = join(t.dir, `${arch}.uimg`);
        writeFileSync(f, img);
        expect(sh("file", ["-b", f]).stdout, arch).toContain(
          `u-boot legacy uImage, L, ${name} OS Kernel Image (Not compressed), 6 bytes`,
        );
        expect(parseUImage(img).arch).toBe(arch);
      }
    } finally {
      t.cleanup();
    }
  });
  it("round-trips and verifies both CRCs", () => {
    const data = Buffer.from("kernel bytes");
    const img = writeUImage(data, { arch: "arm64", load: 0x80080000, entry: 0x80080000, name: "Linux test" });
    const u = parseUImage(img);
    expect(u).toMatchObject({
      arch: "arm64",
      os: "linux",
      type: "kernel",
      name: "Linux test",
      dataSize: data.length,
      headerCrcOk: true,
      dataCrcOk: true,
    });
    expect(u.dataCrc).toBe(crc32(data));
    img[70] = (img[70] ?? 0) ^ 1;
    expect(parseUImage(img).dataCrcOk).toBe(false);
  });
});

describe("beoboot", () => {
  it("round-trips, and reads the big-endian cmdline size of the original writer", () => {
    const b = writeBeoboot(Buffer.from("KERNEL"), Buffer.from("INITRD!"), "console=ttyS0");
    const i = parseBeoboot(b);
    expect(i).toMatchObject({
      cmdline: "console=ttyS0",
      kernelSize: 6,
      initrdSize: 7,
      cmdlineSizeByteOrder: "little",
    });
    expect(b.subarray(i.kernelOffset, i.kernelOffset + 6).toString()).toBe("KERNEL");
    const be = Buffer.from(b);
    be.writeUInt16BE(14, 6);
    expect(parseBeoboot(be)).toMatchObject({ cmdline: "console=ttyS0", cmdlineSizeByteOrder: "big" });
  });
});

describe("cpio newc", () => {
  const entries = [
    { name: "dev", type: "dir" as const, perm: 0o755 },
    { name: "dev/console", type: "char" as const, perm: 0o600, rdevMajor: 5, rdevMinor: 1 },
    { name: "etc/hostname", type: "file" as const, perm: 0o644, data: "n07\n" },
    { name: "bin/sh", type: "symlink" as const, perm: 0o777, data: "busybox" },
    { name: "a", type: "file" as const, perm: 0o644, data: "shared", linkGroup: "x" },
    { name: "b", type: "file" as const, perm: 0o644, data: "shared", linkGroup: "x" },
    { name: "run/fifo", type: "fifo" as const, perm: 0o600 },
  ];
  it("writes 110-byte headers, 4-byte padding and a trailer", () => {
    const buf = writeCpio(entries);
    expect(buf.length % 4).toBe(0);
    expect(buf.subarray(0, 6).toString()).toBe("070701");
    expect(buf.includes("TRAILER!!!")).toBe(true);
    const { entries: got } = readCpio(buf);
    expect(got.map((e) => [e.name, e.type])).toEqual(entries.map((e) => [e.name, e.type]));
    const con = got.find((e) => e.name === "dev/console")!;
    expect([con.rdevMajor, con.rdevMinor, con.mode]).toEqual([5, 1, 0o020600]);
    const [a, b] = [got.find((e) => e.name === "a")!, got.find((e) => e.name === "b")!];
    expect(a.ino).toBe(b.ino);
    expect([a.size, b.size, a.nlink]).toEqual([0, 6, 2]); // data once, on the last link
  });
  it("is byte-identical across runs (fixed mtime, uid, inode order)", () => {
    expect(writeCpio(entries).equals(writeCpio(entries))).toBe(true);
  });
  it("splits a gzip base followed by a plain overlay, as the kernel reads it", () => {
    const base = gzipSync(writeCpio(entries.slice(0, 3)));
    const overlay = writeCpio([
      { name: "etc/bootcfg/node.conf", type: "file", perm: 0o644, data: "node=n1" },
    ]);
    // NUL padding up to the next 4-byte boundary, where the kernel looks for the next cpio header
    const pad = Buffer.alloc(((4 - (base.length % 4)) % 4) + 4);
    const members = splitInitramfs(Buffer.concat([base, pad, overlay]));
    expect(members.map((m) => m.compression)).toEqual(["gzip", "none"]);
    expect(members[1]!.entries!.map((e) => e.name)).toEqual(["etc/bootcfg/node.conf"]);
  });
});

describe("SELF and CBFS", () => {
  it("turns PT_LOADs into CODE/DATA/BSS segments and ENTR", () => {
    const elf = synthElf({
      entry: 0x401000,
      loads: [
        { paddr: 0x400000, data: Buffer.alloc(100, 7), flags: 4 },
        { paddr: 0x401000, data: Buffer.from("code"), flags: 5 },
        { paddr: 0x500000, data: Buffer.alloc(0), memsz: 4096, flags: 6 },
      ],
    });
    const segs = parseSelf(elfToSelf(elf));
    expect(segs.map((s) => s.type)).toEqual(["data", "code", "bss", "entry"]);
    expect(segs[0]).toMatchObject({ offset: 4 * 28, load: 0x400000n, len: 100, memLen: 100 });
    expect(segs[1]).toMatchObject({ offset: 4 * 28 + 100, len: 4 });
    expect(segs[2]).toMatchObject({ len: 0, memLen: 4096 });
    expect(segs[3]!.load).toBe(0x401000n);
  });
  it("creates an image, adds a payload into free space and finds it again", () => {
    const self = elfToSelf(synthElf());
    const rom = cbfsAddFile(createCbfs(1 << 20), "fallback/payload", CBFS_TYPE_SELF, self);
    const info = parseCbfs(rom);
    expect(info.files.map((f) => [f.name, f.typeName])).toEqual([
      ["fallback/payload", "simple elf"],
      ["", "null"],
    ]);
    expect(info.files[1]!.offset % 64).toBe(0);
    expect(Buffer.from(cbfsFileData(rom, info.files[0]!)).equals(self)).toBe(true);
    expect(() => cbfsAddFile(rom, "fallback/payload", CBFS_TYPE_SELF, self)).toThrow(/already exists/);
  });
});

describe("inspect", () => {
  it("names compressed wrappers by magic", () => {
    expect(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))).toBe("xz");
    expect(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe("zstd");
    expect(inspectBuffer(Buffer.from([0x42, 0x5a, 0x68, 0x39, 1, 2, 3]))).toMatchObject({
      format: "compressed",
      compression: "bzip2",
    });
  });
  it("refuses random bytes as an unknown format", () => {
    let seed = 1;
    const rnd = Buffer.alloc(4096).map(() => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
    rnd[0] = 0x11;
    let err: unknown;
    try {
      inspectBuffer(rnd, "random.bin");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BootcfgError);
    expect((err as BootcfgError).code).toBe("EUNKNOWN");
    expect((err as Error).message).toMatch(/random\.bin: unknown format/);
  });
});
