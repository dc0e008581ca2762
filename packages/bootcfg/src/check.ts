// `bootcfg check`: proves, before a node reboots, that its kernel, initrds, command line and
// delivery path fit together.
import type { Cluster, ResolvedNode } from "./cluster/resolve.js";
import { BootcfgError } from "./errors.js";
import type { FileCache, FileFacts } from "./files.js";
import { isBzImage64 } from "./formats/bzimage.js";
import { uimageProblem } from "./formats/uimage.js";
import { buildOverlay } from "./initrd.js";
import { type Inspection, kernelFormatOf } from "./inspect.js";
import { loaderCmdline, publishedNameProblems } from "./pxe.js";
import { formatBytes, hex } from "./util.js";

export interface CheckResult {
  node: string;
  ok: boolean;
  errors: string[];
  warnings: string[];
  kernel?: FileFacts & { format: string; release?: string };
  initrds: FileFacts[];
  cmdline: string;
  cmdlineBytes: number;
  cmdlineLimit?: number;
}

const ELF_MACHINE: Record<string, number[]> = {
  x86_64: [0x3e],
  i386: [3],
  arm64: [0xb7],
  riscv64: [0xf3],
  ppc64le: [0x15],
};
const UIMAGE_ARCH: Record<string, string[]> = {
  x86_64: ["x86_64"],
  i386: ["i386"],
  arm64: ["arm64"],
  riscv64: ["riscv"],
  ppc64le: ["ppc"],
};
/**
 * COMMAND_LINE_SIZE - 1 for kernels whose limit is not in an image header (ELF kernels, arm64 and
 * RISC-V Images): a longer command line is cut there without a word.
 */
const CMDLINE_LIMIT: Record<string, number> = {
  x86_64: 2047,
  i386: 2047,
  arm64: 2047,
  riscv64: 1023,
  ppc64le: 2047,
};
/** Bytes of `cmdline_size` that kexec_file_load keeps free for a crash kernel's `elfcorehdr=0x…`. */
const ELFCOREHDR_ROOM = 30;

/**
 * The longest command line (bytes, NUL excluded) that reaches a node's kernel whole, and why.
 * A bzImage's own limit is `cmdline_size`, which direct loaders (QEMU, pxelinux, iPXE, coreboot)
 * honour; kexec-tools counts the terminating NUL against it (`Kernel command line too long for
 * kernel!` at cmdline_size bytes), and the kernel's kexec_file_load also keeps room for
 * `elfcorehdr=` (EINVAL otherwise), whether or not the kernel is a crash kernel.
 */
function cmdlineLimit(node: ResolvedNode, k: Inspection): { limit: number; says: string } | undefined {
  if (k.format !== "bzImage") {
    const limit = CMDLINE_LIMIT[node.arch];
    return limit === undefined ? undefined : { limit, says: `kernel accepts ${limit}` };
  }
  const size = k.header.cmdlineSize;
  if (node.delivery === "kexec" && node.kexec.syscall === "kexec_file_load") {
    const limit = Math.max(0, size - 1 - ELFCOREHDR_ROOM);
    return {
      limit,
      says: `kexec_file_load accepts ${limit} (cmdline_size ${size} less the NUL and ${ELFCOREHDR_ROOM} bytes kept for elfcorehdr=)`,
    };
  }
  // before protocol 2.06 kexec-tools only warns past 255 bytes, and the kernel cuts the line there
  if (node.delivery === "kexec" && k.header.version >= 0x206) {
    const limit = Math.max(0, size - 1);
    return { limit, says: `kexec accepts ${limit} (it counts the NUL against cmdline_size ${size})` };
  }
  return { limit: size, says: `kernel accepts ${size}` };
}

/** Human name of a kernel for messages. */
export function describeKernel(i: Inspection): string {
  switch (i.format) {
    case "bzImage":
      return `bzImage (boot protocol ${i.protocol}${i.is64 ? ", 64-bit" : ", 32-bit"})`;
    case "elf":
      return `ELF${i.class} ${i.machineName}`;
    case "arm64-image":
      return "arm64 Image";
    case "riscv-image":
      return "RISC-V Image";
    case "uimage":
      return `uImage (${i.arch})`;
    default:
      return i.format;
  }
}

function archMatches(arch: string, k: Inspection): string | undefined {
  const name = describeKernel(k);
  switch (k.format) {
    case "bzImage":
      if (arch === "x86_64" && !k.is64 && k.header.version >= 0x20c)
        return `${name} is not 64-bit capable (xloadflags bit 0 clear) but the node is x86_64`;
      if (arch === "i386" && k.is64) return `${name} is a 64-bit kernel but the node is i386`;
      if (arch !== "x86_64" && arch !== "i386") return `${name} is an x86 kernel but the node is ${arch}`;
      return undefined;
    case "elf":
      return ELF_MACHINE[arch]?.includes(k.machine) ? undefined : `${name} kernel but the node is ${arch}`;
    case "arm64-image":
      return arch === "arm64" ? undefined : `${name} but the node is ${arch}`;
    case "riscv-image":
      return arch === "riscv64" ? undefined : `${name} but the node is ${arch}`;
    case "uimage":
      return UIMAGE_ARCH[arch]?.includes(k.arch) ? undefined : `${name} but the node is ${arch}`;
    default:
      return `${k.format} file is not a kernel`;
  }
}

/** Checks one node; never throws for problems in the node's files (they become errors). */
export function checkNode(cluster: Cluster, node: ResolvedNode, files: FileCache): CheckResult {
  const errors: string[] = [];
  const warnings: string[] = [];
  const cmdline = node.cmdline.join(" ");
  const cmdlineBytes = Buffer.byteLength(cmdline);
  const res: CheckResult = {
    node: node.name,
    ok: false,
    errors,
    warnings,
    initrds: [],
    cmdline,
    cmdlineBytes,
  };
  const n = node.name;
  let kernel: Inspection | undefined;
  const kpath = cluster.path(node.kernel.path);
  try {
    kernel = files.inspect(kpath);
  } catch (err) {
    if (err instanceof BootcfgError) errors.push(`${n}: kernel ${err.message}`);
    else throw err;
  }
  let initrdTotal = 0;
  for (const p of node.initrds) {
    try {
      // read once: unpacked first, its size and hash kept for stat (a failed read stats on its own)
      const path = cluster.path(p);
      let unpacked: { unverified: string[] } | BootcfgError;
      try {
        unpacked = files.initramfs(path);
      } catch (err) {
        if (!(err instanceof BootcfgError)) throw err;
        unpacked = err;
      }
      const f = files.stat(path);
      res.initrds.push(f);
      initrdTotal += f.size;
      if (unpacked instanceof BootcfgError) throw unpacked;
      for (const u of unpacked.unverified) warnings.push(`${n}: initrd ${u}`);
    } catch (err) {
      if (err instanceof BootcfgError) errors.push(`${n}: initrd ${err.message}`);
      else throw err;
    }
  }
  if (Object.keys(node.overlay).length) initrdTotal += buildOverlay(node).length;
  if (kernel) {
    const format = kernelFormatOf(kernel);
    res.kernel = { path: kpath, size: kernel.size, sha256: kernel.sha256, format: kernel.format };
    if (kernel.format === "bzImage") res.kernel.release = kernel.release;
    if (!format) errors.push(`${n}: ${kpath} is a ${kernel.format} file, not a kernel`);
    else {
      if (node.kernel.format && node.kernel.format !== format)
        errors.push(
          `${n}: kernel.format says ${node.kernel.format} but ${kpath} is ${describeKernel(kernel)}`,
        );
      const mismatch = archMatches(node.arch, kernel);
      if (mismatch) errors.push(`${n}: ${mismatch} (${kpath})`);
      // command line limit, counting what the loader adds to the node's command line
      const lim = cmdlineLimit(node, kernel);
      if (lim) {
        res.cmdlineLimit = lim.limit;
        const { before, after } = loaderCmdline(node);
        const added = Buffer.byteLength(before + after);
        const loader = node.delivery === "pxe" ? "pxelinux" : "iPXE";
        if (cmdlineBytes + added > lim.limit)
          errors.push(
            added
              ? `${n}: command line is ${cmdlineBytes} bytes, ${cmdlineBytes + added} with the ${added} bytes ${loader} adds (${[before.trim(), after.trim()].filter(Boolean).join(" … ")}), ${lim.says}`
              : `${n}: command line is ${cmdlineBytes} bytes, ${lim.says}`,
          );
      }
      const uProblem = kernel.format === "uimage" ? uimageProblem(kernel, kernel.size) : undefined;
      if (uProblem) errors.push(`${n}: ${kpath}: ${uProblem}`);
      // initrd placement and memory
      if (kernel.format === "bzImage") {
        const h = kernel.header;
        const footprint = Number(h.prefAddress || 0x100000n) + h.initSize;
        const room = h.initrdAddrMax + 1 - footprint;
        // kexec-tools' bzImage64 loader and kexec_file_load put the initrd anywhere (above 4 GiB
        // too: XLF_CAN_BE_LOADED_ABOVE_4G) and do not read initrd_addr_max
        const initrdAnywhere = node.delivery === "kexec" && node.arch === "x86_64" && isBzImage64(kernel);
        if (!initrdAnywhere && initrdTotal > room)
          errors.push(
            `${n}: initrds total ${formatBytes(initrdTotal)}, but only ${formatBytes(room)} fit below initrd_addr_max ${hex(h.initrdAddrMax)} after the kernel`,
          );
        if (node.memory !== undefined) {
          const need = footprint + initrdTotal;
          if (need > node.memory)
            errors.push(
              `${n}: needs ${formatBytes(need)} (kernel at ${hex(Number(h.prefAddress))} + init_size ${formatBytes(h.initSize)} + initrds ${formatBytes(initrdTotal)}) but memory is ${formatBytes(node.memory)}`,
            );
        }
      } else if (kernel.format === "arm64-image" && node.memory !== undefined) {
        const need = Number(kernel.imageSize) + initrdTotal * 2;
        if (need > node.memory)
          errors.push(
            `${n}: needs about ${formatBytes(need)} (image_size + initrds, unpacked) but memory is ${formatBytes(node.memory)}`,
          );
      } else if (kernel.format === "elf") {
        errors.push(...elfKernelProblems(kernel, node, initrdTotal).map((e) => `${n}: ${kpath}: ${e}`));
      }
      // delivery path
      const d = node.delivery;
      if (d === "kexec" && node.kexec.syscall === "kexec_file_load") {
        const ok =
          (format === "bzImage" && kernel.format === "bzImage" && isBzImage64(kernel)) ||
          format === "arm64-image" ||
          format === "riscv-image" ||
          (format === "elf" && node.arch === "ppc64le");
        const why =
          kernel.format === "bzImage" && kernel.is64
            ? " (it takes a relocatable bzImage64: protocol 2.12+, LOADED_HIGH, XLF_KERNEL_64 and XLF_CAN_BE_LOADED_ABOVE_4G)"
            : "";
        if (!ok)
          errors.push(
            `${n}: kexec_file_load cannot load ${describeKernel(kernel)}${why}; use kexec.syscall: kexec_load`,
          );
      }
      if (
        d === "kexec" &&
        format === "elf" &&
        kernel.format === "elf" &&
        node.arch === "x86_64" &&
        kernel.pvhEntry === undefined &&
        node.initrds.length
      )
        warnings.push(`${n}: ELF kernel without a PVH note: kexec needs --args-linux (bootcfg plans add it)`);
      // QEMU's x86 -kernel takes a bzImage, or an ELF through a multiboot header (tried first;
      // ELF32 only: "Cannot load x86-64 image, give a 32bit one.") or a PVH note ("Error loading
      // uncompressed kernel without PVH ELF Note" otherwise)
      if (d === "qemu" && kernel.format === "elf" && (node.arch === "x86_64" || node.arch === "i386")) {
        if (kernel.multibootHeader !== undefined && kernel.machine === 0x3e)
          errors.push(
            `${n}: QEMU loads an ELF with a multiboot header as multiboot, which takes no x86-64 ELF (${kpath}); give it the bzImage`,
          );
        else if (kernel.multibootHeader === undefined && kernel.pvhEntry === undefined)
          errors.push(
            `${n}: QEMU boots an x86 ELF kernel only through a PVH note (XEN_ELFNOTE_PHYS32_ENTRY) or a multiboot header, and ${kpath} has neither; give it the bzImage`,
          );
      }
      if (d === "payload") {
        if (node.firmware !== "coreboot")
          errors.push(`${n}: delivery "payload" needs firmware: coreboot (node has ${node.firmware})`);
        if ((node.arch === "x86_64" || node.arch === "i386") && format !== "bzImage" && format !== "elf")
          errors.push(
            `${n}: coreboot Linux payloads on x86 take a bzImage or ELF, not ${describeKernel(kernel)}`,
          );
        if ((node.arch === "arm64" || node.arch === "riscv64") && format !== "uimage")
          errors.push(
            `${n}: coreboot on ${node.arch} loads a uImage/FIT payload, not ${describeKernel(kernel)} (wrap it with \`bootcfg uimage\`)`,
          );
      }
      if (d === "pxe" && node.arch !== "x86_64" && node.arch !== "i386")
        errors.push(`${n}: pxelinux is x86 BIOS only; use delivery: ipxe for ${node.arch}`);
      if (d === "pxe" && format !== "bzImage")
        errors.push(`${n}: pxelinux boots a bzImage, not ${describeKernel(kernel)}`);
      if (
        d === "ipxe" &&
        node.arch !== "x86_64" &&
        node.arch !== "i386" &&
        node.initrds.length + (Object.keys(node.overlay).length ? 1 : 0) > 1
      )
        warnings.push(
          `${n}: iPXE on ${node.arch} takes one initrd: bootcfg concatenates ${node.initrds.length} initrds and the overlay into one`,
        );
      if ((d === "pxe" || d === "ipxe") && !node.mac)
        errors.push(`${n}: delivery "${d}" needs a mac address to name the node's config file`);
      // iPXE expands ${name} anywhere on a command line (a backslash does not stop it), so the
      // kernel would get the setting's value: ipxe.lkrn turns "\${platform}" into "\pcbios"
      if (d === "ipxe" && cmdline.includes("${"))
        errors.push(
          `${n}: the command line holds "\${", which iPXE expands as one of its settings before the kernel sees it`,
        );
      if (d === "ipxe" && !node.baseUrl)
        warnings.push(`${n}: no baseUrl: iPXE scripts will use relative file names`);
    }
  }
  res.ok = errors.length === 0;
  return res;
}

export interface ClusterCheck {
  ok: boolean;
  nodes: CheckResult[];
  errors: string[];
}

/** Checks every node plus cluster-wide rules (duplicate MACs and IPs). */
export function checkCluster(cluster: Cluster, files: FileCache, only?: readonly string[]): ClusterCheck {
  const names = only ?? cluster.nodes();
  const nodes: CheckResult[] = [];
  const errors: string[] = [];
  const macs = new Map<string, string>();
  const ips = new Map<string, string>();
  const resolved: Array<{ res: CheckResult; node: ResolvedNode }> = [];
  for (const name of names) {
    let r: ResolvedNode;
    try {
      r = cluster.resolve(name);
    } catch (err) {
      if (!(err instanceof BootcfgError)) throw err;
      nodes.push({
        node: name,
        ok: false,
        errors: [err.message],
        warnings: [],
        initrds: [],
        cmdline: "",
        cmdlineBytes: 0,
      });
      errors.push(err.message);
      continue;
    }
    const res = checkNode(cluster, r, files);
    if (r.mac) {
      const other = macs.get(r.mac);
      if (other) res.errors.push(`${name}: MAC ${r.mac} is also used by ${other}`);
      else macs.set(r.mac, name);
    }
    if (r.ip) {
      const other = ips.get(r.ip);
      if (other) res.errors.push(`${name}: IP ${r.ip} is also used by ${other}`);
      else ips.set(r.ip, name);
    }
    res.ok = res.errors.length === 0;
    nodes.push(res);
    resolved.push({ res, node: r });
    errors.push(...res.errors);
  }
  // pxelinux configs (and, apart, iPXE scripts) name files by base name in one published directory
  const problems = publishedNameProblems(
    resolved.map((r) => r.node),
    (p) => cluster.path(p),
  );
  for (const problem of problems) {
    const res = resolved.find((r) => problem.startsWith(`${r.node.name}: `))!.res;
    res.errors.push(problem);
    res.ok = false;
    errors.push(problem);
  }
  return { ok: errors.length === 0, nodes, errors };
}

const PT_LOAD = 1;
const ET_EXEC = 2;

/**
 * What stops an ELF from being loaded as a kernel: no loadable segment, not an executable (a
 * shared object or a PIE program is no kernel), segments at addresses kexec refuses (kexec_load
 * takes page-aligned physical addresses), or segments that end past the node's memory.
 */
function elfKernelProblems(
  elf: Extract<Inspection, { format: "elf" }>,
  node: { delivery: string; memory?: number },
  initrdTotal: number,
): string[] {
  const out: string[] = [];
  const loads = elf.programHeaders.filter((p) => p.type === PT_LOAD && p.memsz > 0);
  if (elf.type !== ET_EXEC)
    out.push(
      `an ELF of type ${elf.type === 3 ? "ET_DYN (a shared object or position-independent program)" : elf.type}, not an executable (ET_EXEC) kernel`,
    );
  if (loads.length === 0) out.push("an ELF with no loadable segment (PT_LOAD): there is nothing to boot");
  const unaligned = loads.find((p) => p.paddr % 4096n !== 0n);
  if (unaligned && node.delivery === "kexec")
    out.push(
      `a loadable segment at physical address 0x${unaligned.paddr.toString(16)}, not page aligned: kexec refuses it (a kernel's are aligned; is this a program?)`,
    );
  if (node.memory !== undefined && loads.length) {
    const end = loads.reduce((m, p) => (p.paddr + BigInt(p.memsz) > m ? p.paddr + BigInt(p.memsz) : m), 0n);
    if (end + BigInt(initrdTotal) > BigInt(node.memory))
      out.push(
        `its segments end at 0x${end.toString(16)}${initrdTotal ? ` (and the initrds take ${formatBytes(initrdTotal)})` : ""} but memory is ${formatBytes(node.memory)}`,
      );
  }
  return out;
}
