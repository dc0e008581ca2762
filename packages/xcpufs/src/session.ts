// Sessions: one program, its standard streams, argv/env buffers, job id and private directory.

import { type SpawnOptions, spawn } from "node:child_process";
import { chownSync, lstatSync, mkdtempSync, readdirSync, unlinkSync } from "node:fs";
import { type FileHandle, rmdir, stat } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { join } from "node:path";
import { Readable, type Writable } from "node:stream";
import { XcpuError } from "./errors.js";
import {
  enterAsUser,
  errnoText,
  type ForkHelper,
  type HelperChild,
  missingInterpreter,
  StartError,
  signalStarted,
} from "./fork-helper.js";
import { removeWithin } from "./local-files.js";
import { NOEXEC_WHY, onNoexecMount } from "./noexec.js";
import { QuoteError, quote, tokenize } from "./quote.js";
import { waitStatus } from "./signals.js";
import { InputStream, OutputStream } from "./streams.js";
import type { User } from "./users.js";

export const State = { Initializing: 0, Running: 1, Finished: 2, Wiped: 16 } as const;
export type State = (typeof State)[keyof typeof State];

/** How a session's program is started: as which Unix identity, from which server settings. */
export interface ExecIdentity {
  /** Switch to this uid/gid (server runs as root and not in same-user mode). */
  uid?: number;
  gid?: number;
  /** Supplementary group ids (set by the fork helper, else through setpriv, when not empty). */
  groups?: number[];
}

export interface SessionHost {
  /** The resident process that starts programs (fork-helper.ts); undefined: spawn() them. */
  forkHelper?: () => ForkHelper | undefined;
  /**
   * setpriv (util-linux) and env (coreutils), used to start programs of users with supplementary
   * groups; undefined when either is missing.
   */
  setpriv: { setpriv: string; env: string } | undefined;
  /** Keep session directories after the session ends (`-r`). */
  retain: boolean;
  /** Called once when the session is wiped and fully released. */
  destroyed(s: Session): void;
  /**
   * Ends the processes of a session whose program has ended or was killed that carry its
   * XCPUPATH: those that left its process group (escapees.ts). Resolves when done.
   */
  sweep?(s: Session): Promise<void>;
  /** Called when the main process starts or ends (for the procs tags). */
  changed(s: Session): void;
  log: { debug(o: object, msg?: string): void; warn(o: object, msg?: string): void };
}

const ENOENT_STATUS = 2 << 8;

/** Grace period between SIGTERM and SIGKILL when a session's process group is ended. */
export const KILL_GRACE_MS = 1000;

export class Session {
  state: State = State.Initializing;
  type: "normal" | "persistent" = "normal";
  argv: Buffer = Buffer.alloc(0);
  env: Buffer;
  jobId = "";
  rank = 0;
  pid = -1;
  /** Raw wait status once the main process ended. */
  status: number | undefined;
  readonly stdin = new InputStream();
  readonly stdout = new OutputStream();
  readonly stderr = new OutputStream();
  /** References: the opening fid of `clone` and every open file of the session (fs/ included). */
  refs = 0;
  /** Times the session changed hands (changeOwner): a call begun before a change fails. */
  owners = 0;
  /** A `clone` command is running (other ctl writes are refused). */
  cloning = false;
  /** Streams taken from or sent to node-local files (`redirect`), until the program starts. */
  redirects: Partial<Record<"stdin" | "stdout" | "stderr", FileHandle>> = {};
  /**
   * Resolves once the server's ends of the program's pipes are the only ones (a fork helper
   * holds copies until it has answered their release): `close stdout` waits for it, so that the
   * program's next write finds no reader.
   */
  pipesReleased: Promise<void> = Promise.resolve();
  /** Streams that were redirected when the program started: their files answer an error. */
  readonly redirected = new Set<string>();
  /** The staged legacy `exec` file has a writer. */
  execWriter = false;
  /**
   * Something may have been put in the session directory (its `fs/` was used, the `exec` file
   * written, a program started there): at the end its entries are listed first rather than the
   * directory being removed outright.
   */
  dirUsed = false;
  private readonly waiters: { resolve(): void }[] = [];
  private killTimer: NodeJS.Timeout | undefined;
  private released = false;
  /** Process group of the program (kept after it exits, to end its leftover children). */
  private pgid = -1;
  private execDone: Promise<unknown> = Promise.resolve();
  /**
   * The main process's pid and start time (Date.now()), once a program started (it may have left
   * processes outside its group).
   */
  programStart: { pid: number; at: number } | undefined;
  /** Resolves once the processes of the session that left its group are ended (see release). */
  private swept: Promise<void> = Promise.resolve();
  private resolveGone!: () => void;
  /** Resolves once the session is wiped, its program gone and its directory removed. */
  readonly gone: Promise<void> = new Promise((r) => {
    this.resolveGone = r;
  });

  constructor(
    readonly id: number,
    public owner: User,
    /** The session's private directory (served as `fs/`). */
    readonly dir: string,
    env: Buffer,
    private readonly host: SessionHost,
  ) {
    this.env = Buffer.from(env);
  }

  /** `<jobid>/<rank>` */
  get idText(): string {
    return `${this.jobId}/${this.rank}`;
  }

  get running(): boolean {
    return this.state === State.Running;
  }

  incref(): void {
    this.refs++;
  }

  decref(): void {
    this.refs--;
    this.maybeWipe();
  }

  /**
   * Wipe a normal session that no fid references any more — even when its program still runs:
   * a client that goes away leaves nothing behind. Persistent sessions wait for `wipe`.
   */
  maybeWipe(): void {
    if (this.refs <= 0 && this.type === "normal") this.wipe();
  }

  /** Resolves when the program has ended (immediately if it never ran or was wiped). */
  waitExit(signal?: AbortSignal): Promise<void> {
    if (this.state === State.Finished || this.state === State.Wiped) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const w = {
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  /** `wait` file content: the raw status, or empty when unknown. */
  get waitText(): string {
    return this.status === undefined ? "" : String(this.status);
  }

  /**
   * `exec [program [cwd]]`: start the main process in its own process group (and session), with
   * stdio connected to the session streams.
   */
  exec(
    program: string | undefined,
    cwd: string | undefined,
    ident: ExecIdentity,
    parent: string,
  ): Promise<void> {
    // Answered once the program is on its way (the fork helper has the request), as the original
    // answered right after its fork, before the program's execve; else once the start is over
    // (spawn(), or an error refusing the exec). A client that sends its next requests at once
    // (reads of stdout and wait, input) is not kept waiting for the program's start; requests
    // that need its pid wait for it (afterExec).
    let answered = false;
    let answer!: () => void;
    const accepted = new Promise<void>((resolve) => {
      answer = () => {
        answered = true;
        resolve();
      };
    });
    const run = this.startProgram(program, cwd, ident, parent, answer);
    // A second exec, refused at once, must not stand for the first one's start still under way.
    const before = this.execDone;
    this.execDone = Promise.all([
      before,
      run.catch((err) => {
        if (answered && !(err instanceof XcpuError))
          this.host.log.warn({ err, sid: this.id }, "exec failed after it was answered");
      }),
    ]);
    return Promise.race([accepted, run]);
  }

  /**
   * `signal` and `kill` from another fid or connection while an exec is under way wait for it to
   * end, as with the original, whose exec was done before its next request: the program they are
   * meant for has no pid yet.
   */
  async afterExec(): Promise<void> {
    await this.execDone;
  }

  private async startProgram(
    program: string | undefined,
    cwd: string | undefined,
    ident: ExecIdentity,
    parent: string,
    answer: () => void,
  ): Promise<void> {
    if (this.state === State.Wiped) throw new XcpuError("session wiped");
    if (this.state !== State.Initializing) throw this.startedError();
    let path: string;
    if (program === undefined || program === "") {
      path = join(this.dir, "exec");
      if (!(await exists(path))) throw new XcpuError("executable not found");
    } else if (program.startsWith("/")) {
      path = program;
    } else {
      path = join(this.dir, program);
    }
    let dir = this.dir;
    if (cwd && (await isDir(cwd))) dir = cwd;
    // Re-check after the awaits: a wipe or another exec may have happened meanwhile.
    const now = this.state as State;
    if (now === State.Wiped) throw new XcpuError("session wiped");
    if (now !== State.Initializing) throw this.startedError();

    let extra = "";
    for (const [k, v] of [
      ["XCPUPATH", this.dir],
      ["XCPUSID", String(this.id)],
      ["XCPUID", this.idText],
      ["LD_LIBRARY_PATH", this.dir],
      ["XCPU_PARENT", parent],
    ] as const) {
      extra += `\n${quote(`${k}=${v}`)}`;
    }
    const fullEnv = Buffer.concat([this.env, Buffer.from(extra)]);
    let envTokens: string[];
    let argTokens: string[];
    try {
      envTokens = tokenize(fullEnv.toString("utf8"));
    } catch (err) {
      if (err instanceof QuoteError) throw new XcpuError("environment bad format");
      throw err;
    }
    try {
      argTokens = tokenize(this.argv.toString("utf8"));
    } catch (err) {
      if (err instanceof QuoteError) throw new XcpuError("arguments bad format");
      throw err;
    }
    // A C string ends at a NUL: no program could receive such a token (and the fork helper would
    // refuse it as an internal error).
    if (argTokens.some((t) => t.includes("\0"))) throw new XcpuError("arguments bad format (NUL byte)");
    if (envTokens.some((t) => t.includes("\0"))) throw new XcpuError("environment bad format (NUL byte)");
    const env: Record<string, string> = {};
    for (const t of envTokens) {
      const eq = t.indexOf("=");
      if (eq > 0) env[t.slice(0, eq)] = t.slice(eq + 1);
    }
    const argv0 = argTokens[0] ?? path;
    const args = argTokens.slice(1);
    const noRedirects = !this.redirects.stdin && !this.redirects.stdout && !this.redirects.stderr;
    const helper = noRedirects ? this.host.forkHelper?.() : undefined;
    if (helper?.alive) {
      // A directory the client named is entered with the program's own rights (a user must not
      // land in a directory they could not enter); the session directory with the server's.
      const userCwd = dir === this.dir ? undefined : dir;
      const req = { file: path, argv0, args, cwd: this.dir, userCwd, env, ...ident };
      // The request is with the helper once startByHelper returns (it sends it before its first
      // await): the exec is answered now.
      const byHelper = this.startByHelper(helper, path, req, fullEnv);
      answer();
      if (await byHelper) return;
      if ((this.state as State) === State.Wiped) return;
      // The helper is gone: spawn() starts the program; the client has had its answer, so what
      // stops it reaches the client as any failed start does, through stderr and wait.
      try {
        this.startBySpawn(path, argv0, args, env, fullEnv, dir, ident);
      } catch (err) {
        if (!(err instanceof XcpuError)) throw err;
        this.state = State.Running;
        this.notStarted(`${path}: ${err.message}`, osConstants.errno.EIO);
      }
      return;
    }
    this.startBySpawn(path, argv0, args, env, fullEnv, dir, ident);
  }

  /** exec with Node's spawn(): no fork helper, or a session with a `redirect`. */
  private startBySpawn(
    path: string,
    argv0: string,
    args: string[],
    env: Record<string, string>,
    fullEnv: Buffer,
    dir: string,
    ident: ExecIdentity,
  ): void {
    const opts: SpawnOptions = {
      cwd: dir,
      env,
      detached: true,
      stdio: [
        this.redirects.stdin?.fd ?? "pipe",
        this.redirects.stdout?.fd ?? "pipe",
        this.redirects.stderr?.fd ?? "pipe",
      ],
      argv0,
    };
    let file = path;
    let fileArgs = args;
    let startEnv = env;
    if (ident.uid !== undefined && dir !== this.dir) {
      // spawn() enters its cwd before it drops privileges: a directory the client named is entered
      // by a command already running as the user (a user must not land in a directory they could
      // not enter), as with the fork helper; spawn() enters the session directory. That command
      // is the host's perl (or sh): the loader's variables (LD_LIBRARY_PATH names the session
      // directory, where a job may have staged a libc of its own) reach only the program.
      const loader: string[] = [];
      startEnv = {};
      for (const [k, v] of Object.entries(env)) {
        if (k.startsWith("LD_")) loader.push(`${k}=${v}`);
        else startEnv[k] = v;
      }
      opts.cwd = this.dir;
      opts.env = startEnv;
      [file, fileArgs] = enterAsUser(dir, path, argv0, args, loader);
      opts.argv0 = undefined;
    }
    const groups = ident.groups ?? [];
    if (ident.uid !== undefined && groups.length > 0 && this.host.setpriv) {
      // Node cannot set supplementary groups for a child; setpriv (util-linux) sets uid, gid and
      // groups and then executes the program. setpriv runs as root, so it gets none of the
      // session's variables (LD_LIBRARY_PATH names the user's directory, and a user may set
      // LD_PRELOAD): env(1), started by setpriv as the user, puts them back for the program.
      if (file.includes("=")) throw new XcpuError("cannot run a program whose path contains '='");
      const { setpriv, env: envTool } = this.host.setpriv;
      fileArgs = [
        `--reuid=${ident.uid}`,
        `--regid=${ident.gid ?? ident.uid}`,
        `--groups=${groups.join(",")}`,
        "--",
        envTool,
        "-i",
        "--",
        ...Object.entries(startEnv).map(([k, v]) => `${k}=${v}`),
        file,
        ...fileArgs,
      ];
      file = setpriv;
      opts.env = { PATH: "/usr/bin:/bin" };
      opts.argv0 = undefined;
    } else if (ident.uid !== undefined) {
      opts.uid = ident.uid;
      opts.gid = ident.gid ?? ident.uid;
    }
    let child: ReturnType<typeof spawn> | undefined;
    try {
      child = spawn(file, fileArgs, opts);
    } catch (err) {
      const { code, syscall } = err as NodeJS.ErrnoException;
      // The child's execve refusing the arguments or environment: spawn() throws for that errno
      // instead of emitting an error; it is reported below as any failed execve.
      if (syscall !== "spawn" || code !== "E2BIG") {
        // Arguments Node refuses before forking (a NUL byte in a token, an out-of-range id).
        this.host.log.warn({ err, sid: this.id }, "cannot start program");
        throw new XcpuError(`cannot fork: ${(err as Error).message}`);
      }
    }
    this.state = State.Running;
    this.dirUsed = true;
    this.env = fullEnv;
    if (!child) {
      this.notStarted(`${path}: ${errnoText(errnoOf("E2BIG"))}`, errnoOf("E2BIG"));
      return;
    }
    {
      let done = false;
      child.on("error", (err: NodeJS.ErrnoException) => {
        if (done || child.pid !== undefined) return;
        done = true;
        // Node's message names what it ran (setpriv or the directory-entering perl, perhaps):
        // the client asked for `path`.
        const why =
          err.code === "ENOENT"
            ? missingInterpreter(path)
            : err.code === "EACCES" && onNoexecMount(path)
              ? NOEXEC_WHY
              : "";
        this.notStarted(
          `${path}: ${err.code ? `${errnoText(errnoOf(err.code))}${why}` : err.message}`,
          errnoOf(err.code),
        );
      });
      child.once("exit", (code, sig) => {
        if (done) return;
        done = true;
        this.ended(waitStatus(code, sig));
      });
    }
    if (child.pid !== undefined) this.started(child.pid, child.stdin, child.stdout, child.stderr);
    this.closeRedirects();
    this.host.log.debug({ sid: this.id, pid: child.pid, path }, "exec");
  }

  /**
   * exec through the fork helper: the same states, streams and reports as with spawn(). False when
   * the helper failed (it is gone): nothing was started, and the caller uses spawn().
   */
  private async startByHelper(
    helper: ForkHelper,
    path: string,
    req: Parameters<ForkHelper["spawn"]>[0],
    fullEnv: Buffer,
  ): Promise<boolean> {
    // Running from here on: a second exec is refused while the helper forks.
    this.state = State.Running;
    this.dirUsed = true;
    const env = this.env;
    this.env = fullEnv;
    let child: HelperChild;
    try {
      child = await helper.spawn(req);
    } catch (err) {
      if (!(err instanceof StartError)) {
        this.host.log.warn({ err, sid: this.id }, "fork helper failed; starting the program with spawn()");
        if ((this.state as State) === State.Running) this.state = State.Initializing;
        this.env = env;
        return false;
      }
      this.notStarted(`${path}: ${err.message}`, err.errno);
      return true;
    }
    // The raw status keeps the core-dump bit (signal + 128), as wait(2) gives it. Listened to
    // only once the start is recorded: a program that ended at once may have been reported ended
    // in the same read as started, and onExit then calls back at once; ended() before started()
    // left the session with the pid of a reaped process (which `kill` or `signal` would then
    // hit, whoever has it now) and a stdin pipe nothing would close.
    const onExit = () =>
      child.onExit((code, sig, core) => this.ended(waitStatus(code, sig) | (sig && core ? 0x80 : 0)));
    if ((this.state as State) === State.Wiped) {
      // Wiped while it was being started: it goes at once.
      this.programStart = { pid: child.pid, at: Date.now() };
      this.pid = child.pid;
      this.pgid = child.pid;
      child.stdin?.destroy();
      child.stdout.destroy();
      child.stderr.destroy();
      onExit();
      // Not when it was reported ended already (ended() has done it): its pid may be reused.
      if (this.pid === child.pid) this.killGroup(child.pid, "SIGKILL");
      return true;
    }
    this.started(child.pid, child.stdin, child.stdout, child.stderr);
    this.pipesReleased = child.released;
    onExit();
    this.host.log.debug({ sid: this.id, pid: child.pid, path }, "exec");
    return true;
  }

  /** The main process runs: its pid is the session's process group; its pipes are the streams. */
  private started(
    pid: number,
    stdin: Writable | null,
    stdout: Readable | null,
    stderr: Readable | null,
  ): void {
    this.pid = pid;
    this.pgid = pid;
    this.programStart = { pid, at: Date.now() };
    if (stdin) this.stdin.attach(stdin);
    else this.stdin.detach();
    this.stdout.attach(stdout ?? Readable.from([]));
    this.stderr.attach(stderr ?? Readable.from([]));
    this.host.changed(this);
  }

  /** The program could not be started: reported like a child whose execve failed. */
  private notStarted(message: string, errno: number): void {
    this.stdout.attach(Readable.from([]));
    this.stderr.attach(Readable.from([Buffer.from(`${message}\n`)]));
    this.stdin.detach();
    this.ended(errno << 8 || ENOENT_STATUS);
  }

  private ended(status: number): void {
    this.status = status;
    const pgid = this.pid;
    this.pid = -1;
    if (this.state === State.Running) this.state = State.Finished;
    this.stdin.detach();
    this.host.changed(this);
    // Output may still be in flight in the pipes; they end on their own (EOF). A wiped session has
    // already closed them.
    for (const w of this.waiters.splice(0)) w.resolve();
    if (this.state === State.Wiped) {
      if (pgid > 0) this.killGroup(pgid, "SIGKILL");
      this.release();
    }
  }

  /**
   * The session is given to `owner` (wstat of its owner): the reads of its files still waiting
   * (stdout, stderr, stdio, wait) are woken, and fail, as the calls of the previous owner's fids
   * do from now on (fsys.ts ownerChecked); what they waited for stays for the new owner.
   */
  changeOwner(owner: User): void {
    this.owner = owner;
    this.owners++;
    this.stdout.wakeAll();
    this.stderr.wakeAll();
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  /** Send a signal to the main process (no-op when nothing runs). */
  signal(sig: number): void {
    if (this.pid > 0) {
      try {
        process.kill(this.pid, sig);
      } catch {
        // already gone
      }
    }
  }

  /** `kill`: signal the whole process group of the session. */
  killGroup(pgid = this.pid, sig: NodeJS.Signals | number = "SIGTERM"): void {
    if (pgid <= 0) return;
    // The main process, not reported ended: perhaps just forked, before it has made its group.
    if (pgid === this.pid) {
      signalStarted(pgid, sig);
      return;
    }
    try {
      process.kill(-pgid, sig);
    } catch {
      // no such group
    }
  }

  /**
   * Wipe: remove the session from the tree and answer waiting reads now; then, once the reply to
   * the request that wiped it has gone out (a clunk, usually), close its streams, end its process
   * group (SIGTERM, then SIGKILL after a grace period) and release its directory once the program
   * is gone.
   */
  wipe(): void {
    if (this.state === State.Wiped) return;
    const wasRunning = this.state === State.Running;
    this.state = State.Wiped;
    this.host.log.debug({ sid: this.id }, "wipe");
    for (const w of this.waiters.splice(0)) w.resolve();
    setImmediate(() => this.endWiped(wasRunning));
  }

  private endWiped(wasRunning: boolean): void {
    this.stdin.close();
    this.stdout.close();
    this.stderr.close();
    if (wasRunning && this.pid > 0) {
      const pgid = this.pid;
      this.killGroup(pgid, "SIGTERM");
      this.killTimer = setTimeout(() => this.killGroup(pgid, "SIGKILL"), KILL_GRACE_MS);
      this.killTimer.unref();
    } else {
      // Children left behind by a program that already exited.
      this.killGroup(this.pgid, "SIGKILL");
      this.release();
    }
  }

  /** What a command that needs a session not started yet (exec, redirect) answers afterwards. */
  startedError(): XcpuError {
    return new XcpuError(
      this.state === State.Finished
        ? "session already ran its program (one per session)"
        : "session already running",
    );
  }

  /** Close the files opened by `redirect` (the child has its own copies once started). */
  closeRedirects(): void {
    for (const [name, fh] of Object.entries(this.redirects)) {
      if (this.state !== State.Wiped) this.redirected.add(name);
      void fh?.close().catch(() => {});
    }
    this.redirects = {};
  }

  /** The program (if any) is gone: remove the directory and forget the session. */
  private release(): void {
    if (this.released) return;
    this.closeRedirects();
    this.released = true;
    if (this.killTimer) clearTimeout(this.killTimer);
    // Its process group is killed; processes that left the group are found by their XCPUPATH, in
    // the background (batched with other sessions': a /proc scan, see escapees.ts).
    if (this.programStart && this.host.sweep) this.swept = this.host.sweep(this);
    const done = () => {
      this.host.destroyed(this);
      this.resolveGone();
    };
    if (this.host.retain) done();
    else
      removeTree(this.dir, this.dirUsed)
        .catch(async (err) => {
          // A process that left the group may have been filling it: once more after it is ended.
          if (!this.programStart) throw err;
          await this.swept;
          await removeWithin(this.dir);
        })
        .catch((err) => this.host.log.warn({ err, dir: this.dir }, "cannot remove session directory"))
        .finally(done);
  }

  /** Wipe and wait until the program has exited and the directory is gone (for shutdown). */
  async shutdown(): Promise<void> {
    const pgid = this.pid;
    this.wipe();
    if (pgid > 0) this.killGroup(pgid, "SIGKILL");
    await this.gone;
    await this.swept;
  }
}

/** The errno of a spawn() error code (ENOENT, EACCES, EMFILE, ...); 2 when unknown. */
function errnoOf(code: string | undefined): number {
  const n = code === undefined ? undefined : (osConstants.errno as Record<string, number>)[code];
  return n ?? 2;
}

/**
 * Remove a session directory and everything in it, as fs.rm does (recursive, force), in fewer
 * file system calls: an unused directory takes one rmdir; one with files takes lstat, a listing,
 * one unlink per file and rmdir. Like fs.rm the directory is checked with lstat (or by rmdir,
 * which does not follow a symbolic link) before it is listed. The listing and the unlinks are
 * synchronous while the directory is small and flat, the usual session (tens of microseconds
 * each, about the CPU of one round trip through the thread pool); the rmdir goes through the
 * thread pool: on ext4 it takes a few hundred microseconds (the directory's inode passes through
 * the orphan list), which the server's other clients would otherwise wait for. A subdirectory, more
 * than SYNC_REMOVE_MAX entries, a file that turned into a directory or any other error leaves
 * the rest to removeWithin (asynchronous, and never led out of the directory by a link the
 * session's programs put there).
 */
export async function removeTree(dir: string, used: boolean): Promise<void> {
  try {
    if (!used) {
      try {
        await rmdir(dir);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
      }
    }
    const st = lstatSync(dir);
    if (!st.isDirectory()) throw new Error("not a directory");
    for (const name of smallFlatListing(dir, st.size)) {
      try {
        unlinkSync(join(dir, name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    await rmdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    await removeWithin(dir);
  }
}

const SYNC_REMOVE_MAX = 64;
/** Above this directory size (bytes, as lstat gives it) the listing is not read synchronously. */
const SYNC_LIST_MAX_SIZE = 64 * 1024;

/**
 * The names in `dir`, whose lstat size is `size`; throws when the directory is large, holds more
 * than SYNC_REMOVE_MAX entries or a subdirectory.
 */
function smallFlatListing(dir: string, size: number): string[] {
  if (size > SYNC_LIST_MAX_SIZE) throw new Error("large directory");
  const entries = readdirSync(dir, { withFileTypes: true });
  if (entries.length > SYNC_REMOVE_MAX) throw new Error("many files");
  const names: string[] = [];
  for (const e of entries) {
    if (e.isDirectory()) throw new Error("subdirectories");
    names.push(e.name);
  }
  return names;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Create a session directory `<root>/xcpu-XXXXXX`, owned by the user when running as root.
 * Synchronous on purpose: two system calls on the path of every clone, which through the thread
 * pool would queue behind the removal of the previous session's directory (measured: clone open
 * 0.45 ms this way, 1.5 ms through fs/promises, in back-to-back jobs on ext4).
 */
export async function makeSessionDir(
  tmpdir: string,
  owner: { uid: number; gid: number } | undefined,
): Promise<string> {
  const dir = mkdtempSync(join(tmpdir, "xcpu-"));
  if (owner) chownSync(dir, owner.uid, owner.gid);
  return dir;
}
