// The xcpufs `procs` file: one parenthesised record per process, the first a header of field
// names; the command line is itself a parenthesised list of quoted tokens. Also the xps view of a
// record (STAT letters, TIME).
import { quoteArgs, tokenize } from "./quote.js";

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

/** The token that ends just before `end` in `text`, read right to left: [token, its start]. */
function tokenBefore(text: string, end: number): [string, number] | undefined {
  const sep = (c: string | undefined) => c === undefined || /\s/.test(c);
  let j = end;
  while (j > 0 && sep(text[j - 1])) j--;
  if (j === 0) return undefined;
  if (text[j - 1] !== "'") {
    let i = j;
    while (i > 0 && !sep(text[i - 1])) i--;
    return [text.slice(i, j), i];
  }
  // A quoted token (quotes inside are doubled). Walking left from the closing quote, a run of
  // quotes right after a separator holds the opening quote (the rest of the run are pairs).
  let p = j - 2;
  while (p >= 0) {
    if (text[p] !== "'") {
      p--;
      continue;
    }
    let run = 0;
    while (p - run >= 0 && text[p - run] === "'") run++;
    if (sep(text[p - run])) {
      const open = run % 2 === 1 ? p - run + 1 : p - run + 2;
      return [text.slice(open + 1, j - 1).replaceAll("''", "'"), open];
    }
    p -= run;
  }
  return undefined;
}

/**
 * Parses the whole procs file. One record per process: `(pid (cmdline) field… ) `. The command
 * line is found from both ends — after `pid (` and before the fields the header names — so
 * parentheses and newlines inside arguments (which xcpufs writes unquoted) cannot shift the
 * fields or swallow the records that follow. Records that do not parse are skipped.
 */
export function parseProcs(text: string): ProcRecord[] {
  const firstLine = text.slice(0, text.indexOf("\n") < 0 ? text.length : text.indexOf("\n"));
  if (!/^\(\s*pid\s+\(/.test(firstLine)) return [];
  const header = firstLine.replace(/[()]/g, " ").trim().split(/\s+/);
  const tailNames = header.slice(2);
  const starts = [...text.matchAll(/^\((\d+) \(/gm)].map((m) => m.index!);
  const out: ProcRecord[] = [];
  starts.forEach((start, k) => {
    const chunk = text.slice(start, starts[k + 1] ?? text.length).trimEnd();
    if (!chunk.endsWith(")")) return;
    const body = chunk.slice(1, -1);
    const sp = body.indexOf(" (");
    const pidText = body.slice(0, sp);
    const rest = body.slice(sp + 2);
    const tail: string[] = [];
    let j = rest.length;
    for (let n = 0; n < tailNames.length; n++) {
      const t = tokenBefore(rest, j);
      if (!t) return;
      tail.push(t[0]); // right to left (push and reverse: unshift made a long record quadratic)
      j = t[1];
    }
    tail.reverse();
    const cmdText = rest.slice(0, j).trimEnd();
    if (!cmdText.endsWith(")")) return;
    const inner = cmdText.slice(0, -1);
    let cmdline: string[];
    try {
      cmdline = tokenize(inner);
    } catch {
      cmdline = inner.split(/\s+/).filter(Boolean);
    }
    const fields: Record<string, string> = { pid: pidText, cmdline: cmdline.join(" ") };
    tailNames.forEach((name, i) => {
      fields[name] = tail[i]!;
    });
    const num = (key: string) => {
      const v = fields[key];
      return v !== undefined && /^-?\d+$/.test(v) ? Number(v) : undefined;
    };
    const pid = num("pid");
    if (pid === undefined) return;
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
  });
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
 * The COMMAND column: the command line as the node's `procs` has it, the original xps's column
 * (every argument quoted where it holds a space, tab or quote, `sh -c 'sleep 1; date'`), with
 * control characters made visible (`\n`, `\t`, `\xNN`) so that every process stays on one
 * tab-separated line whatever its arguments hold.
 */
export function commandColumn(p: ProcRecord): string {
  return quoteArgs(p.cmdline).replace(
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
