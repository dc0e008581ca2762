// 9P2000.L operations of the passthrough backend (getattr, setattr, lopen, lcreate, mkdir, symlink,
// mknod, link, rename, renameat, unlinkat, readlink, statfs). Errors are Linux errnos taken from
// the Node error codes (errors.ts toFsError) or raised here with the errno Linux itself would give.

import { randomBytes } from "node:crypto";
import { constants, openSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { createServer } from "node:net";
import * as path from "node:path";
import { AT_REMOVEDIR, L_O, NONUNAME, SETATTR } from "../codec/constants.js";
import { Ename, Errno, FsError } from "../errors.js";
import type { Attr, Created, Node, OpenFile, RequestContext, SetAttr, StatFs } from "./backend.js";
import { R_OK, W_OK, X_OK } from "./passthrough-access.js";
import {
  chownNew,
  discardNew,
  followRename,
  newDirMode,
  PtFile,
  runTool,
  setUpNew,
} from "./passthrough-node.js";
import { openFd } from "./passthrough-open.js";
import { changedError, checkName, pinnedForChild } from "./passthrough-path.js";
import {
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  toGetattr,
} from "./passthrough-stat.js";

const fmtOf = (mode: bigint | number) => Number(mode) & S_IFMT;

/** f_type of a Linux 9P mount. */
export const V9FS_MAGIC = 0x01021997;

function sameTree(a: PtFile, b: Node): PtFile {
  if (!(b instanceof PtFile) || b.sh !== a.sh) throw new FsError("not a file of this tree", Errno.EXDEV);
  return b;
}

/** The directory, checked for write+search permission; returns its host path. */
async function writableDir(dir: PtFile, ctx: RequestContext): Promise<string> {
  dir.ro();
  const p = await dir.requireDir(Ename.NotDir);
  dir.sh.access.check(dir.st, ctx.user, W_OK | X_OK);
  return p;
}

/**
 * The group of a new file, as a local create by the user makes it (and diod, which creates as the
 * user): the directory's group if it is set-group-ID, whatever was asked; else the group the
 * client asks for if the user may use it; else (none asked for, -1, or one the user is not in) the
 * user's primary group. (diod refuses a group the user is not in with EPERM.)
 */
function groupFor(dir: PtFile, gid: number, ctx: RequestContext): number {
  const dirGid = Number(dir.st.gid);
  if (Number(dir.st.mode) & 0o2000) return dirGid;
  if (gid !== NONUNAME && dir.sh.access.mayUseGroup(gid, ctx.user)) return gid;
  return dir.sh.access.primaryGroup(ctx.user) ?? dirGid;
}

/**
 * With syncIo the lstat is synchronous and a success is answered at once (no promise per
 * Tgetattr); failures are still a rejected promise, never a synchronous throw.
 */
export function getattr(f: PtFile, mask: bigint): Promise<Attr> | Attr {
  if (f.sh.syncIo) {
    try {
      return toGetattr(f.refreshSync(), f.sh.qids, mask);
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return f.refresh().then((st) => toGetattr(st, f.sh.qids, mask));
}

export async function setattr(f: PtFile, a: SetAttr, ctx: RequestContext): Promise<void> {
  const v = a.valid;
  const touches =
    SETATTR.MODE | SETATTR.UID | SETATTR.GID | SETATTR.SIZE | SETATTR.ATIME | SETATTR.MTIME | SETATTR.CTIME;
  if ((v & touches) === 0) return;
  f.ro();
  const st = await f.refresh();
  const acc = f.sh.access;
  const fmt = fmtOf(st.mode);

  // Validate every requested change before making any.
  if (v & SETATTR.MODE && !acc.isOwner(st, ctx.user))
    throw new FsError("operation not permitted", Errno.EPERM);
  if (v & SETATTR.MODE && fmt === S_IFLNK) throw new FsError(Ename.NotSupported, Errno.EOPNOTSUPP);
  const askUid = v & SETATTR.UID && a.uid !== NONUNAME;
  const askGid = v & SETATTR.GID && a.gid !== NONUNAME;
  const newUid = askUid && BigInt(a.uid) !== st.uid ? a.uid : undefined;
  const newGid = askGid && BigInt(a.gid) !== st.gid ? a.gid : undefined;
  if (newUid !== undefined && !acc.isRoot(ctx.user))
    throw new FsError("operation not permitted", Errno.EPERM);
  if (newGid !== undefined && !acc.mayChgrp(st, ctx.user, newGid)) {
    throw new FsError("operation not permitted", Errno.EPERM);
  }
  // chown(2) to the current owner or group still needs the owner (or root), as diod answers.
  if ((askUid || askGid) && !acc.isOwner(st, ctx.user))
    throw new FsError("operation not permitted", Errno.EPERM);
  if (v & SETATTR.SIZE) {
    if (fmt === S_IFDIR) throw new FsError(Ename.IsDir, Errno.EISDIR);
    if (fmt !== S_IFREG) throw new FsError("invalid argument", Errno.EINVAL);
    if (a.size > BigInt(Number.MAX_SAFE_INTEGER)) throw new FsError("file too large", Errno.EFBIG);
    acc.check(st, ctx.user, W_OK);
  }
  if ((v & SETATTR.ATIME_SET && a.atime_nsec >= NS) || (v & SETATTR.MTIME_SET && a.mtime_nsec >= NS))
    throw new FsError("invalid argument", Errno.EINVAL);
  if (v & (SETATTR.ATIME | SETATTR.MTIME) && !acc.isOwner(st, ctx.user)) {
    // As utimensat(2): setting both times to "now" needs write permission only; anything else
    // (an explicit time, or one time alone) needs the owner.
    const bothNow =
      v & SETATTR.ATIME && v & SETATTR.MTIME && !(v & SETATTR.ATIME_SET) && !(v & SETATTR.MTIME_SET);
    if (!bothNow) throw new FsError("operation not permitted", Errno.EPERM);
    acc.check(st, ctx.user, W_OK);
  }

  const ms = Date.now();
  const now: TimeSpec = { sec: BigInt(Math.floor(ms / 1000)), nsec: BigInt(ms % 1000) * 1_000_000n };
  const times = (): [TimeSpec | undefined, TimeSpec | undefined] => [
    !(v & SETATTR.ATIME) ? undefined : v & SETATTR.ATIME_SET ? { sec: a.atime_sec, nsec: a.atime_nsec } : now,
    !(v & SETATTR.MTIME) ? undefined : v & SETATTR.MTIME_SET ? { sec: a.mtime_sec, nsec: a.mtime_nsec } : now,
  ];
  const fd = f.openDescriptor();
  // (The refresh above found out whether the name is gone.)
  if (fd !== undefined && f.nameGone) {
    const [at, mt] = times();
    await f.changeUnlinked(
      fd,
      {
        size: v & SETATTR.SIZE ? Number(a.size) : undefined,
        uid: newUid,
        gid: newGid,
        mode:
          v & SETATTR.MODE
            ? acc.allowedMode(a.mode & 0o7777, newGid ?? Number(st.gid), ctx.user, false)
            : undefined,
        atime: at && uvSeconds(at),
        mtime: mt && uvSeconds(mt),
      },
      ctx.user,
    );
    return;
  }

  // Every change goes to the file that was checked, not to whatever the name holds by then.
  await f.sh.root.withPinned(f.node.rel, st, async (p) => {
    const link = fmt === S_IFLNK;
    if (v & SETATTR.SIZE) {
      await fsp.truncate(p, Number(a.size));
      // An explicit mode in the same request wins over the bits a truncation clears.
      if (!(v & SETATTR.MODE)) await f.dropSetId(ctx.user, p);
    }
    if (newUid !== undefined || newGid !== undefined)
      await (link ? fsp.lchown : fsp.chown)(p, newUid ?? -1, newGid ?? -1);
    if (v & SETATTR.MODE) {
      const gid = newGid ?? Number(st.gid);
      await fsp.chmod(p, acc.allowedMode(a.mode & 0o7777, gid, ctx.user, fmt === S_IFDIR));
    }
    if (v & (SETATTR.ATIME | SETATTR.MTIME)) {
      const [at, mt] = times();
      await setTimes({ p, follow: !link, named: await f.hostPath() }, at, mt);
    }
  });
  await f.refresh().catch(() => {});
}

interface TimeSpec {
  sec: bigint;
  nsec: bigint;
}

const NS = 1_000_000_000n;

/** Seconds as a double that libuv turns back into exactly `t` (it keeps microseconds only). */
function uvSeconds(t: TimeSpec): number {
  // Half a microsecond above the target: the rounding of the double cannot cross to a neighbour.
  return Number(t.sec) + (Number(t.nsec / 1000n) + 0.5) / 1e6;
}

/** Can lutimes set `t` exactly? */
const uvExact = (t: TimeSpec) => t.sec >= 0n && t.sec < 2n ** 32n && t.nsec % 1000n === 0n;

/** Where setTimes acts: `p` (followed when `follow`: a pinned /proc/self/fd path), or by `named`. */
interface TimesTarget {
  p: string;
  follow: boolean;
  /** The file's checked host path, for touch(1), which cannot use this process's descriptors. */
  named: string;
}

/**
 * Sets the access and/or modification time of a file to the nanosecond, as utimensat(2) would; an
 * undefined time is left as it is, to the nanosecond too. Node's utimes keeps microseconds only,
 * so a time it cannot carry is set with touch(1) (by name, not following a link).
 */
async function setTimes(t: TimesTarget, at: TimeSpec | undefined, mt: TimeSpec | undefined): Promise<void> {
  for (const x of [at, mt]) {
    if (x && x.nsec >= NS) throw new FsError("invalid argument", Errno.EINVAL);
  }
  let a = at;
  let m = mt;
  if (!a || !m) {
    const cur = await (t.follow ? fsp.stat : fsp.lstat)(t.p, { bigint: true });
    const split = (ns: bigint): TimeSpec => ({ sec: ns / NS, nsec: ns % NS });
    a ??= split(cur.atimeNs);
    m ??= split(cur.mtimeNs);
  }
  if (uvExact(a) && uvExact(m)) {
    await (t.follow ? fsp.utimes : fsp.lutimes)(t.p, uvSeconds(a), uvSeconds(m));
    return;
  }
  const touch = (which: string, x: TimeSpec) =>
    runTool("touch", [
      "-h",
      "-c",
      which,
      "-d",
      `@${x.sec}.${String(x.nsec).padStart(9, "0")}`,
      "--",
      t.named,
    ]);
  if (at) await touch("-a", at);
  if (mt) await touch("-m", mt);
}

export async function lopen(f: PtFile, flags: number, ctx: RequestContext): Promise<OpenFile> {
  const acc = flags & L_O.ACCMODE;
  if (acc === 3) throw new FsError("invalid argument", Errno.EINVAL);
  let want = acc === L_O.RDONLY ? R_OK : acc === L_O.WRONLY ? W_OK : R_OK | W_OK;
  if (flags & L_O.TRUNC) want |= W_OK;
  if (want & W_OK) f.ro();
  const target = await f.ioTarget();
  // open(2) with O_NOFOLLOW refuses a symbolic link.
  if (target !== f && flags & L_O.NOFOLLOW)
    throw new FsError("too many levels of symbolic links", Errno.ELOOP);
  const isDir = fmtOf(target.st.mode) === S_IFDIR;
  if (flags & L_O.DIRECTORY && !isDir) throw new FsError(Ename.NotDir, Errno.ENOTDIR);
  if (isDir && (acc !== L_O.RDONLY || flags & L_O.TRUNC)) throw new FsError(Ename.IsDir, Errno.EISDIR);
  f.sh.access.check(target.st, ctx.user, want);
  let os = acc;
  if (flags & L_O.TRUNC) os |= constants.O_TRUNC;
  if (flags & L_O.APPEND) os |= constants.O_APPEND;
  const file = await target.openIo(os);
  if (flags & L_O.TRUNC) await target.dropSetId(ctx.user);
  if (target !== f) f.refresh().catch(() => {});
  return file;
}

export async function lcreate(
  dir: PtFile,
  name: string,
  flags: number,
  mode: number,
  gid: number,
  ctx: RequestContext,
): Promise<Created> {
  await writableDir(dir, ctx);
  checkName(name);
  const acc = flags & L_O.ACCMODE;
  if (acc === 3) throw new FsError("invalid argument", Errno.EINVAL);
  const rel = [...dir.node.rel, name];
  // Made in the directory that was checked (pinned), whatever its name holds by then.
  return dir.sh.root.withPinnedDir(
    dir.node.rel,
    async (dirPath) => {
      const p = path.join(dirPath, name);
      let os = acc | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
      if (flags & L_O.APPEND) os |= constants.O_APPEND;
      const sync = dir.sh.syncIo;
      let fd: number;
      try {
        fd = sync ? openSync(p, os, 0o600) : await openFd(p, os, 0o600);
      } catch (err) {
        if ((err as { code?: string }).code !== "EEXIST" || flags & L_O.EXCL) throw err;
        // open(2) with O_CREAT and no O_EXCL opens an existing file.
        const existing = await dir.child({ rel, name });
        // open(2) with O_CREAT refuses a directory, or a link to one, whatever the access mode.
        if ((await existing.ioTarget()).isDir) throw new FsError(Ename.IsDir, Errno.EISDIR);
        const file = await lopen(existing, flags & ~(constants.O_CREAT | L_O.EXCL), ctx);
        return { node: existing, file };
      }
      try {
        const owner = dir.sh.access.ownerForNew(ctx.user);
        const group = groupFor(dir, gid, ctx);
        const perm = dir.sh.access.allowedMode(mode & 0o7777, group, ctx.user, false);
        const st = await setUpNew(dir.sh, fd, p, owner, group, perm);
        const created = new PtFile(dir.sh, { rel, name }, st, true);
        const file = created.fileIo(fd, acc);
        return { node: created, file };
      } catch (err) {
        await discardNew(fd, p, sync);
        throw err;
      }
    },
    dir.sh.syncIo,
  );
}

export async function mkdir(
  dir: PtFile,
  name: string,
  mode: number,
  gid: number,
  ctx: RequestContext,
): Promise<Node> {
  await writableDir(dir, ctx);
  checkName(name);
  const perm = newDirMode(dir.st.mode, mode & 0o7777);
  await dir.sh.root.withPinnedDir(dir.node.rel, async (d) => {
    const p = path.join(d, name);
    await fsp.mkdir(p, 0o700);
    await dir.finishNew(p, perm, dir.sh.access.ownerForNew(ctx.user), groupFor(dir, gid, ctx));
  });
  return dir.child({ rel: [...dir.node.rel, name], name });
}

export async function symlink(
  dir: PtFile,
  name: string,
  target: string,
  gid: number,
  ctx: RequestContext,
): Promise<Node> {
  await writableDir(dir, ctx);
  checkName(name);
  // symlink(2) answers ENOENT for an empty target (diod passes that on).
  if (target === "") throw new FsError("empty symbolic link target", Errno.ENOENT);
  if (target.includes("\0")) throw new FsError("bad symbolic link target", Errno.EINVAL);
  await dir.sh.root.withPinnedDir(dir.node.rel, async (d) => {
    const p = path.join(d, name);
    await fsp.symlink(target, p);
    await chownNew(p, dir.sh.access.ownerForNew(ctx.user), groupFor(dir, gid, ctx)).catch(() => {});
  });
  return dir.child({ rel: [...dir.node.rel, name], name });
}

/** mknod for block/character devices: only a root server can, through the host's mknod(1). */
export async function makeDevice(p: string, type: number, major: number, minor: number): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new FsError("creating device files needs a server running as root", Errno.EPERM);
  await runTool("mknod", [
    "--",
    pinnedForChild(p),
    type === S_IFBLK ? "b" : "c",
    String(major),
    String(minor),
  ]);
}

/**
 * A Unix-domain socket file `name` in the directory `dirPath`, as mknod(2) with S_IFSOCK makes
 * (a client binds its own sockets to such files; nothing here listens on it). Node can only make
 * one by listening: the socket is bound under a temporary name, through /proc/self/fd so that a
 * long directory path does not run into the 108-byte limit of a socket address, hard-linked to
 * `name` (which fails if the name exists, as mknod does), and the listener closed (which removes
 * the temporary name).
 */
export async function makeSocket(dirPath: string, name: string): Promise<void> {
  const dh = await fsp.open(dirPath, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const at = `/proc/self/fd/${dh.fd}`;
    const tmp = `${at}/.ninep-sock-${randomBytes(6).toString("hex")}`;
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(tmp, () => resolve());
    });
    try {
      await fsp.link(tmp, `${at}/${name}`);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fsp.unlink(tmp).catch(() => {});
    }
  } finally {
    await dh.close();
  }
}

export async function mknod(
  dir: PtFile,
  name: string,
  mode: number,
  major: number,
  minor: number,
  gid: number,
  ctx: RequestContext,
): Promise<Node> {
  await writableDir(dir, ctx);
  checkName(name);
  const fmt = mode & S_IFMT;
  const perm = mode & 0o7777;
  // Made in the directory that was checked (pinned), whatever its name holds by then.
  await dir.sh.root.withPinnedDir(dir.node.rel, async (dirPath) => {
    const p = path.join(dirPath, name);
    if (fmt === S_IFIFO) {
      await runTool("mkfifo", ["-m", (perm & 0o777).toString(8), "--", pinnedForChild(p)]);
    } else if (fmt === S_IFREG || fmt === 0) {
      const fh = await fsp.open(
        p,
        constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW,
        0o600,
      );
      await fh.close();
    } else if (fmt === S_IFCHR || fmt === S_IFBLK) {
      if (!dir.sh.access.isRoot(ctx.user)) throw new FsError("operation not permitted", Errno.EPERM);
      await makeDevice(p, fmt, major, minor);
    } else if (fmt === S_IFSOCK) {
      await makeSocket(dirPath, name);
    } else {
      throw new FsError("invalid argument", Errno.EINVAL);
    }
    const group = groupFor(dir, gid, ctx);
    const allowed = dir.sh.access.allowedMode(perm, group, ctx.user, false);
    await dir.finishNew(p, allowed, dir.sh.access.ownerForNew(ctx.user), group);
  });
  return dir.child({ rel: [...dir.node.rel, name], name });
}

/** Hard link `name` in `dir` to `target` (not a directory). Shared by Tlink and .u DMLINK. */
export async function linkInto(
  dir: PtFile,
  target: PtFile,
  name: string,
  ctx: RequestContext,
): Promise<void> {
  await dir.requireDir(Ename.NotDir);
  checkName(name);
  const st = await target.refresh();
  if (fmtOf(st.mode) === S_IFDIR) throw new FsError("cannot hard-link a directory", Errno.EPERM);
  if (!dir.sh.access.mayHardLink(st, ctx.user)) throw new FsError("operation not permitted", Errno.EPERM);
  // Both names are looked up in pinned directories, and the source must still be the file checked.
  const rel = target.node.rel;
  await dir.sh.root.withPinnedDir(rel.slice(0, -1), (src) =>
    dir.sh.root.withPinnedDir(dir.node.rel, async (dst) => {
      const from = path.join(src, rel[rel.length - 1]!);
      const now = await fsp.lstat(from, { bigint: true });
      if (now.dev !== st.dev || now.ino !== st.ino) throw changedError();
      await fsp.link(from, path.join(dst, name));
    }),
  );
}

export async function link(dir: PtFile, target: Node, name: string, ctx: RequestContext): Promise<void> {
  await writableDir(dir, ctx);
  await linkInto(dir, sameTree(dir, target), name, ctx);
}

export async function rename(f: PtFile, dirNode: Node, name: string, ctx: RequestContext): Promise<void> {
  f.ro();
  const dir = sameTree(f, dirNode);
  if (f.node.rel.length === 0) throw new FsError("cannot rename the root of the tree", Errno.EBUSY);
  checkName(name);
  const parent = await f.parent();
  f.sh.access.check(parent.st, ctx.user, W_OK | X_OK);
  f.sh.access.checkUnlink(parent.st, (await f.refresh()).uid, ctx.user);
  const to = await writableDir(dir, ctx);
  await checkReplace(dir, path.join(to, name), ctx);
  const from = f.node.rel;
  await f.sh.root.withPinnedDir(from.slice(0, -1), (src) =>
    f.sh.root.withPinnedDir(dir.node.rel, (dst) =>
      fsp.rename(path.join(src, from[from.length - 1]!), path.join(dst, name)),
    ),
  );
  followRename(f.sh, from, [...dir.node.rel, name], f, f.st);
}

export async function renameat(
  dir: PtFile,
  oldname: string,
  newDirNode: Node,
  newname: string,
  ctx: RequestContext,
): Promise<void> {
  const newDir = sameTree(dir, newDirNode);
  checkName(oldname);
  checkName(newname);
  const from = await writableDir(dir, ctx);
  const to = await writableDir(newDir, ctx);
  const moving = await fsp.lstat(path.join(from, oldname), { bigint: true });
  dir.sh.access.checkUnlink(dir.st, moving.uid, ctx.user);
  await checkReplace(newDir, path.join(to, newname), ctx);
  await dir.sh.root.withPinnedDir(dir.node.rel, (src) =>
    dir.sh.root.withPinnedDir(newDir.node.rel, (dst) =>
      fsp.rename(path.join(src, oldname), path.join(dst, newname)),
    ),
  );
  followRename(dir.sh, [...dir.node.rel, oldname], [...newDir.node.rel, newname], undefined, moving);
}

/** A rename onto an existing entry removes it: the sticky-directory rule applies to it too. */
async function checkReplace(dir: PtFile, target: string, ctx: RequestContext): Promise<void> {
  const st = await fsp.lstat(target, { bigint: true }).catch(() => undefined);
  if (st) dir.sh.access.checkUnlink(dir.st, st.uid, ctx.user);
}

export async function unlinkat(dir: PtFile, name: string, flags: number, ctx: RequestContext): Promise<void> {
  if (name === "." || name === "..") throw new FsError("invalid argument", Errno.EINVAL);
  checkName(name);
  await writableDir(dir, ctx);
  await dir.sh.root.withPinnedDir(dir.node.rel, async (from) => {
    const p = path.join(from, name);
    const st = await fsp.lstat(p, { bigint: true });
    dir.sh.access.checkUnlink(dir.st, st.uid, ctx.user);
    if (flags & AT_REMOVEDIR) {
      if (!st.isDirectory()) throw new FsError(Ename.NotDir, Errno.ENOTDIR);
      await fsp.rmdir(p);
    } else {
      if (st.isDirectory()) throw new FsError(Ename.IsDir, Errno.EISDIR);
      await fsp.unlink(p);
    }
  });
}

export async function readlink(f: PtFile): Promise<string> {
  const st = await f.refresh();
  if (fmtOf(st.mode) !== S_IFLNK) throw new FsError("invalid argument", Errno.EINVAL);
  return fsp.readlink(await f.hostPath());
}

export async function statfs(f: PtFile): Promise<StatFs> {
  const p = await f.hostPath();
  const s = await fsp.statfs(p, { bigint: true });
  return {
    // The type the client's own statfs(2) reports: v9fs, as diod says, not the exported file
    // system's. Programs judge from it whether a file system is local (tail -f, for one, would
    // otherwise wait on inotify events that never come for changes made by other clients).
    fstype: V9FS_MAGIC,
    bsize: Number(s.bsize),
    blocks: s.blocks,
    bfree: s.bfree,
    bavail: s.bavail,
    files: s.files,
    ffree: s.ffree,
    fsid: f.st.dev,
    namelen: 255,
  };
}
