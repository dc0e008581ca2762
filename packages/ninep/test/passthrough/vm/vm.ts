// A throwaway Linux VM (QEMU, busybox initramfs) whose kernel v9fs client mounts a 9P server
// running in this process. The guest reaches only one host port, through QEMU's guestfwd to
// 127.0.0.1 (restrict=on: no other traffic leaves the guest). Used when the host kernel cannot
// mount 9p itself.
//
// Kernel: a Debian linux-image package unpacked (not installed) into NINEP_TEST_KERNEL_DIR
// (default /var/cache/ninep-kernel/x); `scripts/fetch-test-kernel.sh` does that.

import { execFile, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

export const KERNEL_DIR = process.env.NINEP_TEST_KERNEL_DIR ?? "/var/cache/ninep-kernel/x";
const MODULES = ["netfs", "fscache", "9pnet", "9pnet_fd", "9p", "e1000"];
const MODULE_PATHS: Record<string, string> = {
  netfs: "fs/netfs/netfs.ko",
  fscache: "fs/fscache/fscache.ko",
  "9pnet": "net/9p/9pnet.ko",
  "9pnet_fd": "net/9p/9pnet_fd.ko",
  "9p": "fs/9p/9p.ko",
  e1000: "drivers/net/ethernet/intel/e1000/e1000.ko",
};

export interface VmKernel {
  vmlinuz: string;
  modules: Record<string, string>;
}

/** The kernel and modules to boot, or the reason the VM cannot run here. */
export function findVmKernel(): VmKernel | string {
  if (process.platform !== "linux") return "not Linux";
  for (const tool of ["/usr/bin/qemu-system-x86_64", "/bin/busybox", "/usr/bin/cpio"]) {
    if (!fs.existsSync(tool)) return `${tool} missing (apt-get install qemu-system-x86 busybox-static cpio)`;
  }
  const boot = path.join(KERNEL_DIR, "boot");
  const vm = fs.existsSync(boot) ? fs.readdirSync(boot).find((f) => f.startsWith("vmlinuz-")) : undefined;
  if (!vm) return `no kernel under ${KERNEL_DIR} (run packages/ninep/scripts/fetch-test-kernel.sh)`;
  const version = vm.slice("vmlinuz-".length);
  const modRoot = path.join(KERNEL_DIR, "lib", "modules", version, "kernel");
  const modules: Record<string, string> = {};
  for (const m of MODULES) {
    const p = path.join(modRoot, MODULE_PATHS[m]!);
    if (!fs.existsSync(p)) return `kernel module ${m} missing at ${p}`;
    modules[m] = p;
  }
  return { vmlinuz: path.join(boot, vm), modules };
}

/**
 * Builds the initramfs (busybox, the modules, /init) in `dir`; returns its path. `/init` is
 * `initScript` (a busybox sh script printing "STEP <name> rc=<n>" lines, see guest-init.sh),
 * by default guest-init.sh; it starts with `. /bin/vm-prelude.sh` (guest-prelude.sh: modules and
 * network).
 */
export async function buildInitramfs(
  k: VmKernel,
  dir: string,
  initScript = fileURLToPath(new URL("guest-init.sh", import.meta.url)),
): Promise<string> {
  const tree = path.join(dir, "initramfs");
  for (const d of ["bin", "lib/mod", "proc", "sys", "dev", "mnt", "tmp"]) {
    fs.mkdirSync(path.join(tree, d), { recursive: true });
  }
  fs.copyFileSync("/bin/busybox", path.join(tree, "bin", "busybox"));
  fs.chmodSync(path.join(tree, "bin", "busybox"), 0o755);
  for (const [m, p] of Object.entries(k.modules))
    fs.copyFileSync(p, path.join(tree, "lib", "mod", `${m}.ko`));
  fs.copyFileSync(new URL("guest-prelude.sh", import.meta.url), path.join(tree, "bin", "vm-prelude.sh"));
  const init = path.join(tree, "init");
  fs.copyFileSync(initScript, init);
  fs.chmodSync(init, 0o755);
  const out = path.join(dir, "initramfs.cpio");
  await run("sh", ["-c", `cd "${tree}" && find . | cpio -o -H newc --quiet > "${out}"`]);
  return out;
}

export interface VmRun {
  /** Step name → exit status and output, in order. */
  steps: { name: string; rc: number; out: string }[];
  done: boolean;
  console: string;
}

/** The step `name` of a run; throws when the guest did not get to it. */
export function stepOf(run: VmRun, name: string): { rc: number; out: string } {
  const s = run.steps.find((x) => x.name === name);
  if (!s) throw new Error(`the guest did not run step ${name}`);
  return s;
}

/**
 * Boots the VM with the guest's 10.0.2.100:564 forwarded to 127.0.0.1:`port`; the guest mounts
 * once per version (steps are named "<version>/<step>"). Resolves when it powers off.
 */
export function runVm(
  k: VmKernel,
  initramfs: string,
  port: number,
  versions: readonly string[],
  timeoutMs = 240_000,
): Promise<VmRun> {
  // The console goes to a file, not to a pipe: QEMU writes it a byte at a time, a few hundred
  // unread bytes fill the socket pair Node gives a child, and the guest's console driver then
  // overwrites characters (a busy machine lost a character of a STEP line so).
  const consoleDir = fs.mkdtempSync(path.join(os.tmpdir(), "ninep-vm-console-"));
  const consoleFile = path.join(consoleDir, "console");
  return new Promise((resolve, reject) => {
    const args = [
      // TCG by default: nested KVM is often present but unusable (it hung silently here).
      "-accel",
      process.env.NINEP_VM_ACCEL ?? "tcg",
      "-m",
      "256",
      "-smp",
      "1",
      "-kernel",
      k.vmlinuz,
      "-initrd",
      initramfs,
      "-append",
      `console=ttyS0 quiet panic=-1 ninep_versions=${versions.join(",")}`,
      "-display",
      "none",
      "-serial",
      `file:${consoleFile}`,
      "-monitor",
      "none",
      "-no-reboot",
      "-nic",
      `user,model=e1000,restrict=on,guestfwd=tcp:10.0.2.100:564-tcp:127.0.0.1:${port}`,
    ];
    const child = spawn("/usr/bin/qemu-system-x86_64", args, { stdio: ["ignore", "pipe", "pipe"] });
    let qemuOut = "";
    child.stdout.on("data", (d) => {
      qemuOut += d;
    });
    child.stderr.on("data", (d) => {
      qemuOut += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      fs.rmSync(consoleDir, { recursive: true, force: true });
      reject(err);
    });
    child.once("close", () => {
      clearTimeout(timer);
      let text = "";
      try {
        text = fs.readFileSync(consoleFile, "utf8");
      } catch {
        // QEMU never started the guest: what it said is below
      }
      fs.rmSync(consoleDir, { recursive: true, force: true });
      text += qemuOut;
      const steps: VmRun["steps"] = [];
      for (const line of text.replace(/\r/g, "").split("\n")) {
        const m = /^STEP (\S+) rc=(\d+)$/.exec(line);
        if (m) steps.push({ name: m[1]!, rc: Number(m[2]), out: "" });
        else if (line.startsWith("  | ") && steps.length > 0)
          steps[steps.length - 1]!.out += `${line.slice(4)}\n`;
      }
      resolve({ steps, done: text.includes("NINEP-VM-DONE"), console: text });
    });
  });
}
