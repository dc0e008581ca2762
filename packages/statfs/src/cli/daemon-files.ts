// The files an operator gives a long-running statfs: a pid file (for init scripts and systemd
// `Type=forking` units) and a log file (for a background process, which has no stderr).

import {
  closeSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename } from "node:path";

/** What a pid file names, read at start-up. */
export type PidFileState =
  | { kind: "absent" }
  /** A running statfs: a second one must not start. */
  | { kind: "running"; pid: number }
  /** A pid that is gone or belongs to another program, or text that is not a pid: replaced. */
  | { kind: "stale"; reason: string };

/**
 * Reads the pid file `file`. `ours` are pids that cannot be another instance (this process, and for
 * the background process the command that started it): a file naming them is stale, written by an
 * instance whose pid was later given to us.
 */
export function readPidFile(file: string, ours: number[]): PidFileState {
  let text: string;
  try {
    text = readFileSync(file, "latin1");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
    throw new Error(`cannot read pid file ${file}: ${(err as Error).message}`);
  }
  const m = /^\s*(\d{1,10})\s*$/.exec(text);
  const pid = m ? Number(m[1]) : 0;
  if (!(pid > 0)) return { kind: "stale", reason: "it holds no pid" };
  if (ours.includes(pid)) return { kind: "stale", reason: `pid ${pid} is this statfs` };
  if (!alive(pid)) return { kind: "stale", reason: `pid ${pid} is not running` };
  if (!isStatfs(pid)) return { kind: "stale", reason: `pid ${pid} is not a statfs` };
  return { kind: "running", pid };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Whether process `pid` runs a statfs: the installed `statfs` program, or node running a script
 * named statfs (statfs.js as built, statfs.ts from the sources). A zombie has no command line.
 */
export function isStatfs(pid: number): boolean {
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0");
  } catch {
    return false;
  }
  const [exe = "", ...rest] = argv;
  if (basename(exe) === "statfs") return true;
  if (!/^node(js)?(\d+)?$/.test(basename(exe))) return false;
  return rest.some((a) => /^statfs(\.[cm]?[jt]s)?$/.test(basename(a)));
}

/** The pid file names another running statfs: this one must not serve. */
export class PidFileTakenError extends Error {
  constructor(
    readonly file: string,
    readonly pid: number,
  ) {
    super(`already running as pid ${pid} (pid file ${file}); stop it first or use another --pid-file`);
  }
}

/**
 * Writes `pid` and a newline to `file`, mode 0644 whatever the umask, through a temporary file in
 * the same directory linked to its name: a reader sees the old file or the whole new one.
 *
 * The file is claimed, not overwritten: two statfs started at once both find no pid file when they
 * start, and the second to get here must not take the file over from the first (which would then
 * run on, named by no pid file, out of reach of the init script). A file naming another running
 * statfs is left alone ({@link PidFileTakenError}); a stale one (see {@link readPidFile}, `ours`) is
 * moved aside and replaced, unless another statfs replaced it meanwhile.
 */
export function writePidFile(file: string, pid: number, ours: number[] = [pid]): void {
  const tmp = `${file}.${pid}.tmp`;
  const aside = `${file}.${pid}.stale`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w", 0o644);
    fchmodSync(fd, 0o644);
    writeSync(fd, `${pid}\n`);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, file);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 10) throw err;
      }
      let stale: string;
      try {
        stale = readFileSync(file, "latin1");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw err;
      }
      const state = readPidFile(file, ours);
      if (state.kind === "running") throw new PidFileTakenError(file, state.pid);
      if (state.kind === "absent") continue;
      // Move the stale file aside. What arrives there may be another statfs's claim that replaced
      // the stale file after we read it: that one goes back (and wins).
      try {
        renameSync(file, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw err;
      }
      if (readFileSync(aside, "latin1") !== stale) {
        try {
          linkSync(aside, file);
        } catch {
          // Yet another file took the name: the next round reads whichever it is.
        }
      }
      rmSync(aside, { force: true });
    }
  } catch (err) {
    if (err instanceof PidFileTakenError) throw err;
    throw new Error(`cannot write pid file ${file}: ${(err as Error).message}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
  }
}

/** Removes `file` if it still names `pid` (another instance may have taken it over since). */
export function removePidFile(file: string, pid: number): void {
  try {
    if (readFileSync(file, "latin1").trim() === String(pid)) unlinkSync(file);
  } catch {
    // Gone already, or unreadable: nothing of ours to remove.
  }
}

/**
 * A log file that statfs appends its messages to, each prefixed with an ISO 8601 UTC timestamp
 * (the stderr lines have none: a supervisor's journal adds its own). Opened for appending, so
 * several writers and logrotate's copytruncate keep whole lines; {@link reopen} after logrotate
 * renamed it (SIGHUP) starts a new file of that name.
 */
export class LogFile {
  private fd: number;

  /** Opens (creates, mode 0644 before the umask) `path` for appending; throws with the reason. */
  constructor(readonly path: string) {
    this.fd = LogFile.open(path);
  }

  private static open(path: string): number {
    try {
      return openSync(path, "a", 0o644);
    } catch (err) {
      throw new Error(`cannot open log file ${path}: ${(err as Error).message}`);
    }
  }

  /** Appends one message (`statfs: ` and the line, as on stderr); a failed write is dropped. */
  write(line: string, now = new Date()): void {
    try {
      writeSync(this.fd, `${now.toISOString()} statfs: ${line}\n`);
    } catch {
      // A full disk must not stop the server; the message is lost.
    }
  }

  /** Opens the file by its name again; on failure the old one stays in use and the error is thrown. */
  reopen(): void {
    const fd = LogFile.open(this.path);
    const old = this.fd;
    this.fd = fd;
    closeSync(old);
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {}
  }
}
