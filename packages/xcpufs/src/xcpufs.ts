// The node server's state: user pool, sessions, root buffers, and the ctl command interpreters.

import {
  chmodSync,
  constants,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import { type FileHandle, lstat, open, readdir, rm, rmdir } from "node:fs/promises";
import { machine as machineName, constants as osConstants, type as osType } from "node:os";
import { isAbsolute, join } from "node:path";
import type { Stat } from "@clustermatic/ninep/codec";
import { NONUNAME } from "@clustermatic/ninep/codec";
import { Ename, Errno, FsError } from "@clustermatic/ninep/errors";
import type { Identity, Node, RequestContext, StatChanges } from "@clustermatic/ninep/server";
import { type PassthroughBackend, passthrough } from "@clustermatic/ninep/server";
import { XcpuError } from "./errors.js";
import { processAlive, Sweeper } from "./escapees.js";
import { ForkHelper } from "./fork-helper.js";
import { ByteBuf, ownerChecked, RootDir, SessionDir } from "./fsys.js";
import { type LocalOwner, openRedirect, removeWithin } from "./local-files.js";
import { onNoexecMount } from "./noexec.js";
import type { ProcTag } from "./procs.js";
import { QuoteError, quote, tokenize } from "./quote.js";
import { makeSessionDir, Session, type SessionHost, State } from "./session.js";
import { parseSignal } from "./signals.js";
import { cloneSession } from "./tspawn.js";
import { sameUser, type User, type UserDb } from "./users.js";

export interface Log {
  debug(o: object, msg?: string): void;
  info(o: object, msg?: string): void;
  warn(o: object, msg?: string): void;
  error(o: object, msg?: string): void;
}

export interface XcpufsConfig {
  users: UserDb;
  /** Where session directories are made. */
  tmpdir: string;
  /** Text of the `arch` file, e.g. `/Linux/x86_64` (the original sends no newline). */
  arch: string;
  /** Accept attaches without authentication (loopback only). */
  noAuth: boolean;
  /** Run programs as the server's user (`-s`); forced when the server is not root. */
  sameUser: boolean;
  /** Keep session directories (`-r`). */
  retain: boolean;
  /** Start programs through a fork helper (native or perl) when one can run; else spawn(). */
  forkHelper?: boolean;
  /** The native fork helper's binary (native-helper.ts): used instead of the perl script. */
  nativeHelper?: string;
  /** Initial root `env` content. */
  env: string;
  log: Log;
  /** Trace of this node's own client connections (tree spawn), one line per message. */
  clientTrace?: (line: string) => void;
  /** Sessions one user may hold at once (DEFAULT_MAX_SESSIONS_PER_USER). */
  maxSessionsPerUser?: number;
}

const MAX_SID = 0x7fffffff;

/** Sessions one user may hold at once unless configured: each has a directory and a little memory. */
export const DEFAULT_MAX_SESSIONS_PER_USER = 1024;

export class Xcpufs {
  readonly users: UserDb;
  readonly sessions = new Map<number, Session>();
  readonly root: RootDir;
  readonly started = Math.floor(Date.now() / 1000);
  readonly arch: Buffer;
  readonly noAuth: boolean;
  /** Programs run as the session owner's uid/gid (root server, not same-user mode). */
  readonly switchUsers: boolean;
  readonly log: Log;
  /** This process's uid and gid (a system call each to ask; they never change). */
  private readonly own = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  /** The fork helper once started. */
  private forkHelper: ForkHelper | undefined;
  rootEnv: ByteBuf;
  rootState: ByteBuf;
  /** Owner and mode of `clone` after a wstat (restricting who may create sessions). */
  cloneOwner: { uname: string; uid: number; gname: string; gid: number } | undefined;
  private nextSid = 0;
  private readonly dirs = new WeakMap<Session, SessionDir>();
  private readonly exports = new WeakMap<Session, PassthroughBackend>();
  private readonly transient = new Map<string, User>();
  private readonly host: SessionHost;
  /**
   * Where session directories are made. As root, a directory of the server's own inside the
   * configured tmpdir (root's, mode 0711): a session directory belongs to its user, and in a
   * sticky, world-writable tmpdir (/tmp) its owner could rename it and put a link to anywhere in
   * its place, which the server would then follow as root. Otherwise the tmpdir itself.
   */
  private sessionRoot: string;
  /** The configured tmpdir (where a removed session root is made again). */
  private readonly tmpdir: string;
  readonly clientTrace: ((line: string) => void) | undefined;
  readonly maxSessionsPerUser: number;
  /** Sessions being made, per user name (see newSession). */
  private readonly makingFor = new Map<string, number>();
  private closing = false;
  /** Ends the processes of ended sessions that left their process group (escapees.ts). */
  private readonly sweeper: Sweeper;
  /** Every session root this server made (a removed one is made again under a new name). */
  private readonly roots: string[] = [];

  constructor(cfg: XcpufsConfig) {
    this.users = cfg.users;
    this.arch = Buffer.from(cfg.arch);
    this.noAuth = cfg.noAuth;
    this.switchUsers = this.own.uid === 0 && !cfg.sameUser;
    this.tmpdir = cfg.tmpdir;
    // Every server keeps its sessions in a directory of its own, named by its pid namespace and
    // pid, so that the next one finds what a killed one left (removeStaleRoots).
    this.sessionRoot = makeSessionRoot(cfg.tmpdir);
    this.roots.push(this.sessionRoot);
    this.log = cfg.log;
    this.sweeper = new Sweeper({ log: this.log });
    if (cfg.retain) markRetained(this.sessionRoot);
    else this.removeStaleRoots();
    if (onNoexecMount(this.sessionRoot)) {
      this.log.warn(
        { dir: this.sessionRoot },
        "the session directory is on a file system mounted noexec: programs copied into sessions cannot run (-t names another directory)",
      );
    }
    this.clientTrace = cfg.clientTrace;
    this.maxSessionsPerUser = cfg.maxSessionsPerUser ?? DEFAULT_MAX_SESSIONS_PER_USER;
    this.rootEnv = new ByteBuf(Buffer.from(cfg.env));
    this.rootState = new ByteBuf();
    const setprivPath = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));
    const envPath = ["/usr/bin/env", "/bin/env"].find((p) => existsSync(p));
    const setpriv = setprivPath && envPath ? { setpriv: setprivPath, env: envPath } : undefined;
    let helperTried = cfg.forkHelper === false;
    this.host = {
      // Started by startXcpufs once the server listens (see startForkHelper), or at the first
      // program when that comes first.
      forkHelper: () => {
        if (!helperTried) {
          helperTried = true;
          this.forkHelper = ForkHelper.start(this.log, { native: cfg.nativeHelper });
        }
        return this.forkHelper;
      },
      setpriv,
      retain: cfg.retain,
      sweep: (s) => this.sweeper.request({ exact: [s.dir], since: s.programStart }),
      destroyed: (s) => {
        this.sessions.delete(s.id);
        this.dirs.delete(s);
        this.exports.delete(s);
      },
      changed: () => {},
      log: this.log,
    };
    this.root = new RootDir(this);
  }

  /**
   * Starts the fork helper now rather than at the first program: starting it forks the server
   * (10-20 ms of a first job otherwise, more on a busy node), and a user's first job should not
   * pay for it. An idle helper is a process of well under 1 MB (the native one) that waits on
   * its pipe.
   */
  startForkHelper(): void {
    this.host.forkHelper?.();
  }

  /** The pool user behind a 9P identity: by numeric uid when present, else by name. */
  userOf(id: Identity): User {
    const byNum = id.n_uname !== NONUNAME && id.n_uname !== undefined;
    const u = byNum ? this.users.byUid(id.n_uname) : this.users.byName(id.uname);
    if (u) return u;
    if (this.noAuth) {
      const uid = byNum ? id.n_uname : this.own.uid;
      const key = `${id.uname}\0${uid}`;
      let t = this.transient.get(key);
      if (!t) {
        const gid = byNum ? uid : this.own.gid;
        t = { name: id.uname || String(uid), uid, gid, groups: new Set(), key: undefined, transient: true };
        if (this.transient.size > 10000) this.transient.clear();
        this.transient.set(key, t);
      }
      return t;
    }
    throw new FsError("unknown user", Errno.EIO);
  }

  sessionDir(s: Session): SessionDir {
    let d = this.dirs.get(s);
    if (!d) {
      d = new SessionDir(this, s);
      this.dirs.set(s, d);
    }
    return d;
  }

  /**
   * The server's own session root was removed from under it (a temporary-file cleaner, an
   * operator): makes a new one, with a fresh name (in a shared tmpdir the old name may be
   * anybody's by now). False when it cannot be made.
   */
  private newSessionRoot(): boolean {
    try {
      const root = makeSessionRoot(this.tmpdir);
      this.log.warn({ old: this.sessionRoot, root }, "session root directory was removed; made a new one");
      this.sessionRoot = root;
      this.roots.push(root);
      return true;
    } catch (err) {
      this.log.warn({ err }, "cannot make a new session root directory");
      return false;
    }
  }

  /**
   * Removes what a server of this pid namespace that was killed (SIGKILL, a crash) left in the
   * tmpdir: its `xcpufs-<ns>-<pid>-XXXXXX` directory, root's, when no process has that pid any
   * more (or only its zombie). Its programs may still run there (killed with their server, they
   * were not): the processes whose XCPUPATH lies in that directory are ended first. In the
   * background, never following a link (removeWithin).
   */
  private removeStaleRoots(): void {
    const ns = pidNamespace();
    if (!ns) return;
    let names: string[];
    try {
      names = readdirSync(this.tmpdir);
    } catch {
      return;
    }
    for (const name of names) {
      const m = /^xcpufs-(\d+)-(\d+)-[A-Za-z0-9]{6}$/.exec(name);
      if (!m || m[1] !== ns || Number(m[2]) === process.pid || processAlive(Number(m[2]))) continue;
      const dir = join(this.tmpdir, name);
      let retained: boolean;
      try {
        const st = lstatSync(dir);
        // Only a server of the same user's: another user's are theirs to clean.
        if (!st.isDirectory() || st.uid !== this.own.uid) continue;
        // Kept on purpose (-r): the operator removes it (its programs end all the same).
        retained = existsSync(join(dir, RETAINED_MARK));
      } catch {
        continue;
      }
      if (!retained) this.log.warn({ dir }, "removing the directory of an xcpufs that is gone");
      void this.sweeper
        .request({ under: [dir] })
        .then(() => (retained ? undefined : removeWithin(dir)))
        .catch((err) => this.log.warn({ err, dir }, "cannot remove an old session root"));
    }
  }

  /**
   * Sessions `user` holds against its limit. Sessions being made count too: clones opened
   * together all pass the count before any of them is in the table.
   */
  private sessionsHeld(user: User): number {
    let held = this.makingFor.get(user.name) ?? 0;
    for (const other of this.sessions.values()) {
      if (other.state !== State.Wiped && other.owner.name === user.name) held++;
    }
    return held;
  }

  /** Open of `clone`: a new session owned by the opener. */
  async newSession(user: User, _ctx: RequestContext): Promise<Session> {
    if (this.closing) throw new FsError("server shutting down", Errno.EIO);
    const held = this.sessionsHeld(user);
    if (held >= this.maxSessionsPerUser) {
      throw new FsError(
        `too many sessions: ${user.name} holds ${held} (the most one user may); wipe some first`,
        Errno.EAGAIN,
      );
    }
    this.makingFor.set(user.name, (this.makingFor.get(user.name) ?? 0) + 1);
    try {
      return await this.makeSession(user, _ctx);
    } finally {
      const left = (this.makingFor.get(user.name) ?? 1) - 1;
      if (left > 0) this.makingFor.set(user.name, left);
      else this.makingFor.delete(user.name);
    }
  }

  private async makeSession(user: User, _ctx: RequestContext): Promise<Session> {
    let id = this.nextSid;
    for (let tries = 0; this.sessions.has(id); tries++) {
      if (tries > MAX_SID) throw new FsError("too many sessions", Errno.EAGAIN);
      id = id >= MAX_SID ? 0 : id + 1;
    }
    this.nextSid = id >= MAX_SID ? 0 : id + 1;
    const owner = this.switchUsers ? { uid: user.uid, gid: user.gid } : undefined;
    let dir: string;
    try {
      try {
        dir = await makeSessionDir(this.sessionRoot, owner);
      } catch (err) {
        // Once more in a new session root, when the old one was removed from under the server.
        if ((err as NodeJS.ErrnoException).code !== "ENOENT" || !this.newSessionRoot()) throw err;
        dir = await makeSessionDir(this.sessionRoot, owner);
      }
    } catch (err) {
      this.log.warn({ err }, "cannot create session directory");
      // The reason without the server's own paths ("ENOSPC: no space left on device, mkdtemp '/…'").
      const reason = (err as Error).message.split(", ")[0];
      throw new FsError(`cannot create session directory: ${reason}`, Errno.EIO);
    }
    if (this.closing) {
      void rm(dir, { recursive: true, force: true }).catch(() => {});
      throw new FsError("server shutting down", Errno.EIO);
    }
    // The id may have been taken while the directory was made (another clone on the same tick).
    if (this.sessions.has(id)) {
      void rm(dir, { recursive: true, force: true }).catch(() => {});
      return this.makeSession(user, _ctx);
    }
    const s = new Session(id, user, dir, this.rootEnv.data, this.host);
    s.incref();
    this.sessions.set(id, s);
    this.log.debug({ sid: id, user: user.name, dir }, "session created");
    return s;
  }

  /** Pids of running session programs with their session and job ids. */
  procTags(): Map<number, ProcTag> {
    const m = new Map<number, ProcTag>();
    for (const s of this.sessions.values()) if (s.pid > 0) m.set(s.pid, { sid: s.id, jid: s.idText });
    return m;
  }

  /** Who may change `clone`: the admin only; chmod keeps the permission bits, chown needs a pool user. */
  wstatClone(changes: StatChanges, user: User): void {
    if (!this.users.isAdmin(user)) throw new FsError(Ename.Perm, Errno.EPERM);
    const clone = this.root.files[0];
    if (!clone) return;
    const other = Object.keys(changes).filter(
      (k) => !["mode", "uid", "gid", "n_uid", "n_gid", "muid", "n_muid"].includes(k),
    );
    if (other.length > 0) throw new FsError("unsupported operation", Errno.EPERM);
    const cur = clone.owner();
    let next = { ...cur };
    if (changes.uid !== undefined && changes.uid !== "") {
      const u = this.users.byName(changes.uid);
      if (!u) throw new FsError("invalid user", Errno.EINVAL);
      next = { ...next, uname: u.name, uid: u.uid };
    } else if (changes.n_uid !== undefined && changes.n_uid !== NONUNAME) {
      const u = this.users.byUid(changes.n_uid);
      if (!u) throw new FsError("invalid user", Errno.EINVAL);
      next = { ...next, uname: u.name, uid: u.uid };
    }
    if (changes.gid !== undefined && changes.gid !== "") {
      const g = this.users.groups.get(changes.gid);
      if (!g) throw new FsError("invalid group", Errno.EINVAL);
      next = { ...next, gname: g.name, gid: g.gid };
    } else if (changes.n_gid !== undefined && changes.n_gid !== NONUNAME) {
      const g = this.users.groupByGid(changes.n_gid);
      if (!g) throw new FsError("invalid group", Errno.EINVAL);
      next = { ...next, gname: g.name, gid: g.gid };
    }
    if (changes.mode !== undefined) clone.perm = changes.mode & 0o777;
    this.cloneOwner = next;
  }

  /** Give a session (files and private directory) to another pool user. */
  async chownSession(s: Session, target: User): Promise<void> {
    const from = s.owner;
    if (sameUser(from, target)) return;
    // A session given away counts against its new owner's limit, which it may not pass: giving
    // sessions away is no way around one's own limit, nor a way to use up somebody else's.
    const held = this.sessionsHeld(target);
    if (held >= this.maxSessionsPerUser) {
      throw new FsError(
        `too many sessions: ${target.name} holds ${held} (the most one user may)`,
        Errno.EAGAIN,
      );
    }
    s.changeOwner(target);
    if (this.switchUsers) await chownTree(s.dir, from.uid, target.uid, target.gid);
  }

  /** The `fs/` directory of a session: the session's private directory, served as is. */
  async fsRoot(dir: SessionDir, ctx: RequestContext): Promise<Node> {
    const s = dir.session;
    const user = this.userOf(ctx.user);
    s.dirUsed = true;
    let pt = this.exports.get(s);
    if (!pt) {
      pt = passthrough(s.dir, { permissions: this.switchUsers ? "user" : "process", exactMode: true });
      this.exports.set(s, pt);
    }
    const inner = await pt.attach({ uname: user.name, n_uname: user.uid, aname: "" }, this.asUser(ctx, user));
    return this.wrapFs(inner, dir, true);
  }

  /** Stat of `fs` for a session directory listing. */
  async fsStat(dir: SessionDir, ctx: RequestContext): Promise<Stat> {
    const node = await this.fsRoot(dir, ctx);
    return node.stat(ctx);
  }

  private asUser(ctx: RequestContext, user: User): RequestContext {
    return new UserContext(ctx, { uname: user.name, n_uname: user.uid, aname: "" });
  }

  /** Whose rights the server checks when it opens a file for `user` (only when running as root). */
  localOwner(user: User): LocalOwner | undefined {
    if (!this.switchUsers) return undefined;
    return { uid: user.uid, gid: user.gid, gids: [user.gid, ...this.users.supplementaryGids(user)] };
  }

  /**
   * Wrap a node of a session's `fs/` tree: `..` at the top returns to the session directory,
   * every open file holds a reference on the session, requests run as the pool user.
   */
  private wrapFs(node: Node, dir: SessionDir, top: boolean): Node {
    const s = dir.session;
    const fs = this;
    const userCtx = (ctx: RequestContext) => fs.asUser(ctx, fs.userOf(ctx.user));
    // A session given to another user (wstat of its owner) is no longer the old owner's: fids
    // walked or opened before then are refused from then on, not only new walks.
    const owned = (ctx: RequestContext): RequestContext => {
      const user = fs.userOf(ctx.user);
      if (!sameUser(user, s.owner)) throw new FsError(Ename.Perm, Errno.EPERM);
      return fs.asUser(ctx, user);
    };
    // The open file gets its own clunk (not a new object with the file as its prototype: V8 gives
    // every object used as a prototype a map of its own, and the file's methods then see a new
    // map on each file).
    const holdOpen = <T extends { clunk?: (c: RequestContext) => void | Promise<void> }>(f: T): T => {
      ownerChecked(f as Record<string, unknown>, owned, () => s.owners);
      s.incref();
      let closed = false;
      const inner = f.clunk;
      f.clunk = async (c: RequestContext) => {
        if (closed) return;
        closed = true;
        try {
          await inner?.call(f, userCtx(c));
        } finally {
          s.decref();
        }
      };
      return f;
    };
    const alive = () => {
      if (s.state === State.Wiped) throw new FsError("session wiped", Errno.ENOENT);
    };
    const proxy = new Proxy(node, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== "function") return v;
        const fn = v as (...a: unknown[]) => unknown;
        switch (prop) {
          case "walk1":
            return async (name: string, ctx: RequestContext) => {
              if (top && name === "..") return dir;
              alive();
              return fs.wrapFs((await fn.call(target, name, owned(ctx))) as Node, dir, false);
            };
          case "stat":
            return async (ctx: RequestContext) => {
              // (a session directory's listing, by anyone, includes the stat of its fs/)
              const st = (await fn.call(target, top ? userCtx(ctx) : owned(ctx))) as Stat;
              return top ? { ...st, name: "fs" } : st;
            };
          case "open":
          case "lopen":
            return async (mode: number, ctx: RequestContext) => {
              alive();
              return holdOpen((await fn.call(target, mode, owned(ctx))) as { clunk?: () => void });
            };
          case "create":
            return async (req: { perm: number }, ctx: RequestContext) => {
              alive();
              // Files get the permission bits asked for (the passthrough's exactMode), as the
              // original's open(2) gave them, not the 9P mask of the session directory (0700).
              const c = (await fn.call(target, req, owned(ctx))) as {
                node: Node;
                file: { clunk?: () => void };
              };
              return { node: fs.wrapFs(c.node, dir, false), file: holdOpen(c.file) };
            };
          case "lcreate":
            return async (...a: unknown[]) => {
              alive();
              const ctx = a[a.length - 1] as RequestContext;
              const c = (await fn.call(target, ...a.slice(0, -1), owned(ctx))) as {
                node: Node;
                file: { clunk?: () => void };
              };
              return { node: fs.wrapFs(c.node, dir, false), file: holdOpen(c.file) };
            };
          case "release":
            return fn.bind(target);
          default:
            return (...a: unknown[]) => {
              const last = a[a.length - 1] as RequestContext | undefined;
              if (last && typeof last === "object" && "signal" in last && "user" in last) {
                a[a.length - 1] = owned(last);
              }
              // Link/rename targets may be wrapped nodes: hand over the real ones.
              return fn.apply(
                target,
                a.map((x) => (x && typeof x === "object" && unwrap.has(x) ? unwrap.get(x) : x)),
              );
            };
        }
      },
    });
    unwrap.set(proxy, node);
    return proxy;
  }

  /** One line written to the root `ctl`. */
  async rootCommand(line: string, user: User): Promise<void> {
    const tokens = tokens_(line, "invalid format");
    if (tokens.length === 0) return;
    if (this.users.command(tokens)) {
      this.log.info({ user: user.name, cmd: tokens[0] }, "user pool changed");
      return;
    }
    if (tokens[0] === "kill") {
      if (tokens.length !== 3) throw new XcpuError("Usage: kill signal pid");
      const sig = parseSignal(tokens[1] as string);
      if (sig === undefined) throw new XcpuError("unsupported signal");
      const pidText = tokens[2] as string;
      // Not process groups, not init, not this server.
      if (!/^-?\d+$/.test(pidText) || Number(pidText) <= 1 || Number(pidText) === process.pid) {
        throw new XcpuError("invalid pid");
      }
      try {
        process.kill(Number(pidText), sig);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ESRCH")
          throw new XcpuError("No such process", osConstants.errno.ESRCH);
        throw new XcpuError((err as Error).message);
      }
      return;
    }
    throw new XcpuError("unknown command");
  }

  /** One line written to a session's `ctl`. */
  async sessionCommand(s: Session, line: string, user: User, ctx: RequestContext): Promise<void> {
    const tokens = tokens_(line, "invalid format");
    if (tokens.length === 0) return;
    const [cmd, ...a] = tokens as [string, ...string[]];
    switch (cmd) {
      case "exec": {
        const ident = this.switchUsers
          ? { uid: user.uid, gid: user.gid, groups: this.users.supplementaryGids(user) }
          : {};
        const remote = ctx.connection.remote;
        const colon = remote.lastIndexOf(":");
        // `a.b.c.d!port`, also for an IPv4 client of a server listening on IPv6 (`::ffff:a.b.c.d`).
        const host = colon > 0 ? remote.slice(0, colon).replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "") : "";
        const parent = colon > 0 ? `${host}!${remote.slice(colon + 1)}` : remote;
        await s.exec(a[0], a[1], ident, parent);
        return;
      }
      case "clone":
        if (a.length < 2) throw new XcpuError("too few arguments");
        if (s.state === State.Wiped) throw new XcpuError("session wiped");
        s.cloning = true;
        try {
          await cloneSession(this, s, user, a[0] as string, a[1] as string, ctx.signal);
        } finally {
          s.cloning = false;
        }
        return;
      case "wipe":
        s.wipe();
        return;
      case "signal": {
        if (a.length < 1) throw new XcpuError("argument expected");
        const sig = parseSignal(a[0] as string);
        if (sig === undefined) throw new XcpuError("unsupported signal");
        await s.afterExec();
        s.signal(sig);
        return;
      }
      case "kill":
        await s.afterExec();
        s.killGroup(s.pid, "SIGKILL");
        return;
      case "type":
        if (a[0] === "normal" || a[0] === "persistent") {
          s.type = a[0];
          return;
        }
        throw new XcpuError("invalid session type");
      case "close":
        // After a start under way, as `signal`: a pipe closed now is one the program has.
        await s.afterExec();
        if (a[0] === "stdin") s.stdin.close();
        else if (a[0] === "stdout") s.stdout.close();
        else if (a[0] === "stderr") s.stderr.close();
        else throw new XcpuError("invalid argument");
        // stdout/stderr: answered once no other copy of that pipe end is left, so the program's
        // next write gets SIGPIPE. (stdin needs no wait: its end of file follows on its own.)
        if (a[0] !== "stdin") await s.pipesReleased;
        return;
      case "id": {
        if (a.length < 1) throw new XcpuError("argument expected");
        const v = a[0] as string;
        const slash = v.indexOf("/");
        const job = slash < 0 ? v : v.slice(0, slash);
        const rankText = slash < 0 ? undefined : v.slice(slash + 1);
        let rank: number | undefined;
        if (rankText !== undefined && rankText !== "") {
          if (/^-\d+$/.test(rankText)) throw new XcpuError("negative id not permitted");
          if (!/^\d+$/.test(rankText) || Number(rankText) > MAX_SID) throw new XcpuError("syntax error");
          rank = Number(rankText);
        }
        if (slash !== 0 || job !== "") s.jobId = job;
        if (rank !== undefined) s.rank = rank;
        return;
      }
      case "redirect": {
        if (a.length < 2) throw new XcpuError("too few arguments");
        const stream = a[0] as string;
        if (stream !== "stdin" && stream !== "stdout" && stream !== "stderr")
          throw new XcpuError("invalid stream");
        if (s.state !== State.Initializing) throw s.startedError();
        const path = isAbsolute(a[1] as string) ? (a[1] as string) : join(s.dir, a[1] as string);
        const fh = await openRedirect(path, a[1] as string, stream === "stdin", this.localOwner(user));
        await s.redirects[stream]?.close();
        s.redirects[stream] = fh;
        return;
      }
      case "add":
      case "del":
        return;
      default:
        throw new XcpuError("unknown command");
    }
  }

  /** Wipe every session and wait until their programs and directories are gone. */
  async shutdown(): Promise<void> {
    this.closing = true;
    this.sweeper.hurry = true;
    await Promise.all([...this.sessions.values()].map((s) => s.shutdown()));
    // As root every program's XCPUPATH lies in a root of this server's: one more sweep of those
    // ends whatever a session's own sweep could not have seen.
    if (this.roots.length > 0) await this.sweeper.request({ under: this.roots });
    // Sessions that ended just before, whose sweep had not run yet.
    await this.sweeper.drain();
    this.forkHelper?.close();
    // Retained session directories stay, and with them the directory that holds them.
    if (!this.host.retain) await rmdir(this.sessionRoot).catch(() => {});
  }
}

/** A file in the session root of a server run with -r: a later server leaves that root alone. */
const RETAINED_MARK = ".retained";

function markRetained(root: string): void {
  try {
    writeFileSync(join(root, RETAINED_MARK), "kept by xcpufs -r: remove the directory by hand\n");
  } catch {
    // Without the mark a later server takes the root for a crashed server's and removes it.
  }
}

/** The inode of this process's pid namespace ("4026531836"), or "" where it cannot be read. */
function pidNamespace(): string {
  try {
    return /^pid:\[(\d+)\]$/.exec(readlinkSync("/proc/self/ns/pid"))?.[1] ?? "";
  } catch {
    return "";
  }
}

/**
 * The server's own directory in the tmpdir: `xcpufs-<pid namespace>-<pid>-XXXXXX`, mode 0711.
 * The name says whose it is, so that a later server (of the same user) can remove it, and end
 * its programs, should this one be killed before it could.
 */
function makeSessionRoot(tmpdir: string): string {
  const ns = pidNamespace();
  const root = mkdtempSync(join(tmpdir, ns ? `xcpufs-${ns}-${process.pid}-` : "xcpufs-"));
  chmodSync(root, 0o711);
  return root;
}

const unwrap = new WeakMap<object, object>();

/**
 * A request's context with another user. Its `signal` is the request's, read when asked for: the
 * server makes a request's AbortController on first use, which a spread copy of the context would
 * do at once. Like the server's contexts it is an own, enumerable accessor with a shared getter.
 */
export class UserContext implements RequestContext {
  declare readonly signal: AbortSignal;
  readonly dialect: RequestContext["dialect"];
  readonly msize: number;
  readonly iounit: number;
  readonly connection: RequestContext["connection"];
  constructor(
    readonly base: RequestContext,
    readonly user: Identity,
  ) {
    this.dialect = base.dialect;
    this.msize = base.msize;
    this.iounit = base.iounit;
    this.connection = base.connection;
    Object.defineProperty(this, "signal", USER_CTX_SIGNAL);
  }
}

const USER_CTX_SIGNAL: PropertyDescriptor = {
  get(this: UserContext): AbortSignal {
    return this.base.signal;
  },
  enumerable: true,
  configurable: true,
};

function tokens_(line: string, msg: string): string[] {
  try {
    // A command line may end in CRLF (typed at a terminal or written by a Windows tool).
    return tokenize(line.endsWith("\r") ? line.slice(0, -1) : line);
  } catch (err) {
    if (err instanceof QuoteError) throw new XcpuError(msg);
    throw err;
  }
}

/**
 * Gives a session directory and what the previous owner (`from`) owns in it to uid:gid, without
 * following any link. The directory is in the user's hands (the session's programs write there)
 * while the server, as root, walks it: each directory is held open (O_NOFOLLOW) and its entries are
 * reached through /proc/self/fd, so one swapped for a link to elsewhere after the listing is not
 * entered. A hard link the session's program made to somebody else's file (or, without
 * protected_hardlinks, to any file) keeps its owner. A regular file is changed through a
 * descriptor (opened without following links or blocking), so the file checked is the file changed;
 * other entries (links, FIFOs, sockets) keep their owner.
 */
async function chownTree(path: string, from: number, uid: number, gid: number, top = true): Promise<void> {
  let dir: FileHandle;
  try {
    dir = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (err) {
    if (top) throw err;
    await chownEntry(path, from, uid, gid);
    return;
  }
  try {
    if ((await dir.stat()).uid === from) await dir.chown(uid, gid);
    const here = `/proc/self/fd/${dir.fd}`;
    for (const e of await readdir(here, { withFileTypes: true })) {
      const p = `${here}/${e.name}`;
      if (e.isDirectory()) await chownTree(p, from, uid, gid, false);
      else await chownEntry(p, from, uid, gid);
    }
  } finally {
    await dir.close();
  }
}

async function chownEntry(path: string, from: number, uid: number, gid: number): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  // Only regular files change hands, through a descriptor: a link, FIFO or socket keeps its owner
  // (changed by name, the name could meanwhile be a hard link to somebody else's file); the new
  // owner may remove such an entry from the directory, which is theirs.
  if (!st || st.uid !== from || !st.isFile()) return;
  let fh: FileHandle | undefined;
  try {
    fh = await open(
      path,
      constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
    );
    // the file opened, not whatever the name leads to now
    if ((await fh.stat()).uid === from) await fh.chown(uid, gid);
  } catch {
    // swapped or gone meanwhile: nothing to give
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** Render the server's own environment as the initial root `env` (one quoted entry per line). */
export function environmentText(env: NodeJS.ProcessEnv = process.env): string {
  let s = "";
  for (const [k, v] of Object.entries(env)) if (v !== undefined) s += `${quote(`${k}=${v}`)}\n`;
  return s;
}

/** `/<OS>/<cpu>` of this machine (uname sysname and machine). */
export function localArch(): string {
  let machine = machineName();
  if (machine.startsWith("Power")) machine = "powerpc";
  const sys = osType();
  return `/${sys}/${machine}`;
}
