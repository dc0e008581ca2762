// Message and structure types: one interface per 9P message, discriminated by `type`.
// Field names follow the Plan 9 manual and spec tables so greps against the spec work.
// 8-byte fields are bigint; 1/2/4-byte fields are number.

import type { MsgType } from "./constants.js";

export interface Qid {
  type: number;
  version: number;
  path: bigint;
}

/** A stat entry (Rstat, Twstat, directory reads). The .u fields are present on a 9P2000.u connection. */
export interface Stat {
  type: number;
  dev: number;
  qid: Qid;
  mode: number;
  atime: number;
  mtime: number;
  length: bigint;
  name: string;
  uid: string;
  gid: string;
  muid: string;
  /** 9P2000.u only */
  extension?: string;
  n_uid?: number;
  n_gid?: number;
  n_muid?: number;
}

/** One 9P2000.L directory entry (Rreaddir data). */
export interface Dirent {
  qid: Qid;
  offset: bigint;
  type: number;
  name: string;
}

type M<K extends keyof typeof MsgType, F = unknown> = { type: (typeof MsgType)[K]; tag: number } & F;

// 9P2000 / 9P2000.u
export type Tversion = M<"Tversion", { msize: number; version: string }>;
export type Rversion = M<"Rversion", { msize: number; version: string }>;
/** n_uname is on the wire for 9P2000.u and .L only (NONUNAME when absent). */
export type Tauth = M<"Tauth", { afid: number; uname: string; aname: string; n_uname?: number }>;
export type Rauth = M<"Rauth", { aqid: Qid }>;
export type Tattach = M<
  "Tattach",
  { fid: number; afid: number; uname: string; aname: string; n_uname?: number }
>;
export type Rattach = M<"Rattach", { qid: Qid }>;
/** errno is on the wire for 9P2000.u only. */
export type Rerror = M<"Rerror", { ename: string; errno?: number }>;
export type Tflush = M<"Tflush", { oldtag: number }>;
export type Rflush = M<"Rflush">;
export type Twalk = M<"Twalk", { fid: number; newfid: number; wname: string[] }>;
export type Rwalk = M<"Rwalk", { wqid: Qid[] }>;
export type Topen = M<"Topen", { fid: number; mode: number }>;
export type Ropen = M<"Ropen", { qid: Qid; iounit: number }>;
/** extension is on the wire for 9P2000.u only. */
export type Tcreate = M<
  "Tcreate",
  { fid: number; name: string; perm: number; mode: number; extension?: string }
>;
export type Rcreate = M<"Rcreate", { qid: Qid; iounit: number }>;
export type Tread = M<"Tread", { fid: number; offset: bigint; count: number }>;
export type Rread = M<"Rread", { data: Uint8Array }>;
export type Twrite = M<"Twrite", { fid: number; offset: bigint; data: Uint8Array }>;
export type Rwrite = M<"Rwrite", { count: number }>;
export type Tclunk = M<"Tclunk", { fid: number }>;
export type Rclunk = M<"Rclunk">;
export type Tremove = M<"Tremove", { fid: number }>;
export type Rremove = M<"Rremove">;
export type Tstat = M<"Tstat", { fid: number }>;
export type Rstat = M<"Rstat", { stat: Stat }>;
export type Twstat = M<"Twstat", { fid: number; stat: Stat }>;
export type Rwstat = M<"Rwstat">;

// 9P2000.L
export type Rlerror = M<"Rlerror", { ecode: number }>;
export type Tstatfs = M<"Tstatfs", { fid: number }>;
export type Rstatfs = M<
  "Rstatfs",
  {
    fstype: number;
    bsize: number;
    blocks: bigint;
    bfree: bigint;
    bavail: bigint;
    files: bigint;
    ffree: bigint;
    fsid: bigint;
    namelen: number;
  }
>;
export type Tlopen = M<"Tlopen", { fid: number; flags: number }>;
export type Rlopen = M<"Rlopen", { qid: Qid; iounit: number }>;
export type Tlcreate = M<"Tlcreate", { fid: number; name: string; flags: number; mode: number; gid: number }>;
export type Rlcreate = M<"Rlcreate", { qid: Qid; iounit: number }>;
export type Tsymlink = M<"Tsymlink", { fid: number; name: string; symtgt: string; gid: number }>;
export type Rsymlink = M<"Rsymlink", { qid: Qid }>;
export type Tmknod = M<
  "Tmknod",
  { dfid: number; name: string; mode: number; major: number; minor: number; gid: number }
>;
export type Rmknod = M<"Rmknod", { qid: Qid }>;
export type Trename = M<"Trename", { fid: number; dfid: number; name: string }>;
export type Rrename = M<"Rrename">;
export type Treadlink = M<"Treadlink", { fid: number }>;
export type Rreadlink = M<"Rreadlink", { target: string }>;
export type Tgetattr = M<"Tgetattr", { fid: number; request_mask: bigint }>;
export type Rgetattr = M<
  "Rgetattr",
  {
    valid: bigint;
    qid: Qid;
    mode: number;
    uid: number;
    gid: number;
    nlink: bigint;
    rdev: bigint;
    size: bigint;
    blksize: bigint;
    blocks: bigint;
    atime_sec: bigint;
    atime_nsec: bigint;
    mtime_sec: bigint;
    mtime_nsec: bigint;
    ctime_sec: bigint;
    ctime_nsec: bigint;
    btime_sec: bigint;
    btime_nsec: bigint;
    gen: bigint;
    data_version: bigint;
  }
>;
export type Tsetattr = M<
  "Tsetattr",
  {
    fid: number;
    valid: number;
    mode: number;
    uid: number;
    gid: number;
    size: bigint;
    atime_sec: bigint;
    atime_nsec: bigint;
    mtime_sec: bigint;
    mtime_nsec: bigint;
  }
>;
export type Rsetattr = M<"Rsetattr">;
export type Txattrwalk = M<"Txattrwalk", { fid: number; newfid: number; name: string }>;
export type Rxattrwalk = M<"Rxattrwalk", { size: bigint }>;
export type Txattrcreate = M<"Txattrcreate", { fid: number; name: string; attr_size: bigint; flags: number }>;
export type Rxattrcreate = M<"Rxattrcreate">;
export type Treaddir = M<"Treaddir", { fid: number; offset: bigint; count: number }>;
export type Rreaddir = M<"Rreaddir", { data: Uint8Array }>;
export type Tfsync = M<"Tfsync", { fid: number; datasync: number }>;
export type Rfsync = M<"Rfsync">;
export type Tlock = M<
  "Tlock",
  {
    fid: number;
    locktype: number;
    flags: number;
    start: bigint;
    length: bigint;
    proc_id: number;
    client_id: string;
  }
>;
export type Rlock = M<"Rlock", { status: number }>;
export type Tgetlock = M<
  "Tgetlock",
  { fid: number; locktype: number; start: bigint; length: bigint; proc_id: number; client_id: string }
>;
export type Rgetlock = M<
  "Rgetlock",
  { locktype: number; start: bigint; length: bigint; proc_id: number; client_id: string }
>;
export type Tlink = M<"Tlink", { dfid: number; fid: number; name: string }>;
export type Rlink = M<"Rlink">;
export type Tmkdir = M<"Tmkdir", { dfid: number; name: string; mode: number; gid: number }>;
export type Rmkdir = M<"Rmkdir", { qid: Qid }>;
export type Trenameat = M<
  "Trenameat",
  { olddirfid: number; oldname: string; newdirfid: number; newname: string }
>;
export type Rrenameat = M<"Rrenameat">;
export type Tunlinkat = M<"Tunlinkat", { dirfd: number; name: string; flags: number }>;
export type Runlinkat = M<"Runlinkat">;

export type TMessage =
  | Tversion
  | Tauth
  | Tattach
  | Tflush
  | Twalk
  | Topen
  | Tcreate
  | Tread
  | Twrite
  | Tclunk
  | Tremove
  | Tstat
  | Twstat
  | Tstatfs
  | Tlopen
  | Tlcreate
  | Tsymlink
  | Tmknod
  | Trename
  | Treadlink
  | Tgetattr
  | Tsetattr
  | Txattrwalk
  | Txattrcreate
  | Treaddir
  | Tfsync
  | Tlock
  | Tgetlock
  | Tlink
  | Tmkdir
  | Trenameat
  | Tunlinkat;

export type RMessage =
  | Rversion
  | Rauth
  | Rattach
  | Rerror
  | Rflush
  | Rwalk
  | Ropen
  | Rcreate
  | Rread
  | Rwrite
  | Rclunk
  | Rremove
  | Rstat
  | Rwstat
  | Rlerror
  | Rstatfs
  | Rlopen
  | Rlcreate
  | Rsymlink
  | Rmknod
  | Rrename
  | Rreadlink
  | Rgetattr
  | Rsetattr
  | Rxattrwalk
  | Rxattrcreate
  | Rreaddir
  | Rfsync
  | Rlock
  | Rgetlock
  | Rlink
  | Rmkdir
  | Rrenameat
  | Runlinkat;

export type Message = TMessage | RMessage;

/** The message interface for a given type number. */
export type MessageOf<T extends number> = Extract<Message, { type: T }>;
