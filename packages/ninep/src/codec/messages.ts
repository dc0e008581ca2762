// The message table: one { size, encode, decode } entry per 9P message type, with its wire layout above it.
//
// Layouts are those of the Plan 9 manual, section 5 (9P2000), the 9P2000.u draft and diod's
// protocol.md (9P2000.L). `size` returns the body length (bytes after size[4] type[1] tag[2]);
// `encode` writes the body at p and returns the position after it; `decode` reads the body from a
// Reader whose end is the end of the frame. Dialect-dependent fields are noted per entry.

import { Dialect, MAXWELEM, MsgType, type MsgTypeName, NONUNAME } from "./constants.js";
import type { Reader } from "./reader.js";
import { putStat, readStat, statSize } from "./stat.js";
import type { Message, MessageOf, Qid } from "./types.js";
import {
  badValue,
  dataSize,
  putBits32,
  putData,
  putQid,
  putStr,
  putU8,
  putU16,
  putU32,
  putU64,
  strSize,
} from "./writer.js";

/** How to size, write and read one message type. */
export interface Entry {
  readonly type: number;
  readonly name: MsgTypeName;
  /** Field names in wire order (dialect-only fields included), for formatMessage. */
  readonly fields: readonly string[];
  size(m: Message, d: Dialect): number;
  encode(b: Buffer, p: number, m: Message, d: Dialect): number;
  decode(r: Reader, tag: number, d: Dialect): Message;
}

type Of<K extends MsgTypeName> = MessageOf<(typeof MsgType)[K]>;

/** Indexed by type number. */
export const TABLE: (Entry | undefined)[] = new Array(256).fill(undefined);

function def<K extends MsgTypeName>(
  name: K,
  fields: string,
  e: {
    size(m: Of<K>, d: Dialect): number;
    encode(b: Buffer, p: number, m: Of<K>, d: Dialect): number;
    decode(r: Reader, tag: number, d: Dialect): Of<K>;
  },
): void {
  const type = MsgType[name];
  TABLE[type] = {
    type,
    name,
    fields: fields === "" ? [] : fields.split(" "),
    size: e.size as Entry["size"],
    encode: e.encode as Entry["encode"],
    decode: e.decode as Entry["decode"],
  };
}

const zero = (): number => 0;
const same = (_b: Buffer, p: number): number => p;

/** A message with nothing after the header (Rflush, Rclunk, ...). */
function empty<K extends MsgTypeName>(name: K): void {
  const type = MsgType[name];
  def(name, "", { size: zero, encode: same, decode: (_r, tag) => ({ type, tag }) as Of<K> });
}

/** A message whose body is fid[4] (Tclunk, Tremove, Tstat, Tstatfs, Treadlink). */
function fidOnly<K extends MsgTypeName>(name: K): void {
  const type = MsgType[name];
  def(name, "fid", {
    size: () => 4,
    encode: (b, p, m) => putU32(b, p, (m as { fid: number }).fid, "fid"),
    decode: (r, tag) => ({ type, tag, fid: r.u32() }) as unknown as Of<K>,
  });
}

/** A message whose body is qid[13] (Rattach, Rsymlink, Rmknod, Rmkdir). */
function qidOnly<K extends MsgTypeName>(name: K): void {
  const type = MsgType[name];
  def(name, "qid", {
    size: () => 13,
    encode: (b, p, m) => putQid(b, p, (m as { qid: Qid }).qid),
    decode: (r, tag) => ({ type, tag, qid: r.qid() }) as unknown as Of<K>,
  });
}

/** A message whose body is qid[13] iounit[4] (Ropen, Rcreate, Rlopen, Rlcreate). */
function qidIounit<K extends MsgTypeName>(name: K): void {
  const type = MsgType[name];
  def(name, "qid iounit", {
    size: () => 17,
    encode: (b, p, m) => {
      const x = m as unknown as { qid: Qid; iounit: number };
      return putU32(b, putQid(b, p, x.qid), x.iounit, "iounit");
    },
    decode: (r, tag) => ({ type, tag, qid: r.qid(), iounit: r.u32() }) as unknown as Of<K>,
  });
}

/** n_uname, errno, extension and the stat tail are on the wire for these dialects. */
const hasU = (d: Dialect): boolean => d === Dialect.P2000u;
const hasUname = (d: Dialect): boolean => d !== Dialect.P2000;

// ---------------------------------------------------------------- 9P2000 (and .u, .L where shared)

// size[4] Tversion tag[2] msize[4] version[s]
def("Tversion", "msize version", {
  size: (m) => 4 + strSize(m.version, "version"),
  encode: (b, p, m) => putStr(b, putU32(b, p, m.msize, "msize"), m.version),
  decode: (r, tag) => ({ type: MsgType.Tversion, tag, msize: r.u32(), version: r.str() }),
});

// size[4] Rversion tag[2] msize[4] version[s]
def("Rversion", "msize version", {
  size: (m) => 4 + strSize(m.version, "version"),
  encode: (b, p, m) => putStr(b, putU32(b, p, m.msize, "msize"), m.version),
  decode: (r, tag) => ({ type: MsgType.Rversion, tag, msize: r.u32(), version: r.str() }),
});

// size[4] Tauth tag[2] afid[4] uname[s] aname[s]
// .u/.L: size[4] Tauth tag[2] afid[4] uname[s] aname[s] n_uname[4]
// Peer quirk: the original XCPU statfs sends the 9P2000 layout (no n_uname) on a 9P2000.u
// session, and xcpufs accepts it; so on .u a Tauth ending after aname decodes with n_uname
// undefined (re-encoding then adds n_uname = NONUNAME).
def("Tauth", "afid uname aname n_uname", {
  size: (m, d) => 4 + strSize(m.uname, "uname") + strSize(m.aname, "aname") + (hasUname(d) ? 4 : 0),
  encode: (b, p, m, d) => {
    p = putU32(b, p, m.afid, "afid");
    p = putStr(b, putStr(b, p, m.uname), m.aname);
    return hasUname(d) ? putU32(b, p, m.n_uname ?? NONUNAME, "n_uname") : p;
  },
  decode: (r, tag, d) => {
    const afid = r.u32();
    const uname = r.str();
    const aname = r.str();
    if (!hasUname(d) || (d === Dialect.P2000u && r.left === 0))
      return { type: MsgType.Tauth, tag, afid, uname, aname };
    return { type: MsgType.Tauth, tag, afid, uname, aname, n_uname: r.u32() };
  },
});

// size[4] Rauth tag[2] aqid[13]
def("Rauth", "aqid", {
  size: () => 13,
  encode: (b, p, m) => putQid(b, p, m.aqid, "aqid"),
  decode: (r, tag) => ({ type: MsgType.Rauth, tag, aqid: r.qid() }),
});

// size[4] Tattach tag[2] fid[4] afid[4] uname[s] aname[s]
// .u/.L: size[4] Tattach tag[2] fid[4] afid[4] uname[s] aname[s] n_uname[4]
def("Tattach", "fid afid uname aname n_uname", {
  size: (m, d) => 8 + strSize(m.uname, "uname") + strSize(m.aname, "aname") + (hasUname(d) ? 4 : 0),
  encode: (b, p, m, d) => {
    p = putU32(b, putU32(b, p, m.fid, "fid"), m.afid, "afid");
    p = putStr(b, putStr(b, p, m.uname), m.aname);
    return hasUname(d) ? putU32(b, p, m.n_uname ?? NONUNAME, "n_uname") : p;
  },
  decode: (r, tag, d) =>
    hasUname(d)
      ? {
          type: MsgType.Tattach,
          tag,
          fid: r.u32(),
          afid: r.u32(),
          uname: r.str(),
          aname: r.str(),
          n_uname: r.u32(),
        }
      : { type: MsgType.Tattach, tag, fid: r.u32(), afid: r.u32(), uname: r.str(), aname: r.str() },
});

// size[4] Rattach tag[2] qid[13]
qidOnly("Rattach");

// size[4] Rerror tag[2] ename[s]
// .u: size[4] Rerror tag[2] ename[s] errno[4]
// .L: not part of the dialect, but accepted for a server that did not take the .L offer:
//     errno[4] is read when exactly 4 bytes follow ename, and written when `errno` is set.
def("Rerror", "ename errno", {
  size: (m, d) =>
    strSize(m.ename, "ename") + (hasU(d) || (d === Dialect.P2000L && m.errno !== undefined) ? 4 : 0),
  encode: (b, p, m, d) => {
    p = putStr(b, p, m.ename);
    if (hasU(d)) return putU32(b, p, m.errno ?? 0, "errno");
    if (d === Dialect.P2000L && m.errno !== undefined) return putU32(b, p, m.errno, "errno");
    return p;
  },
  decode: (r, tag, d) => {
    const ename = r.str();
    if (hasU(d) || (d === Dialect.P2000L && r.left === 4))
      return { type: MsgType.Rerror, tag, ename, errno: r.u32() };
    return { type: MsgType.Rerror, tag, ename };
  },
});

// size[4] Tflush tag[2] oldtag[2]
def("Tflush", "oldtag", {
  size: () => 2,
  encode: (b, p, m) => putU16(b, p, m.oldtag, "oldtag"),
  decode: (r, tag) => ({ type: MsgType.Tflush, tag, oldtag: r.u16() }),
});

// size[4] Rflush tag[2]
empty("Rflush");

// size[4] Twalk tag[2] fid[4] newfid[4] nwname[2] nwname*(wname[s])
def("Twalk", "fid newfid wname", {
  size: (m) => {
    const w = m.wname;
    if (!Array.isArray(w) || w.length > MAXWELEM) badValue("wname (at most 16 names)", w);
    let n = 10;
    for (let i = 0; i < w.length; i++) n += strSize(w[i] as string, "wname");
    return n;
  },
  encode: (b, p, m) => {
    p = putU32(b, putU32(b, p, m.fid, "fid"), m.newfid, "newfid");
    const w = m.wname;
    p = putU16(b, p, w.length);
    for (let i = 0; i < w.length; i++) p = putStr(b, p, w[i] as string);
    return p;
  },
  decode: (r, tag) => {
    const fid = r.u32();
    const newfid = r.u32();
    const n = r.u16();
    if (n > MAXWELEM) r.fail("too-many-wnames", `nwname ${n} exceeds ${MAXWELEM}`);
    const wname: string[] = [];
    for (let i = 0; i < n; i++) wname.push(r.str());
    return { type: MsgType.Twalk, tag, fid, newfid, wname };
  },
});

// size[4] Rwalk tag[2] nwqid[2] nwqid*(wqid[13])
def("Rwalk", "wqid", {
  size: (m) => {
    const q = m.wqid;
    if (!Array.isArray(q) || q.length > MAXWELEM) badValue("wqid (at most 16 qids)", q);
    return 2 + 13 * q.length;
  },
  encode: (b, p, m) => {
    const q = m.wqid;
    p = putU16(b, p, q.length);
    for (let i = 0; i < q.length; i++) p = putQid(b, p, q[i] as Qid, "wqid");
    return p;
  },
  decode: (r, tag) => {
    const n = r.u16();
    if (n > MAXWELEM) r.fail("too-many-wnames", `nwqid ${n} exceeds ${MAXWELEM}`);
    const wqid: Qid[] = [];
    for (let i = 0; i < n; i++) wqid.push(r.qid());
    return { type: MsgType.Rwalk, tag, wqid };
  },
});

// size[4] Topen tag[2] fid[4] mode[1]
def("Topen", "fid mode", {
  size: () => 5,
  encode: (b, p, m) => putU8(b, putU32(b, p, m.fid, "fid"), m.mode, "mode"),
  decode: (r, tag) => ({ type: MsgType.Topen, tag, fid: r.u32(), mode: r.u8() }),
});

// size[4] Ropen tag[2] qid[13] iounit[4]
qidIounit("Ropen");

// size[4] Tcreate tag[2] fid[4] name[s] perm[4] mode[1]
// .u: size[4] Tcreate tag[2] fid[4] name[s] perm[4] mode[1] extension[s]
def("Tcreate", "fid name perm mode extension", {
  size: (m, d) => 9 + strSize(m.name, "name") + (hasU(d) ? strSize(m.extension ?? "", "extension") : 0),
  encode: (b, p, m, d) => {
    p = putStr(b, putU32(b, p, m.fid, "fid"), m.name);
    p = putU8(b, putBits32(b, p, m.perm, "perm"), m.mode, "mode");
    return hasU(d) ? putStr(b, p, m.extension ?? "") : p;
  },
  decode: (r, tag, d) =>
    hasU(d)
      ? {
          type: MsgType.Tcreate,
          tag,
          fid: r.u32(),
          name: r.str(),
          perm: r.u32(),
          mode: r.u8(),
          extension: r.str(),
        }
      : { type: MsgType.Tcreate, tag, fid: r.u32(), name: r.str(), perm: r.u32(), mode: r.u8() },
});

// size[4] Rcreate tag[2] qid[13] iounit[4]
qidIounit("Rcreate");

// size[4] Tread tag[2] fid[4] offset[8] count[4]
def("Tread", "fid offset count", {
  size: () => 16,
  encode: (b, p, m) => putU32(b, putU64(b, putU32(b, p, m.fid, "fid"), m.offset, "offset"), m.count, "count"),
  decode: (r, tag) => ({ type: MsgType.Tread, tag, fid: r.u32(), offset: r.u64(), count: r.u32() }),
});

// size[4] Rread tag[2] count[4] data[count]
// data is a view into the frame.
def("Rread", "data", {
  size: (m) => 4 + dataSize(m.data),
  encode: (b, p, m) => putData(b, putU32(b, p, m.data.length), m.data),
  decode: (r, tag) => ({ type: MsgType.Rread, tag, data: r.bytes(r.u32()) }),
});

// size[4] Twrite tag[2] fid[4] offset[8] count[4] data[count]
// data is a view into the frame.
def("Twrite", "fid offset data", {
  size: (m) => 16 + dataSize(m.data),
  encode: (b, p, m) => {
    p = putU64(b, putU32(b, p, m.fid, "fid"), m.offset, "offset");
    return putData(b, putU32(b, p, m.data.length), m.data);
  },
  decode: (r, tag) => ({ type: MsgType.Twrite, tag, fid: r.u32(), offset: r.u64(), data: r.bytes(r.u32()) }),
});

// size[4] Rwrite tag[2] count[4]
def("Rwrite", "count", {
  size: () => 4,
  encode: (b, p, m) => putU32(b, p, m.count, "count"),
  decode: (r, tag) => ({ type: MsgType.Rwrite, tag, count: r.u32() }),
});

// size[4] Tclunk tag[2] fid[4]
fidOnly("Tclunk");
// size[4] Rclunk tag[2]
empty("Rclunk");
// size[4] Tremove tag[2] fid[4]
fidOnly("Tremove");
// size[4] Rremove tag[2]
empty("Rremove");
// size[4] Tstat tag[2] fid[4]
fidOnly("Tstat");

// size[4] Rstat tag[2] n[2] stat[n]     (stat begins with its own size[2]: n == size + 2)
def("Rstat", "stat", {
  size: (m, d) => 2 + statSize(m.stat, d),
  encode: (b, p, m, d) => {
    const start = p;
    p = putStat(b, p + 2, m.stat, d);
    b.writeUInt16LE(p - start - 2, start);
    return p;
  },
  decode: (r, tag, d) => {
    const n = r.u16();
    r.need(n);
    return { type: MsgType.Rstat, tag, stat: readStat(r, r.pos + n, d) };
  },
});

// size[4] Twstat tag[2] fid[4] n[2] stat[n]
def("Twstat", "fid stat", {
  size: (m, d) => 6 + statSize(m.stat, d),
  encode: (b, p, m, d) => {
    const start = putU32(b, p, m.fid, "fid");
    p = putStat(b, start + 2, m.stat, d);
    b.writeUInt16LE(p - start - 2, start);
    return p;
  },
  decode: (r, tag, d) => {
    const fid = r.u32();
    const n = r.u16();
    r.need(n);
    return { type: MsgType.Twstat, tag, fid, stat: readStat(r, r.pos + n, d) };
  },
});

// size[4] Rwstat tag[2]
empty("Rwstat");

// ---------------------------------------------------------------- 9P2000.L

// size[4] Rlerror tag[2] ecode[4]
def("Rlerror", "ecode", {
  size: () => 4,
  encode: (b, p, m) => putU32(b, p, m.ecode, "ecode"),
  decode: (r, tag) => ({ type: MsgType.Rlerror, tag, ecode: r.u32() }),
});

// size[4] Tstatfs tag[2] fid[4]
fidOnly("Tstatfs");

// size[4] Rstatfs tag[2] type[4] bsize[4] blocks[8] bfree[8] bavail[8] files[8] ffree[8] fsid[8] namelen[4]
def("Rstatfs", "fstype bsize blocks bfree bavail files ffree fsid namelen", {
  size: () => 60,
  encode: (b, p, m) => {
    p = putU32(b, putU32(b, p, m.fstype, "fstype"), m.bsize, "bsize");
    p = putU64(b, putU64(b, putU64(b, p, m.blocks, "blocks"), m.bfree, "bfree"), m.bavail, "bavail");
    p = putU64(b, putU64(b, putU64(b, p, m.files, "files"), m.ffree, "ffree"), m.fsid, "fsid");
    return putU32(b, p, m.namelen, "namelen");
  },
  decode: (r, tag) => ({
    type: MsgType.Rstatfs,
    tag,
    fstype: r.u32(),
    bsize: r.u32(),
    blocks: r.u64(),
    bfree: r.u64(),
    bavail: r.u64(),
    files: r.u64(),
    ffree: r.u64(),
    fsid: r.u64(),
    namelen: r.u32(),
  }),
});

// size[4] Tlopen tag[2] fid[4] flags[4]
def("Tlopen", "fid flags", {
  size: () => 8,
  encode: (b, p, m) => putBits32(b, putU32(b, p, m.fid, "fid"), m.flags, "flags"),
  decode: (r, tag) => ({ type: MsgType.Tlopen, tag, fid: r.u32(), flags: r.u32() }),
});

// size[4] Rlopen tag[2] qid[13] iounit[4]
qidIounit("Rlopen");

// size[4] Tlcreate tag[2] fid[4] name[s] flags[4] mode[4] gid[4]
def("Tlcreate", "fid name flags mode gid", {
  size: (m) => 16 + strSize(m.name, "name"),
  encode: (b, p, m) => {
    p = putStr(b, putU32(b, p, m.fid, "fid"), m.name);
    return putU32(b, putBits32(b, putBits32(b, p, m.flags, "flags"), m.mode, "mode"), m.gid, "gid");
  },
  decode: (r, tag) => ({
    type: MsgType.Tlcreate,
    tag,
    fid: r.u32(),
    name: r.str(),
    flags: r.u32(),
    mode: r.u32(),
    gid: r.u32(),
  }),
});

// size[4] Rlcreate tag[2] qid[13] iounit[4]
qidIounit("Rlcreate");

// size[4] Tsymlink tag[2] fid[4] name[s] symtgt[s] gid[4]
def("Tsymlink", "fid name symtgt gid", {
  size: (m) => 8 + strSize(m.name, "name") + strSize(m.symtgt, "symtgt"),
  encode: (b, p, m) => {
    p = putStr(b, putStr(b, putU32(b, p, m.fid, "fid"), m.name), m.symtgt);
    return putU32(b, p, m.gid, "gid");
  },
  decode: (r, tag) => ({
    type: MsgType.Tsymlink,
    tag,
    fid: r.u32(),
    name: r.str(),
    symtgt: r.str(),
    gid: r.u32(),
  }),
});

// size[4] Rsymlink tag[2] qid[13]
qidOnly("Rsymlink");

// size[4] Tmknod tag[2] dfid[4] name[s] mode[4] major[4] minor[4] gid[4]
def("Tmknod", "dfid name mode major minor gid", {
  size: (m) => 20 + strSize(m.name, "name"),
  encode: (b, p, m) => {
    p = putStr(b, putU32(b, p, m.dfid, "dfid"), m.name);
    p = putU32(b, putBits32(b, p, m.mode, "mode"), m.major, "major");
    return putU32(b, putU32(b, p, m.minor, "minor"), m.gid, "gid");
  },
  decode: (r, tag) => ({
    type: MsgType.Tmknod,
    tag,
    dfid: r.u32(),
    name: r.str(),
    mode: r.u32(),
    major: r.u32(),
    minor: r.u32(),
    gid: r.u32(),
  }),
});

// size[4] Rmknod tag[2] qid[13]
qidOnly("Rmknod");

// size[4] Trename tag[2] fid[4] dfid[4] name[s]
def("Trename", "fid dfid name", {
  size: (m) => 8 + strSize(m.name, "name"),
  encode: (b, p, m) => putStr(b, putU32(b, putU32(b, p, m.fid, "fid"), m.dfid, "dfid"), m.name),
  decode: (r, tag) => ({ type: MsgType.Trename, tag, fid: r.u32(), dfid: r.u32(), name: r.str() }),
});

// size[4] Rrename tag[2]
empty("Rrename");

// size[4] Treadlink tag[2] fid[4]
fidOnly("Treadlink");

// size[4] Rreadlink tag[2] target[s]
def("Rreadlink", "target", {
  size: (m) => strSize(m.target, "target"),
  encode: (b, p, m) => putStr(b, p, m.target),
  decode: (r, tag) => ({ type: MsgType.Rreadlink, tag, target: r.str() }),
});

// size[4] Tgetattr tag[2] fid[4] request_mask[8]
def("Tgetattr", "fid request_mask", {
  size: () => 12,
  encode: (b, p, m) => putU64(b, putU32(b, p, m.fid, "fid"), m.request_mask, "request_mask"),
  decode: (r, tag) => ({ type: MsgType.Tgetattr, tag, fid: r.u32(), request_mask: r.u64() }),
});

// size[4] Rgetattr tag[2] valid[8] qid[13] mode[4] uid[4] gid[4] nlink[8] rdev[8] size[8]
//   blksize[8] blocks[8] atime_sec[8] atime_nsec[8] mtime_sec[8] mtime_nsec[8] ctime_sec[8]
//   ctime_nsec[8] btime_sec[8] btime_nsec[8] gen[8] data_version[8]
const GETATTR_U64 = [
  "nlink",
  "rdev",
  "size",
  "blksize",
  "blocks",
  "atime_sec",
  "atime_nsec",
  "mtime_sec",
  "mtime_nsec",
  "ctime_sec",
  "ctime_nsec",
  "btime_sec",
  "btime_nsec",
  "gen",
  "data_version",
] as const;
def("Rgetattr", `valid qid mode uid gid ${GETATTR_U64.join(" ")}`, {
  size: () => 153,
  encode: (b, p, m) => {
    p = putQid(b, putU64(b, p, m.valid, "valid"), m.qid);
    p = putU32(b, putU32(b, putBits32(b, p, m.mode, "mode"), m.uid, "uid"), m.gid, "gid");
    // One field at a time (not a loop over the names): a property read the compiler can see.
    p = putU64(b, p, m.nlink, "nlink");
    p = putU64(b, p, m.rdev, "rdev");
    p = putU64(b, p, m.size, "size");
    p = putU64(b, p, m.blksize, "blksize");
    p = putU64(b, p, m.blocks, "blocks");
    p = putU64(b, p, m.atime_sec, "atime_sec");
    p = putU64(b, p, m.atime_nsec, "atime_nsec");
    p = putU64(b, p, m.mtime_sec, "mtime_sec");
    p = putU64(b, p, m.mtime_nsec, "mtime_nsec");
    p = putU64(b, p, m.ctime_sec, "ctime_sec");
    p = putU64(b, p, m.ctime_nsec, "ctime_nsec");
    p = putU64(b, p, m.btime_sec, "btime_sec");
    p = putU64(b, p, m.btime_nsec, "btime_nsec");
    p = putU64(b, p, m.gen, "gen");
    return putU64(b, p, m.data_version, "data_version");
  },
  decode: (r, tag) => ({
    type: MsgType.Rgetattr,
    tag,
    valid: r.u64(),
    qid: r.qid(),
    mode: r.u32(),
    uid: r.u32(),
    gid: r.u32(),
    nlink: r.u64(),
    rdev: r.u64(),
    size: r.u64(),
    blksize: r.u64(),
    blocks: r.u64(),
    atime_sec: r.u64(),
    atime_nsec: r.u64(),
    mtime_sec: r.u64(),
    mtime_nsec: r.u64(),
    ctime_sec: r.u64(),
    ctime_nsec: r.u64(),
    btime_sec: r.u64(),
    btime_nsec: r.u64(),
    gen: r.u64(),
    data_version: r.u64(),
  }),
});

// size[4] Tsetattr tag[2] fid[4] valid[4] mode[4] uid[4] gid[4] size[8] atime_sec[8]
//   atime_nsec[8] mtime_sec[8] mtime_nsec[8]
def("Tsetattr", "fid valid mode uid gid size atime_sec atime_nsec mtime_sec mtime_nsec", {
  size: () => 60,
  encode: (b, p, m) => {
    p = putBits32(b, putU32(b, p, m.fid, "fid"), m.valid, "valid");
    p = putU32(b, putU32(b, putBits32(b, p, m.mode, "mode"), m.uid, "uid"), m.gid, "gid");
    p = putU64(
      b,
      putU64(b, putU64(b, p, m.size, "size"), m.atime_sec, "atime_sec"),
      m.atime_nsec,
      "atime_nsec",
    );
    return putU64(b, putU64(b, p, m.mtime_sec, "mtime_sec"), m.mtime_nsec, "mtime_nsec");
  },
  decode: (r, tag) => ({
    type: MsgType.Tsetattr,
    tag,
    fid: r.u32(),
    valid: r.u32(),
    mode: r.u32(),
    uid: r.u32(),
    gid: r.u32(),
    size: r.u64(),
    atime_sec: r.u64(),
    atime_nsec: r.u64(),
    mtime_sec: r.u64(),
    mtime_nsec: r.u64(),
  }),
});

// size[4] Rsetattr tag[2]
empty("Rsetattr");

// size[4] Txattrwalk tag[2] fid[4] newfid[4] name[s]
def("Txattrwalk", "fid newfid name", {
  size: (m) => 8 + strSize(m.name, "name"),
  encode: (b, p, m) => putStr(b, putU32(b, putU32(b, p, m.fid, "fid"), m.newfid, "newfid"), m.name),
  decode: (r, tag) => ({ type: MsgType.Txattrwalk, tag, fid: r.u32(), newfid: r.u32(), name: r.str() }),
});

// size[4] Rxattrwalk tag[2] size[8]
def("Rxattrwalk", "size", {
  size: () => 8,
  encode: (b, p, m) => putU64(b, p, m.size, "size"),
  decode: (r, tag) => ({ type: MsgType.Rxattrwalk, tag, size: r.u64() }),
});

// size[4] Txattrcreate tag[2] fid[4] name[s] attr_size[8] flags[4]
def("Txattrcreate", "fid name attr_size flags", {
  size: (m) => 16 + strSize(m.name, "name"),
  encode: (b, p, m) => {
    p = putStr(b, putU32(b, p, m.fid, "fid"), m.name);
    return putBits32(b, putU64(b, p, m.attr_size, "attr_size"), m.flags, "flags");
  },
  decode: (r, tag) => ({
    type: MsgType.Txattrcreate,
    tag,
    fid: r.u32(),
    name: r.str(),
    attr_size: r.u64(),
    flags: r.u32(),
  }),
});

// size[4] Rxattrcreate tag[2]
empty("Rxattrcreate");

// size[4] Treaddir tag[2] fid[4] offset[8] count[4]
def("Treaddir", "fid offset count", {
  size: () => 16,
  encode: (b, p, m) => putU32(b, putU64(b, putU32(b, p, m.fid, "fid"), m.offset, "offset"), m.count, "count"),
  decode: (r, tag) => ({ type: MsgType.Treaddir, tag, fid: r.u32(), offset: r.u64(), count: r.u32() }),
});

// size[4] Rreaddir tag[2] count[4] data[count]
// data is a view into the frame (decode entries with decodeDirents).
def("Rreaddir", "data", {
  size: (m) => 4 + dataSize(m.data),
  encode: (b, p, m) => putData(b, putU32(b, p, m.data.length), m.data),
  decode: (r, tag) => ({ type: MsgType.Rreaddir, tag, data: r.bytes(r.u32()) }),
});

// size[4] Tfsync tag[2] fid[4] datasync[4]
def("Tfsync", "fid datasync", {
  size: () => 8,
  encode: (b, p, m) => putU32(b, putU32(b, p, m.fid, "fid"), m.datasync, "datasync"),
  decode: (r, tag) => ({ type: MsgType.Tfsync, tag, fid: r.u32(), datasync: r.u32() }),
});

// size[4] Rfsync tag[2]
empty("Rfsync");

// size[4] Tlock tag[2] fid[4] type[1] flags[4] start[8] length[8] proc_id[4] client_id[s]
def("Tlock", "fid locktype flags start length proc_id client_id", {
  size: (m) => 29 + strSize(m.client_id, "client_id"),
  encode: (b, p, m) => {
    p = putBits32(b, putU8(b, putU32(b, p, m.fid, "fid"), m.locktype, "locktype"), m.flags, "flags");
    p = putU32(b, putU64(b, putU64(b, p, m.start, "start"), m.length, "length"), m.proc_id, "proc_id");
    return putStr(b, p, m.client_id);
  },
  decode: (r, tag) => ({
    type: MsgType.Tlock,
    tag,
    fid: r.u32(),
    locktype: r.u8(),
    flags: r.u32(),
    start: r.u64(),
    length: r.u64(),
    proc_id: r.u32(),
    client_id: r.str(),
  }),
});

// size[4] Rlock tag[2] status[1]
def("Rlock", "status", {
  size: () => 1,
  encode: (b, p, m) => putU8(b, p, m.status, "status"),
  decode: (r, tag) => ({ type: MsgType.Rlock, tag, status: r.u8() }),
});

// size[4] Tgetlock tag[2] fid[4] type[1] start[8] length[8] proc_id[4] client_id[s]
def("Tgetlock", "fid locktype start length proc_id client_id", {
  size: (m) => 25 + strSize(m.client_id, "client_id"),
  encode: (b, p, m) => {
    p = putU8(b, putU32(b, p, m.fid, "fid"), m.locktype, "locktype");
    p = putU32(b, putU64(b, putU64(b, p, m.start, "start"), m.length, "length"), m.proc_id, "proc_id");
    return putStr(b, p, m.client_id);
  },
  decode: (r, tag) => ({
    type: MsgType.Tgetlock,
    tag,
    fid: r.u32(),
    locktype: r.u8(),
    start: r.u64(),
    length: r.u64(),
    proc_id: r.u32(),
    client_id: r.str(),
  }),
});

// size[4] Rgetlock tag[2] type[1] start[8] length[8] proc_id[4] client_id[s]
def("Rgetlock", "locktype start length proc_id client_id", {
  size: (m) => 21 + strSize(m.client_id, "client_id"),
  encode: (b, p, m) => {
    p = putU8(b, p, m.locktype, "locktype");
    p = putU32(b, putU64(b, putU64(b, p, m.start, "start"), m.length, "length"), m.proc_id, "proc_id");
    return putStr(b, p, m.client_id);
  },
  decode: (r, tag) => ({
    type: MsgType.Rgetlock,
    tag,
    locktype: r.u8(),
    start: r.u64(),
    length: r.u64(),
    proc_id: r.u32(),
    client_id: r.str(),
  }),
});

// size[4] Tlink tag[2] dfid[4] fid[4] name[s]
def("Tlink", "dfid fid name", {
  size: (m) => 8 + strSize(m.name, "name"),
  encode: (b, p, m) => putStr(b, putU32(b, putU32(b, p, m.dfid, "dfid"), m.fid, "fid"), m.name),
  decode: (r, tag) => ({ type: MsgType.Tlink, tag, dfid: r.u32(), fid: r.u32(), name: r.str() }),
});

// size[4] Rlink tag[2]
empty("Rlink");

// size[4] Tmkdir tag[2] dfid[4] name[s] mode[4] gid[4]
def("Tmkdir", "dfid name mode gid", {
  size: (m) => 12 + strSize(m.name, "name"),
  encode: (b, p, m) => {
    p = putStr(b, putU32(b, p, m.dfid, "dfid"), m.name);
    return putU32(b, putBits32(b, p, m.mode, "mode"), m.gid, "gid");
  },
  decode: (r, tag) => ({
    type: MsgType.Tmkdir,
    tag,
    dfid: r.u32(),
    name: r.str(),
    mode: r.u32(),
    gid: r.u32(),
  }),
});

// size[4] Rmkdir tag[2] qid[13]
qidOnly("Rmkdir");

// size[4] Trenameat tag[2] olddirfid[4] oldname[s] newdirfid[4] newname[s]
def("Trenameat", "olddirfid oldname newdirfid newname", {
  size: (m) => 8 + strSize(m.oldname, "oldname") + strSize(m.newname, "newname"),
  encode: (b, p, m) => {
    p = putStr(b, putU32(b, p, m.olddirfid, "olddirfid"), m.oldname);
    return putStr(b, putU32(b, p, m.newdirfid, "newdirfid"), m.newname);
  },
  decode: (r, tag) => ({
    type: MsgType.Trenameat,
    tag,
    olddirfid: r.u32(),
    oldname: r.str(),
    newdirfid: r.u32(),
    newname: r.str(),
  }),
});

// size[4] Rrenameat tag[2]
empty("Rrenameat");

// size[4] Tunlinkat tag[2] dirfd[4] name[s] flags[4]
def("Tunlinkat", "dirfd name flags", {
  size: (m) => 8 + strSize(m.name, "name"),
  encode: (b, p, m) => putBits32(b, putStr(b, putU32(b, p, m.dirfd, "dirfd"), m.name), m.flags, "flags"),
  decode: (r, tag) => ({ type: MsgType.Tunlinkat, tag, dirfd: r.u32(), name: r.str(), flags: r.u32() }),
});

// size[4] Runlinkat tag[2]
empty("Runlinkat");

// ---------------------------------------------------------------- which types each dialect speaks

const BASE_9P2000 = [
  "Tversion",
  "Rversion",
  "Tauth",
  "Rauth",
  "Tattach",
  "Rattach",
  "Rerror",
  "Tflush",
  "Rflush",
  "Twalk",
  "Rwalk",
  "Topen",
  "Ropen",
  "Tcreate",
  "Rcreate",
  "Tread",
  "Rread",
  "Twrite",
  "Rwrite",
  "Tclunk",
  "Rclunk",
  "Tremove",
  "Rremove",
  "Tstat",
  "Rstat",
  "Twstat",
  "Rwstat",
] as const satisfies readonly MsgTypeName[];

/** 9P2000 messages 9P2000.L drops (Linux never sends them on a .L session). */
const NOT_IN_L: readonly MsgTypeName[] = [
  "Topen",
  "Ropen",
  "Tcreate",
  "Rcreate",
  "Tstat",
  "Rstat",
  "Twstat",
  "Rwstat",
];

function tableFor(names: readonly MsgTypeName[]): (Entry | undefined)[] {
  const t: (Entry | undefined)[] = new Array(256).fill(undefined);
  for (const n of names) t[MsgType[n]] = TABLE[MsgType[n]];
  return t;
}

const L_NAMES = (Object.keys(MsgType) as MsgTypeName[]).filter(
  (n) => n !== "Tlerror" && n !== "Terror" && MsgType[n] < 100,
);

/** The entries valid on a connection of each dialect, indexed by type number. */
export const DIALECT_TABLE: Record<Dialect, readonly (Entry | undefined)[]> = {
  [Dialect.P2000]: tableFor(BASE_9P2000),
  [Dialect.P2000u]: tableFor(BASE_9P2000),
  [Dialect.P2000L]: tableFor([...BASE_9P2000.filter((n) => !NOT_IN_L.includes(n)), ...L_NAMES]),
};
