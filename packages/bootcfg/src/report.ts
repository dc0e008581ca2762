// Text and JSON renderings of inspections and resolved nodes.
import type { ResolvedNode } from "./cluster/resolve.js";
import type { Inspection } from "./inspect.js";
import { formatBytes, hex } from "./util.js";

/** JSON.stringify that writes bigints as numbers (or hex strings past 2^53) and bytes as hex. */
export function toJson(value: unknown, indent = 2): string {
  return JSON.stringify(
    value,
    (_k, v) => {
      if (typeof v === "bigint")
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${v.toString(16)}`;
      if (v instanceof Uint8Array) return Buffer.from(v).toString("hex");
      return v;
    },
    indent,
  );
}

export function renderInspection(i: Inspection): string {
  const out: string[] = [];
  const kv = (k: string, v: string | number | bigint) => out.push(`${`${k}:`.padEnd(22)} ${v}`);
  kv("file", i.file ?? "-");
  kv("size", `${i.size} (${formatBytes(i.size)})`);
  kv("sha256", i.sha256);
  switch (i.format) {
    case "bzImage": {
      const h = i.header;
      kv("format", `x86 bzImage, boot protocol ${i.protocol}${i.efiStub ? ", EFI stub" : ""}`);
      kv("version", i.versionString);
      kv("setup_sects", `${h.setupSects} (${h.setupSize} bytes of setup)`);
      kv("syssize", hex(h.syssize));
      kv("loadflags", `${hex(h.loadflags, 2)} ${i.loadflagsNames.join(" ")}`);
      kv("xloadflags", `${hex(h.xloadflags, 2)} ${i.xloadflagsNames.join(" ")}`);
      kv("code32_start", hex(h.code32Start));
      kv("initrd_addr_max", hex(h.initrdAddrMax));
      kv("kernel_alignment", hex(h.kernelAlignment));
      kv("relocatable_kernel", h.relocatableKernel);
      kv("min_alignment", h.minAlignment);
      kv("cmdline_size", `${h.cmdlineSize} (${hex(h.cmdlineSize)})`);
      kv("pref_address", hex(h.prefAddress));
      kv("init_size", `${hex(h.initSize)} (${formatBytes(h.initSize)})`);
      kv("handover_offset", hex(h.handoverOffset));
      kv("kernel_info_offset", hex(h.kernelInfoOffset));
      kv(
        "payload",
        `${i.payload.compression} at ${hex(i.payload.offset)}, ${i.payload.length} bytes → ${i.payload.decompressedSize} bytes`,
      );
      break;
    }
    case "elf":
      kv(
        "format",
        `ELF${i.class} ${i.littleEndian ? "LSB" : "MSB"} ${i.type === 2 ? "EXEC" : i.type === 3 ? "DYN" : `type ${i.type}`}, ${i.machineName}`,
      );
      kv("entry", hex(i.entry));
      if (i.pvhEntry !== undefined) kv("pvh entry", hex(i.pvhEntry));
      out.push("program headers:      type     offset     paddr              filesz     memsz      flags");
      for (const p of i.programHeaders)
        out.push(
          `  ${(p.type === 1 ? "LOAD" : p.type === 4 ? "NOTE" : hex(p.type)).padEnd(8)} ${hex(p.offset).padEnd(10)} ${hex(p.paddr).padEnd(18)} ${hex(p.filesz).padEnd(10)} ${hex(p.memsz).padEnd(10)} ${(p.flags & 4 ? "R" : " ") + (p.flags & 2 ? "W" : " ") + (p.flags & 1 ? "E" : " ")}`,
        );
      for (const n of i.notes) out.push(`  note ${n.name} type ${hex(n.type)} (${n.desc.length} bytes)`);
      break;
    case "arm64-image":
    case "riscv-image":
      kv(
        "format",
        `${i.arch} Image, ${i.bigEndian ? "big" : "little"}-endian, ${i.pageSize} pages${i.efiStub ? ", EFI stub" : ""}`,
      );
      kv("text_offset", hex(i.textOffset));
      kv("image_size", `${hex(i.imageSize)} (${formatBytes(Number(i.imageSize))})`);
      kv("flags", `${hex(i.flags)}${i.physicalPlacementAnywhere ? " (placed anywhere)" : ""}`);
      break;
    case "uimage":
      kv("format", `uImage ${i.os} ${i.arch} ${i.type}, ${i.compression}`);
      kv("name", i.name);
      kv("load / entry", `${hex(i.load)} / ${hex(i.entry)}`);
      kv("data size", i.dataSize);
      kv("crc", `header ${i.headerCrcOk ? "ok" : "BAD"}, data ${i.dataCrcOk ? "ok" : "BAD"}`);
      break;
    case "beoboot":
      kv("format", `beoboot image (${i.arch}), cmdline size ${i.cmdlineSizeByteOrder}-endian`);
      kv("cmdline", i.cmdline);
      kv("kernel", `${i.kernelSize} bytes at ${hex(i.kernelOffset)}`);
      kv("initrd", `${i.initrdSize} bytes at ${hex(i.initrdOffset)}`);
      break;
    case "cbfs":
      kv("format", `CBFS, ${i.files.length} files`);
      for (const f of i.files) {
        out.push(`  ${f.name || "(empty)"}  ${hex(f.offset)}  ${f.typeName}  ${f.len}  ${f.compression}`);
        for (const s of f.segments ?? [])
          out.push(
            s.type === "entry"
              ? `      entry (${hex(s.load)})`
              : `      ${s.type} (${s.compression} compression, offset: ${hex(s.offset)}, load: ${hex(s.load)}, length: ${s.len}/${s.memLen})`,
          );
      }
      break;
    case "initramfs":
      kv("format", `initramfs, ${i.members.length} member${i.members.length === 1 ? "" : "s"}`);
      for (const m of i.members) {
        out.push(
          `  member at ${hex(m.offset)}: ${m.compression}, ${m.length} bytes${m.entries ? `, ${m.entries.length} entries` : ""}`,
        );
        for (const e of m.entries ?? [])
          out.push(
            `    ${e.type.padEnd(7)} ${e.perm.toString(8).padStart(4, "0")} ${String(e.uid).padStart(4)}:${String(e.gid).padEnd(4)} ${
              e.type === "char" || e.type === "block"
                ? `${e.rdevMajor},${e.rdevMinor}`.padStart(9)
                : String(e.size).padStart(9)
            } ${e.name}`,
          );
      }
      break;
    case "compressed":
      kv("format", `${i.compression}-compressed data`);
      break;
  }
  return `${out.join("\n")}\n`;
}

/** `bootcfg show`: every merged value and where it came from. */
export function renderShow(n: ResolvedNode): string {
  const rows: Array<[string, string, string]> = [];
  const o = n.origins;
  rows.push(["node", n.name, ""]);
  rows.push(["profiles", n.profiles.join(", ") || "(none)", ""]);
  rows.push(["arch", n.arch, o.arch ?? ""]);
  rows.push(["kernel", `${n.kernel.path}${n.kernel.format ? ` (${n.kernel.format})` : ""}`, o.kernel ?? ""]);
  for (const [i, p] of n.initrds.entries())
    rows.push([i === 0 ? "initrds" : "", p, i === 0 ? (o.initrds ?? "") : ""]);
  if (n.initrds.length === 0) rows.push(["initrds", "(none)", ""]);
  for (const [i, t] of n.cmdline.entries())
    rows.push([i === 0 ? "cmdline" : "", t, n.cmdlineOrigins[i] ?? ""]);
  rows.push(["firmware", n.firmware, o.firmware ?? ""]);
  rows.push(["delivery", n.delivery, o.delivery ?? ""]);
  if (n.memory !== undefined) rows.push(["memory", formatBytes(n.memory), o.memory ?? ""]);
  if (n.ip) rows.push(["ip", n.ip, o.ip ?? ""]);
  if (n.mac) rows.push(["mac", n.mac, o.mac ?? ""]);
  rows.push(["kexec.syscall", n.kexec.syscall, o["kexec.syscall"] ?? ""]);
  rows.push(["kexec.dir", n.kexec.dir, o["kexec.dir"] ?? ""]);
  rows.push(["payload.name", n.payload.name, o["payload.name"] ?? ""]);
  if (n.payload.rom) rows.push(["payload.rom", n.payload.rom, o["payload.rom"] ?? ""]);
  if (n.baseUrl) rows.push(["baseUrl", n.baseUrl, o.baseUrl ?? ""]);
  for (const f of Object.keys(n.overlay)) rows.push(["overlay", f, o[`overlay.${f}`] ?? ""]);
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.min(48, Math.max(...rows.map((r) => r[1].length)));
  return `${rows.map(([k, v, from]) => `${k.padEnd(w0)}  ${v.padEnd(w1)}  ${from ? `← ${from}` : ""}`.trimEnd()).join("\n")}\n`;
}
