// Unix file modes and 9P mode bits: the stat(2) type and set-id bits, and the conversions between
// a Unix st_mode and a 9P (DM*) mode used by the client (9P2000.L attributes) and the passthrough
// server alike.

import {
  DMDEVICE,
  DMDIR,
  DMNAMEDPIPE,
  DMSETGID,
  DMSETUID,
  DMSETVTX,
  DMSOCKET,
  DMSYMLINK,
} from "./codec/constants.js";

// Linux stat(2) file type bits.
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;

/**
 * Unix st_mode → 9P mode. `unix` (9P2000.u and .L) adds the bits plain 9P2000 lacks: links,
 * devices, pipes, sockets and set-id/sticky; without it only the directory bit and rwx remain.
 */
export function unixToDmMode(mode: number, unix: boolean): number {
  let m = mode & 0o777;
  const fmt = mode & S_IFMT;
  if (fmt === S_IFDIR) m |= DMDIR;
  if (unix) {
    if (fmt === S_IFLNK) m |= DMSYMLINK;
    else if (fmt === S_IFCHR || fmt === S_IFBLK) m |= DMDEVICE;
    else if (fmt === S_IFIFO) m |= DMNAMEDPIPE;
    else if (fmt === S_IFSOCK) m |= DMSOCKET;
    if (mode & S_ISUID) m |= DMSETUID;
    if (mode & S_ISGID) m |= DMSETGID;
    if (mode & S_ISVTX) m |= DMSETVTX;
  }
  return m >>> 0;
}

/** 9P mode → the Unix permission bits chmod takes (set-id/sticky only when `unix`). */
export function dmToUnixPerm(dm: number, unix: boolean): number {
  let m = dm & 0o777;
  if (unix) {
    if (dm & DMSETUID) m |= S_ISUID;
    if (dm & DMSETGID) m |= S_ISGID;
    if (dm & DMSETVTX) m |= S_ISVTX;
  }
  return m;
}
