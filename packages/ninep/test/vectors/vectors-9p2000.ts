// Golden vectors for 9P2000 and 9P2000.u, written by hand from the Plan 9 manual (section 5),
// the 9P2000.u draft and the byte examples of the protocol reference (sections 2.2, 2.3).

import { MsgType as T } from "../../src/codec/index.js";
import { hexOf } from "./hex.js";
import type { Vector } from "./vector.js";

const P = "9P2000" as const;
const U = "9P2000.u" as const;
const L = "9P2000.L" as const;

export const vectors9P2000: Vector[] = [
  {
    name: "Tversion msize 8216 9P2000, tag NOTAG (reference 2.3)",
    dialects: [P, U, L],
    message: { type: T.Tversion, tag: 0xffff, msize: 8216, version: "9P2000" },
    hex: hexOf(`
      13 00 00 00         | size 19
      64                  | type 100 Tversion
      ff ff               | tag NOTAG
      18 20 00 00         | msize 8216
      06 00 39 50 32 30 30 30 | version "9P2000"
    `),
  },
  {
    name: "Rversion msize 8192 9P2000.u",
    dialects: [P, U, L],
    message: { type: T.Rversion, tag: 0xffff, msize: 8192, version: "9P2000.u" },
    hex: hexOf(`
      15 00 00 00         | size 21
      65                  | Rversion
      ff ff               | tag NOTAG
      00 20 00 00         | msize 8192
      08 00 39 50 32 30 30 30 2e 75 | "9P2000.u"
    `),
  },
  {
    name: "Rversion unknown",
    dialects: [P, U, L],
    message: { type: T.Rversion, tag: 0xffff, msize: 8192, version: "unknown" },
    hex: hexOf(`
      14 00 00 00         | size 20
      65 ff ff            | Rversion tag NOTAG
      00 20 00 00         | msize 8192
      07 00 75 6e 6b 6e 6f 77 6e | "unknown"
    `),
  },
  {
    name: "Tauth 9P2000",
    dialects: [P],
    message: { type: T.Tauth, tag: 1, afid: 5, uname: "glenda", aname: "" },
    hex: hexOf(`
      15 00 00 00         | size 21
      66                  | Tauth
      01 00               | tag 1
      05 00 00 00         | afid 5
      06 00 67 6c 65 6e 64 61 | uname "glenda"
      00 00               | aname ""
    `),
  },
  {
    name: "Tauth with n_uname 1000 (.u, .L)",
    dialects: [U, L],
    message: { type: T.Tauth, tag: 1, afid: 5, uname: "glenda", aname: "", n_uname: 1000 },
    hex: hexOf(`
      19 00 00 00         | size 25
      66 01 00            | Tauth tag 1
      05 00 00 00         | afid 5
      06 00 67 6c 65 6e 64 61 | uname "glenda"
      00 00               | aname ""
      e8 03 00 00         | n_uname 1000
    `),
  },
  {
    name: "Rauth",
    dialects: [P, U, L],
    message: { type: T.Rauth, tag: 1, aqid: { type: 0x08, version: 0, path: 1n } },
    hex: hexOf(`
      14 00 00 00         | size 20
      67 01 00            | Rauth tag 1
      08                  | aqid.type QTAUTH
      00 00 00 00         | aqid.vers 0
      01 00 00 00 00 00 00 00 | aqid.path 1
    `),
  },
  {
    name: "Tattach glenda, afid NOFID (reference 2.3)",
    dialects: [P],
    message: { type: T.Tattach, tag: 1, fid: 0, afid: 0xffffffff, uname: "glenda", aname: "" },
    hex: hexOf(`
      19 00 00 00         | size 25
      68                  | Tattach
      01 00               | tag 1
      00 00 00 00         | fid 0
      ff ff ff ff         | afid NOFID
      06 00 67 6c 65 6e 64 61 | uname "glenda"
      00 00               | aname ""
    `),
  },
  {
    name: "Tattach with n_uname (.u, .L)",
    dialects: [U, L],
    message: {
      type: T.Tattach,
      tag: 1,
      fid: 1,
      afid: 0xffffffff,
      uname: "nobody",
      aname: "/tmp",
      n_uname: 65534,
    },
    hex: hexOf(`
      21 00 00 00         | size 33
      68 01 00            | Tattach tag 1
      01 00 00 00         | fid 1
      ff ff ff ff         | afid NOFID
      06 00 6e 6f 62 6f 64 79 | uname "nobody"
      04 00 2f 74 6d 70   | aname "/tmp"
      fe ff 00 00         | n_uname 65534
    `),
  },
  {
    name: "Rattach directory qid",
    dialects: [P, U, L],
    message: { type: T.Rattach, tag: 1, qid: { type: 0x80, version: 0, path: 42n } },
    hex: hexOf(`
      14 00 00 00         | size 20
      69 01 00            | Rattach tag 1
      80                  | qid.type QTDIR
      00 00 00 00         | qid.vers 0
      2a 00 00 00 00 00 00 00 | qid.path 42
    `),
  },
  {
    name: "Rerror file not found (reference 2.3)",
    dialects: [P],
    message: { type: T.Rerror, tag: 2, ename: "file not found" },
    hex: hexOf(`
      17 00 00 00         | size 23
      6b                  | Rerror
      02 00               | tag 2
      0e 00 66 69 6c 65 20 6e 6f 74 20 66 6f 75 6e 64 | ename "file not found"
    `),
  },
  {
    name: "Rerror with errno ENOENT (.u)",
    dialects: [U, L],
    message: { type: T.Rerror, tag: 2, ename: "file not found", errno: 2 },
    hex: hexOf(`
      1b 00 00 00         | size 27
      6b 02 00            | Rerror tag 2
      0e 00 66 69 6c 65 20 6e 6f 74 20 66 6f 75 6e 64 | ename "file not found"
      02 00 00 00         | errno 2
    `),
  },
  {
    name: "Tflush",
    dialects: [P, U, L],
    message: { type: T.Tflush, tag: 5, oldtag: 3 },
    hex: hexOf(`
      09 00 00 00         | size 9
      6c 05 00            | Tflush tag 5
      03 00               | oldtag 3
    `),
  },
  {
    name: "Rflush",
    dialects: [P, U, L],
    message: { type: T.Rflush, tag: 5 },
    hex: hexOf(`
      07 00 00 00 6d 05 00 | size 7, Rflush, tag 5
    `),
  },
  {
    name: "Twalk usr lib (reference 2.3)",
    dialects: [P, U, L],
    message: { type: T.Twalk, tag: 2, fid: 0, newfid: 1, wname: ["usr", "lib"] },
    hex: hexOf(`
      1b 00 00 00         | size 27
      6e 02 00            | Twalk tag 2
      00 00 00 00         | fid 0
      01 00 00 00         | newfid 1
      02 00               | nwname 2
      03 00 75 73 72      | "usr"
      03 00 6c 69 62      | "lib"
    `),
  },
  {
    name: "Twalk with no names (clone)",
    dialects: [P, U, L],
    message: { type: T.Twalk, tag: 3, fid: 1, newfid: 2, wname: [] },
    hex: hexOf(`
      11 00 00 00         | size 17
      6e 03 00            | Twalk tag 3
      01 00 00 00         | fid 1
      02 00 00 00         | newfid 2
      00 00               | nwname 0
    `),
  },
  {
    name: "Twalk with 16 names (MAXWELEM)",
    dialects: [P, U, L],
    message: {
      type: T.Twalk,
      tag: 4,
      fid: 0,
      newfid: 1,
      wname: ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"],
    },
    hex: hexOf(`
      41 00 00 00         | size 65 = 7 + 10 + 16*3
      6e 04 00            | Twalk tag 4
      00 00 00 00         | fid 0
      01 00 00 00         | newfid 1
      10 00               | nwname 16
      01 00 61 | a
      01 00 62 | b
      01 00 63 | c
      01 00 64 | d
      01 00 65 | e
      01 00 66 | f
      01 00 67 | g
      01 00 68 | h
      01 00 69 | i
      01 00 6a | j
      01 00 6b | k
      01 00 6c | l
      01 00 6d | m
      01 00 6e | n
      01 00 6f | o
      01 00 70 | p
    `),
  },
  {
    name: "Twalk with a UTF-8 name (length in bytes)",
    dialects: [P, U, L],
    message: { type: T.Twalk, tag: 5, fid: 0, newfid: 1, wname: ["ünï"] },
    hex: hexOf(`
      18 00 00 00         | size 24
      6e 05 00            | Twalk tag 5
      00 00 00 00         | fid 0
      01 00 00 00         | newfid 1
      01 00               | nwname 1
      05 00 c3 bc 6e c3 af | "ünï": 5 bytes, 3 characters
    `),
  },
  {
    name: "Rwalk with no qids",
    dialects: [P, U, L],
    message: { type: T.Rwalk, tag: 3, wqid: [] },
    hex: hexOf(`
      09 00 00 00         | size 9
      6f 03 00            | Rwalk tag 3
      00 00               | nwqid 0
    `),
  },
  {
    name: "Rwalk with two qids",
    dialects: [P, U, L],
    message: {
      type: T.Rwalk,
      tag: 2,
      wqid: [
        { type: 0x80, version: 1, path: 0x10n },
        { type: 0x00, version: 2, path: 0x0102030405060708n },
      ],
    },
    hex: hexOf(`
      23 00 00 00         | size 35 = 9 + 2*13
      6f 02 00            | Rwalk tag 2
      02 00               | nwqid 2
      80 01 00 00 00 10 00 00 00 00 00 00 00 | qid QTDIR vers 1 path 0x10
      00 02 00 00 00 08 07 06 05 04 03 02 01 | qid file vers 2 path 0x0102030405060708
    `),
  },
  {
    name: "Topen ORDWR|OTRUNC",
    dialects: [P, U],
    message: { type: T.Topen, tag: 6, fid: 1, mode: 0x12 },
    hex: hexOf(`
      0c 00 00 00         | size 12
      70 06 00            | Topen tag 6
      01 00 00 00         | fid 1
      12                  | mode ORDWR|OTRUNC
    `),
  },
  {
    name: "Ropen",
    dialects: [P, U],
    message: { type: T.Ropen, tag: 6, qid: { type: 0, version: 3, path: 7n }, iounit: 8192 },
    hex: hexOf(`
      18 00 00 00         | size 24
      71 06 00            | Ropen tag 6
      00 03 00 00 00 07 00 00 00 00 00 00 00 | qid file vers 3 path 7
      00 20 00 00         | iounit 8192
    `),
  },
  {
    name: "Tcreate directory (DMDIR|0755)",
    dialects: [P],
    message: { type: T.Tcreate, tag: 7, fid: 1, name: "dir", perm: 0x800001ed, mode: 0 },
    hex: hexOf(`
      15 00 00 00         | size 21
      72 07 00            | Tcreate tag 7
      01 00 00 00         | fid 1
      03 00 64 69 72      | name "dir"
      ed 01 00 80         | perm DMDIR|0755
      00                  | mode OREAD
    `),
  },
  {
    name: "Tcreate directory with empty extension (.u)",
    dialects: [U],
    message: { type: T.Tcreate, tag: 7, fid: 1, name: "dir", perm: 0x800001ed, mode: 0, extension: "" },
    hex: hexOf(`
      17 00 00 00         | size 23
      72 07 00            | Tcreate tag 7
      01 00 00 00         | fid 1
      03 00 64 69 72      | name "dir"
      ed 01 00 80         | perm DMDIR|0755
      00                  | mode OREAD
      00 00               | extension ""
    `),
  },
  {
    name: "Tcreate symlink with target in extension (.u)",
    dialects: [U],
    message: { type: T.Tcreate, tag: 8, fid: 1, name: "ln", perm: 0x020001ff, mode: 0, extension: "/etc" },
    hex: hexOf(`
      1a 00 00 00         | size 26
      72 08 00            | Tcreate tag 8
      01 00 00 00         | fid 1
      02 00 6c 6e         | name "ln"
      ff 01 00 02         | perm DMSYMLINK|0777
      00                  | mode OREAD
      04 00 2f 65 74 63   | extension "/etc"
    `),
  },
  {
    name: "Rcreate",
    dialects: [P, U],
    message: { type: T.Rcreate, tag: 7, qid: { type: 0x80, version: 0, path: 0x100n }, iounit: 0 },
    hex: hexOf(`
      18 00 00 00         | size 24
      73 07 00            | Rcreate tag 7
      80 00 00 00 00 00 01 00 00 00 00 00 00 | qid QTDIR vers 0 path 0x100
      00 00 00 00         | iounit 0
    `),
  },
  {
    name: "Tread at offset 2^53 + 1",
    dialects: [P, U, L],
    message: { type: T.Tread, tag: 8, fid: 1, offset: 2n ** 53n + 1n, count: 8168 },
    hex: hexOf(`
      17 00 00 00         | size 23
      74 08 00            | Tread tag 8
      01 00 00 00         | fid 1
      01 00 00 00 00 00 20 00 | offset 0x20000000000001
      e8 1f 00 00         | count 8168
    `),
  },
  {
    name: "Tread at offset 2^64 - 1",
    dialects: [P, U, L],
    message: { type: T.Tread, tag: 9, fid: 2, offset: 2n ** 64n - 1n, count: 0 },
    hex: hexOf(`
      17 00 00 00         | size 23
      74 09 00            | Tread tag 9
      02 00 00 00         | fid 2
      ff ff ff ff ff ff ff ff | offset 2^64-1
      00 00 00 00         | count 0
    `),
  },
  {
    name: "Rread with empty data",
    dialects: [P, U, L],
    message: { type: T.Rread, tag: 8, data: Buffer.alloc(0) },
    hex: hexOf(`
      0b 00 00 00         | size 11
      75 08 00            | Rread tag 8
      00 00 00 00         | count 0
    `),
  },
  {
    name: "Rread hello",
    dialects: [P, U, L],
    message: { type: T.Rread, tag: 8, data: Buffer.from("hello\n") },
    hex: hexOf(`
      11 00 00 00         | size 17
      75 08 00            | Rread tag 8
      06 00 00 00         | count 6
      68 65 6c 6c 6f 0a   | "hello\\n"
    `),
  },
  {
    name: "Twrite at offset above 2^53",
    dialects: [P, U, L],
    message: { type: T.Twrite, tag: 9, fid: 2, offset: 0x123456789abcdef0n, data: Buffer.from("abc") },
    hex: hexOf(`
      1a 00 00 00         | size 26
      76 09 00            | Twrite tag 9
      02 00 00 00         | fid 2
      f0 de bc 9a 78 56 34 12 | offset 0x123456789abcdef0
      03 00 00 00         | count 3
      61 62 63            | "abc"
    `),
  },
  {
    name: "Rwrite",
    dialects: [P, U, L],
    message: { type: T.Rwrite, tag: 9, count: 3 },
    hex: hexOf(`
      0b 00 00 00         | size 11
      77 09 00            | Rwrite tag 9
      03 00 00 00         | count 3
    `),
  },
  {
    name: "Tclunk (reference 2.3)",
    dialects: [P, U, L],
    message: { type: T.Tclunk, tag: 3, fid: 1 },
    hex: hexOf(`
      0b 00 00 00         | size 11
      78 03 00            | Tclunk tag 3
      01 00 00 00         | fid 1
    `),
  },
  {
    name: "Rclunk",
    dialects: [P, U, L],
    message: { type: T.Rclunk, tag: 3 },
    hex: hexOf(`07 00 00 00 79 03 00 | size 7, Rclunk, tag 3`),
  },
  {
    name: "Tremove",
    dialects: [P, U, L],
    message: { type: T.Tremove, tag: 10, fid: 2 },
    hex: hexOf(`
      0b 00 00 00         | size 11
      7a 0a 00            | Tremove tag 10
      02 00 00 00         | fid 2
    `),
  },
  {
    name: "Rremove",
    dialects: [P, U, L],
    message: { type: T.Rremove, tag: 10 },
    hex: hexOf(`07 00 00 00 7b 0a 00 | size 7, Rremove, tag 10`),
  },
  {
    name: "Tstat",
    dialects: [P, U],
    message: { type: T.Tstat, tag: 4, fid: 0 },
    hex: hexOf(`
      0b 00 00 00         | size 11
      7c 04 00            | Tstat tag 4
      00 00 00 00         | fid 0
    `),
  },
  {
    name: "Rstat of the root, doubled size (reference 2.2)",
    dialects: [P],
    message: {
      type: T.Rstat,
      tag: 4,
      stat: {
        type: 0,
        dev: 0,
        qid: { type: 0x80, version: 0, path: 42n },
        mode: 0x800001ed,
        atime: 0,
        mtime: 0,
        length: 0n,
        name: "/",
        uid: "u",
        gid: "g",
        muid: "",
      },
    },
    hex: hexOf(`
      3d 00 00 00  7d  04 00        | size=61 Rstat tag=4
      34 00                         | n=52
      32 00                         | stat size=50
      00 00  00 00 00 00            | type dev
      80  00 00 00 00  2a 00 00 00 00 00 00 00 | qid (QTDIR, vers 0, path 42)
      ed 01 00 80                   | mode = 0x800001ed
      00 00 00 00  00 00 00 00      | atime mtime
      00 00 00 00 00 00 00 00       | length
      01 00 2f  01 00 75  01 00 67  00 00 | name "/" uid "u" gid "g" muid ""
    `),
  },
  {
    name: "Rstat with the 9P2000.u tail",
    dialects: [U],
    message: {
      type: T.Rstat,
      tag: 4,
      stat: {
        type: 0,
        dev: 0,
        qid: { type: 0x80, version: 0, path: 42n },
        mode: 0x800001ed,
        atime: 0x5f5e1000,
        mtime: 0x5f5e1001,
        length: 0n,
        name: "/",
        uid: "u",
        gid: "g",
        muid: "",
        extension: "",
        n_uid: 1000,
        n_gid: 100,
        n_muid: 0xffffffff,
      },
    },
    hex: hexOf(`
      4b 00 00 00  7d  04 00        | size=75 Rstat tag=4
      42 00                         | n=66
      40 00                         | stat size=64 = 50 + 14
      00 00  00 00 00 00            | type dev
      80  00 00 00 00  2a 00 00 00 00 00 00 00 | qid (QTDIR, vers 0, path 42)
      ed 01 00 80                   | mode = DMDIR|0755
      00 10 5e 5f  01 10 5e 5f      | atime 0x5f5e1000 mtime 0x5f5e1001
      00 00 00 00 00 00 00 00       | length
      01 00 2f  01 00 75  01 00 67  00 00 | name "/" uid "u" gid "g" muid ""
      00 00                         | extension ""
      e8 03 00 00                   | n_uid 1000
      64 00 00 00                   | n_gid 100
      ff ff ff ff                   | n_muid unknown
    `),
  },
  {
    name: "Rstat of a .u symlink with a long length",
    dialects: [U],
    message: {
      type: T.Rstat,
      tag: 9,
      stat: {
        type: 0,
        dev: 0,
        qid: { type: 0x02, version: 1, path: 7n },
        mode: 0x020001ff,
        atime: 0,
        mtime: 0,
        length: 2n ** 60n,
        name: "ln",
        uid: "",
        gid: "",
        muid: "",
        extension: "/etc",
        n_uid: 0,
        n_gid: 0,
        n_muid: 0,
      },
    },
    hex: hexOf(`
      4e 00 00 00  7d  09 00        | size=78 Rstat tag=9
      45 00                         | n=69
      43 00                         | stat size=67 = 39 fixed + 10 strings + 6 extension + 12 ids
      00 00  00 00 00 00            | type dev
      02  01 00 00 00  07 00 00 00 00 00 00 00 | qid (QTSYMLINK, vers 1, path 7)
      ff 01 00 02                   | mode DMSYMLINK|0777
      00 00 00 00  00 00 00 00      | atime mtime
      00 00 00 00 00 00 00 10       | length 2^60
      02 00 6c 6e  00 00  00 00  00 00 | name "ln" uid "" gid "" muid ""
      04 00 2f 65 74 63             | extension "/etc"
      00 00 00 00  00 00 00 00  00 00 00 00 | n_uid n_gid n_muid 0
    `),
  },
  {
    name: "Twstat renaming, everything else don't-touch, doubled size",
    dialects: [P],
    message: {
      type: T.Twstat,
      tag: 11,
      fid: 1,
      stat: {
        type: 0xffff,
        dev: 0xffffffff,
        qid: { type: 0xff, version: 0xffffffff, path: 2n ** 64n - 1n },
        mode: 0xffffffff,
        atime: 0xffffffff,
        mtime: 0xffffffff,
        length: 2n ** 64n - 1n,
        name: "new",
        uid: "",
        gid: "",
        muid: "",
      },
    },
    hex: hexOf(`
      41 00 00 00                   | size 65
      7e 0b 00                      | Twstat tag 11
      01 00 00 00                   | fid 1
      34 00                         | n 52
      32 00                         | stat size 50
      ff ff                         | type
      ff ff ff ff                   | dev
      ff ff ff ff ff ff ff ff ff ff ff ff ff | qid
      ff ff ff ff                   | mode
      ff ff ff ff  ff ff ff ff      | atime mtime
      ff ff ff ff ff ff ff ff       | length
      03 00 6e 65 77                | name "new"
      00 00  00 00  00 00           | uid gid muid ""
    `),
  },
  {
    name: "Twstat all don't-touch (.u)",
    dialects: [U],
    message: {
      type: T.Twstat,
      tag: 12,
      fid: 3,
      stat: {
        type: 0xffff,
        dev: 0xffffffff,
        qid: { type: 0xff, version: 0xffffffff, path: 2n ** 64n - 1n },
        mode: 0xffffffff,
        atime: 0xffffffff,
        mtime: 0xffffffff,
        length: 2n ** 64n - 1n,
        name: "",
        uid: "",
        gid: "",
        muid: "",
        extension: "",
        n_uid: 0xffffffff,
        n_gid: 0xffffffff,
        n_muid: 0xffffffff,
      },
    },
    hex: hexOf(`
      4c 00 00 00                   | size 76
      7e 0c 00                      | Twstat tag 12
      03 00 00 00                   | fid 3
      3f 00                         | n 63
      3d 00                         | stat size 61
      ff ff  ff ff ff ff            | type dev
      ff ff ff ff ff ff ff ff ff ff ff ff ff | qid
      ff ff ff ff  ff ff ff ff  ff ff ff ff | mode atime mtime
      ff ff ff ff ff ff ff ff       | length
      00 00  00 00  00 00  00 00    | name uid gid muid ""
      00 00                         | extension ""
      ff ff ff ff  ff ff ff ff  ff ff ff ff | n_uid n_gid n_muid
    `),
  },
  {
    name: "Rwstat",
    dialects: [P, U],
    message: { type: T.Rwstat, tag: 12 },
    hex: hexOf(`07 00 00 00 7f 0c 00 | size 7, Rwstat, tag 12`),
  },
];
