// Per-node boot plans: the combined initrd (base images + overlay), the kexec invocation, the
// shell plan a boot kernel runs, and the manifest recording every input.
import { createHash, type Hash } from "node:crypto";
import { relative } from "node:path";
import type { Cluster, ResolvedNode } from "./cluster/resolve.js";
import { BootcfgError } from "./errors.js";
import { type FileCache, hashFileInto } from "./files.js";
import { isBzImage64 } from "./formats/bzimage.js";
import { uimageProblem } from "./formats/uimage.js";
import { buildOverlay } from "./initrd.js";
import { type Inspection, kernelFormatOf } from "./inspect.js";
import { sha256 } from "./util.js";
import { PACKAGE_VERSION } from "./version.js";

/** Written into plans and manifests: the version of the bootcfg that made them. */
export const VERSION = PACKAGE_VERSION;
export const TOOL = `bootcfg ${VERSION}`;

/** One piece of a node's initrd, in boot order. */
export interface InitrdPart {
  kind: "file" | "overlay";
  /** Absolute path for files; undefined for the generated overlay. */
  path?: string;
  size: number;
  sha256: string;
  /** Zero bytes added after the part so the next starts 4-byte aligned. */
  pad: number;
}

export interface NodePlan {
  node: ResolvedNode;
  kernel: Inspection;
  kernelPath: string;
  kernelFormat: string;
  initrdParts: InitrdPart[];
  overlay: Buffer;
  /** The concatenated initrd's size and hash. */
  initrd: { size: number; sha256: string };
  cmdline: string;
  kexecArgs: string[];
  urootArgs: string[];
}

const relCache = new Map<string, string>();
/** `path.relative`, memoised: plans for 1,000 nodes name the same few files. */
function relPath(from: string, to: string): string {
  const key = `${from}\0${to}`;
  let r = relCache.get(key);
  if (r === undefined) {
    r = relative(from, to) || to;
    if (relCache.size > 10_000) relCache.clear();
    relCache.set(key, r);
  }
  return r;
}

function pad4(n: number): number {
  return (4 - (n & 3)) & 3;
}

/** Caches hash states of initrd prefixes, so 1,000 nodes sharing a base image hash it once. */
export class PlanCache {
  private readonly prefix = new Map<string, { hash: Hash; size: number }>();
  constructor(readonly files: FileCache) {}

  prefixHash(paths: readonly string[]): { hash: Hash; size: number } {
    const key = paths.join("\0");
    let p = this.prefix.get(key);
    if (!p) {
      const hash = createHash("sha256");
      let size = 0;
      for (const path of paths) {
        const n = hashFileInto(path, hash);
        const pad = pad4(n);
        if (pad) hash.update(Buffer.alloc(pad));
        size += n + pad;
      }
      p = { hash, size };
      this.prefix.set(key, p);
    }
    return { hash: p.hash.copy(), size: p.size };
  }
}

/** The `kexec -t` type for a kernel, or undefined when kexec-tools has no loader for it. */
export function kexecType(arch: string, k: Inspection): string | undefined {
  const f = kernelFormatOf(k);
  if (arch === "x86_64" || arch === "i386") {
    if (k.format === "bzImage") return isBzImage64(k) && arch === "x86_64" ? "bzImage64" : "bzImage";
    // a multiboot kernel wants multiboot's entry state and info, not Linux's zero page
    if (k.format === "elf" && k.class === 32 && k.multibootHeader !== undefined) return "multiboot-x86";
    if (f === "elf") return arch === "x86_64" ? "elf-x86_64" : "elf-x86";
  }
  if (arch === "arm64") {
    if (f === "arm64-image") return "Image";
    if (f === "elf") return "vmlinux";
    if (f === "uimage") return "uImage";
  }
  if (arch === "ppc64le" && f === "elf") return "elf-ppc64";
  if (arch === "riscv64" && f === "elf") return "elf-riscv";
  return undefined;
}

/** Single-quotes a string for sh. */
export function shQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

export function planNode(cluster: Cluster, node: ResolvedNode, cache: PlanCache): NodePlan {
  const kernelPath = cluster.path(node.kernel.path);
  const kernel = cache.files.inspect(kernelPath);
  const kernelFormat = kernelFormatOf(kernel);
  if (!kernelFormat)
    throw new BootcfgError("ECHECK", `${node.name}: ${kernelPath} is a ${kernel.format} file, not a kernel`);
  // a kernel the boot loader would refuse is no plan (check says the same)
  const uProblem = kernel.format === "uimage" ? uimageProblem(kernel, kernel.size) : undefined;
  if (uProblem) throw new BootcfgError("ECHECK", `${node.name}: ${kernelPath}: ${uProblem}`);
  const paths = node.initrds.map((p) => cluster.path(p));
  // An initrd the kernel could not unpack is no plan either (check says the same).
  for (const path of paths) {
    try {
      cache.files.initramfs(path);
    } catch (err) {
      if (err instanceof BootcfgError)
        throw new BootcfgError("ECHECK", `${node.name}: initrd ${err.message}`);
      throw err;
    }
  }
  const parts: InitrdPart[] = paths.map((path) => {
    const f = cache.files.stat(path);
    return { kind: "file", path, size: f.size, sha256: f.sha256, pad: pad4(f.size) };
  });
  const overlay = buildOverlay(node);
  parts.push({ kind: "overlay", size: overlay.length, sha256: sha256(overlay), pad: 0 });
  const { hash, size } = cache.prefixHash(paths);
  hash.update(overlay);
  const initrd = { size: size + overlay.length, sha256: hash.digest("hex") };
  const cmdline = node.cmdline.join(" ");
  const dir = node.kexec.dir;
  const type = kexecType(node.arch, kernel);
  const fileLoad = node.kexec.syscall === "kexec_file_load";
  if (!type && !fileLoad)
    throw new BootcfgError(
      "ECHECK",
      `${node.name}: kexec has no loader for ${kernel.format} on ${node.arch}`,
    );
  const kexecArgs = [
    "kexec",
    ...(fileLoad ? ["-s"] : []),
    "-l",
    ...(!fileLoad && type ? ["-t", type] : []),
    ...(!fileLoad && type?.startsWith("elf-x86") ? ["--args-linux"] : []),
    `${dir}/kernel`,
    // multiboot-x86 takes the initrd as a module (it refuses --initrd)
    type === "multiboot-x86" && !fileLoad ? `--module=${dir}/initrd` : `--initrd=${dir}/initrd`,
    `--command-line=${cmdline}`,
  ];
  const urootArgs = ["kexec", "-l", "--initrd", `${dir}/initrd`, "--cmdline", cmdline, `${dir}/kernel`];
  return {
    node,
    kernel,
    kernelPath,
    kernelFormat,
    initrdParts: parts,
    overlay,
    initrd,
    cmdline,
    kexecArgs,
    urootArgs,
  };
}

/** The shell plan a boot kernel runs: verify what it fetched, load, execute. */
export function renderKexecSh(plan: NodePlan): string {
  const { node } = plan;
  const dir = node.kexec.dir;
  return `#!/bin/sh
# kexec plan for ${node.name} (${node.arch}), written by ${TOOL}; profiles: ${node.profiles.join(", ") || "(none)"}
# Expects ${dir}/kernel and ${dir}/initrd (as served by \`bootcfg serve\`). Set BOOTCFG_LOAD_ONLY=1 to load without executing.
set -e
verify() { # FILE SHA256: refuse to boot what the plan does not name (skipped without sha256sum)
  command -v sha256sum >/dev/null 2>&1 || return 0
  set -- "$1" "$2" $(sha256sum "$1")
  [ "$3" = "$2" ] || { echo "bootcfg: $1 does not match the plan (sha256 $3, want $2)" >&2; exit 1; }
}
verify ${dir}/kernel ${plan.kernel.sha256}
verify ${dir}/initrd ${plan.initrd.sha256}
${plan.kexecArgs.map(shQuote).join(" ")}
[ -n "\${BOOTCFG_LOAD_ONLY:-}" ] || kexec -e
`;
}

export function renderPlanJson(cluster: Cluster, plan: NodePlan): Record<string, unknown> {
  const rel = (p: string) => relPath(cluster.dir, p);
  return {
    node: plan.node.name,
    arch: plan.node.arch,
    delivery: plan.node.delivery,
    kernel: {
      path: rel(plan.kernelPath),
      target: `${plan.node.kexec.dir}/kernel`,
      format: plan.kernelFormat,
      size: plan.kernel.size,
      sha256: plan.kernel.sha256,
    },
    initrd: {
      target: `${plan.node.kexec.dir}/initrd`,
      size: plan.initrd.size,
      sha256: plan.initrd.sha256,
      parts: plan.initrdParts.map((p) => ({
        kind: p.kind,
        ...(p.path ? { path: rel(p.path) } : {}),
        size: p.size,
        sha256: p.sha256,
        pad: p.pad,
      })),
    },
    cmdline: plan.cmdline,
    kexec: { syscall: plan.node.kexec.syscall, argv: plan.kexecArgs },
    uroot: { argv: plan.urootArgs },
  };
}

/** `/etc/sysconfig/xbootfs/image-<name>` of the original suite. */
export function renderXbootfs(plan: NodePlan, basePort: number): string {
  const dir = plan.node.kexec.dir;
  return `# xbootfs image for ${plan.node.name}, written by ${TOOL}\nKERNEL=${dir}/kernel\nINITRD=${dir}/initrd\nBASEPORT=${basePort}\n`;
}

/** Reproducibility manifest: every input by hash, the tool, the profile chain. No timestamps. */
export function manifest(cluster: Cluster, plan: NodePlan): Record<string, unknown> {
  const rel = (p: string) => relPath(cluster.dir, p);
  const n = plan.node;
  return {
    tool: TOOL,
    node: n.name,
    cluster: { file: rel(cluster.file) || cluster.file, sha256: cluster.sha256 },
    profiles: n.profiles,
    arch: n.arch,
    firmware: n.firmware,
    delivery: n.delivery,
    ...(n.ip ? { ip: n.ip } : {}),
    ...(n.mac ? { mac: n.mac } : {}),
    kernel: {
      path: rel(plan.kernelPath),
      format: plan.kernelFormat,
      ...(plan.kernel.format === "bzImage" ? { release: plan.kernel.release } : {}),
      size: plan.kernel.size,
      sha256: plan.kernel.sha256,
    },
    initrds: plan.initrdParts.map((p) => ({
      kind: p.kind,
      ...(p.path ? { path: rel(p.path) } : {}),
      size: p.size,
      sha256: p.sha256,
    })),
    initrd: plan.initrd,
    cmdline: plan.cmdline,
    kexec: plan.kexecArgs,
  };
}

/** Reads the concatenated initrd of a plan into memory (for files and tests; serve streams it). */
export function combinedInitrd(plan: NodePlan, files: FileCache): Buffer {
  const bufs: Buffer[] = [];
  for (const p of plan.initrdParts) {
    bufs.push(p.kind === "overlay" ? plan.overlay : files.read(p.path!));
    if (p.pad) bufs.push(Buffer.alloc(p.pad));
  }
  return Buffer.concat(bufs);
}

export interface ManifestChange {
  node: string;
  change: "added" | "removed" | "changed";
  fields: string[];
}

/** Compares two sets of manifests (node → manifest): which nodes boot differently. */
export function diffManifests(
  oldSet: Record<string, Record<string, unknown>>,
  newSet: Record<string, Record<string, unknown>>,
): ManifestChange[] {
  const out: ManifestChange[] = [];
  const ignore = new Set(["tool", "cluster"]);
  for (const node of Object.keys(oldSet))
    if (!(node in newSet)) out.push({ node, change: "removed", fields: [] });
  for (const [node, m] of Object.entries(newSet)) {
    const o = oldSet[node];
    if (!o) {
      out.push({ node, change: "added", fields: [] });
      continue;
    }
    const fields = [...new Set([...Object.keys(o), ...Object.keys(m)])].filter(
      (k) => !ignore.has(k) && JSON.stringify(o[k]) !== JSON.stringify(m[k]),
    );
    if (fields.length) out.push({ node, change: "changed", fields });
  }
  return out;
}
