// The passthrough backend's Node: one file of the exported tree, with the 9P2000 and 9P2000.u
// operations (walk, open, create, remove, stat, wstat). The 9P2000.L operations live in
// passthrough-l.ts and are reached through the methods at the end of the class.

import { execFile } from "node:child_process";
import type { BigIntStats } from "node:fs";
import {
  closeSync,
  constants,
  fchmod as fchmodCb,
  fchmodSync,
  fchown as fchownCb,
  fchownSync,
  fstatSync,
  fsync,
  ftruncate as ftruncateCb,
  futimes as futimesCb,
  lstatSync,
  openSync,
  unlinkSync,
} from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { promisify } from "node:util";
import {
  Dialect,
  DMDEVICE,
  DMDIR,
  DMLINK,
  DMNAMEDPIPE,
  DMSOCKET,
  DMSYMLINK,
  OEXEC,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
} from "../codec/constants.js";
import type { Dirent, Qid, Stat } from "../codec/types.js";
import { Ename, Errno, FsError } from "../errors.js";
import { mapLimit } from "../map-limit.js";
import type {
  Attr,
  Created,
  CreateRequest,
  Identity,
  Node,
  OpenFile,
  RequestContext,
  SetAttr,
  StatChanges,
  StatFs,
} from "./backend.js";
import type { Access } from "./passthrough-access.js";
import { R_OK, setIdBits, W_OK, X_OK } from "./passthrough-access.js";
import * as L from "./passthrough-l.js";
import {
  closeFdQuietly,
  DirIo,
  type DirSource,
  FileIo,
  fstatFd,
  type LockTable,
  NoIo,
  openFd,
} from "./passthrough-open.js";
import { checkName, type ExportRoot, type PtNode, pinnedForChild, walkOne } from "./passthrough-path.js";
import {
  dmToUnixPerm,
  dtypeOf,
  type IdNames,
  type QidMapper,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  toStat,
} from "./passthrough-stat.js";

/** State shared by every node of one passthrough backend. */
export interface PtShared {
  readonly root: ExportRoot;
  readonly qids: QidMapper;
  readonly ids: IdNames;
  readonly access: Access;
  readonly readOnly: boolean;
  readonly locks: LockTable;
  /** Follow symbolic links inside the root during 9P2000 (not .u/.L) walks. */
  readonly followLinks9P: boolean;
  /** Synchronous regular-file reads and metadata lookups (PassthroughOptions.syncIo). */
  readonly syncIo: boolean;
  /** Tcreate keeps the requested permission bits (PassthroughOptions.exactMode). */
  readonly exactMode: boolean;
  /** The files some fid names (on any connection): renames made through 9P move them along. */
  readonly held: Set<PtFile>;
}

/**
 * After `from` was renamed to `to` (components below the root): every file a fid names at or
 * below `from` is named at `to` from now on, as a fid stays on its file whatever its path does
 * (a shell's working directory, a kernel client's cached fids, an open file). `also`: a file that
 * no fid may hold yet (the one renamed).
 */
export function followRename(
  sh: PtShared,
  from: readonly string[],
  to: readonly string[],
  also?: PtFile,
  movedFile?: BigIntStats,
): void {
  const same = (a: readonly string[], b: readonly string[]) =>
    a.length === b.length && a.every((c, i) => b[i] === c);
  if (same(from, to)) return;
  // Files named `to` before were replaced (unlinked) by the rename, unless they are the moved
  // file itself (a rename between two links of one file changes nothing).
  for (const f of sh.held) {
    const ownLink = movedFile && f.st.ino === movedFile.ino && f.st.dev === movedFile.dev;
    if (!ownLink && same(f.node.via ?? f.node.rel, to)) f.markReplaced();
  }
  const moved = (rel: readonly string[]) =>
    rel.length >= from.length && from.every((c, i) => rel[i] === c)
      ? [...to, ...rel.slice(from.length)]
      : undefined;
  const apply = (f: PtFile) => {
    const { rel, name, via } = f.node;
    const newRel = moved(rel);
    const newVia = via ? moved(via) : undefined;
    if (!newRel && !newVia) return;
    // The reported name changes only when the entry clients see (a followed link's own) is `from`.
    const entry = via ?? rel;
    const itself = entry.length === from.length && (via ? newVia : newRel) !== undefined;
    f.node = {
      rel: newRel ?? rel,
      name: itself ? (to[to.length - 1] as string) : name,
      ...(via ? { via: newVia ?? via } : {}),
    };
  };
  for (const f of sh.held) apply(f);
  if (also && !sh.held.has(also)) apply(also);
}

/** Linux/Plan 9 "append" bit some 9P2000.u clients put in Topen modes (P9_OAPPEND). */
const P9_OAPPEND = 0x80;

export function readOnlyError(): FsError {
  return new FsError(Ename.ReadOnly, Errno.EROFS);
}

export function isUnix(ctx: RequestContext): boolean {
  return ctx.dialect !== Dialect.P2000;
}

const fmtOf = (st: BigIntStats) => Number(st.mode) & S_IFMT;

/** Runs a host tool (mkfifo, mknod) without a shell; rejects with an FsError on failure. */
export function runTool(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, _out, stderr) => {
      if (!err) return resolve();
      const text = String(stderr);
      if (/Operation not permitted/i.test(text)) reject(new FsError("operation not permitted", Errno.EPERM));
      else if (/File exists/i.test(text)) reject(new FsError(Ename.Exists, Errno.EEXIST));
      else if (/Permission denied/i.test(text)) reject(new FsError(Ename.Perm, Errno.EACCES));
      else reject(new FsError(`${cmd} failed: ${text.trim() || err.message}`, Errno.EIO));
    });
  });
}

/** Owner/group changes for a file just made (only when the server may give files away). */
/**
 * The mode a new directory gets: the one asked for, plus set-group-ID when its parent has it, as a
 * local mkdir(2) gives it (the exact chmod that follows creation would otherwise drop it).
 */
export function newDirMode(parentMode: bigint | number, perm: number): number {
  return perm | (Number(parentMode) & 0o2000);
}

export async function chownNew(p: string, uid: number | undefined, gid: number | undefined): Promise<void> {
  if (process.getuid?.() !== 0) return;
  if (uid === undefined && gid === undefined) return;
  await fsp.lchown(p, uid ?? -1, gid ?? -1);
}

/**
 * Sets up a file just created (O_EXCL) on descriptor `fd` at host path `p`: checks the descriptor
 * names `p`, gives it `owner`/`group` (when the server may give files away), then exactly `mode`;
 * returns its stat. With syncIo every call is synchronous, and an ownership or mode the file
 * already has is not set again.
 */
export async function setUpNew(
  sh: PtShared,
  fd: number,
  p: string,
  owner: number | undefined,
  group: number | undefined,
  mode: number,
): Promise<BigIntStats> {
  const chown = process.getuid?.() === 0 && (owner !== undefined || group !== undefined);
  if (sh.syncIo) {
    sh.root.verifyFdSync(fd, p);
    let st = fstatSync(fd, { bigint: true });
    let changed = false;
    // Owner first: chown clears the set-user/group-ID bits of a file, even for root.
    if (
      chown &&
      ((owner !== undefined && owner !== Number(st.uid)) || (group !== undefined && group !== Number(st.gid)))
    ) {
      fchownSync(fd, owner ?? -1, group ?? -1);
      changed = true;
    }
    if (changed || (Number(st.mode) & 0o7777) !== mode) {
      fchmodSync(fd, mode);
      changed = true;
    }
    if (changed) st = fstatSync(fd, { bigint: true });
    return st;
  }
  await sh.root.verifyFd(fd, p);
  if (chown) {
    await new Promise<void>((res, rej) =>
      fchownCb(fd, owner ?? -1, group ?? -1, (e) => (e ? rej(e) : res())),
    );
  }
  await new Promise<void>((res, rej) => fchmodCb(fd, mode, (e) => (e ? rej(e) : res())));
  return fstatFd(fd, false);
}

/** Undoes a creation that failed half-way: closes `fd` and removes `p`. */
export async function discardNew(fd: number, p: string, sync: boolean): Promise<void> {
  if (sync) {
    try {
      closeSync(fd);
    } catch {}
    try {
      unlinkSync(p);
    } catch {}
    return;
  }
  await closeFdQuietly(fd, false);
  await fsp.unlink(p).catch(() => {});
}

export class PtFile implements Node, DirSource {
  /** How many fids name this file (it is in sh.held while any does). */
  #holds = 0;
  /** Its regular files open on some fid: an unlinked file is still reached through them. */
  #open: Set<FileIo> | undefined;
  /** Another file was renamed over this one's name: the name is not this file's any more. */
  #replaced = false;
  /** The last refresh found the name gone and read the file through an open descriptor. */
  #nameGone = false;

  constructor(
    readonly sh: PtShared,
    public node: PtNode,
    public st: BigIntStats,
    /** 9P2000.u or .L connection (symlink qid bits, .u stat fields). */
    readonly unix: boolean,
  ) {}

  get qid(): Qid {
    return this.sh.qids.qid(this.st, this.unix);
  }

  hold(): void {
    if (this.#holds++ === 0) this.sh.held.add(this);
  }

  release(): void {
    if (this.#holds > 0 && --this.#holds === 0) this.sh.held.delete(this);
  }

  /** Another file was renamed over this one's name (followRename). */
  markReplaced(): void {
    this.#replaced = true;
  }

  /**
   * Was this file's name gone (unlinked, or another file renamed over it) at the last refresh, so
   * that only a descriptor open on a fid reaches it?
   */
  get nameGone(): boolean {
    return this.#nameGone;
  }

  /**
   * Changes already checked, made through descriptor `fd` to this file, unlinked while open on a
   * fid (a kernel client's ftruncate or fchmod of a deleted file). `mode`: the final mode bits;
   * times in seconds (microseconds are kept). A truncation clears set-ID bits as through the name.
   */
  async changeUnlinked(
    fd: number,
    c: { size?: number; uid?: number; gid?: number; mode?: number; atime?: number; mtime?: number },
    user: Identity,
  ): Promise<void> {
    const mode = Number(this.st.mode);
    if (c.size !== undefined) {
      await promisify(ftruncateCb)(fd, c.size);
      const kill = setIdBits(mode);
      if (c.mode === undefined && kill !== 0 && this.sh.access.dropsSetId(user))
        await promisify(fchmodCb)(fd, mode & 0o7777 & ~kill);
    }
    if (c.uid !== undefined || c.gid !== undefined) await promisify(fchownCb)(fd, c.uid ?? -1, c.gid ?? -1);
    if (c.mode !== undefined) await promisify(fchmodCb)(fd, c.mode);
    if (c.atime !== undefined || c.mtime !== undefined) {
      const cur = await fstatFd(fd, false);
      // half a microsecond up: libuv truncates the double back to the same microsecond
      const seconds = (ns: bigint) => (Number(ns / 1000n) + 0.5) / 1e6;
      await promisify(futimesCb)(fd, c.atime ?? seconds(cur.atimeNs), c.mtime ?? seconds(cur.mtimeNs));
    }
    await this.refresh().catch(() => {});
  }

  /** A descriptor of this file open on some fid, if any. */
  openDescriptor(): number | undefined {
    if (this.#open) for (const io of this.#open) if (io.descriptor !== undefined) return io.descriptor;
    return undefined;
  }

  get isDir(): boolean {
    return fmtOf(this.st) === S_IFDIR;
  }

  /**
   * Re-reads the file's metadata (lstat) and returns it; a file whose name is gone (unlinked) but
   * that is open on some fid is read through that descriptor, as fstat(2) would.
   */
  async refresh(): Promise<BigIntStats> {
    if (this.sh.syncIo || this.#replaced) return this.refreshSync();
    try {
      const p = await this.sh.root.checkedPath(this.node.rel);
      this.st = await fsp.lstat(p, { bigint: true });
      this.#nameGone = false;
    } catch (err) {
      const fd = this.#unlinkedDescriptor(err);
      if (fd === undefined) throw err;
      this.st = await fstatFd(fd, false);
      this.#nameGone = true;
    }
    return this.st;
  }

  /** refresh() with synchronous system calls (PtShared.syncIo). */
  refreshSync(): BigIntStats {
    try {
      if (this.#replaced) throw new FsError(Ename.NotFound, Errno.ENOENT);
      this.st = lstatSync(this.sh.root.checkedPathSync(this.node.rel), { bigint: true });
      this.#nameGone = false;
    } catch (err) {
      const fd = this.#unlinkedDescriptor(err);
      if (fd === undefined) throw err;
      this.st = fstatSync(fd, { bigint: true });
      this.#nameGone = true;
    }
    return this.st;
  }

  /** After a lookup of this file's path failed with `err`: its open descriptor if it was unlinked. */
  #unlinkedDescriptor(err: unknown): number | undefined {
    if ((err as { code?: string }).code !== "ENOENT" && !this.#replaced) return undefined;
    return this.openDescriptor();
  }

  /** Host path (parent re-checked). */
  hostPath(): Promise<string> {
    if (this.#replaced) return Promise.reject(new FsError(Ename.NotFound, Errno.ENOENT));
    return this.sh.root.checkedPath(this.node.rel);
  }

  /** A sibling object for another path of the same tree (lstat'ed). */
  async child(node: PtNode): Promise<PtFile> {
    if (this.sh.syncIo) {
      const st = lstatSync(this.sh.root.checkedPathSync(node.rel), { bigint: true });
      return new PtFile(this.sh, node, st, this.unix);
    }
    const p = await this.sh.root.checkedPath(node.rel);
    const st = await fsp.lstat(p, { bigint: true });
    return new PtFile(this.sh, node, st, this.unix);
  }

  /** The parent directory's node and its stat (the root is its own parent). */
  async parent(): Promise<PtFile> {
    const rel = this.node.rel.slice(0, -1);
    return this.child({ rel, name: rel.length === 0 ? "/" : rel[rel.length - 1]! });
  }

  /** The directory entry clients see: the link walked through (9P2000) or the file itself. */
  get entryRel(): readonly string[] {
    return this.node.via ?? this.node.rel;
  }

  /** The directory holding entryRel (for remove/rename permission checks). */
  async entryParent(): Promise<PtFile> {
    const rel = this.entryRel.slice(0, -1);
    return this.child({ rel, name: rel.length === 0 ? "/" : rel[rel.length - 1]! });
  }

  ro(): void {
    if (this.sh.readOnly) throw readOnlyError();
  }

  /**
   * After a truncation made for `user` (O_TRUNC, a size change): clear the set-ID bits an
   * unprivileged process's truncate(2) clears (this.st must be current).
   */
  async dropSetId(user: Identity, pinned?: string): Promise<void> {
    const mode = Number(this.st.mode);
    const kill = setIdBits(mode);
    if (kill === 0 || !this.sh.access.dropsSetId(user)) return;
    // `pinned`: a path from withPinned (the caller holds the file); else pin it here.
    const chmod = (p: string) => fsp.chmod(p, mode & 0o7777 & ~kill);
    if (pinned !== undefined) await chmod(pinned);
    else await this.sh.root.withPinned(this.node.rel, this.st, chmod);
    await this.refresh().catch(() => {});
  }

  /** Refreshes and requires a directory (for create, mkdir, …). Returns the directory's host path. */
  async requireDir(what: string): Promise<string> {
    const st = await this.refresh();
    if (fmtOf(st) !== S_IFDIR) throw new FsError(what, Errno.ENOTDIR);
    if (this.sh.syncIo) return this.sh.root.checkedDirSync(this.node.rel);
    return this.sh.root.checkedDir(this.node.rel);
  }

  // ---- stat -----------------------------------------------------------------------------------

  /** Stat entry as this dialect sees it; `unix` from the request's dialect. */
  async statAs(unix: boolean): Promise<Stat> {
    const st = await this.refresh();
    let linkTarget: string | undefined;
    if (unix && fmtOf(st) === S_IFLNK) {
      linkTarget = await fsp.readlink(await this.hostPath()).catch(() => "");
    }
    return toStat(st, this.node.name, { unix, qids: this.sh.qids, ids: this.sh.ids, linkTarget });
  }

  stat(ctx: RequestContext): Promise<Stat> {
    return this.statAs(isUnix(ctx));
  }

  // ---- walk -----------------------------------------------------------------------------------

  async walk1(name: string, ctx: RequestContext): Promise<Node> {
    if (this.#replaced) throw new FsError(Ename.NotFound, Errno.ENOENT);
    // One realpath check of this directory and one lstat per name (walks are the hot path of a
    // kernel mount); `..` and links followed in 9P2000 go through walkOne's rules.
    const sync = this.sh.syncIo;
    const dirPath = sync
      ? this.sh.root.checkedDirSync(this.node.rel)
      : await this.sh.root.checkedDir(this.node.rel);
    const st = sync ? lstatSync(dirPath, { bigint: true }) : await fsp.lstat(dirPath, { bigint: true });
    this.st = st;
    if (fmtOf(st) !== S_IFDIR) throw new FsError(Ename.WalkNoDir, Errno.ENOTDIR);
    this.sh.access.check(st, ctx.user, X_OK);
    const follow = !isUnix(ctx) && this.sh.followLinks9P;
    if (name === "." || name === "..")
      return this.child(await walkOne(this.sh.root, this.node, name, follow));
    checkName(name);
    const cp = path.join(dirPath, name);
    const cst = sync ? lstatSync(cp, { bigint: true }) : await fsp.lstat(cp, { bigint: true });
    if (follow && fmtOf(cst) === S_IFLNK)
      return this.child(await walkOne(this.sh.root, this.node, name, follow));
    return new PtFile(this.sh, { rel: [...this.node.rel, name], name }, cst, this.unix);
  }

  // ---- open -----------------------------------------------------------------------------------

  /**
   * The file I/O should go to: this node, or for a symbolic link its target when the target stays
   * inside the root (otherwise EACCES: a link out of the tree is visible but cannot be opened).
   */
  async ioTarget(): Promise<PtFile> {
    const st = await this.refresh();
    if (fmtOf(st) !== S_IFLNK) return this;
    const rel = await this.sh.root.resolveLink(this.node.rel);
    return this.child({ rel, name: this.node.name });
  }

  /**
   * Opens this node (already resolved by ioTarget) for I/O with Linux open flags `flags`
   * (access mode, O_TRUNC, O_APPEND). Directories must be read-only opens.
   */
  async openIo(flags: number): Promise<OpenFile> {
    const st = this.st;
    const fmt = fmtOf(st);
    const acc = flags & 3;
    if (fmt === S_IFDIR) {
      if (acc !== constants.O_RDONLY || flags & constants.O_TRUNC)
        throw new FsError(Ename.IsDir, Errno.EISDIR);
      // The descriptor held while the directory is open tells a directory removed meanwhile
      // (read as empty, as getdents(2) does) from one renamed away.
      const dh = await fsp.open(
        await this.sh.root.checkedDir(this.node.rel),
        constants.O_RDONLY | constants.O_DIRECTORY,
      );
      return new DirIo(this, this.sh.locks, dh);
    }
    if (fmt === S_IFSOCK) throw new FsError("cannot open a socket", Errno.ENXIO);
    if (fmt === S_IFLNK) throw new FsError("too many levels of symbolic links", Errno.ELOOP);
    const stream = fmt === S_IFIFO || fmt === S_IFCHR || fmt === S_IFBLK;
    let osFlags = acc | (flags & (constants.O_TRUNC | constants.O_APPEND));
    if (stream) osFlags = (osFlags & ~constants.O_TRUNC) | constants.O_NONBLOCK;
    const sync = this.sh.syncIo;
    const fd = await this.sh.root.openCheckedFd(this.node.rel, osFlags, sync);
    try {
      this.st = await fstatFd(fd, sync);
    } catch (err) {
      await closeFdQuietly(fd, sync);
      throw err;
    }
    return this.fileIo(fd, acc, stream);
  }

  /**
   * The open-file object of this file on descriptor `fd`, opened with access mode `acc` (O_RDONLY,
   * O_WRONLY or O_RDWR); `stream`: a FIFO or device. Its fstats keep this.st current.
   */
  fileIo(fd: number, acc: number, stream = false): FileIo {
    const open = (this.#open ??= new Set());
    const io = new FileIo({
      fd,
      syncMeta: this.sh.syncIo,
      qid: this.qid,
      stream,
      canRead: acc === constants.O_RDONLY || acc === constants.O_RDWR,
      canWrite: acc === constants.O_WRONLY || acc === constants.O_RDWR,
      locks: this.sh.locks,
      syncRead: this.sh.syncIo,
      onStat: (st) => {
        this.st = st;
      },
      mode: Number(this.st.mode),
      dropsSetId: (u) => this.sh.access.dropsSetId(u),
      onClose: () => open.delete(io),
    });
    open.add(io);
    return io;
  }

  async open(mode: number, ctx: RequestContext): Promise<OpenFile> {
    const acc = mode & 3;
    let want = acc === OREAD ? R_OK : acc === OWRITE ? W_OK : acc === ORDWR ? R_OK | W_OK : X_OK;
    if (mode & OTRUNC) want |= W_OK;
    if (want & W_OK || mode & ORCLOSE) this.ro();
    const target = await this.ioTarget();
    this.sh.access.check(target.st, ctx.user, want);
    if (acc === OEXEC && this.sh.access.mode === "process") {
      // open(2) never checks the execute bit: ask the OS about the server process directly.
      await fsp.access(await target.hostPath(), constants.X_OK).catch(() => {
        throw new FsError(Ename.Perm, Errno.EACCES);
      });
    }
    if (mode & ORCLOSE) {
      if (this.entryRel.length === 0) throw new FsError(Ename.Perm, Errno.EACCES);
      const parent = await this.entryParent();
      this.sh.access.check(parent.st, ctx.user, W_OK | X_OK);
    }
    let flags = acc === OEXEC ? constants.O_RDONLY : acc;
    if (mode & OTRUNC) flags |= constants.O_TRUNC;
    if (isUnix(ctx) && mode & P9_OAPPEND) flags |= constants.O_APPEND;
    const file = await target.openIo(flags);
    if (mode & OTRUNC) await target.dropSetId(ctx.user);
    if (target !== this) this.refresh().catch(() => {});
    return file;
  }

  // ---- create ---------------------------------------------------------------------------------

  async create(req: CreateRequest, ctx: RequestContext): Promise<Created> {
    this.ro();
    await this.requireDir(Ename.CreateNoDir);
    const dst = this.st;
    this.sh.access.check(dst, ctx.user, W_OK | X_OK);
    checkName(req.name);
    const unix = isUnix(ctx);
    const node: PtNode = { rel: [...this.node.rel, req.name], name: req.name };
    // The new entry is made in the directory that was checked (pinned), whatever its name holds
    // by then: a local user may swap it for a link to another directory during the call.
    return this.sh.root.withPinnedDir(
      this.node.rel,
      async (dirPath) => {
        const p = path.join(dirPath, req.name);
        const owner = this.sh.access.ownerForNew(ctx.user);
        const group = Number(dst.gid); // O6: the new file's group is the directory's
        const dirPerm = Number(dst.mode) & 0o777;

        const exact = this.sh.exactMode;
        if (req.perm & DMDIR) {
          const perm = newDirMode(
            dst.mode,
            dmToUnixPerm(exact ? req.perm : req.perm & (~0o777 | dirPerm), unix),
          );
          await fsp.mkdir(p, 0o700);
          await this.finishNew(p, perm, owner, group);
          const created = await this.child(node);
          return { node: created, file: new DirIo(created, this.sh.locks) };
        }
        if (unix && req.perm & (DMSYMLINK | DMLINK | DMDEVICE | DMNAMEDPIPE | DMSOCKET)) {
          return this.createSpecial(req, p, node, owner, group, exact ? 0o777 : dirPerm, ctx);
        }
        const perm = dmToUnixPerm(exact ? req.perm : req.perm & (~0o666 | dirPerm), unix);
        const acc = req.mode & 3;
        let flags = (acc === OEXEC ? constants.O_RDONLY : acc) | constants.O_CREAT | constants.O_EXCL;
        if (unix && req.mode & P9_OAPPEND) flags |= constants.O_APPEND;
        const sync = this.sh.syncIo;
        const fd = sync
          ? openSync(p, flags | constants.O_NOFOLLOW, 0o600)
          : await openFd(p, flags | constants.O_NOFOLLOW, 0o600);
        let file: FileIo;
        let created: PtFile;
        try {
          const mode = this.sh.access.allowedMode(perm, group, ctx.user, false);
          const st = await setUpNew(this.sh, fd, p, owner, group, mode);
          created = new PtFile(this.sh, node, st, this.unix);
          // 9P access modes: OEXEC reads.
          file = created.fileIo(fd, acc === OEXEC ? constants.O_RDONLY : acc);
        } catch (err) {
          await discardNew(fd, p, sync);
          throw err;
        }
        return { node: created, file };
      },
      this.sh.syncIo,
    );
  }

  /** chown, then chmod (exact bits, ignoring the umask; after chown, which would clear set-ID bits). */
  async finishNew(p: string, perm: number, owner: number | undefined, group: number | undefined) {
    try {
      await chownNew(p, owner, group);
      // A symbolic link has no mode of its own (chmod would change its target's); anything else is
      // pinned as it is now, so a name swapped for a link meanwhile sends the chmod nowhere else.
      const st = await fsp.lstat(p, { bigint: true });
      if (!st.isSymbolicLink()) await this.sh.root.withPinnedPath(p, st, (pp) => fsp.chmod(pp, perm));
    } catch (err) {
      await fsp.rm(p, { recursive: false, force: true }).catch(() => fsp.rmdir(p).catch(() => {}));
      throw err;
    }
  }

  private async createSpecial(
    req: CreateRequest,
    p: string,
    node: PtNode,
    owner: number | undefined,
    group: number,
    dirPerm: number,
    ctx: RequestContext,
  ): Promise<Created> {
    const perm = dmToUnixPerm(req.perm & (~0o666 | dirPerm), true);
    if (req.perm & DMSYMLINK) {
      if (req.extension.includes("\0") || req.extension === "") {
        throw new FsError("bad symbolic link target", Errno.EINVAL);
      }
      await fsp.symlink(req.extension, p);
      await chownNew(p, owner, group).catch(() => {});
      const created = await this.child(node);
      return { node: created, file: new NoIo(created.qid) };
    }
    if (req.perm & DMLINK) {
      const target = req.linkTarget;
      if (!(target instanceof PtFile) || target.sh !== this.sh) {
        throw new FsError("hard link target is not a file of this tree", Errno.EXDEV);
      }
      await L.linkInto(this, target, req.name, ctx);
      const created = await this.child(node);
      const io = await created.ioTarget();
      const acc = req.mode & 3;
      return { node: created, file: await io.openIo(acc === OEXEC ? constants.O_RDONLY : acc) };
    }
    if (req.perm & DMNAMEDPIPE) {
      await runTool("mkfifo", ["-m", (perm & 0o777).toString(8), "--", pinnedForChild(p)]);
    } else if (req.perm & DMDEVICE) {
      const m = /^\s*([bc])\s+(\d+)\s+(\d+)\s*$/.exec(req.extension);
      if (!m) throw new FsError("bad device specification (want 'b|c MAJOR MINOR')", Errno.EINVAL);
      if (!this.sh.access.isRoot(ctx.user)) throw new FsError("operation not permitted", Errno.EPERM);
      await L.makeDevice(p, m[1] === "b" ? S_IFBLK : S_IFCHR, Number(m[2]), Number(m[3]));
    } else {
      // DMSOCKET (spec 6): a socket file, as 9P2000.L's Tmknod of S_IFSOCK makes (Linux sends
      // it when a program binds a Unix socket to a name on the mount).
      await L.makeSocket(path.dirname(p), req.name);
    }
    await this.finishNew(p, this.sh.access.allowedMode(perm, group, ctx.user, false), owner, group);
    const created = await this.child(node);
    return { node: created, file: new NoIo(created.qid) };
  }

  // ---- remove ---------------------------------------------------------------------------------

  async remove(ctx: RequestContext): Promise<void> {
    this.ro();
    const entry = this.entryRel;
    if (entry.length === 0) throw new FsError("cannot remove the root of the tree", Errno.EBUSY);
    const parent = await this.entryParent();
    this.sh.access.check(parent.st, ctx.user, W_OK | X_OK);
    await this.sh.root.withPinnedDir(parent.node.rel, async (dir) => {
      const p = path.join(dir, entry[entry.length - 1]!);
      const st = await fsp.lstat(p, { bigint: true });
      this.sh.access.checkUnlink(parent.st, st.uid, ctx.user);
      if (st.isDirectory()) await fsp.rmdir(p);
      else await fsp.unlink(p);
    });
  }

  // ---- wstat ----------------------------------------------------------------------------------

  async wstat(ch: StatChanges, ctx: RequestContext): Promise<void> {
    this.ro();
    const st = await this.refresh();
    const unix = isUnix(ctx);
    const acc = this.sh.access;
    const fmt = fmtOf(st);
    const ownerName = this.sh.ids.userName(Number(st.uid));
    const prohibited = (what: string) => new FsError(`wstat prohibited: ${what}`, Errno.EPERM);

    // Validate everything first (S4).
    if (ch.uid !== undefined && ch.uid !== ownerName && this.sh.ids.uidOf(ch.uid) !== Number(st.uid)) {
      throw prohibited("owner cannot change");
    }
    if (ch.n_uid !== undefined && ch.n_uid !== 0xffffffff && ch.n_uid !== Number(st.uid)) {
      throw prohibited("owner cannot change");
    }
    if (ch.muid !== undefined && ch.muid !== ownerName) throw prohibited("muid cannot change");
    if (ch.n_muid !== undefined && ch.n_muid !== 0xffffffff && ch.n_muid !== Number(st.uid)) {
      throw prohibited("muid cannot change");
    }
    if (ch.extension !== undefined && ch.extension !== "") {
      const cur = fmt === S_IFLNK ? await fsp.readlink(await this.hostPath()) : "";
      if (ch.extension !== cur) throw prohibited("extension cannot change");
    }
    let newGid: number | undefined;
    if (ch.gid !== undefined) {
      newGid = this.sh.ids.gidOf(ch.gid);
      if (newGid === undefined) throw new FsError(`unknown group ${ch.gid}`, Errno.EINVAL);
    }
    if (ch.n_gid !== undefined && ch.n_gid !== 0xffffffff) {
      if (newGid !== undefined && newGid !== ch.n_gid) throw new FsError(Ename.BadWstat, Errno.EINVAL);
      newGid = ch.n_gid;
    }
    if (newGid === Number(st.gid)) newGid = undefined;
    if (newGid !== undefined && !acc.mayChgrp(st, ctx.user, newGid))
      throw new FsError(Ename.Perm, Errno.EPERM);
    let newMode: number | undefined;
    if (ch.mode !== undefined) {
      if (!!(ch.mode & DMDIR) !== (fmt === S_IFDIR)) throw new FsError(Ename.BadWstat, Errno.EINVAL);
      const cur = Number(st.mode) & 0o7777;
      newMode = dmToUnixPerm(ch.mode, unix) | (unix ? 0 : cur & 0o7000);
      if (newMode === cur) newMode = undefined;
      else {
        if (fmt === S_IFLNK) throw new FsError("cannot change the mode of a symbolic link", Errno.EOPNOTSUPP);
        if (!acc.isOwner(st, ctx.user)) throw new FsError(Ename.Perm, Errno.EPERM);
      }
    }
    if ((ch.mtime !== undefined || ch.atime !== undefined) && !acc.isOwner(st, ctx.user)) {
      throw new FsError(Ename.Perm, Errno.EPERM);
    }
    let newLength: bigint | undefined;
    if (ch.length !== undefined) {
      if (fmt === S_IFDIR) {
        if (ch.length !== 0n) throw new FsError("cannot set the length of a directory", Errno.EISDIR);
      } else if (fmt !== S_IFREG) {
        throw new FsError("cannot set the length of a special file", Errno.EINVAL);
      } else if (ch.length !== st.size) {
        acc.check(st, ctx.user, W_OK);
        if (ch.length > BigInt(Number.MAX_SAFE_INTEGER)) throw new FsError("file too large", Errno.EFBIG);
        newLength = ch.length;
      }
    }
    let newPath: string | undefined;
    if (ch.name !== undefined && ch.name !== this.node.name) {
      if (this.entryRel.length === 0) throw prohibited("cannot rename the root");
      checkName(ch.name);
      const parent = await this.entryParent();
      acc.check(parent.st, ctx.user, W_OK | X_OK);
      acc.checkUnlink(parent.st, st.uid, ctx.user);
      const dir = await this.sh.root.checkedDir(parent.node.rel);
      newPath = path.join(dir, ch.name);
      const exists = await fsp.lstat(newPath).then(
        () => true,
        () => false,
      );
      if (exists) throw new FsError(Ename.Exists, Errno.EEXIST);
    }

    const fd = newPath === undefined ? this.openDescriptor() : undefined;
    // (The refresh above found out whether the name is gone.)
    if (fd !== undefined && this.nameGone) {
      await this.changeUnlinked(
        fd,
        {
          size: newLength === undefined ? undefined : Number(newLength),
          gid: newGid,
          mode:
            newMode === undefined
              ? undefined
              : acc.allowedMode(newMode, newGid ?? Number(st.gid), ctx.user, false),
          atime: ch.atime,
          mtime: ch.mtime,
        },
        ctx.user,
      );
      return;
    }

    // Apply, to the file that was checked, not to whatever the name holds by then.
    await this.sh.root.withPinned(this.node.rel, st, async (pp) => {
      const link = fmt === S_IFLNK;
      if (newLength !== undefined) {
        await fsp.truncate(pp, Number(newLength));
        if (newMode === undefined) await this.dropSetId(ctx.user, pp);
      }
      if (newGid !== undefined) await (link ? fsp.lchown : fsp.chown)(pp, -1, newGid);
      if (newMode !== undefined) {
        const gid = newGid ?? Number(st.gid);
        await fsp.chmod(pp, acc.allowedMode(newMode, gid, ctx.user, fmt === S_IFDIR));
      }
      if (ch.mtime !== undefined || ch.atime !== undefined) {
        const cur = await (link ? fsp.lstat : fsp.stat)(pp, { bigint: true });
        const at = ch.atime !== undefined ? ch.atime : Number(cur.atimeNs / 1_000_000n) / 1000;
        const mt = ch.mtime !== undefined ? ch.mtime : Number(cur.mtimeNs / 1_000_000n) / 1000;
        await (link ? fsp.lutimes : fsp.utimes)(pp, at, mt);
      }
    });
    if (newPath !== undefined && ch.name !== undefined) {
      // Within one directory: the entry (a followed link's own entry, for a link) gets the new name.
      const entry = this.entryRel;
      const newName = ch.name;
      await this.sh.root.withPinnedDir(entry.slice(0, -1), (dir) =>
        fsp.rename(path.join(dir, entry[entry.length - 1]!), path.join(dir, newName)),
      );
      followRename(this.sh, entry, [...entry.slice(0, -1), newName], this);
    }
    await this.refresh().catch(() => {});
  }

  async sync(): Promise<void> {
    // A file open on some fid is synced through that descriptor: its name may be gone (unlinked or
    // renamed away since), as fsync(2) on an open file does not care.
    const fd = this.openDescriptor();
    if (fd !== undefined) {
      await promisify(fsync)(fd);
      return;
    }
    const target = await this.ioTarget().catch(() => this);
    const fmt = fmtOf(target.st);
    if (fmt !== S_IFREG && fmt !== S_IFDIR) return;
    const fh = await this.sh.root.openChecked(target.node.rel, constants.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  // ---- directory listing (DirSource) ----------------------------------------------------------

  /**
   * Member names in directory order. Names that are not valid UTF-8 cannot be carried by 9P
   * strings (and could not be walked back), so they are left out.
   */
  async names(): Promise<string[]> {
    const dir = await this.sh.root.checkedDir(this.node.rel);
    const out: string[] = [];
    for (const raw of await fsp.readdir(dir, { encoding: "buffer" })) {
      const name = raw.toString("utf8");
      if (Buffer.byteLength(name) === raw.length && Buffer.from(name).equals(raw)) out.push(name);
    }
    return out;
  }

  /**
   * Stats of members `names` as a Tstat after a walk would give them (9P2000 follows links that
   * stay inside the root). The directory is checked once; members are lstat'ed a few at a time;
   * members that vanished meanwhile are left out.
   */
  async memberStats(names: readonly string[], ctx: RequestContext): Promise<Stat[]> {
    const unix = isUnix(ctx);
    const follow = !unix && this.sh.followLinks9P;
    const dirPath = await this.sh.root.checkedDir(this.node.rel);
    const opts = { unix, qids: this.sh.qids, ids: this.sh.ids };
    const out = await mapLimit(names, 32, async (name): Promise<Stat | undefined> => {
      if (ctx.signal.aborted) throw new FsError(Ename.Interrupted, Errno.EINTR);
      try {
        checkName(name);
        const p = path.join(dirPath, name);
        let st = await fsp.lstat(p, { bigint: true });
        if (fmtOf(st) === S_IFLNK) {
          if (unix) return toStat(st, name, { ...opts, linkTarget: await fsp.readlink(p).catch(() => "") });
          if (follow) {
            // Same rule as walkOne: follow only to a target inside the root.
            const target = await this.sh.root.resolveLink([...this.node.rel, name]).catch(() => undefined);
            if (target) st = await fsp.lstat(this.sh.root.hostPath(target), { bigint: true });
          }
        }
        return toStat(st, name, opts);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === "ENOENT" || err instanceof FsError) return undefined;
        throw err;
      }
    });
    return out.filter((x): x is Stat => x !== undefined);
  }

  /** 9P2000.L dirents for snapshot entries ("." and ".." included), in order; vanished ones dropped. */
  async memberDirents(
    entries: readonly { name: string; offset: bigint }[],
    ctx: RequestContext,
  ): Promise<Dirent[]> {
    const dirPath = await this.sh.root.checkedDir(this.node.rel);
    const out = await mapLimit(entries, 32, async ({ name, offset }): Promise<Dirent | undefined> => {
      if (ctx.signal.aborted) throw new FsError(Ename.Interrupted, Errno.EINTR);
      try {
        let st: BigIntStats;
        if (name === ".") st = await fsp.lstat(dirPath, { bigint: true });
        else if (name === "..") st = (await this.parent()).st;
        else {
          checkName(name);
          st = await fsp.lstat(path.join(dirPath, name), { bigint: true });
        }
        return { qid: this.sh.qids.qid(st, true), offset, type: dtypeOf(Number(st.mode)), name };
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === "ENOENT" || err instanceof FsError) return undefined;
        throw err;
      }
    });
    return out.filter((x): x is Dirent => x !== undefined);
  }

  // ---- 9P2000.L -------------------------------------------------------------------------------

  getattr(mask: bigint, _ctx: RequestContext): Promise<Attr> | Attr {
    return L.getattr(this, mask);
  }
  setattr(attr: SetAttr, ctx: RequestContext): Promise<void> {
    return L.setattr(this, attr, ctx);
  }
  lopen(flags: number, ctx: RequestContext): Promise<OpenFile> {
    return L.lopen(this, flags, ctx);
  }
  lcreate(name: string, flags: number, mode: number, gid: number, ctx: RequestContext): Promise<Created> {
    return L.lcreate(this, name, flags, mode, gid, ctx);
  }
  symlink(name: string, target: string, gid: number, ctx: RequestContext): Promise<Node> {
    return L.symlink(this, name, target, gid, ctx);
  }
  mknod(
    name: string,
    mode: number,
    major: number,
    minor: number,
    gid: number,
    ctx: RequestContext,
  ): Promise<Node> {
    return L.mknod(this, name, mode, major, minor, gid, ctx);
  }
  mkdir(name: string, mode: number, gid: number, ctx: RequestContext): Promise<Node> {
    return L.mkdir(this, name, mode, gid, ctx);
  }
  link(target: Node, name: string, ctx: RequestContext): Promise<void> {
    return L.link(this, target, name, ctx);
  }
  rename(dir: Node, name: string, ctx: RequestContext): Promise<void> {
    return L.rename(this, dir, name, ctx);
  }
  renameat(oldname: string, newDir: Node, newname: string, ctx: RequestContext): Promise<void> {
    return L.renameat(this, oldname, newDir, newname, ctx);
  }
  unlinkat(name: string, flags: number, ctx: RequestContext): Promise<void> {
    return L.unlinkat(this, name, flags, ctx);
  }
  readlink(_ctx: RequestContext): Promise<string> {
    return L.readlink(this);
  }
  statfs(_ctx: RequestContext): Promise<StatFs> {
    return L.statfs(this);
  }
}
