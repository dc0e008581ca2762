// Conversions between 9P2000.L attributes (Linux stat) and the 9P2000 stat shape, so the client
// can offer one `stat()` in every dialect.

import {
  DMDEVICE,
  DMDIR,
  DMNAMEDPIPE,
  DMSOCKET,
  DMSYMLINK,
  L_O,
  OEXEC,
  ORDWR,
  OTRUNC,
  OWRITE,
  QTDIR,
  QTSYMLINK,
} from "../codec/index.js";
import type { Dirent, Qid, Rgetattr, Stat } from "../codec/types.js";
import * as M from "../mode.js";

/** Linux file type bits (stat(2) S_IF*). */
export const S_IF = {
  MT: M.S_IFMT,
  SOCK: M.S_IFSOCK,
  LNK: M.S_IFLNK,
  REG: M.S_IFREG,
  BLK: M.S_IFBLK,
  DIR: M.S_IFDIR,
  CHR: M.S_IFCHR,
  FIFO: M.S_IFIFO,
} as const;

/** Linux mode (S_IF* | permissions) → 9P2000 mode (DM* | permissions). */
export function dmFromLinuxMode(mode: number): number {
  return M.unixToDmMode(mode, true);
}

/** 9P2000 mode bits → Linux permission bits (setuid/setgid/sticky + rwx). */
export function linuxPermFromDm(dm: number): number {
  return M.dmToUnixPerm(dm, true);
}

/** A Plan 9 open mode (OREAD…OEXEC | OTRUNC) as Linux open flags for Tlopen/Tlcreate. */
export function linuxFlagsFromOpenMode(mode: number): number {
  const access = mode & 3;
  let flags =
    access === OWRITE ? L_O.WRONLY : access === ORDWR ? L_O.RDWR : access === OEXEC ? L_O.RDONLY : L_O.RDONLY;
  if (mode & OTRUNC) flags |= L_O.TRUNC;
  return flags;
}

/** A 9P2000.L time in seconds: a u64 on the wire that Linux reads as signed (before 1970: negative). */
function secs(t: bigint): number {
  return Number(BigInt.asIntN(64, t));
}

/**
 * Rgetattr → Stat (name supplied by the caller; uid/gid are the numbers as text). Times are the
 * server's whole signed seconds, not squeezed into the u32 of a 9P2000 stat.
 */
export function statFromAttr(name: string, a: Omit<Rgetattr, "type" | "tag">): Stat {
  const isDir = (a.mode & S_IF.MT) === S_IF.DIR;
  return {
    type: 0,
    dev: 0,
    qid: a.qid,
    mode: dmFromLinuxMode(a.mode),
    atime: secs(a.atime_sec),
    mtime: secs(a.mtime_sec),
    length: isDir ? 0n : a.size,
    name,
    uid: String(a.uid),
    gid: String(a.gid),
    muid: "",
    extension: "",
    n_uid: a.uid,
    n_gid: a.gid,
    n_muid: 0xffffffff,
  };
}

/** Linux d_type → 9P2000 mode bits (no permissions: a readdir entry does not carry them). */
export function statFromDirent(d: Dirent): Stat {
  const dt = d.type;
  const mode =
    dt === 4
      ? DMDIR
      : dt === 10
        ? DMSYMLINK
        : dt === 12
          ? DMSOCKET
          : dt === 1
            ? DMNAMEDPIPE
            : dt === 2 || dt === 6
              ? DMDEVICE
              : 0;
  return {
    type: 0,
    dev: 0,
    qid: d.qid,
    mode: mode >>> 0,
    atime: 0,
    mtime: 0,
    length: 0n,
    name: d.name,
    uid: "",
    gid: "",
    muid: "",
  };
}

/** True when a qid names a directory. */
export function isDirQid(qid: Qid): boolean {
  return (qid.type & QTDIR) !== 0;
}

/** True when a qid names a symbolic link (9P2000.u/.L). */
export function isSymlinkQid(qid: Qid): boolean {
  return (qid.type & QTSYMLINK) !== 0;
}
