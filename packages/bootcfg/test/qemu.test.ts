// Real boots under QEMU (TCG, no network): the fixture kernel with our initramfs and command line,
// read on the serial console until a marker. One boot per delivery path; they run in sequence.
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster } from "../src/cluster/resolve.js";
import { FileCache } from "../src/files.js";
import type { CpioEntry } from "../src/formats/cpio.js";
import { combinedInitrd, PlanCache, planNode, renderKexecSh } from "../src/plan.js";
import { loaderCmdline } from "../src/pxe.js";
import { qemuArgs, runUntil } from "../src/qemu.js";
import {
  BUSYBOX,
  BUSYBOX_ARM64,
  clusterYaml,
  KERNEL_AMD64,
  KERNEL_ARM64,
  need,
  run,
  sh,
  tempDir,
  writeBaseInitrd,
} from "./helpers.js";
import { highTableAddress, type MemRange, multibootSelf } from "./multiboot.js";

const t = tempDir("bootcfg-qemu-");
const cluster = () => join(t.dir, "cluster.yaml");
// TCG boots take 3-40 s on an idle machine (README) and several times that while CI runs every
// package's tests at once: the limits only catch a boot that hangs.
const BOOT_TIMEOUT = 900_000;
const MARKER_TIMEOUT = 600_000;
const timings: Record<string, number> = {};

beforeAll(() => {
  writeBaseInitrd(join(t.dir, "base.gz"));
  if (existsSync(BUSYBOX_ARM64)) writeBaseInitrd(join(t.dir, "basea64.gz"), BUSYBOX_ARM64);
  else copyFileSync(join(t.dir, "base.gz"), join(t.dir, "basea64.gz"));
  writeFileSync(cluster(), clusterYaml());
});
afterAll(() => {
  console.log(
    `QEMU boot wall times (s): ${Object.entries(timings)
      .map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`)
      .join(", ")}`,
  );
  t.cleanup();
});

function plan(node: string) {
  const c = Cluster.load(cluster());
  const files = new FileCache();
  const p = planNode(c, c.resolve(node), new PlanCache(files));
  return { p, initrd: combinedInitrd(p, files) };
}

function lineWith(lines: string[], prefix: string): string | undefined {
  return lines.find((l) => l.startsWith(prefix));
}

describe.sequential("QEMU boots of the fixture kernel", () => {
  it("direct bzImage with base initrd + per-node overlay (bootcfg qemu --run)", {
    timeout: BOOT_TIMEOUT,
  }, async (ctx) => {
    need(ctx, { tools: ["qemu-system-x86_64"], files: [KERNEL_AMD64, BUSYBOX] });
    const start = Date.now();
    const r = await run([
      "qemu",
      "n01",
      "-c",
      cluster(),
      "--run",
      "--marker",
      "^BOOTCFG-DONE",
      "--timeout",
      String(MARKER_TIMEOUT / 1000),
      "--initrd-out",
      join(t.dir, "n01.initrd"),
    ]);
    timings.bzImage = Date.now() - start;
    const lines = r.stdout.split("\n");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(lineWith(lines, "BOOTCFG-CMDLINE:")).toBe(`BOOTCFG-CMDLINE: ${plan("n01").p.cmdline}`);
    expect(lineWith(lines, "BOOTCFG-OVERLAY:")).toBe("BOOTCFG-OVERLAY: node=n01 profile=compute arch=x86_64");
    expect(lineWith(lines, "BOOTCFG-UNAME:")).toMatch(/^BOOTCFG-UNAME: \S+-cloud-amd64 x86_64$/);
  });

  it("ELF vmlinux extracted by bootcfg boots through its PVH note", {
    timeout: BOOT_TIMEOUT,
  }, async (ctx) => {
    need(ctx, { tools: ["qemu-system-x86_64"], files: [KERNEL_AMD64, BUSYBOX] });
    const vmlinux = join(t.dir, "vmlinux");
    expect((await run(["extract-vmlinux", KERNEL_AMD64, "-o", vmlinux])).code).toBe(0);
    const { p, initrd } = plan("n02");
    writeFileSync(join(t.dir, "n02.initrd"), initrd);
    const argv = qemuArgs({
      arch: "x86_64",
      kernel: vmlinux,
      initrd: join(t.dir, "n02.initrd"),
      append: `${p.cmdline} via=elf-pvh`,
      memory: 512,
    });
    const r = await runUntil(argv, /^BOOTCFG-DONE/, MARKER_TIMEOUT);
    timings["elf-pvh"] = r.ms;
    expect(r.ok, r.lines.slice(-20).join("\n")).toBe(true);
    expect(lineWith(r.lines, "BOOTCFG-CMDLINE:")).toBe(`BOOTCFG-CMDLINE: ${p.cmdline} via=elf-pvh`);
  });

  it("pxelinux config via syslinux on a FAT image (no root, no loop mount)", {
    timeout: BOOT_TIMEOUT,
  }, async (ctx) => {
    need(ctx, {
      tools: ["qemu-system-x86_64", "syslinux", "mcopy", "mkfs.vfat"],
      files: [KERNEL_AMD64, BUSYBOX],
    });
    const out = join(t.dir, "pxe");
    const r = await run(["pxe", "-c", cluster(), "-o", out]);
    expect(r.code, r.stderr).toBe(0);
    const cfg = readFileSync(join(out, "pxelinux.cfg/01-52-54-00-00-00-03"), "utf8");
    expect(cfg).toContain("INITRD base.gz,n03.cpio");
    const disk = join(t.dir, "disk.img");
    sh("truncate", ["-s", "64M", disk]);
    for (const [cmd, args] of [
      ["mkfs.vfat", ["-n", "BOOTCFG", disk]],
      ["syslinux", ["--install", disk]],
      ["mcopy", ["-i", disk, join(out, "pxelinux.cfg/01-52-54-00-00-00-03"), "::syslinux.cfg"]],
      ["mcopy", ["-i", disk, KERNEL_AMD64, "::vmlinuz"]],
      ["mcopy", ["-i", disk, join(t.dir, "base.gz"), "::base.gz"]],
      ["mcopy", ["-i", disk, join(out, "n03.cpio"), "::n03.cpio"]],
    ] as const) {
      const x = sh(cmd, [...args]);
      expect(x.status, `${cmd}: ${x.stderr}`).toBe(0);
    }
    const argv = qemuArgs({
      arch: "x86_64",
      memory: 256,
      extra: ["-drive", `file=${disk},format=raw,if=ide`],
    });
    argv[argv.indexOf("q35")] = "pc";
    const res = await runUntil(argv, /^BOOTCFG-DONE/, MARKER_TIMEOUT);
    timings.syslinux = res.ms;
    expect(res.ok, res.lines.slice(-20).join("\n")).toBe(true);
    const line = lineWith(res.lines, "BOOTCFG-CMDLINE:")!;
    // exactly what check counts against cmdline_size: syslinux's additions around the node's line
    const { before, after } = loaderCmdline(plan("n03").p.node);
    expect(before).toBe("BOOT_IMAGE=vmlinuz ");
    expect(line).toBe(`BOOTCFG-CMDLINE: ${before}${plan("n03").p.cmdline}${after}`);
    expect(lineWith(res.lines, "BOOTCFG-OVERLAY:")).toBe(
      "BOOTCFG-OVERLAY: node=n03 profile=compute arch=x86_64",
    );
  });

  it("iPXE runs the generated script (echo markers; fetching fails without network)", {
    timeout: BOOT_TIMEOUT,
  }, async (ctx) => {
    need(ctx, { tools: ["qemu-system-x86_64"], files: [KERNEL_AMD64, "/usr/lib/ipxe/ipxe.lkrn"] });
    const out = join(t.dir, "ipxe");
    expect((await run(["ipxe", "-c", cluster(), "-o", out])).code).toBe(0);
    const script = join(out, "ipxe/52-54-00-00-00-04.ipxe");
    expect(readFileSync(script, "utf8").split("\n")[0]).toBe("#!ipxe");
    writeFileSync(join(t.dir, "sercon.bin"), Buffer.from([0xf8, 0x03]));
    const argv = qemuArgs({
      arch: "x86_64",
      kernel: "/usr/lib/ipxe/ipxe.lkrn",
      initrd: script,
      memory: 256,
      extra: ["-fw_cfg", `name=etc/sercon-port,file=${join(t.dir, "sercon.bin")}`],
    });
    argv[argv.indexOf("q35")] = "pc";
    const r = await runUntil(argv, /bootcfg: n04 boot failed/, MARKER_TIMEOUT);
    timings.ipxe = r.ms;
    expect(r.ok, r.lines.slice(-20).join("\n")).toBe(true);
    expect(r.lines.join("\n")).toMatch(/bootcfg: n04 x86_64 on pcbios\/i386/);
  });

  it("kexec chain: a stage-1 kernel runs the generated plan, the second kernel prints the planned cmdline", {
    timeout: BOOT_TIMEOUT,
  }, async (ctx) => {
    need(ctx, { tools: ["qemu-system-x86_64", "kexec"], files: [KERNEL_AMD64, BUSYBOX] });
    const { p, initrd } = plan("s1");
    const kexec = sh("sh", ["-c", "command -v kexec"]).stdout.trim();
    const libs = sh("ldd", [kexec])
      .stdout.split("\n")
      .map((l) => /(\/\S+)\s+\(0x/.exec(l)?.[1])
      .filter((x): x is string => !!x);
    const extra: CpioEntry[] = [
      { name: "sbin/kexec", type: "file", perm: 0o755, data: readFileSync(kexec) },
      ...libs.map((l): CpioEntry => ({ name: l.slice(1), type: "file", perm: 0o755, data: readFileSync(l) })),
      { name: "boot/bootcfg/kernel", type: "file", perm: 0o644, data: readFileSync(KERNEL_AMD64) },
      { name: "boot/bootcfg/initrd", type: "file", perm: 0o644, data: initrd },
      { name: "boot/bootcfg/kexec.sh", type: "file", perm: 0o755, data: renderKexecSh(p) },
    ];
    const stage1 = join(t.dir, "stage1.gz");
    writeBaseInitrd(stage1, undefined, extra);
    const argv = qemuArgs({
      arch: "x86_64",
      kernel: KERNEL_AMD64,
      initrd: stage1,
      append: "console=ttyS0 panic=-1 quiet bootcfg.stage=1",
      memory: 1024,
    });
    const want = `BOOTCFG-CMDLINE: ${p.cmdline}`;
    const r = await runUntil(
      argv,
      new RegExp(`^${want.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`),
      MARKER_TIMEOUT,
    );
    timings.kexec = r.ms;
    expect(r.ok, r.lines.slice(-25).join("\n")).toBe(true);
    expect(r.lines).toContain("BOOTCFG-STAGE1: running kexec plan");
    expect(p.cmdline).toContain("bootcfg.stage=2 via=kexec-bzImage");
  });

  it("F8: our bzImage SELF payload boots — the trampoline fills E820 from a coreboot table, the kernel runs our initramfs with the planned cmdline", {
    timeout: BOOT_TIMEOUT,
  }, async (ctx) => {
    need(ctx, { tools: ["qemu-system-x86_64"], files: [KERNEL_AMD64, BUSYBOX] });
    const { p, initrd } = plan("n01");
    // no "quiet": the kernel then prints the E820 map it was handed and where the initrd is
    const cmdline = `${p.cmdline.replace(/ ?\bquiet\b/, "")} via=self-trampoline`;
    writeFileSync(join(t.dir, "n01-self.initrd"), initrd);
    const out = join(t.dir, "n01.self");
    const b = await run([
      "payload",
      "build",
      KERNEL_AMD64,
      "--cmdline",
      cmdline,
      "--initrd",
      join(t.dir, "n01-self.initrd"),
      "-o",
      out,
      "--json",
    ]);
    expect(b.code, b.stderr).toBe(0);
    const built = JSON.parse(b.stdout) as { initrd: { address: number; size: number }; minMemory: number };
    // test scaffolding: the SELF and a fake coreboot table (low forward record at 0x500, memory
    // table above the payload) in a multiboot ELF that QEMU enters in 32-bit protected mode
    const BASE = 0x8000000;
    const mem = 256 * 2 ** 20;
    expect(built.minMemory).toBeLessThan(BASE);
    const tbl = highTableAddress(BASE);
    const ranges: MemRange[] = [
      { start: 0, size: 0x9f000, type: 1 },
      { start: 0x9f000, size: 0x1000, type: 2 },
      { start: 0xf0000, size: 0x10000, type: 2 },
      { start: 0x100000, size: tbl - 0x100000, type: 1 },
      { start: tbl, size: 0x1000, type: 16 }, // coreboot's own tables: reserved for Linux
      { start: tbl + 0x1000, size: mem - 0x100000 - tbl - 0x1000, type: 1 },
      { start: mem - 0x100000, size: 0x100000, type: 2 },
      { start: 0xfffc0000, size: 0x40000, type: 2 },
    ];
    const elf = join(t.dir, "n01-self.multiboot");
    writeFileSync(elf, multibootSelf(readFileSync(out), ranges, BASE));
    const argv = qemuArgs({ arch: "x86_64", kernel: elf, memory: mem / 2 ** 20 });
    argv[argv.indexOf("q35")] = "pc";
    const r = await runUntil(argv, /^BOOTCFG-DONE/, MARKER_TIMEOUT);
    timings["self-trampoline"] = r.ms;
    expect(r.ok, r.lines.slice(-25).join("\n")).toBe(true);
    expect(lineWith(r.lines, "BOOTCFG-CMDLINE:")).toBe(`BOOTCFG-CMDLINE: ${cmdline}`);
    expect(lineWith(r.lines, "BOOTCFG-OVERLAY:")).toBe(
      "BOOTCFG-OVERLAY: node=n01 profile=compute arch=x86_64",
    );
    const hex16 = (n: number) => `0x${n.toString(16).padStart(16, "0")}`;
    const e820 = r.lines.map((l) => /BIOS-e820: (\[mem \S+\] \S+)/.exec(l)?.[1]).filter((x) => x);
    expect(e820, r.lines.filter((l) => /e820|BIOS/.test(l)).join("\n")).toEqual(
      ranges.map(
        (m) =>
          `[mem ${hex16(m.start)}-${hex16(m.start + m.size - 1)}] ${m.type === 1 ? "usable" : "reserved"}`,
      ),
    );
    const rd = r.lines.map((l) => /RAMDISK: \[mem (0x[0-9a-f]+)-/.exec(l)?.[1]).find((x) => x);
    expect(Number(rd)).toBe(built.initrd.address);
  });

  it("F11: the arm64 node boots under qemu-system-aarch64 with its own kernel and busybox", {
    timeout: BOOT_TIMEOUT,
  }, async (ctx) => {
    need(ctx, { tools: ["qemu-system-aarch64"], files: [KERNEL_ARM64, BUSYBOX_ARM64] });
    const q = await run(["qemu", "a1", "-c", cluster(), "--json", "--initrd-out", join(t.dir, "a1.initrd")]);
    const argv = JSON.parse(q.stdout) as string[];
    expect(argv[0]).toBe("qemu-system-aarch64");
    expect(argv).toContain("cortex-a57");
    const r = await runUntil(argv, /^BOOTCFG-DONE/, MARKER_TIMEOUT);
    timings.arm64 = r.ms;
    expect(r.ok, r.lines.slice(-20).join("\n")).toBe(true);
    expect(lineWith(r.lines, "BOOTCFG-UNAME:")).toMatch(/^BOOTCFG-UNAME: \S+-cloud-arm64 aarch64$/);
    expect(lineWith(r.lines, "BOOTCFG-CMDLINE:")).toBe(`BOOTCFG-CMDLINE: ${plan("a1").p.cmdline}`);
    expect(plan("a1").p.cmdline).toContain("console=ttyAMA0");
  });
});
