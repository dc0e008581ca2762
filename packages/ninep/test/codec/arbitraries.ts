// fast-check arbitraries for every 9P message, built from a field list per type written from the
// protocol reference (independent of the codec's own table).

import fc from "fast-check";
import {
  type Dialect,
  type Message,
  MsgType,
  type MsgTypeName,
  type Qid,
  type Stat,
} from "../../src/codec/index.js";

type Kind = "u8" | "u16" | "u32" | "u64" | "s" | "q" | "d" | "w" | "Q" | "S";

// Fields after size[4] type[1] tag[2], in wire order; "?" marks fields present only in some dialects.
const FIELDS: Record<Exclude<MsgTypeName, "Terror" | "Tlerror">, string> = {
  Tversion: "msize:u32 version:s",
  Rversion: "msize:u32 version:s",
  Tauth: "afid:u32 uname:s aname:s n_uname?:u32",
  Rauth: "aqid:q",
  Tattach: "fid:u32 afid:u32 uname:s aname:s n_uname?:u32",
  Rattach: "qid:q",
  Rerror: "ename:s errno?:u32",
  Tflush: "oldtag:u16",
  Rflush: "",
  Twalk: "fid:u32 newfid:u32 wname:w",
  Rwalk: "wqid:Q",
  Topen: "fid:u32 mode:u8",
  Ropen: "qid:q iounit:u32",
  Tcreate: "fid:u32 name:s perm:u32 mode:u8 extension?:s",
  Rcreate: "qid:q iounit:u32",
  Tread: "fid:u32 offset:u64 count:u32",
  Rread: "data:d",
  Twrite: "fid:u32 offset:u64 data:d",
  Rwrite: "count:u32",
  Tclunk: "fid:u32",
  Rclunk: "",
  Tremove: "fid:u32",
  Rremove: "",
  Tstat: "fid:u32",
  Rstat: "stat:S",
  Twstat: "fid:u32 stat:S",
  Rwstat: "",
  Rlerror: "ecode:u32",
  Tstatfs: "fid:u32",
  Rstatfs: "fstype:u32 bsize:u32 blocks:u64 bfree:u64 bavail:u64 files:u64 ffree:u64 fsid:u64 namelen:u32",
  Tlopen: "fid:u32 flags:u32",
  Rlopen: "qid:q iounit:u32",
  Tlcreate: "fid:u32 name:s flags:u32 mode:u32 gid:u32",
  Rlcreate: "qid:q iounit:u32",
  Tsymlink: "fid:u32 name:s symtgt:s gid:u32",
  Rsymlink: "qid:q",
  Tmknod: "dfid:u32 name:s mode:u32 major:u32 minor:u32 gid:u32",
  Rmknod: "qid:q",
  Trename: "fid:u32 dfid:u32 name:s",
  Rrename: "",
  Treadlink: "fid:u32",
  Rreadlink: "target:s",
  Tgetattr: "fid:u32 request_mask:u64",
  Rgetattr:
    "valid:u64 qid:q mode:u32 uid:u32 gid:u32 nlink:u64 rdev:u64 size:u64 blksize:u64 blocks:u64 " +
    "atime_sec:u64 atime_nsec:u64 mtime_sec:u64 mtime_nsec:u64 ctime_sec:u64 ctime_nsec:u64 " +
    "btime_sec:u64 btime_nsec:u64 gen:u64 data_version:u64",
  Tsetattr:
    "fid:u32 valid:u32 mode:u32 uid:u32 gid:u32 size:u64 atime_sec:u64 atime_nsec:u64 mtime_sec:u64 mtime_nsec:u64",
  Rsetattr: "",
  Txattrwalk: "fid:u32 newfid:u32 name:s",
  Rxattrwalk: "size:u64",
  Txattrcreate: "fid:u32 name:s attr_size:u64 flags:u32",
  Rxattrcreate: "",
  Treaddir: "fid:u32 offset:u64 count:u32",
  Rreaddir: "data:d",
  Tfsync: "fid:u32 datasync:u32",
  Rfsync: "",
  Tlock: "fid:u32 locktype:u8 flags:u32 start:u64 length:u64 proc_id:u32 client_id:s",
  Rlock: "status:u8",
  Tgetlock: "fid:u32 locktype:u8 start:u64 length:u64 proc_id:u32 client_id:s",
  Rgetlock: "locktype:u8 start:u64 length:u64 proc_id:u32 client_id:s",
  Tlink: "dfid:u32 fid:u32 name:s",
  Rlink: "",
  Tmkdir: "dfid:u32 name:s mode:u32 gid:u32",
  Rmkdir: "qid:q",
  Trenameat: "olddirfid:u32 oldname:s newdirfid:u32 newname:s",
  Rrenameat: "",
  Tunlinkat: "dirfd:u32 name:s flags:u32",
  Runlinkat: "",
};

const L_ONLY = (name: string): boolean => MsgType[name as MsgTypeName] < 100;
const NOT_IN_L = new Set(["Topen", "Ropen", "Tcreate", "Rcreate", "Tstat", "Rstat", "Twstat", "Rwstat"]);

/** Message type names a dialect speaks (the protocol reference's lists). */
export function namesFor(d: Dialect): MsgTypeName[] {
  return (Object.keys(FIELDS) as MsgTypeName[]).filter((n) =>
    d === "9P2000.L" ? !NOT_IN_L.has(n) : !L_ONLY(n),
  );
}

/** Valid 9P strings: any code points but NUL, short. */
export const str = fc
  .oneof(fc.string({ unit: "grapheme-ascii", maxLength: 12 }), fc.string({ unit: "binary", maxLength: 12 }))
  .filter((s) => !s.includes("\0"));
export const u8 = fc.integer({ min: 0, max: 0xff });
export const u16 = fc.integer({ min: 0, max: 0xffff });
export const u32 = fc.oneof(
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.constantFrom(0, 0xffffffff, 0x80000000),
);
export const u64 = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fc.constantFrom(0n, 2n ** 53n + 1n, 2n ** 64n - 1n),
);
export const qid: fc.Arbitrary<Qid> = fc.record({ type: u8, version: u32, path: u64 });
export const data = fc.uint8Array({ maxLength: 48 }).map((u) => Buffer.from(u));

export function statArb(d: Dialect): fc.Arbitrary<Stat> {
  const base = {
    type: u16,
    dev: u32,
    qid,
    mode: u32,
    atime: u32,
    mtime: u32,
    length: u64,
    name: str,
    uid: str,
    gid: str,
    muid: str,
  };
  if (d !== "9P2000.u") return fc.record(base);
  return fc.record({ ...base, extension: str, n_uid: u32, n_gid: u32, n_muid: u32 });
}

function kindArb(k: Kind, d: Dialect): fc.Arbitrary<unknown> {
  switch (k) {
    case "u8":
      return u8;
    case "u16":
      return u16;
    case "u32":
      return u32;
    case "u64":
      return u64;
    case "s":
      return str;
    case "q":
      return qid;
    case "d":
      return data;
    case "w":
      return fc.array(str, { maxLength: 16 });
    case "Q":
      return fc.array(qid, { maxLength: 16 });
    case "S":
      return statArb(d);
  }
}

/** Whether an optional field is on the wire (always present when decoded) in dialect d. */
function optionalPresent(name: MsgTypeName, field: string, d: Dialect): "yes" | "no" | "maybe" {
  if (field === "n_uname") return d === "9P2000" ? "no" : "yes";
  if (field === "errno") return d === "9P2000.u" ? "yes" : d === "9P2000.L" ? "maybe" : "no";
  if (field === "extension" && name === "Tcreate") return d === "9P2000.u" ? "yes" : "no";
  throw new Error(`unexpected optional field ${name}.${field}`);
}

/** Arbitrary valid message of one type, shaped as decode returns it in dialect d. */
export function messageArb(name: MsgTypeName, d: Dialect): fc.Arbitrary<Message> {
  const spec = FIELDS[name as keyof typeof FIELDS];
  const rec: Record<string, fc.Arbitrary<unknown>> = {};
  const maybe: string[] = [];
  for (const f of spec === "" ? [] : spec.split(" ")) {
    const [rawName, kind] = f.split(":") as [string, Kind];
    const opt = rawName.endsWith("?");
    const field = opt ? rawName.slice(0, -1) : rawName;
    if (opt) {
      const p = optionalPresent(name, field, d);
      if (p === "no") continue;
      if (p === "maybe") maybe.push(field);
    }
    rec[field] = kindArb(kind, d);
  }
  const type = MsgType[name];
  return fc.record({ tag: u16, fields: fc.record(rec), drop: fc.boolean() }).map(({ tag, fields, drop }) => {
    const m: Record<string, unknown> = { type, tag, ...fields };
    if (drop) for (const f of maybe) delete m[f];
    return m as unknown as Message;
  });
}

/** Any valid message of dialect d. */
export function anyMessageArb(d: Dialect): fc.Arbitrary<Message> {
  return fc.oneof(...namesFor(d).map((n) => messageArb(n, d)));
}
