// bzImage → SELF conversion on synthetic images: zero page fields, segment layout, initrd
// placement, refusals; the trampoline bytes disassembled by objdump against their documented
// mnemonics; the CLI's payload build and coreboot --format payload.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BootcfgError } from "../src/errors.js";
import { parseSelf } from "../src/formats/cbfs.js";
import { writeCpio } from "../src/formats/cpio.js";
import {
  bzImageToSelf,
  CMDLINE_ADDR,
  checkRanges,
  LOW_AREA_END,
  ZERO_PAGE_ADDR,
} from "../src/formats/self-linux.js";
import { BOOT_CS, BOOT_DS, buildTrampoline } from "../src/formats/trampoline-x86.js";
import { need, run, sh, tempDir } from "./helpers.js";
import { ipChecksum, lbForward, lbTable } from "./multiboot.js";
import { synthBzImage, synthElf } from "./synth.js";

const t = tempDir("bootcfg-self-");
afterAll(() => t.cleanup());

/** A synthetic bzImage with a real setup-header length (jump eb 6a → header ends at 0x26c). */
function bz(
  o: Parameters<typeof synthBzImage>[0] & {
    relocatable?: boolean;
    initrdAddrMax?: number;
    loadflags?: number;
  } = {},
): Buffer {
  const b = synthBzImage({ initSize: 0x300000, payload: Buffer.alloc(0x5000, 0x5a), ...o });
  b[0x200] = 0xeb;
  b[0x201] = 0x6a;
  if (o.relocatable) {
    b.writeUInt32LE(0x200000, 0x230); // kernel_alignment
    b[0x234] = 1; // relocatable_kernel
  }
  if (o.initrdAddrMax !== undefined) b.writeUInt32LE(o.initrdAddrMax, 0x22c);
  if (o.loadflags !== undefined) b[0x211] = o.loadflags;
  return b;
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof BootcfgError ? `${e.code}: ${e.message}` : `${(e as Error).message}`;
  }
  return "no error";
}

describe("bzImage → SELF", () => {
  const image = bz({ relocatable: true });
  const initrd = Buffer.alloc(300_000, 7);
  const p = bzImageToSelf(image, { cmdline: "console=ttyS0 bootcfg.node=n1", initrd });

  it("zero page: setup header copied at 0x1f1, loader fields written, the rest zero", () => {
    const zp = p.zeroPage;
    expect(zp.length).toBe(4096);
    expect(zp.subarray(0, 0x1f1).every((x) => x === 0)).toBe(true); // incl. the sentinel at 0x1ef
    const loaderFields = new Set([0x210, 0x211, 0x214, 0x215, 0x216, 0x217]);
    for (const f of [0x218, 0x21c, 0x224, 0x228]) for (let i = 0; i < 4; i++) loaderFields.add(f + i);
    for (let o = 0x1f1; o < 0x26c; o++)
      if (!loaderFields.has(o)) expect(zp[o], `offset 0x${o.toString(16)}`).toBe(image[o]);
    expect(zp.subarray(0x26c).every((x) => x === 0)).toBe(true);
    expect(zp[0x210]).toBe(0xff); // type_of_loader
    expect(zp[0x211]).toBe(0x81); // LOADED_HIGH from the image | CAN_USE_HEAP
    expect(zp.readUInt16LE(0x224)).toBe(0xde00); // heap_end_ptr
    expect(zp.readUInt32LE(0x214)).toBe(0x1000000); // code32_start = pref_address
    expect(zp.readUInt32LE(0x228)).toBe(CMDLINE_ADDR);
    expect(zp.readUInt32LE(0x218)).toBe(p.initrd!.address);
    expect(zp.readUInt32LE(0x21c)).toBe(300_000);
    expect(zp[0x1e8]).toBe(0); // e820_entries: the trampoline's job
    expect(zp.readUInt16LE(0x206)).toBe(0x020f);
  });

  it("segments: zero page, kernel, trampoline, command line, initrd, ENTR = trampoline", () => {
    const segs = parseSelf(p.self);
    expect(segs.map((s) => [s.type, Number(s.load), s.len])).toEqual([
      ["data", ZERO_PAGE_ADDR, 4096],
      ["code", 0x1000000, image.length - 1024],
      ["code", p.entry, p.trampoline.code.length],
      ["data", CMDLINE_ADDR, 30],
      ["data", p.initrd!.address, 300_000],
      ["entry", p.entry, 0],
    ]);
    expect(segs[1]!.memLen).toBe(0x300000); // init_size: the kernel's working area
    expect(segs[2]!.memLen).toBe(p.trampoline.memLen);
    const bytes = (i: number) => p.self.subarray(segs[i]!.offset, segs[i]!.offset + segs[i]!.len);
    expect(bytes(0).equals(p.zeroPage)).toBe(true);
    expect(bytes(1).equals(image.subarray(1024))).toBe(true);
    expect(bytes(2).equals(p.trampoline.code)).toBe(true);
    expect(bytes(3).toString("latin1")).toBe("console=ttyS0 bootcfg.node=n1\0");
    expect(bytes(4).equals(initrd)).toBe(true);
    expect(p.entry).toBe(0x92000); // the first page after the command line
    expect(p.entry + p.trampoline.memLen).toBeLessThanOrEqual(LOW_AREA_END);
  });

  it("initrd: 1 MiB-aligned just above the kernel's working area; minMemory covers it", () => {
    expect(p.initrd!.address).toBe(0x1300000); // 0x1000000 + init_size 0x300000
    expect(p.minMemory).toBe(0x1400000);
    const low = bzImageToSelf(bz(), { initrd }); // not relocatable: kernel at 1 MiB
    expect(low.kernelLoad).toBe(0x100000);
    expect(low.initrd!.address).toBe(0x400000);
    const noInitrd = bzImageToSelf(bz());
    expect(noInitrd.initrd).toBeUndefined();
    expect(parseSelf(noInitrd.self).map((s) => s.type)).toEqual(["data", "code", "code", "data", "entry"]);
    expect(noInitrd.zeroPage.readUInt32LE(0x218)).toBe(0);
  });

  it("the largest initrd that fits below initrd_addr_max is taken, one byte more is refused", () => {
    const max = 0x1300000 + 0x100000 - 1;
    const image2 = bz({ relocatable: true, initrdAddrMax: max });
    expect(bzImageToSelf(image2, { initrd: Buffer.alloc(0x100000) }).initrd!.address).toBe(0x1300000);
    expect(code(() => bzImageToSelf(image2, { initrd: Buffer.alloc(0x100001) }, "k"))).toBe(
      "ECHECK: k: initrd of 1048577 bytes at 0x1300000 would end at 0x1400000, above the kernel's initrd_addr_max 0x13fffff",
    );
  });

  it("an explicit initrd address must not overlap the kernel's working area or be unaligned", () => {
    expect(
      code(() => bzImageToSelf(bz({ relocatable: true }), { initrd, initrdAddress: 0x1200000 }, "k")),
    ).toMatch(/^ECHECK: k: the kernel \(0x1000000-0x12fffff\) overlaps the initrd \(0x1200000-0x12493df\)$/);
    expect(code(() => bzImageToSelf(bz(), { initrd, initrdAddress: 0x1200010 }))).toMatch(
      /not 4 KiB-aligned/,
    );
    expect(bzImageToSelf(bz(), { initrd, initrdAddress: 0x8000000 }).initrd!.address).toBe(0x8000000);
  });

  it("refuses what it cannot convert, saying why", () => {
    expect(code(() => bzImageToSelf(Buffer.alloc(4096), {}, "f"))).toBe(
      "EFORMAT: f: no boot flag 0xAA55 at 0x1fe",
    );
    expect(code(() => bzImageToSelf(bz({ version: 0x0205 }), {}, "f"))).toMatch(
      /^EFORMAT: f: boot protocol 2\.05 is older than 2\.06/,
    );
    expect(code(() => bzImageToSelf(bz({ loadflags: 0 }), {}, "f"))).toMatch(/LOADED_HIGH clear/);
    expect(code(() => bzImageToSelf(bz({ cmdlineSize: 10 }), { cmdline: "console=ttyS0" }, "f"))).toBe(
      "ECHECK: f: command line of 13 bytes is longer than the kernel's cmdline_size 10",
    );
    expect(code(() => bzImageToSelf(bz(), { cmdline: "a\0b" }))).toMatch(/NUL/);
    expect(code(() => bzImageToSelf(bz().subarray(0, 1024), {}, "f"))).toMatch(/no protected-mode kernel/);
    // a command line so long that the trampoline no longer fits below 0x9f000
    const huge = bz({ cmdlineSize: 0x10000 });
    expect(code(() => bzImageToSelf(huge, { cmdline: "x".repeat(0xe000) }, "f"))).toMatch(
      /leaves no room for the trampoline below 0x9f000/,
    );
  });

  it("checkRanges names both overlapping segments and the reserved low areas", () => {
    expect(
      code(() =>
        checkRanges([
          { name: "kernel", type: "code", start: 0x100000, len: 10, memLen: 0x200000 },
          { name: "initrd", type: "data", start: 0x2ff000, len: 0x1000, memLen: 0x1000 },
        ]),
      ),
    ).toBe("ECHECK: payload: the kernel (0x100000-0x2fffff) overlaps the initrd (0x2ff000-0x2fffff)");
    expect(
      code(() => checkRanges([{ name: "initrd", type: "data", start: 0xa0000, len: 16, memLen: 16 }])),
    ).toMatch(/covers the VGA and BIOS area/);
    expect(
      code(() => checkRanges([{ name: "zero page", type: "data", start: 0x800, len: 16, memLen: 16 }])),
    ).toMatch(/covers the real-mode vectors/);
    expect(
      code(() =>
        checkRanges([
          { name: "kernel", type: "code", start: 0x100000, len: 10, memLen: 0x200000 },
          { name: "initrd", type: "data", start: 0x300000, len: 0x1000, memLen: 0x1000 },
        ]),
      ),
    ).toBe("no error");
  });
});

describe("trampoline", () => {
  const tr = buildTrampoline(0x92000, 0x90000);

  it("GDT: flat 4 GiB code at 0x10 and data at 0x18; lgdt and the far jump point into it", () => {
    const gdtr = tr.code.readUInt32LE(5) - 0x92000; // lgdtd operand
    expect(tr.code.readUInt16LE(gdtr)).toBe(0x1f);
    const gdt = tr.code.readUInt32LE(gdtr + 2) - 0x92000;
    expect(gdt % 8).toBe(0);
    expect([...tr.code.subarray(gdt + BOOT_CS, gdt + BOOT_CS + 8)]).toEqual([
      0xff, 0xff, 0, 0, 0, 0x9a, 0xcf, 0,
    ]);
    expect([...tr.code.subarray(gdt + BOOT_DS, gdt + BOOT_DS + 8)]).toEqual([
      0xff, 0xff, 0, 0, 0, 0x92, 0xcf, 0,
    ]);
    expect(tr.code[9]).toBe(0xea); // ljmp 0x10:next
    expect(tr.code.readUInt32LE(10)).toBe(0x92010);
    expect(tr.code.readUInt16LE(14)).toBe(BOOT_CS);
    expect(tr.memLen).toBeGreaterThanOrEqual(tr.code.length + 256);
  });

  it("objdump decodes every instruction at the documented offset with the documented text", (ctx) => {
    need(ctx, { tools: ["objdump"] });
    const bin = join(t.dir, "tramp.bin");
    const ours = tr.listing.filter((l) => !l.data);
    const last = ours.at(-1)!;
    writeFileSync(bin, tr.code.subarray(0, last.offset + last.bytes.length));
    const d = sh("objdump", ["-D", "-b", "binary", "-m", "i386", "-M", "intel", "--adjust-vma=0x92000", bin]);
    expect(d.status, d.stderr).toBe(0);
    const theirs = d.stdout
      .split("\n")
      .map((l) => /^\s*([0-9a-f]+):\s+((?:[0-9a-f]{2} )+)\s*(.*)$/.exec(l))
      .filter((m): m is RegExpExecArray => !!m && m[3] !== "");
    expect(theirs.length).toBe(ours.length);
    const norm = (s: string) => s.replace(/\s+/g, " ").replace(/ds:/g, "").trim();
    const KNOWN = /^(e[abcd]x|e[sd]i|e[bs]p|[abcd]x|[cdefgs]s|dword|word|byte|ptr|0x[0-9a-f]+)$/;
    for (const [i, l] of ours.entries()) {
      const m = theirs[i]!;
      expect(Number.parseInt(m[1]!, 16) - 0x92000, l.asm).toBe(l.offset);
      expect(m[2]!.trim().split(" ").length, l.asm).toBe(l.bytes.length);
      const text = norm(m[3]!);
      const [mnemonic, ...operands] = norm(l.asm).split(" ");
      const symbolic = (
        operands
          .join(" ")
          .toLowerCase()
          .match(/[a-z0-9_]+/g) ?? []
      ).some((w) => !KNOWN.test(w));
      // operands naming a label or a zero-page field are numbers in objdump's text
      if (symbolic) expect(text.split(" ")[0], l.asm).toBe(mnemonic);
      else expect(text, `offset ${l.offset}`).toBe(norm(l.asm));
    }
  });

  it("the checksum the test tables carry is the one the trampoline verifies (header sums to 0xffff)", () => {
    const tbl = lbTable([lbForward(0x8001000)]);
    expect(ipChecksum(tbl.subarray(0, 24))).toBe(0);
    expect(tbl.readUInt32LE(16)).toBe(ipChecksum(tbl.subarray(24)));
    expect(tbl.readUInt32LE(12)).toBe(16);
  });
});

describe("CLI", () => {
  it("payload build detects a bzImage, places cmdline and initrd, prints the layout (--json too)", async () => {
    const k = join(t.dir, "bzImage");
    const i = join(t.dir, "initrd");
    writeFileSync(k, bz({ relocatable: true }));
    const initrd = writeCpio([{ name: "data", type: "file", perm: 0o644, data: Buffer.alloc(5000, 1) }]);
    writeFileSync(i, initrd);
    const r = await run([
      "payload",
      "build",
      k,
      "--cmdline",
      "console=ttyS0",
      "--initrd",
      i,
      "-o",
      join(t.dir, "p.self"),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /SELF payload of \d+ bytes\n {2}data zero page {4}load 0x00090000 {2}length 4096\/4096\n/,
    );
    expect(r.stdout).toContain("code kernel       load 0x01000000  length 20480/3145728");
    expect(r.stdout).toMatch(/entry 0x00092000 \(trampoline\); needs RAM up to 0x1400000 \(20\.0 MiB\)/);
    const j = await run([
      "payload",
      "build",
      k,
      "--cmdline",
      "console=ttyS0",
      "--initrd",
      i,
      "--create-rom",
      "1M",
      "-o",
      join(t.dir, "p.rom"),
      "--json",
    ]);
    expect(j.code, j.stderr).toBe(0);
    const o = JSON.parse(j.stdout);
    expect(o).toMatchObject({
      kind: "bzImage",
      name: "fallback/payload",
      protocol: "2.15",
      kernelLoad: 0x1000000,
      cmdline: "console=ttyS0",
      initrd: { address: 0x1300000, size: initrd.length },
    });
    expect(o.segments.map((s: { name: string }) => s.name)).toEqual([
      "zero page",
      "kernel",
      "trampoline",
      "command line",
      "initrd",
    ]);
    const self = readFileSync(join(t.dir, "p.self"));
    expect(parseSelf(self).at(-1)!.load).toBe(BigInt(o.entry));
  });

  it("payload build: usage errors exit 2, bad input exits 1 with the reason", async () => {
    const elf = join(t.dir, "k.elf");
    writeFileSync(elf, synthElf({ loads: [{ paddr: 0x100000, data: Buffer.alloc(64, 1), flags: 5 }] }));
    const e = await run(["payload", "build", elf, "--cmdline", "x", "-o", join(t.dir, "x")]);
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(/--cmdline and --initrd need a bzImage/);
    expect((await run(["payload", "build", elf, "-o", join(t.dir, "x")])).code).toBe(0);
    const both = await run([
      "payload",
      "build",
      elf,
      "--rom",
      "a",
      "--create-rom",
      "1M",
      "-o",
      join(t.dir, "x"),
    ]);
    expect(both.code).toBe(2);
    const junk = join(t.dir, "junk");
    writeFileSync(junk, Buffer.alloc(2048, 3));
    const j = await run(["payload", "build", junk, "-o", join(t.dir, "x")]);
    expect(j.code).toBe(1);
    expect(j.stderr).toMatch(/neither an x86 bzImage .* nor an ELF/);
    const old = join(t.dir, "old");
    writeFileSync(old, bz({ version: 0x0204 }));
    const o = await run(["payload", "build", old, "-o", join(t.dir, "x")]);
    expect(o.code).toBe(1);
    expect(o.stderr).toMatch(/boot protocol 2\.04 is older than 2\.06/);
    const h = await run(["payload", "build", "--help"]);
    expect(h.stdout).toMatch(
      /payload build KERNEL -o OUT \[--cmdline S\] \[--initrd FILE \[--initrd-addr ADDR\]\]\n.*--create-rom SIZE/,
    );
    const k = join(t.dir, "bz2");
    writeFileSync(k, bz({ relocatable: true }));
    const rd = join(t.dir, "rd2");
    const rdData = writeCpio([{ name: "d", type: "file", perm: 0o644, data: Buffer.alloc(100, 1) }]);
    writeFileSync(rd, rdData);
    const at = await run([
      "payload",
      "build",
      k,
      "--initrd",
      rd,
      "--initrd-addr",
      "0x8000000",
      "-o",
      join(t.dir, "y"),
      "--json",
    ]);
    expect(at.code, at.stderr).toBe(0);
    expect(JSON.parse(at.stdout).initrd).toEqual({ address: 0x8000000, size: rdData.length });
    expect(
      (await run(["payload", "build", k, "--initrd-addr", "0x8000000", "-o", join(t.dir, "y")])).code,
    ).toBe(2);
    expect(
      (await run(["payload", "build", k, "--initrd", rd, "--initrd-addr", "high", "-o", join(t.dir, "y")]))
        .code,
    ).toBe(2);
    const clash = await run([
      "payload",
      "build",
      k,
      "--initrd",
      rd,
      "--initrd-addr",
      "0x1000000",
      "-o",
      join(t.dir, "y"),
    ]);
    expect(clash.code).toBe(1);
    expect(clash.stderr).toMatch(/the kernel \(0x1000000-0x12fffff\) overlaps the initrd/);
  });
});
