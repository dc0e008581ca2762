// Damaged and truncated boot files: every command that reads them says what is wrong and exits 1;
// none crashes, and none writes an output built from a file that is not whole.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { writeBeoboot } from "../src/formats/beoboot.js";
import { readCpio, writeCpio } from "../src/formats/cpio.js";
import { KERNEL_AMD64, need, run, sh, tempDir } from "./helpers.js";
import { synthBzImage, synthElf } from "./synth.js";

const t = tempDir();
afterAll(() => t.cleanup());

function put(name: string, data: Uint8Array): string {
  const p = join(t.dir, name);
  writeFileSync(p, data);
  return p;
}

/** A synthetic bzImage whose syssize covers its protected-mode part, as a real one's does. */
function wholeBzImage(): Buffer {
  const b = synthBzImage({ payload: gzipSync(synthElf()) });
  b.writeUInt32LE(Math.ceil((b.length - 1024) / 16), 0x1f4);
  return b;
}

/** inspect and `payload build` both refuse the file with `message`, and write nothing. */
async function refused(file: string, message: RegExp): Promise<void> {
  const i = await run(["inspect", file]);
  expect(i, "inspect").toMatchObject({ code: 1, stdout: "" });
  expect(i.stderr).toMatch(message);
  const out = `${file}.self`;
  const p = await run(["payload", "build", file, "-o", out]);
  expect(p.code, "payload build").toBe(1);
  expect(p.stderr).toMatch(message);
  expect(existsSync(out)).toBe(false);
}

describe("a truncated bzImage", () => {
  it("is accepted whole, refused cut short (inspect, payload build, check)", async () => {
    const whole = wholeBzImage();
    expect((await run(["inspect", put("whole.bz", whole)])).code).toBe(0);
    expect(
      (await run(["payload", "build", join(t.dir, "whole.bz"), "-o", join(t.dir, "whole.self")])).code,
    ).toBe(0);

    const half = put("half.bz", whole.subarray(0, whole.length - 16));
    await refused(
      half,
      /half\.bz: truncated: the file is \d+ bytes but its protected-mode kernel \(syssize\) ends at \d+/,
    );

    // check: every node with the kernel fails, naming the file
    writeFileSync(
      join(t.dir, "cluster.yaml"),
      "profiles:\n  x86: {arch: x86_64, kernel: half.bz}\nnodes:\n  - {name: n1, profiles: [x86]}\n",
    );
    const c = await run(["check", join(t.dir, "cluster.yaml")]);
    expect(c.code).toBe(1);
    expect(c.stdout + c.stderr).toMatch(/n1: kernel .*half\.bz: truncated/);
  });

  it("a file that ends inside the setup code or the payload is refused, not a crash", async () => {
    const whole = wholeBzImage();
    // 600 bytes: the header is there, the version string it points to (0x300) is not
    await refused(
      put("hdr.bz", whole.subarray(0, 600)),
      /hdr\.bz: no protected-mode kernel after the setup code/,
    );
    const badPayload = Buffer.from(whole);
    badPayload.writeUInt32LE(0xfffffff0, 0x248); // payload_offset far past the end
    await refused(put("payload.bz", badPayload), /payload\.bz: truncated: .*compressed payload/);
  });

  it("the Debian kernel cut in half is refused", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64] });
    const k = readFileSync(KERNEL_AMD64);
    await refused(put("vmlinuz.half", k.subarray(0, k.length >> 1)), /truncated: the file is \d+ bytes/);
  });

  it("the Debian kernel with 8 bytes of its LZ4 payload overwritten is refused (LZ4 has no checksum)", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64] });
    const k = Buffer.from(readFileSync(KERNEL_AMD64));
    expect((await run(["inspect", KERNEL_AMD64])).stdout).toMatch(/lz4/i);
    k.set([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88], 5_000_000);
    await refused(put("vmlinuz.damaged", k), /vmlinuz\.damaged payload: /);
  });
});

describe("an ELF with bad program headers", () => {
  const elf = () => synthElf({ loads: [{ paddr: 0x100000, data: Buffer.alloc(256, 0x90), memsz: 512 }] });
  const PH = 64; // program headers follow the 64-byte ELF64 header in synthElf

  it("e_phentsize smaller than a program header", async () => {
    const small = elf();
    small.writeUInt16LE(8, 54);
    small.writeBigUInt64LE(BigInt(small.length - 8), 32); // phoff: the last 8 bytes
    await refused(put("phent8.elf", small), /e_phentsize 8 is smaller than a program header \(56 bytes\)/);
    const zero = elf();
    zero.writeUInt16LE(0, 54);
    zero.writeUInt16LE(3, 56);
    await refused(put("phent0.elf", zero), /e_phentsize 0 is smaller/);
  });

  it("PT_LOAD past the end, file size above memory size, a segment wrapping the address space", async () => {
    const past = elf();
    past.writeBigUInt64LE(0x100000n, PH + 32); // p_filesz 1 MiB in a file of a few hundred bytes
    past.writeBigUInt64LE(0x100000n, PH + 40);
    await refused(
      put("past.elf", past),
      /PT_LOAD 0 \(1048576 bytes at file offset 0x\w+\) runs past the end/,
    );
    const big = elf();
    big.writeBigUInt64LE(16n, PH + 40); // p_memsz < p_filesz
    await refused(put("memsz.elf", big), /PT_LOAD 0: file size 256 is larger than its memory size 16/);
    const wrap = elf();
    wrap.writeBigUInt64LE(0xfffffffffffff000n, PH + 24); // p_paddr + p_memsz > 2^64
    wrap.writeBigUInt64LE(0x20000n, PH + 40);
    await refused(
      put("wrap.elf", wrap),
      /PT_LOAD 0: 131072 bytes at 0xfffffffffffff000 run past the end of the address space/,
    );
  });

  it("payload build: a PT_LOAD whose memory size does not fit SELF's 32 bits is refused, not a crash", async () => {
    for (const memsz of [0xffffffffffn, 0x100000000n]) {
      const huge = elf();
      huge.writeBigUInt64LE(memsz, PH + 40);
      const file = put(`huge-${memsz.toString(16)}.elf`, huge);
      const out = join(t.dir, "huge.self");
      const r = await run(["payload", "build", file, "-o", out]);
      expect(r, memsz.toString(16)).toMatchObject({ code: 1, stdout: "" });
      expect(r.stderr).toBe(
        `bootcfg: ${file}: PT_LOAD 0: memory size 0x${memsz.toString(16)} (at 0x100000) does not fit a SELF segment's 32-bit memory length\n`,
      );
      expect(existsSync(out)).toBe(false);
    }
    // the largest memory size that fits is converted
    const max = elf();
    max.writeBigUInt64LE(0xffffffffn, PH + 40);
    const ok = await run(["payload", "build", put("max.elf", max), "-o", join(t.dir, "max.self")]);
    expect(ok.code, ok.stderr).toBe(0);
    // an input past what can be read at once (a sparse 3 GiB file) is one line, not a stack trace
    const big = join(t.dir, "big.sparse");
    writeFileSync(big, "");
    truncateSync(big, 3 * 1024 ** 3);
    for (const argv of [
      ["payload", "build", big, "-o", join(t.dir, "big.self")],
      ["extract-vmlinux", big, "-o", join(t.dir, "big.elf")],
      ["uimage", big, "-o", join(t.dir, "big.uimg"), "--arch", "arm64", "--load", "0x80080000"],
    ])
      expect(await run(argv), argv[0]).toEqual({
        code: 1,
        stdout: "",
        stderr: `bootcfg: ${big}: cannot read it (File size (3221225472) is greater than 2 GiB)\n`,
      });
    rmSync(big);
    // a CBFS image's sizes are 32-bit too
    const rom = await run([
      "payload",
      "build",
      put("small.elf", elf()),
      "-o",
      join(t.dir, "r.rom"),
      "--create-rom",
      "4G",
    ]);
    expect(rom).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--create-rom 4G: a CBFS image is below 4 GiB/),
    });
  });

  it("a PT_NOTE with absurd sizes is skipped, not a crash", async () => {
    const e = synthElf({ pvh: 0x1000000 });
    const note = e.length - 20; // the note is last: namesz, descsz, type, "Xen\0", entry
    e.writeUInt32LE(0x90909090, note); // namesz near 2^32
    const r = await run(["inspect", put("note.elf", e), "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: "elf", notes: [] });
  });
});

describe("damaged initramfs images", () => {
  const archive = writeCpio([
    { name: "etc", type: "dir", perm: 0o755 },
    { name: "etc/hello", type: "file", perm: 0o644, data: Buffer.from("hello\n") },
    { name: "init", type: "file", perm: 0o755, data: Buffer.from("#!/bin/sh\n") },
  ]);
  /** Offset of the n-th header (0-based). */
  const header = (n: number) => {
    let at = -1;
    for (let i = 0; i <= n; i++) at = archive.indexOf("070701", at + 1, "latin1");
    return at;
  };

  it("the whole archive (plain and gzip) is read", async () => {
    for (const [name, data] of [
      ["good.cpio", archive],
      ["good.cpio.gz", gzipSync(archive)],
    ] as const) {
      const r = await run(["inspect", put(name, data)]);
      expect(r.code, name).toBe(0);
      expect(r.stdout).toContain("etc/hello");
    }
  });

  it("cut short: no trailer, a header cut in the middle, a gzip member cut", async () => {
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ["no-trailer.cpio", archive.subarray(0, header(3)), /ends after "init" without its TRAILER!!! entry/],
      [
        "half-header.cpio",
        archive.subarray(0, header(2) + 50),
        /truncated header at offset \d+ \(50 of 110 bytes\)/,
      ],
      [
        "gz-cut.cpio",
        Buffer.concat([archive, gzipSync(archive).subarray(0, 40)]),
        /at offset \d+: damaged gzip data/,
      ],
      ["cut.cpio.gz", gzipSync(archive).subarray(0, 40), /cut\.cpio\.gz: damaged gzip data/],
    ];
    for (const [name, data, message] of cases) {
      const r = await run(["inspect", put(name, data)]);
      expect(r.code, name).toBe(1);
      expect(r.stderr, name).toMatch(message);
    }
  });

  it("a gzip member that holds no cpio archive, or junk after one", async () => {
    const text = gzipSync(Buffer.from("just some text, not an archive\n".repeat(8)));
    let r = await run(["inspect", put("cpio+text.gz", Buffer.concat([archive, text]))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/gzip member at offset \d+: does not hold a cpio archive/);
    r = await run(["inspect", put("junk.gz", gzipSync(Buffer.concat([archive, Buffer.from("JUNK")])))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/4 bytes after the archive are not cpio/);
    // gzip of something else, alone, is a compressed file, not an initramfs
    r = await run(["inspect", put("text.gz", text), "--json"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: "compressed", compression: "gzip" });
  });
});

describe("a damaged initrd named by a node", () => {
  it("every command that builds from it refuses it, naming the file; none writes an output", async () => {
    const archive = writeCpio([
      { name: "init", type: "file", perm: 0o755, data: Buffer.from("#!/bin/sh\n") },
    ]);
    const dir = join(t.dir, "bad-initrd");
    const sub = (name: string) => join(dir, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    writeFileSync(sub("k.bz"), wholeBzImage());
    for (const [name, data, message] of [
      ["cut.gz", gzipSync(archive).subarray(0, 30), /cut\.gz at offset 0: damaged gzip data/],
      [
        "random.img",
        // Random, except the first byte: a NUL, "0", or the start of a binary cpio or gzip
        // magic would make it (damaged) data of another kind.
        Buffer.concat([Buffer.from([0xff]), randomBytes(4095)]),
        /random\.img: offset \d+: neither a cpio archive nor compressed data/,
      ],
    ] as const) {
      writeFileSync(sub(name), data);
      writeFileSync(
        sub("cluster.yaml"),
        `profiles:\n  x86: {arch: x86_64, kernel: k.bz, initrds: [${name}], delivery: pxe}\nnodes:\n  - {name: n1, profiles: [x86], mac: "52:54:00:00:00:01"}\n`,
      );
      const c = ["-c", sub("cluster.yaml")];
      for (const [argv, out] of [
        [["kexec-plan", "n1", "-o", sub("plan.json")], sub("plan.json")],
        [["initrd", "combine", "n1", "-o", sub("combined")], sub("combined")],
        [["coreboot", "n1", "-o", sub("cb")], sub("cb")],
        [["render", "-o", sub("rendered")], sub("rendered")],
        [["pxe", "-o", sub("pxe")], sub("pxe")],
      ] as const) {
        const r = await run([...argv, ...c]);
        expect({ argv, code: r.code }).toEqual({ argv, code: 1 });
        expect(r.stderr, argv.join(" ")).toMatch(message);
        expect(existsSync(out), out).toBe(false);
      }
      const p = await run(["payload", "build", sub("k.bz"), "--initrd", sub(name), "-o", sub("p.self")]);
      expect(p.code).toBe(1);
      expect(p.stderr).toMatch(message);
      expect(existsSync(sub("p.self"))).toBe(false);
    }
  });
});

describe("a file that is not a cluster file given as one", () => {
  it("binary data: one line naming the file, not a syntax error per line", async () => {
    const bin = put("not-a-cluster.bin", Buffer.concat([wholeBzImage(), randomBytes(65536)]));
    for (const argv of [
      ["check", bin],
      ["show", "-c", bin, "n1"],
      ["nodes", "-c", bin],
    ]) {
      const r = await run(argv);
      expect({ argv, code: r.code }).toEqual({ argv, code: 1 });
      expect(r.stderr).toMatch(
        /^bootcfg: \S+not-a-cluster\.bin: not a YAML or JSON cluster file \(binary data at byte \d+\)\n$/,
      );
    }
  });

  it("text that is not YAML: the first syntax errors and a count of the rest", async () => {
    const junk = put(
      "junk.yaml",
      Buffer.from(Array.from({ length: 400 }, (_, i) => `a: [${i}\n  - }{ ]]`).join("\n")),
    );
    const r = await run(["check", junk]);
    expect(r.code).toBe(1);
    expect(r.stderr.split("\n").length).toBeLessThan(10);
    expect(r.stderr).toMatch(/more syntax errors/);
  });
});

describe("node entries that name no node or a bad address", () => {
  it("a reversed range, an IPv4 byte past 255, an overlay path that names a directory and an unknown template variable are errors naming the line", async () => {
    const k = put("k-entries.bz", wholeBzImage());
    for (const [node, message] of [
      [
        "{name: 'n[3-1]'}",
        /cluster-entries\.yaml:4: nodes\.0: syntax error: 'n\[3-1\]' not a valid node description \(it names no node\)/,
      ],
      ["{name: n1, ip: 10.0.0.256}", /nodes\.0\.ip: "10\.0\.0\.256" is not an IPv4 address/],
      ['{name: n1, overlay: {"/": x}}', /nodes\.0\.overlay\.\/: an overlay path names a file/],
      ['{name: n1, overlay: {"/etc/": x}}', /nodes\.0\.overlay\.\/etc\/: an overlay path names a file/],
      [
        '{name: n1, overlay: {"/etc/motd": "{{nodee}}"}}',
        /nodes\.0\.overlay\.\/etc\/motd: unknown template variable \{\{nodee\}\} \(known: \{\{node\}\}/,
      ],
      [
        '{name: n1, cmdline: ["x={{archh}}"]}',
        /nodes\.0\.cmdline\.0: unknown template variable \{\{archh\}\}/,
      ],
    ] as const) {
      const file = put(
        "cluster-entries.yaml",
        Buffer.from(
          `profiles:\n  x86: {arch: x86_64, kernel: ${k}}\nnodes:\n  - ${`${node.slice(0, -1)}, profiles: [x86]}`}\n`,
        ),
      );
      const r = await run(["check", file]);
      expect(r.code, node).toBe(1);
      expect(r.stderr, node).toMatch(message);
    }
  });
});

describe("ELF files that are no kernel", () => {
  it("check refuses a program (PIE or static with unaligned segments), an ELF with no segment, and one past the node's memory", async () => {
    const cases: Array<[string, Uint8Array | string, string, RegExp]> = [
      [
        "pie",
        readFileSync("/bin/ls"),
        "",
        /an ELF of type ET_DYN \(a shared object or position-independent program\), not an executable \(ET_EXEC\) kernel/,
      ],
      ["empty", synthElf({ loads: [] }), "", /no loadable segment \(PT_LOAD\)/],
      [
        "unaligned",
        synthElf({ loads: [{ paddr: 0x5db708, data: Buffer.alloc(64, 0x90) }] }),
        "",
        /physical address 0x5db708, not page aligned: kexec refuses it/,
      ],
      [
        "huge",
        synthElf({ loads: [{ paddr: 0x1000000, data: Buffer.alloc(64, 0x90), memsz: 0x7ff000000 }] }),
        ", memory: 2G",
        /segments end at 0x800000000 but memory is 2/,
      ],
    ];
    for (const [name, data, extra, message] of cases) {
      const k = put(`elf-${name}`, typeof data === "string" ? Buffer.from(data) : data);
      const file = put(
        `cluster-elf-${name}.yaml`,
        Buffer.from(
          `profiles:\n  x86: {arch: x86_64, kernel: ${k}, delivery: kexec${extra}}\nnodes:\n  - {name: n1, profiles: [x86]}\n`,
        ),
      );
      const r = await run(["check", file]);
      expect({ name, code: r.code }).toEqual({ name, code: 1 });
      expect(r.stdout + r.stderr, name).toMatch(message);
    }
    // a kernel-like ELF still passes
    const good = put(
      "elf-good",
      synthElf({ loads: [{ paddr: 0x1000000, data: Buffer.alloc(64, 0x90) }], pvh: 0x1000000 }),
    );
    const ok = put(
      "cluster-elf-good.yaml",
      Buffer.from(
        `profiles:\n  x86: {arch: x86_64, kernel: ${good}, delivery: kexec}\nnodes:\n  - {name: n1, profiles: [x86]}\n`,
      ),
    );
    const r = await run(["check", ok]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});

describe("a beoboot image", () => {
  it("whose initrd is cut short is refused", async () => {
    const img = writeBeoboot(wholeBzImage(), Buffer.alloc(4096, 7), "console=ttyS0");
    expect((await run(["inspect", put("ok.beoboot", img)])).code).toBe(0);
    const r = await run(["inspect", put("cut.beoboot", img.subarray(0, img.length - 100))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/initrd 4096\) exceed the file length \d+: truncated\?/);
  });
});

describe("initrd build inputs", () => {
  it("a file it cannot read is named as the input, and nothing is written", async () => {
    // /proc/self/mem is a regular file whose first read fails (EIO) even for root: the same path
    // as a file this user may not read (EACCES), without dropping privileges.
    const dir = join(t.dir, "unreadable-input");
    mkdirSync(dir);
    const out = join(dir, "out.gz");
    const r = await run(["initrd", "build", "-o", out, "--file", "etc/mem=/proc/self/mem"]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe("bootcfg: /proc/self/mem: cannot read it (EIO); nothing was written\n");
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("--dev numbers and --mtime that do not fit are usage errors naming the value, not wrapped", async () => {
    const out = join(t.dir, "dev.cpio");
    for (const [spec, msg] of [
      [
        "/dev/x:c:99999999999:1",
        /bad device "\/dev\/x:c:99999999999:1": major 99999999999 is larger than 4095/,
      ],
      ["/dev/x:c:4294967296:4294967297", /major 4294967296 is larger than 4095/],
      ["/dev/x:b:8:4294967297", /minor 4294967297 is larger than 1048575/],
      ["/dev/x:c:4096:0", /major 4096 is larger than 4095, the largest Linux device major/],
    ] as const) {
      const r = await run(["initrd", "build", "--no-gzip", "--dev", spec, "-o", out]);
      expect(r.code, spec).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(existsSync(out)).toBe(false);
    }
    const m = await run([
      "initrd",
      "build",
      "--no-gzip",
      "--dev",
      "/dev/x:p",
      "--mtime",
      "4294967296",
      "-o",
      out,
    ]);
    expect(m).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--mtime 4294967296: expected seconds/),
    });
    // the writer itself refuses what newc cannot hold instead of cutting it
    expect(() =>
      writeCpio([{ name: "x", type: "char", perm: 0o600, rdevMajor: 2 ** 32, rdevMinor: 0 }]),
    ).toThrow(/cpio entry "x": rdevmajor 4294967296 does not fit newc's 32-bit field/);
    // the largest numbers Linux has are stored as they are
    const ok = await run(["initrd", "build", "--no-gzip", "--dev", "/dev/x:c:4095:1048575", "-o", out]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readCpio(readFileSync(out)).entries.find((e) => e.name === "dev/x")).toMatchObject({
      rdevMajor: 4095,
      rdevMinor: 1048575,
    });
  });

  it("a DEST with .. components stays inside the archive", async () => {
    const out = join(t.dir, "dots.cpio");
    const src = put("hello", Buffer.from("hi\n"));
    const r = await run([
      "initrd",
      "build",
      "--no-gzip",
      "-o",
      out,
      "--file",
      `../../etc/x=${src}`,
      "--dev",
      "dev/../console:c:5:1",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const names = (await run(["inspect", out, "--json"])).stdout;
    const entries = (JSON.parse(names).members[0].entries as Array<{ name: string }>).map((e) => e.name);
    expect(entries.sort()).toEqual(["console", "etc", "etc/x"]);
    expect((await run(["initrd", "build", "-o", out, "--file", `/=${src}`])).stderr).toMatch(
      /names the archive root/,
    );
  });

  it("a directory given to --file, a file given to --tree: clear errors naming the option", async () => {
    const out = join(t.dir, "x.cpio");
    let r = await run(["initrd", "build", "-o", out, "--file", `x=${t.dir}`]);
    expect(r).toMatchObject({
      code: 1,
      stderr: `bootcfg: --file x=${t.dir}: ${t.dir} is a directory (copy directories with --tree)\n`,
    });
    const file = put("plain", Buffer.from("x"));
    r = await run(["initrd", "build", "-o", out, "--tree", file]);
    expect(r).toMatchObject({ code: 1, stderr: `bootcfg: --tree ${file}: not a directory\n` });
    // A FIFO would be read for ever.
    const fifo = join(t.dir, "a-fifo");
    execFileSync("mkfifo", [fifo]);
    r = await run(["initrd", "build", "-o", out, "--file", `x=${fifo}`]);
    expect(r).toMatchObject({
      code: 1,
      stderr: `bootcfg: --file x=${fifo}: ${fifo} is not a regular file (make device nodes with --dev)\n`,
    });
    expect(existsSync(out)).toBe(false);
  });

  it("an unknown initrd command is a usage error naming it", async () => {
    const r = await run(["initrd", "frob", "-o", join(t.dir, "frob")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^bootcfg: initrd: unknown command "frob" \(build, overlay or combine\)/);
    expect(existsSync(join(t.dir, "frob"))).toBe(false);
  });
});

describe("uimage", () => {
  it("refuses a load or entry address that does not fit 32 bits, instead of cutting it", async () => {
    const k = put("Image.bin", Buffer.alloc(4096, 1));
    const out = join(t.dir, "u.img");
    for (const load of ["0x1ffffffff", "4294967296"]) {
      const r = await run(["uimage", k, "-o", out, "--arch", "arm64", "--load", load]);
      expect(r.code, load).toBe(2);
      expect(r.stderr).toMatch(/uImage load address 0x1[0f]+ does not fit the header's 32 bits/);
    }
    const e = await run([
      "uimage",
      k,
      "-o",
      out,
      "--arch",
      "arm64",
      "--load",
      "0x80080000",
      "--entry",
      "0x100000000",
    ]);
    expect(e.stderr).toMatch(/uImage entry address 0x100000000 does not fit/);
    expect(existsSync(out)).toBe(false);
    const ok = await run(["uimage", k, "-o", out, "--arch", "arm64", "--load", "0xffffffff"]);
    expect(ok.code, ok.stderr).toBe(0);
    expect((await run(["inspect", out])).stdout).toMatch(/load \/ entry:\s+0xffffffff \/ 0xffffffff/);
  });
});

describe("a damaged uImage", () => {
  it("inspect prints what it found and exits 1; check and kexec-plan refuse it with one message", async () => {
    const k = put("Image.raw", Buffer.alloc(4096, 1));
    const good = join(t.dir, "good.uimg");
    expect((await run(["uimage", k, "-o", good, "--arch", "arm64", "--load", "0x80080000"])).code).toBe(0);
    const whole = readFileSync(good);
    const i = await run(["inspect", good]);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/data size:\s+4096\n/); // the header's size, not the file's 4160
    expect(i.stdout).toMatch(/crc:\s+header ok, data ok/);

    const data = Buffer.from(whole);
    data[100] = data[100]! ^ 1;
    const hdr = Buffer.from(whole);
    hdr[40] = hdr[40]! ^ 1; // a byte of the name
    const cut = whole.subarray(0, whole.length - 10);
    for (const [name, bytes, crc, problem] of [
      ["data.uimg", data, /crc:\s+header ok, data BAD/, "uImage data CRC mismatch (file damaged?)"],
      ["hdr.uimg", hdr, /crc:\s+header BAD, data ok/, "uImage header CRC mismatch (file damaged?)"],
      [
        "cut.uimg",
        cut,
        /crc:\s+header ok, data BAD/,
        "uImage data is cut short: the header says 4096 bytes, the file holds 4086 (truncated?)",
      ],
    ] as const) {
      const file = put(name, bytes);
      const r = await run(["inspect", file]);
      expect(r.code, name).toBe(1);
      expect(r.stdout).toMatch(crc);
      expect(r.stderr).toBe(`bootcfg: ${file}: ${problem}\n`);
      const j = await run(["inspect", file, "--json"]);
      expect(j.code).toBe(1);
      expect(JSON.parse(j.stdout)).toMatchObject({ format: "uimage", dataSize: 4096, size: bytes.length });

      const cl = join(t.dir, `${name}.yaml`);
      writeFileSync(cl, `nodes:\n  - {name: u1, arch: arm64, kernel: ${name}, cmdline: [console=ttyAMA0]}\n`);
      const c = await run(["check", cl]);
      expect(c.code).toBe(1);
      expect(c.stdout).toContain(`error: u1: ${file}: ${problem}\n`);
      const p = await run(["kexec-plan", "u1", "-c", cl]);
      expect(p).toEqual({ code: 1, stdout: "", stderr: `bootcfg: u1: ${file}: ${problem}\n` });
    }
  });
});

describe("a CBFS image with a damaged SELF payload", () => {
  it("a segment past the end of the payload, or longer than its memory length, is refused", async () => {
    const elf = put(
      "small.elf",
      synthElf({ loads: [{ paddr: 0x100000, data: Buffer.alloc(256, 0x90), memsz: 512 }] }),
    );
    const rom = join(t.dir, "good.rom");
    expect((await run(["payload", "build", elf, "--create-rom", "64K", "-o", rom])).code).toBe(0);
    expect((await run(["inspect", rom])).code).toBe(0);
    const good = readFileSync(rom);
    const code = good.indexOf("CODE", 0, "latin1");
    const long = Buffer.from(good);
    long.writeUInt32BE(0x7fffffff, code + 20);
    let r = await run(["inspect", put("long.rom", long)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /long\.rom: fallback\/payload: segment 0 \(code\) has 2147483647 bytes at offset 0x38, past the end of the \d+-byte payload/,
    );
    const short = Buffer.from(good);
    short.writeUInt32BE(16, code + 24);
    r = await run(["inspect", put("short.rom", short)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/segment 0 \(code\) has 256 bytes of data but a memory length of 16/);
    // and nothing is added to such an image
    r = await run([
      "payload",
      "build",
      elf,
      "--rom",
      join(t.dir, "long.rom"),
      "--name",
      "other",
      "-o",
      join(t.dir, "out.rom"),
    ]);
    expect(r.code).toBe(1);
    expect(existsSync(join(t.dir, "out.rom"))).toBe(false);
  });
});

describe("cbfstool's failed LZMA payload", () => {
  it("segments whose LZMA data is 0 bytes (cbfstool add-payload -c lzma exits 0 after 'LzmaEnc_Encode failed') are refused", async (ctx) => {
    need(ctx, { tools: ["cbfstool"] });
    // an incompressible kernel, as a real LZ4-compressed bzImage is, makes the encoder fail
    const bz = put("random.bz", synthBzImage({ xloadflags: 0x7f, payload: randomBytes(65536) }));
    const initrd = put("random.initrd", randomBytes(4096));
    const rom = join(t.dir, "lzma.rom");
    expect(sh("cbfstool", [rom, "create", "-m", "x86", "-s", "1M"]).status).toBe(0);
    const add = sh("cbfstool", [
      rom,
      "add-payload",
      "-f",
      bz,
      "-n",
      "fallback/payload",
      "-C",
      "console=ttyS0",
      "-I",
      initrd,
      "-c",
      "lzma",
    ]);
    const listed = sh("cbfstool", [rom, "print", "-v"]).stdout;
    if (!/LZMA compression, .*length: 0\/65536/.test(listed))
      return ctx.skip(`this cbfstool compressed the payload (${add.stderr.trim() || "no error"})`);
    const r = await run(["inspect", rom]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /lzma\.rom: fallback\/payload: segment 1 \(code, LZMA\) holds 0 bytes for 65536 bytes of memory: its data was lost \(a failed `cbfstool add-payload -c lzma`\? use -c none\)/,
    );
  });
});

describe("a damaged gzip bzImage payload", () => {
  /** A bzImage (syssize covering it) around a gzip payload. */
  const bzWith = (payload: Buffer) => {
    const b = synthBzImage({ payload });
    b.writeUInt32LE(Math.ceil((b.length - 1024) / 16), 0x1f4);
    return b;
  };

  /** inspect, payload build, check and kexec-plan all refuse `file` with `message`. */
  async function refusedEverywhere(file: string, message: RegExp): Promise<void> {
    await refused(file, message);
    const cl = join(t.dir, "gz.yaml");
    writeFileSync(cl, `nodes:\n  - {name: g1, kernel: ${file}, cmdline: [console=ttyS0]}\n`);
    const c = await run(["check", cl]);
    expect(c.code, "check").toBe(1);
    expect(c.stdout + c.stderr).toMatch(message);
    const p = await run(["kexec-plan", "g1", "-c", cl]);
    expect(p, "kexec-plan").toMatchObject({ code: 1, stdout: "" });
    expect(p.stderr).toMatch(message);
  }

  it("zeroed bytes inside the compressed data, a bad CRC32, a payload_length that does not match", async () => {
    const elf = Buffer.concat([synthElf(), randomBytes(200_000)]);
    const gz = gzipSync(elf);
    expect((await run(["inspect", put("gzok.bz", bzWith(gz))])).code).toBe(0);
    const zeroed = Buffer.from(gz);
    zeroed.fill(0, 5000, 5040);
    await refusedEverywhere(put("gzzero.bz", bzWith(zeroed)), /gzzero\.bz payload: damaged gzip data \(.+\)/);
    const crc = Buffer.from(gz);
    crc[crc.length - 8] = crc[crc.length - 8]! ^ 1;
    await refusedEverywhere(
      put("gzcrc.bz", bzWith(crc)),
      /gzcrc\.bz payload: damaged gzip data \(CRC32 0x[0-9a-f]+ of the data, 0x[0-9a-f]+ in the trailer\)/,
    );
    // payload_length 16 bytes longer than the gzip member it holds
    const long = bzWith(Buffer.concat([gz, Buffer.alloc(16)]));
    await refusedEverywhere(
      put("gzlen.bz", long),
      new RegExp(
        `gzlen\\.bz: payload_length is ${gz.length + 16} bytes but its gzip data ends after ${gz.length}`,
      ),
    );
  });

  it("a gzip bomb (1 GiB of zeros in a few MB) is refused past 512 MiB without holding what it decodes to", async () => {
    // one fixed-Huffman block: a literal 0, then matches of 258 bytes at distance 1 (13 bits each)
    const matches = Math.ceil((1 << 30) / 258);
    const body = Buffer.alloc(Math.ceil((3 + 8 + matches * 13 + 7) / 8) + 8);
    let bitPos = 0;
    const put1 = (bit: number) => {
      if (bit) body[bitPos >> 3] = body[bitPos >> 3]! | (1 << (bitPos & 7));
      bitPos++;
    };
    const code = (c: number, n: number) => {
      for (let i = n - 1; i >= 0; i--) put1((c >> i) & 1); // Huffman codes go most significant bit first
    };
    put1(1); // BFINAL
    put1(1); // BTYPE 01: fixed codes, written least significant bit first
    put1(0);
    code(0b00110000, 8); // literal 0
    for (let i = 0; i < matches; i++) {
      code(0b11000101, 8); // length symbol 285: 258 bytes
      code(0, 5); // distance symbol 0: distance 1
    }
    code(0, 7); // end of block
    const header = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    const bomb = Buffer.concat([header, body.subarray(0, (bitPos + 7) >> 3), Buffer.alloc(8)]);
    const file = put("bomb.bz", bzWith(bomb));
    const before = process.resourceUsage().maxRSS;
    const r = await run(["inspect", file]);
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toMatch(/bomb\.bz payload: damaged gzip data \(it decodes to more than 536870912 bytes/);
    // the peak resident size grew by far less than the 512 MiB a buffered decode would hold
    expect(process.resourceUsage().maxRSS - before).toBeLessThan(128 * 1024);
  });
});

describe("extract-vmlinux", () => {
  it("a bzImage whose gzip payload is damaged: a clear error, no output", async () => {
    const payload = gzipSync(Buffer.concat([synthElf(), Buffer.alloc(100_000, 7)]));
    for (let i = 20; i < payload.length - 8; i += 7) payload[i]! ^= 0x55;
    const bz = put("gzbad.bz", synthBzImage({ payload }));
    const out = join(t.dir, "gzbad.elf");
    const r = await run(["extract-vmlinux", bz, "-o", out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^bootcfg: .*gzbad\.bz payload: damaged gzip data \(.+\)\n$/);
    expect(existsSync(out)).toBe(false);
  });
});

describe("bad option values and manifest sets", () => {
  const cl = join(t.dir, "q.yaml");
  writeFileSync(join(t.dir, "qbz"), synthBzImage({ xloadflags: 0x7f }));
  writeFileSync(cl, "nodes:\n  - {name: n1, kernel: qbz, cmdline: [console=ttyS0]}\n");

  it("qemu: a bad --marker, --timeout, --memory or --accel is a usage error; nothing runs", async () => {
    const initrd = join(t.dir, "q.initrd");
    for (const [opt, val, msg] of [
      ["--marker", "(", /--marker: Invalid regular expression/],
      ["--timeout", "abc", /--timeout abc: expected a number of seconds/],
      ["--timeout", "0", /--timeout 0: expected/],
      ["--memory", "lots", /--memory lots: expected a size/],
      ["--accel", "foo", /--accel foo: use tcg, kvm or auto/],
    ] as const) {
      const r = await run(["qemu", "n1", "-c", cl, "--run", "--initrd-out", initrd, opt, val]);
      expect(r.code, `${opt} ${val}`).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(existsSync(initrd)).toBe(false);
    }
  });

  it("diff: a JSON file whose manifests are not a map of manifests is refused", async () => {
    const good = await run(["manifest", "--all", "-c", cl]);
    expect(good.code, good.stderr).toBe(0);
    const ok = put("m-ok.json", Buffer.from(good.stdout));
    expect((await run(["diff", ok, ok])).code).toBe(0);
    for (const body of ['{"manifests": 5}', '{"manifests": [1]}', '{"manifests": {"n1": "x"}}']) {
      const r = await run(["diff", put("m-bad.json", Buffer.from(body)), ok]);
      expect(r.code, body).toBe(1);
      expect(r.stderr).toMatch(/m-bad\.json: "manifests" is not a map of node → manifest/);
    }
  });
});

describe("kexec-plan --format xbootfs", () => {
  it("refuses a BASEPORT that is not a port (NaN, past 65534)", async () => {
    const cl = join(t.dir, "xb.yaml");
    writeFileSync(join(t.dir, "xbz"), synthBzImage({ xloadflags: 0x7f }));
    writeFileSync(cl, "nodes:\n  - {name: n1, kernel: xbz}\n");
    expect((await run(["kexec-plan", "n1", "-c", cl, "--format", "xbootfs"])).stdout).toContain(
      "BASEPORT=20002\n",
    );
    expect(
      (await run(["kexec-plan", "n1", "-c", cl, "--format", "xbootfs", "--baseport", "30000"])).stdout,
    ).toContain("BASEPORT=30000\n");
    for (const bad of ["abc", "65535", "0", "1.5"]) {
      const r = await run(["kexec-plan", "n1", "-c", cl, "--format", "xbootfs", "--baseport", bad]);
      expect(r, bad).toMatchObject({ code: 2, stdout: "" });
      expect(r.stderr).toMatch(/expected a port from 1 to 65534/);
    }
    // the default, two ports per node from 20002, runs out after 22,767 nodes
    const many = join(t.dir, "xb-many.yaml");
    writeFileSync(many, 'nodes:\n  - {name: "n[1-30000]", kernel: xbz}\n');
    expect((await run(["kexec-plan", "n22767", "-c", many, "--format", "xbootfs"])).stdout).toContain(
      "BASEPORT=65534\n",
    );
    const r = await run(["kexec-plan", "n22768", "-c", many, "--format", "xbootfs"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/n22768: the default BASEPORT for node number 22768 would be 65536/);
  });
});
