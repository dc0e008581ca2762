// The cluster file: defaults → profiles (ordered, may include others) → nodes (range syntax).
// Validation is hand-written so every error names file, line and key and says what to write.
import { posix } from "node:path";
import { BootcfgError } from "../errors.js";
import { parseSize } from "../util.js";
import type { SourceDoc } from "./source.js";

export const ARCHES = ["x86_64", "i386", "arm64", "riscv64", "ppc64le"] as const;
export type Arch = (typeof ARCHES)[number];
export const FIRMWARES = ["coreboot", "uefi", "bios"] as const;
export type Firmware = (typeof FIRMWARES)[number];
export const DELIVERIES = ["payload", "kexec", "pxe", "ipxe", "qemu"] as const;
export type Delivery = (typeof DELIVERIES)[number];
export const KERNEL_FORMATS = ["bzImage", "elf", "arm64-image", "riscv-image", "uimage"] as const;
export const KEXEC_SYSCALLS = ["kexec_load", "kexec_file_load"] as const;
/** A `memory` below 1 MiB is a missing unit ("512" for 512M); above 4 PiB no node addresses it. */
const MIN_MEMORY = 2 ** 20;
const MAX_MEMORY = 2 ** 52;

/** Settings that defaults, profiles and node entries may carry. */
export interface Settings {
  arch?: Arch;
  kernel?: { path: string; format?: (typeof KERNEL_FORMATS)[number] };
  initrds?: string[];
  cmdline?: string[];
  firmware?: Firmware;
  delivery?: Delivery;
  memory?: number;
  kexec?: { syscall?: (typeof KEXEC_SYSCALLS)[number]; dir?: string };
  overlay?: Record<string, string>;
  payload?: { name?: string; rom?: string };
  baseUrl?: string;
}

export interface ProfileDef extends Settings {
  include: string[];
}

export interface NodeEntry extends Settings {
  names: string;
  exclude?: string;
  profiles: string[];
  ip?: string;
  mac?: string;
  /** Index of the entry in `nodes` (for provenance). */
  index: number;
  /** Dotted path of the entry in the document ("nodes.2" or "nodes.n[01-16]"). */
  path: string;
}

export interface ClusterDef {
  name?: string;
  defaults: Settings;
  profiles: Map<string, ProfileDef>;
  nodes: NodeEntry[];
}

const SETTING_KEYS = [
  "arch",
  "kernel",
  "initrds",
  "cmdline",
  "firmware",
  "delivery",
  "memory",
  "kexec",
  "overlay",
  "payload",
  "baseUrl",
];
const TOP_KEYS = ["version", "name", "defaults", "profiles", "nodes"];
/** The variables cmdline tokens and overlay contents may use (resolve.ts fills them in). */
export const TEMPLATE_VARIABLES = ["node", "arch", "ip", "mac", "profile"];
/** A `{{name}}` in a cmdline token or an overlay file. */
export const TEMPLATE = /\{\{\s*(\w+)\s*\}\}/g;
const NODE_KEYS = [...SETTING_KEYS, "name", "names", "exclude", "profiles", "ip", "mac"];

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
  return d[a.length]![b.length]!;
}

function suggest(key: string, known: readonly string[]): string {
  const best = known
    .map((k) => [k, distance(key.toLowerCase(), k.toLowerCase())] as const)
    .sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= 2 ? ` (did you mean "${best[0]}"?)` : ` (known keys: ${known.join(", ")})`;
}

class Validator {
  readonly errors: string[] = [];
  constructor(readonly src: SourceDoc) {}

  line(path: string): number {
    let p = path;
    for (;;) {
      const l = this.src.lines.get(p);
      if (l !== undefined) return l;
      if (!p.includes(".")) return 1;
      p = p.slice(0, p.lastIndexOf("."));
    }
  }

  err(path: string, msg: string): void {
    this.errors.push(`${this.src.file}:${this.line(path)}: ${path || "(top level)"}: ${msg}`);
  }

  isObj(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
  }

  keys(obj: Record<string, unknown>, path: string, known: readonly string[]): void {
    for (const k of Object.keys(obj))
      if (!known.includes(k)) this.err(path ? `${path}.${k}` : k, `unknown key${suggest(k, known)}`);
  }

  str(v: unknown, path: string): string | undefined {
    if (typeof v === "string" && v.length > 0) return this.printable(v, path);
    if (typeof v === "number") return String(v);
    this.err(path, `expected a non-empty string, got ${JSON.stringify(v)}`);
    return undefined;
  }

  /**
   * Settings end up in line-based files (pxelinux configs, iPXE scripts, kexec.sh, Kconfig) and on
   * the kernel command line: a newline would start a new directive there (`APPEND a` then
   * `DEFAULT evil`), a NUL would end the command line. Only overlay file contents may hold them.
   */
  /** Every {{name}} in `text` is a known template variable; false (reported) when not. */
  templates(text: string, path: string): boolean {
    const unknown = [...text.matchAll(TEMPLATE)]
      .map((m) => m[1] as string)
      .filter((name) => !TEMPLATE_VARIABLES.includes(name));
    if (unknown.length === 0) return true;
    this.err(
      path,
      `unknown template variable {{${unknown[0]}}} (known: ${TEMPLATE_VARIABLES.map((v) => `{{${v}}}`).join(" ")})`,
    );
    return false;
  }

  printable(v: string, path: string): string | undefined {
    const bad = /[\x00-\x1f\x7f]/.exec(v);
    if (!bad) return v;
    this.err(
      path,
      `control character ${JSON.stringify(bad[0])} in ${JSON.stringify(v)} (not allowed: it would end or split a line of the generated files)`,
    );
    return undefined;
  }

  oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T | undefined {
    if (typeof v === "string" && (allowed as readonly string[]).includes(v)) return v as T;
    this.err(path, `must be one of ${allowed.join(", ")}; got ${JSON.stringify(v)}`);
    return undefined;
  }

  strList(v: unknown, path: string, splitString = false): string[] | undefined {
    if (typeof v === "string") {
      if (splitString)
        return v
          .split(/\s+/)
          .filter(Boolean)
          .filter((x) => this.printable(x, path) !== undefined);
      return this.printable(v, path) === undefined ? undefined : [v];
    }
    if (!Array.isArray(v)) {
      this.err(path, `expected a list of strings${splitString ? " or one string" : ""}`);
      return undefined;
    }
    const out: string[] = [];
    v.forEach((x, i) => {
      const s = typeof x === "number" || typeof x === "boolean" ? String(x) : x;
      if (typeof s !== "string" || s === "")
        this.err(`${path}.${i}`, `expected a non-empty string, got ${JSON.stringify(x)}`);
      else if (this.printable(s, `${path}.${i}`) !== undefined) out.push(s);
    });
    return out;
  }

  settings(obj: Record<string, unknown>, path: string): Settings {
    const s: Settings = {};
    const p = (k: string) => (path ? `${path}.${k}` : k);
    if ("arch" in obj) {
      const a = this.oneOf(obj.arch, p("arch"), ARCHES);
      if (a) s.arch = a;
    }
    if ("kernel" in obj) {
      const k = obj.kernel;
      if (typeof k === "string") s.kernel = { path: k };
      else if (this.isObj(k)) {
        this.keys(k, p("kernel"), ["path", "format"]);
        const kp = this.str(k.path, p("kernel.path"));
        if (kp) {
          s.kernel = { path: kp };
          if ("format" in k) {
            const f = this.oneOf(k.format, p("kernel.format"), KERNEL_FORMATS);
            if (f) s.kernel.format = f;
          }
        }
      } else this.err(p("kernel"), "expected a file name or { path, format }");
    }
    if ("initrds" in obj) {
      const l = this.strList(obj.initrds, p("initrds"));
      if (l) s.initrds = l;
    }
    if ("cmdline" in obj) {
      const l = this.strList(obj.cmdline, p("cmdline"), true);
      if (l) {
        for (const [i, t] of l.entries()) this.templates(t, `${p("cmdline")}.${i}`);
        s.cmdline = l;
      }
    }
    if ("firmware" in obj) {
      const f = this.oneOf(obj.firmware, p("firmware"), FIRMWARES);
      if (f) s.firmware = f;
    }
    if ("delivery" in obj) {
      const d = this.oneOf(obj.delivery, p("delivery"), DELIVERIES);
      if (d) s.delivery = d;
    }
    if ("memory" in obj) {
      const m = parseSize(obj.memory as string | number);
      if (m === undefined || m === 0)
        this.err(p("memory"), `expected a size such as 512M or 2G, got ${JSON.stringify(obj.memory)}`);
      else if (m < MIN_MEMORY)
        this.err(
          p("memory"),
          `${JSON.stringify(obj.memory)} is ${m} bytes, less than any kernel boots in (a unit missing? e.g. 512M)`,
        );
      else if (m > MAX_MEMORY)
        this.err(p("memory"), `${JSON.stringify(obj.memory)} is more than a node can address (4 PiB)`);
      else s.memory = m;
    }
    if ("kexec" in obj) {
      const k = obj.kexec;
      if (!this.isObj(k)) this.err(p("kexec"), "expected a map with syscall and/or dir");
      else {
        this.keys(k, p("kexec"), ["syscall", "dir"]);
        s.kexec = {};
        if ("syscall" in k) {
          const sc = this.oneOf(k.syscall, p("kexec.syscall"), KEXEC_SYSCALLS);
          if (sc) s.kexec.syscall = sc;
        }
        if ("dir" in k) {
          const d = this.str(k.dir, p("kexec.dir"));
          if (d && !d.startsWith("/"))
            this.err(p("kexec.dir"), `must be an absolute path on the node, got "${d}"`);
          else if (d) s.kexec.dir = d;
        }
      }
    }
    if ("overlay" in obj) {
      const o = obj.overlay;
      if (!this.isObj(o)) this.err(p("overlay"), "expected a map of absolute path → file content");
      else {
        s.overlay = {};
        for (const [file, content] of Object.entries(o)) {
          if (!file.startsWith("/"))
            this.err(`${p("overlay")}.${file}`, `overlay paths must be absolute (write "/${file}")`);
          else if (this.printable(file, `${p("overlay")}.${JSON.stringify(file)}`) === undefined) {
            // reported
          } else if (file.endsWith("/") || posix.normalize(file) === "/" || file.split("/").includes(".."))
            this.err(
              `${p("overlay")}.${file}`,
              `an overlay path names a file (not a directory, not "..": "${file}")`,
            );
          else if (typeof content !== "string")
            this.err(`${p("overlay")}.${file}`, "file content must be a string");
          else if (this.templates(content, `${p("overlay")}.${file}`)) s.overlay[file] = content;
        }
      }
    }
    if ("payload" in obj) {
      const o = obj.payload;
      if (!this.isObj(o)) this.err(p("payload"), "expected a map with name and/or rom");
      else {
        this.keys(o, p("payload"), ["name", "rom"]);
        s.payload = {};
        if ("name" in o) {
          const n = this.str(o.name, p("payload.name"));
          if (n) s.payload.name = n;
        }
        if ("rom" in o) {
          const r = this.str(o.rom, p("payload.rom"));
          if (r) s.payload.rom = r;
        }
      }
    }
    if ("baseUrl" in obj) {
      const u = this.str(obj.baseUrl, p("baseUrl"));
      if (u) s.baseUrl = u.replace(/\/+$/, "");
    }
    return s;
  }
}

/** Validates a parsed cluster document; throws ECLUSTER listing every problem found. */
export function validateCluster(src: SourceDoc): ClusterDef {
  const v = new Validator(src);
  const top = src.value;
  if (!v.isObj(top))
    throw new BootcfgError("ECLUSTER", `${src.file}:1: expected a map with defaults, profiles and nodes`);
  v.keys(top, "", TOP_KEYS);
  if ("version" in top && top.version !== 1)
    v.err("version", `only version 1 is understood, got ${JSON.stringify(top.version)}`);
  const def: ClusterDef = { defaults: {}, profiles: new Map(), nodes: [] };
  if (typeof top.name === "string" && v.printable(top.name, "name") !== undefined) def.name = top.name;
  if ("defaults" in top) {
    if (!v.isObj(top.defaults)) v.err("defaults", "expected a map of settings");
    else {
      v.keys(top.defaults, "defaults", SETTING_KEYS);
      def.defaults = v.settings(top.defaults, "defaults");
    }
  }
  if ("profiles" in top) {
    if (!v.isObj(top.profiles)) v.err("profiles", "expected a map of profile name → settings");
    else
      for (const [name, body] of Object.entries(top.profiles)) {
        const path = `profiles.${name}`;
        if (v.printable(name, "profiles") === undefined) continue;
        if (!v.isObj(body)) {
          v.err(path, "expected a map of settings");
          continue;
        }
        v.keys(body, path, [...SETTING_KEYS, "include"]);
        const include = "include" in body ? (v.strList(body.include, `${path}.include`) ?? []) : [];
        def.profiles.set(name, { ...v.settings(body, path), include });
      }
  }
  const addNode = (body: unknown, path: string, index: number, key?: string) => {
    if (!v.isObj(body)) {
      v.err(path, "expected a map with name and settings");
      return;
    }
    v.keys(body, path, NODE_KEYS);
    const rawName = key ?? body.name ?? body.names;
    const names = v.str(rawName, key ? path : `${path}.name`);
    if (!names) return;
    const entry: NodeEntry = { names, profiles: [], index, path, ...v.settings(body, path) };
    if ("profiles" in body) entry.profiles = v.strList(body.profiles, `${path}.profiles`) ?? [];
    if ("exclude" in body) {
      const e = v.str(body.exclude, `${path}.exclude`);
      if (e) entry.exclude = e;
    }
    if ("ip" in body) {
      const ip = v.str(body.ip, `${path}.ip`);
      if (
        ip &&
        (!/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(ip) ||
          ip.split(".").some((b) => Number(b) > 255))
      )
        v.err(`${path}.ip`, `"${ip}" is not an IPv4 address`);
      else if (ip) entry.ip = ip;
    }
    if ("mac" in body) {
      const mac = v.str(body.mac, `${path}.mac`);
      if (mac && !/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(mac))
        v.err(`${path}.mac`, `"${mac}" is not a MAC address (write 52:54:00:12:34:56)`);
      else if (mac) entry.mac = mac.toLowerCase().replaceAll("-", ":");
    }
    def.nodes.push(entry);
  };
  if ("nodes" in top) {
    const n = top.nodes;
    if (Array.isArray(n)) {
      for (const [i, body] of n.entries()) addNode(body, `nodes.${i}`, i);
    } else if (v.isObj(n)) {
      for (const [i, [k, body]] of Object.entries(n).entries()) addNode(body ?? {}, `nodes.${k}`, i, k);
    } else v.err("nodes", "expected a list of node entries or a map of node range → settings");
  } else v.err("", 'no "nodes" key: a cluster file must list its nodes');
  for (const [name, p] of def.profiles)
    p.include.forEach((inc, i) => {
      if (!def.profiles.has(inc))
        v.err(
          `profiles.${name}.include.${i}`,
          `unknown profile "${inc}"${suggest(inc, [...def.profiles.keys()])}`,
        );
    });
  for (const e of def.nodes)
    e.profiles.forEach((p, i) => {
      if (!def.profiles.has(p))
        v.err(`${e.path}.profiles.${i}`, `unknown profile "${p}"${suggest(p, [...def.profiles.keys()])}`);
    });
  if (v.errors.length) throw new BootcfgError("ECLUSTER", v.errors.join("\n"));
  return def;
}
