// Golden vectors for the 9P2000.L messages, written by hand from diod's protocol.md and Linux's
// include/net/9p/9p.h (type numbers, field order and widths).

import { MsgType as T } from "../../src/codec/index.js";
import { hexOf } from "./hex.js";
import type { Vector } from "./vector.js";

const L = "9P2000.L" as const;
const dirQid = { type: 0x80, version: 0, path: 2n };
const fileQid = { type: 0x00, version: 0, path: 5n };

export const vectors9P2000L: Vector[] = [
  {
    name: "Rlerror ENOENT",
    dialects: [L],
    message: { type: T.Rlerror, tag: 2, ecode: 2 },
    hex: hexOf(`
      0b 00 00 00         | size 11
      07 02 00            | Rlerror tag 2
      02 00 00 00         | ecode ENOENT
    `),
  },
  {
    name: "Tstatfs",
    dialects: [L],
    message: { type: T.Tstatfs, tag: 1, fid: 1 },
    hex: hexOf(`
      0b 00 00 00         | size 11
      08 01 00            | Tstatfs tag 1
      01 00 00 00         | fid 1
    `),
  },
  {
    name: "Rstatfs",
    dialects: [L],
    message: {
      type: T.Rstatfs,
      tag: 1,
      fstype: 0x01021997,
      bsize: 4096,
      blocks: 1000n,
      bfree: 500n,
      bavail: 400n,
      files: 100n,
      ffree: 50n,
      fsid: 0x1122334455667788n,
      namelen: 255,
    },
    hex: hexOf(`
      43 00 00 00         | size 67 = 7 + 60
      09 01 00            | Rstatfs tag 1
      97 19 02 01         | type V9FS_MAGIC 0x01021997
      00 10 00 00         | bsize 4096
      e8 03 00 00 00 00 00 00 | blocks 1000
      f4 01 00 00 00 00 00 00 | bfree 500
      90 01 00 00 00 00 00 00 | bavail 400
      64 00 00 00 00 00 00 00 | files 100
      32 00 00 00 00 00 00 00 | ffree 50
      88 77 66 55 44 33 22 11 | fsid
      ff 00 00 00         | namelen 255
    `),
  },
  {
    name: "Tlopen O_RDWR|O_TRUNC",
    dialects: [L],
    message: { type: T.Tlopen, tag: 1, fid: 1, flags: 0o1002 },
    hex: hexOf(`
      0f 00 00 00         | size 15
      0c 01 00            | Tlopen tag 1
      01 00 00 00         | fid 1
      02 02 00 00         | flags 01002 (O_TRUNC|O_RDWR)
    `),
  },
  {
    name: "Rlopen",
    dialects: [L],
    message: { type: T.Rlopen, tag: 1, qid: fileQid, iounit: 0 },
    hex: hexOf(`
      18 00 00 00         | size 24
      0d 01 00            | Rlopen tag 1
      00 00 00 00 00 05 00 00 00 00 00 00 00 | qid file vers 0 path 5
      00 00 00 00         | iounit 0
    `),
  },
  {
    name: "Tlcreate",
    dialects: [L],
    message: { type: T.Tlcreate, tag: 2, fid: 1, name: "f.txt", flags: 0o101, mode: 0o644, gid: 1000 },
    hex: hexOf(`
      1e 00 00 00         | size 30
      0e 02 00            | Tlcreate tag 2
      01 00 00 00         | fid 1
      05 00 66 2e 74 78 74 | name "f.txt"
      41 00 00 00         | flags O_CREAT|O_WRONLY (0101)
      a4 01 00 00         | mode 0644
      e8 03 00 00         | gid 1000
    `),
  },
  {
    name: "Rlcreate",
    dialects: [L],
    message: { type: T.Rlcreate, tag: 2, qid: fileQid, iounit: 65512 },
    hex: hexOf(`
      18 00 00 00         | size 24
      0f 02 00            | Rlcreate tag 2
      00 00 00 00 00 05 00 00 00 00 00 00 00 | qid
      e8 ff 00 00         | iounit 65512
    `),
  },
  {
    name: "Tsymlink",
    dialects: [L],
    message: { type: T.Tsymlink, tag: 3, fid: 1, name: "ln", symtgt: "f.txt", gid: 0 },
    hex: hexOf(`
      1a 00 00 00         | size 26
      10 03 00            | Tsymlink tag 3
      01 00 00 00         | fid 1
      02 00 6c 6e         | name "ln"
      05 00 66 2e 74 78 74 | symtgt "f.txt"
      00 00 00 00         | gid 0
    `),
  },
  {
    name: "Rsymlink",
    dialects: [L],
    message: { type: T.Rsymlink, tag: 3, qid: { type: 0x02, version: 0, path: 9n } },
    hex: hexOf(`
      14 00 00 00         | size 20
      11 03 00            | Rsymlink tag 3
      02 00 00 00 00 09 00 00 00 00 00 00 00 | qid QTSYMLINK path 9
    `),
  },
  {
    name: "Tmknod character device",
    dialects: [L],
    message: { type: T.Tmknod, tag: 4, dfid: 1, name: "null", mode: 0o20666, major: 1, minor: 3, gid: 0 },
    hex: hexOf(`
      21 00 00 00         | size 33
      12 04 00            | Tmknod tag 4
      01 00 00 00         | dfid 1
      04 00 6e 75 6c 6c   | name "null"
      b6 21 00 00         | mode S_IFCHR|0666 (020666)
      01 00 00 00         | major 1
      03 00 00 00         | minor 3
      00 00 00 00         | gid 0
    `),
  },
  {
    name: "Rmknod",
    dialects: [L],
    message: { type: T.Rmknod, tag: 4, qid: fileQid },
    hex: hexOf(`
      14 00 00 00 13 04 00 | size 20, Rmknod, tag 4
      00 00 00 00 00 05 00 00 00 00 00 00 00 | qid
    `),
  },
  {
    name: "Trename",
    dialects: [L],
    message: { type: T.Trename, tag: 5, fid: 2, dfid: 1, name: "g" },
    hex: hexOf(`
      12 00 00 00         | size 18
      14 05 00            | Trename tag 5
      02 00 00 00         | fid 2
      01 00 00 00         | dfid 1
      01 00 67            | name "g"
    `),
  },
  {
    name: "Rrename",
    dialects: [L],
    message: { type: T.Rrename, tag: 5 },
    hex: hexOf(`07 00 00 00 15 05 00 | size 7, Rrename, tag 5`),
  },
  {
    name: "Treadlink",
    dialects: [L],
    message: { type: T.Treadlink, tag: 6, fid: 3 },
    hex: hexOf(`0b 00 00 00 16 06 00 | size 11, Treadlink, tag 6
      03 00 00 00 | fid 3`),
  },
  {
    name: "Rreadlink",
    dialects: [L],
    message: { type: T.Rreadlink, tag: 6, target: "f.txt" },
    hex: hexOf(`
      0e 00 00 00         | size 14
      17 06 00            | Rreadlink tag 6
      05 00 66 2e 74 78 74 | target "f.txt"
    `),
  },
  {
    name: "Tgetattr ALL",
    dialects: [L],
    message: { type: T.Tgetattr, tag: 7, fid: 1, request_mask: 0x3fffn },
    hex: hexOf(`
      13 00 00 00         | size 19
      18 07 00            | Tgetattr tag 7
      01 00 00 00         | fid 1
      ff 3f 00 00 00 00 00 00 | request_mask ALL
    `),
  },
  {
    name: "Rgetattr of a directory",
    dialects: [L],
    message: {
      type: T.Rgetattr,
      tag: 7,
      valid: 0x7ffn,
      qid: dirQid,
      mode: 0o40755,
      uid: 1000,
      gid: 100,
      nlink: 2n,
      rdev: 0n,
      size: 4096n,
      blksize: 4096n,
      blocks: 8n,
      atime_sec: 1700000000n,
      atime_nsec: 5n,
      mtime_sec: 1700000001n,
      mtime_nsec: 6n,
      ctime_sec: 1700000002n,
      ctime_nsec: 7n,
      btime_sec: 0n,
      btime_nsec: 0n,
      gen: 0n,
      data_version: 0n,
    },
    hex: hexOf(`
      a0 00 00 00         | size 160 = 7 + 153
      19 07 00            | Rgetattr tag 7
      ff 07 00 00 00 00 00 00 | valid BASIC
      80 00 00 00 00 02 00 00 00 00 00 00 00 | qid QTDIR path 2
      ed 41 00 00         | mode S_IFDIR|0755 (040755)
      e8 03 00 00         | uid 1000
      64 00 00 00         | gid 100
      02 00 00 00 00 00 00 00 | nlink 2
      00 00 00 00 00 00 00 00 | rdev
      00 10 00 00 00 00 00 00 | size 4096
      00 10 00 00 00 00 00 00 | blksize 4096
      08 00 00 00 00 00 00 00 | blocks 8
      00 f1 53 65 00 00 00 00 | atime_sec 1700000000 = 0x6553f100
      05 00 00 00 00 00 00 00 | atime_nsec 5
      01 f1 53 65 00 00 00 00 | mtime_sec
      06 00 00 00 00 00 00 00 | mtime_nsec
      02 f1 53 65 00 00 00 00 | ctime_sec
      07 00 00 00 00 00 00 00 | ctime_nsec
      00 00 00 00 00 00 00 00 | btime_sec
      00 00 00 00 00 00 00 00 | btime_nsec
      00 00 00 00 00 00 00 00 | gen
      00 00 00 00 00 00 00 00 | data_version
    `),
  },
  {
    name: "Tsetattr mode and size",
    dialects: [L],
    message: {
      type: T.Tsetattr,
      tag: 8,
      fid: 1,
      valid: 0x9,
      mode: 0o600,
      uid: 0,
      gid: 0,
      size: 2n ** 60n,
      atime_sec: 0n,
      atime_nsec: 0n,
      mtime_sec: 0n,
      mtime_nsec: 0n,
    },
    hex: hexOf(`
      43 00 00 00         | size 67 = 7 + 60
      1a 08 00            | Tsetattr tag 8
      01 00 00 00         | fid 1
      09 00 00 00         | valid MODE|SIZE
      80 01 00 00         | mode 0600
      00 00 00 00         | uid
      00 00 00 00         | gid
      00 00 00 00 00 00 00 10 | size 2^60
      00 00 00 00 00 00 00 00 | atime_sec
      00 00 00 00 00 00 00 00 | atime_nsec
      00 00 00 00 00 00 00 00 | mtime_sec
      00 00 00 00 00 00 00 00 | mtime_nsec
    `),
  },
  {
    name: "Rsetattr",
    dialects: [L],
    message: { type: T.Rsetattr, tag: 8 },
    hex: hexOf(`07 00 00 00 1b 08 00 | size 7, Rsetattr, tag 8`),
  },
  {
    name: "Txattrwalk listing (empty name)",
    dialects: [L],
    message: { type: T.Txattrwalk, tag: 9, fid: 1, newfid: 4, name: "" },
    hex: hexOf(`
      11 00 00 00         | size 17
      1e 09 00            | Txattrwalk tag 9
      01 00 00 00         | fid 1
      04 00 00 00         | newfid 4
      00 00               | name ""
    `),
  },
  {
    name: "Rxattrwalk",
    dialects: [L],
    message: { type: T.Rxattrwalk, tag: 9, size: 0n },
    hex: hexOf(`
      0f 00 00 00 1f 09 00 | size 15, Rxattrwalk, tag 9
      00 00 00 00 00 00 00 00 | size 0
    `),
  },
  {
    name: "Txattrcreate",
    dialects: [L],
    message: { type: T.Txattrcreate, tag: 10, fid: 4, name: "user.a", attr_size: 3n, flags: 0 },
    hex: hexOf(`
      1f 00 00 00         | size 31
      20 0a 00            | Txattrcreate tag 10
      04 00 00 00         | fid 4
      06 00 75 73 65 72 2e 61 | name "user.a"
      03 00 00 00 00 00 00 00 | attr_size 3
      00 00 00 00         | flags 0
    `),
  },
  {
    name: "Rxattrcreate",
    dialects: [L],
    message: { type: T.Rxattrcreate, tag: 10 },
    hex: hexOf(`07 00 00 00 21 0a 00 | size 7, Rxattrcreate, tag 10`),
  },
  {
    name: "Treaddir",
    dialects: [L],
    message: { type: T.Treaddir, tag: 11, fid: 1, offset: 0n, count: 8168 },
    hex: hexOf(`
      17 00 00 00         | size 23
      28 0b 00            | Treaddir tag 11
      01 00 00 00         | fid 1
      00 00 00 00 00 00 00 00 | offset 0
      e8 1f 00 00         | count 8168
    `),
  },
  {
    name: "Rreaddir with one entry",
    dialects: [L],
    message: {
      type: T.Rreaddir,
      tag: 11,
      data: Buffer.from(
        hexOf(`
          80 00 00 00 00 02 00 00 00 00 00 00 00 | qid
          01 00 00 00 00 00 00 00 | offset 1
          04                      | DT_DIR
          01 00 2e                | "."
        `),
        "hex",
      ),
    },
    hex: hexOf(`
      24 00 00 00         | size 36 = 11 + 25
      29 0b 00            | Rreaddir tag 11
      19 00 00 00         | count 25
      80 00 00 00 00 02 00 00 00 00 00 00 00 | dirent qid QTDIR path 2
      01 00 00 00 00 00 00 00 | offset 1
      04                  | type DT_DIR
      01 00 2e            | name "."
    `),
  },
  {
    name: "Rreaddir at the end (count 0)",
    dialects: [L],
    message: { type: T.Rreaddir, tag: 12, data: Buffer.alloc(0) },
    hex: hexOf(`0b 00 00 00 29 0c 00 | size 11, Rreaddir, tag 12
      00 00 00 00 | count 0`),
  },
  {
    name: "Tfsync datasync",
    dialects: [L],
    message: { type: T.Tfsync, tag: 12, fid: 1, datasync: 1 },
    hex: hexOf(`
      0f 00 00 00         | size 15
      32 0c 00            | Tfsync tag 12
      01 00 00 00         | fid 1
      01 00 00 00         | datasync 1
    `),
  },
  {
    name: "Rfsync",
    dialects: [L],
    message: { type: T.Rfsync, tag: 12 },
    hex: hexOf(`07 00 00 00 33 0c 00 | size 7, Rfsync, tag 12`),
  },
  {
    name: "Tlock write, blocking",
    dialects: [L],
    message: {
      type: T.Tlock,
      tag: 13,
      fid: 1,
      locktype: 1,
      flags: 1,
      start: 0n,
      length: 0n,
      proc_id: 1234,
      client_id: "host",
    },
    hex: hexOf(`
      2a 00 00 00         | size 42
      34 0d 00            | Tlock tag 13
      01 00 00 00         | fid 1
      01                  | type WRLCK
      01 00 00 00         | flags BLOCK
      00 00 00 00 00 00 00 00 | start 0
      00 00 00 00 00 00 00 00 | length 0 (to the end)
      d2 04 00 00         | proc_id 1234
      04 00 68 6f 73 74   | client_id "host"
    `),
  },
  {
    name: "Rlock",
    dialects: [L],
    message: { type: T.Rlock, tag: 13, status: 0 },
    hex: hexOf(`08 00 00 00 35 0d 00 | size 8, Rlock, tag 13
      00 | status SUCCESS`),
  },
  {
    name: "Tgetlock",
    dialects: [L],
    message: {
      type: T.Tgetlock,
      tag: 14,
      fid: 1,
      locktype: 0,
      start: 10n,
      length: 20n,
      proc_id: 1,
      client_id: "",
    },
    hex: hexOf(`
      22 00 00 00         | size 34
      36 0e 00            | Tgetlock tag 14
      01 00 00 00         | fid 1
      00                  | type RDLCK
      0a 00 00 00 00 00 00 00 | start 10
      14 00 00 00 00 00 00 00 | length 20
      01 00 00 00         | proc_id 1
      00 00               | client_id ""
    `),
  },
  {
    name: "Rgetlock",
    dialects: [L],
    message: { type: T.Rgetlock, tag: 14, locktype: 2, start: 10n, length: 20n, proc_id: 1, client_id: "h" },
    hex: hexOf(`
      1f 00 00 00         | size 31
      37 0e 00            | Rgetlock tag 14
      02                  | type UNLCK
      0a 00 00 00 00 00 00 00 | start 10
      14 00 00 00 00 00 00 00 | length 20
      01 00 00 00         | proc_id 1
      01 00 68            | client_id "h"
    `),
  },
  {
    name: "Tlink",
    dialects: [L],
    message: { type: T.Tlink, tag: 15, dfid: 1, fid: 2, name: "hl" },
    hex: hexOf(`
      13 00 00 00         | size 19
      46 0f 00            | Tlink tag 15
      01 00 00 00         | dfid 1
      02 00 00 00         | fid 2
      02 00 68 6c         | name "hl"
    `),
  },
  {
    name: "Rlink",
    dialects: [L],
    message: { type: T.Rlink, tag: 15 },
    hex: hexOf(`07 00 00 00 47 0f 00 | size 7, Rlink, tag 15`),
  },
  {
    name: "Tmkdir",
    dialects: [L],
    message: { type: T.Tmkdir, tag: 16, dfid: 1, name: "d", mode: 0o755, gid: 1000 },
    hex: hexOf(`
      16 00 00 00         | size 22
      48 10 00            | Tmkdir tag 16
      01 00 00 00         | dfid 1
      01 00 64            | name "d"
      ed 01 00 00         | mode 0755
      e8 03 00 00         | gid 1000
    `),
  },
  {
    name: "Rmkdir",
    dialects: [L],
    message: { type: T.Rmkdir, tag: 16, qid: dirQid },
    hex: hexOf(`
      14 00 00 00 49 10 00 | size 20, Rmkdir, tag 16
      80 00 00 00 00 02 00 00 00 00 00 00 00 | qid QTDIR path 2
    `),
  },
  {
    name: "Trenameat",
    dialects: [L],
    message: { type: T.Trenameat, tag: 17, olddirfid: 1, oldname: "a", newdirfid: 2, newname: "bb" },
    hex: hexOf(`
      16 00 00 00         | size 22
      4a 11 00            | Trenameat tag 17
      01 00 00 00         | olddirfid 1
      01 00 61            | oldname "a"
      02 00 00 00         | newdirfid 2
      02 00 62 62         | newname "bb"
    `),
  },
  {
    name: "Rrenameat",
    dialects: [L],
    message: { type: T.Rrenameat, tag: 17 },
    hex: hexOf(`07 00 00 00 4b 11 00 | size 7, Rrenameat, tag 17`),
  },
  {
    name: "Tunlinkat AT_REMOVEDIR",
    dialects: [L],
    message: { type: T.Tunlinkat, tag: 18, dirfd: 1, name: "d", flags: 0x200 },
    hex: hexOf(`
      12 00 00 00         | size 18
      4c 12 00            | Tunlinkat tag 18
      01 00 00 00         | dirfd 1
      01 00 64            | name "d"
      00 02 00 00         | flags AT_REMOVEDIR
    `),
  },
  {
    name: "Runlinkat",
    dialects: [L],
    message: { type: T.Runlinkat, tag: 18 },
    hex: hexOf(`07 00 00 00 4d 12 00 | size 7, Runlinkat, tag 18`),
  },
];
