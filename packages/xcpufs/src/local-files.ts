// Files the server itself opens, copies or removes on a user's behalf: a session's legacy `exec`
// file, the targets of `redirect`, the files tree spawn copies and a session directory at its end.
// When the server runs as root this is done with root's rights, in places the user controls (the
// session directory is also the user's fs/, and the session's programs run there as the user), so
// a symbolic link, a hard link or a swapped path must never hand the user a file they could not
// open themselves, nor lead a removal out of the directory.

import type { Stats } from "node:fs";
import { constants, existsSync } from "node:fs";
import {
  chmod,
  type FileHandle,
  lstat,
  open,
  readdir,
  readlink,
  realpath,
  rm,
  rmdir,
  unlink,
} from "node:fs/promises";
import { Errno } from "@clustermatic/ninep/errors";
import { XcpuError } from "./errors.js";

/** The session owner's identity, when the server checks permissions for it (running as root). */
export interface LocalOwner {
  uid: number;
  gid: number;
  /** Every group of the owner: its default group and its supplementary groups. */
  gids: number[];
}

const READ = 4;
const WRITE = 2;
const SEARCH = 1;

/** Unix permission check of `want` (4 read, 2 write, 1 search) for a uid and its groups; uid 0 passes. */
export function unixAllows(st: Stats, uid: number, gids: readonly number[], want: number): boolean {
  if (uid === 0) return true;
  let bits = st.mode & 7;
  if (st.uid === uid) bits = (st.mode >> 6) & 7;
  else if (gids.includes(st.gid)) bits = (st.mode >> 3) & 7;
  return (bits & want) === want;
}

/**
 * Opens the session's `exec` file. Never through a symbolic link (O_NOFOLLOW), never blocking on a
 * FIFO put in its place (O_NONBLOCK), only a regular file. Writing creates it (0700, given to the
 * owner) or, when it exists, checks the owner may write it before truncating it; reading checks
 * the owner may read it.
 */
export async function openExecFile(
  path: string,
  how: { write: boolean; read: boolean },
  owner: LocalOwner | undefined,
): Promise<FileHandle> {
  const base = constants.O_NOFOLLOW | constants.O_NONBLOCK;
  const access = how.write ? (how.read ? constants.O_RDWR : constants.O_WRONLY) : constants.O_RDONLY;
  let fh: FileHandle;
  let created = false;
  try {
    if (how.write) {
      try {
        fh = await open(path, base | access | constants.O_CREAT | constants.O_EXCL, 0o700);
        created = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        fh = await open(path, base | access);
      }
    } else {
      fh = await open(path, base | access);
    }
  } catch (err) {
    throw execOpenError(err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new XcpuError("exec is not a regular file");
    if (owner && !created) {
      const want = (how.read ? READ : 0) | (how.write ? WRITE : 0);
      if (!unixAllows(st, owner.uid, owner.gids, want)) throw new XcpuError("permission denied");
    }
    if (owner && created) await fh.chown(owner.uid, owner.gid);
    if (how.write && !created) await fh.truncate(0);
    return fh;
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

/** What an open of the `exec` file that failed tells the client. */
function execOpenError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ELOOP") return new XcpuError("exec is a symbolic link");
  // A FIFO opened for writing without a reader (O_NONBLOCK).
  if (code === "ENXIO") return new XcpuError("exec is not a regular file");
  return err;
}

/**
 * Sets the length of the session's staged `exec` file (a wstat of `exec`: what a kernel v9fs
 * client sends after a truncating open, as `cp prog N/exec` does), with the same care as
 * openExecFile: no link followed, a regular file only, the owner's write permission. Nothing
 * staged is already of length 0.
 */
export async function truncateExecFile(
  path: string,
  length: number,
  owner: LocalOwner | undefined,
): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      if (length === 0) return;
      throw new XcpuError("No such file or directory", Errno.ENOENT);
    }
    throw execOpenError(err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new XcpuError("exec is not a regular file");
    if (owner && !unixAllows(st, owner.uid, owner.gids, WRITE)) throw new XcpuError("permission denied");
    await fh.truncate(length);
  } finally {
    await fh.close().catch(() => {});
  }
}

/** Character devices any user may be given: /dev/null, zero, full, random, urandom (major 1). */
const HARMLESS_DEVICES = new Set([3, 5, 7, 8, 9]);

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/** Symbolic links followed in one name, as the kernel's own limit. */
const MAX_LINKS = 40;

/**
 * Finds the file `path` (absolute) names, one component at a time, each looked up in the directory
 * opened before it (through /proc/self/fd) and never through a link (O_NOFOLLOW): the server
 * follows symbolic links itself, so a rename elsewhere cannot lead a later step astray. `user`
 * must have search permission on every directory looked into. Returns the directory holding the
 * file (open; the caller closes it), the file's name there and its real path.
 */
async function resolveAnchored(
  path: string,
  user: LocalOwner | undefined,
  shown: string,
): Promise<{ dir: FileHandle; name: string; real: string }> {
  const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
  const dirs: FileHandle[] = [await open("/", O_DIR)];
  const names: string[] = [];
  let pending = path.split("/").filter((c) => c !== "" && c !== ".");
  let links = 0;
  try {
    for (;;) {
      const dir = dirs[dirs.length - 1] as FileHandle;
      const name = pending.shift();
      if (name === undefined) throw new XcpuError(`${shown}: not a file`);
      if (user && !unixAllows(await dir.stat(), user.uid, user.gids, SEARCH))
        throw new XcpuError(`${shown}: Permission denied`, Errno.EACCES);
      if (name === "..") {
        if (dirs.length > 1) {
          await dirs.pop()?.close();
          names.pop();
        }
        continue;
      }
      const at = `/proc/self/fd/${dir.fd}/${name}`;
      let st: Stats;
      try {
        st = await lstat(at);
      } catch {
        throw new XcpuError(`${shown}: No such file or directory`, Errno.ENOENT);
      }
      if (st.isSymbolicLink()) {
        if (++links > MAX_LINKS)
          throw new XcpuError(`${shown}: Too many levels of symbolic links`, Errno.ELOOP);
        const target = await readlink(at).catch(() => {
          throw new XcpuError(`${shown}: changed while it was opened`);
        });
        if (target.startsWith("/")) {
          for (const d of dirs.splice(1)) await d.close();
          names.length = 0;
        }
        pending = [...target.split("/").filter((c) => c !== "" && c !== "."), ...pending];
        continue;
      }
      if (pending.length === 0) {
        dirs.pop();
        return { dir, name, real: `/${[...names, name].join("/")}` };
      }
      if (!st.isDirectory()) throw new XcpuError(`${shown}: No such file or directory`, Errno.ENOTDIR);
      try {
        dirs.push(await open(at, O_DIR));
      } catch {
        throw new XcpuError(`${shown}: changed while it was opened`);
      }
      names.push(name);
    }
  } finally {
    for (const d of dirs) await d.close().catch(() => {});
  }
}

/**
 * Opens the target of `redirect` for reading or writing (never creating it): a regular file, a
 * harmless character device, or for an output a FIFO, that the owner may read or write. The server
 * opens it with its own (root's) rights, so the owner's are checked first: the name is resolved
 * one directory at a time (resolveAnchored: search permission on each, links followed by the
 * server, nothing a rename elsewhere can redirect), the file is examined before it is opened and
 * the open checked to be that file, then its own bits. /proc and /sys, and devices other than
 * /dev/null, zero, full, random and urandom, are refused to users other than root (never opened:
 * the kernel checks some such files against the opener, and opening some devices does something).
 * Nothing waits (O_NONBLOCK: an output FIFO must have a reader already); the program gets the
 * descriptor back in blocking mode (spawn clears O_NONBLOCK on its stdio). Access control lists
 * are not consulted, only the mode bits. `shown` is the name as the user wrote it.
 */
export async function openRedirect(
  path: string,
  shown: string,
  reading: boolean,
  owner: LocalOwner | undefined,
): Promise<FileHandle> {
  const user = owner && owner.uid !== 0 ? owner : undefined;
  const { dir, name, real } = await resolveAnchored(path, user, shown);
  try {
    const at = `/proc/self/fd/${dir.fd}/${name}`;
    const before = await lstat(at).catch(() => {
      throw new XcpuError(`${shown}: No such file or directory`, Errno.ENOENT);
    });
    if (!(before.isFile() || before.isCharacterDevice() || before.isFIFO()))
      throw new XcpuError(`${shown}: not a file`);
    // Opened without waiting for a writer, a FIFO would give the program end of file at once;
    // opened waiting, it would hold one of the server's I/O threads until a writer came.
    if (reading && before.isFIFO())
      throw new XcpuError(`${shown}: a FIFO cannot be stdin (the program may open it itself)`, Errno.EINVAL);
    if (user) {
      if (under(real, "/proc") || under(real, "/sys"))
        throw new XcpuError(`${shown}: files under /proc and /sys cannot be redirected`, Errno.EACCES);
      if (before.isCharacterDevice() && !(before.rdev >> 8 === 1 && HARMLESS_DEVICES.has(before.rdev & 0xff)))
        throw new XcpuError(
          `${shown}: of devices only /dev/null, zero, full, random and urandom can be redirected`,
          Errno.EACCES,
        );
      if (!unixAllows(before, user.uid, user.gids, reading ? READ : WRITE))
        throw new XcpuError(`${shown}: Permission denied`, Errno.EACCES);
    }
    let fh: FileHandle;
    try {
      fh = await open(
        at,
        (reading ? constants.O_RDONLY : constants.O_WRONLY) |
          constants.O_NONBLOCK |
          constants.O_NOCTTY |
          constants.O_NOFOLLOW,
      );
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENXIO") throw new XcpuError(`${shown}: no process reads this FIFO`, Errno.ENXIO);
      if (code === "EACCES" || code === "EPERM")
        throw new XcpuError(`${shown}: Permission denied`, Errno.EACCES);
      if (code === "ELOOP") throw new XcpuError(`${shown}: changed while it was opened`);
      throw new XcpuError(`${shown}: ${(err as Error).message}`);
    }
    try {
      const after = await fh.stat();
      if (after.dev !== before.dev || after.ino !== before.ino)
        throw new XcpuError(`${shown}: changed while it was opened`);
      return fh;
    } catch (err) {
      await fh.close().catch(() => {});
      throw err;
    }
  } finally {
    await dir.close().catch(() => {});
  }
}

/**
 * Opens `path` for reading if it is, or names through symbolic links, a regular file inside the
 * directory `root` (a real path): the file actually opened is checked through /proc/self/fd, so a
 * link pointing out, or a path component swapped for one meanwhile, is never read. Returns
 * undefined for anything else (a link out of `root`, a dangling link, a FIFO, a device).
 */
export async function openFileInside(root: string, path: string): Promise<FileHandle | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const real = await readlink(`/proc/self/fd/${fh.fd}`);
    if (real.startsWith(`${root}/`) && (await fh.stat()).isFile()) return fh;
  } catch {
    // fall through: not usable
  }
  await fh.close().catch(() => {});
  return undefined;
}

/** Whether `path` resolves (links followed) to `root` or a place inside it. */
export async function resolvesInside(root: string, path: string): Promise<boolean> {
  try {
    const real = await realpath(path);
    return real === root || real.startsWith(`${root}/`);
  } catch {
    return false;
  }
}

const code = (err: unknown) => (err as NodeJS.ErrnoException).code;

/**
 * Removes the directory `path` and everything below it without following a link anywhere: each
 * directory is held open (O_NOFOLLOW) while its entries are removed through /proc/self/fd, so a
 * directory swapped for a link meanwhile (by a program of the session's user still running) is
 * removed as the link it has become, never followed. fs.rm checks each entry with lstat and then
 * goes on by name. Where /proc is absent, fs.rm.
 */
export async function removeWithin(path: string): Promise<void> {
  if (!existsSync("/proc/self/fd")) return rm(path, { recursive: true, force: true });
  await removeDir(path);
}

/** The server's effective uid; undefined where there is none (root needs no permission bits). */
const euid = process.geteuid?.();

/**
 * Opens a directory to be removed, without following a link. Not running as root, a directory of
 * the server's own that a program left without read, write or search permission for its owner
 * (`chmod 000 d`) is given them first: the server may, and without them it could neither list
 * nor empty it.
 */
async function openToRemove(path: string): Promise<FileHandle> {
  const flags = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
  let dir: FileHandle;
  try {
    dir = await open(path, flags);
  } catch (err) {
    if (code(err) !== "EACCES" || !euid) throw err;
    const st = await lstat(path);
    // A link (or anything else) is not changed: chmod would follow it.
    if (!st.isDirectory() || st.uid !== euid) throw err;
    await chmod(path, (st.mode & 0o7777) | 0o700);
    dir = await open(path, flags);
    const now = await dir.stat();
    if (now.ino !== st.ino || now.dev !== st.dev) {
      // Swapped meanwhile: whatever took its place is not removed through this handle.
      await dir.close();
      throw err;
    }
    return dir;
  }
  if (euid) {
    try {
      const st = await dir.stat();
      // Write and search on it to remove its entries (fchmod: no path, so no link, involved).
      if (st.uid === euid && (st.mode & 0o700) !== 0o700) await dir.chmod((st.mode & 0o7777) | 0o700);
    } catch {
      // left as it is: the removals below report what fails
    }
  }
  return dir;
}

async function removeDir(path: string): Promise<void> {
  let dir: FileHandle;
  try {
    dir = await openToRemove(path);
  } catch (err) {
    if (code(err) === "ENOENT") return;
    // Not a directory (any more): a link or a file, removed as such.
    if (code(err) === "ELOOP" || code(err) === "ENOTDIR") return removeEntry(path);
    throw err;
  }
  try {
    const here = `/proc/self/fd/${dir.fd}`;
    for (const e of await readdir(here, { withFileTypes: true })) {
      const p = `${here}/${e.name}`;
      if (e.isDirectory()) await removeDir(p);
      else await removeEntry(p);
    }
  } finally {
    await dir.close();
  }
  try {
    await rmdir(path);
  } catch (err) {
    if (code(err) === "ENOTDIR") await removeEntry(path);
    else if (code(err) !== "ENOENT") throw err;
  }
}

async function removeEntry(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    // A file that became a directory since the listing.
    if (code(err) === "EISDIR") await removeDir(path);
    else if (code(err) !== "ENOENT") throw err;
  }
}
