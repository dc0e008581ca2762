// The original xcpufs `procs` file (spec 8.4, xcpufs/proc-Linux.c): generated from /proc at open,
// one "( … ) " record per line, a header first, fields that cannot be read written as ''.
import { readdirSync, readFileSync } from "node:fs";
import { quoteOriginal } from "./tokens.js";

export const PROCS_HEADER =
  "(pid (cmdline) state ppid pgrp psid tty tpgid utime stime etime priority nice wchan euid suid fsuid egid sgid fsgid vmsize rssize shsize txtsize datsize xcpusid xcpujid ) ";

const HZ = 100;
const PAGE = 4096;

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return undefined;
  }
}

function tty(nr: number): string {
  if (nr === 0) return "??";
  const major = (nr >> 8) & 0xfff;
  const minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
  if (major === 4) return minor < 64 ? `tty${minor}` : `ttyS${minor - 64}`;
  if (major >= 136 && major <= 143) return `pts/${(major - 136) * 256 + minor}`;
  return "??";
}

/** Session attribution: main pid → [sid, "<jobid>/<rank>"]. */
export type SessionPids = Map<number, [string, string]>;

/** The procs text for this host's processes, with session ids inherited through the ppid chain. */
export function procsText(sessions: SessionPids): string {
  const uptime = Number((read("/proc/uptime") ?? "0").split(" ")[0]);
  const pids = readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b);
  interface Rec {
    pid: number;
    ppid: number;
    fields: string[];
  }
  const recs: Rec[] = [];
  for (const pid of pids) {
    const stat = read(`/proc/${pid}/stat`);
    if (!stat) continue;
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(open + 1, close);
    const f = stat
      .slice(close + 2)
      .trim()
      .split(" ");
    // f[0] = state (field 3 of stat), so stat field n is f[n - 3].
    const at = (n: number) => f[n - 3] ?? "";
    const cmd = (read(`/proc/${pid}/cmdline`) ?? "").split("\0");
    if (cmd.at(-1) === "") cmd.pop();
    const cmdline = (cmd.length > 0 ? cmd : [comm]).map(quoteOriginal).join(" ");
    const status = read(`/proc/${pid}/status`) ?? "";
    const ids = (key: string) => {
      const m = new RegExp(`^${key}:\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)`, "m").exec(status);
      return m ? [m[2]!, m[3]!, m[4]!] : ["''", "''", "''"];
    };
    const statm = (read(`/proc/${pid}/statm`) ?? "").trim().split(" ").map(Number);
    const bytes = (i: number) =>
      statm[i] === undefined || Number.isNaN(statm[i]) ? "''" : String(statm[i]! * PAGE);
    const ms = (ticks: string) => String(Math.round((Number(ticks) * 1000) / HZ));
    const start = Number(at(22)) / HZ;
    recs.push({
      pid,
      ppid: Number(at(4)),
      fields: [
        String(pid),
        `(${cmdline})`,
        at(3),
        at(4),
        at(5),
        at(6),
        tty(Number(at(7))),
        at(8),
        ms(at(14)),
        ms(at(15)),
        String(Math.max(0, Math.round((uptime - start) * 1000))),
        String(Number(at(18)) - 15),
        at(19),
        (read(`/proc/${pid}/wchan`) ?? "''").trim() || "''",
        ...ids("Uid"),
        ...ids("Gid"),
        at(23),
        String(Number(at(24)) * PAGE),
        bytes(2),
        bytes(3),
        bytes(5),
      ],
    });
  }
  // xcpusid/xcpujid: set on a session's main process and inherited by its descendants.
  const byPid = new Map(recs.map((r) => [r.pid, r]));
  const owner = (r: Rec): [string, string] | undefined => {
    for (let x: Rec | undefined = r, n = 0; x && n < 64; x = byPid.get(x.ppid), n++) {
      const s = sessions.get(x.pid);
      if (s) return s;
    }
    return undefined;
  };
  const lines = [PROCS_HEADER];
  for (const r of recs) {
    const s = owner(r);
    lines.push(`(${[...r.fields, s ? s[0] : "''", s ? quoteOriginal(s[1]) || "''" : "''"].join(" ")} ) `);
  }
  return `${lines.join("\n")}\n`;
}
