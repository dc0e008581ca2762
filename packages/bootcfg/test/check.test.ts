// F2: compatibility checks, table-driven over synthetic kernels written to a temp dir.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkCluster } from "../src/check.js";
import { Cluster } from "../src/cluster/resolve.js";
import { FileCache } from "../src/files.js";
import { writeUImage } from "../src/formats/uimage.js";
import { need, run, sh, tempDir } from "./helpers.js";
import { synthArm64Image, synthBzImage, synthElf } from "./synth.js";

const t = tempDir();
afterAll(() => t.cleanup());
const f = (name: string, data: Uint8Array) => {
  writeFileSync(join(t.dir, name), data);
  return name;
};
f("bz64", synthBzImage({ xloadflags: 0x7f }));
f("bz32", synthBzImage({ xloadflags: 0 }));
f("bz205", synthBzImage({ version: 0x0205, xloadflags: 0 }));
f("bzhuge", synthBzImage({ xloadflags: 1, initSize: 0x40000000 }));
f("bz64below4g", synthBzImage({ xloadflags: 1 })); // XLF_KERNEL_64 without CAN_BE_LOADED_ABOVE_4G
f("Image", synthArm64Image());
f("elf64", synthElf({ machine: 0x3e }));
f("elfa64", synthElf({ machine: 0xb7 }));
const uimg = writeUImage(Buffer.from("kernel"), {
  arch: "arm64",
  load: 0x80080000,
  entry: 0x80080000,
  name: "L",
});
f("uImage", uimg);
const bad = Buffer.from(uimg);
bad[66] = (bad[66] ?? 0) ^ 0xff;
f("uImage.bad", bad);
f("initrd", Buffer.alloc(4096));
const small = synthBzImage({ xloadflags: 1 });
small.writeUInt32LE(0x1200000 - 1, 0x22c); // initrd_addr_max: 1 MiB of room after the kernel
f("bzlow", small);
small.writeUInt16LE(0x7f, 0x236);
f("bzlow64", small); // the same, a relocatable bzImage64
f("initrd2m", Buffer.alloc(2 << 20));

function check(node: string, opts: { extra?: string; cmdline?: string[] } = {}) {
  const yaml = `defaults:\n  cmdline: ${JSON.stringify(opts.cmdline ?? ["console=ttyS0"])}\n  initrds: [initrd]\nnodes:\n  - name: ${node}\n${opts.extra ?? ""}`;
  writeFileSync(join(t.dir, "c.yaml"), yaml);
  return checkCluster(Cluster.load(join(t.dir, "c.yaml")), new FileCache());
}

const cases: Array<[string, string, RegExp | null, string[]?]> = [
  ["64-bit bzImage on x86_64", "    arch: x86_64\n    kernel: bz64\n", null],
  [
    "32-bit bzImage on x86_64",
    "    arch: x86_64\n    kernel: bz32\n",
    /n1: bzImage \(boot protocol 2\.15, 32-bit\) is not 64-bit capable .* but the node is x86_64/,
  ],
  [
    "64-bit bzImage on i386",
    "    arch: i386\n    kernel: bz64\n",
    /n1: bzImage .* is a 64-bit kernel but the node is i386/,
  ],
  ["32-bit bzImage on i386", "    arch: i386\n    kernel: bz32\n", null],
  ["bzImage on arm64", "    arch: arm64\n    kernel: bz64\n", /is an x86 kernel but the node is arm64/],
  ["arm64 Image on arm64", "    arch: arm64\n    kernel: Image\n", null],
  [
    "arm64 Image on x86_64",
    "    arch: x86_64\n    kernel: Image\n",
    /n1: arm64 Image but the node is x86_64/,
  ],
  ["x86-64 ELF on x86_64", "    arch: x86_64\n    kernel: elf64\n", null],
  [
    "aarch64 ELF on x86_64",
    "    arch: x86_64\n    kernel: elfa64\n",
    /n1: ELF64 aarch64 kernel but the node is x86_64/,
  ],
  [
    "declared format differs",
    "    kernel: {path: bz64, format: elf}\n",
    /kernel\.format says elf but .* is bzImage/,
  ],
  [
    "cmdline over a 2.05 kernel's 255",
    "    arch: i386\n    kernel: bz205\n",
    /n1: command line is 300 bytes, kernel accepts 255/,
    [`x=${"a".repeat(298)}`],
  ],
  [
    "memory too small for init_size",
    "    kernel: bzhuge\n    memory: 512M\n",
    /n1: needs .* init_size 1\.0 GiB .* but memory is 512\.0 MiB/,
  ],
  [
    "initrd above initrd_addr_max",
    "    kernel: bzlow\n    initrds: [initrd2m]\n",
    /initrds total 2\.0 MiB, but only 1\.0 MiB fit below initrd_addr_max 0x11fffff/,
  ],
  [
    "initrd above initrd_addr_max of a bzImage64, kexec: loaded high, not refused",
    "    kernel: bzlow64\n    initrds: [initrd2m]\n",
    null,
  ],
  [
    "initrd above initrd_addr_max of a bzImage64 booted by pxelinux",
    "    kernel: bzlow64\n    initrds: [initrd2m]\n    delivery: pxe\n    mac: 52:54:00:00:00:09\n",
    /initrds total 2\.0 MiB, but only 1\.0 MiB fit below initrd_addr_max 0x11fffff/,
  ],
  [
    "kexec_file_load of an ELF",
    "    kernel: elf64\n    kexec: {syscall: kexec_file_load}\n",
    /kexec_file_load cannot load ELF64 x86_64; use kexec\.syscall: kexec_load/,
  ],
  [
    "kexec_file_load of a 64-bit bzImage that cannot be loaded above 4 GiB",
    "    kernel: bz64below4g\n    kexec: {syscall: kexec_file_load}\n",
    /n1: kexec_file_load cannot load bzImage \(boot protocol 2\.15, 64-bit\) \(it takes a relocatable bzImage64: protocol 2\.12\+, LOADED_HIGH, XLF_KERNEL_64 and XLF_CAN_BE_LOADED_ABOVE_4G\); use kexec\.syscall: kexec_load/,
  ],
  ["kexec_load of the same kernel", "    kernel: bz64below4g\n", null],
  [
    "payload without coreboot",
    "    kernel: bz64\n    delivery: payload\n",
    /delivery "payload" needs firmware: coreboot/,
  ],
  [
    "arm64 coreboot payload must be a uImage",
    "    arch: arm64\n    kernel: Image\n    delivery: payload\n    firmware: coreboot\n",
    /coreboot on arm64 loads a uImage\/FIT payload/,
  ],
  [
    "arm64 uImage payload",
    "    arch: arm64\n    kernel: uImage\n    delivery: payload\n    firmware: coreboot\n",
    null,
  ],
  ["damaged uImage", "    arch: arm64\n    kernel: uImage.bad\n", /uImage data CRC mismatch/],
  [
    "pxelinux on arm64",
    "    arch: arm64\n    kernel: Image\n    delivery: pxe\n    mac: 52:54:00:00:00:01\n",
    /pxelinux is x86 BIOS only; use delivery: ipxe for arm64/,
  ],
  ["pxe without a MAC", "    kernel: bz64\n    delivery: pxe\n", /delivery "pxe" needs a mac address/],
  ["missing kernel file", "    kernel: nope\n", /n1: kernel .*\/nope: no such file/],
  ["a directory as initrd", "    kernel: bz64\n    initrds: [.]\n", /n1: initrd .*: is a directory/],
];

describe("check", () => {
  for (const [name, extra, err, cmdline] of cases)
    it(name, () => {
      const r = check("n1", { extra, ...(cmdline ? { cmdline } : {}) });
      if (err === null) expect(r.errors).toEqual([]);
      else {
        expect(r.ok).toBe(false);
        expect(r.errors.join("\n")).toMatch(err);
      }
    });
  it("duplicate MACs and IPs across nodes", () => {
    const r = check("n1", {
      extra:
        "    kernel: bz64\n    mac: 52:54:00:00:00:01\n    ip: 10.0.0.1\n  - name: n2\n    kernel: bz64\n    mac: 52:54:00:00:00:01\n    ip: 10.0.0.1\n",
    });
    expect(r.errors).toEqual([
      "n2: MAC 52:54:00:00:00:01 is also used by n1",
      "n2: IP 10.0.0.1 is also used by n1",
    ]);
  });
  it("a node that cannot be resolved (no kernel) fails the whole check: exit 1", async () => {
    const r = check("n1", { extra: "  - name: n2\n    kernel: bz64\n" });
    expect(r.ok).toBe(false);
    expect(r.errors).toEqual([expect.stringMatching(/c\.yaml:\d+: n1: no kernel set/)]);
    const cli = await run(["check", join(t.dir, "c.yaml")]);
    expect(cli.stdout).toContain("2 nodes checked: 1 ok, 1 failed");
    expect(cli.code).toBe(1);
  });
  it("records each file's size and hash", () => {
    const r = check("n1", { extra: "    kernel: bz64\n" });
    expect(r.nodes[0]!.kernel).toMatchObject({
      format: "bzImage",
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(r.nodes[0]!.initrds[0]).toMatchObject({
      size: 4096,
      sha256: "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7",
    });
  });
});

// The command line limit a node meets depends on who hands the line to the kernel: direct loaders
// honour cmdline_size; kexec-tools counts the NUL against it (`kexec -d -l` on the Debian kernel
// refuses 2047 bytes with "Kernel command line too long for kernel!", see fixture.test.ts);
// kexec_file_load also keeps 30 bytes for elfcorehdr=; pxelinux and iPXE on UEFI add their own.
describe("check: what iPXE does to a command line", () => {
  // measured with Debian's ipxe.lkrn: quotes and backslashes pass as they are, ${…} is expanded
  it("an iPXE setting reference ($ and {) is refused for iPXE nodes, kept for others", () => {
    const mac = '    mac: "52:54:00:00:00:01"\n    baseUrl: http://h\n';
    // biome-ignore lint/suspicious/noTemplateCurlyInString: an iPXE setting, on purpose
    const line = ["console=ttyS0", 'x="${platform}"'];
    expect(
      check("n1", { extra: `    kernel: bz64\n    delivery: ipxe\n${mac}`, cmdline: line }).errors,
    ).toEqual([
      'n1: the command line holds "${", which iPXE expands as one of its settings before the kernel sees it',
    ]);
    expect(check("n1", { extra: `    kernel: bz64\n    delivery: qemu\n`, cmdline: line }).errors).toEqual(
      [],
    );
  });
});

describe("check: command line limits per delivery path", () => {
  const line = (n: number) => [`x=${"a".repeat(n - 2)}`];
  const mac = '    mac: "52:54:00:00:00:01"\n';
  const limits: Array<[string, string, number, string | null]> = [
    ["qemu: cmdline_size itself", "    kernel: bz64\n    delivery: qemu\n", 2047, null],
    [
      "qemu: one byte more",
      "    kernel: bz64\n    delivery: qemu\n",
      2048,
      "n1: command line is 2048 bytes, kernel accepts 2047",
    ],
    ["kexec_load: cmdline_size less the NUL", "    kernel: bz64\n", 2046, null],
    [
      "kexec_load: cmdline_size bytes",
      "    kernel: bz64\n",
      2047,
      "n1: command line is 2047 bytes, kexec accepts 2046 (it counts the NUL against cmdline_size 2047)",
    ],
    [
      "kexec_load of a 2.05 kernel: the kernel's 255 (kexec-tools only warns)",
      "    arch: i386\n    kernel: bz205\n",
      256,
      "n1: command line is 256 bytes, kernel accepts 255",
    ],
    [
      "kexec_file_load: room for elfcorehdr=",
      "    kernel: bz64\n    kexec: {syscall: kexec_file_load}\n",
      2016,
      null,
    ],
    [
      "kexec_file_load: one byte more",
      "    kernel: bz64\n    kexec: {syscall: kexec_file_load}\n",
      2017,
      "n1: command line is 2017 bytes, kexec_file_load accepts 2016 (cmdline_size 2047 less the NUL and 30 bytes kept for elfcorehdr=)",
    ],
    // "BOOT_IMAGE=bz64 " + " initrd=initrd,n1.cpio" = 38 bytes
    ["pxelinux: with what it adds", `    kernel: bz64\n    delivery: pxe\n${mac}`, 2047 - 38, null],
    [
      "pxelinux: one byte more",
      `    kernel: bz64\n    delivery: pxe\n${mac}`,
      2047 - 37,
      "n1: command line is 2010 bytes, 2048 with the 38 bytes pxelinux adds (BOOT_IMAGE=bz64 … initrd=initrd,n1.cpio), kernel accepts 2047",
    ],
    // iPXE on BIOS passes the line as it is; on UEFI " initrd=initrd initrd=n1.cpio" (29 bytes)
    ["iPXE on BIOS", `    kernel: bz64\n    delivery: ipxe\n    baseUrl: http://h\n${mac}`, 2047, null],
    [
      "iPXE on UEFI",
      `    kernel: bz64\n    delivery: ipxe\n    firmware: uefi\n    baseUrl: http://h\n${mac}`,
      2047 - 28,
      "n1: command line is 2019 bytes, 2048 with the 29 bytes iPXE adds (initrd=initrd initrd=n1.cpio), kernel accepts 2047",
    ],
    ["ELF kernel on x86_64: COMMAND_LINE_SIZE - 1", "    kernel: elf64\n", 2047, null],
    [
      "ELF kernel on x86_64: one byte more",
      "    kernel: elf64\n",
      2048,
      "n1: command line is 2048 bytes, kernel accepts 2047",
    ],
  ];
  for (const [name, extra, bytes, err] of limits)
    it(name, () => {
      const r = check("n1", { extra, cmdline: line(bytes) });
      expect(r.nodes[0]!.cmdlineBytes).toBe(bytes);
      expect(r.errors).toEqual(err === null ? [] : [err]);
    });
});

// QEMU's x86 -kernel: a bzImage, an ELF32 with a multiboot header, or an ELF with a PVH note.
// Judged by QEMU itself: it loads the kernel when the machine is made (-S: before any code runs)
// and quits on the monitor's "quit", or refuses the file and exits 1.
describe("check: delivery qemu with ELF kernels, judged by qemu-system-x86_64", () => {
  const mb = Buffer.alloc(4096);
  mb.writeUInt32LE(0x1badb002, 0);
  mb.writeUInt32LE(-0x1badb002 >>> 0, 8);
  const elfs: Array<[string, Buffer, string | null]> = [
    ["ELF64 with neither note nor header", synthElf({ machine: 0x3e }), "has neither"],
    [
      "ELF64 with a multiboot header",
      synthElf({ machine: 0x3e, loads: [{ paddr: 0x100000, data: mb, flags: 5 }] }),
      "which takes no x86-64 ELF",
    ],
    ["ELF32 with neither", synthElf({ machine: 3, class: 32 }), "has neither"],
    [
      "ELF32 with a multiboot header",
      synthElf({ machine: 3, class: 32, loads: [{ paddr: 0x100000, data: mb, flags: 5 }] }),
      null,
    ],
  ];
  for (const [name, elf, err] of elfs)
    it(name, (ctx) => {
      need(ctx, { tools: ["qemu-system-x86_64"] });
      const file = f(`qemu-${name.replaceAll(" ", "-")}`, elf);
      const r = check("n1", {
        extra: `    arch: ${elf[4] === 1 ? "i386" : "x86_64"}\n    kernel: ${file}\n    delivery: qemu\n`,
      });
      if (err === null) expect(r.errors).toEqual([]);
      else expect(r.errors).toEqual([expect.stringContaining(err)]);
      const q = sh(
        "qemu-system-x86_64",
        ["-machine", "pc", "-accel", "tcg", "-m", "64", "-display", "none", "-nic", "none", "-S"].concat([
          "-serial",
          "none",
          "-monitor",
          "stdio",
          "-kernel",
          join(t.dir, file),
        ]),
        { input: Buffer.from("quit\n") },
      );
      expect(q.status, q.stderr).toBe(err === null ? 0 : 1);
    });
});
