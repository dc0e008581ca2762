// Protocol constants of 9P2000, 9P2000.u and 9P2000.L, spelled as in the Plan 9 manual and Linux headers.

export const NOTAG = 0xffff;
export const NOFID = 0xffffffff;
/** 9P2000.u/.L: "no numeric uid, use the uname string". */
export const NONUNAME = 0xffffffff;
export const MAXWELEM = 16;
export const IOHDRSZ = 24;
export const STATMAX = 65535;
export const ERRMAX = 128;
export const DEFAULT_MSIZE = 8192 + IOHDRSZ;

export const Dialect = {
  P2000: "9P2000",
  P2000u: "9P2000.u",
  P2000L: "9P2000.L",
} as const;
export type Dialect = (typeof Dialect)[keyof typeof Dialect];

export const MsgType = {
  // 9P2000.L
  Tlerror: 6,
  Rlerror: 7,
  Tstatfs: 8,
  Rstatfs: 9,
  Tlopen: 12,
  Rlopen: 13,
  Tlcreate: 14,
  Rlcreate: 15,
  Tsymlink: 16,
  Rsymlink: 17,
  Tmknod: 18,
  Rmknod: 19,
  Trename: 20,
  Rrename: 21,
  Treadlink: 22,
  Rreadlink: 23,
  Tgetattr: 24,
  Rgetattr: 25,
  Tsetattr: 26,
  Rsetattr: 27,
  Txattrwalk: 30,
  Rxattrwalk: 31,
  Txattrcreate: 32,
  Rxattrcreate: 33,
  Treaddir: 40,
  Rreaddir: 41,
  Tfsync: 50,
  Rfsync: 51,
  Tlock: 52,
  Rlock: 53,
  Tgetlock: 54,
  Rgetlock: 55,
  Tlink: 70,
  Rlink: 71,
  Tmkdir: 72,
  Rmkdir: 73,
  Trenameat: 74,
  Rrenameat: 75,
  Tunlinkat: 76,
  Runlinkat: 77,
  // 9P2000 (and .u)
  Tversion: 100,
  Rversion: 101,
  Tauth: 102,
  Rauth: 103,
  Tattach: 104,
  Rattach: 105,
  Terror: 106,
  Rerror: 107,
  Tflush: 108,
  Rflush: 109,
  Twalk: 110,
  Rwalk: 111,
  Topen: 112,
  Ropen: 113,
  Tcreate: 114,
  Rcreate: 115,
  Tread: 116,
  Rread: 117,
  Twrite: 118,
  Rwrite: 119,
  Tclunk: 120,
  Rclunk: 121,
  Tremove: 122,
  Rremove: 123,
  Tstat: 124,
  Rstat: 125,
  Twstat: 126,
  Rwstat: 127,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];
export type MsgTypeName = keyof typeof MsgType;

// Qid types (top byte of the mode).
export const QTDIR = 0x80;
export const QTAPPEND = 0x40;
export const QTEXCL = 0x20;
export const QTMOUNT = 0x10;
export const QTAUTH = 0x08;
export const QTTMP = 0x04;
export const QTSYMLINK = 0x02;
export const QTLINK = 0x01;
export const QTFILE = 0x00;

// Mode bits.
export const DMDIR = 0x80000000;
export const DMAPPEND = 0x40000000;
export const DMEXCL = 0x20000000;
export const DMMOUNT = 0x10000000;
export const DMAUTH = 0x08000000;
export const DMTMP = 0x04000000;
export const DMSYMLINK = 0x02000000;
export const DMLINK = 0x01000000;
export const DMDEVICE = 0x00800000;
export const DMNAMEDPIPE = 0x00200000;
export const DMSOCKET = 0x00100000;
export const DMSETUID = 0x00080000;
export const DMSETGID = 0x00040000;
export const DMSETVTX = 0x00010000;
export const DMREAD = 0o4;
export const DMWRITE = 0o2;
export const DMEXEC = 0o1;

// Open modes (Topen/Tcreate).
export const OREAD = 0;
export const OWRITE = 1;
export const ORDWR = 2;
export const OEXEC = 3;
export const OTRUNC = 0x10;
export const OCEXEC = 0x20;
export const ORCLOSE = 0x40;

// 9P2000.L getattr request/valid mask bits.
export const GETATTR = {
  MODE: 0x1n,
  NLINK: 0x2n,
  UID: 0x4n,
  GID: 0x8n,
  RDEV: 0x10n,
  ATIME: 0x20n,
  MTIME: 0x40n,
  CTIME: 0x80n,
  INO: 0x100n,
  SIZE: 0x200n,
  BLOCKS: 0x400n,
  BTIME: 0x800n,
  GEN: 0x1000n,
  DATA_VERSION: 0x2000n,
  BASIC: 0x7ffn,
  ALL: 0x3fffn,
} as const;

// 9P2000.L setattr valid bits.
export const SETATTR = {
  MODE: 0x1,
  UID: 0x2,
  GID: 0x4,
  SIZE: 0x8,
  ATIME: 0x10,
  MTIME: 0x20,
  CTIME: 0x40,
  ATIME_SET: 0x80,
  MTIME_SET: 0x100,
} as const;

// Linux open(2) flags as carried by Tlopen/Tlcreate (octal, P9_DOTL_*).
export const L_O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  ACCMODE: 3,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECTORY: 0o200000,
  NOFOLLOW: 0o400000,
} as const;

export const AT_REMOVEDIR = 0x200;
