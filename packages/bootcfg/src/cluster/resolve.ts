// Merges defaults → profiles → node entries into one resolved configuration per node, keeping
// where every value came from.
import { dirname, isAbsolute, resolve as resolvePath } from "node:path";
import { expandNodeList, NodeListError } from "@clustermatic/ninep/nodes";
import { BootcfgError } from "../errors.js";
import { sha256 } from "../util.js";
import type { Arch, ClusterDef, Delivery, Firmware, NodeEntry, Settings } from "./schema.js";
import { TEMPLATE, validateCluster } from "./schema.js";
import { parseSource, readSource, type SourceDoc } from "./source.js";

/** Where a value came from: "cluster.yaml:12 profiles.compute.arch". */
export type Origin = string;

export interface CmdlineToken {
  token: string;
  origin: Origin;
}

export interface ResolvedNode {
  name: string;
  arch: Arch;
  kernel: { path: string; format?: string };
  initrds: string[];
  cmdline: string[];
  firmware: Firmware;
  delivery: Delivery;
  memory?: number;
  ip?: string;
  mac?: string;
  kexec: { syscall: "kexec_load" | "kexec_file_load"; dir: string };
  overlay: Record<string, string>;
  payload: { name: string; rom?: string };
  baseUrl?: string;
  /** Profiles applied, in order (includes expanded). */
  profiles: string[];
  /** Origin of each field (dotted key, e.g. "kernel", "overlay./etc/hostname"). */
  origins: Record<string, Origin>;
  cmdlineOrigins: Origin[];
}

const DEFAULTS = {
  arch: "x86_64" as Arch,
  firmware: "bios" as Firmware,
  delivery: "kexec" as Delivery,
  kexec: { syscall: "kexec_load" as const, dir: "/boot/bootcfg" },
  payload: { name: "fallback/payload" },
};
const BUILTIN: Origin = "(built-in default)";

function ipValue(ip: string): number {
  const parts = ip.split(".").map(Number);
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

function ipAdd(ip: string, n: number): string {
  let v = ipValue(ip) + n;
  const out: number[] = [];
  for (let i = 0; i < 4; i++) {
    out.unshift(v & 255);
    v = Math.floor(v / 256);
  }
  return out.join(".");
}

function macValue(mac: string): number {
  return Number.parseInt(mac.replaceAll(":", ""), 16); // 48 bits: exact in a double
}

function macAdd(mac: string, n: number): string {
  let v = macValue(mac) + n;
  const out: string[] = [];
  for (let i = 0; i < 6; i++) {
    out.unshift((v % 256).toString(16).padStart(2, "0"));
    v = Math.floor(v / 256);
  }
  return out.join(":");
}

/** Key of a command-line token: "console" for "console=ttyS0", the flag itself otherwise. */
export function cmdlineKey(token: string): string {
  const t = token.replace(/^[+-]/, "");
  const eq = t.indexOf("=");
  return eq < 0 ? t : t.slice(0, eq);
}

/**
 * Applies one layer of command-line tokens: `key=value` replaces an earlier token with the same
 * key (in place), `+key=value` appends even if the key is present, `-key` removes every token
 * with that key, a bare flag is appended once.
 */
export function applyCmdline(base: CmdlineToken[], layer: readonly string[], origin: Origin): CmdlineToken[] {
  let out = [...base];
  for (const raw of layer) {
    if (raw.startsWith("-") && raw.length > 1) {
      const key = cmdlineKey(raw);
      out = out.filter((t) => cmdlineKey(t.token) !== key);
    } else if (raw.startsWith("+") && raw.length > 1) {
      out.push({ token: raw.slice(1), origin });
    } else {
      const key = cmdlineKey(raw);
      const i = out.findIndex((t) => cmdlineKey(t.token) === key);
      if (i >= 0) out[i] = { token: raw, origin };
      else out.push({ token: raw, origin });
    }
  }
  return out;
}

/** Fills `{{var}}`; a variable the node has no value for (no ip, mac or profile) is an error, not "". */
function render(template: string, vars: Record<string, string>, node: string, where: string): string {
  return template.replace(TEMPLATE, (m, k: string) => {
    const v = vars[k];
    if (v === undefined) return m;
    if (v === "")
      throw new BootcfgError(
        "ECLUSTER",
        `${node}: ${where} uses {{${k}}}, but the node has no ${k} (${k === "profile" ? 'list one in its "profiles:"' : `set "${k}:" on its node entry`})`,
      );
    return v;
  });
}

export class Cluster {
  readonly file: string;
  readonly dir: string;
  readonly def: ClusterDef;
  readonly src: SourceDoc;
  readonly sha256: string;
  private readonly entriesByNode = new Map<string, Array<{ entry: NodeEntry; position: number }>>();
  private readonly order: string[] = [];
  private readonly chains = new Map<string, string[]>();

  private constructor(src: SourceDoc) {
    this.src = src;
    this.file = src.file;
    this.dir = dirname(resolvePath(src.file));
    this.def = validateCluster(src);
    this.sha256 = sha256(Buffer.from(src.text));
    for (const entry of this.def.nodes) {
      let names: string[];
      let excluded = new Set<string>();
      try {
        names = expandNodeList(entry.names);
        if (entry.exclude) excluded = new Set(expandNodeList(entry.exclude));
        // A reversed range (n[3-1]) names nobody: a mistake, not an empty cluster that checks fine.
        if (names.length === 0) throw new NodeListError(entry.names, "it names no node");
      } catch (err) {
        const line = this.src.lines.get(entry.path) ?? 1;
        const detail = err instanceof NodeListError ? err.message : String(err);
        throw new BootcfgError("ECLUSTER", `${this.file}:${line}: ${entry.path}: ${detail}`);
      }
      // A node's place in the range, excluded names included: n08 of n[01-16] is +7 whether or
      // not n07 is excluded, so excluding a node does not move the addresses of those after it.
      let last = -1;
      let count = 0;
      for (const [position, n] of names.entries()) {
        if (excluded.has(n)) continue;
        last = position;
        count++;
        // A node's name is a directory name in `render` output and in `serve`'s tree.
        if (n === "." || n === "..")
          throw new BootcfgError(
            "ECLUSTER",
            `${this.file}:${this.src.lines.get(entry.path) ?? 1}: ${entry.path}: "${n}" cannot be a node name (it names a directory, not a node, in render output and in serve's tree)`,
          );
        let list = this.entriesByNode.get(n);
        if (!list) {
          list = [];
          this.entriesByNode.set(n, list);
          this.order.push(n);
        }
        list.push({ entry, position });
      }
      // The first address plus each node's place: the last node's must still be an address.
      const overflow = (key: "ip" | "mac", value: string, max: number, next: number) => {
        if (next <= max) return;
        const line = this.src.lines.get(`${entry.path}.${key}`) ?? this.src.lines.get(entry.path) ?? 1;
        throw new BootcfgError(
          "ECLUSTER",
          `${this.file}:${line}: ${entry.path}.${key}: ${value} + ${last} (for ${count === last + 1 ? `${count} nodes` : `${names[last]}, name ${last + 1} of ${names.length}`}) passes the last ${key === "ip" ? "IPv4" : "MAC"} address`,
        );
      };
      if (entry.ip && last > 0) overflow("ip", entry.ip, 0xffffffff, ipValue(entry.ip) + last);
      if (entry.mac && last > 0) overflow("mac", entry.mac, 0xffffffffffff, macValue(entry.mac) + last);
    }
  }

  static load(path: string): Cluster {
    return new Cluster(readSource(path));
  }

  static parse(text: string, file: string): Cluster {
    return new Cluster(parseSource(text, file));
  }

  /** Node names in file order. */
  nodes(): string[] {
    return [...this.order];
  }

  has(node: string): boolean {
    return this.entriesByNode.has(node);
  }

  /** Resolves a path from the cluster file relative to the file's directory. */
  path(p: string): string {
    return isAbsolute(p) ? p : resolvePath(this.dir, p);
  }

  private origin(path: string): Origin {
    return `${this.file}:${this.src.lines.get(path) ?? 1} ${path}`;
  }

  private profileChain(names: readonly string[], seen: string[] = []): string[] {
    const out: string[] = [];
    for (const n of names) {
      if (seen.includes(n))
        throw new BootcfgError(
          "ECLUSTER",
          `${this.file}:${this.src.lines.get(`profiles.${n}`) ?? 1}: profiles.${n}: include cycle ${[...seen, n].join(" → ")}`,
        );
      const p = this.def.profiles.get(n);
      if (!p) continue;
      for (const inc of this.profileChain(p.include, [...seen, n])) if (!out.includes(inc)) out.push(inc);
      if (!out.includes(n)) out.push(n);
    }
    return out;
  }

  resolve(node: string): ResolvedNode {
    const entries = this.entriesByNode.get(node);
    if (!entries) {
      const near = this.order.filter((n) => n.startsWith(node.replace(/\d+$/, ""))).slice(0, 3);
      throw new BootcfgError(
        "ENODE",
        `${node}: no such node in ${this.file}${near.length ? ` (nodes there include ${near.join(", ")}…)` : ""}`,
      );
    }
    const origins: Record<string, Origin> = {};
    const out = {
      name: node,
      arch: DEFAULTS.arch,
      kernel: undefined as ResolvedNode["kernel"] | undefined,
      initrds: [] as string[],
      firmware: DEFAULTS.firmware,
      delivery: DEFAULTS.delivery,
      memory: undefined as number | undefined,
      kexec: { ...DEFAULTS.kexec } as ResolvedNode["kexec"],
      overlay: {} as Record<string, string>,
      payload: { ...DEFAULTS.payload } as ResolvedNode["payload"],
      baseUrl: undefined as string | undefined,
    };
    for (const k of ["arch", "firmware", "delivery", "kexec.syscall", "kexec.dir", "payload.name"])
      origins[k] = BUILTIN;
    let cmdline: CmdlineToken[] = [];
    const apply = (s: Settings, path: string) => {
      const at = (k: string) => this.origin(path ? `${path}.${k}` : k);
      if (s.arch) {
        out.arch = s.arch;
        origins.arch = at("arch");
      }
      if (s.kernel) {
        out.kernel = { ...s.kernel };
        origins.kernel = at("kernel");
      }
      if (s.initrds) {
        out.initrds = [...s.initrds];
        origins.initrds = at("initrds");
      }
      if (s.firmware) {
        out.firmware = s.firmware;
        origins.firmware = at("firmware");
      }
      if (s.delivery) {
        out.delivery = s.delivery;
        origins.delivery = at("delivery");
      }
      if (s.memory !== undefined) {
        out.memory = s.memory;
        origins.memory = at("memory");
      }
      if (s.baseUrl) {
        out.baseUrl = s.baseUrl;
        origins.baseUrl = at("baseUrl");
      }
      if (s.kexec?.syscall) {
        out.kexec.syscall = s.kexec.syscall;
        origins["kexec.syscall"] = at("kexec.syscall");
      }
      if (s.kexec?.dir) {
        out.kexec.dir = s.kexec.dir;
        origins["kexec.dir"] = at("kexec.dir");
      }
      if (s.payload?.name) {
        out.payload.name = s.payload.name;
        origins["payload.name"] = at("payload.name");
      }
      if (s.payload?.rom) {
        out.payload.rom = s.payload.rom;
        origins["payload.rom"] = at("payload.rom");
      }
      for (const [f, c] of Object.entries(s.overlay ?? {})) {
        out.overlay[f] = c;
        origins[`overlay.${f}`] = at(`overlay.${f}`);
      }
      if (s.cmdline) cmdline = applyCmdline(cmdline, s.cmdline, at("cmdline"));
    };
    apply(this.def.defaults, "defaults");
    const named = entries.flatMap((e) => e.entry.profiles);
    const chainKey = named.join("\0");
    let profiles = this.chains.get(chainKey);
    if (!profiles) {
      profiles = this.profileChain(named);
      this.chains.set(chainKey, profiles);
    }
    for (const p of profiles) apply(this.def.profiles.get(p)!, `profiles.${p}`);
    let ip: string | undefined;
    let mac: string | undefined;
    for (const { entry, position } of entries) {
      apply(entry, entry.path);
      const step = position ? ` +${position}` : "";
      if (entry.ip) {
        ip = ipAdd(entry.ip, position);
        origins.ip = `${this.origin(`${entry.path}.ip`)}${step}`;
      }
      if (entry.mac) {
        mac = macAdd(entry.mac, position);
        origins.mac = `${this.origin(`${entry.path}.mac`)}${step}`;
      }
    }
    if (!out.kernel) {
      const first = entries[0]!.entry;
      throw new BootcfgError(
        "ECLUSTER",
        `${this.file}:${this.src.lines.get(first.path) ?? 1}: ${node}: no kernel set (add "kernel:" to the node, one of its profiles or defaults)`,
      );
    }
    const vars: Record<string, string> = {
      node,
      arch: out.arch,
      ip: ip ?? "",
      mac: mac ?? "",
      profile: profiles.at(-1) ?? "",
    };
    const resolved: ResolvedNode = {
      ...out,
      kernel: out.kernel,
      cmdline: cmdline.map((t) => render(t.token, vars, node, `cmdline "${t.token}" (${t.origin})`)),
      cmdlineOrigins: cmdline.map((t) => t.origin),
      overlay: Object.fromEntries(
        Object.entries(out.overlay).map(([f, c]) => [f, render(c, vars, node, `overlay ${f}`)]),
      ),
      profiles,
      origins,
    };
    if (out.memory === undefined) delete resolved.memory;
    if (out.baseUrl === undefined) delete resolved.baseUrl;
    if (ip) resolved.ip = ip;
    if (mac) resolved.mac = mac;
    return resolved;
  }

  resolveAll(): ResolvedNode[] {
    return this.order.map((n) => this.resolve(n));
  }
}
