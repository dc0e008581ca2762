// The CLI contract: --help, exit codes 0/1/2, --json, errors that say what to fix.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readCpio } from "../src/formats/cpio.js";
import { need, run, tempDir } from "./helpers.js";
import { synthArm64Image, synthBzImage, synthElf } from "./synth.js";

const t = tempDir();
afterAll(() => t.cleanup());
writeFileSync(join(t.dir, "bz"), synthBzImage({ xloadflags: 0x7f }));
writeFileSync(join(t.dir, "Image"), synthArm64Image());
writeFileSync(join(t.dir, "base.gz"), Buffer.alloc(0));
writeFileSync(
  join(t.dir, "cluster.yaml"),
  `defaults:\n  cmdline: [console=ttyS0]\nprofiles:\n  x86: {arch: x86_64, kernel: bz, initrds: [base.gz]}\n  arm: {arch: arm64, kernel: Image, cmdline: [console=ttyAMA0]}\nnodes:\n  - {name: "n[1-3]", profiles: [x86], mac: "52:54:00:00:00:01", delivery: ipxe}\n  - {name: a1, profiles: [arm], overlay: {/etc/motd: "hi {{node}}"}}\n`,
);

describe("bootcfg CLI", () => {
  it("--help exits 0, no command exits 2 with usage", async () => {
    expect(await run(["--help"])).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^usage: bootcfg \[-c FILE\] COMMAND/),
    });
    // No command is a usage error: the usage goes to stderr, as every usage error's message does.
    expect(await run([])).toMatchObject({
      code: 2,
      stdout: "",
      stderr: expect.stringMatching(/^usage: bootcfg \[-c FILE\] COMMAND/),
    });
    for (const cmd of [
      "inspect",
      "check",
      "show",
      "kexec-plan",
      "coreboot",
      "serve",
      "initrd",
      "qemu",
      "diff",
    ])
      expect((await run([cmd, "--help"])).code, cmd).toBe(0);
  });
  it("--version and -V print the package's version and exit 0", async () => {
    const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    for (const flag of ["--version", "-V"])
      expect(await run([flag])).toEqual({ code: 0, stdout: `bootcfg ${version}\n`, stderr: "" });
    expect((await run(["--help"])).stdout).toContain("--version");
  });
  it("unknown commands and options are usage errors (2): one line that says where the help is", async () => {
    const cases: Array<[string[], string]> = [
      [["frobnicate"], 'bootcfg: unknown command "frobnicate" (see bootcfg --help)'],
      [["--bogus"], "bootcfg: unknown option --bogus (see bootcfg --help)"],
      [["inspect", "--bogus", "x"], "bootcfg: unknown option --bogus (see bootcfg inspect --help)"],
      [["check", "-c"], "bootcfg: option -c/--cluster needs a value (see bootcfg check --help)"],
      [["nodes", "--json=yes"], "bootcfg: option --json takes no value (see bootcfg nodes --help)"],
      [["initrd", "build", "-x"], "bootcfg: unknown option -x (see bootcfg initrd --help)"],
    ];
    for (const [argv, message] of cases)
      expect({ argv, ...(await run(argv, t.dir)) }).toEqual({
        argv,
        code: 2,
        stdout: "",
        stderr: `${message}\n`,
      });
    expect(await run(["show"], t.dir)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/NODE is required/),
    });
  });
  it("finds ./cluster.yaml, lists nodes, shows a node as JSON", async () => {
    expect((await run(["nodes"], t.dir)).stdout).toBe("n1\nn2\nn3\na1\n");
    const j = JSON.parse((await run(["show", "a1", "--json"], t.dir)).stdout);
    expect(j).toMatchObject({
      name: "a1",
      arch: "arm64",
      cmdline: ["console=ttyAMA0"],
      overlay: { "/etc/motd": "hi a1" },
    });
  });
  it("takes -c FILE before the command as well as after it", async () => {
    const d = join(t.dir, "elsewhere");
    mkdirSync(d);
    const file = join(t.dir, "cluster.yaml");
    const want = { code: 0, stdout: "n1\nn2\nn3\na1\n", stderr: "" };
    for (const argv of [
      ["-c", file, "nodes"],
      [`-c${file}`, "nodes"],
      [`--cluster=${file}`, "nodes"],
      ["--cluster", file, "nodes"],
      ["nodes", "-c", file],
    ])
      expect({ argv, ...(await run(argv, d)) }).toEqual({ argv, ...want });
    // given twice, the one after the command counts (as for any option given twice)
    expect(await run(["-c", join(d, "nosuch.yaml"), "nodes", "-c", file], d)).toEqual(want);
    expect(await run(["-c", file], d)).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^usage: bootcfg/),
    });
  });
  it("finds ./cluster.yml too; with no cluster file the help and the error name all three names", async () => {
    const d = join(t.dir, "yml");
    mkdirSync(d);
    copyFileSync(join(t.dir, "bz"), join(d, "bz"));
    writeFileSync(join(d, "cluster.yml"), "defaults: {kernel: bz}\nnodes:\n  - {name: y1}\n");
    expect(await run(["nodes"], d)).toEqual({ code: 0, stdout: "y1\n", stderr: "" });
    const empty = join(t.dir, "nocluster");
    mkdirSync(empty);
    expect(await run(["nodes"], empty)).toMatchObject({
      code: 2,
      stderr: expect.stringContaining(
        "bootcfg: no cluster file: pass -c FILE, set BOOTCFG_CLUSTER, or create ./cluster.yaml (or cluster.yml, cluster.json)\n",
      ),
    });
    expect((await run(["--help"])).stdout).toContain(
      "Cluster file (-c FILE, $BOOTCFG_CLUSTER, or ./cluster.yaml|cluster.yml|cluster.json):",
    );
  });
  it("initrd build --help and qemu --help name every option they take", async () => {
    const r = await run(["initrd", "build", "--help"]);
    expect(r.code).toBe(0);
    for (const opt of [
      "-o OUT",
      "--tree DIR",
      "--dev",
      "--file DEST=SRC",
      "--no-gzip",
      "--level 0-9",
      "--keep-mtime",
      "--mtime SECONDS",
      "--json",
    ])
      expect(r.stdout, opt).toContain(opt);
    const q = await run(["qemu", "--help"]);
    for (const opt of ["--accel tcg|kvm|auto", "--memory SIZE", "--initrd-out FILE", "[--json]"])
      expect(q.stdout, opt).toContain(opt);
  });
  it("an unknown node is exit 1 with the cluster file named", async () => {
    const r = await run(["show", "n9"], t.dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bootcfg: n9: no such node in .*cluster\.yaml/);
  });
  it("check exits 0 when every node fits", async () => {
    const r = await run(["check"], t.dir);
    expect(r.stdout).toMatch(/4 nodes checked: 4 ok, 0 failed/);
    expect(r.code).toBe(0);
  });
  it("kexec-plan: sh and json forms agree, arm64 gets -t Image", async () => {
    const sh = (await run(["kexec-plan", "a1"], t.dir)).stdout;
    expect(sh).toMatch(/^#!\/bin\/sh\n/);
    expect(sh).toContain(
      "kexec -l -t Image /boot/bootcfg/kernel --initrd=/boot/bootcfg/initrd --command-line=console=ttyAMA0\n",
    );
    const j = JSON.parse((await run(["kexec-plan", "n2", "--json"], t.dir)).stdout);
    expect(j.kexec.argv).toEqual([
      "kexec",
      "-l",
      "-t",
      "bzImage64",
      "/boot/bootcfg/kernel",
      "--initrd=/boot/bootcfg/initrd",
      "--command-line=console=ttyS0",
    ]);
    expect(j.uroot.argv).toEqual([
      "kexec",
      "-l",
      "--initrd",
      "/boot/bootcfg/initrd",
      "--cmdline",
      "console=ttyS0",
      "/boot/bootcfg/kernel",
    ]);
    const xb = (await run(["kexec-plan", "n2", "--format", "xbootfs"], t.dir)).stdout;
    expect(xb).toMatch(/^KERNEL=\/boot\/bootcfg\/kernel\nINITRD=\/boot\/bootcfg\/initrd\nBASEPORT=20004$/m);
  });
  it("the sh plan verifies what it fetched, then runs kexec with the planned arguments", async () => {
    const dir = join(t.dir, "node-n3");
    const bin = join(t.dir, "fakebin");
    mkdirSync(dir, { recursive: true });
    mkdirSync(bin, { recursive: true });
    writeFileSync(
      join(t.dir, "plan.yaml"),
      `${readFileSync(join(t.dir, "cluster.yaml"), "utf8")}  - {name: n3, kexec: {dir: "${dir}"}}\n`,
    );
    copyFileSync(join(t.dir, "bz"), join(dir, "kernel"));
    expect(
      (await run(["initrd", "combine", "n3", "-c", join(t.dir, "plan.yaml"), "-o", join(dir, "initrd")]))
        .code,
    ).toBe(0);
    const plan = join(t.dir, "n3.sh");
    expect((await run(["kexec-plan", "n3", "-c", join(t.dir, "plan.yaml"), "-o", plan])).code).toBe(0);
    // a stand-in kexec that records its arguments, one per line
    writeFileSync(
      join(bin, "kexec"),
      `#!/bin/sh\nfor a in "$@"; do echo "$a"; done >> ${join(t.dir, "kexec.log")}\n`,
      { mode: 0o755 },
    );
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
    const ok = spawnSync("sh", [plan], { env });
    expect(ok.status, ok.stderr.toString()).toBe(0);
    expect(readFileSync(join(t.dir, "kexec.log"), "utf8").split("\n")).toEqual([
      "-l",
      "-t",
      "bzImage64",
      join(dir, "kernel"),
      `--initrd=${join(dir, "initrd")}`,
      "--command-line=console=ttyS0",
      "-e",
      "",
    ]);
    writeFileSync(join(dir, "initrd"), "tampered");
    const bad = spawnSync("sh", [plan], { env });
    expect(bad.status).toBe(1);
    expect(bad.stderr.toString()).toMatch(/initrd does not match the plan/);
  });
  it("kexec_file_load plans use -s and leave the type to the kernel", async () => {
    writeFileSync(
      join(t.dir, "file.yaml"),
      `${readFileSync(join(t.dir, "cluster.yaml"), "utf8")}  - {name: n2, kexec: {syscall: kexec_file_load}}\n`,
    );
    const j = JSON.parse((await run(["kexec-plan", "n2", "-c", join(t.dir, "file.yaml"), "--json"])).stdout);
    expect(j.kexec).toEqual({
      syscall: "kexec_file_load",
      argv: [
        "kexec",
        "-s",
        "-l",
        "/boot/bootcfg/kernel",
        "--initrd=/boot/bootcfg/initrd",
        "--command-line=console=ttyS0",
      ],
    });
  });
  it("a multiboot ELF32 gets kexec's multiboot-x86 loader, its initrd as a module; kexec parses the plan", async (ctx) => {
    const mb = Buffer.alloc(4096);
    mb.writeUInt32LE(0x1badb002, 0);
    mb.writeUInt32LE(-0x1badb002 >>> 0, 8);
    writeFileSync(
      join(t.dir, "mb.elf"),
      synthElf({ machine: 3, class: 32, loads: [{ paddr: 0x100000, data: mb, flags: 5 }] }),
    );
    writeFileSync(join(t.dir, "plain32.elf"), synthElf({ machine: 3, class: 32 }));
    writeFileSync(
      join(t.dir, "mb.yaml"),
      `${readFileSync(join(t.dir, "cluster.yaml"), "utf8")}  - {name: m1, arch: i386, kernel: mb.elf, initrds: [base.gz]}\n  - {name: m2, arch: i386, kernel: plain32.elf, initrds: [base.gz]}\n`,
    );
    const plan = async (node: string) =>
      JSON.parse((await run(["kexec-plan", node, "-c", join(t.dir, "mb.yaml"), "--json"])).stdout).kexec
        .argv as string[];
    const m1 = await plan("m1");
    expect(m1).toEqual([
      "kexec",
      "-l",
      "-t",
      "multiboot-x86",
      "/boot/bootcfg/kernel",
      "--module=/boot/bootcfg/initrd",
      "--command-line=console=ttyS0",
    ]);
    // a Linux ELF (no multiboot header) keeps the Linux boot protocol
    expect((await plan("m2")).slice(0, 5)).toEqual(["kexec", "-l", "-t", "elf-x86", "--args-linux"]);
    need(ctx, { tools: ["kexec"] });
    writeFileSync(join(t.dir, "mod.bin"), Buffer.alloc(4096, 1)); // the node's initrd (never empty: it has the overlay)
    const local = (argv: string[], kernel: string) =>
      argv
        .slice(1)
        .map((a) =>
          a.replace("/boot/bootcfg/kernel", kernel).replace("/boot/bootcfg/initrd", join(t.dir, "mod.bin")),
        );
    const k = spawnSync("kexec", ["-d", ...local(m1, join(t.dir, "mb.elf"))]);
    expect(`${k.stdout}${k.stderr}`).toMatch(/nr_segments = 4/); // kernel, module, multiboot info, purgatory
    const refused = spawnSync("kexec", [
      "-d",
      "-l",
      "-t",
      "multiboot-x86",
      join(t.dir, "mb.elf"),
      `--initrd=${join(t.dir, "mod.bin")}`,
    ]);
    expect(`${refused.stderr}`).toContain("unrecognized option '--initrd=");
  });
  it("beoboot image from a plan reads back with the plan's cmdline", async () => {
    const out = join(t.dir, "n1.beo");
    expect((await run(["kexec-plan", "n1", "--format", "beoboot", "-o", out], t.dir)).code).toBe(0);
    const j = JSON.parse((await run(["inspect", out, "--json"])).stdout);
    expect(j).toMatchObject({
      format: "beoboot",
      cmdline: "console=ttyS0",
      kernelSize: readFileSync(join(t.dir, "bz")).length,
    });
  });
  it("initrd overlay holds node.json and the rendered overlay files", async () => {
    const out = join(t.dir, "a1.cpio");
    expect((await run(["initrd", "overlay", "a1", "-o", out], t.dir)).code).toBe(0);
    const buf = readFileSync(out);
    const { entries } = readCpio(buf);
    expect(entries.map((e) => e.name)).toEqual(["etc", "etc/bootcfg", "etc/bootcfg/node.json", "etc/motd"]);
    const motd = entries.find((e) => e.name === "etc/motd")!;
    expect(buf.subarray(motd.dataOffset, motd.dataOffset + motd.size).toString()).toBe("hi a1");
  });
  it("ipxe writes per-MAC scripts and a dispatcher", async () => {
    const r = await run(["ipxe", "-o", join(t.dir, "ipxe"), "--json"], t.dir);
    expect(JSON.parse(r.stdout)).toEqual({
      n1: ["ipxe/52-54-00-00-00-01.ipxe"],
      n2: ["ipxe/52-54-00-00-00-02.ipxe"],
      n3: ["ipxe/52-54-00-00-00-03.ipxe"],
    });
    const s = readFileSync(join(t.dir, "ipxe/ipxe/52-54-00-00-00-02.ipxe"), "utf8");
    expect(s).toContain(
      "kernel bz console=ttyS0 || goto failed\ninitrd base.gz || goto failed\ninitrd n2.cpio || goto failed\nboot",
    );
    expect(readFileSync(join(t.dir, "ipxe/boot.ipxe"), "utf8")).toContain(
      `chain ipxe/$\{mac:hexhyp}.ipxe || goto unknown`,
    );
  });
  it("ipxe on arm64: one concatenated initrd, written next to the script", async () => {
    writeFileSync(
      join(t.dir, "armipxe.yaml"),
      `${readFileSync(join(t.dir, "cluster.yaml"), "utf8")}  - {name: a1, delivery: ipxe, mac: "52:54:00:00:0a:01", baseUrl: "http://10.0.0.1/boot"}\n`,
    );
    const out = join(t.dir, "armipxe");
    const r = await run(["ipxe", "-c", join(t.dir, "armipxe.yaml"), "-o", out, "--json"]);
    expect(JSON.parse(r.stdout).a1).toEqual(["ipxe/52-54-00-00-0a-01.ipxe", "a1.initrd"]);
    const s = readFileSync(join(out, "ipxe/52-54-00-00-0a-01.ipxe"), "utf8");
    expect(s.match(/^initrd .*/gm)).toEqual(["initrd http://10.0.0.1/boot/a1.initrd || goto failed"]);
    const combined = readFileSync(join(out, "a1.initrd"));
    expect(readCpio(combined).entries.map((e) => e.name)).toContain("etc/motd");
  });
  it("pxe --by-ip: pxelinux's file names, 01-<mac in lower case with dashes> and the upper-case hex IP", async () => {
    writeFileSync(
      join(t.dir, "pxe.yaml"),
      `${readFileSync(join(t.dir, "cluster.yaml"), "utf8")}  - {name: p1, profiles: [x86], delivery: pxe, mac: "52:54:00:AB:CD:EF", ip: 192.0.2.91}\n`,
    );
    const out = join(t.dir, "pxeout");
    const r = await run(["pxe", "-c", join(t.dir, "pxe.yaml"), "-o", out, "--by-ip", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).p1).toEqual(["pxelinux.cfg/01-52-54-00-ab-cd-ef", "pxelinux.cfg/C000025B"]);
    const cfg = readFileSync(join(out, "pxelinux.cfg/01-52-54-00-ab-cd-ef"), "utf8");
    expect(readFileSync(join(out, "pxelinux.cfg/C000025B"), "utf8")).toBe(cfg);
    expect(cfg.split("\n").slice(1)).toEqual([
      "DEFAULT p1",
      "PROMPT 0",
      "TIMEOUT 0",
      "SERIAL 0 115200",
      "LABEL p1",
      "  KERNEL bz",
      "  INITRD base.gz,p1.cpio",
      "  APPEND console=ttyS0",
      "",
    ]);
  });
  it("ipxe on UEFI: the kernel line names each initrd (initrd=NAME) for the EFI stub; not on BIOS", async () => {
    writeFileSync(
      join(t.dir, "efiipxe.yaml"),
      `${readFileSync(join(t.dir, "cluster.yaml"), "utf8")}  - {name: n2, firmware: uefi, baseUrl: "http://10.0.0.1/boot"}\n  - {name: a1, delivery: ipxe, firmware: uefi, mac: "52:54:00:00:0a:01"}\n`,
    );
    const out = join(t.dir, "efiipxe");
    expect((await run(["ipxe", "-c", join(t.dir, "efiipxe.yaml"), "-o", out])).code).toBe(0);
    const kernelLine = (mac: string) =>
      readFileSync(join(out, `ipxe/${mac}.ipxe`), "utf8").match(/^kernel .*/m)?.[0];
    // iPXE names an image after the last part of its URL: the names the EFI stub asks for
    expect(kernelLine("52-54-00-00-00-02")).toBe(
      "kernel http://10.0.0.1/boot/bz console=ttyS0 initrd=base.gz initrd=n2.cpio || goto failed",
    );
    expect(kernelLine("52-54-00-00-0a-01")).toBe(
      "kernel Image console=ttyAMA0 initrd=a1.initrd || goto failed",
    );
    expect(kernelLine("52-54-00-00-00-01")).toBe("kernel bz console=ttyS0 || goto failed");
  });
  it("qemu prints a command with no network and no display", async () => {
    const j = JSON.parse(
      (await run(["qemu", "a1", "--json", "--initrd-out", join(t.dir, "a1.img")], t.dir)).stdout,
    ) as string[];
    expect(j.slice(0, 5)).toEqual(["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a57"]);
    expect(j.join(" ")).toContain("-display none -no-reboot -nic none -serial stdio");
  });
  it("a bad cluster file is exit 1 with file:line: key", async () => {
    writeFileSync(join(t.dir, "bad.yaml"), "nodes:\n  - name: n1\n    kernal: bz\n");
    const r = await run(["check", join(t.dir, "bad.yaml")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bad\.yaml:3: nodes\.0\.kernal: unknown key \(did you mean "kernel"\?\)/);
  });
});

describe("outputs are written whole or not at all", () => {
  const tree = join(t.dir, "tree");
  mkdirSync(join(tree, "etc"), { recursive: true });
  writeFileSync(join(tree, "etc/motd"), "hello\n");

  it("a full disk leaves the previous output as it was, with a clear error", async (ctx) => {
    if (process.getuid?.() !== 0) ctx.skip();
    const small = join(t.dir, "small");
    mkdirSync(small);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", small], { stdio: "pipe" });
    } catch {
      ctx.skip();
    }
    try {
      const out = join(small, "initrd.cpio");
      writeFileSync(out, "the previous initrd\n");
      writeFileSync(join(tree, "big"), randomBytes(256 * 1024)); // does not compress
      const r = await run(["initrd", "build", "--tree", tree, "-o", out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `bootcfg: ${out}: cannot write it (no space left on device); it is left as it was\n`,
      );
      expect(readFileSync(out, "utf8")).toBe("the previous initrd\n");
      expect(readdirSync(small)).toEqual(["initrd.cpio"]);
    } finally {
      execFileSync("umount", ["-l", small]);
      rmSync(join(tree, "big"), { force: true });
    }
  });

  it("an output that is a symbolic link replaces the file it points to", async () => {
    const real = join(t.dir, "real.cpio");
    const link = join(t.dir, "link.cpio");
    writeFileSync(real, "old");
    symlinkSync(real, link);
    expect((await run(["initrd", "build", "--tree", tree, "--no-gzip", "-o", link])).code).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readCpio(readFileSync(real)).entries.map((e) => e.name)).toContain("etc/motd");
  });
});

describe("initrd build --file", () => {
  it("keeps the source's permission bits, as --tree does", async () => {
    const d = join(t.dir, "filemodes");
    mkdirSync(d);
    const modes: Record<string, number> = { script: 0o755, conf: 0o644, secret: 0o600, tool: 0o4755 };
    for (const [name, mode] of Object.entries(modes)) {
      writeFileSync(join(d, name), `${name}\n`);
      chmodSync(join(d, name), mode);
    }
    const out = join(d, "out.cpio");
    const r = await run([
      "initrd",
      "build",
      "--no-gzip",
      "-o",
      out,
      ...Object.keys(modes).flatMap((n) => ["--file", `etc/${n}=${join(d, n)}`]),
    ]);
    expect(r.code, r.stderr).toBe(0);
    const got = Object.fromEntries(
      readCpio(readFileSync(out))
        .entries.filter((e) => e.type === "file")
        .map((e) => [e.name, e.perm]),
    );
    expect(got).toEqual(Object.fromEntries(Object.entries(modes).map(([n, m]) => [`etc/${n}`, m])));
  });
});

describe("commands that only print write no files", () => {
  it("coreboot without -o and qemu without --run or --initrd-out: nothing in /tmp or the working directory", async () => {
    const node = `p${process.pid}`; // a name no earlier run has used
    const d = join(t.dir, "printonly");
    mkdirSync(d);
    copyFileSync(join(t.dir, "bz"), join(d, "bz"));
    writeFileSync(
      join(d, "cluster.yaml"),
      `nodes:\n  - {name: ${node}, kernel: bz, cmdline: [console=ttyS0], memory: 512M}\n`,
    );
    const before = readdirSync(d).sort();
    const note = `\`bootcfg initrd combine ${node} -o ${node}.initrd\` writes it`;
    for (const fmt of ["payload", "kconfig", "json"]) {
      const c = await run(["coreboot", node, "--format", fmt], d);
      expect(c.code, `${fmt}: ${c.stderr}`).toBe(0);
      expect(c.stderr).toContain(`note: ${node}.initrd is not written without -o DIR; ${note}`);
      expect(c.stdout).toContain(`${node}.initrd`);
    }
    const q = await run(["qemu", node], d);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout).toContain(` -initrd ${node}.initrd `);
    expect(q.stderr).toContain(
      `note: ${node}.initrd is not written without --initrd-out FILE or --run; ${note}`,
    );
    expect(existsSync(join(tmpdir(), "bootcfg", `${node}.initrd`))).toBe(false);
    expect(existsSync(join(tmpdir(), `bootcfg-${node}.initrd`))).toBe(false);
    expect(readdirSync(d).sort()).toEqual(before);
    // the initrd the note names is the one `initrd combine` writes, and `coreboot -o` still writes it
    expect((await run(["initrd", "combine", node, "-o", `${node}.initrd`], d)).code).toBe(0);
    expect((await run(["coreboot", node, "-o", "cb"], d)).code).toBe(0);
    expect(
      readFileSync(join(d, "cb", `${node}.initrd`)).equals(readFileSync(join(d, `${node}.initrd`))),
    ).toBe(true);
  });
});

describe("argument mistakes", () => {
  it("more arguments than a command takes are usage errors (2) naming the first extra one", async () => {
    const bz = join(t.dir, "bz");
    for (const [argv, msg] of [
      [["inspect", bz, "b"], 'inspect: unexpected argument "b" (inspect takes one FILE)'],
      [["kexec-plan", "n1", "n2"], 'kexec-plan: unexpected argument "n2" (kexec-plan takes one NODE)'],
      [["show", "n1", "n2"], 'show: unexpected argument "n2"'],
      [["nodes", "x"], 'nodes: unexpected argument "x"'],
      [["extract-vmlinux", bz, "x", "-o", join(t.dir, "never")], 'extract-vmlinux: unexpected argument "x"'],
      [["payload", "build", bz, "x", "-o", join(t.dir, "never")], 'payload: unexpected argument "x"'],
      [
        ["initrd", "build", "x", "--dev", "/dev/x:p", "-o", join(t.dir, "never")],
        'initrd: unexpected argument "x"',
      ],
      [["diff", "a", "b", "c"], 'diff: unexpected argument "c" (diff takes OLD and NEW)'],
      [["ipxe", "x", "-o", join(t.dir, "never")], 'ipxe: unexpected argument "x"'],
    ] as const) {
      const r = await run([...argv], t.dir);
      expect(r, argv.join(" ")).toMatchObject({ code: 2, stdout: "" });
      expect(r.stderr.startsWith(`bootcfg: ${msg}`), r.stderr).toBe(true);
      expect(r.stderr.split("\n")).toHaveLength(2); // one line
    }
    expect(existsSync(join(t.dir, "never"))).toBe(false);
  });

  it("diff: a missing NEW is a usage error, a missing file a clear error naming it", async () => {
    expect(await run(["diff", "a"], t.dir)).toMatchObject({
      code: 2,
      stderr: "bootcfg: diff: NEW is required\n",
    });
    const r = await run(["diff", "missing.yaml", "cluster.yaml"], t.dir);
    expect(r).toEqual({
      code: 1,
      stdout: "",
      stderr: `bootcfg: ${join(t.dir, "missing.yaml")}: cannot read it (no such file); diff compares two cluster files or \`manifest --all\` outputs\n`,
    });
  });

  it("coreboot -o naming a file, not a directory: a clear error, not a raw EEXIST", async () => {
    for (const out of ["/dev/null", join(t.dir, "cluster.yaml")]) {
      const r = await run(["coreboot", "n1", "-o", out], t.dir);
      expect(r, out).toEqual({
        code: 1,
        stdout: "",
        stderr: `bootcfg: ${out}: not a directory (a file of that name exists); -o names the directory to write into\n`,
      });
    }
  });
});

describe("bootcfg coreboot: the cbfstool route's fixed initrd address", () => {
  // cbfstool add-payload (and coreboot's build with CONFIG_PAYLOAD_LINUX) puts the initrd at
  // 64 MiB; a kernel whose load address + init_size reaches past it would overwrite it.
  const d = join(t.dir, "cbfs-route");
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, "big"), synthBzImage({ xloadflags: 0x7f, initSize: 0x4000000 }));
  writeFileSync(join(d, "small"), synthBzImage({ xloadflags: 0x7f, initSize: 0x1000000 }));
  writeFileSync(
    join(d, "cluster.yaml"),
    `nodes:\n  - {name: big1, arch: x86_64, kernel: big, firmware: coreboot, delivery: payload, overlay: {/etc/motd: "hi"}}\n  - {name: small1, arch: x86_64, kernel: small, firmware: coreboot, delivery: payload, overlay: {/etc/motd: "hi"}}\n`,
  );
  const warning =
    /^warning: big1: cbfstool's conversion \(`cbfstool add-payload`, CONFIG_PAYLOAD_LINUX\) loads the initrd at 0x4000000, inside the kernel's working area 0x100000-0x4100000 \(load address \+ init_size\)/m;

  it("is warned about for the Kconfig, cbfstool and JSON outputs, not for --format payload", async () => {
    for (const fmt of ["kconfig", "cbfstool", "json"]) {
      const r = await run(["coreboot", "big1", "--format", fmt], d);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr, fmt).toMatch(warning);
    }
    const p = await run(["coreboot", "big1", "--format", "payload"], d);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stderr).not.toMatch(/cbfstool/);
    expect(p.stdout).toMatch(/^bootcfg payload build /);
  });

  it("is not warned about when the kernel's working area ends below 64 MiB", async () => {
    const r = await run(["coreboot", "small1", "--format", "cbfstool"], d);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/warning/);
  });

  it("an unknown --format is refused before anything is written", async () => {
    const r = await run(["coreboot", "small1", "--format", "bogus", "-o", "out"], d);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("bootcfg: --format bogus: use kconfig, payload, cbfstool, config.lb or json\n");
    expect(existsSync(join(d, "out"))).toBe(false);
  });
});

describe("bootcfg: argument and cluster-file mistakes that used to pass silently", () => {
  const d = join(t.dir, "mistakes");
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, "bz"), synthBzImage({ xloadflags: 0x7f }));
  const node = (extra: string) => `nodes:\n  - {name: n1, arch: x86_64, kernel: bz${extra}}\n`;

  it("a template variable the node has no value for is an error naming where it is used", async () => {
    writeFileSync(join(d, "ip.yaml"), node(', cmdline: ["ip={{ip}}::198.18.0.1"]'));
    const r = await run(["show", "n1", "-c", "ip.yaml"], d);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `bootcfg: n1: cmdline "ip={{ip}}::198.18.0.1" (${join(d, "ip.yaml")}:2 nodes.0.cmdline) uses {{ip}}, but the node has no ip (set "ip:" on its node entry)\n`,
    );
    writeFileSync(join(d, "profile.yaml"), node(', overlay: {/etc/p: "{{profile}}"}'));
    const p = await run(["initrd", "overlay", "n1", "-c", "profile.yaml", "-o", "o.cpio"], d);
    expect(p.code).toBe(1);
    expect(p.stderr).toMatch(/n1: overlay \/etc\/p uses \{\{profile\}\}, but the node has no profile/);
    expect(existsSync(join(d, "o.cpio"))).toBe(false);
    writeFileSync(join(d, "ok.yaml"), node(', ip: 198.18.0.9, cmdline: ["ip={{ip}}"]'));
    expect((await run(["show", "n1", "-c", "ok.yaml", "--json"], d)).stdout).toContain('"ip=198.18.0.9"');
  });

  it("memory without a unit or beyond any machine is refused", async () => {
    for (const [m, want] of [
      [
        "512",
        /nodes\.0\.memory: 512 is 512 bytes, less than any kernel boots in \(a unit missing\? e\.g\. 512M\)/,
      ],
      ['"99999T"', /nodes\.0\.memory: "99999T" is more than a node can address \(4 PiB\)/],
    ] as const) {
      writeFileSync(join(d, "mem.yaml"), node(`, memory: ${m}`));
      const r = await run(["show", "n1", "-c", "mem.yaml"], d);
      expect(r.code, m).toBe(1);
      expect(r.stderr).toMatch(want);
    }
    writeFileSync(join(d, "mem.yaml"), node(", memory: 2T"));
    expect((await run(["show", "n1", "-c", "mem.yaml"], d)).code).toBe(0);
  });

  it("manifest with both NODE and --all is a usage error", async () => {
    writeFileSync(join(d, "cluster.yaml"), node(""));
    expect(await run(["manifest", "n1", "--all"], d)).toEqual({
      code: 2,
      stdout: "",
      stderr: "bootcfg: manifest: NODE (n1) or --all, not both\n",
    });
  });

  it("-o - is a usage error where -o names a directory; no file named -", async () => {
    writeFileSync(join(d, "cluster.yaml"), node(""));
    for (const cmd of [["coreboot", "n1"], ["pxe"], ["render"]]) {
      const e = await run([...cmd, "-o", "-"], d);
      expect(e, cmd[0]).toEqual({
        code: 2,
        stdout: "",
        stderr: "bootcfg: -o -: -o names a directory here, not standard output\n",
      });
    }
    expect(existsSync(join(d, "-"))).toBe(false);
  });
});
