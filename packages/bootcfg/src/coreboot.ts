// coreboot payload configuration: Kconfig fragment, the equivalent cbfstool command, and the
// LinuxBIOS v2 Config.lb lines, for a node's kernel, initrd and command line.
import type { NodePlan } from "./plan.js";
import { shQuote, TOOL } from "./plan.js";

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
  };
}

export function cbfstoolCommandLine(c: CorebootConfig): string {
  return c.cbfstool.map(shQuote).join(" ");
}

/** The `bootcfg payload build` command line, or undefined where it does not apply. */
export function payloadBuildCommandLine(c: CorebootConfig): string | undefined {
  return c.payloadBuild?.map(shQuote).join(" ");
}
