// coreboot payload configuration: Kconfig fragment, the equivalent cbfstool command, and the
// LinuxBIOS v2 Config.lb lines, for a node's kernel, initrd and command line.
import type { SetupHeader } from "./formats/bzimage.js";
import type { NodePlan } from "./plan.js";
import { shQuote, TOOL } from "./plan.js";
import { hex } from "./util.js";

export interface CorebootConfig {
  node: string;
  arch: string;
  kconfig: string;
  /**
   * The recommended route on x86: `bootcfg payload build` (bzImage → SELF with our trampoline,
   * command line and initrd; ELF → SELF) into the ROM, no cbfstool or coreboot build needed.
   * Absent on other architectures.
   */
  payloadBuild?: string[];
  /** The equivalent cbfstool command (its own bzImage conversion), the alternative route. */
  cbfstool: string[];
  configLb: string;
  warnings: string[];
  /**
   * Problems of the cbfstool route only (`--format cbfstool`, and the Kconfig, whose coreboot
   * build runs the same conversion); not printed when the bootcfg route is asked for.
   */
  cbfstoolWarnings: string[];
}

/** Where cbfstool's bzImage conversion loads the initrd (a fixed 64 MiB, lowered below initrd_addr_max). */
const CBFSTOOL_INITRD_BASE = 0x4000000;

/**
 * cbfstool (`add-payload`, also run by coreboot's build for CONFIG_PAYLOAD_LINUX) loads the kernel
 * at pref_address and the initrd at 64 MiB whatever the kernel's size. A kernel whose working area
 * (load address + init_size) reaches past 64 MiB then overwrites the initrd while it decompresses.
 */
export function cbfstoolInitrdClash(
  h: SetupHeader,
  initrdSize: number,
): { kernelStart: number; kernelEnd: number; initrdStart: number } | undefined {
  if (initrdSize === 0 || h.initSize === 0) return undefined;
  const kernelStart =
    h.relocatableKernel && h.version >= 0x20a && h.prefAddress >= 0x100000n && h.prefAddress < 0x100000000n
      ? Number(h.prefAddress)
      : 0x100000;
  const kernelEnd = kernelStart + h.initSize;
  let initrdStart = CBFSTOOL_INITRD_BASE;
  if (h.initrdAddrMax > 0 && initrdStart + initrdSize > h.initrdAddrMax)
    initrdStart = h.initrdAddrMax - initrdSize;
  const clash = initrdStart < kernelEnd && kernelStart < initrdStart + initrdSize;
  return clash ? { kernelStart, kernelEnd, initrdStart } : undefined;
}

function kq(s: string): string {
  return `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/**
 * `initrdPath` is where the node's concatenated initrd was written; `rom` the image to add to.
 * `linuxboot` emits the LinuxBoot Kconfig set instead of plain Linux-as-payload.
 */
export function corebootConfig(
  plan: NodePlan,
  initrdPath: string,
  opts: { rom?: string; linuxboot?: boolean; compression?: string } = {},
): CorebootConfig {
  const n = plan.node;
  const warnings: string[] = [];
  const x86 = n.arch === "x86_64" || n.arch === "i386";
  if (n.firmware !== "coreboot") warnings.push(`${n.name}: firmware is ${n.firmware}, not coreboot`);
  if (x86 && plan.kernelFormat !== "bzImage")
    warnings.push(
      `${n.name}: coreboot's Linux payload conversion (CONFIG_PAYLOAD_LINUX, cbfstool add-payload) takes a bzImage; ${plan.kernelFormat} goes through \`bootcfg payload build\` (SELF from ELF)`,
    );
  if (!x86 && plan.kernelFormat !== "uimage")
    warnings.push(
      `${n.name}: coreboot on ${n.arch} boots a uImage/FIT payload (CONFIG_PAYLOAD_FIT); wrap the kernel with \`bootcfg uimage\``,
    );
  if (opts.compression && opts.compression !== "none")
    warnings.push(
      `${n.name}: ${opts.compression} compression requested, but coreboot forces none for Linux payloads (cbfstool's LZMA path fails on large kernels)`,
    );
  const cbfstoolWarnings: string[] = [];
  if (x86 && plan.kernel.format === "bzImage") {
    const c = cbfstoolInitrdClash(plan.kernel.header, plan.initrd.size);
    if (c)
      cbfstoolWarnings.push(
        `${n.name}: cbfstool's conversion (\`cbfstool add-payload\`, CONFIG_PAYLOAD_LINUX) loads the initrd at ${hex(c.initrdStart)}, inside the kernel's working area ${hex(c.kernelStart)}-${hex(c.kernelEnd)} (load address + init_size), which the kernel uses while it decompresses; \`bootcfg payload build\` (--format payload) places it above`,
      );
  }
  const lines = [`# coreboot payload for ${n.name} (${n.arch}), written by ${TOOL}`];
  if (opts.linuxboot) {
    const a =
      { x86_64: "X86_64", i386: "X86", arm64: "ARM64", riscv64: "RISCV" }[n.arch as string] ?? "X86_64";
    lines.push(
      "CONFIG_PAYLOAD_LINUXBOOT=y",
      `CONFIG_LINUXBOOT_${a}=y`,
      `CONFIG_LINUXBOOT_KERNEL_PATH=${kq(plan.kernelPath)}`,
      `CONFIG_LINUXBOOT_INITRAMFS_PATH=${kq(initrdPath)}`,
      `CONFIG_LINUX_COMMAND_LINE=${kq(plan.cmdline)}`,
    );
  } else if (x86) {
    lines.push(
      "CONFIG_PAYLOAD_LINUX=y",
      `CONFIG_PAYLOAD_FILE=${kq(plan.kernelPath)}`,
      `CONFIG_LINUX_COMMAND_LINE=${kq(plan.cmdline)}`,
      `CONFIG_LINUX_INITRD=${kq(initrdPath)}`,
    );
  } else {
    lines.push("CONFIG_PAYLOAD_FIT=y", `CONFIG_PAYLOAD_FILE=${kq(plan.kernelPath)}`);
  }
  lines.push("CONFIG_COMPRESSED_PAYLOAD_NONE=y");
  const rom = opts.rom ?? n.payload.rom ?? "coreboot.rom";
  const cbfstool = [
    "cbfstool",
    rom,
    "add-payload",
    "-f",
    plan.kernelPath,
    "-n",
    n.payload.name,
    "-C",
    plan.cmdline,
    "-I",
    initrdPath,
  ];
  const payloadBuild =
    x86 && (plan.kernelFormat === "bzImage" || plan.kernelFormat === "elf")
      ? [
          "bootcfg",
          "payload",
          "build",
          plan.kernelPath,
          ...(plan.kernelFormat === "bzImage" ? ["--cmdline", plan.cmdline, "--initrd", initrdPath] : []),
          "--rom",
          rom,
          "--name",
          n.payload.name,
          "-o",
          rom,
        ]
      : undefined;
  const configLb = [
    `# LinuxBIOS v2 target lines for ${n.name}; payload.elf from \`cbfstool extract -m x86\` or \`bootcfg payload build\``,
    'romimage "normal"',
    "    option USE_FALLBACK_IMAGE=0",
    "    payload /path/to/payload.elf",
    "end",
    'romimage "fallback"',
    "    option USE_FALLBACK_IMAGE=1",
    "    payload /path/to/payload.elf",
    "end",
    "",
  ].join("\n");
  return {
    node: n.name,
    arch: n.arch,
    kconfig: `${lines.join("\n")}\n`,
    ...(payloadBuild ? { payloadBuild } : {}),
    cbfstool,
    configLb,
    warnings,
    cbfstoolWarnings,
  };
}

export function cbfstoolCommandLine(c: CorebootConfig): string {
  return c.cbfstool.map(shQuote).join(" ");
}

/** The `bootcfg payload build` command line, or undefined where it does not apply. */
export function payloadBuildCommandLine(c: CorebootConfig): string | undefined {
  return c.payloadBuild?.map(shQuote).join(" ");
}
