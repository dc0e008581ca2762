// Shared test fixtures: the Debian kernels fetched by scripts/fetch-fixtures.sh, a busybox
// initramfs written by our own newc writer, a cluster file using both, and the rule for missing
// tools (skip locally with a printed reason, fail in CI).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { main } from "../src/cli.js";
import type { CpioEntry } from "../src/formats/cpio.js";
import { buildInitramfs } from "../src/initrd.js";

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, "../../..");
export const FIXTURES = process.env.BOOTCFG_FIXTURES ?? join(REPO, ".cache/bootcfg");
export const KERNEL_AMD64 = join(FIXTURES, "amd64/vmlinuz");
export const KERNEL_ARM64 = join(FIXTURES, "arm64/vmlinuz");
export const BUSYBOX_ARM64 = join(FIXTURES, "arm64/busybox");
export const BUSYBOX = "/bin/busybox";

const FILE_SOURCE: Record<string, string> = {
  "/bin/busybox": "Debian package busybox-static",
  "/usr/lib/ipxe/ipxe.lkrn": "Debian package ipxe",
};

interface SkipCtx {
  skip(note?: string): void;
}

const PKG: Record<string, string> = {
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-system-aarch64": "qemu-system-arm",
  kexec: "kexec-tools",
  cbfstool: "coreboot-utils",
  readelf: "binutils",
  objdump: "binutils",
  cpio: "cpio",
  syslinux: "syslinux",
  mcopy: "mtools",
  "mkfs.vfat": "dosfstools",
  busybox: "busybox-static",
  file: "file",
  lz4: "lz4",
  gzip: "gzip",
  xz: "xz-utils",
  zstd: "zstd",
  bzip2: "bzip2",
};

export function which(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    const p = join(dir, tool);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Requires tools and files; when something is missing, fails under CI (process.env.CI) and
 * skips with a printed reason otherwise.
 */
export function need(ctx: SkipCtx, what: { tools?: string[]; files?: string[] }): void {
  const missing: string[] = [];
  for (const t of what.tools ?? []) if (!which(t)) missing.push(`${t} (Debian package ${PKG[t] ?? t})`);
  for (const f of what.files ?? [])
    if (!existsSync(f))
      missing.push(
        `${f} (${FILE_SOURCE[f] ?? `run packages/bootcfg/scripts/fetch-fixtures.sh${f.includes("arm64") ? " --arm64" : ""}`})`,
      );
  if (!missing.length) return;
  const msg = `missing: ${missing.join(", ")}`;
  if (process.env.CI) throw new Error(`${msg} — CI must provide it`);
  console.log(`skipped: ${msg}`);
  ctx.skip(msg);
}

export function tempDir(prefix = "bootcfg-test-"): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The /init every test guest runs: print cmdline, uname, overlay; run a kexec plan when present. */
export const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
echo "BOOTCFG-CMDLINE: $(cat /proc/cmdline)"
echo "BOOTCFG-UNAME: $(uname -r -m)"
[ -f /etc/bootcfg/node.conf ] && echo "BOOTCFG-OVERLAY: $(cat /etc/bootcfg/node.conf)"
if [ -f /boot/bootcfg/kexec.sh ] && ! grep -q bootcfg.stage=2 /proc/cmdline; then
  echo "BOOTCFG-STAGE1: running kexec plan"
  sh /boot/bootcfg/kexec.sh
  echo "BOOTCFG-STAGE1: plan failed rc=$?"
fi
echo "BOOTCFG-DONE"
poweroff -f
`;

/** Entries of the busybox initramfs (busybox binary given, so arm64 works the same way). */
export function baseEntries(busybox: string, extra: CpioEntry[] = []): CpioEntry[] {
  return [
    { name: "bin", type: "dir", perm: 0o755 },
    // without busybox (package busybox-static) the archive is still valid; boot tests need() it
    {
      name: "bin/busybox",
      type: "file",
      perm: 0o755,
      data: existsSync(busybox) ? readFileSync(busybox) : "missing",
    },
    { name: "dev", type: "dir", perm: 0o755 },
    { name: "dev/console", type: "char", perm: 0o600, rdevMajor: 5, rdevMinor: 1 },
    { name: "etc", type: "dir", perm: 0o755 },
    { name: "proc", type: "dir", perm: 0o755 },
    { name: "sbin", type: "dir", perm: 0o755 },
    { name: "init", type: "file", perm: 0o755, data: INIT },
    ...extra,
  ];
}

export function writeBaseInitrd(path: string, busybox = BUSYBOX, extra: CpioEntry[] = []): void {
  writeFileSync(path, buildInitramfs({ entries: baseEntries(busybox, extra) }, { level: 6 }));
}

/** A cluster file with x86_64 and arm64 profiles, written next to its base initrds. */
export function clusterYaml(opts: { kernel?: string; armKernel?: string } = {}): string {
  return `name: testcluster
defaults:
  cmdline: [console=ttyS0, panic=-1, quiet]
  memory: 512M
profiles:
  x86:
    arch: x86_64
    kernel: ${opts.kernel ?? KERNEL_AMD64}
    initrds: [base.gz]
  arm:
    arch: arm64
    kernel: ${opts.armKernel ?? KERNEL_ARM64}
    initrds: [basea64.gz]
    cmdline: [console=ttyAMA0]
  compute:
    include: [x86]
    cmdline: [bootcfg.profile=compute]
    overlay:
      /etc/bootcfg/node.conf: "node={{node}} profile={{profile}} arch={{arch}}"
nodes:
  - name: n[01-04]
    profiles: [compute]
    ip: 10.0.0.1
    mac: 52:54:00:00:00:01
    cmdline: ["bootcfg.node={{node}}"]
  - name: n03
    delivery: pxe
  - name: n04
    delivery: ipxe
  - name: s1
    profiles: [compute]
    cmdline: [bootcfg.stage=2, via=kexec-bzImage]
  - name: a[1-2]
    profiles: [arm]
    cmdline: ["bootcfg.node={{node}}"]
`;
}

/** Runs the CLI in-process and captures its output. */
export async function run(
  argv: string[],
  cwd?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, {
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
    ...(cwd ? { cwd } : {}),
    env: {},
  });
  return { code, stdout, stderr };
}

export function sh(
  cmd: string,
  args: string[],
  opts: { input?: Buffer; cwd?: string } = {},
): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(cmd, args, { input: opts.input, cwd: opts.cwd, maxBuffer: 256 << 20 });
  return {
    stdout: r.stdout?.toString("latin1") ?? "",
    stderr: r.stderr?.toString("latin1") ?? "",
    status: r.status,
  };
}

export { execFileSync };
