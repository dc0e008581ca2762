// A synthetic file tree for the server framework: directories and files whose contents come from
// code (hooks), with Plan 9 permission checks, qid allocation and lib9p-like defaults.

import {
  DMAPPEND,
  DMDIR,
  DMEXEC,
  DMREAD,
  DMWRITE,
  NONUNAME,
  OEXEC,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
} from "../codec/constants.js";
import type { Qid, Stat } from "../codec/types.js";
import { Ename, Errno, FsError } from "../errors.js";
import type {
  Backend,
  Created,
  CreateRequest,
  Identity,
  Node,
  OpenFile,
  RequestContext,
  StatChanges,
} from "./backend.js";

let nextPath = 1n;
/** Allocates a qid path unique in this process (so qids never collide across trees). */
export function allocPath(): bigint {
  return nextPath++;
}

const now = () => Math.floor(Date.now() / 1000);

/**
 * Who may do what. The default: lib9p's rules — the "other" bits for everybody, the owner bits
 * when uname (or the numeric n_uname on 9P2000.u) matches the owner, the group bits when uname
 * equals the group name or `inGroup` says so. EVERY requested bit must be granted.
 */
export interface PermissionPolicy {
  /** True if `user` belongs to group `gid` (default: uname === gid). */
  inGroup?(user: Identity, gid: string): boolean;
  /** True if `user` bypasses permission checks (default: nobody). */
  isSuperuser?(user: Identity): boolean;
}

/** Ownership and permissions common to files and directories. */
export interface SynthNodeOptions {
  /** Permission bits and DM* flags (DMDIR is set by SynthDir itself). Default 0o444 files, 0o555 dirs. */
  mode?: number;
  uid?: string;
  gid?: string;
  /** 9P2000.u numeric ids (default NONUNAME). */
  n_uid?: number;
  n_gid?: number;
  /** Permission policy; inherited from the parent when absent. */
  policy?: PermissionPolicy;
  /** Adjust the stat before it is sent (e.g. a dynamic length). */
  stat?(stat: Stat, ctx: RequestContext): Stat | Promise<Stat>;
  /** Replace the default wstat handling (S2 checks and applying name/mode/mtime/gid/length). */
  wstat?(changes: StatChanges, ctx: RequestContext): void | Promise<void>;
  /**
   * Called by Tremove (or ORCLOSE) after the permission check; default: detach from the parent if
   * it is a static child there, otherwise "remove prohibited". Throw FsError to refuse.
   */
  remove?(ctx: RequestContext): void | Promise<void>;
}

/** Base of SynthDir and SynthFile. */
export abstract class SynthNode implements Node {
  name: string;
  mode: number;
  uid: string;
  gid: string;
  muid: string;
  n_uid: number;
  n_gid: number;
  n_muid: number;
  atime: number;
  mtime: number;
  version = 0;
  readonly path: bigint;
  parent: SynthDir | undefined;
  protected opts: SynthNodeOptions;

  constructor(name: string, mode: number, opts: SynthNodeOptions) {
    if (name === "" || name === "." || name === ".." || name.includes("/")) {
      if (!(this instanceof SynthDir && name === "/"))
        throw new TypeError(`bad file name ${JSON.stringify(name)}`);
    }
    this.name = name;
    this.mode = mode >>> 0;
    this.uid = opts.uid ?? "none";
    this.gid = opts.gid ?? this.uid;
    this.muid = this.uid;
    this.n_uid = opts.n_uid ?? NONUNAME;
    this.n_gid = opts.n_gid ?? NONUNAME;
    this.n_muid = this.n_uid;
    this.atime = this.mtime = now();
    this.path = allocPath();
    this.opts = opts;
  }

  get isDir(): boolean {
    return (this.mode & DMDIR) !== 0;
  }

  get qid(): Qid {
    return { type: (this.mode >>> 24) & 0xff, version: this.version, path: this.path };
  }

  /** The permission policy in force (own, else inherited, else lib9p defaults). */
  get policy(): PermissionPolicy {
    for (let n: SynthNode | undefined = this; n; n = n.parent) if (n.opts.policy) return n.opts.policy;
    return {};
  }

  /** Records a modification: bumps qid.vers, mtime and muid. */
  touch(user?: Identity): void {
    this.version = (this.version + 1) >>> 0;
    this.atime = this.mtime = now();
    if (user) {
      this.muid = user.uname;
      this.n_muid = user.n_uname;
    }
  }

  /** The stat entry (D5, S1). */
  async stat(ctx: RequestContext): Promise<Stat> {
    const s: Stat = {
      type: 0,
      dev: 0,
      qid: this.qid,
      mode: this.mode,
      atime: this.atime,
      mtime: this.mtime,
      length: this.isDir ? 0n : this.length(),
      name: this.name,
      uid: this.uid,
      gid: this.gid,
      muid: this.muid,
      extension: "",
      n_uid: this.n_uid,
      n_gid: this.n_gid,
      n_muid: this.n_muid,
    };
    return this.opts.stat ? await this.opts.stat(s, ctx) : s;
  }

  /** Length reported by stat (files). */
  protected length(): bigint {
    return 0n;
  }

  /** Throws "permission denied" unless `user` has EVERY bit of `want` (DMREAD|DMWRITE|DMEXEC). */
  checkPerm(user: Identity, want: number): void {
    if (!hasPerm(this, user, want)) throw new FsError(Ename.Perm, Errno.EACCES);
  }

  async remove(ctx: RequestContext): Promise<void> {
    const parent = this.parent;
    if (parent) parent.checkPerm(ctx.user, DMWRITE);
    if (this.opts.remove) {
      await this.opts.remove(ctx);
      if (parent?.get(this.name) === this) parent.delete(this.name);
      return;
    }
    if (!parent || parent.get(this.name) !== this) throw new FsError(Ename.RemoveProhibited, Errno.EPERM);
    if (this instanceof SynthDir && this.entries().length > 0)
      throw new FsError(Ename.NotEmpty, Errno.ENOTEMPTY);
    parent.delete(this.name);
    parent.touch(ctx.user);
  }

  async wstat(changes: StatChanges, ctx: RequestContext): Promise<void> {
    if (this.opts.wstat) {
      await this.opts.wstat(changes, ctx);
      return;
    }
    const user = ctx.user;
    const owner = isOwner(this, user) || !!this.policy.isSuperuser?.(user);
    // S4: validate everything first, then apply.
    if (
      changes.uid !== undefined ||
      changes.n_uid !== undefined ||
      changes.muid !== undefined ||
      changes.n_muid !== undefined
    ) {
      if (changes.uid !== this.uid && changes.uid !== undefined)
        throw new FsError(Ename.WstatProhibited, Errno.EPERM);
      if (changes.n_uid !== undefined && changes.n_uid !== this.n_uid)
        throw new FsError(Ename.WstatProhibited, Errno.EPERM);
      if (changes.muid !== undefined || changes.n_muid !== undefined)
        throw new FsError(Ename.WstatProhibited, Errno.EPERM);
    }
    if (changes.extension !== undefined) throw new FsError(Ename.WstatProhibited, Errno.EPERM);
    if (changes.name !== undefined && changes.name !== this.name) {
      const parent = this.parent;
      if (!parent || parent.get(this.name) !== this) throw new FsError(Ename.WstatProhibited, Errno.EPERM);
      parent.checkPerm(user, DMWRITE);
      if (parent.get(changes.name)) throw new FsError(Ename.Exists, Errno.EEXIST);
    }
    // Setting the length a file already has changes nothing: Linux v9fs sends length 0 after every
    // open(O_TRUNC), also of command files that cannot be truncated.
    const newLength =
      changes.length !== undefined && !this.isDir && changes.length === this.length()
        ? undefined
        : changes.length;
    if (newLength !== undefined) {
      if (this.isDir) {
        if (newLength !== 0n) throw new FsError(Ename.IsDir, Errno.EISDIR);
      } else {
        this.checkPerm(user, DMWRITE);
        if (!this.canSetLength()) throw new FsError(Ename.WstatProhibited, Errno.EPERM);
      }
    }
    if (
      (changes.mode !== undefined || changes.mtime !== undefined || changes.atime !== undefined) &&
      !owner
    ) {
      throw new FsError(Ename.Perm, Errno.EPERM);
    }
    if ((changes.gid !== undefined || changes.n_gid !== undefined) && !owner)
      throw new FsError(Ename.Perm, Errno.EPERM);
    if (changes.mode !== undefined && (changes.mode & DMDIR) !== (this.mode & DMDIR)) {
      throw new FsError("can't change directory bit", Errno.EPERM);
    }
    // Apply.
    if (changes.name !== undefined && changes.name !== this.name) {
      this.parent!.renameChild(this.name, changes.name);
      this.parent!.touch(user); // 4.10: renaming a member changes the directory
    }
    if (newLength !== undefined && !this.isDir) this.setLength(newLength);
    if (changes.mode !== undefined) this.mode = changes.mode >>> 0;
    if (changes.gid !== undefined) this.gid = changes.gid;
    if (changes.n_gid !== undefined) this.n_gid = changes.n_gid;
    if (changes.atime !== undefined) this.atime = changes.atime;
    if (changes.mtime !== undefined) this.mtime = changes.mtime;
  }

  protected canSetLength(): boolean {
    return false;
  }
  protected setLength(_n: bigint): void {}

  abstract open(mode: number, ctx: RequestContext): Promise<OpenFile>;
  /** @internal Opens without permission checks (Tcreate opens the new file with any mode, O6). */
  abstract openUnchecked(mode: number, ctx: RequestContext): Promise<OpenFile>;
}

function isOwner(n: SynthNode, user: Identity): boolean {
  if (user.uname !== "" && user.uname === n.uid) return true;
  return user.n_uname !== NONUNAME && n.n_uid !== NONUNAME && user.n_uname === n.n_uid;
}

/**
 * lib9p's permission rule: true only if EVERY bit of `want` is granted by the other, owner or
 * group triple that applies to `user` (cumulatively, as lib9p does).
 */
export function hasPerm(n: SynthNode, user: Identity, want: number): boolean {
  want &= 7;
  const policy = n.policy;
  if (policy.isSuperuser?.(user)) return true;
  let m = n.mode & 7;
  if ((want & m) === want) return true;
  if (isOwner(n, user)) {
    m |= (n.mode >>> 6) & 7;
    if ((want & m) === want) return true;
  }
  const member =
    user.uname === n.gid ||
    (user.n_uname !== NONUNAME && n.n_gid !== NONUNAME && user.n_uname === n.n_gid) ||
    !!policy.inGroup?.(user, n.gid);
  if (member) {
    m |= (n.mode >>> 3) & 7;
    if ((want & m) === want) return true;
  }
  return false;
}

/** The permission bits Topen/Tcreate mode `mode` asks for (OTRUNC adds write). */
export function accessBits(mode: number): number {
  let want = 0;
  switch (mode & 3) {
    case OREAD:
      want = DMREAD;
      break;
    case OWRITE:
      want = DMWRITE;
      break;
    case ORDWR:
      want = DMREAD | DMWRITE;
      break;
    case OEXEC:
      want = DMEXEC;
      break;
  }
  if ((mode & OTRUNC) !== 0) want |= DMWRITE;
  return want;
}

// ---- directories ----------------------------------------------------------------------------

export interface SynthDirOptions extends SynthNodeOptions {
  /**
   * Members computed on every listing and lookup (xcpufs session directories, statfs per-node
   * directories). Return the SAME node objects for the same files so qids stay stable (W8).
   * Listed after the static children; a static child wins on a name clash.
   */
  dynamic?(ctx: RequestContext): Iterable<SynthNode> | Promise<Iterable<SynthNode>>;
  /**
   * Tcreate in this directory (after the server and tree checked: a directory, write permission,
   * name not present). `req.perm` already has the directory mask of O6 applied; the new file
   * should be owned by ctx.user.uname with this directory's gid. Return the new node; the tree
   * adds it as a static child and opens it with `req.mode`. Absent = "create prohibited".
   */
  create?(req: CreateRequest, ctx: RequestContext): SynthNode | Promise<SynthNode>;
}

/** A directory of a synthetic tree. */
export class SynthDir extends SynthNode {
  #children = new Map<string, SynthNode>();
  protected dirOpts: SynthDirOptions;

  constructor(name: string, opts: SynthDirOptions = {}) {
    super(name, (DMDIR | (opts.mode ?? 0o555)) >>> 0, opts);
    this.dirOpts = opts;
  }

  /** Adds a static child (replacing none: the name must be free). Returns the child. */
  add<T extends SynthNode>(child: T): T {
    if (this.#children.has(child.name)) throw new Error(`${child.name} already exists in ${this.name}`);
    child.parent = this;
    this.#children.set(child.name, child);
    return child;
  }

  /** The static child called `name`. */
  get(name: string): SynthNode | undefined {
    return this.#children.get(name);
  }

  /** Detaches a static child. */
  delete(name: string): boolean {
    const c = this.#children.get(name);
    if (!c) return false;
    this.#children.delete(name);
    if (c.parent === this) c.parent = undefined;
    return true;
  }

  /** Renames a static child. */
  renameChild(from: string, to: string): void {
    const c = this.#children.get(from);
    if (!c) throw new FsError(Ename.NotFound, Errno.ENOENT);
    this.#children.delete(from);
    c.name = to;
    this.#children.set(to, c);
  }

  /** The static children. */
  entries(): SynthNode[] {
    return [...this.#children.values()];
  }

  /** Static plus dynamic members, in order, without duplicates. */
  async members(ctx: RequestContext): Promise<SynthNode[]> {
    const out = this.entries();
    if (this.dirOpts.dynamic) {
      const seen = new Set(out.map((n) => n.name));
      for (const n of await this.dirOpts.dynamic(ctx)) {
        if (seen.has(n.name)) continue;
        seen.add(n.name);
        n.parent ??= this;
        out.push(n);
      }
    }
    return out;
  }

  async walk1(name: string, ctx: RequestContext): Promise<Node> {
    this.checkPerm(ctx.user, DMEXEC); // W4: search permission
    if (name === "..") return this.parent ?? this;
    const c = this.#children.get(name);
    if (c) return c;
    if (this.dirOpts.dynamic) {
      for (const n of await this.dirOpts.dynamic(ctx)) {
        if (n.name === name) {
          n.parent ??= this;
          return n;
        }
      }
    }
    throw new FsError(Ename.NotFound, Errno.ENOENT);
  }

  async open(mode: number, ctx: RequestContext): Promise<OpenFile> {
    this.checkPerm(ctx.user, accessBits(mode));
    this.atime = now();
    return {
      list: async (c) => {
        const nodes = await this.members(c);
        return Promise.all(nodes.map((n) => n.stat(c)));
      },
    };
  }

  async create(req: CreateRequest, ctx: RequestContext): Promise<Created> {
    if (!this.dirOpts.create) throw new FsError(Ename.CreateProhibited, Errno.EPERM);
    this.checkPerm(ctx.user, DMWRITE);
    if (this.#children.has(req.name)) throw new FsError(Ename.Exists, Errno.EEXIST);
    if (this.dirOpts.dynamic) {
      for (const n of await this.dirOpts.dynamic(ctx)) {
        if (n.name === req.name) throw new FsError(Ename.Exists, Errno.EEXIST);
      }
    }
    // O6: the new file's permissions are limited by the directory's.
    const perm =
      (req.perm & DMDIR) !== 0
        ? req.perm & (~0o777 | (this.mode & 0o777))
        : req.perm & (~0o666 | (this.mode & 0o666));
    const node = await this.dirOpts.create({ ...req, perm: perm >>> 0 }, ctx);
    if (node.name !== req.name) throw new Error(`create hook returned ${node.name} for ${req.name}`);
    if (!node.parent) this.add(node);
    this.touch(ctx.user);
    // O6: open with `mode` without checking it against the new file's permissions.
    const file = await node.openUnchecked(req.mode, ctx);
    return { node, file };
  }

  /** @internal Directories need no special handling when opened without checks. */
  openUnchecked(mode: number, ctx: RequestContext): Promise<OpenFile> {
    void mode;
    void ctx;
    return Promise.resolve({
      list: async (c: RequestContext) => Promise.all((await this.members(c)).map((n) => n.stat(c))),
    });
  }
}

// ---- files ----------------------------------------------------------------------------------

/** Per-fid handle passed to file hooks. `state` is what the `open` hook returned. */
export interface Handle<S> {
  readonly file: SynthFile<S>;
  /** Open mode (OREAD…OEXEC, OTRUNC, ORCLOSE). */
  readonly mode: number;
  readonly user: Identity;
  state: S;
}

export interface SynthFileOptions<S = undefined> extends SynthNodeOptions {
  /** Per-open setup (after the permission check); the result is the handle's state. */
  open?(h: Handle<S | undefined>, ctx: RequestContext): S | Promise<S>;
  /**
   * Read `count` bytes at `offset`. Return fewer (or none) at end of file (R2). May wait for data,
   * but must honour ctx.signal (see `abortable`). A string is sent as UTF-8.
   */
  read?(
    h: Handle<S>,
    offset: bigint,
    count: number,
    ctx: RequestContext,
  ): Uint8Array | string | Promise<Uint8Array | string>;
  /** Write; return the count written (default: all of it). */
  write?(
    h: Handle<S>,
    offset: bigint,
    data: Uint8Array,
    ctx: RequestContext,
  ): number | undefined | Promise<number | undefined>;
  /** The fid went away. */
  clunk?(h: Handle<S>, ctx: RequestContext): void | Promise<void>;
  /** Length reported by stat (default 0). */
  length?(): number | bigint;
  /** OTRUNC or a wstat of length: make the file `n` bytes long (absent: wstat length refused, OTRUNC ignored). */
  truncate?(n: bigint): void;
}

/** A file of a synthetic tree whose contents come from hooks. */
export class SynthFile<S = undefined> extends SynthNode {
  protected fileOpts: SynthFileOptions<S>;

  constructor(name: string, opts: SynthFileOptions<S> = {}) {
    super(name, (opts.mode ?? 0o444) & ~DMDIR, opts);
    this.fileOpts = opts;
  }

  protected override length(): bigint {
    const l = this.fileOpts.length?.();
    return l === undefined ? 0n : BigInt(l);
  }

  protected override canSetLength(): boolean {
    return !!this.fileOpts.truncate;
  }
  protected override setLength(n: bigint): void {
    this.fileOpts.truncate?.(n);
  }

  async open(mode: number, ctx: RequestContext): Promise<OpenFile> {
    this.checkPerm(ctx.user, accessBits(mode));
    if ((mode & ORCLOSE) !== 0) {
      if (!this.parent) throw new FsError(Ename.Perm, Errno.EACCES);
      this.parent.checkPerm(ctx.user, DMWRITE); // O3
    }
    return this.openUnchecked(mode, ctx);
  }

  /** @internal Opens without permission checks (Tcreate, O6). */
  async openUnchecked(mode: number, ctx: RequestContext): Promise<OpenFile> {
    const o = this.fileOpts;
    const h: Handle<S | undefined> = { file: this, mode, user: ctx.user, state: undefined };
    if ((mode & OTRUNC) !== 0 && (this.mode & DMAPPEND) === 0 && o.truncate) {
      o.truncate(0n);
      this.touch(ctx.user);
    }
    if (o.open) h.state = await o.open(h, ctx);
    const hh = h as Handle<S>;
    const file: OpenFile = {
      qid: this.qid,
      read: async (offset, count, c) => {
        if (!o.read) throw new FsError(Ename.Perm, Errno.EACCES);
        const r = await o.read(hh, offset, count, c);
        this.atime = now();
        return typeof r === "string" ? Buffer.from(r) : r;
      },
      write: async (offset, data, c) => {
        if (!o.write) throw new FsError(Ename.Perm, Errno.EACCES);
        const n = await o.write(hh, offset, data, c);
        this.touch(c.user);
        return n ?? data.length;
      },
      clunk: async (c) => {
        await o.clunk?.(hh, c);
      },
    };
    return file;
  }
}

// ---- helpers for the common cases -------------------------------------------------------------

/** Resolves with `p`, or rejects with the signal's reason as soon as `signal` aborts. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Bytes of `buf` from `offset`, at most `count` (R2: offset past the end → empty). */
export function sliceAt(buf: Uint8Array, offset: bigint, count: number): Uint8Array {
  if (offset >= BigInt(buf.length)) return new Uint8Array(0);
  const start = Number(offset);
  return buf.subarray(start, Math.min(buf.length, start + count));
}

const toBytes = (v: string | Uint8Array): Buffer =>
  typeof v === "string" ? Buffer.from(v, "utf8") : Buffer.from(v);

/**
 * A file holding bytes in memory. Readable per its mode; when the mode has write bits, writes
 * change the contents (append-only with DMAPPEND), OTRUNC and wstat length truncate.
 * Set `.content` to replace the contents (bumps qid.vers).
 */
export class BytesFile extends SynthFile<undefined> {
  #data: Buffer;

  constructor(name: string, content: string | Uint8Array = "", opts: SynthNodeOptions = {}) {
    const self = (): BytesFile => this;
    super(name, {
      ...opts,
      length: () => self().#data.length,
      read: (_h, offset, count) => sliceAt(self().#data, offset, count),
      write: (_h, offset, data) => self().#write(offset, data),
      truncate: (n) => self().#truncate(n),
    });
    this.#data = toBytes(content);
  }

  get content(): Buffer {
    return this.#data;
  }
  set content(v: string | Uint8Array) {
    this.#data = toBytes(v);
    this.touch();
  }

  #write(offset: bigint, data: Uint8Array): number {
    const append = (this.mode & DMAPPEND) !== 0;
    const start = append ? this.#data.length : Number(offset);
    if (!append && offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new FsError(Ename.BadOffset, Errno.EINVAL);
    const end = start + data.length;
    if (end > 64 * 1024 * 1024) throw new FsError("file too large", Errno.EFBIG);
    if (end > this.#data.length) {
      const grown = Buffer.alloc(end);
      this.#data.copy(grown);
      this.#data = grown;
    }
    this.#data.set(data, start);
    return data.length;
  }

  #truncate(n: bigint): void {
    if (n > 64n * 1024n * 1024n) throw new FsError("file too large", Errno.EFBIG);
    const len = Number(n);
    const next = Buffer.alloc(len);
    this.#data.copy(next, 0, 0, Math.min(len, this.#data.length));
    this.#data = next;
  }
}

/** A read-only file with fixed (or function-supplied, evaluated per read) content. */
export function staticFile(
  name: string,
  content: string | Uint8Array | (() => string | Uint8Array),
  opts: SynthNodeOptions = {},
): SynthFile<undefined> {
  const get = () => toBytes(typeof content === "function" ? content() : content);
  return new SynthFile<undefined>(name, {
    mode: 0o444,
    ...opts,
    length: () => get().length,
    read: (_h, offset, count) => sliceAt(get(), offset, count),
  });
}

/**
 * A read-only file whose content is generated when it is opened; each fid reads its own snapshot,
 * so offsets stay consistent between reads (R2).
 */
export function generatedFile(
  name: string,
  generate: (ctx: RequestContext) => string | Uint8Array | Promise<string | Uint8Array>,
  opts: SynthNodeOptions = {},
): SynthFile<Buffer> {
  return new SynthFile<Buffer>(name, {
    mode: 0o444,
    ...opts,
    open: async (_h, ctx) => toBytes(await generate(ctx)),
    read: (h, offset, count) => sliceAt(h.state, offset, count),
  });
}

/**
 * A write-only command file: every write is decoded as UTF-8 and split into lines; each
 * non-empty line is passed to `run` in order. A failing command fails the write with its error.
 * For Cmdtab-style tables see ctl.ts.
 */
export function commandFile(
  name: string,
  run: (line: string, ctx: RequestContext) => void | Promise<void>,
  opts: SynthNodeOptions = {},
): SynthFile<undefined> {
  return new SynthFile<undefined>(name, {
    mode: 0o222,
    ...opts,
    write: async (_h, _offset, data, ctx) => {
      const text = Buffer.from(data).toString("utf8");
      for (const line of text.split("\n")) {
        const l = line.replace(/\r$/, "");
        if (l.trim() === "") continue;
        await run(l, ctx);
      }
      return data.length;
    },
  });
}

/**
 * A Backend serving one synthetic tree (the same root for every aname), or a tree per aname
 * via a function. Serves 9P2000 and 9P2000.u by default; pass dialects to add 9P2000.L
 * (the server derives getattr, lopen, lcreate, mkdir and readdir from the tree).
 *
 * @example
 * const root = new SynthDir("/", { mode: 0o555 });
 * root.add(staticFile("hello", "hello, world\n"));
 * const server = new Server({ backend: treeBackend(root) });
 */
export function treeBackend(
  root: SynthDir | ((user: Identity, ctx: RequestContext) => SynthDir | Promise<SynthDir>),
  opts: { dialects?: Backend["dialects"] } = {},
): Backend {
  return {
    dialects: opts.dialects,
    attach: async (req, ctx) => (typeof root === "function" ? await root(req, ctx) : root),
  };
}
