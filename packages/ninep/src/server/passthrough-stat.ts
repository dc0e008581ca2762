// Conversions between Unix file metadata and 9P: qids, 9P2000/.u stat entries, 9P2000.L getattr,
// mode bits, and user/group names from /etc/passwd and /etc/group.

import type { BigIntStats } from "node:fs";
import { readFileSync, statSync } from "node:fs";
import { GETATTR, QTDIR, QTFILE, QTSYMLINK } from "../codec/constants.js";
import type { Qid, Rgetattr, Stat } from "../codec/types.js";
import {
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  unixToDmMode,
} from "../mode.js";

// The mode bits and conversions, for the passthrough modules that import them from here.
export * from "../mode.js";

/** Linux d_type values for 9P2000.L readdir entries. */
export const DT = { UNKNOWN: 0, FIFO: 1, CHR: 2, DIR: 4, BLK: 6, REG: 8, LNK: 10, SOCK: 12 } as const;

export function dtypeOf(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return DT.DIR;
    case S_IFREG:
      return DT.REG;
    case S_IFLNK:
      return DT.LNK;
    case S_IFIFO:
      return DT.FIFO;
    case S_IFCHR:
      return DT.CHR;
    case S_IFBLK:
      return DT.BLK;
    case S_IFSOCK:
      return DT.SOCK;
    default:
      return DT.UNKNOWN;
  }
}

/** Linux major/minor from a dev_t (glibc encoding). */
export function majorOf(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn & 0xffffffffn));
}
export function minorOf(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn & 0xffffffffn));
}

/**
 * Maps (st_dev, st_ino) to qid paths. Files on the root's device get their inode number (as diod
 * does, so the Linux client's inode numbers are the real ones); other devices mounted below the
 * root get a small device index in the top byte so paths never collide.
 */
export class QidMapper {
  private readonly devs = new Map<bigint, bigint>();

  constructor(rootDev: bigint) {
    this.devs.set(rootDev, 0n);
  }

  path(dev: bigint, ino: bigint): bigint {
    let idx = this.devs.get(dev);
    if (idx === undefined) {
      idx = BigInt(this.devs.size);
      this.devs.set(dev, idx);
    }
    return idx === 0n ? ino : ((idx & 0xffn) << 56n) ^ ino;
  }

  /**
   * The qid of a file. `vers` is derived from mtime (ns) and size so any content change made
   * through us or locally changes it; type from the file type (symlink bit only when `unix`).
   */
  qid(st: BigIntStats, unix: boolean): Qid {
    const fmt = Number(st.mode) & S_IFMT;
    let type = QTFILE;
    if (fmt === S_IFDIR) type = QTDIR;
    else if (fmt === S_IFLNK && unix) type = QTSYMLINK;
    const v = (st.mtimeNs ^ (st.size << 20n) ^ (st.size >> 12n)) & 0xffffffffn;
    return { type, version: Number(v), path: this.path(st.dev, st.ino) };
  }
}

/** The 9P2000.u extension string of a device: `c MAJOR MINOR` / `b MAJOR MINOR`. */
export function deviceString(st: BigIntStats): string {
  const fmt = Number(st.mode) & S_IFMT;
  if (fmt !== S_IFCHR && fmt !== S_IFBLK) return "";
  return `${fmt === S_IFCHR ? "c" : "b"} ${majorOf(st.rdev)} ${minorOf(st.rdev)}`;
}

interface IdTable {
  byId: Map<number, string>;
  byName: Map<string, number>;
  /** passwd: primary gid by user name; group: member names by gid. */
  extra: Map<string, number>;
  members: Map<number, string[]>;
}

/**
 * The last parse of each file, shared by every IdNames of the process (a server makes one
 * passthrough per export, xcpufs one per session): a new instance still checks the file's mtime
 * before using it, but does not read and parse an unchanged file again.
 */
const parsedTables = new Map<string, { version: string; table: IdTable }>();

/** `version` tells file contents apart (mtime, size, inode); "" = the file is missing. */
function parsedTable(file: string, version: string): IdTable {
  const known = parsedTables.get(file);
  if (known && known.version === version && version !== "") return known.table;
  const table: IdTable = { byId: new Map(), byName: new Map(), extra: new Map(), members: new Map() };
  if (version !== "") {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      text = "";
    }
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      const f = line.split(":");
      const name = f[0];
      const id = Number(f[2]);
      if (!name || f.length < 3 || !Number.isInteger(id) || id < 0) continue;
      if (!table.byId.has(id)) table.byId.set(id, name);
      if (!table.byName.has(name)) table.byName.set(name, id);
      const g = Number(f[3]);
      if (Number.isInteger(g) && f[3] !== "" && !table.extra.has(name)) table.extra.set(name, g);
      if (f[3] && !/^\d+$/.test(f[3]))
        table.members.set(
          id,
          f[3].split(",").filter((m) => m !== ""),
        );
    }
  }
  parsedTables.set(file, { version, table });
  return table;
}

/**
 * User and group names from /etc/passwd and /etc/group (re-read when the file changes, checked at
 * most every `recheckMs`). Unknown ids are shown as decimal numbers; decimal strings are accepted
 * as ids in the other direction.
 */
export class IdNames {
  private readonly tables = new Map<string, { table: IdTable; version: string; checked: number }>();

  constructor(
    private readonly passwdFile = "/etc/passwd",
    private readonly groupFile = "/etc/group",
    private readonly recheckMs = 2000,
  ) {}

  private table(file: string): IdTable {
    const now = Date.now();
    const cached = this.tables.get(file);
    if (cached && now - cached.checked < this.recheckMs) return cached.table;
    let version = "";
    try {
      const st = statSync(file);
      version = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      // missing file: empty table
    }
    if (cached && cached.version === version) {
      cached.checked = now;
      return cached.table;
    }
    const table = parsedTable(file, version);
    this.tables.set(file, { table, version, checked: now });
    return table;
  }

  userName(uid: number): string {
    return this.table(this.passwdFile).byId.get(uid) ?? String(uid);
  }
  groupName(gid: number): string {
    return this.table(this.groupFile).byId.get(gid) ?? String(gid);
  }
  /** uid for a user name or decimal string; undefined if unknown. */
  uidOf(name: string): number | undefined {
    return this.table(this.passwdFile).byName.get(name) ?? parseId(name);
  }
  /** The primary group of `uid` in the passwd file; undefined if the user is unknown. */
  primaryGroupOf(uid: number): number | undefined {
    const pw = this.table(this.passwdFile);
    const name = pw.byId.get(uid);
    return name === undefined ? undefined : pw.extra.get(name);
  }

  /** Every group `uid` belongs to: its passwd primary group plus /etc/group memberships. */
  groupsOf(uid: number): Set<number> {
    const out = new Set<number>();
    const pw = this.table(this.passwdFile);
    const name = pw.byId.get(uid);
    if (name === undefined) return out;
    const primary = pw.extra.get(name);
    if (primary !== undefined) out.add(primary);
    for (const [gid, members] of this.table(this.groupFile).members) {
      if (members.includes(name)) out.add(gid);
    }
    return out;
  }
  /** gid for a group name or decimal string; undefined if unknown. */
  gidOf(name: string): number | undefined {
    return this.table(this.groupFile).byName.get(name) ?? parseId(name);
  }
}

function parseId(s: string): number | undefined {
  if (!/^\d{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xfffffffe ? n : undefined;
}

/** Seconds as the 4-byte 9P time field (clamped). */
function sec32(ns: bigint): number {
  const s = ns / 1_000_000_000n;
  if (s < 0n) return 0;
  return s > 0xffffffffn ? 0xffffffff : Number(s);
}

/**
 * A 9P2000 / 9P2000.u stat entry for a file. `name` is what the client walked ("/" for the root),
 * `extension` the symlink target (or "" if it could not be read); device strings are computed here.
 */
export function toStat(
  st: BigIntStats,
  name: string,
  opts: { unix: boolean; qids: QidMapper; ids: IdNames; linkTarget?: string },
): Stat {
  const mode = Number(st.mode);
  const fmt = mode & S_IFMT;
  const uid = Number(st.uid);
  const gid = Number(st.gid);
  const uname = opts.ids.userName(uid);
  const stat: Stat = {
    type: 0,
    dev: 0,
    qid: opts.qids.qid(st, opts.unix),
    mode: unixToDmMode(mode, opts.unix),
    atime: sec32(st.atimeNs),
    mtime: sec32(st.mtimeNs),
    length: fmt === S_IFDIR ? 0n : st.size,
    name,
    uid: uname,
    gid: opts.ids.groupName(gid),
    muid: uname, // Unix keeps no "last modifier"; the owner is the honest approximation
  };
  if (opts.unix) {
    stat.extension = fmt === S_IFLNK ? (opts.linkTarget ?? "") : deviceString(st);
    stat.n_uid = uid;
    stat.n_gid = gid;
    stat.n_muid = uid;
  }
  return stat;
}

type GetattrBody = Omit<Rgetattr, "type" | "tag">;

/**
 * The 9P2000.L Rgetattr body: every BASIC field (as diod answers), plus BTIME when requested and
 * the platform reports a birth time. GEN and DATA_VERSION are never valid.
 */
export function toGetattr(st: BigIntStats, qids: QidMapper, request: bigint = GETATTR.BASIC): GetattrBody {
  const sec = (ns: bigint) => ns / 1_000_000_000n;
  const nsec = (ns: bigint) => ns % 1_000_000_000n;
  let valid = GETATTR.BASIC;
  const hasBirth = (request & GETATTR.BTIME) !== 0n && st.birthtimeNs > 0n;
  if (hasBirth) valid |= GETATTR.BTIME;
  return {
    valid,
    qid: qids.qid(st, true),
    mode: Number(st.mode),
    uid: Number(st.uid),
    gid: Number(st.gid),
    nlink: st.nlink,
    rdev: st.rdev,
    size: st.size,
    blksize: st.blksize,
    blocks: st.blocks,
    atime_sec: sec(st.atimeNs),
    atime_nsec: nsec(st.atimeNs),
    mtime_sec: sec(st.mtimeNs),
    mtime_nsec: nsec(st.mtimeNs),
    ctime_sec: sec(st.ctimeNs),
    ctime_nsec: nsec(st.ctimeNs),
    btime_sec: hasBirth ? sec(st.birthtimeNs) : 0n,
    btime_nsec: hasBirth ? nsec(st.birthtimeNs) : 0n,
    gen: 0n,
    data_version: 0n,
  };
}
