// Reads the statfs configuration: the original `statfs.conf` (`name=address` lines) or the YAML/JSON
// form with node ranges, address patterns, labels and poll settings. Every error names the file, the
// line and (for YAML/JSON) the key, and all errors of a file are reported at once.

import { lookup } from "node:dns/promises";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { extname } from "node:path";
import { expandNodeList, NodeListError } from "@clustermatic/ninep/nodes";
import {
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type YAMLMap,
  type Node as YamlNode,
} from "yaml";

/** Port of xcpufs when an address names none. */
export const XCPUFS_PORT = 6667;

/** One configured node. */
export interface NodeConfig {
  /** Display name (first column of the `state` table). */
  name: string;
  /** The address exactly as written (second column of the `state` table). */
  address: string;
  host: string;
  port: number;
  /** Extra labels (rack, group…) exported to Prometheus and JSON. */
  labels: Record<string, string>;
  /** Where the node was defined, for messages: `file:line`. */
  origin: string;
}

/** How nodes are polled. Durations in milliseconds. */
export interface PollSettings {
  intervalMs: number;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  /** Polls (connects, reads) in flight at once. */
  concurrency: number;
  /** First retry delay for a node that is down; doubles per failure up to backoffMaxMs. */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** Also read each node's `procs` to count distinct jobs (costly on big nodes). */
  procs: boolean;
}

export interface Config {
  file: string;
  format: "statfs.conf" | "yaml" | "json";
  nodes: NodeConfig[];
  poll: PollSettings;
  /** Poll settings that the file set explicitly (command-line flags do not override them). */
  pollSet: Set<keyof PollSettings>;
}

export function defaultPoll(intervalMs = 5000): PollSettings {
  return {
    intervalMs,
    connectTimeoutMs: Math.min(2000, intervalMs),
    readTimeoutMs: Math.min(2000, intervalMs),
    concurrency: 128,
    backoffInitialMs: Math.min(1000, intervalMs),
    backoffMaxMs: intervalMs,
    procs: false,
  };
}

/** One problem in a configuration file. */
export interface ConfigIssue {
  file: string;
  line: number;
  key?: string;
  message: string;
}

/** A configuration file was rejected; `issues` lists every problem found. */
export class ConfigError extends Error {
  readonly code = "ESTATFS_CONFIG";
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    issues = [...issues].sort((a, b) => a.line - b.line);
    super(issues.map(formatIssue).join("\n"));
    this.name = "ConfigError";
    this.issues = issues;
  }
}

/** Longest message of one issue: a binary or one-line file must not come back whole. */
const MAX_ISSUE_TEXT = 300;

function formatIssue(i: ConfigIssue): string {
  const where = i.line > 0 ? `${i.file}:${i.line}` : i.file;
  return i.key ? `${where}: ${i.key}: ${printable(i.message)}` : `${where}: ${printable(i.message)}`;
}

/** What a file's bytes may show on a terminal: control characters escaped, cut short when long. */
function printable(text: string): string {
  let t = text.replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  if (t.length > MAX_ISSUE_TEXT) t = `${t.slice(0, MAX_ISSUE_TEXT)}… (${text.length} characters)`;
  return t;
}

export interface LoadOptions {
  /** Resolve host names now (as the original does) and reject names that do not resolve. Default true. */
  resolve?: boolean;
}

/** Reads and checks a configuration file. Throws ConfigError (or the fs error for a missing file). */
export async function loadConfig(file: string, opts: LoadOptions = {}): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code
      ? `${e.code} (${e.message.replace(/^\w+: /, "").replace(/, \w+ '.*'$/, "")})`
      : e.message;
    throw new ConfigError([{ file, line: 0, message: `cannot read: ${why}` }]);
  }
  const config = parseConfig(text, file);
  if (opts.resolve !== false) await checkResolvable(config);
  return config;
}

/** Parses configuration text; the format follows the file name (.yaml/.yml/.json) or else statfs.conf. */
export function parseConfig(text: string, file: string): Config {
  const ext = extname(file).toLowerCase();
  if (ext === ".yaml" || ext === ".yml") return parseStructured(text, file, "yaml");
  if (ext === ".json") return parseStructured(text, file, "json");
  return parseLegacy(text, file);
}

const NAME_RE = /^[^\s/#=]+$/;

function checkName(name: string): string | undefined {
  if (name === "") return "empty node name";
  if (name === "." || name === "..") return `node name "${name}" is not allowed`;
  if (!NAME_RE.test(name)) return `bad node name "${name}": no spaces, tabs, "/", "#" or "="`;
  if (Buffer.byteLength(name) > 255) return "node name longer than 255 bytes";
  return undefined;
}

/** Splits an xcpufs address into host and port: `[tcp!]host[!port]`, `host:port`, `[v6]:port`. */
export function splitAddress(address: string): { host: string; port: number } {
  const text = address.trim();
  if (text === "") throw new Error("empty address");
  if (/[\s\t]/.test(text)) throw new Error(`bad address "${address}": contains white space`);
  let host = text;
  let portText: string | undefined;
  if (text.includes("!")) {
    const parts = text.split("!");
    if (parts[0] === "tcp" || parts[0] === "net") parts.shift();
    if (parts.length > 2) throw new Error(`bad address "${address}": expected [tcp!]host[!port]`);
    host = parts[0] ?? "";
    portText = parts[1];
  } else if (text.startsWith("[")) {
    const m = /^\[([0-9A-Fa-f:.]+)\](?::(\d*))?$/.exec(text);
    if (!m) throw new Error(`bad address "${address}": bad IPv6 form`);
    host = m[1]!;
    portText = m[2];
  } else if ((text.match(/:/g) ?? []).length === 1) {
    const i = text.indexOf(":");
    host = text.slice(0, i);
    portText = text.slice(i + 1);
  }
  if (host === "") throw new Error(`bad address "${address}": empty host`);
  let port = XCPUFS_PORT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new Error(`invalid port format in "${address}"`);
    }
    port = Number(portText);
  }
  return { host, port };
}

/** The original format: `name=address` per line, `#` comments, blank lines. */
function parseLegacy(text: string, file: string): Config {
  const issues: ConfigIssue[] = [];
  const nodes: NodeConfig[] = [];
  const seen = new Map<string, number>();
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const lineNo = i + 1;
    let line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const hash = line.indexOf("#");
    if (hash >= 0) line = line.slice(0, hash);
    if (line.trim() === "") return;
    const eq = line.indexOf("=");
    if (eq < 0) {
      issues.push({ file, line: lineNo, message: `invalid format: ${line.trim()} (expected name=address)` });
      return;
    }
    const name = line.slice(0, eq).trimStart();
    const address = line.slice(eq + 1).trimEnd();
    const bad = checkName(name);
    if (bad) {
      issues.push({ file, line: lineNo, message: `${bad} (spaces around "=" are not allowed)` });
      return;
    }
    if (/^\s/.test(address)) {
      // (the original kept the space and then failed to resolve the address)
      issues.push({
        file,
        line: lineNo,
        message: `bad address "${address}" (spaces around "=" are not allowed)`,
      });
      return;
    }
    const first = seen.get(name);
    if (first !== undefined) {
      issues.push({ file, line: lineNo, message: `duplicate node name "${name}" (first at line ${first})` });
      return;
    }
    try {
      const { host, port } = splitAddress(address);
      seen.set(name, lineNo);
      nodes.push({ name, address, host, port, labels: {}, origin: `${file}:${lineNo}` });
    } catch (err) {
      issues.push({ file, line: lineNo, message: (err as Error).message });
    }
  });
  if (issues.length) throw new ConfigError(issues);
  return { file, format: "statfs.conf", nodes, poll: defaultPoll(), pollSet: new Set() };
}

/** Parses a duration: a number of seconds, or text like `500ms`, `5s`, `1m`. Returns milliseconds. */
export function parseDuration(value: unknown): number {
  let ms: number | undefined;
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) ms = Math.round(value * 1000);
  if (typeof value === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
    if (m) {
      const n = Number(m[1]);
      const unit = m[2] ?? "s";
      const mult = unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000;
      ms = Math.round(n * mult);
    }
  }
  if (ms === undefined) {
    throw new Error(
      `expected a duration like 5s, 500ms or a number of seconds, got ${JSON.stringify(value)}`,
    );
  }
  // Timers take at most 2^31 - 1 ms; a longer one would fire at once (and 1e308 s is Infinity).
  if (!(ms <= MAX_DURATION_MS)) throw new Error(`duration ${JSON.stringify(value)} is longer than 24 days`);
  return ms;
}

/** The longest duration statfs takes (the largest timer delay Node honours), in milliseconds. */
export const MAX_DURATION_MS = 2 ** 31 - 1;

const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const RESERVED_LABELS = new Set(["node", "address", "arch", "status", "le", "quantile"]);

const POLL_KEYS: Record<string, keyof PollSettings | "backoff"> = {
  interval: "intervalMs",
  connectTimeout: "connectTimeoutMs",
  readTimeout: "readTimeoutMs",
  concurrency: "concurrency",
  backoff: "backoff",
  procs: "procs",
};

/**
 * Substitutes placeholders in an address or label pattern for one node name:
 * `{name}`, `{num}` (the name's last number as written), `{n}` (its value), `{n+K}` / `{n-K}`.
 */
export function expandPattern(pattern: string, name: string): string {
  const m = /(\d+)(?!.*\d)/.exec(name);
  return pattern.replace(/\{([a-z]+)(?:([+-])(\d+))?\}/g, (whole, key: string, sign?: string, k?: string) => {
    if (key === "name" && !sign) return name;
    if (key === "num" && !sign) {
      if (!m) throw new Error(`"${whole}" needs a number in the node name "${name}"`);
      return m[1]!;
    }
    if (key === "n") {
      if (!m) throw new Error(`"${whole}" needs a number in the node name "${name}"`);
      const base = Number(m[1]);
      const off = k ? Number(k) : 0;
      return String(sign === "-" ? base - off : base + off);
    }
    throw new Error(`unknown placeholder ${whole} (use {name}, {num}, {n}, {n+K})`);
  });
}

function parseStructured(text: string, file: string, format: "yaml" | "json"): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false, strict: true });
  const issues: ConfigIssue[] = [];
  const lineOf = (node: YamlNode | null | undefined): number =>
    node?.range ? lc.linePos(node.range[0]).line : 0;
  // Report the first syntax error only: the ones after it are mostly its consequences.
  for (const e of doc.errors.slice(0, 1)) {
    issues.push({ file, line: lc.linePos(e.pos[0]).line, message: e.message.split("\n")[0] ?? e.message });
  }
  if (issues.length) throw new ConfigError(issues);
  const root = doc.contents;
  if (!isMap(root)) {
    throw new ConfigError([{ file, line: lineOf(root), message: "expected a mapping with a `nodes` list" }]);
  }
  const poll = defaultPoll();
  const pollSet = new Set<keyof PollSettings>();
  let defaultPort = XCPUFS_PORT;
  let defaultLabels: Record<string, string> = {};
  const nodes: NodeConfig[] = [];
  const seen = new Map<string, string>();

  const scalar = (node: unknown): unknown => (isScalar(node) ? node.value : undefined);
  const pairs = (map: YAMLMap) =>
    map.items.map((p) => ({
      key: String(scalar(p.key)),
      keyNode: p.key as YamlNode,
      value: p.value as YamlNode | null,
    }));

  const readLabels = (node: YamlNode | null, path: string): Record<string, string> | undefined => {
    if (!isMap(node)) {
      issues.push({
        file,
        line: lineOf(node),
        key: path,
        message: "expected a mapping of label names to values",
      });
      return undefined;
    }
    const out: Record<string, string> = {};
    for (const { key, keyNode, value } of pairs(node)) {
      const v = scalar(value);
      if (!LABEL_RE.test(key) || RESERVED_LABELS.has(key) || key.startsWith("__")) {
        issues.push({
          file,
          line: lineOf(keyNode),
          key: `${path}.${key}`,
          message: "bad label name (letters, digits, _; not node/address/arch/status)",
        });
      } else if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
        issues.push({
          file,
          line: lineOf(value ?? keyNode),
          key: `${path}.${key}`,
          message: "label value must be a string or number",
        });
      } else out[key] = String(v);
    }
    return out;
  };

  let nodesNode: YamlNode | null = null;
  let nodesKeyLine = 0;
  for (const { key, keyNode, value } of pairs(root)) {
    if (key === "nodes") {
      nodesNode = value;
      nodesKeyLine = lineOf(keyNode);
    } else if (key === "poll") {
      if (!isMap(value)) {
        issues.push({ file, line: lineOf(value ?? keyNode), key: "poll", message: "expected a mapping" });
        continue;
      }
      for (const p of pairs(value)) {
        const path = `poll.${p.key}`;
        const target = POLL_KEYS[p.key];
        const line = lineOf(p.value ?? p.keyNode);
        try {
          if (!target) throw new Error(`unknown key (known: ${Object.keys(POLL_KEYS).join(", ")})`);
          if (target === "backoff") {
            if (!isMap(p.value)) throw new Error("expected a mapping with initial and max");
            for (const b of pairs(p.value)) {
              const bl = lineOf(b.value ?? b.keyNode);
              try {
                if (b.key === "initial") poll.backoffInitialMs = positive(parseDuration(scalar(b.value)));
                else if (b.key === "max") poll.backoffMaxMs = positive(parseDuration(scalar(b.value)));
                else throw new Error("unknown key (known: initial, max)");
                pollSet.add(b.key === "initial" ? "backoffInitialMs" : "backoffMaxMs");
              } catch (err) {
                issues.push({ file, line: bl, key: `${path}.${b.key}`, message: (err as Error).message });
              }
            }
            continue;
          }
          const v = scalar(p.value);
          if (target === "concurrency") {
            if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65536) {
              throw new Error("expected an integer from 1 to 65536");
            }
            poll.concurrency = v;
          } else if (target === "procs") {
            if (typeof v !== "boolean") throw new Error("expected true or false");
            poll.procs = v;
          } else {
            poll[target] = positive(parseDuration(v));
          }
          pollSet.add(target);
        } catch (err) {
          issues.push({ file, line, key: path, message: (err as Error).message });
        }
      }
    } else if (key === "defaults") {
      if (!isMap(value)) {
        issues.push({ file, line: lineOf(value ?? keyNode), key: "defaults", message: "expected a mapping" });
        continue;
      }
      for (const d of pairs(value)) {
        const line = lineOf(d.value ?? d.keyNode);
        if (d.key === "port") {
          const v = scalar(d.value);
          if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) {
            issues.push({ file, line, key: "defaults.port", message: "expected a port number 1-65535" });
          } else defaultPort = v;
        } else if (d.key === "labels") {
          defaultLabels = readLabels(d.value, "defaults.labels") ?? {};
        } else {
          issues.push({ file, line, key: `defaults.${d.key}`, message: "unknown key (known: port, labels)" });
        }
      }
    } else {
      issues.push({
        file,
        line: lineOf(keyNode),
        key,
        message: "unknown key (known: nodes, poll, defaults)",
      });
    }
  }
  if (!pollSet.has("backoffMaxMs")) poll.backoffMaxMs = poll.intervalMs;
  if (!pollSet.has("backoffInitialMs")) poll.backoffInitialMs = Math.min(1000, poll.intervalMs);
  if (!pollSet.has("connectTimeoutMs")) poll.connectTimeoutMs = Math.min(2000, poll.intervalMs);
  if (!pollSet.has("readTimeoutMs")) poll.readTimeoutMs = Math.min(2000, poll.intervalMs);

  if (nodesNode === null) {
    issues.push({ file, line: nodesKeyLine, key: "nodes", message: "missing: list the nodes to poll" });
  } else if (!isSeq(nodesNode)) {
    issues.push({ file, line: lineOf(nodesNode) || nodesKeyLine, key: "nodes", message: "expected a list" });
  } else {
    nodesNode.items.forEach((item, idx) => {
      const path = `nodes[${idx}]`;
      const itemNode = item as YamlNode;
      const itemLine = lineOf(itemNode);
      let nameSpec: string | undefined;
      let addrPattern: string | undefined;
      let addrLine = itemLine;
      let labels: Record<string, string> = {};
      if (isScalar(itemNode) && typeof itemNode.value === "string") {
        nameSpec = itemNode.value;
      } else if (isMap(itemNode)) {
        for (const f of pairs(itemNode)) {
          const line = lineOf(f.value ?? f.keyNode);
          const v = scalar(f.value);
          if (f.key === "name") {
            if (typeof v !== "string" || v === "")
              issues.push({
                file,
                line,
                key: `${path}.name`,
                message: "expected a node name or range like n[01-16]",
              });
            else nameSpec = v;
          } else if (f.key === "address") {
            if (typeof v !== "string" || v === "")
              issues.push({
                file,
                line,
                key: `${path}.address`,
                message: "expected an address or pattern like tcp!10.0.0.{n}!6667",
              });
            else {
              addrPattern = v;
              addrLine = line;
            }
          } else if (f.key === "labels") {
            labels = readLabels(f.value, `${path}.labels`) ?? {};
          } else {
            issues.push({
              file,
              line: lineOf(f.keyNode),
              key: `${path}.${f.key}`,
              message: "unknown key (known: name, address, labels)",
            });
          }
        }
        if (nameSpec === undefined && !issues.some((i) => i.key === `${path}.name`)) {
          issues.push({ file, line: itemLine, key: `${path}.name`, message: "missing" });
        }
      } else {
        issues.push({
          file,
          line: itemLine,
          key: path,
          message: "expected a node name or a mapping with name, address, labels",
        });
      }
      if (nameSpec === undefined) return;
      let names: string[];
      try {
        names = expandNodeList(nameSpec, { maxNodes: 100_000 });
        if (names.length === 0) throw new Error(`"${nameSpec}" expands to no node`);
      } catch (err) {
        const msg = err instanceof NodeListError ? err.message : (err as Error).message;
        issues.push({ file, line: itemLine, key: `${path}.name`, message: msg });
        return;
      }
      for (const name of names) {
        const bad = checkName(name);
        if (bad) {
          issues.push({ file, line: itemLine, key: `${path}.name`, message: bad });
          return;
        }
        const first = seen.get(name);
        if (first !== undefined) {
          issues.push({
            file,
            line: itemLine,
            key: `${path}.name`,
            message: `duplicate node name "${name}" (first at ${first})`,
          });
          return;
        }
        let address: string;
        let host: string;
        let port: number;
        const nodeLabels: Record<string, string> = {};
        try {
          address =
            addrPattern === undefined ? `tcp!${name}!${defaultPort}` : expandPattern(addrPattern, name);
          if (addrPattern !== undefined && !/!|:/.test(address.replace(/^tcp!/, ""))) {
            // No port given: apply defaults.port, keeping the address text as written.
            ({ host } = splitAddress(address));
            port = defaultPort;
          } else ({ host, port } = splitAddress(address));
          for (const [k, v] of Object.entries({ ...defaultLabels, ...labels }))
            nodeLabels[k] = expandPattern(v, name);
        } catch (err) {
          issues.push({ file, line: addrLine, key: `${path}.address`, message: (err as Error).message });
          return;
        }
        seen.set(name, `${file}:${itemLine}`);
        nodes.push({ name, address, host, port, labels: nodeLabels, origin: `${file}:${itemLine}` });
      }
    });
  }
  if (issues.length === 0 && nodes.length === 0) {
    issues.push({ file, line: nodesKeyLine, key: "nodes", message: "no nodes configured" });
  }
  if (issues.length) throw new ConfigError(issues);
  checkPoll(poll, file, issues);
  if (issues.length) throw new ConfigError(issues);
  return { file, format, nodes, poll, pollSet };
}

function positive(ms: number): number {
  if (!(ms > 0)) throw new Error("must be greater than zero");
  return ms;
}

/** Cross-checks poll settings; pushes an issue per inconsistency. */
export function checkPoll(poll: PollSettings, file: string, issues: ConfigIssue[]): void {
  if (poll.backoffInitialMs > poll.backoffMaxMs) {
    issues.push({ file, line: 0, key: "poll.backoff", message: "initial is larger than max" });
  }
  if (poll.connectTimeoutMs > poll.intervalMs || poll.readTimeoutMs > poll.intervalMs) {
    issues.push({
      file,
      line: 0,
      key: "poll",
      message: "connectTimeout and readTimeout must not exceed interval",
    });
  }
}

/** Checks that every host name resolves (IP literals are not looked up). */
async function checkResolvable(config: Config): Promise<void> {
  const hosts = new Map<string, NodeConfig>();
  for (const n of config.nodes) if (!isIP(n.host) && !hosts.has(n.host)) hosts.set(n.host, n);
  const issues: ConfigIssue[] = [];
  const list = [...hosts.values()];
  // A bounded number of lookups at a time: the system resolver runs on libuv's small thread pool.
  for (let i = 0; i < list.length; i += 16) {
    await Promise.all(
      list.slice(i, i + 16).map(async (n) => {
        try {
          await lookup(n.host);
        } catch {
          const [f, line] = splitOrigin(n.origin);
          issues.push({ file: f, line, message: `${n.address} is not resolvable to a host address` });
        }
      }),
    );
  }
  if (issues.length) throw new ConfigError(issues.sort((a, b) => a.line - b.line));
}

function splitOrigin(origin: string): [string, number] {
  const i = origin.lastIndexOf(":");
  return [origin.slice(0, i), Number(origin.slice(i + 1))];
}
