// Conversions between 9P2000.L attributes (Linux stat) and the 9P2000 stat shape, so the client
// can offer one `stat()` in every dialect.

import {
  DMDEVICE,
  DMDIR,
  DMNAMEDPIPE,
  DMSETGID,
  DMSETUID,
  DMSETVTX,
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

/** Linux file type bits (stat(2) S_IF*). */
export const S_IF = {
  MT: 0o170000,
  SOCK: 0o140000,
  LNK: 0o120000,
  REG: 0o100000,
  BLK: 0o060000,
  DIR: 0o040000,
  CHR: 0o020000,
  FIFO: 0o010000,
} as const;

/** Linux mode (S_IF* | permissions) → 9P2000 mode (DM* | permissions). */
export function dmFromLinuxMode(mode: number): number {
  let dm = mode & 0o777;
  if (mode & 0o4000) dm |= DMSETUID;
  if (mode & 0o2000) dm |= DMSETGID;
  if (mode & 0o1000) dm |= DMSETVTX;
  switch (mode & S_IF.MT) {
    case S_IF.DIR:
      dm |= DMDIR;
      break;
    case S_IF.LNK:
      dm |= DMSYMLINK;
      break;
    case S_IF.SOCK:
      dm |= DMSOCKET;
      break;
    case S_IF.FIFO:
      dm |= DMNAMEDPIPE;
      break;
    case S_IF.BLK:
    case S_IF.CHR:
      dm |= DMDEVICE;
      break;
  }
  return dm >>> 0;
}

/** 9P2000 mode bits → Linux permission bits (setuid/setgid/sticky + rwx). */
export function linuxPermFromDm(dm: number): number {
  let mode = dm & 0o777;
  if (dm & DMSETUID) mode |= 0o4000;
  if (dm & DMSETGID) mode |= 0o2000;
  if (dm & DMSETVTX) mode |= 0o1000;
  return mode;
}

/** A Plan 9 open mode (OREAD…OEXEC | OTRUNC) as Linux open flags for Tlopen/Tlcreate. */
export function linuxFlagsFromOpenMode(mode: number): number {
  const access = mode & 3;
  let flags =
    access === OWRITE ? L_O.WRONLY : access === ORDWR ? L_O.RDWR : access === OEXEC ? L_O.RDONLY : L_O.RDONLY;
  if (mode & OTRUNC) flags |= L_O.TRUNC;
  return flags;
}

function secs(t: bigint): number {
  const n = Number(t);
  return n < 0 ? 0 : Math.min(n, 0xffffffff);
}

/** Rgetattr → Stat (name supplied by the caller; uid/gid are the numbers as text). */
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
