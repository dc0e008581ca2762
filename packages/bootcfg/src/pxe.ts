// pxelinux configuration files and iPXE scripts per node.
import { basename } from "node:path";
import type { ResolvedNode } from "./cluster/resolve.js";
import type { NodePlan } from "./plan.js";
import { TOOL } from "./plan.js";

/** pxelinux's name for a MAC: "01-" + lower-case, dash-separated. */
export function pxeMacName(mac: string): string {
  return `01-${mac.toLowerCase().replaceAll(":", "-")}`;
}

/** pxelinux's name for an IPv4 address: upper-case hex ("192.0.2.91" → "C000025B"). */
export function pxeIpName(ip: string): string {
  return ip
    .split(".")
    .map((p) => Number(p).toString(16).toUpperCase().padStart(2, "0"))
    .join("");
}

/** File names a node's boot files are published under (relative to the TFTP/HTTP root). */
export interface PublishedNames {
  kernel: string;
  initrds: string[];
  /** The concatenated initrd (one file), for loaders that take only one. */
  combined: string;
}

export function publishedNames(plan: NodePlan): PublishedNames {
  return publishedNamesOf(plan.node);
}

/** The same names from a node's settings alone (every plan ends its initrds with the overlay). */
export function publishedNamesOf(node: Pick<ResolvedNode, "name" | "kernel" | "initrds">): PublishedNames {
  return {
    kernel: basename(node.kernel.path),
    initrds: [...node.initrds.map((p) => basename(p)), `${node.name}.cpio`],
    combined: `${node.name}.initrd`,
  };
}

/** The initrd names an iPXE script loads: several on x86, elsewhere the one concatenation. */
function ipxeInitrds(node: Pick<ResolvedNode, "arch">, names: PublishedNames): string[] {
  return node.arch === "x86_64" || node.arch === "i386" ? names.initrds : [names.combined];
}

/**
 * What a node's loader adds to the command line it hands the kernel, as [before, after]:
 * pxelinux (syslinux) puts `BOOT_IMAGE=<kernel> ` in front and ` initrd=<INITRD list>` after;
 * iPXE on UEFI boots the kernel's EFI stub, which finds its initrds by the `initrd=<name>`
 * arguments the script adds (iPXE names each image after the last part of its URL). Those bytes
 * count against the kernel's command line limit like the node's own.
 */
export function loaderCmdline(
  node: Pick<ResolvedNode, "name" | "arch" | "delivery" | "firmware" | "kernel" | "initrds">,
  names = publishedNamesOf(node),
): { before: string; after: string } {
  if (node.delivery === "pxe")
    return { before: `BOOT_IMAGE=${names.kernel} `, after: ` initrd=${names.initrds.join(",")}` };
  if (node.delivery === "ipxe" && node.firmware === "uefi")
    return {
      before: "",
      after: ipxeInitrds(node, names)
        .map((i) => ` initrd=${i}`)
        .join(""),
    };
  return { before: "", after: "" };
}

/** One published file: where it comes from, for messages. */
interface Publication {
  source: string;
  node: string;
  what: string;
}

/**
 * Problems with the names the pxelinux configs and iPXE scripts give a set of nodes' files: they
 * name each by its base name in one published directory, so two different files with the same
 * base name (`x86/vmlinuz`, `i386/vmlinuz`) would be one file there and some nodes would boot the
 * other's kernel; and a name (or iPXE base URL) with white space — or, for pxelinux's INITRD
 * list, a comma — does not survive the line it is written on. pxelinux configs and iPXE scripts
 * are published apart: names are compared among the nodes of one delivery (pxe's problems first).
 */
export function publishedNameProblems(
  nodes: ReadonlyArray<PublishedNode>,
  resolvePath: (p: string) => string,
): string[] {
  return (["pxe", "ipxe"] as const).flatMap((d) =>
    deliveryNameProblems(
      nodes.filter((n) => n.delivery === d),
      resolvePath,
    ),
  );
}

type PublishedNode = Pick<ResolvedNode, "name" | "arch" | "delivery" | "kernel" | "initrds" | "baseUrl">;

/** publishedNameProblems for nodes of one delivery. */
function deliveryNameProblems(
  nodes: ReadonlyArray<PublishedNode>,
  resolvePath: (p: string) => string,
): string[] {
  const problems: string[] = [];
  const seen = new Map<string, Publication>();
  for (const n of nodes) {
    const files: Array<[string, Publication]> = [
      [basename(n.kernel.path), { source: resolvePath(n.kernel.path), node: n.name, what: "kernel" }],
      ...n.initrds.map((p): [string, Publication] => [
        basename(p),
        { source: resolvePath(p), node: n.name, what: "initrd" },
      ]),
      [`${n.name}.cpio`, { source: `(the overlay of ${n.name})`, node: n.name, what: "overlay" }],
    ];
    if (n.delivery === "ipxe" && n.arch !== "x86_64" && n.arch !== "i386")
      files.push([
        `${n.name}.initrd`,
        { source: `(the initrds of ${n.name})`, node: n.name, what: "combined initrd" },
      ]);
    for (const [name, pub] of files) {
      const bad = n.delivery === "pxe" ? /[\s,]/ : /\s/;
      if (bad.test(name))
        problems.push(
          `${n.name}: ${pub.what} ${pub.source} is published as "${name}", which ${n.delivery === "pxe" ? "a pxelinux config" : "an iPXE script"} cannot name (white space${n.delivery === "pxe" ? " or a comma" : ""}): rename the file`,
        );
      const other = seen.get(name);
      if (!other) seen.set(name, pub);
      else if (other.source !== pub.source)
        problems.push(
          `${n.name}: ${pub.what} ${pub.source} and ${other.node}'s ${other.what} ${other.source} are both published as "${name}": rename one`,
        );
    }
    if (n.delivery === "ipxe" && n.baseUrl && /\s/.test(n.baseUrl))
      problems.push(`${n.name}: baseUrl "${n.baseUrl}" has white space, which an iPXE script cannot hold`);
  }
  return problems;
}

export function renderPxelinux(plan: NodePlan, names = publishedNames(plan)): string {
  const n = plan.node;
  const serial = /(^| )console=ttyS0/.test(plan.cmdline) ? ["SERIAL 0 115200"] : [];
  return [
    `# pxelinux config for ${n.name} (${n.arch}), written by ${TOOL}`,
    `DEFAULT ${n.name}`,
    "PROMPT 0",
    "TIMEOUT 0",
    ...serial,
    `LABEL ${n.name}`,
    `  KERNEL ${names.kernel}`,
    `  INITRD ${names.initrds.join(",")}`,
    `  APPEND ${plan.cmdline}`,
    "",
  ].join("\n");
}

export function renderIpxe(plan: NodePlan, names = publishedNames(plan)): string {
  const n = plan.node;
  const base = n.baseUrl ? `${n.baseUrl}/` : "";
  // iPXE composes several initrds into one initramfs on x86 only; elsewhere send the concatenation
  const initrds = ipxeInitrds(n, names);
  // on UEFI the kernel's EFI stub loads the initrds named by initrd= arguments
  const { after } = loaderCmdline(n, names);
  return [
    "#!ipxe",
    `# iPXE script for ${n.name} (${n.arch}), written by ${TOOL}`,
    `echo bootcfg: ${n.name} ${n.arch} on \${platform}/\${buildarch}`,
    `kernel ${base}${names.kernel} ${plan.cmdline}${after} || goto failed`,
    ...initrds.map((i) => `initrd ${base}${i} || goto failed`),
    "boot || goto failed",
    ":failed",
    `echo bootcfg: ${n.name} boot failed`,
    "",
  ].join("\n");
}

/** A dispatcher every node can chain: picks the per-node script by MAC. */
export function renderIpxeDispatch(baseUrl: string | undefined): string {
  const base = baseUrl ? `${baseUrl}/` : "";
  return [
    "#!ipxe",
    `# node dispatcher, written by ${TOOL}`,
    `chain ${base}ipxe/\${mac:hexhyp}.ipxe || goto unknown`,
    ":unknown",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: an iPXE variable, expanded by iPXE
    "echo bootcfg: no boot script for ${mac}",
    "",
  ].join("\n");
}
