// The real Debian kernels, judged by independent tools: file(1), readelf, lz4, kexec, cbfstool, cpio.
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkCluster } from "../src/check.js";
import { Cluster } from "../src/cluster/resolve.js";
import { FileCache } from "../src/files.js";
import { parseBzImage } from "../src/formats/bzimage.js";
import { parseCbfs } from "../src/formats/cbfs.js";
import { inspectFile } from "../src/inspect.js";
import { combinedInitrd, manifest, PlanCache, planNode } from "../src/plan.js";
import {
  clusterYaml,
  KERNEL_AMD64,
  KERNEL_ARM64,
  need,
  run,
  sh,
  tempDir,
  writeBaseInitrd,
} from "./helpers.js";
import { synthElf } from "./synth.js";

const t = tempDir();
afterAll(() => t.cleanup());
const have = existsSync(KERNEL_AMD64);
let vmlinux = "";

beforeAll(async () => {
  writeBaseInitrd(join(t.dir, "base.gz"));
  writeFileSync(join(t.dir, "basea64.gz"), readFileSync(join(t.dir, "base.gz")));
  writeFileSync(join(t.dir, "cluster.yaml"), clusterYaml());
  if (have) {
    vmlinux = join(t.dir, "vmlinux");
    const r = await run(["extract-vmlinux", KERNEL_AMD64, "-o", vmlinux]);
    if (r.code !== 0) throw new Error(r.stderr);
  }
}, 120_000);

/** Values that are printed by `cbfstool print -v` for each SELF segment. */
function cbfstoolSegments(rom: string): string[] {
  const out = sh("cbfstool", [rom, "print", "-v"]).stdout;
  return out
    .split("\n")
    .filter((l) => /^\s+(code|data|bss|params|entry)/.test(l))
    .map((l) => l.trim().replace(/^(\w+)\s+/, "$1 "));
}

function ourSegments(rom: string): string[] {
  const f = parseCbfs(readFileSync(rom)).files.find((x) => x.segments)!;
  return f.segments!.map((s) =>
    s.type === "entry"
      ? `entry (0x${s.load.toString(16)})`
      : `${s.type} (${s.compression} compression, offset: 0x${s.offset.toString(16)}, load: 0x${s.load.toString(16)}, length: ${s.len}/${s.memLen})`,
  );
}

describe("F1 inspection of the fixture kernels", () => {
  it("bzImage: every setup header value of the spec table", (ctx) => {
    need(ctx, { files: [KERNEL_AMD64] });
    const i = parseBzImage(readFileSync(KERNEL_AMD64));
    const h = i.header;
    expect(h.setupSects).toBe(39);
    expect(h.bootFlag).toBe(0xaa55);
    expect(h.version).toBe(0x020f);
    expect(h.vidMode).toBe(0xffff);
    expect(h.loadflags).toBe(0x01);
    expect(h.code32Start).toBe(0x100000);
    expect(h.initrdAddrMax).toBe(0x7fffffff);
    expect(h.kernelAlignment).toBe(0x200000);
    expect(h.relocatableKernel).toBe(1);
    expect(h.minAlignment).toBe(21);
    expect(h.xloadflags).toBe(0x7f);
    expect(h.cmdlineSize).toBe(2047);
    expect(h.prefAddress).toBe(0x1000000n);
    expect(i.payload.compression).toBe("lz4-legacy");
    expect(i.efiStub).toBe(true);
    expect(i.release).toMatch(/^\d+\.\d+\.\d+-\d+-cloud-amd64$/);
  });
  it("bzImage: version string equal to file(1)'s", (ctx) => {
    need(ctx, { tools: ["file"], files: [KERNEL_AMD64] });
    const fileOut = sh("file", ["-b", KERNEL_AMD64]).stdout;
    const m = /version (.*?), (RO-rootFS|RW-rootFS|swap_dev)/.exec(fileOut);
    expect(m, fileOut).not.toBeNull();
    expect(parseBzImage(readFileSync(KERNEL_AMD64)).versionString).toBe(m![1]);
  });
  it("extracted vmlinux: byte-identical to lz4 -dc of the payload; entry and PT_LOADs equal readelf -lW; PVH note equals readelf -n", (ctx) => {
    need(ctx, { tools: ["readelf", "lz4"], files: [KERNEL_AMD64] });
    const bz = readFileSync(KERNEL_AMD64);
    const p = parseBzImage(bz).payload;
    const ref = sh("lz4", ["-dc"], { input: bz.subarray(p.offset, p.offset + p.length) });
    const ours = readFileSync(vmlinux);
    expect(ours.length).toBe(p.decompressedSize);
    expect(Buffer.from(ref.stdout, "latin1").equals(ours)).toBe(true);
    const re = sh("readelf", ["-lW", vmlinux]).stdout;
    const entry = /Entry point (0x[0-9a-f]+)/.exec(re)![1]!;
    const loads = [
      ...re.matchAll(
        /^\s+LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)/gm,
      ),
    ].map((m) => [BigInt(m[1]!), BigInt(m[3]!), BigInt(m[4]!), BigInt(m[5]!)]);
    const info = inspectFile(vmlinux);
    if (info.format !== "elf") throw new Error("not ELF");
    expect(info.entry).toBe(BigInt(entry));
    expect(
      info.programHeaders
        .filter((x) => x.type === 1)
        .map((x) => [BigInt(x.offset), x.paddr, BigInt(x.filesz), BigInt(x.memsz)]),
    ).toEqual(loads);
    const notes = sh("readelf", ["-n", vmlinux]).stdout;
    expect(notes).toMatch(/Xen\s+0x00000008\s+Unknown note type: \(0x00000012\)/);
    const desc = /Unknown note type: \(0x00000012\)\s+description data: ((?:[0-9a-f]{2} ?)+)/.exec(notes);
    const pvh = desc ? Number(`0x${desc[1]!.trim().split(" ").reverse().join("")}`) : undefined;
    expect(info.pvhEntry).toBeGreaterThan(0x1000000);
    if (pvh !== undefined) expect(info.pvhEntry).toBe(pvh);
  });
  it("arm64 Image: the spec's header values", (ctx) => {
    need(ctx, { files: [KERNEL_ARM64] });
    const i = inspectFile(KERNEL_ARM64);
    expect(i).toMatchObject({
      format: "arm64-image",
      textOffset: 0n,
      imageSize: 0x1ab0000n,
      flags: 0xan,
      pageSize: "4K",
      efiStub: true,
      peOffset: 0x40,
    });
  });
  it("CLI: random bytes are an unknown format, exit 1", async () => {
    const f = join(t.dir, "random.bin");
    writeFileSync(f, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) & 0xff)));
    const r = await run(["inspect", f]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/random\.bin: unknown format/);
  });
});

describe("F2 checks against the fixture kernel", () => {
  it("a 2100-byte command line is rejected with the kernel's limit", (ctx) => {
    need(ctx, { files: [KERNEL_AMD64] });
    const long = `x=${"a".repeat(2100 - 2 - "console=ttyS0 panic=-1 quiet ".length)}`;
    const yaml = `${clusterYaml()}  - name: n07\n    profiles: [x86]\n    cmdline: ["${long}"]\n`;
    writeFileSync(join(t.dir, "long.yaml"), yaml);
    const c = Cluster.load(join(t.dir, "long.yaml"));
    const r = checkCluster(c, new FileCache(), ["n07"]);
    expect(c.resolve("n07").cmdline.join(" ")).toHaveLength(2100);
    expect(r.errors).toEqual([
      "n07: command line is 2100 bytes, kexec accepts 2046 (it counts the NUL against cmdline_size 2047)",
    ]);
  });
  it("the mixed cluster checks clean: x86_64 nodes against the bzImage, arm64 nodes against the Image", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64, KERNEL_ARM64] });
    const r = await run(["check", join(t.dir, "cluster.yaml"), "--json"]);
    const j = JSON.parse(r.stdout);
    expect(j.errors).toEqual([]);
    expect(r.code).toBe(0);
    expect(j.nodes.find((n: { node: string }) => n.node === "a1").kernel.format).toBe("arm64-image");
    expect(j.nodes.find((n: { node: string }) => n.node === "n01").kernel.format).toBe("bzImage");
  });
  it("F11: an arm64 node given the x86 kernel is refused", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64] });
    writeFileSync(
      join(t.dir, "mix.yaml"),
      `${clusterYaml()}  - name: bad1\n    profiles: [arm]\n    kernel: ${KERNEL_AMD64}\n`,
    );
    const r = await run(["check", join(t.dir, "mix.yaml"), "--node", "bad1"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /error: bad1: bzImage \(boot protocol 2\.15, 64-bit\) is an x86 kernel but the node is arm64/,
    );
  });
});

describe("F4 initramfs", () => {
  it("cpio -itv lists exactly what we wrote, incl. the device node", (ctx) => {
    need(ctx, { tools: ["cpio", "gzip"] });
    const raw = sh("gzip", ["-dc", join(t.dir, "base.gz")]);
    const list = sh("cpio", ["-itv"], { input: Buffer.from(raw.stdout, "latin1") });
    const lines = list.stdout.trim().split("\n");
    expect(lines.map((l) => l.split(/\s+/).at(-1))).toEqual(
      ["bin", "bin/busybox", "dev", "dev/console", "etc", "init", "proc", "sbin"].sort(
        (a, b) =>
          ["bin", "bin/busybox", "dev", "dev/console", "etc", "proc", "sbin", "init"].indexOf(a) -
          ["bin", "bin/busybox", "dev", "dev/console", "etc", "proc", "sbin", "init"].indexOf(b),
      ),
    );
    expect(list.stdout).toMatch(/crw-------\s+1 root\s+root\s+5,\s+1 .* dev\/console/);
  });
  it("CLI build from a tree is byte-identical on two runs; hard links and symlinks as cpio lists them", async (ctx) => {
    need(ctx, { tools: ["cpio"] });
    const tree = join(t.dir, "tree");
    sh("mkdir", ["-p", join(tree, "etc"), join(tree, "bin")]);
    writeFileSync(join(tree, "etc/motd"), "hello\n");
    sh("ln", ["-sf", "busybox", join(tree, "bin/sh")]);
    const build = (out: string) =>
      run(["initrd", "build", "--tree", tree, "--dev", "dev/console:c:5:1", "-o", join(t.dir, out)]);
    const a = await build("a.gz");
    sh("touch", [join(tree, "etc/motd")]);
    const b = await build("b.gz");
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(readFileSync(join(t.dir, "a.gz")).equals(readFileSync(join(t.dir, "b.gz")))).toBe(true);
    // hard links inside the tree share an inode; the data is stored once, on the last name
    sh("ln", [join(tree, "etc/motd"), join(tree, "etc/motd2")]);
    expect(
      (await run(["initrd", "build", "--tree", tree, "--no-gzip", "-o", join(t.dir, "c.cpio")])).code,
    ).toBe(0);
    const list = sh("cpio", ["-itv"], { input: readFileSync(join(t.dir, "c.cpio")) }).stdout;
    expect(list).toMatch(/-rw-r--r--\s+2 root\s+root\s+0 .* etc\/motd\n/);
    expect(list).toMatch(/-rw-r--r--\s+2 root\s+root\s+6 .* etc\/motd2\n/);
    expect(list).toMatch(/lrwxrwxrwx .* bin\/sh -> busybox/);
  });
});

describe("F6 kexec plans judged by the real kexec (parse only: no kexec on the host)", () => {
  it("kexec -d -l with the plan's arguments builds its segment list", async (ctx) => {
    need(ctx, { tools: ["kexec"], files: [KERNEL_AMD64] });
    const c = Cluster.load(join(t.dir, "cluster.yaml"));
    const files = new FileCache();
    const p = planNode(c, c.resolve("n01"), new PlanCache(files));
    writeFileSync(join(t.dir, "n01.initrd"), combinedInitrd(p, files));
    const args = p.kexecArgs
      .slice(1)
      .map((a) =>
        a === "/boot/bootcfg/kernel"
          ? KERNEL_AMD64
          : a.replace("/boot/bootcfg/initrd", join(t.dir, "n01.initrd")),
      );
    expect(p.kexecArgs).toContain("bzImage64");
    const r = sh("kexec", ["-d", ...args]);
    expect(r.stdout + r.stderr).toMatch(/nr_segments = \d+/);
    const bad = join(t.dir, "corrupt");
    const k = readFileSync(KERNEL_AMD64);
    k.fill(0, 0x1f0, 0x210);
    writeFileSync(bad, k);
    const r2 = sh("kexec", ["-d", "-l", bad, `--initrd=${join(t.dir, "n01.initrd")}`]);
    expect(r2.stdout + r2.stderr).toMatch(/Cannot determine the file type/);
  });
  it("the command line limit check agrees with kexec's: cmdline_size - 1 bytes load, cmdline_size bytes are refused", async (ctx) => {
    need(ctx, { tools: ["kexec"], files: [KERNEL_AMD64] });
    const cmdlineSize = parseBzImage(readFileSync(KERNEL_AMD64)).header.cmdlineSize;
    for (const bytes of [cmdlineSize - 1, cmdlineSize]) {
      const long = `x=${"a".repeat(bytes - 2 - "console=ttyS0 panic=-1 quiet ".length)}`;
      const file = join(t.dir, `limit${bytes}.yaml`);
      writeFileSync(file, `${clusterYaml()}  - name: n07\n    profiles: [x86]\n    cmdline: ["${long}"]\n`);
      const c = Cluster.load(file);
      const files = new FileCache();
      const check = checkCluster(c, files, ["n07"]);
      const p = planNode(c, c.resolve("n07"), new PlanCache(files));
      expect(p.cmdline).toHaveLength(bytes);
      const args = p.kexecArgs.slice(1).map((a) => (a === "/boot/bootcfg/kernel" ? KERNEL_AMD64 : a));
      const k = sh("kexec", ["-d", ...args.filter((a) => !a.startsWith("--initrd="))]);
      const out = k.stdout + k.stderr;
      if (bytes < cmdlineSize) {
        expect(check.errors).toEqual([]);
        expect(out).toMatch(/nr_segments = \d+/);
      } else {
        expect(check.errors).toEqual([
          `n07: command line is ${bytes} bytes, kexec accepts ${cmdlineSize - 1} (it counts the NUL against cmdline_size ${cmdlineSize})`,
        ]);
        expect(out).toContain("Kernel command line too long for kernel!");
        expect(out).not.toMatch(/nr_segments/);
      }
    }
  });
  it("a 64-bit kernel that cannot be loaded above 4 GiB gets -t bzImage, which kexec takes (it refuses -t bzImage64)", async (ctx) => {
    need(ctx, { tools: ["kexec"], files: [KERNEL_AMD64] });
    const k = readFileSync(KERNEL_AMD64);
    k.writeUInt16LE(k.readUInt16LE(0x236) & ~2, 0x236); // clear XLF_CAN_BE_LOADED_ABOVE_4G
    const below = join(t.dir, "vmlinuz-below4g");
    writeFileSync(below, k);
    writeFileSync(
      join(t.dir, "below.yaml"),
      `${clusterYaml({ kernel: below })}  - {name: s2, profiles: [compute], kexec: {syscall: kexec_file_load}}\n`,
    );
    const c = Cluster.load(join(t.dir, "below.yaml"));
    const files = new FileCache();
    const p = planNode(c, c.resolve("s1"), new PlanCache(files));
    expect(p.kexecArgs.slice(0, 4)).toEqual(["kexec", "-l", "-t", "bzImage"]);
    const args = p.kexecArgs
      .slice(1)
      .filter((a) => !a.startsWith("--initrd="))
      .map((a) => (a === "/boot/bootcfg/kernel" ? below : a));
    const ok = sh("kexec", ["-d", ...args]);
    expect(ok.stdout + ok.stderr).toMatch(/nr_segments = \d+/);
    const refused = sh("kexec", ["-d", "-l", "-t", "bzImage64", below, "--command-line=x"]);
    expect(refused.stdout + refused.stderr).toContain("Wrong file type bzImage64, file matches type bzImage");
    expect(checkCluster(c, files, ["s2"]).errors).toEqual([
      expect.stringMatching(
        /^s2: kexec_file_load cannot load bzImage \(boot protocol 2\.15, 64-bit\) \(it takes a relocatable bzImage64/,
      ),
    ]);
  });
  it("initrd_addr_max binds pxelinux, not kexec's bzImage64 loader (it loads the initrd high)", async (ctx) => {
    need(ctx, { tools: ["kexec"], files: [KERNEL_AMD64] });
    const k = readFileSync(KERNEL_AMD64);
    k.writeUInt32LE(0x11fffff, 0x22c); // initrd_addr_max 18 MiB: under the kernel's own footprint
    const low = join(t.dir, "vmlinuz-lowmax");
    writeFileSync(low, k);
    writeFileSync(
      join(t.dir, "lowmax.yaml"),
      `${clusterYaml({ kernel: low })}  - {name: p1, profiles: [compute], delivery: pxe, mac: "52:54:00:00:01:01"}\n`,
    );
    const c = Cluster.load(join(t.dir, "lowmax.yaml"));
    const files = new FileCache();
    const r = checkCluster(c, files, ["s1", "p1"]);
    expect(r.nodes[0]!.errors).toEqual([]);
    expect(r.nodes[1]!.errors).toEqual([
      expect.stringMatching(/^p1: initrds total .* fit below initrd_addr_max 0x11fffff after the kernel$/),
    ]);
    const p = planNode(c, c.resolve("s1"), new PlanCache(files));
    const initrd = join(t.dir, "s1.initrd");
    writeFileSync(initrd, combinedInitrd(p, files));
    const args = p.kexecArgs
      .slice(1)
      .map((a) => (a === "/boot/bootcfg/kernel" ? low : a.replace("/boot/bootcfg/initrd", initrd)));
    expect(args).toContain("bzImage64");
    const out = sh("kexec", ["-d", ...args]);
    const at = /Loaded initrd at 0x([0-9a-f]+)/.exec(out.stdout + out.stderr);
    expect(at, out.stderr).not.toBeNull();
    expect(Number.parseInt(at![1]!, 16)).toBeGreaterThan(0x11fffff);
    expect(out.stdout + out.stderr).toMatch(/nr_segments = \d+/);
  });
  it("a beoboot image of the plan is accepted by kexec's beoboot-x86 loader with the plan's initrd", async (ctx) => {
    need(ctx, { tools: ["kexec"], files: [KERNEL_AMD64] });
    const beo = join(t.dir, "n01.beo");
    const r = await run([
      "kexec-plan",
      "n01",
      "-c",
      join(t.dir, "cluster.yaml"),
      "--format",
      "beoboot",
      "-o",
      beo,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const c = Cluster.load(join(t.dir, "cluster.yaml"));
    const p = planNode(c, c.resolve("n01"), new PlanCache(new FileCache()));
    const k = sh("kexec", ["-d", "-l", "-t", "beoboot-x86", beo]);
    const out = k.stdout + k.stderr;
    expect(out).toMatch(/nr_segments = \d+/);
    expect(out).toContain(`size 0x${p.initrd.size.toString(16)}`);
  });
  it("the ELF vmlinux plan (elf-x86_64 --args-linux) parses too", async (ctx) => {
    need(ctx, { tools: ["kexec"], files: [KERNEL_AMD64] });
    writeFileSync(
      join(t.dir, "elf.yaml"),
      `${clusterYaml()}  - name: e1\n    profiles: [compute]\n    kernel: ${vmlinux}\n`,
    );
    const r = await run(["kexec-plan", "e1", "-c", join(t.dir, "elf.yaml"), "--format", "json"]);
    const plan = JSON.parse(r.stdout);
    expect(plan.kexec.argv.slice(0, 5)).toEqual(["kexec", "-l", "-t", "elf-x86_64", "--args-linux"]);
    const args = (plan.kexec.argv as string[])
      .slice(1)
      .map((a) =>
        a === "/boot/bootcfg/kernel" ? vmlinux : a.replace("/boot/bootcfg/initrd", join(t.dir, "n01.initrd")),
      );
    const k = sh("kexec", ["-d", ...args]);
    expect(k.stdout + k.stderr).toMatch(/nr_segments = \d+/);
  });
});

describe("F7/F8 coreboot payloads judged by cbfstool", () => {
  it("F7: the emitted cbfstool command works on a fresh ROM; our CBFS parser lists the segments cbfstool prints; the cmdline segment is the node's", async (ctx) => {
    need(ctx, { tools: ["cbfstool", "readelf"], files: [KERNEL_AMD64] });
    const rom = join(t.dir, "rom.bin");
    expect(sh("cbfstool", [rom, "create", "-m", "x86", "-s", "32M"]).status).toBe(0);
    const r = await run([
      "coreboot",
      "n01",
      "-c",
      join(t.dir, "cluster.yaml"),
      "--rom",
      rom,
      "--format",
      "json",
      "-o",
      join(t.dir, "cb"),
    ]);
    expect(r.code).toBe(0);
    const cfg = JSON.parse(r.stdout);
    expect(cfg.kconfig).toMatch(/^CONFIG_PAYLOAD_LINUX=y$/m);
    expect(cfg.kconfig).toContain(
      `CONFIG_LINUX_COMMAND_LINE="console=ttyS0 panic=-1 quiet bootcfg.profile=compute bootcfg.node=n01"`,
    );
    const add = sh(cfg.cbfstool[0], cfg.cbfstool.slice(1));
    expect(add.status, add.stderr).toBe(0);
    const theirs = cbfstoolSegments(rom);
    expect(theirs.length).toBeGreaterThanOrEqual(5);
    expect(ourSegments(rom)).toEqual(theirs);
    const f = parseCbfs(readFileSync(rom)).files.find((x) => x.name === "fallback/payload")!;
    const img = readFileSync(rom);
    const cmd = f
      .segments!.filter((s) => s.type === "data")
      .map((s) =>
        img
          .subarray(f.offset + f.dataOffset + s.offset, f.offset + f.dataOffset + s.offset + s.len)
          .toString("latin1"),
      );
    expect(cmd).toContain("console=ttyS0 panic=-1 quiet bootcfg.profile=compute bootcfg.node=n01\0");
    const elf = join(t.dir, "payload.elf");
    expect(sh("cbfstool", [rom, "extract", "-n", "fallback/payload", "-f", elf, "-m", "x86"]).status).toBe(0);
    expect(sh("readelf", ["-lW", elf]).stdout).toMatch(/LOAD/);
  });
  it("F8: our SELF in our CBFS is listed by cbfstool with the same segments and extracts; equal bytes to cbfstool add-payload of the same ELF", async (ctx) => {
    need(ctx, { tools: ["cbfstool", "readelf"], files: [KERNEL_AMD64] });
    // cbfstool's own image with the payload, and ours added to a cbfstool-created image
    const elf = join(t.dir, "payload.elf");
    if (!existsSync(elf)) ctx.skip();
    const theirs = join(t.dir, "theirs.rom");
    const mine = join(t.dir, "mine.rom");
    const created = join(t.dir, "empty.rom");
    sh("cbfstool", [created, "create", "-m", "x86", "-s", "32M"]);
    sh("cp", [created, theirs]);
    expect(sh("cbfstool", [theirs, "add-payload", "-f", elf, "-n", "fallback/payload"]).status).toBe(0);
    const r = await run(["payload", "build", elf, "--rom", created, "-o", mine]);
    expect(r.code, r.stderr).toBe(0);
    expect(ourSegments(mine)).toEqual(cbfstoolSegments(mine));
    expect(cbfstoolSegments(mine)).toEqual(cbfstoolSegments(theirs));
    expect(readFileSync(mine).equals(readFileSync(theirs))).toBe(true);
    // and an image made entirely by us
    const ours = join(t.dir, "ours.rom");
    expect((await run(["payload", "build", elf, "--create-rom", "32M", "-o", ours])).code).toBe(0);
    expect(readFileSync(ours).equals(readFileSync(theirs))).toBe(true);
    expect(
      sh("cbfstool", [ours, "extract", "-n", "fallback/payload", "-f", join(t.dir, "back.elf"), "-m", "x86"])
        .status,
    ).toBe(0);
  });
  it("F8: an ELF with a BSS-only PT_LOAD between two others: equal bytes to cbfstool add-payload", async (ctx) => {
    need(ctx, { tools: ["cbfstool"] });
    const elf = join(t.dir, "bss.elf");
    writeFileSync(
      elf,
      synthElf({
        loads: [
          { paddr: 0x100000, data: Buffer.alloc(256, 0x90), memsz: 512, flags: 5 },
          { paddr: 0x200000, data: Buffer.alloc(0), memsz: 4096, flags: 6 },
          { paddr: 0x300000, data: Buffer.alloc(128, 0x11), flags: 6 },
        ],
      }),
    );
    const created = join(t.dir, "bss-empty.rom");
    const theirs = join(t.dir, "bss-theirs.rom");
    const mine = join(t.dir, "bss-mine.rom");
    expect(sh("cbfstool", [created, "create", "-m", "x86", "-s", "1M"]).status).toBe(0);
    sh("cp", [created, theirs]);
    expect(
      sh("cbfstool", [theirs, "add-payload", "-f", elf, "-n", "fallback/payload", "-c", "none"]).status,
    ).toBe(0);
    const r = await run(["payload", "build", elf, "--rom", created, "-o", mine]);
    expect(r.code, r.stderr).toBe(0);
    expect(cbfstoolSegments(mine)).toEqual(cbfstoolSegments(theirs));
    expect(readFileSync(mine).equals(readFileSync(theirs))).toBe(true);
  });
});

describe("F8 bzImage → SELF with our trampoline, judged by cbfstool and readelf", () => {
  const cmdline = "console=ttyS0 panic=-1 bootcfg.node=n1";
  it("cbfstool print -v lists our segments; extract -m x86 gives an ELF whose PT_LOADs do not overlap; kernel, command line and initrd bytes equal cbfstool's own conversion", async (ctx) => {
    need(ctx, { tools: ["cbfstool", "readelf", "kexec"], files: [KERNEL_AMD64] });
    const initrd = join(t.dir, "base.gz");
    const rom = join(t.dir, "bz-ours.rom");
    const r = await run([
      "payload",
      "build",
      KERNEL_AMD64,
      "--cmdline",
      cmdline,
      "--initrd",
      initrd,
      "--create-rom",
      "32M",
      "-o",
      rom,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout);
    const h = parseBzImage(readFileSync(KERNEL_AMD64)).header;
    const kernelLen = statSync(KERNEL_AMD64).size - h.setupSize;
    const initrdLen = statSync(initrd).size;
    const tramp = o.segments[2];
    expect(o.initrd.address).toBe(0x4400000); // 16 MiB + init_size 0x3378000, rounded up to 1 MiB
    const listed = cbfstoolSegments(rom).map((l) => l.replace(/offset: 0x[0-9a-f]+, /, ""));
    expect(listed).toEqual([
      "data (none compression, load: 0x90000, length: 4096/4096)",
      `code (none compression, load: 0x1000000, length: ${kernelLen}/${h.initSize})`,
      `code (none compression, load: 0x${tramp.start.toString(16)}, length: ${tramp.len}/${tramp.memLen})`,
      `data (none compression, load: 0x91000, length: ${cmdline.length + 1}/${cmdline.length + 1})`,
      `data (none compression, load: 0x4400000, length: ${initrdLen}/${initrdLen})`,
      `entry (0x${tramp.start.toString(16)})`,
    ]);
    expect(ourSegments(rom)).toEqual(cbfstoolSegments(rom));
    const elf = join(t.dir, "bz-ours.elf");
    const x = sh("cbfstool", [rom, "extract", "-n", "fallback/payload", "-f", elf, "-m", "x86"]);
    expect(x.status, x.stderr).toBe(0);
    const loads = sh("readelf", ["-lW", elf])
      .stdout.split("\n")
      .filter((l) => /^\s+LOAD\s/.test(l))
      .map((l) => {
        const f = l.trim().split(/\s+/);
        return { start: Number(f[3]), end: Number(f[3]) + Number(f[5]) };
      });
    expect(loads.length).toBe(5);
    for (const [i, a] of loads.entries())
      for (const b of loads.slice(i + 1))
        expect(a.start < b.end && b.start < a.end, `${JSON.stringify([a, b])}`).toBe(false);
    // kexec-tools' own ELF loader takes the extracted payload: no overlapping segments (it
    // refuses cbfstool's conversion with "Overlapping memory segments")
    const k = sh("kexec", ["-d", "-l", "-t", "elf-x86", "--args-elf", elf]);
    expect(k.stdout + k.stderr).toMatch(/nr_segments = \d+/);
    expect(k.stdout + k.stderr).not.toMatch(/Overlapping/);
    expect(sh("readelf", ["-hW", elf]).stdout).toMatch(
      new RegExp(`Entry point address:\\s+0x${tramp.start.toString(16)}\\b`),
    );
    // cbfstool's own conversion of the same inputs: same kernel placement and bytes
    const theirs = join(t.dir, "bz-theirs.rom");
    expect(sh("cbfstool", [theirs, "create", "-m", "x86", "-s", "32M"]).status).toBe(0);
    const add = sh("cbfstool", [
      theirs,
      "add-payload",
      "-f",
      KERNEL_AMD64,
      "-n",
      "fallback/payload",
      "-C",
      cmdline,
      "-I",
      initrd,
    ]);
    expect(add.status, add.stderr).toBe(0);
    const bytesOf = (file: string) => {
      const img = readFileSync(file);
      const f = parseCbfs(img).files.find((x) => x.name === "fallback/payload")!;
      return f
        .segments!.filter((s) => s.type !== "entry")
        .map((s) => ({
          load: s.load,
          data: img.subarray(f.offset + f.dataOffset + s.offset, f.offset + f.dataOffset + s.offset + s.len),
        }));
    };
    const ours = bytesOf(rom);
    const cb = bytesOf(theirs);
    const kernelOf = (segs: typeof ours) => segs.find((s) => s.load === 0x1000000n)!;
    expect(kernelOf(ours).data.equals(kernelOf(cb).data)).toBe(true);
    const text = (segs: typeof ours) =>
      segs.map((s) => s.data.toString("latin1")).find((d) => d === `${cmdline}\0`);
    expect(text(ours)).toBe(text(cb));
    const rd = readFileSync(initrd);
    expect(ours.some((s) => s.data.equals(rd))).toBe(true);
    expect(cb.some((s) => s.data.equals(rd))).toBe(true);
    // our zero page carries the image's setup header from 0x1f1 (cbfstool's copies less of it)
    const zp = ours.find((s) => s.load === 0x90000n)!.data;
    const image = readFileSync(KERNEL_AMD64);
    expect(zp.subarray(0x1f1, 0x210).equals(image.subarray(0x1f1, 0x210))).toBe(true);
    expect(zp.readUInt32LE(0x228)).toBe(0x91000);
    expect(zp.readUInt32LE(0x218)).toBe(0x4400000);
    expect(zp.readUInt32LE(0x21c)).toBe(initrdLen);
  });

  it("coreboot --format payload prints the recommended bootcfg command; run as printed it adds the node's payload to a cbfstool ROM", async (ctx) => {
    need(ctx, { tools: ["cbfstool"], files: [KERNEL_AMD64] });
    const rom = join(t.dir, "n02.rom");
    expect(sh("cbfstool", [rom, "create", "-m", "x86", "-s", "32M"]).status).toBe(0);
    const c = await run([
      "coreboot",
      "n02",
      "-c",
      join(t.dir, "cluster.yaml"),
      "--rom",
      rom,
      "--format",
      "json",
      "-o",
      join(t.dir, "cb2"),
    ]);
    expect(c.code, c.stderr).toBe(0);
    const cfg = JSON.parse(c.stdout);
    expect(cfg.payloadBuild.slice(0, 4)).toEqual(["bootcfg", "payload", "build", KERNEL_AMD64]);
    expect(cfg.cbfstool[2]).toBe("add-payload"); // still offered as the alternative
    expect(cfg.payloadLayout).toMatchObject({
      entry: 0x92000,
      kernelLoad: 0x1000000,
      initrd: { address: 0x4400000 },
    });
    // no warning about bootcfg's own layout; cbfstool's puts the initrd inside this kernel's init_size
    expect(c.stderr).not.toMatch(/payload's layout|would fail/);
    expect(c.stderr).toMatch(
      /^warning: n02: cbfstool's conversion .* loads the initrd at 0x4000000, inside the kernel's working area 0x1000000-0x4378000 /m,
    );
    // a node with less RAM than the fixed layout needs is warned about
    const small = join(t.dir, "small.yaml");
    writeFileSync(
      small,
      readFileSync(join(t.dir, "cluster.yaml"), "utf8").replace("memory: 512M", "memory: 64M"),
    );
    const w = await run(["coreboot", "n02", "-c", small, "--format", "payload", "-o", join(t.dir, "cb3")]);
    expect(w.code).toBe(0);
    expect(w.stderr).toMatch(
      /^warning: n02: the payload's layout needs RAM up to (6[5-9]|7\d)\.0 MiB, the node has 64\.0 MiB$/m,
    );
    const line = await run([
      "coreboot",
      "n02",
      "-c",
      join(t.dir, "cluster.yaml"),
      "--rom",
      rom,
      "--format",
      "payload",
      "-o",
      join(t.dir, "cb2"),
    ]);
    expect(line.stdout).toContain("bootcfg payload build");
    const b = await run(cfg.payloadBuild.slice(1));
    expect(b.code, b.stderr).toBe(0);
    const p = sh("cbfstool", [rom, "print", "-v"]);
    expect(p.stdout).toMatch(/fallback\/payload\s+0x0\s+simple elf/);
    const f = parseCbfs(readFileSync(rom)).files.find((x) => x.name === "fallback/payload")!;
    const img = readFileSync(rom);
    const texts = f.segments!.map((s) =>
      img
        .subarray(f.offset + f.dataOffset + s.offset, f.offset + f.dataOffset + s.offset + s.len)
        .toString("latin1"),
    );
    expect(texts).toContain(`${cfg.kconfig.match(/CONFIG_LINUX_COMMAND_LINE="(.*)"/)[1]}\0`);
  });
});

describe("F12 reproducibility", () => {
  it("manifests and rendered trees are identical across two runs; diff names changed nodes", async (ctx) => {
    need(ctx, { files: [KERNEL_AMD64, KERNEL_ARM64] });
    const c = Cluster.load(join(t.dir, "cluster.yaml"));
    const m = manifest(c, planNode(c, c.resolve("n02"), new PlanCache(new FileCache())));
    expect(Object.keys(m)).toEqual([
      "tool",
      "node",
      "cluster",
      "profiles",
      "arch",
      "firmware",
      "delivery",
      "ip",
      "mac",
      "kernel",
      "initrds",
      "initrd",
      "cmdline",
      "kexec",
    ]);
    expect(m).toMatchObject({
      node: "n02",
      ip: "10.0.0.2",
      mac: "52:54:00:00:00:02",
      profiles: ["x86", "compute"],
      cmdline: "console=ttyS0 panic=-1 quiet bootcfg.profile=compute bootcfg.node=n02",
    });
    for (const d of ["r1", "r2"])
      expect((await run(["render", "-c", join(t.dir, "cluster.yaml"), "-o", join(t.dir, d)])).code).toBe(0);
    const a = sh("sh", ["-c", `cd ${t.dir}/r1 && find . -type f | sort | xargs sha256sum`]).stdout;
    const b = sh("sh", ["-c", `cd ${t.dir}/r2 && find . -type f | sort | xargs sha256sum`]).stdout;
    expect(a.split("\n").length).toBeGreaterThan(30);
    expect(a).toBe(b);
    const changed = clusterYaml().replace(
      "cmdline: [bootcfg.stage=2, via=kexec-bzImage]",
      "cmdline: [bootcfg.stage=2, via=kexec-other]",
    );
    writeFileSync(join(t.dir, "new.yaml"), changed);
    const d = await run(["diff", join(t.dir, "cluster.yaml"), join(t.dir, "new.yaml")]);
    expect(d.code).toBe(1);
    expect(d.stdout).toBe("changed  s1: initrds, initrd, cmdline, kexec\n");
  });
});
