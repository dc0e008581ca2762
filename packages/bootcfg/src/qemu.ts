// QEMU command lines for a node's plan, and a runner that reads the serial console until a
// marker, then kills QEMU by its own pid. No networking, no display.
import { spawn } from "node:child_process";
import {
  accessSync,
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
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
 * Spawns `argv`, reads its serial console, stdout and stderr line by line, resolves when a line
 * matches `marker` (then kills the process by its pid), when it exits, or after `timeoutMs`
 * (killed too).
 *
 * A `-serial stdio` console is written to a file instead, read as it grows: QEMU writes the
 * console a byte at a time, and a few hundred unread bytes fill the socket pair Node gives a
 * child for its stdout. QEMU then keeps the UART busy, and the guest's console driver, which
 * waits only about 10 ms for it, overwrites the byte it holds: a character was lost whenever this
 * process was a little late reading (a busy machine). A file never refuses a write.
 */
export function runUntil(
  argv: string[],
  marker: RegExp,
  timeoutMs: number,
  onLine?: (l: string) => void,
): Promise<RunResult> {
  const start = Date.now();
  let cmd = argv;
  let dir: string | undefined;
  let serialFile: string | undefined;
  const at = argv.findIndex((a, i) => a === "-serial" && argv[i + 1] === "stdio");
  if (at >= 0) {
    dir = mkdtempSync(join(tmpdir(), "bootcfg-serial-"));
    serialFile = join(dir, "console");
    writeFileSync(serialFile, "");
    cmd = [...argv];
    cmd[at + 1] = `file:${serialFile}`;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    const lines: string[] = [];
    let done = false;
    let serialFd: number | undefined;
    let serialOffset = 0;
    const cleanUp = () => {
      clearTimeout(timer);
      if (poller) clearInterval(poller);
      if (serialFd !== undefined) closeSync(serialFd);
      serialFd = undefined;
      if (dir) rmSync(dir, { recursive: true, force: true });
    };
    const finish = (r: Omit<RunResult, "ms" | "lines" | "exitCode">, code: number | null) => {
      if (done) return;
      done = true;
      cleanUp();
      if (child.exitCode === null && child.pid !== undefined) {
        try {
          process.kill(child.pid, "SIGKILL");
        } catch {}
      }
      resolve({ ...r, lines, ms: Date.now() - start, exitCode: code });
    };
    /** One line reader per source, so that stderr never lands in the middle of a console line. */
    const reader = () => {
      const decoder = new StringDecoder("utf8");
      let partial = "";
      return {
        feed(chunk: Buffer) {
          partial += decoder.write(chunk).replaceAll("\r", "");
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
        },
        end() {
          partial += decoder.end();
          if (partial) lines.push(partial);
          partial = "";
        },
      };
    };
    const out = reader();
    const err = reader();
    const serial = reader();
    const readSerial = () => {
      if (!serialFile || done) return;
      const buf = Buffer.allocUnsafe(65536);
      for (;;) {
        let n: number;
        try {
          serialFd ??= openSync(serialFile, "r");
          n = readSync(serialFd, buf, 0, buf.length, serialOffset);
        } catch {
          return; // read again at the next tick, or never (QEMU's end reports the outcome)
        }
        if (n <= 0) return;
        serialOffset += n;
        serial.feed(buf.subarray(0, n));
        if (done) return;
      }
    };
    const poller = serialFile ? setInterval(readSerial, 20) : undefined;
    child.stdout.on("data", (c: Buffer) => out.feed(c));
    child.stderr.on("data", (c: Buffer) => err.feed(c));
    child.on("error", (e) => {
      if (done) return;
      done = true;
      cleanUp();
      reject(new BootcfgError("ETOOL", `${argv[0]}: ${e.message}`, { cause: e }));
    });
    child.on("close", (code) => {
      // What the console got last, then what the pipes still held.
      readSerial();
      for (const r of [serial, out, err]) r.end();
      finish({ ok: false, reason: "exit" }, code);
    });
    const timer = setTimeout(() => finish({ ok: false, reason: "timeout" }, null), timeoutMs);
  });
}
