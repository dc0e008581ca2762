// The root `procs` file: the node's process table from /proc, as s-expression records.

import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { mapLimit } from "@clustermatic/ninep/server";
import { quote } from "./quote.js";

export const PROCS_HEADER =
  "(pid (cmdline) state ppid pgrp psid tty tpgid utime stime etime priority nice wchan euid suid fsuid egid sgid fsgid vmsize rssize shsize txtsize datsize xcpusid xcpujid ) \n";

const CLK_TCK = 100;
const PAGE = 4096;
/** Processes whose command lines are read at the same time. */
export const PROCS_AT_ONCE = 8;
/** Bytes of /proc/<pid>/cmdline shown, as the original. */
const CMDLINE_MAX = 8190;

/** Session and job ids of a session's main process. */
export interface ProcTag {
  sid: number;
  jid: string;
}

async function read(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "latin1");
  } catch {
    return undefined;
  }
}

/**
 * A /proc file the kernel writes out without touching the process's memory map (stat, status,
 * statm, wchan): read on the spot. Through the thread pool each costs four round trips (open,
 * stat, read, close), which made one listing of 300 processes cost 0.4 s of CPU on a small VM.
 */
function readNow(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return undefined;
  }
  try {
    // One buffer for every file (readFileSync makes a 64 KiB one per /proc file, whose size it
    // cannot know); a file that does not fit is read whole the slow way.
    let n = 0;
    for (;;) {
      const got = readSync(fd, scratch, n, scratch.length - n, null);
      if (got === 0) return scratch.toString("latin1", 0, n);
      n += got;
      if (n === scratch.length) return scratch.toString("latin1", 0, n) + readFileSync(fd, "latin1");
    }
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
const scratch = Buffer.allocUnsafe(16 * 1024);

/** Name of a terminal from the `tty_nr` field of /proc/<pid>/stat. */
export function ttyName(ttyNr: number): string {
  if (ttyNr === 0) return "??";
  const major = (ttyNr >> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
  if (major === 4) return minor < 64 ? `tty${minor}` : `ttyS${minor - 64}`;
  if (major >= 136 && major <= 143) return `pts/${(major - 136) * 256 + minor}`;
  if (major === 2) return `ptyp${minor}`;
  if (major === 3) return `ttyp${minor}`;
  if (major === 5 && minor >= 64) return `cua${minor - 64}`;
  return "??";
}

interface Raw {
  pid: number;
  ppid: number;
  fields: string[];
}

async function readProc(pid: number, uptimeMs: number): Promise<Raw | undefined> {
  const base = `/proc/${pid}`;
  const stat = readNow(`${base}/stat`);
  if (stat === undefined) return undefined;
  // The command line is read from the process's memory, under its memory map's lock: a process
  // stuck in the kernel holding it would block the reader, so that one goes to the thread pool.
  const cmdline = await read(`${base}/cmdline`);
  const status = readNow(`${base}/status`);
  const statm = readNow(`${base}/statm`);
  const wchan = readNow(`${base}/wchan`);
  const open = stat.indexOf("(");
  const close = stat.lastIndexOf(")");
  if (open < 0 || close < 0) return undefined;
  const comm = stat.slice(open + 1, close);
  // s[0] is field 3 (state) of proc(5).
  const s = stat
    .slice(close + 2)
    .trim()
    .split(" ");
  const f = (n: number) => s[n - 3] ?? "";
  const num = (n: number) => Number(f(n));
  // The original read at most 8190 bytes of a command line, and its clients depend on that: xps
  // parses `procs` line by line in a 16 KiB buffer and silently stops at a longer line. A line
  // break inside an argument would split the record (xps then rejects the whole node's list), so
  // line breaks show as `?`, as ps(1) shows them.
  const args = (cmdline ?? "").slice(0, CMDLINE_MAX).split("\0");
  if (args.length > 0 && args[args.length - 1] === "") args.pop();
  const cmd = (args.length > 0 ? args.map(quote).join(" ") : quote(comm)).replace(/[\n\r]/g, "?");
  const idLine = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)`, "m").exec(status ?? "");
    return m ? [m[2] as string, m[3] as string, m[4] as string] : ["''", "''", "''"];
  };
  const m = (statm ?? "").trim().split(/\s+/).map(Number);
  const pages = (i: number) =>
    m[i] === undefined || Number.isNaN(m[i]) ? "''" : String((m[i] as number) * PAGE);
  const ticksMs = (n: number) => String(Math.round((num(n) * 1000) / CLK_TCK));
  const etime = Math.max(0, Math.round(uptimeMs - (num(22) * 1000) / CLK_TCK));
  const fields = [
    String(pid),
    `(${cmd})`,
    f(3) || "''",
    f(4) || "''",
    f(5) || "''",
    f(6) || "''",
    ttyName(num(7)),
    f(8) || "''",
    ticksMs(14),
    ticksMs(15),
    String(etime),
    String(num(18) - 15),
    f(19) || "''",
    wchan === undefined || wchan === "" ? "0" : quote(wchan.trim()),
    ...idLine("Uid"),
    ...idLine("Gid"),
    f(23) || "''",
    String(num(24) * PAGE),
    pages(2),
    pages(3),
    pages(5),
  ];
  return { pid, ppid: num(4), fields };
}

/**
 * Build the `procs` text. `tags` maps the pid of each session's main process to its session and job
 * ids; descendants inherit them through the ppid chain. One character per byte of the file (serve
 * it with `Buffer.from(text, "latin1")`): command lines are the bytes /proc holds, as the original
 * copied them, and job ids are UTF-8.
 */
export async function procsText(tags: ReadonlyMap<number, ProcTag>): Promise<string> {
  const uptime = await read("/proc/uptime");
  const uptimeMs = Number((uptime ?? "0").split(" ")[0]) * 1000;
  const pids = (await readdir("/proc"))
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b);
  // A few processes at a time: all at once opened five files per process together (750 for 150
  // processes, per reader of `procs`) and queued them all ahead of the server's other file system
  // work, whose requests (an exec's stat, a session directory's removal) then waited for all of them.
  const found = await mapLimit(pids, PROCS_AT_ONCE, (pid) => readProc(pid, uptimeMs));
  const raws = found.filter((r): r is Raw => r !== undefined);
  const parent = new Map<number, number>();
  for (const r of raws) parent.set(r.pid, r.ppid);
  const tagOf = (pid: number): ProcTag | undefined => {
    let p: number | undefined = pid;
    for (let depth = 0; p !== undefined && p > 0 && depth < 4096; depth++) {
      const t = tags.get(p);
      if (t) return t;
      p = parent.get(p);
    }
    return undefined;
  };
  let out = PROCS_HEADER;
  for (const r of raws) {
    const t = tagOf(r.pid);
    const sid = t ? String(t.sid) : "''";
    // The job id is the client's text. xps and xk take the record's last `)` as the end of the
    // command line, so a `)` in a job id would make them reject every record of the node: shown as `?`,
    // as line breaks are.
    const jid = t ? Buffer.from(quote(t.jid).replace(/[\n\r)]/g, "?")).toString("latin1") : "''";
    out += `(${r.fields.join(" ")} ${sid} ${jid} ) \n`;
  }
  return out;
}
