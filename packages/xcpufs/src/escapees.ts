// Programs that left their session's process group (setsid, setpgid, a daemon's double fork): a
// group kill misses them, but they still carry the session's XCPUPATH in their environment (the
// session directory, unique to the session while it exists, and for a root server inside the
// server's own per-instance directory). After a wipe, at shutdown and when the directory of a
// server that was killed is removed, /proc/<pid>/environ is read and the processes marked for
// those sessions are stopped, then killed. Only marked processes are ever signalled: reading
// another process's environ takes root or the same uid, the rights signalling it takes too.

import { close as fsClose, open as fsOpen, read as fsRead, readFileSync } from "node:fs";
import { readdir } from "node:fs/promises";

/** Which processes a sweep ends: XCPUPATH equal to one of `exact`, or under one of `under`. */
export interface Marks {
  exact?: Iterable<string>;
  /** Directories: a value inside one (`<dir>/…`) is marked. */
  under?: Iterable<string>;
  /**
   * The session's program (with `exact`): its pid and when it started (Date.now()). What it left
   * was started after it, so has a greater pid as long as pids have not wrapped around since;
   * older processes are then not read at all (the common case costs a listing of /proc).
   */
  since?: { pid: number; at: number };
}

/** Forks per second no machine reaches: pids cannot wrap around faster than pid_max at this rate. */
const FORKS_PER_SECOND_MAX = 100_000;

let pidMax: number | undefined;

/** The last pid handed out in this pid namespace (/proc/loadavg); undefined where unknown. */
export function lastPid(): number | undefined {
  try {
    const n = Number(readFileSync("/proc/loadavg", "latin1").trim().split(/\s+/).pop());
    return Number.isInteger(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The least pid a process that `since` started (directly or not) can have, when that is sure;
 * 0 otherwise (every process is to be read). `last`: lastPid(), read now.
 */
export function pidFloor(
  since: { pid: number; at: number } | undefined,
  now = Date.now(),
  last = lastPid(),
): number {
  if (!since || since.pid <= 1 || last === undefined) return 0;
  try {
    pidMax ??= Number(readFileSync("/proc/sys/kernel/pid_max", "latin1")) || 0;
  } catch {
    pidMax = 0;
  }
  // Below the program's pid: pids wrapped around since it started.
  if (!(pidMax > 0) || last < since.pid) return 0;
  // Too long ago: pids may have gone round a whole cycle and come back above it.
  if (now - since.at > ((pidMax - 300) / FORKS_PER_SECOND_MAX) * 1000) return 0;
  return since.pid;
}

const KEY = Buffer.from("XCPUPATH=");
/** /proc files read at the same time (a stuck one holds up one reader, not the sweep). */
const READERS = 4;
/** Scans of one sweep at most: each stops the marked processes it found that were not stopped. */
const MAX_ROUNDS = 8;

/**
 * The whole of a /proc file (environ has no size in stat) into `buf`, grown as needed; undefined
 * if unreadable. Through the thread pool: reading another process's memory waits for its memory
 * map lock, which a process stuck in the kernel may hold for long.
 */
async function readProcFile(path: string, into: { buf: Buffer }): Promise<Buffer | undefined> {
  const fd = await new Promise<number | undefined>((resolve) =>
    fsOpen(path, "r", (err, fd) => resolve(err ? undefined : fd)),
  );
  if (fd === undefined) return undefined;
  try {
    let len = 0;
    for (;;) {
      if (len === into.buf.length) {
        const bigger = Buffer.allocUnsafe(into.buf.length * 2);
        into.buf.copy(bigger, 0, 0, len);
        into.buf = bigger;
      }
      const want = into.buf.length - len;
      const n = await new Promise<number>((resolve, reject) =>
        fsRead(fd, into.buf, len, want, null, (err, n) => (err ? reject(err) : resolve(n))),
      );
      len += n;
      // environ is read until its end or the count asked for: a short read is the end.
      if (n < want) return into.buf.subarray(0, len);
    }
  } catch {
    return undefined;
  } finally {
    fsClose(fd, () => {});
  }
}

/** Whether an environ block holds an XCPUPATH entry that `marks` names. */
export function environMarked(env: Buffer, exact: ReadonlySet<string>, under: readonly string[]): boolean {
  let i = env.indexOf(KEY);
  while (i >= 0) {
    if (i === 0 || env[i - 1] === 0) {
      const start = i + KEY.length;
      let end = env.indexOf(0, start);
      if (end < 0) end = env.length;
      const value = env.toString("latin1", start, end);
      if (exact.has(value)) return true;
      for (const d of under) if (value.startsWith(`${d}/`)) return true;
      i = env.indexOf(KEY, end);
    } else {
      i = env.indexOf(KEY, i + 1);
    }
  }
  return false;
}

/** Process state letter from /proc/<pid>/stat ("R", "S", "Z", ...); undefined when there is no such process. */
export function processState(pid: number): string | undefined {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "latin1");
    return st.slice(st.lastIndexOf(")") + 2, st.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

/**
 * Whether a process `pid` exists and has not ended: a zombie (ended, not yet reaped by its parent)
 * is gone. kill(pid, 0) where /proc cannot tell.
 */
export function processAlive(pid: number): boolean {
  const state = processState(pid);
  if (state !== undefined) return state !== "Z" && state !== "X" && state !== "x";
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Pids (from `floor` up) of the live processes the marks name, except `spare`. */
async function scan(
  exact: ReadonlySet<string>,
  under: readonly string[],
  spare: ReadonlySet<number>,
  floor: number,
): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir("/proc");
  } catch {
    return [];
  }
  const found: number[] = [];
  let next = 0;
  const worker = async () => {
    const into = { buf: Buffer.allocUnsafe(16 * 1024) };
    while (next < names.length) {
      const name = names[next++] as string;
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(name);
      if (pid <= 1 || pid < floor || spare.has(pid)) continue;
      // A zombie's or a kernel thread's environ reads empty.
      const env = await readProcFile(`/proc/${name}/environ`, into);
      if (env && env.length > 0 && environMarked(env, exact, under)) found.push(pid);
    }
  };
  await Promise.all(Array.from({ length: READERS }, worker));
  return found;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone, or not ours to signal
  }
}

/**
 * Ends every process `marks` names: each scan stops (SIGSTOP) the marked processes not stopped
 * yet, so that none can fork past the next scan; once a scan finds no new one, the processes of
 * that scan (stopped, so still the same processes) get SIGKILL. Returns the number killed.
 */
export async function endMarked(marks: Marks, spare: ReadonlySet<number>, floor = 0): Promise<number> {
  const exact = new Set(marks.exact ?? []);
  const under = [...(marks.under ?? [])];
  if (exact.size === 0 && under.length === 0) return 0;
  const stopped = new Set<number>();
  let found: number[] = [];
  for (let round = 0; round < MAX_ROUNDS; round++) {
    found = await scan(exact, under, spare, floor);
    const fresh = found.filter((p) => !stopped.has(p));
    if (fresh.length === 0) break;
    for (const p of fresh) {
      signal(p, "SIGSTOP");
      stopped.add(p);
    }
  }
  // Those stopped and not seen again too (a read that failed): stopped, they cannot have ended on
  // their own, so their pid is still theirs; left stopped, they would stay so.
  for (const p of found) stopped.add(p);
  for (const p of stopped) signal(p, "SIGKILL");
  return stopped.size;
}

/**
 * Sweeps for one server: what is asked while a sweep runs, or sooner than `minIntervalMs` after
 * the last one began, is gathered into the next, so that a busy node reads /proc a few times a
 * second at most, not once per job.
 */
export class Sweeper {
  private pending = Sweeper.empty();
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private lastStart = 0;
  /** The sweep under way (resolved when none is). */
  private current: Promise<void> = Promise.resolve();
  /** Sweep without waiting for the interval (the server is stopping). */
  hurry = false;

  private static empty() {
    return {
      exact: [] as string[],
      under: [] as string[],
      done: [] as (() => void)[],
      /** Each request's `since` (undefined: every process is read for it). */
      since: [] as ({ pid: number; at: number } | undefined)[],
    };
  }

  constructor(
    private readonly opts: {
      log: { warn(o: object, msg?: string): void };
      /** Least time from the start of one sweep to the next (default 200 ms). */
      minIntervalMs?: number;
    },
  ) {}

  /** Ends the processes `marks` names, in a coming sweep; resolves once that sweep is done. */
  request(marks: Marks): Promise<void> {
    return new Promise<void>((resolve) => {
      this.pending.exact.push(...(marks.exact ?? []));
      this.pending.under.push(...(marks.under ?? []));
      this.pending.done.push(resolve);
      this.pending.since.push(marks.under ? undefined : marks.since);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running) return;
    if (this.timer) {
      if (!this.hurry) return;
      clearTimeout(this.timer);
    }
    const wait = this.hurry ? 0 : Math.max(0, this.lastStart + (this.opts.minIntervalMs ?? 200) - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.current = this.run();
    }, wait);
  }

  /** Resolves once every sweep asked for so far is done; from now on none waits for the interval. */
  async drain(): Promise<void> {
    this.hurry = true;
    while (this.running || this.pending.done.length > 0) {
      if (this.pending.done.length > 0) {
        await new Promise<void>((resolve) => {
          this.pending.done.push(resolve);
          this.schedule();
        });
      } else {
        await this.current;
      }
    }
  }

  private async run(): Promise<void> {
    const batch = this.pending;
    this.pending = Sweeper.empty();
    this.running = true;
    this.lastStart = Date.now();
    try {
      const spare = new Set([process.pid]);
      const now = Date.now();
      const last = lastPid();
      let floor = Number.POSITIVE_INFINITY;
      for (const since of batch.since) floor = Math.min(floor, pidFloor(since, now, last));
      const n = await endMarked(
        { exact: batch.exact, under: batch.under },
        spare,
        Number.isFinite(floor) ? floor : 0,
      );
      if (n > 0) this.opts.log.warn({ killed: n }, "killed processes that ended sessions left running");
    } catch (err) {
      this.opts.log.warn({ err }, "cannot look for programs that left their process group");
    } finally {
      this.running = false;
      for (const d of batch.done) d();
      if (this.pending.done.length > 0) this.schedule();
    }
  }
}
