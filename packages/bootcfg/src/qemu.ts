// QEMU command lines for a node's plan, and a runner that reads the serial console until a
// marker, then kills QEMU by its own pid. No networking, no display.
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { BootcfgError } from "./errors.js";

export interface QemuOptions {
  arch: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** MiB of guest memory (default 512). */
  memory?: number;
  /** "tcg" (default), "kvm", or "auto" (kvm when /dev/kvm is usable and the arch matches the host). */
  accel?: string;
  /** Extra arguments (disks, fw_cfg, …). */
  extra?: string[];
}

const EMULATOR: Record<string, string> = {
  x86_64: "qemu-system-x86_64",
  i386: "qemu-system-i386",
  arm64: "qemu-system-aarch64",
  riscv64: "qemu-system-riscv64",
  ppc64le: "qemu-system-ppc64",
};

export function emulatorFor(arch: string): string {
  const e = EMULATOR[arch];
  if (!e) throw new BootcfgError("EUSAGE", `no QEMU emulator known for arch ${arch}`);
  return e;
}

/** The serial console device name the kernel uses under our QEMU machines. */
export function consoleFor(arch: string): string {
  return arch === "arm64" ? "ttyAMA0" : arch === "riscv64" || arch === "ppc64le" ? "hvc0" : "ttyS0";
}

function kvmUsable(arch: string): boolean {
  if (arch !== "x86_64" || process.arch !== "x64") return false;
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** argv (program first) for booting a node under QEMU. */
export function qemuArgs(o: QemuOptions): string[] {
  const accel =
    o.accel === "auto" || o.accel === undefined
      ? o.accel === "auto" && kvmUsable(o.arch)
        ? "kvm"
        : "tcg"
      : o.accel;
  const machine =
    o.arch === "arm64"
      ? ["-machine", "virt", "-cpu", "cortex-a57"]
      : o.arch === "riscv64"
        ? ["-machine", "virt"]
        : o.arch === "ppc64le"
          ? ["-machine", "pseries"]
          : ["-machine", "q35"];
  return [
    emulatorFor(o.arch),
    ...machine,
    "-accel",
    accel,
    "-m",
    String(o.memory ?? 512),
    "-smp",
    "1",
    "-display",
    "none",
    "-no-reboot",
    "-nic",
    "none",
    "-serial",
    "stdio",
    ...(o.kernel ? ["-kernel", o.kernel] : []),
    ...(o.initrd ? ["-initrd", o.initrd] : []),
    ...(o.append !== undefined ? ["-append", o.append] : []),
    ...(o.extra ?? []),
  ];
}

export interface RunResult {
  /** True when the marker was seen. */
  ok: boolean;
  lines: string[];
  /** The line holding the marker. */
  match?: string;
  ms: number;
  exitCode: number | null;
  reason: "marker" | "timeout" | "exit";
}

/**
 * Spawns `argv`, reads stdout+stderr line by line, resolves when a line matches `marker`
 * (then kills the process by its pid), when it exits, or after `timeoutMs` (killed too).
 */
export function runUntil(
  argv: string[],
  marker: RegExp,
  timeoutMs: number,
  onLine?: (l: string) => void,
): Promise<RunResult> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    let done = false;
    let partial = "";
    const finish = (r: Omit<RunResult, "ms" | "lines" | "exitCode">, code: number | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, "SIGKILL");
        } catch {}
      }
      resolve({ ...r, lines, ms: Date.now() - start, exitCode: code });
    };
    const feed = (chunk: Buffer) => {
      partial += chunk.toString("utf8").replaceAll("\r", "");
      let nl = partial.indexOf("\n");
      while (nl >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        lines.push(line);
        onLine?.(line);
        if (!done && marker.test(line)) finish({ ok: true, match: line, reason: "marker" }, null);
        nl = partial.indexOf("\n");
      }
      // markers printed without a newline yet (e.g. iPXE prompts)
      if (!done && partial && marker.test(partial))
        finish({ ok: true, match: partial, reason: "marker" }, null);
    };
    child.stdout.on("data", feed);
    child.stderr.on("data", feed);
    child.on("error", (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new BootcfgError("ETOOL", `${argv[0]}: ${err.message}`, { cause: err }));
    });
    child.on("exit", (code) => {
      if (partial) lines.push(partial);
      finish({ ok: false, reason: "exit" }, code);
    });
    const timer = setTimeout(() => finish({ ok: false, reason: "timeout" }, null), timeoutMs);
  });
}
