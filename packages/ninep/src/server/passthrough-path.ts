// Path safety for the passthrough backend: every file it touches lies inside the exported root.
//
// A node is named by its canonical path relative to the root, as a list of components that are
// real directories (never symbolic links), except possibly the last one. Components are produced
// only by walk steps that lstat what they add, so `..` is a pop (and stays at the root), names
// with `/` or NUL never enter a path, and a symbolic link is followed only through `realpath`
// whose result must stay under the root. Because a local user could swap a directory for a link
// after the walk, every operation re-checks its directory with `realpath` before acting, and
// every open is verified afterwards through /proc/self/fd.

import type { BigIntStats } from "node:fs";
import {
  closeSync,
  constants,
  existsSync,
  ftruncateSync,
  lstatSync,
  openSync,
  readlinkSync,
  realpathSync,
  statSync,
  truncateSync,
} from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { Errno, FsError } from "../errors.js";
import { closeFdQuietly, fstatFd, openFd } from "./passthrough-open.js";

/** A file inside the export: canonical components from the root, and the name clients see. */
export interface PtNode {
  /** Canonical path components below the root; `[]` is the root itself. */
  readonly rel: readonly string[];
  /** The name reported in stat: the walked name, `/` for the root. */
  readonly name: string;
  /**
   * When a 9P2000 walk followed a symbolic link: the link's own components. Removing or renaming
   * the file acts on this directory entry (the link), everything else on the target.
   */
  readonly via?: readonly string[];
}

export const ROOT_NODE: PtNode = Object.freeze({ rel: Object.freeze([]) as readonly string[], name: "/" });

/** How a pinned descriptor is named (see ExportRoot.withPinned). */
const PINNED_PREFIX = "/proc/self/fd/";

/** A pinned path as another process (a host tool run by this one) reaches it. */
export function pinnedForChild(p: string): string {
  return p.startsWith(PINNED_PREFIX) ? `/proc/${process.pid}/fd/${p.slice(PINNED_PREFIX.length)}` : p;
}

/** O_PATH (Linux; not in Node's constants): a descriptor that names a file without opening it. */
const O_PATH = 0o10000000;

let procFd: boolean | undefined;
/** Whether /proc/self/fd resolves descriptors here (Linux with /proc mounted). */
function procFdAvailable(): boolean {
  procFd ??= process.platform === "linux" && existsSync("/proc/self/fd");
  return procFd;
}

/**
 * Empties the file open on `fd` as O_TRUNC would have: through /proc/self/fd (the descriptor may
 * be read-only, as open(2) allows O_RDONLY|O_TRUNC), else with ftruncate.
 */
function truncateOpened(fd: number, sync: boolean): void | Promise<void> {
  // Without /proc (not Linux), a write descriptor is truncated directly (ftruncate is cheap).
  if (!procFdAvailable()) return ftruncateSync(fd, 0);
  const p = `${PINNED_PREFIX}${fd}`;
  return sync ? truncateSync(p, 0) : fsp.truncate(p, 0);
}

/** The file at a name is not the one that was checked (replaced while the request ran). */
export function changedError(): FsError {
  return new FsError("file changed while the request ran", Errno.EAGAIN);
}

/** The error for any attempt to reach a file outside the exported tree. */
export function escapeError(): FsError {
  return new FsError("path leads outside the exported tree", Errno.EACCES);
}

/** Longest single name accepted (Linux NAME_MAX, in bytes). */
export const NAME_MAX = 255;

/**
 * Checks one path element supplied by a client. `..` and `.` are refused unless `allowDots`
 * (walk handles them itself). Throws FsError (EINVAL / ENAMETOOLONG / EEXIST).
 */
export function checkName(name: string, allowDots = false): void {
  if (name.length === 0) throw new FsError("empty file name", Errno.EINVAL);
  if (name.includes("/")) throw new FsError("file name contains '/'", Errno.EINVAL);
  if (name.includes("\0")) throw new FsError("file name contains NUL", Errno.EINVAL);
  if (!allowDots && (name === "." || name === "..")) {
    throw new FsError("file exists", Errno.EEXIST);
  }
  if (Buffer.byteLength(name) > NAME_MAX) throw new FsError("file name too long", Errno.ENAMETOOLONG);
}

/** The canonical root of an export plus the path arithmetic that keeps everything inside it. */
export class ExportRoot {
  /** realpath of the exported directory. */
  readonly real: string;

  /** stat of the root when it was resolved. */
  readonly st: BigIntStats;

  private constructor(real: string, st: BigIntStats) {
    this.real = real;
    this.st = st;
  }

  /**
   * Resolves `dir` (must exist and be a directory) into an ExportRoot; `sync`: with synchronous
   * system calls (PassthroughOptions.syncIo).
   */
  static async open(dir: string, sync = false): Promise<ExportRoot> {
    const abs = path.resolve(dir);
    const real = sync ? realpathSync.native(abs) : await fsp.realpath(abs);
    const st = sync ? statSync(real, { bigint: true }) : await fsp.stat(real, { bigint: true });
    if (!st.isDirectory()) throw new Error(`passthrough root is not a directory: ${dir}`);
    return new ExportRoot(real, st);
  }

  /** Host path of a node (no checks). */
  hostPath(rel: readonly string[]): string {
    return rel.length === 0 ? this.real : path.join(this.real, ...rel);
  }

  /** Is the absolute host path `p` the root or below it? */
  contains(p: string): boolean {
    return p === this.real || p.startsWith(this.real === "/" ? "/" : `${this.real}/`);
  }

  /** Components of `p` (an absolute path inside the root) relative to the root. */
  relOf(p: string): string[] {
    if (!this.contains(p)) throw escapeError();
    const r = path.relative(this.real, p);
    return r === "" ? [] : r.split(path.sep);
  }

  /**
   * Re-checks that the directory `rel` still resolves to itself (no component was replaced by a
   * symbolic link since the walk) and returns its host path.
   */
  async checkedDir(rel: readonly string[]): Promise<string> {
    const expected = this.hostPath(rel);
    if (rel.length === 0) return expected;
    const real = await fsp.realpath(expected);
    if (real !== expected) {
      // The last component itself being a link (a walk from a symlink fid) is "not a directory";
      // anything else means a directory above was swapped for a link after the walk.
      const parent = path.dirname(expected);
      if ((await fsp.realpath(parent)) === parent && (await fsp.lstat(expected)).isSymbolicLink()) {
        throw new FsError("not a directory", Errno.ENOTDIR);
      }
      throw escapeError();
    }
    return expected;
  }

  /** Host path of `rel` whose parent directory was re-checked; the last component may be a link. */
  async checkedPath(rel: readonly string[]): Promise<string> {
    if (rel.length === 0) return this.real;
    const dir = await this.checkedDir(rel.slice(0, -1));
    return path.join(dir, rel[rel.length - 1]!);
  }

  /** checkedDir with synchronous system calls (no thread-pool round trip). */
  checkedDirSync(rel: readonly string[]): string {
    const expected = this.hostPath(rel);
    if (rel.length === 0) return expected;
    const real = realpathSync.native(expected);
    if (real !== expected) {
      const parent = path.dirname(expected);
      if (realpathSync.native(parent) === parent && lstatSync(expected).isSymbolicLink()) {
        throw new FsError("not a directory", Errno.ENOTDIR);
      }
      throw escapeError();
    }
    return expected;
  }

  /** Host paths already joined, by component list (lists are never changed once made). */
  readonly #joined = new WeakMap<readonly string[], string>();

  /** checkedPath with synchronous system calls. */
  checkedPathSync(rel: readonly string[]): string {
    if (rel.length === 0) return this.real;
    // The parent is re-checked every time (a realpath unless it is the root); only the string
    // arithmetic is remembered: checkedDirSync returns hostPath(parent) or throws.
    if (rel.length > 1) this.checkedDirSync(rel.slice(0, -1));
    let p = this.#joined.get(rel);
    if (p === undefined) {
      p = this.hostPath(rel);
      this.#joined.set(rel, p);
    }
    return p;
  }

  /**
   * Follows the symbolic link at `rel` the way the kernel would and returns the canonical
   * components of its final target, or throws if it leaves the root (or dangles / loops).
   * Absolute targets are host paths: they are accepted only when they land inside the root.
   */
  async resolveLink(rel: readonly string[]): Promise<string[]> {
    const p = await this.checkedPath(rel);
    const real = await fsp.realpath(p);
    if (!this.contains(real)) throw escapeError();
    return this.relOf(real);
  }

  /**
   * Opens the file at canonical `rel` with `flags` (O_NOFOLLOW is added), then verifies through
   * /proc/self/fd that the descriptor really is that file. Returns the FileHandle.
   */
  async openChecked(rel: readonly string[], flags: number, mode?: number): Promise<fsp.FileHandle> {
    const p = await this.checkedPath(rel);
    const fh = await fsp.open(p, flags | constants.O_NOFOLLOW, mode);
    try {
      await this.verifyFd(fh.fd, p);
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
    return fh;
  }

  /**
   * openChecked returning the raw descriptor; `sync`: every call synchronous (no thread-pool round
   * trip; PassthroughOptions.syncIo).
   */
  async openCheckedFd(rel: readonly string[], flags: number, sync: boolean, mode?: number): Promise<number> {
    // O_TRUNC would empty whatever the name led to before the check below could refuse it: the
    // file is truncated once it is known to be the right one.
    const trunc = (flags & constants.O_TRUNC) !== 0;
    const open = (flags & ~constants.O_TRUNC) | constants.O_NOFOLLOW;
    if (sync) {
      const p = this.checkedPathSync(rel);
      const fd = this.verifiedFdSync(openSync(p, open, mode), p);
      if (trunc) {
        try {
          truncateOpened(fd, true);
        } catch (err) {
          closeSync(fd);
          throw err;
        }
      }
      return fd;
    }
    const p = await this.checkedPath(rel);
    const fd = await this.verifiedFd(await openFd(p, open, mode), p);
    if (trunc) {
      try {
        await truncateOpened(fd, false);
      } catch (err) {
        await closeFdQuietly(fd, false);
        throw err;
      }
    }
    return fd;
  }

  /**
   * Runs `op` on the file at canonical `rel` through a path that reaches that file and nothing
   * else. chmod, chown, truncate and utimes follow a final symbolic link, and a local user who can
   * write in the tree may put one in place of the file between the caller's checks and the call:
   * the file is pinned by an O_PATH|O_NOFOLLOW descriptor (no I/O, none of the side effects of
   * opening a device), that descriptor is checked through /proc/self/fd to name `rel`, and it must
   * be `expect` (same device and inode: the lstat the caller's permission checks used). `op` then
   * gets /proc/self/fd/N, which the kernel resolves to the pinned file itself. A symbolic link
   * (`expect` is one) gets the checked path, for the calls that do not follow it (lchown,
   * lutimes); so does everything where /proc is absent.
   */
  async withPinned<T>(
    rel: readonly string[],
    expect: BigIntStats,
    op: (p: string) => Promise<T>,
  ): Promise<T> {
    return this.withPinnedPath(await this.checkedPath(rel), expect, op);
  }

  /**
   * Runs `op` with a path to the directory `rel` that cannot be redirected: the directory is
   * pinned by an O_PATH|O_DIRECTORY|O_NOFOLLOW descriptor checked through /proc/self/fd, and `op`
   * gets /proc/self/fd/N, below which names are looked up in that directory only (a directory of
   * the path swapped for a link after the check leads nowhere else). For calls on names inside it:
   * unlink, rmdir, rename and every create. `sync`: the pinning with synchronous calls
   * (PassthroughOptions.syncIo). Without /proc, `op` gets the checked path.
   */
  async withPinnedDir<T>(rel: readonly string[], op: (dir: string) => Promise<T>, sync = false): Promise<T> {
    const p = sync ? this.checkedDirSync(rel) : await this.checkedDir(rel);
    if (!procFdAvailable()) return op(p);
    const flags = O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW;
    const fd = sync
      ? this.verifiedFdSync(openSync(p, flags), p)
      : await this.verifiedFd(await openFd(p, flags), p);
    try {
      return await op(`${PINNED_PREFIX}${fd}`);
    } finally {
      await closeFdQuietly(fd, sync);
    }
  }

  /** withPinned for a host path already checked (checkedPath). */
  async withPinnedPath<T>(p: string, expect: BigIntStats, op: (p: string) => Promise<T>): Promise<T> {
    if (expect.isSymbolicLink() || !procFdAvailable()) return op(p);
    const fd = await openFd(p, O_PATH | constants.O_NOFOLLOW);
    try {
      await this.verifyFd(fd, p);
      const st = await fstatFd(fd, false);
      if (st.dev !== expect.dev || st.ino !== expect.ino) throw changedError();
      return await op(`${PINNED_PREFIX}${fd}`);
    } finally {
      await closeFdQuietly(fd, false);
    }
  }

  /** Returns `fd` if it names `expected` (verifyFd), else closes it and throws. */
  async verifiedFd(fd: number, expected: string): Promise<number> {
    try {
      await this.verifyFd(fd, expected);
    } catch (err) {
      await closeFdQuietly(fd, false);
      throw err;
    }
    return fd;
  }

  /** Returns `fd` if it names `expected` (verifyFdSync), else closes it and throws. */
  verifiedFdSync(fd: number, expected: string): number {
    try {
      this.verifyFdSync(fd, expected);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return fd;
  }

  /** Throws unless descriptor `fd` names host path `expected` (skipped where /proc is absent). */
  async verifyFd(fd: number, expected: string): Promise<void> {
    // A name below a pinned directory (withPinnedDir) cannot have led anywhere else.
    if (expected.startsWith(PINNED_PREFIX)) return;
    let actual: string;
    try {
      actual = await fsp.readlink(`/proc/self/fd/${fd}`);
    } catch {
      return; // no /proc: the realpath check in checkedPath is all we have
    }
    checkFdLink(actual, expected);
  }

  /** verifyFd with a synchronous readlink. */
  verifyFdSync(fd: number, expected: string): void {
    if (expected.startsWith(PINNED_PREFIX)) return;
    let actual: string;
    try {
      actual = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return;
    }
    checkFdLink(actual, expected);
  }
}

function checkFdLink(actual: string, expected: string): void {
  if (actual !== expected) {
    // A file removed meanwhile shows " (deleted)"; anything else is a swapped path.
    if (actual === `${expected} (deleted)`) return;
    throw escapeError();
  }
}

/** Walks one element from directory node `dir`. Never leaves the root; see module comment. */
export async function walkOne(
  root: ExportRoot,
  dir: PtNode,
  name: string,
  followLinks: boolean,
): Promise<PtNode> {
  if (name === "..") {
    if (dir.rel.length === 0) return ROOT_NODE;
    const rel = dir.rel.slice(0, -1);
    return { rel, name: rel.length === 0 ? "/" : rel[rel.length - 1]! };
  }
  if (name === ".") return dir;
  checkName(name);
  const dirPath = await root.checkedDir(dir.rel);
  const rel = [...dir.rel, name];
  const st = await fsp.lstat(path.join(dirPath, name));
  if (st.isSymbolicLink() && followLinks) {
    try {
      const target = await root.resolveLink(rel);
      return { rel: target, name, via: rel };
    } catch {
      // Escaping, dangling or looping: the node stays the link itself, which cannot be opened.
      return { rel, name };
    }
  }
  return { rel, name };
}

/** The qid-relevant identity of a node: is its last component a symbolic link? */
export async function lstatNode(root: ExportRoot, node: PtNode) {
  const p = await root.checkedPath(node.rel);
  return fsp.lstat(p, { bigint: true });
}
