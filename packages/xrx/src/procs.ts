// The xcpufs `procs` file: one parenthesised record per process, the first a header of field
// names; the command line is itself a parenthesised list of quoted tokens. Also the xps view of a
// record (STAT letters, TIME).
import { readQuoted } from "@clustermatic/ninep/quote";
import { TokenizeError } from "./quote.js";

/** One process as reported by a node. Numeric fields that could not be read are undefined. */
export interface ProcRecord {
  pid: number;
  cmdline: string[];
  state: string;
  ppid?: number;
  pgrp?: number;
  psid?: number;
  tty: string;
  tpgid?: number;
  utime?: number;
  stime?: number;
  etime?: number;
  priority?: number;
  nice?: number;
  euid?: number;
  vmsize?: number;
  rssize?: number;
  /** Session id (xcpusid), "" when not a session process. */
  sid: string;
  /** `<jobid>/<rank>` (xcpujid), "" when none. */
  jobid: string;
  /** Every field by header name, as text. */
  fields: Record<string, string>;
}

type Item = string | Item[];

/** Tokenises one record: quoted tokens, bare tokens, and ( … ) lists. */
function parseItems(text: string): Item[] {
  let i = 0;
  const n = text.length;
  const parseList = (): Item[] => {
    const out: Item[] = [];
    for (;;) {
      while (i < n && /\s/.test(text[i]!)) i++;
      if (i >= n) return out;
      const c = text[i]!;
      if (c === ")") {
        i++;
        return out;
      }
      if (c === "(") {
        i++;
        out.push(parseList());
        continue;
      }
      if (c === "'") {
        const q = readQuoted(text, i);
        if (!q) throw new TokenizeError("unterminated quoted token in procs");
        out.push(q.token);
        i = q.end;
        continue;
      }
      const start = i;
      while (i < n && !/[\s()]/.test(text[i]!)) i++;
      out.push(text.slice(start, i));
    }
  };
  return parseList();
}

const flat = (x: Item | undefined): string =>
  x === undefined ? "" : typeof x === "string" ? x : x.map(flat).join(" ");

/** Parses the whole procs file. Records that do not parse are skipped. */
export function parseProcs(text: string): ProcRecord[] {
  const items = parseItems(text).filter((x): x is Item[] => Array.isArray(x));
  if (items.length === 0) return [];
  const header = items[0]!.map((h) => (Array.isArray(h) ? flat(h[0]) : h));
  const out: ProcRecord[] = [];
  for (const rec of items.slice(1)) {
    const fields: Record<string, string> = {};
    let cmdline: string[] = [];
    header.forEach((name, idx) => {
      const v = rec[idx];
      if (name === "cmdline") {
        cmdline = Array.isArray(v) ? v.map(flat) : v ? [v] : [];
        fields[name] = cmdline.join(" ");
      } else {
        fields[name] = flat(v);
      }
    });
    const num = (k: string) => {
      const v = fields[k];
      return v !== undefined && /^-?\d+$/.test(v) ? Number(v) : undefined;
    };
    const pid = num("pid");
    if (pid === undefined) continue;
    out.push({
      pid,
      cmdline,
      state: fields.state ?? "?",
      ppid: num("ppid"),
      pgrp: num("pgrp"),
      psid: num("psid"),
      tty: fields.tty || "??",
      tpgid: num("tpgid"),
      utime: num("utime"),
      stime: num("stime"),
      etime: num("etime"),
      priority: num("priority"),
      nice: num("nice"),
      euid: num("euid"),
      vmsize: num("vmsize"),
      rssize: num("rssize"),
      sid: fields.xcpusid ?? "",
      jobid: fields.xcpujid ?? "",
      fields,
    });
  }
  return out;
}

/** The STAT column of xps: state letter, then `<`/`N` for nice, `s` session leader, `+` foreground. */
export function statColumn(p: ProcRecord): string {
  let s = /^[RSZTD]/.test(p.state) ? p.state[0]! : "?";
  if (p.nice !== undefined && p.nice < 0) s += "<";
  if (p.nice !== undefined && p.nice > 0) s += "N";
  if (p.psid !== undefined && p.psid === p.pid) s += "s";
  if (p.pgrp !== undefined && p.tpgid !== undefined && p.pgrp === p.tpgid) s += "+";
  return s;
}

/** The TIME column: utime+stime as M:SS. */
export function timeColumn(p: ProcRecord): string {
  const secs = Math.floor(((p.utime ?? 0) + (p.stime ?? 0)) / 1000);
  return `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
}

const CONTROL_ESCAPES: Record<string, string> = { "\n": "\\n", "\t": "\\t", "\r": "\\r" };

/**
 * The COMMAND column: the argv joined by spaces, with control characters made visible (`\n`,
 * `\t`, `\xNN`) so that every process stays on one tab-separated line whatever its arguments hold.
 */
export function commandColumn(p: ProcRecord): string {
  return p.cmdline
    .join(" ")
    .replace(
      /[\u0000-\u001f\u007f]/g,
      (c) => CONTROL_ESCAPES[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
    );
}

/** Main processes of a job: job id `job/…`, parent without that job. */
export function jobMainProcesses(procs: readonly ProcRecord[], job: string): ProcRecord[] {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  return procs.filter((p) => {
    if (!p.jobid.startsWith(`${job}/`) || !p.sid) return false;
    const parent = p.ppid !== undefined ? byPid.get(p.ppid) : undefined;
    return !parent || parent.jobid === "" || parent.sid !== p.sid;
  });
}
