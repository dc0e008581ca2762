// Node lists ("nodesets") as every cluster tool takes them: `n[01-16],n20,10.0.0.5!7000,tcp!fe!6667`.
// Compatible with the original libxcpu syntax, plus what it got wrong or lacked: zero padding is kept
// (`n[01-03]` → n01 n02 n03), letter ranges (`rack[a-c]`), lists inside brackets (`n[1-3,7]`), several
// bracket groups (`r[1-2]n[1-2]`), and `tcp!host!port` elements.

import { NinepError } from "../errors.js";

/** A node list could not be parsed. `element` is the offending comma-separated part. */
export class NodeListError extends NinepError {
  readonly element: string;
  constructor(element: string, detail?: string) {
    super(
      "E9P_NODELIST",
      `syntax error: '${element}' not a valid node description${detail ? ` (${detail})` : ""}`,
    );
    this.element = element;
  }
}

/** One node: its display name as typed and the dial string derived from it. */
export interface NodeSpec {
  name: string;
  host: string;
  port: number;
  /** Plan 9 dial string, `tcp!host!port`. */
  address: string;
}

export interface NodeListOptions {
  /** Port used when an element names none (xcpufs: 6667). */
  defaultPort?: number;
  /** Refuse lists that expand to more names than this (default 100,000). */
  maxNodes?: number;
  /**
   * Keep a name each time it is listed (`n1,n1` is two nodes), as the original launcher did to
   * run several copies on one node. By default a name listed again is left out.
   */
  keepDuplicates?: boolean;
}

const DEFAULT_MAX = 100_000;

/** Splits on commas that are not inside brackets. */
function splitTopLevel(spec: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i];
    if (c === "[") {
      if (depth > 0) throw new NodeListError(spec, "nested brackets");
      depth++;
    } else if (c === "]") {
      if (depth === 0) throw new NodeListError(spec, "unmatched ]");
      depth--;
    } else if (c === "," && depth === 0) {
      parts.push(spec.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new NodeListError(spec, "unmatched [");
  parts.push(spec.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p.length > 0);
}

/**
 * Expands the inside of one bracket group: `01-16`, `1-3,7`, `a-c`. Refuses more than `budget`
 * names before making them (`n[1-100000000]` must not build a hundred million strings first).
 */
function expandGroup(element: string, inner: string, budget: number): string[] {
  const out: string[] = [];
  for (const raw of inner.split(",")) {
    const item = raw.trim();
    if (item === "") continue;
    const num = /^(\d+)(?:-(\d+))?$/.exec(item);
    if (num) {
      const loText = num[1]!;
      const hiText = num[2] ?? loText;
      const lo = Number(loText);
      const hi = Number(hiText);
      // A leading zero asks for fixed-width names, as wide as the wider bound.
      const width = loText.length > 1 && loText.startsWith("0") ? Math.max(loText.length, hiText.length) : 0;
      if (hi >= lo && out.length + (hi - lo + 1) > budget)
        throw new NodeListError(element, "expands to too many nodes");
      for (let n = lo; n <= hi; n++) out.push(width ? String(n).padStart(width, "0") : String(n));
      continue;
    }
    const letters = /^([a-zA-Z])-([a-zA-Z])$/.exec(item);
    if (letters) {
      const lo = letters[1]!.charCodeAt(0);
      const hi = letters[2]!.charCodeAt(0);
      const sameCase = lo >= 97 === hi >= 97;
      if (!sameCase) throw new NodeListError(element, `letter range ${item} mixes cases`);
      for (let c = lo; c <= hi; c++) out.push(String.fromCharCode(c));
      continue;
    }
    if (/^[a-zA-Z]$/.test(item)) {
      out.push(item);
      continue;
    }
    throw new NodeListError(element, `bad range '${item}'`);
  }
  return out;
}

const NAME_CHARS = /^[A-Za-z0-9._:\-![\]]+$/;

/** Expands one element (no top-level commas) into names. */
function expandElement(element: string, budget: number): string[] {
  // `[::1]:6667`, `[::1]!6667`, `tcp![::1]!6667`: brackets around an IPv6 address (it has colons,
  // which no range has), not a range.
  if (/^(?:(?:tcp|net)!)?\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\](?:[:!]\d+)?$/.test(element)) return [element];
  if (!NAME_CHARS.test(element.replace(/\[[^\]]*\]/g, ""))) throw new NodeListError(element);
  let names = [""];
  let rest = element;
  while (rest.length > 0) {
    const open = rest.indexOf("[");
    if (open < 0) {
      names = names.map((n) => n + rest);
      break;
    }
    const close = rest.indexOf("]", open);
    const prefix = rest.slice(0, open);
    const group = expandGroup(element, rest.slice(open + 1, close), budget);
    const next: string[] = [];
    for (const n of names) {
      for (const g of group) {
        next.push(n + prefix + g);
        if (next.length > budget) throw new NodeListError(element, "expands to too many nodes");
      }
    }
    names = next;
    rest = rest.slice(close + 1);
  }
  return names;
}

/**
 * Expands a node list into names, in order, duplicates kept out (first occurrence wins) unless
 * `keepDuplicates`.
 */
export function expandNodeList(spec: string, opts: NodeListOptions = {}): string[] {
  const max = opts.maxNodes ?? DEFAULT_MAX;
  const seen = new Set<string>();
  const out: string[] = [];
  for (const element of splitTopLevel(spec)) {
    for (const name of expandElement(element, max - out.length)) {
      if (seen.has(name) && !opts.keepDuplicates) continue;
      seen.add(name);
      out.push(name);
      if (out.length > max) throw new NodeListError(element, "expands to too many nodes");
    }
  }
  return out;
}

/**
 * Splits one node name into host and port. Accepted: `host`, `host!port`, `tcp!host!port`,
 * `net!host!port`, `host:port`, `[v6addr]:port`, `[v6addr]`; in the `!` forms an IPv6 host may be
 * written with or without brackets (`[::1]!port`, `::1!port`).
 */
export function splitNodeName(name: string, defaultPort = 6667): NodeSpec {
  let host = name;
  let portText: string | undefined;
  if (name.includes("!")) {
    const parts = name.split("!");
    if (parts.length === 3 && (parts[0] === "tcp" || parts[0] === "net")) parts.shift();
    if (parts.length !== 2 || !parts[0]) throw new NodeListError(name, "expected host!port");
    host = parts[0];
    portText = parts[1];
    const v6 = /^\[([0-9A-Fa-f:.]+)\]$/.exec(host);
    if (v6) host = v6[1]!;
    else if (host.includes("[") || host.includes("]")) throw new NodeListError(name, "bad IPv6 address");
  } else if (name.startsWith("[")) {
    const m = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(name);
    if (!m) throw new NodeListError(name, "bad IPv6 address");
    host = m[1]!;
    portText = m[2];
  } else if ((name.match(/:/g) ?? []).length === 1) {
    const i = name.indexOf(":");
    host = name.slice(0, i);
    portText = name.slice(i + 1);
  }
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535 || Number(portText) === 0) {
      throw new NodeListError(name, "invalid port format");
    }
    port = Number(portText);
  }
  if (!host) throw new NodeListError(name, "empty host");
  return { name, host, port, address: `tcp!${host}!${port}` };
}

/** Expands a node list and derives each node's address. */
export function parseNodeList(spec: string, opts: NodeListOptions = {}): NodeSpec[] {
  return expandNodeList(spec, opts).map((n) => splitNodeName(n, opts.defaultPort));
}

/**
 * The inverse of expansion, for display: consecutive numbered names with the same prefix, suffix
 * and width fold into one range (`n01,n02,n03,x` → `n[01-03],x`). Order of first appearance is kept.
 */
export function compressNodeList(names: readonly string[]): string {
  type Run = { prefix: string; suffix: string; width: number; nums: number[] };
  const runs: (Run | string)[] = [];
  const open = new Map<string, Run>();
  for (const name of names) {
    const m = /^(.*?)(\d+)([^\d]*)$/.exec(name);
    if (!m) {
      runs.push(name);
      continue;
    }
    const [, prefix = "", digits = "", suffix = ""] = m;
    const width = digits.length > 1 && digits.startsWith("0") ? digits.length : 0;
    const key = `${prefix}\0${suffix}\0${width}`;
    let run = open.get(key);
    if (!run) {
      run = { prefix, suffix, width, nums: [] };
      open.set(key, run);
      runs.push(run);
    }
    run.nums.push(Number(digits));
  }
  const fmt = (n: number, width: number) => (width ? String(n).padStart(width, "0") : String(n));
  return runs
    .map((r) => {
      if (typeof r === "string") return r;
      if (r.nums.length === 1) return `${r.prefix}${fmt(r.nums[0]!, r.width)}${r.suffix}`;
      const sorted = [...new Set(r.nums)].sort((a, b) => a - b);
      const pieces: string[] = [];
      for (let i = 0; i < sorted.length; ) {
        let j = i;
        while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
        pieces.push(
          i === j ? fmt(sorted[i]!, r.width) : `${fmt(sorted[i]!, r.width)}-${fmt(sorted[j]!, r.width)}`,
        );
        i = j + 1;
      }
      return `${r.prefix}[${pieces.join(",")}]${r.suffix}`;
    })
    .join(",");
}
