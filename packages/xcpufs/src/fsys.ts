// The xcpufs file tree as a 9P backend: root files, session directories and their files.

import { randomBytes } from "node:crypto";
import { type FileHandle, readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import type { Qid, Stat } from "@clustermatic/ninep/codec";
import {
  Dialect,
  DMDIR,
  NONUNAME,
  OEXEC,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
  QTAUTH,
  QTDIR,
  QTFILE,
} from "@clustermatic/ninep/codec";
import { Ename, Errno, FsError } from "@clustermatic/ninep/errors";
import type {
  AttachRequest,
  AuthFile,
  Backend,
  Identity,
  Node,
  OpenFile,
  RequestContext,
  StatChanges,
} from "@clustermatic/ninep/server";
import { XcpuError } from "./errors.js";
import { CHALLENGE_SIZE, encryptPasskey, MAX_RESPONSE, verifyPasskey, verifyResponse } from "./keys.js";
import { openExecFile, truncateExecFile } from "./local-files.js";
import { procsText } from "./procs.js";
import { type Session, State } from "./session.js";
import { sameUser, type User } from "./users.js";
import type { Xcpufs } from "./xcpufs.js";

const R = 4;
const W = 2;
const X = 1;

/** Convert anything thrown by the xcpufs modules to the error the client sees. */
export function toWire(err: unknown): unknown {
  if (err instanceof XcpuError) return new FsError(err.message, err.errno ?? Errno.EIO);
  return err;
}

async function wire<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toWire(err);
  }
}

function slice(buf: Buffer, offset: bigint, count: number): Buffer {
  if (offset >= BigInt(buf.length)) return Buffer.alloc(0);
  const o = Number(offset);
  return buf.subarray(o, Math.min(buf.length, o + count));
}

/** Bits wanted by a 9P open mode. */
function wanted(mode: number): number {
  let w = 0;
  switch (mode & 3) {
    case OREAD:
      w = R;
      break;
    case OWRITE:
      w = W;
      break;
    case ORDWR:
      w = R | W;
      break;
    case OEXEC:
      w = X;
      break;
  }
  if (mode & OTRUNC) w |= W;
  return w;
}

interface Owner {
  uname: string;
  uid: number;
  gname: string;
  gid: number;
}

/** A growable byte buffer with positional reads and writes. */
/** Largest in-memory file (argv, env, state): a write or wstat past it is "file too large". */
const BUF_LIMIT = 1 << 20;

/** `buf` cut or zero-extended to `length` by a wstat, within BUF_LIMIT. */
function resized(buf: Buffer, length: bigint): Buffer {
  if (length > BigInt(BUF_LIMIT)) throw new FsError("file too large", Errno.EFBIG);
  const n = Number(length);
  return n <= buf.length ? buf.subarray(0, n) : Buffer.concat([buf, Buffer.alloc(n - buf.length)]);
}

/** An in-memory file's bytes (argv, env, state), grown by writes up to BUF_LIMIT. */
export class ByteBuf {
  data: Buffer;
  constructor(init: Buffer = Buffer.alloc(0)) {
    this.data = init;
  }
  read(offset: bigint, count: number): Buffer {
    return slice(this.data, offset, count);
  }
  write(offset: bigint, chunk: Uint8Array, limit = BUF_LIMIT): number {
    const end = Number(offset) + chunk.length;
    if (offset > BigInt(limit) || end > limit) throw new FsError("file too large", Errno.EFBIG);
    const o = Number(offset);
    if (end > this.data.length) {
      const grown = Buffer.alloc(end);
      this.data.copy(grown);
      this.data = grown;
    }
    Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length).copy(this.data, o);
    return chunk.length;
  }
}

/** Base of every synthetic file: qid, permission bits, ownership, stat and the permission check. */
abstract class Synth implements Node {
  abstract readonly qid: Qid;
  abstract readonly name: string;
  abstract perm: number;
  constructor(protected readonly fs: Xcpufs) {}
  abstract owner(): Owner;
  length(): number {
    return 0;
  }

  async stat(_ctx: RequestContext): Promise<Stat> {
    const o = this.owner();
    const isDir = (this.qid.type & QTDIR) !== 0;
    return {
      type: 0,
      dev: 0,
      qid: { ...this.qid },
      mode: (isDir ? DMDIR : 0) | this.perm,
      atime: this.fs.started,
      mtime: this.fs.started,
      length: BigInt(isDir ? 0 : this.length()),
      name: this.name,
      uid: o.uname,
      gid: o.gname,
      muid: o.uname,
      extension: "",
      n_uid: o.uid,
      n_gid: o.gid,
      n_muid: o.uid,
    };
  }

  /** The pool user of a request; permission denied when it left the pool meanwhile. */
  protected user(ctx: RequestContext): User {
    return this.fs.userOf(ctx.user);
  }

  /** Every requested bit must be granted (the original granted access when any bit was). */
  protected check(user: User, want: number): void {
    const o = this.owner();
    let bits: number;
    if (user.name === o.uname && user.uid === o.uid) bits = (this.perm >> 6) & 7;
    else if (this.fs.users.inGroup(user, o.gid)) bits = (this.perm >> 3) & 7;
    else bits = this.perm & 7;
    if ((bits & want) !== want) throw new FsError(Ename.Perm, Errno.EPERM);
  }

  protected checkOpen(mode: number, ctx: RequestContext): User {
    const user = this.user(ctx);
    if (mode & ORCLOSE) {
      // The staged `exec` file is a real file: the original refused its removal with the OS text.
      if (this.name === "exec") throw new FsError("Operation not permitted", Errno.EPERM);
      throw new FsError(Ename.Perm, Errno.EPERM);
    }
    this.check(user, wanted(mode));
    return user;
  }

  protected adminOwner(): Owner {
    const a = this.fs.users.admin;
    return { uname: a.name, uid: a.uid, gname: a.name, gid: a.gid };
  }
}

/** A root file whose content is computed from the server state. */
class RootFile extends Synth {
  readonly qid: Qid;
  constructor(
    fs: Xcpufs,
    readonly name: string,
    path: number,
    public perm: number,
    private readonly impl: {
      open(user: User, mode: number, ctx: RequestContext): Promise<OpenFile>;
      length?(): number;
      wstat?(changes: StatChanges, user: User): void;
    },
  ) {
    super(fs);
    this.qid = { type: QTFILE, version: 0, path: BigInt(path) };
  }
  owner(): Owner {
    return this.fs.cloneOwner && this.name === "clone" ? this.fs.cloneOwner : this.adminOwner();
  }
  override length(): number {
    return this.impl.length?.() ?? 0;
  }
  async open(mode: number, ctx: RequestContext): Promise<OpenFile> {
    return wire(async () => {
      const user = this.checkOpen(mode, ctx);
      return this.impl.open(user, mode, ctx);
    });
  }
  async wstat(changes: StatChanges, ctx: RequestContext): Promise<void> {
    const user = this.user(ctx);
    if (!this.impl.wstat) throw new FsError(Ename.Perm, Errno.EPERM);
    this.impl.wstat(changes, user);
  }
}

/**
 * A wstat that changes at most the length and the access and modification times (which command
 * and buffer files ignore): Linux v9fs follows every open(O_TRUNC), as in `echo … > ctl` on a
 * mount, with length 0 and the current time.
 */
function onlyLengthAndTimes(changes: StatChanges): boolean {
  return Object.keys(changes).every(
    (k) => changes[k as keyof StatChanges] === undefined || k === "length" || k === "mtime" || k === "atime",
  );
}

/** The root directory. */
export class RootDir extends Synth {
  readonly qid: Qid = { type: QTDIR, version: 0, path: 1n };
  readonly name = "/";
  perm = 0o555;
  readonly files: RootFile[];

  constructor(fs: Xcpufs) {
    super(fs);
    this.files = makeRootFiles(fs);
  }
  owner(): Owner {
    return this.adminOwner();
  }
  async walk1(name: string, ctx: RequestContext): Promise<Node> {
    this.check(this.user(ctx), X);
    if (name === "..") return this;
    const f = this.files.find((x) => x.name === name);
    if (f) return f;
    if (/^\d+$/.test(name)) {
      const s = this.fs.sessions.get(Number(name));
      if (s && s.state !== State.Wiped) return this.fs.sessionDir(s);
    }
    throw new FsError(Ename.NotFound, Errno.ENOENT);
  }
  async open(mode: number, ctx: RequestContext): Promise<OpenFile> {
    this.checkOpen(mode, ctx);
    return {
      list: async (c) => {
        const out: Stat[] = [];
        for (const f of this.files) out.push(await f.stat(c));
        for (const s of this.fs.sessions.values()) {
          if (s.state !== State.Wiped) out.push(await this.fs.sessionDir(s).stat(c));
        }
        return out;
      },
    };
  }
}

function textFile(text: () => Buffer | string): (user: User, mode: number) => Promise<OpenFile> {
  return async () => {
    const snap = Buffer.from(text());
    return { read: async (offset, count) => slice(snap, offset, count) };
  };
}

/** Per-fid command buffer of a ctl file: complete lines run in order, a partial tail waits. */
class LineBuffer {
  private pending = "";
  /** A character split between two writes is decoded whole. */
  private decoder = new StringDecoder("utf8");
  /** Append data; return the complete lines (without newlines). */
  push(data: Uint8Array): string[] {
    // C clients may send a fixed-size buffer: the command ends at the first NUL byte.
    const buf = Buffer.from(data);
    const nul = buf.indexOf(0);
    this.pending += this.decoder.write(nul >= 0 ? buf.subarray(0, nul) : buf);
    const lines: string[] = [];
    let nl = this.pending.indexOf("\n");
    while (nl >= 0) {
      lines.push(this.pending.slice(0, nl));
      this.pending = this.pending.slice(nl + 1);
      nl = this.pending.indexOf("\n");
    }
    if (nul >= 0 && this.pending.length > 0) {
      // The NUL ended the command (the rest is the buffer's padding): run it, do not join it to
      // whatever the next write brings.
      lines.push(this.pending + this.decoder.end());
      this.pending = "";
      this.decoder = new StringDecoder("utf8");
    }
    // A tree-spawn `clone` line lists every delegated target (about 60 bytes each): with a small
    // fan-out on a large cluster it runs to tens of KiB, written in msize-sized pieces.
    if (this.pending.length > 1 << 20) {
      this.pending = "";
      this.decoder = new StringDecoder("utf8");
      throw new XcpuError("command too long");
    }
    return lines;
  }
  clear(): void {
    this.pending = "";
    this.decoder = new StringDecoder("utf8");
  }
}

function makeRootFiles(fs: Xcpufs): RootFile[] {
  const bufFile = (get: () => ByteBuf) => ({
    length: () => get().data.length,
    open: async (_u: User, mode: number): Promise<OpenFile> => {
      if (mode & OTRUNC) get().data = Buffer.alloc(0);
      return {
        read: async (offset: bigint, count: number) => get().read(offset, count),
        write: async (offset: bigint, data: Uint8Array) => wire(async () => get().write(offset, data)),
      };
    },
    wstat: (changes: StatChanges, user: User) => {
      if (!onlyLengthAndTimes(changes) || changes.length === undefined) {
        throw new FsError(Ename.Perm, Errno.EPERM);
      }
      if (!fs.users.isAdmin(user) && !fs.users.inGroup(user, fs.users.admin.gid)) {
        throw new FsError(Ename.Perm, Errno.EPERM);
      }
      const b = get();
      b.data = resized(b.data, changes.length);
    },
  });
  return [
    new RootFile(fs, "clone", 2, 0o444, {
      open: async (user, _mode, ctx) => {
        const s = await fs.newSession(user, ctx);
        const text = Buffer.from(String(s.id));
        let closed = false;
        return {
          read: async (offset, count) => slice(text, offset, count),
          clunk: () => {
            if (closed) return;
            closed = true;
            s.decref();
          },
        };
      },
      wstat: (changes, user) => fs.wstatClone(changes, user),
    }),
    new RootFile(fs, "ctl", 10, 0o660, {
      open: async (user) => {
        const lines = new LineBuffer();
        return {
          read: async () => {
            throw new FsError(Ename.Perm, Errno.EPERM);
          },
          write: async (_offset, data) =>
            wire(async () => {
              const cmds = lines.push(data);
              try {
                for (const line of cmds) await fs.rootCommand(line, user);
              } catch (err) {
                lines.clear();
                throw err;
              }
              return data.length;
            }),
        };
      },
      wstat: (changes) => {
        // A truncating open through a shell redirection: nothing to discard server-wide.
        if (!onlyLengthAndTimes(changes)) throw new FsError(Ename.Perm, Errno.EPERM);
      },
    }),
    new RootFile(fs, "arch", 4, 0o444, { open: textFile(() => fs.arch), length: () => fs.arch.length }),
    new RootFile(
      fs,
      "env",
      5,
      0o664,
      bufFile(() => fs.rootEnv),
    ),
    new RootFile(fs, "procs", 6, 0o444, {
      open: async () => {
        const snap = Buffer.from(await procsText(fs.procTags()), "latin1");
        return { read: async (offset, count) => slice(snap, offset, count) };
      },
    }),
    new RootFile(
      fs,
      "state",
      7,
      0o664,
      bufFile(() => fs.rootState),
    ),
    new RootFile(fs, "passkey", 9, 0o444, {
      open: async (user) => {
        let snap: Buffer | undefined;
        return {
          read: async (offset, count) =>
            wire(async () => {
              // Every read from the start mints a new passkey, as the original did: libxcpu keeps
              // the file open and reads it at offset 0 whenever it needs another one. A read further
              // on continues the current one (a client reading the ciphertext in pieces).
              if (!snap || offset === 0n) {
                const pk = fs.users.mintPasskey(user);
                snap = user.key ? encryptPasskey(user.key, pk) : Buffer.from(pk);
              }
              return slice(snap, offset, count);
            }),
        };
      },
    }),
    new RootFile(fs, "pwent", 11, 0o440, { open: textFile(() => fs.users.pwent()) }),
    new RootFile(fs, "grent", 12, 0o440, { open: textFile(() => fs.users.grent()) }),
    new RootFile(fs, "sysinfo", 13, 0o444, {
      open: async () => {
        const snap = Buffer.from(await sysinfoText(fs.sessions.size));
        return { read: async (offset, count) => slice(snap, offset, count) };
      },
    }),
  ];
}

/** Extension file `sysinfo`: load, memory and uptime of the node, one `key value…` per line. */
export async function sysinfoText(sessions: number): Promise<string> {
  const read = (p: string) => readFile(p, "utf8").catch(() => "");
  const [load, mem, up] = await Promise.all([
    read("/proc/loadavg"),
    read("/proc/meminfo"),
    read("/proc/uptime"),
  ]);
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(mem)?.[1] ?? 0) * 1024;
  const l = load.split(" ");
  return (
    `load ${l[0] ?? 0} ${l[1] ?? 0} ${l[2] ?? 0}\n` +
    `memtotal ${kib("MemTotal")}\nmemavail ${kib("MemAvailable")}\n` +
    `uptime ${up.split(" ")[0] || 0}\nncpu ${availableParallelism()}\nsessions ${sessions}\n`
  );
}

const SESSION_FILES = [
  "ctl",
  "exec",
  "argv",
  "env",
  "stdin",
  "stdout",
  "stderr",
  "stdio",
  "wait",
  "id",
] as const;
type SessionFileName = (typeof SESSION_FILES)[number];
const SESSION_PERMS: Record<SessionFileName, number> = {
  ctl: 0o660,
  exec: 0o660,
  argv: 0o660,
  env: 0o660,
  stdin: 0o660,
  stdout: 0o440,
  stderr: 0o440,
  stdio: 0o660,
  wait: 0o440,
  id: 0o440,
};

function sessionOwner(fs: Xcpufs, s: Session): Owner {
  const g = fs.users.groupByGid(s.owner.gid);
  return { uname: s.owner.name, uid: s.owner.uid, gname: g?.name ?? String(s.owner.gid), gid: s.owner.gid };
}

/**
 * Makes every I/O method of an open file (`read`, `write`, directory listing, …) first call
 * `check` with its request context, which throws when the requester may no longer use it; and
 * fail, rather than answer, a call that was still waiting when the session changed hands
 * (`owners()` counts the changes; Session.changeOwner wakes the waiting reads).
 */
export function ownerChecked(
  file: Record<string, unknown>,
  check: (ctx: RequestContext) => unknown,
  owners: () => number,
): void {
  for (const name of ["read", "readInto", "write", "list", "readdir", "fsync", "lock", "getlock"]) {
    const fn = file[name];
    if (typeof fn !== "function") continue;
    file[name] = async (...a: unknown[]) => {
      check(a[a.length - 1] as RequestContext);
      const before = owners();
      const r = await (fn as (...x: unknown[]) => unknown).apply(file, a);
      if (owners() !== before) throw new FsError(Ename.Perm, Errno.EPERM);
      return r;
    };
  }
}

/** A session directory `N/`. */
export class SessionDir extends Synth {
  readonly qid: Qid;
  readonly name: string;
  perm = 0o555;
  readonly files: SessionFile[];

  constructor(
    fs: Xcpufs,
    readonly session: Session,
  ) {
    super(fs);
    this.name = String(session.id);
    this.qid = { type: QTDIR, version: 0, path: BigInt(session.id + 1) << 24n };
    this.files = SESSION_FILES.map((n, i) => new SessionFile(fs, this, n, i + 1));
  }
  owner(): Owner {
    return sessionOwner(this.fs, this.session);
  }
  /** Only the owner may go further than the directory itself. */
  ownerOnly(ctx: RequestContext): User {
    const user = this.user(ctx);
    if (!sameUser(user, this.session.owner)) throw new FsError(Ename.Perm, Errno.EPERM);
    return user;
  }
  alive(): void {
    if (this.session.state === State.Wiped) throw new FsError("session wiped", Errno.ENOENT);
  }
  async walk1(name: string, ctx: RequestContext): Promise<Node> {
    if (name === "..") return this.fs.root;
    this.check(this.user(ctx), X);
    this.alive();
    this.ownerOnly(ctx);
    if (name === "fs") return this.fs.fsRoot(this, ctx);
    const f = this.files.find((x) => x.name === name);
    if (!f) throw new FsError(Ename.NotFound, Errno.ENOENT);
    return f;
  }
  async open(mode: number, ctx: RequestContext): Promise<OpenFile> {
    this.checkOpen(mode, ctx);
    return {
      list: async (c) => {
        const out: Stat[] = [];
        for (const f of this.files) out.push(await f.stat(c));
        out.push(await this.fs.fsStat(this, c));
        return out;
      },
    };
  }
  /** Change the owner: only the owner or the admin, to a pool user named by name or numeric id. */
  async wstat(changes: StatChanges, ctx: RequestContext): Promise<void> {
    return wire(async () => {
      const user = this.user(ctx);
      const keys = Object.keys(changes).filter(
        (k) => !["uid", "n_uid", "gid", "n_gid", "muid", "n_muid"].includes(k),
      );
      if (keys.length > 0) throw new FsError("unsupported operation", Errno.EPERM);
      if (!sameUser(user, this.session.owner) && !this.fs.users.isAdmin(user)) {
        throw new FsError(Ename.Perm, Errno.EPERM);
      }
      let target: User | undefined;
      if (changes.uid !== undefined && changes.uid !== "") target = this.fs.users.byName(changes.uid);
      else if (changes.n_uid !== undefined && changes.n_uid !== NONUNAME)
        target = this.fs.users.byUid(changes.n_uid);
      else return;
      if (!target) throw new XcpuError("invalid user");
      await this.fs.chownSession(this.session, target);
    });
  }
}

/** One file of a session directory. */
class SessionFile extends Synth {
  readonly qid: Qid;
  perm: number;
  constructor(
    fs: Xcpufs,
    readonly dir: SessionDir,
    readonly name: SessionFileName,
    index: number,
  ) {
    super(fs);
    this.perm = SESSION_PERMS[name];
    this.qid = { type: QTFILE, version: 0, path: dir.qid.path + BigInt(index) };
  }
  owner(): Owner {
    return sessionOwner(this.fs, this.dir.session);
  }
  override length(): number {
    const s = this.dir.session;
    switch (this.name) {
      case "argv":
        return s.argv.length;
      case "env":
        return s.env.length;
      case "wait":
        return s.waitText.length;
      case "id":
        return s.idText.length;
      default:
        return 0;
    }
  }

  async wstat(changes: StatChanges, ctx: RequestContext): Promise<void> {
    const s = this.dir.session;
    const user = this.dir.ownerOnly(ctx);
    // A length, as the original takes it (times may come with it: see onlyLengthAndTimes).
    if (!onlyLengthAndTimes(changes) || changes.length === undefined) {
      throw new FsError("unsupported operation", Errno.EPERM);
    }
    const n = Number(changes.length);
    switch (this.name) {
      case "argv":
        s.argv = resized(s.argv, changes.length);
        return;
      case "env":
        s.env = resized(s.env, changes.length);
        return;
      case "ctl":
      case "stdin":
      case "stdout":
      case "stderr":
        return;
      case "exec":
        // The original had no wstat here, so `cp prog N/exec` through a kernel mount failed.
        if (!Number.isSafeInteger(n)) throw new FsError("file too large", Errno.EFBIG);
        return wire(() => truncateExecFile(join(s.dir, "exec"), n, this.fs.localOwner(user)));
      default:
        throw new FsError(Ename.Perm, Errno.EPERM);
    }
  }

  async open(mode: number, ctx: RequestContext): Promise<OpenFile> {
    return wire(async () => {
      const s = this.dir.session;
      this.dir.alive();
      const user = this.dir.ownerOnly(ctx);
      this.checkOpen(mode, ctx);
      if (
        s.cloning &&
        (this.name === "argv" || this.name === "env") &&
        ((mode & 3) !== OREAD || mode & OTRUNC)
      ) {
        // What a clone is copying stays as it is until the copies are made. (A `clone` naming
        // this very session as its target would otherwise empty the files it copies.)
        throw new XcpuError("cannot write while the session is cloning");
      }
      if (mode & OTRUNC) {
        if (this.name === "argv") s.argv = Buffer.alloc(0);
        else if (this.name === "env") s.env = Buffer.alloc(0);
        else if (this.name === "stdio" || this.name === "wait" || this.name === "id") {
          throw new FsError(Ename.Perm, Errno.EPERM);
        }
      }
      if (
        ["stdin", "stdout", "stderr", "stdio"].some(
          (n) =>
            n === this.name &&
            (s.redirected.has(n) ||
              (n === "stdio" && (s.redirected.has("stdin") || s.redirected.has("stdout")))),
        )
      ) {
        throw new XcpuError("redirected to local file");
      }
      const file = await this.openImpl(s, user, mode, ctx);
      // given to another user (wstat of the session's owner), the session's files are theirs
      // alone, also for fids opened before
      ownerChecked(
        file as unknown as Record<string, unknown>,
        (c: RequestContext) => {
          if (!sameUser(this.user(c), s.owner)) throw new FsError(Ename.Perm, Errno.EPERM);
        },
        () => s.owners,
      );
      s.incref();
      let closed = false;
      const inner = file.clunk;
      file.clunk = async (c) => {
        if (closed) return;
        closed = true;
        try {
          await inner?.(c);
        } finally {
          s.decref();
        }
      };
      return file;
    });
  }

  private async openImpl(
    s: Session,
    user: User,
    mode: number,
    _ctx: RequestContext,
  ): Promise<OpenFile & { clunk?: OpenFile["clunk"] }> {
    const fs = this.fs;
    const key = {};
    switch (this.name) {
      case "ctl": {
        const lines = new LineBuffer();
        return {
          // The pid of a program being started once it has one (the exec is answered before).
          read: async (offset, count) => {
            await s.afterExec();
            return slice(Buffer.from(String(s.pid)), offset, count);
          },
          write: async (_offset, data, c) =>
            wire(async () => {
              if (s.cloning) throw new XcpuError("cannot write while the session is cloning");
              const cmds = lines.push(data);
              try {
                for (const line of cmds) await fs.sessionCommand(s, line, user, c);
              } catch (err) {
                lines.clear();
                throw err;
              }
              return data.length;
            }),
        };
      }
      case "exec":
        return this.openExec(s, user, mode);
      case "argv":
      case "env": {
        const field = this.name;
        return {
          read: async (offset, count) => slice(s[field], offset, count),
          write: async (offset, data) => {
            const b = new ByteBuf(s[field]);
            // spfs append bit (0x80), as the original clients open `env`: writes go to the end.
            const n = b.write(mode & 0x80 ? BigInt(b.data.length) : offset, data);
            s[field] = b.data;
            return n;
          },
        };
      }
      case "stdin":
        return {
          read: async () => {
            throw new FsError("Cannot read", Errno.EINVAL);
          },
          write: async (_o, data, c) => wire(() => s.stdin.write(data, c.signal, key)),
          clunk: () => s.stdin.cancel(key),
        };
      case "stdout":
      case "stderr": {
        const stream = s[this.name];
        return {
          read: async (_o, count, c) => stream.read(key, count, c.signal),
          clunk: () => stream.cancel(key),
        };
      }
      case "stdio":
        return {
          read: async (_o, count, c) => s.stdout.read(key, count, c.signal),
          write: async (_o, data, c) => wire(() => s.stdin.write(data, c.signal, key)),
          clunk: () => {
            s.stdout.cancel(key);
            s.stdin.cancel(key);
          },
        };
      case "wait": {
        // A clunk of this fid ends its parked reads with no data, as stdout's do: the fid is
        // gone, and a read left parked would hold its tag (and a request slot) until the end.
        // (One controller per parked read, not AbortSignal.any: no composite signals kept per job.)
        const parked = new Set<AbortController>();
        let closed = false;
        return {
          read: async (offset, count, c) => {
            if (s.state === State.Initializing || s.state === State.Running) {
              if (c.signal.aborted) throw c.signal.reason;
              const ac = new AbortController();
              const onFlush = () => ac.abort(c.signal.reason);
              c.signal.addEventListener("abort", onFlush, { once: true });
              parked.add(ac);
              try {
                await s.waitExit(ac.signal);
              } catch (err) {
                if (closed && !c.signal.aborted) return Buffer.alloc(0);
                throw err;
              } finally {
                parked.delete(ac);
                c.signal.removeEventListener("abort", onFlush);
              }
            }
            return slice(Buffer.from(s.waitText), offset, count);
          },
          clunk: () => {
            closed = true;
            for (const ac of parked) ac.abort(new Error("clunked"));
          },
        };
      }
      case "id":
        return { read: async (offset, count) => slice(Buffer.from(s.idText), offset, count) };
    }
  }

  /**
   * The legacy `exec` file: a real file `<session dir>/exec`, one writer ever. The session
   * directory is the user's (fs/): see local-files.ts for how it is opened.
   */
  private async openExec(s: Session, user: User, mode: number): Promise<OpenFile> {
    const path = join(s.dir, "exec");
    const writing = (mode & 3) === OWRITE || (mode & 3) === ORDWR;
    const owner = this.fs.localOwner(user);
    let fh: FileHandle;
    if (writing) {
      if (s.execWriter) throw new XcpuError("Text file busy");
      s.execWriter = true;
      s.dirUsed = true;
      try {
        fh = await openExecFile(path, { write: true, read: (mode & 3) === ORDWR }, owner);
      } catch (err) {
        s.execWriter = false;
        throw err;
      }
    } else {
      try {
        fh = await openExecFile(path, { write: false, read: true }, owner);
      } catch (err) {
        if (err instanceof XcpuError) throw err;
        throw new XcpuError("No such file or directory", Errno.ENOENT);
      }
    }
    return {
      read: async (offset, count) => {
        const buf = Buffer.alloc(count);
        const { bytesRead } = await fh.read(buf, 0, count, Number(offset));
        return buf.subarray(0, bytesRead);
      },
      write: async (offset, data) => {
        const { bytesWritten } = await fh.write(data, 0, data.length, Number(offset));
        return bytesWritten;
      },
      clunk: async () => {
        await fh.close();
      },
    };
  }
}

/**
 * Challenges are cut from a pool of random bytes drawn 64 challenges at a time. OpenSSL reseeds
 * its generator on the first draw after the process forks, which a node does for every program it
 * starts: one draw per Tauth cost 70-90 µs on the launch after another. A used piece is zeroed.
 */
const challengePool = { bytes: Buffer.alloc(0), used: 0 };

function newChallenge(): Buffer {
  const p = challengePool;
  if (p.used + CHALLENGE_SIZE > p.bytes.length) {
    p.bytes = randomBytes(CHALLENGE_SIZE * 64);
    p.used = 0;
  }
  const c = Buffer.from(p.bytes.subarray(p.used, p.used + CHALLENGE_SIZE));
  p.bytes.fill(0, p.used, p.used + CHALLENGE_SIZE);
  p.used += CHALLENGE_SIZE;
  return c;
}

/**
 * The file behind an auth fid: the challenge to read, the response to write. The challenge is
 * made when first needed: clients without a key (and --no-auth nodes) never read it.
 */
export class XcpuAuth implements AuthFile {
  readonly qid: Qid = { type: QTAUTH, version: 0, path: 0n };
  private challengeBytes: Buffer | undefined;
  private response = Buffer.alloc(0);
  private verdict: boolean | undefined;

  constructor(
    private readonly fs: Xcpufs,
    private readonly user: User,
  ) {}

  private get challenge(): Buffer {
    this.challengeBytes ??= newChallenge();
    return this.challengeBytes;
  }

  async read(offset: bigint, count: number): Promise<Uint8Array> {
    return slice(this.challenge, offset, count);
  }

  async write(offset: bigint, data: Uint8Array): Promise<number> {
    const end = Number(offset) + data.length;
    if (offset > BigInt(MAX_RESPONSE) || end > MAX_RESPONSE) throw new FsError("invalid size", Errno.EINVAL);
    if (end > this.response.length) {
      const grown = Buffer.alloc(end);
      this.response.copy(grown);
      this.response = grown;
    }
    Buffer.from(data).copy(this.response, Number(offset));
    this.verdict = undefined;
    return data.length;
  }

  authenticated(who: Identity): boolean {
    let user: User;
    try {
      user = this.fs.userOf(who);
    } catch {
      return false;
    }
    if (user !== this.user) return false;
    if (this.fs.noAuth) return true;
    this.verdict ??= this.check();
    return this.verdict;
  }

  private check(): boolean {
    const u = this.user;
    const db = this.fs.users;
    // A user without a key logs in without proof, except as uid 0 (`user-add` refuses such a user;
    // one in a pool file saved before is let in only by a passkey or the admin key).
    if (!u.key && !u.alwaysFail && u.uid !== 0) return true;
    if (u.key && !u.alwaysFail && verifyResponse(u.key, this.challenge, this.response)) return true;
    if (db.consumePasskey(u, (pk) => verifyPasskey(this.challenge, pk, this.response))) return true;
    const admin = db.admin;
    if (admin.key && !admin.alwaysFail && verifyResponse(admin.key, this.challenge, this.response))
      return true;
    this.fs.log.info({ user: u.name }, "authentication failed");
    return false;
  }
}

/** The backend the 9P server serves. */
export function xcpuBackend(fs: Xcpufs): Backend {
  return {
    dialects: [Dialect.P2000, Dialect.P2000u],
    async auth(req: Identity): Promise<AuthFile> {
      return new XcpuAuth(fs, fs.userOf(req));
    },
    async attach(req: AttachRequest): Promise<Node> {
      fs.userOf(req);
      if (!req.auth && !fs.noAuth) throw new FsError(Ename.AuthFailed, Errno.EACCES);
      return fs.root;
    },
  };
}
