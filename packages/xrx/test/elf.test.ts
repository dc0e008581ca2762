import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ElfError, parseElf, parseElfFile } from "../src/elf.js";
import { findLibraries, LibraryNotFoundError, readLdSoConf } from "../src/libs.js";

/**
 * Builds a minimal ELF image independently of the parser: header, three program headers
 * (PT_LOAD covering the file, PT_INTERP, PT_DYNAMIC), a string table and a dynamic section.
 */
function buildElf(o: {
  bits: 32 | 64;
  le: boolean;
  machine: number;
  interp?: string;
  needed: string[];
  runpath?: string;
  rpath?: string;
}): Buffer {
  const ehsize = o.bits === 32 ? 52 : 64;
  const phentsize = o.bits === 32 ? 32 : 56;
  const phnum = 3;
  const base = 0x400000;
  let strtab = "\0";
  const strOff = (s: string) => {
    const off = strtab.length;
    strtab += `${s}\0`;
    return off;
  };
  const interpOff = ehsize + phnum * phentsize;
  const interp = o.interp ? `${o.interp}\0` : "";
  const strtabFileOff = interpOff + interp.length;
  const dyn: Array<[number, number]> = o.needed.map((n) => [1, strOff(n)]);
  if (o.runpath) dyn.push([29, strOff(o.runpath)]);
  if (o.rpath) dyn.push([15, strOff(o.rpath)]);
  dyn.push([5, base + strtabFileOff]);
  dyn.push([0, 0]);
  const dynOff = strtabFileOff + strtab.length + ((8 - ((strtabFileOff + strtab.length) % 8)) % 8);
  const entSize = o.bits === 32 ? 8 : 16;
  const total = dynOff + dyn.length * entSize;
  const b = Buffer.alloc(total);
  const w16 = (off: number, v: number) => (o.le ? b.writeUInt16LE(v, off) : b.writeUInt16BE(v, off));
  const w32 = (off: number, v: number) => (o.le ? b.writeUInt32LE(v, off) : b.writeUInt32BE(v, off));
  const w64 = (off: number, v: number) =>
    o.le ? b.writeBigUInt64LE(BigInt(v), off) : b.writeBigUInt64BE(BigInt(v), off);
  const word = o.bits === 32 ? w32 : w64;
  b.write("\x7fELF", 0, "latin1");
  b[4] = o.bits === 32 ? 1 : 2;
  b[5] = o.le ? 1 : 2;
  b[6] = 1;
  w16(16, 2);
  w16(18, o.machine);
  if (o.bits === 32) {
    w32(28, ehsize);
    w16(42, phentsize);
    w16(44, phnum);
  } else {
    w64(32, ehsize);
    w16(54, phentsize);
    w16(56, phnum);
  }
  const ph = (i: number, type: number, offset: number, size: number) => {
    const p = ehsize + i * phentsize;
    w32(p, type);
    if (o.bits === 32) {
      w32(p + 4, offset);
      w32(p + 8, base + offset);
      w32(p + 16, size);
      w32(p + 20, size);
    } else {
      w64(p + 8, offset);
      w64(p + 16, base + offset);
      w64(p + 32, size);
      w64(p + 40, size);
    }
  };
  ph(0, 1, 0, total);
  ph(1, o.interp ? 3 : 6, interpOff, interp.length);
  ph(2, 2, dynOff, dyn.length * entSize);
  b.write(interp, interpOff, "latin1");
  b.write(strtab, strtabFileOff, "latin1");
  dyn.forEach(([tag, val], i) => {
    word(dynOff + i * entSize, tag);
    word(dynOff + i * entSize + entSize / 2, val);
  });
  return b;
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("parseElf", () => {
  for (const bits of [32, 64] as const) {
    for (const le of [true, false]) {
      it(`reads a ${bits}-bit ${le ? "little" : "big"}-endian file`, () => {
        const img = buildElf({
          bits,
          le,
          machine: le ? 183 : 20,
          interp: "/lib/ld-linux.so.3",
          needed: ["libfoo.so.1", "libc.so.6"],
          runpath: "$ORIGIN/../lib:/opt/x",
          rpath: "/old",
        });
        const info = parseElf(img, "synthetic");
        expect(info).toMatchObject({
          bits,
          littleEndian: le,
          machine: le ? 183 : 20,
          interpreter: "/lib/ld-linux.so.3",
          needed: ["libfoo.so.1", "libc.so.6"],
          runpath: ["$ORIGIN/../lib", "/opt/x"],
          rpath: ["/old"],
        });
      });
    }
  }

  it("reads the real /bin/ls", () => {
    const info = parseElf(readFileSync("/bin/ls"), "/bin/ls");
    expect(info.needed).toContain("libc.so.6");
    expect(info.interpreter).toMatch(/ld-linux/);
  });

  it("rejects non-ELF and truncated files with the file name", () => {
    expect(() => parseElf(Buffer.from("#!/bin/sh\n"), "script")).toThrow(ElfError);
    expect(() => parseElf(Buffer.from("#!/bin/sh\n"), "script")).toThrow(/cannot parse file script/);
    const img = buildElf({ bits: 64, le: true, machine: 62, needed: ["a.so"] });
    expect(() => parseElf(img.subarray(0, 80), "cut")).toThrow(/outside the file|truncated/);
    // Every prefix fails cleanly or parses; never an unexpected exception type.
    for (let n = 0; n < img.length; n += 7) {
      try {
        parseElf(img.subarray(0, n), "p");
      } catch (err) {
        expect(err).toBeInstanceOf(ElfError);
      }
    }
  });
});

describe("parseElfFile", () => {
  const outcome = (f: () => unknown) => {
    try {
      return { ok: f() };
    } catch (err) {
      return { err: err instanceof ElfError ? err.message : `not an ElfError: ${err}` };
    }
  };

  it("reads real files as parseElf reads them whole", () => {
    const libc = findLibraries("/bin/ls").libraries.get("libc.so.6") as string;
    for (const f of ["/bin/ls", "/bin/true", libc]) {
      expect(parseElfFile(f)).toEqual(parseElf(readFileSync(f), f));
    }
  });

  it("gives parseElf's answer for every prefix of a file, in either class and byte order", () => {
    const d = mkdtempSync(join(tmpdir(), "xrx-elf-"));
    dirs.push(d);
    for (const bits of [32, 64] as const) {
      for (const le of [true, false]) {
        const img = buildElf({
          bits,
          le,
          machine: 62,
          interp: "/lib/ld.so",
          needed: ["a.so", "b.so"],
          runpath: `/r${"x".repeat(600)}`, // longer than one read of a string
        });
        expect(parseElf(img, "p").runpath[0]).toHaveLength(602);
        for (let n = 0; n <= img.length; n++) {
          const f = join(d, `p${bits}${le ? "l" : "b"}`);
          writeFileSync(f, img.subarray(0, n));
          expect(
            outcome(() => parseElfFile(f, "p")),
            `${bits}-bit ${le}, ${n} bytes`,
          ).toEqual(outcome(() => parseElf(img.subarray(0, n), "p")));
        }
      }
    }
  });

  it("reports a file that cannot be opened with the system's error", () => {
    expect(() => parseElfFile("/nonexistent/x")).toThrow(/ENOENT/);
  });
});

describe("findLibraries", () => {
  it("passes over a FIFO in a search directory instead of waiting for a writer", () => {
    const d = mkdtempSync(join(tmpdir(), "xrx-fifo-"));
    dirs.push(d);
    execFileSync("mkfifo", [join(d, "libc.so.6")]);
    const set = findLibraries("/bin/true", { extraPath: [d] });
    expect(set.libraries.get("libc.so.6")).toMatch(/^\/(usr\/)?lib/);
  });

  it("resolves the closure of /bin/ls to files of the same machine, interpreter apart", () => {
    const set = findLibraries("/bin/ls");
    expect([...set.libraries.keys()]).toContain("libc.so.6");
    expect(set.interpreter).toMatch(/ld-linux/);
    for (const p of set.libraries.values()) expect(existsSync(p)).toBe(true);
    // The closure reaches libraries that ls does not name itself (libselinux → libpcre2).
    const ldd = execFileSync("ldd", ["/bin/ls"], { encoding: "utf8" });
    for (const m of ldd.matchAll(/^\s*(\S+) => \//gm)) expect(set.libraries.has(m[1]!)).toBe(true);
  });

  it("searches $ORIGIN runpaths, a sysroot, and fails naming the missing library", () => {
    const root = mkdtempSync(join(tmpdir(), "xrx-libs-"));
    dirs.push(root);
    mkdirSync(join(root, "app/lib"), { recursive: true });
    mkdirSync(join(root, "lib"), { recursive: true });
    writeFileSync(
      join(root, "app/prog"),
      buildElf({ bits: 32, le: false, machine: 20, needed: ["libone.so"], runpath: "$ORIGIN/lib" }),
    );
    writeFileSync(
      join(root, "app/lib/libone.so"),
      buildElf({ bits: 32, le: false, machine: 20, needed: ["libtwo.so"] }),
    );
    // A library of the wrong class in an earlier directory is skipped.
    mkdirSync(join(root, "usr/lib"), { recursive: true });
    writeFileSync(join(root, "usr/lib/libtwo.so"), buildElf({ bits: 64, le: true, machine: 62, needed: [] }));
    writeFileSync(
      join(root, "lib/libtwo.so.real"),
      buildElf({ bits: 32, le: false, machine: 20, needed: [] }),
    );
    symlinkSync("libtwo.so.real", join(root, "lib/libtwo.so"));
    const set = findLibraries(join(root, "app/prog"), { sysroot: root, confDirs: ["/usr/lib"] });
    expect(set.libraries.get("libone.so")).toBe(join(root, "app/lib/libone.so"));
    expect(set.libraries.get("libtwo.so")).toBe(join(root, "lib/libtwo.so.real"));

    writeFileSync(
      join(root, "app/bad"),
      buildElf({ bits: 32, le: false, machine: 20, needed: ["libnone.so"] }),
    );
    expect(() => findLibraries(join(root, "app/bad"), { sysroot: root, confDirs: [] })).toThrow(
      LibraryNotFoundError,
    );
    expect(() => findLibraries(join(root, "app/bad"), { sysroot: root, confDirs: [] })).toThrow(
      /cannot find libnone.so/,
    );
  });

  it("follows include globs in ld.so.conf", () => {
    const root = mkdtempSync(join(tmpdir(), "xrx-conf-"));
    dirs.push(root);
    mkdirSync(join(root, "etc/ld.so.conf.d"), { recursive: true });
    writeFileSync(join(root, "etc/ld.so.conf"), "# c\ninclude /etc/ld.so.conf.d/*.conf\n/opt/top\n");
    writeFileSync(join(root, "etc/ld.so.conf.d/a.conf"), "/opt/a\n");
    writeFileSync(join(root, "etc/ld.so.conf.d/b.conf"), "/opt/b # note\n");
    writeFileSync(join(root, "etc/ld.so.conf.d/skip.txt"), "/opt/no\n");
    expect(readLdSoConf("/etc/ld.so.conf", root)).toEqual(["/opt/a", "/opt/b", "/opt/top"]);
  });
});
