// `bootcfg check` looks inside every initrd a node gets: cpio archives (newc or crc), NUL padding
// and compressed members, as the kernel unpacks them. Archives come from our writer, GNU cpio,
// node:zlib and the Debian compressors; damaged ones are cut or altered copies of good ones.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { writeCpio } from "../src/formats/cpio.js";
import { need, run, sh, tempDir } from "./helpers.js";
import { synthBzImage } from "./synth.js";

const t = tempDir();
afterAll(() => t.cleanup());
writeFileSync(join(t.dir, "bz"), synthBzImage({ xloadflags: 0x7f }));

const archive = writeCpio([
  { name: "init", type: "file", perm: 0o755, data: "#!/bin/sh\necho hello\n" },
  { name: "etc", type: "dir", perm: 0o755 },
  { name: "etc/hello", type: "file", perm: 0o644, data: "hello world\n" },
]);
const early = writeCpio([
  { name: "kernel/x86/microcode/GenuineIntel.bin", type: "file", perm: 0o644, data: "uc" },
]);

/** Runs `bootcfg check` on a one-node cluster whose only initrd is `data`. */
async function check(name: string, data: Uint8Array) {
  writeFileSync(join(t.dir, name), data);
  const file = join(t.dir, `${name}.yaml`);
  writeFileSync(file, `nodes:\n  - {name: n1, kernel: bz, initrds: [${JSON.stringify(name)}]}\n`);
  const r = await run(["check", file]);
  const lines = (p: string) =>
    r.stdout
      .split("\n")
      .filter((l) => l.startsWith(p))
      .map((l) => l.slice(p.length));
  return { code: r.code, errors: lines("error: "), warnings: lines("warning: "), path: join(t.dir, name) };
}

/** Output of a compressor run on `input`. */
function tool(cmd: string, args: string[], input: Uint8Array): Buffer {
  const r = sh(cmd, args, { input: Buffer.from(input) });
  expect(r.status, r.stderr).toBe(0);
  return Buffer.from(r.stdout, "latin1");
}

/** A copy of `buf` with the byte at `at` changed. */
function flip(buf: Uint8Array, at: number): Buffer {
  const b = Buffer.from(buf);
  b[at] = b[at]! ^ 0x55;
  return b;
}

describe("initrds the kernel can unpack pass", () => {
  it("plain newc, gzip, and an early archive followed by gzip", async () => {
    for (const [name, data] of [
      ["plain.cpio", archive],
      ["base.gz", gzipSync(archive)],
      ["early+gz", Buffer.concat([early, gzipSync(archive)])],
    ] as const) {
      const r = await check(name, data);
      expect(r, name).toMatchObject({ code: 0, errors: [], warnings: [] });
    }
  });

  it("xz, zstd (after an early archive, as Debian writes it), bzip2, lzma and LZ4 legacy", async (ctx) => {
    need(ctx, { tools: ["xz", "zstd", "bzip2", "lz4"] });
    for (const [name, data] of [
      ["base.xz", tool("xz", ["-c", "--check=crc32"], archive)],
      ["early+zst", Buffer.concat([early, tool("zstd", ["-c", "-q"], archive)])],
      ["two.zst", Buffer.concat([tool("zstd", ["-c", "-q"], early), tool("zstd", ["-c", "-q"], archive)])],
      ["base.bz2", tool("bzip2", ["-c"], archive)],
      ["base.lzma", tool("xz", ["-c", "--format=lzma"], archive)],
      ["base.lz4", tool("lz4", ["-l", "-c", "-q"], archive)],
    ] as const) {
      const r = await check(name, data);
      expect(r, name).toMatchObject({ code: 0, errors: [], warnings: [] });
    }
  });

  it("GNU cpio's crc format, with its data checksums verified", async (ctx) => {
    need(ctx, { tools: ["cpio"] });
    const tree = mkdtempSync(join(t.dir, "tree-"));
    mkdirSync(join(tree, "etc"));
    writeFileSync(join(tree, "init"), "#!/bin/sh\n");
    writeFileSync(join(tree, "etc/hello"), "hello world\n");
    const r0 = sh("cpio", ["-o", "-H", "crc", "--quiet"], {
      input: Buffer.from("init\netc\netc/hello\n"),
      cwd: tree,
    });
    const good = Buffer.from(r0.stdout, "latin1");
    expect(good.subarray(0, 6).toString("latin1")).toBe("070702");
    expect(await check("crc.cpio", good)).toMatchObject({ code: 0, errors: [] });
    const at = good.indexOf("hello world");
    const r = await check("crc-bad.cpio", flip(good, at));
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([
      expect.stringMatching(
        /^n1: initrd .*crc-bad\.cpio at offset 0: entry "etc\/hello" at offset \d+: data checksum 0x[0-9a-f]+ differs from the header's 0x[0-9a-f]+$/,
      ),
    ]);
  });
});

describe("initrds the kernel would refuse fail the check, naming file and offset", () => {
  const header = (n: number) => {
    let at = -1;
    for (let i = 0; i <= n; i++) at = archive.indexOf("070701", at + 1, "latin1");
    return at;
  };
  const gz = gzipSync(archive);

  const cases: Array<[string, () => Uint8Array, RegExp]> = [
    [
      "cut.cpio",
      () => archive.subarray(0, header(1) + 50),
      /^n1: initrd \S+cut\.cpio at offset 0: truncated header at offset \d+ \(50 of 110 bytes\)$/,
    ],
    ["name.cpio", () => archive.subarray(0, 112), /cpio at offset 0: truncated name at offset 0$/],
    ["data.cpio", () => archive.subarray(0, header(1) - 8), /entry "init" data runs past the end$/],
    [
      "notrailer.cpio",
      () => archive.subarray(0, header(3)),
      /ends after "etc\/hello" without its TRAILER!!! entry/,
    ],
    ["magic.cpio", () => flip(archive, 3), /magic\.cpio: offset 0: bad cpio magic "070b01"$/],
    [
      "junk.img",
      () => Buffer.from("not an initramfs at all"),
      /neither a cpio archive nor compressed data the kernel knows \(bytes 6e6f7420\)$/,
    ],
    ["gzcrc.gz", () => flip(gz, gz.length - 6), /gzcrc\.gz at offset 0: damaged gzip data \(CRC32 /],
    [
      "gzcut.gz",
      () => gz.subarray(0, gz.length - 20),
      /gzcut\.gz at offset 0: (damaged gzip data|gzip member cut short)/,
    ],
    [
      "gztext.gz",
      () => Buffer.concat([archive, gzipSync("plain text, no archive\n")]),
      new RegExp(`gztext\\.gz: gzip member at offset ${archive.length}: does not hold a cpio archive$`),
    ],
    [
      // 3 NULs after a plain archive: what follows must start on a 4-byte boundary
      "padding.img",
      () => Buffer.concat([archive, Buffer.alloc(3), gz]),
      new RegExp(
        `padding\\.img at offset 0: broken padding: data resumes at offset ${archive.length + 3}, not on a 4-byte boundary$`,
      ),
    ],
  ];
  for (const [name, make, message] of cases)
    it(name, async () => {
      const r = await check(name, make());
      expect(r.code, r.errors.join("\n")).toBe(1);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatch(message);
      expect(r.errors[0]!.startsWith(`n1: initrd ${r.path}`)).toBe(true);
    });

  it("a plain archive right after a gzip member that ends off a 4-byte boundary", async () => {
    let level = 1;
    while (gzipSync(archive, { level }).length % 4 === 0) level++;
    const z = gzipSync(archive, { level });
    const r = await check("unaligned.img", Buffer.concat([z, archive]));
    expect(r.errors).toEqual([
      `n1: initrd ${r.path}: offset ${z.length}: a cpio archive must start on a 4-byte boundary (pad what comes before it with NULs)`,
    ]);
  });

  it("old cpio formats (odc, binary) are named, with the option that writes newc", async (ctx) => {
    need(ctx, { tools: ["cpio"] });
    const names = Buffer.from("init\n");
    for (const [fmt, what] of [
      ["odc", 'old portable \\(odc, "070707"\\) cpio archive'],
      ["bin", "old binary cpio archive"],
    ] as const) {
      const r0 = sh("cpio", ["-o", "-H", fmt, "--quiet"], { input: names, cwd: t.dir });
      const r = await check(`${fmt}.cpio`, Buffer.from(r0.stdout, "latin1"));
      expect(r.code).toBe(1);
      expect(r.errors[0]).toMatch(
        new RegExp(
          `${fmt}\\.cpio: offset 0: ${what}; the kernel reads only newc \\("070701"\\) and crc \\("070702"\\): write it with cpio -H newc$`,
        ),
      );
    }
  });

  it("compressed members that do not decompress, are cut short, or use a format the kernel lacks", async (ctx) => {
    need(ctx, { tools: ["xz", "zstd", "lz4"] });
    const xz = tool("xz", ["-c", "--check=crc32"], archive);
    const zst = tool("zstd", ["-c", "-q"], archive);
    let r = await check("bad.xz", flip(xz, xz.length >> 1));
    expect(r.errors).toEqual([
      expect.stringMatching(/bad\.xz: xz member at offset 0: does not decompress \(xz: .+\)$/),
    ]);
    r = await check("cut.zst", Buffer.concat([early, zst.subarray(0, zst.length - 5)]));
    expect(r.errors).toEqual([
      expect.stringMatching(
        new RegExp(`cut\\.zst: zstd member at offset ${early.length}: zstd frame cut short \\(`),
      ),
    ]);
    r = await check("text.zst", tool("zstd", ["-c", "-q"], Buffer.from("no archive here\n")));
    expect(r.errors).toEqual([
      expect.stringMatching(/text\.zst: zstd member at offset 0: does not hold a cpio archive$/),
    ]);
    r = await check("frame.lz4", tool("lz4", ["-c", "-q"], archive));
    expect(r.errors).toEqual([
      `n1: initrd ${r.path}: offset 0: LZ4 frame format; the kernel decodes only the legacy LZ4 format (lz4 -l)`,
    ]);
  });

  it("without the decoder installed, a member is reported as not verified (a warning)", async (ctx) => {
    need(ctx, { tools: ["zstd"] });
    const data = Buffer.concat([early, tool("zstd", ["-c", "-q"], archive)]);
    const path = process.env.PATH;
    process.env.PATH = join(t.dir, "no-such-bin");
    try {
      const r = await check("nozstd.img", data);
      expect(r).toMatchObject({ code: 0, errors: [] });
      expect(r.warnings).toEqual([
        `n1: initrd ${r.path}: zstd member at offset ${early.length} not verified: zstd is not installed (Debian package zstd)`,
      ]);
    } finally {
      process.env.PATH = path;
    }
  });
});
