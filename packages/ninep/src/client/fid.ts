// A client-side fid: one object per fid number, with every file operation of the three dialects.
// Operations that differ between dialects (open, create, stat, readdir) pick the right message.

import {
  Dialect,
  DMDIR,
  DMSYMLINK,
  decodeDirents,
  decodeStats,
  dontTouchStat,
  GETATTR,
  L_O,
  MAXWELEM,
  MsgType,
  OREAD,
  OTRUNC,
  SETATTR,
} from "../codec/index.js";
import type * as T from "../codec/types.js";
import { ClosedError, Ename, Errno, FsError, ProtocolError, RemoteError } from "../errors.js";
import { mapLimit } from "../map-limit.js";
import { isDirQid, linuxFlagsFromOpenMode, linuxPermFromDm, statFromAttr, statFromDirent } from "./attr.js";
import type { CallOptions, Client } from "./client.js";
import { shortWalkError, WalkError } from "./errors.js";

/** Splits a slash path into walk names, dropping empty and "." elements. */
export function splitPath(path: string | readonly string[]): string[] {
  const names = typeof path === "string" ? path.split("/") : [...path];
  return names.filter((n) => n !== "" && n !== ".");
}

/** The parts of Rgetattr a caller cares about (no type/tag). */
export type GetattrResult = Omit<T.Rgetattr, "type" | "tag">;
/** Rstatfs without type/tag. */
export type StatfsResult = Omit<T.Rstatfs, "type" | "tag">;

/** Attributes for `setattr`; times may be a Date, seconds since the epoch, or "now". */
export interface SetattrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number | bigint;
  atime?: Date | number | "now";
  mtime?: Date | number | "now";
}

function defaultGid(): number {
  return process.getgid?.() ?? 0;
}

function isUnsupported(err: unknown): boolean {
  return err instanceof RemoteError && (err.errno === Errno.EOPNOTSUPP || err.errno === Errno.ENOSYS);
}

/**
 * A fid on a connection. Made by `Client.attach` and `Fid.walk`; release it with `clunk()` (or
 * `remove()`). A fid that has been opened cannot be walked (W2): clone it first.
 */
export class Fid {
  readonly client: Client;
  /** The fid number on the wire. */
  readonly num: number;
  /** The file's qid as last reported. */
  qid: T.Qid;
  /** Last path element ("/" for an attach root): used for stat names and error messages. */
  name: string;
  /** Open-for-I/O state. */
  opened = false;
  /** Largest count per read/write for this fid (the server's iounit, else msize - IOHDRSZ). */
  iounit: number;
  /**
   * 9P2000.L: the group files made through this fid get when a call names none (Tlcreate, Tmkdir,
   * Tsymlink, Tmknod): the attach's `gid`, inherited by walks; unset, this process's gid.
   */
  createGid: number | undefined;
  #gone = false;

  /** @internal use Client.attach or Fid.walk */
  constructor(client: Client, num: number, qid: T.Qid, name: string) {
    this.client = client;
    this.num = num;
    this.qid = qid;
    this.name = name;
    this.iounit = client.iounit;
  }

  /** True once clunked or removed. */
  get clunked(): boolean {
    return this.#gone;
  }

  get #dotL(): boolean {
    return this.client.dialect === Dialect.P2000L;
  }

  #check(): void {
    if (this.#gone) throw new ClosedError(`fid ${this.num} (${this.name}) was already clunked`);
  }

  /**
   * Walks to a new fid. `path` may be "a/b/c" or ["a","b","c"]; more than 16 names are walked in
   * steps. A walk that stops part way rejects with WalkError ("file not found", `walked` = names
   * resolved) and, as W6 requires, the new fid number is not clunked.
   */
  async walk(path: string | readonly string[], opts: CallOptions = {}): Promise<Fid> {
    this.#check();
    const names = splitPath(path);
    const client = this.client;
    const newfid = client.fids.alloc();
    let qid = this.qid;
    let created = false;
    let walked = 0;
    {
      let from = this.num;
      do {
        const chunk = names.slice(walked, walked + MAXWELEM);
        const first = !created;
        let r: T.Rwalk;
        try {
          r = await client.rpc(
            { type: MsgType.Twalk, fid: from, newfid, wname: chunk },
            {
              ...opts,
              onLate: (late) => {
                // The walk was abandoned; settle what the server did with newfid. With no reply
                // at all (Rflush alone) it should not have happened, but some servers (diod)
                // finish a flushed walk and drop its reply: a Tclunk tells, either way.
                if (!first || late === undefined) client.clunkLater(newfid);
                else if (late?.type === MsgType.Rwalk && late.wqid.length === chunk.length)
                  client.clunkLater(newfid);
                else client.fids.quarantine(newfid);
              },
              // Never sent: newfid is as it was before this step.
              onUnsent: () => (first ? client.fids.free(newfid) : client.clunkLater(newfid)),
            },
          );
        } catch (err) {
          if (err instanceof RemoteError) {
            if (created) client.clunkLater(newfid);
            else client.fids.free(newfid);
            throw new WalkError(err.ename, err.errno, walked, names);
          }
          throw err;
        }
        if (r.wqid.length < chunk.length) {
          if (created) client.clunkLater(newfid);
          else client.fids.quarantine(newfid);
          throw shortWalkError(walked + r.wqid.length, names);
        }
        created = true;
        walked += chunk.length;
        qid = r.wqid[r.wqid.length - 1] ?? qid;
        from = newfid;
      } while (walked < names.length);
    }
    const last = names[names.length - 1];
    const fid = new Fid(client, newfid, qid, last ?? this.name);
    fid.createGid = this.createGid;
    return fid;
  }

  /**
   * Walks to `path` and sends what `then` asks of the new fid (open, create, a first read or
   * write...) in the same write, without waiting for the walk's reply: one round trip where there
   * were two or three. It relies on the server running the requests that name one fid in the
   * order they came, as this package's server and xcpufs do (9P lets a server answer requests
   * in any order: don't use it with a server that runs them out of order). Until the walk's reply
   * the new fid's qid is this fid's (in 9P2000.L, `then` should `lopen` with explicit flags).
   *
   * Resolves with the fid and what `then` resolved to. When the walk fails, its error is thrown
   * (WalkError, as `walk` throws) and the errors of the requests that followed it, about a fid
   * that never existed, are dropped; when `then` fails after the walk succeeded, the new fid is
   * clunked and that error is thrown. More than 16 names are walked first, then `then` runs.
   */
  async walkThen<R>(
    path: string | readonly string[],
    then: (fid: Fid) => Promise<R>,
    opts: CallOptions = {},
  ): Promise<{ fid: Fid; value: R }> {
    this.#check();
    const names = splitPath(path);
    if (names.length > MAXWELEM) {
      const fid = await this.walk(names, opts);
      try {
        return { fid, value: await then(fid) };
      } catch (err) {
        void fid.clunk().catch(() => {});
        throw err;
      }
    }
    const client = this.client;
    const newfid = client.fids.alloc();
    const fid = new Fid(client, newfid, this.qid, names[names.length - 1] ?? this.name);
    fid.createGid = this.createGid;
    let unsent = false;
    const walked = client.rpc(
      { type: MsgType.Twalk, fid: this.num, newfid, wname: names },
      {
        ...opts,
        onLate: (late) => {
          // Abandoned: settle what the server did with newfid (as walk does).
          if (late === undefined || (late.type === MsgType.Rwalk && late.wqid.length === names.length))
            client.clunkLater(newfid);
          else client.fids.quarantine(newfid);
        },
        onUnsent: () => {
          unsent = true;
        },
      },
    );
    let rest: Promise<R>;
    try {
      rest = then(fid);
    } catch (err) {
      rest = Promise.reject(err);
    }
    const [w, r] = await Promise.allSettled([walked, rest]);
    if (w.status === "rejected") {
      fid.#gone = true;
      const err = w.reason;
      // Aborted or timed out in flight: onLate settles newfid.
      if (!(err instanceof RemoteError) && !unsent) throw err;
      // Nothing was made on the server. The number is reused only if the requests sent after
      // the walk are all answered (an abandoned one may still be on its way).
      if (r.status === "fulfilled" || r.reason instanceof RemoteError) client.fids.free(newfid);
      else client.fids.quarantine(newfid);
      if (!(err instanceof RemoteError)) throw err;
      throw new WalkError(err.ename, err.errno, 0, names);
    }
    if (w.value.wqid.length < names.length) {
      fid.#gone = true;
      client.fids.quarantine(newfid);
      throw shortWalkError(w.value.wqid.length, names);
    }
    if (!fid.opened) fid.qid = w.value.wqid[w.value.wqid.length - 1] ?? fid.qid;
    if (r.status === "rejected") {
      void fid.clunk().catch(() => {});
      throw r.reason;
    }
    return { fid, value: r.value };
  }

  /** A new fid for the same file (Twalk with no names). */
  clone(opts?: CallOptions): Promise<Fid> {
    return this.walk([], opts);
  }

  #opened(qid: T.Qid, iounit: number): void {
    this.qid = qid;
    this.opened = true;
    const max = this.client.iounit;
    this.iounit = iounit > 0 && iounit < max ? iounit : max;
  }

  /** Opens for I/O with a Plan 9 mode (OREAD, OWRITE, ORDWR, OEXEC, | OTRUNC, ORCLOSE). In .L: Tlopen. */
  async open(mode: number = OREAD, opts?: CallOptions): Promise<void> {
    this.#check();
    if (this.#dotL) {
      const flags = linuxFlagsFromOpenMode(mode) | (isDirQid(this.qid) ? L_O.DIRECTORY : 0);
      await this.lopen(flags, opts);
      // Some servers (nfs-ganesha) open with O_TRUNC and keep the data: truncate as Linux's own
      // client does, with a setattr after the open. Refused (a FIFO, a device): the open stands.
      if (mode & OTRUNC && !isDirQid(this.qid)) await this.setattr({ size: 0 }, opts).catch(() => {});
      return;
    }
    const r = await this.client.rpc({ type: MsgType.Topen, fid: this.num, mode }, opts);
    this.#opened(r.qid, r.iounit);
  }

  /** 9P2000.L: opens with Linux open(2) flags (L_O.*). */
  async lopen(flags: number, opts?: CallOptions): Promise<void> {
    this.#check();
    const r = await this.client.rpc({ type: MsgType.Tlopen, fid: this.num, flags }, opts);
    this.#opened(r.qid, r.iounit);
  }

  /**
   * Creates `name` in this directory and opens it with `mode`; afterwards this fid refers to the
   * new file (O6). `perm` with DMDIR makes a directory; `extension` is the 9P2000.u special-file
   * string (e.g. a symlink target with DMSYMLINK). In .L files use Tlcreate and directories Tmkdir
   * followed by a walk and Tlopen.
   */
  async create(
    name: string,
    perm: number,
    mode: number = OREAD,
    extension = "",
    opts?: CallOptions,
  ): Promise<void> {
    this.#check();
    if (!this.#dotL) {
      const r = await this.client.rpc(
        { type: MsgType.Tcreate, fid: this.num, name, perm: perm >>> 0, mode, extension },
        opts,
      );
      this.#opened(r.qid, r.iounit);
      this.name = name;
      return;
    }
    if (perm & DMSYMLINK) {
      throw new FsError(Ename.NotSupported, Errno.EOPNOTSUPP);
    }
    if (perm & DMDIR) {
      await this.mkdir(name, linuxPermFromDm(perm), undefined, opts);
      const r = await this.client.rpc(
        { type: MsgType.Twalk, fid: this.num, newfid: this.num, wname: [name] },
        opts,
      );
      this.qid = r.wqid[0] ?? this.qid;
      this.name = name;
      await this.lopen(L_O.RDONLY | L_O.DIRECTORY, opts);
      return;
    }
    await this.lcreate(name, linuxFlagsFromOpenMode(mode), linuxPermFromDm(perm), undefined, opts);
  }

  /** 9P2000.L: creates and opens `name` in this directory; this fid becomes the new file. */
  async lcreate(
    name: string,
    flags: number,
    mode = 0o644,
    gid = this.createGid ?? defaultGid(),
    opts?: CallOptions,
  ): Promise<void> {
    this.#check();
    const r = await this.client.rpc({ type: MsgType.Tlcreate, fid: this.num, name, flags, mode, gid }, opts);
    this.#opened(r.qid, r.iounit);
    this.name = name;
  }

  /** Reads up to `count` bytes (clamped to iounit) at `offset`; an empty buffer means end of file. */
  async read(offset: number | bigint, count: number = this.iounit, opts?: CallOptions): Promise<Buffer> {
    this.#check();
    const r = await this.client.rpc(
      { type: MsgType.Tread, fid: this.num, offset: BigInt(offset), count: Math.min(count, this.iounit) },
      opts,
    );
    return Buffer.from(r.data.buffer, r.data.byteOffset, r.data.length);
  }

  /**
   * Writes `data` at `offset`, in iounit-sized messages one after another; resolves with the bytes
   * written (less than `data.length` only if the server took less).
   */
  async write(offset: number | bigint, data: Uint8Array | string, opts?: CallOptions): Promise<number> {
    this.#check();
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    let off = BigInt(offset);
    let done = 0;
    do {
      const chunk = buf.subarray(done, done + this.iounit);
      const r = await this.client.rpc(
        { type: MsgType.Twrite, fid: this.num, offset: off, data: chunk },
        opts,
      );
      done += r.count;
      off += BigInt(r.count);
      if (r.count < chunk.length) break;
    } while (done < buf.length);
    return done;
  }

  /** The file's stat. In 9P2000.L it is built from Tgetattr (uid/gid as numbers in text). */
  async stat(opts?: CallOptions): Promise<T.Stat> {
    this.#check();
    if (this.#dotL) return statFromAttr(this.name, await this.getattr(GETATTR.ALL, opts));
    const r = await this.client.rpc({ type: MsgType.Tstat, fid: this.num }, opts);
    return r.stat;
  }

  /**
   * Changes the fields given (the rest are "don't touch", S3). In 9P2000.L `mode`, `length`,
   * `mtime` and `atime` become a Tsetattr; a rename needs `Fid.rename`/`renameat` there.
   */
  async wstat(changes: Partial<T.Stat>, opts?: CallOptions): Promise<void> {
    this.#check();
    if (!this.#dotL) {
      await this.client.rpc({ type: MsgType.Twstat, fid: this.num, stat: dontTouchStat(changes) }, opts);
      return;
    }
    if (changes.name !== undefined && changes.name !== "") {
      throw new FsError(Ename.NotSupported, Errno.EOPNOTSUPP);
    }
    const attrs: SetattrChanges = {};
    if (changes.mode !== undefined && changes.mode !== 0xffffffff) attrs.mode = linuxPermFromDm(changes.mode);
    if (changes.length !== undefined && changes.length !== 0xffffffffffffffffn) attrs.size = changes.length;
    if (changes.mtime !== undefined && changes.mtime !== 0xffffffff) attrs.mtime = changes.mtime;
    if (changes.atime !== undefined && changes.atime !== 0xffffffff) attrs.atime = changes.atime;
    if (Object.keys(attrs).length === 0) return this.fsync(false, opts);
    await this.setattr(attrs, opts);
  }

  /** Removes the file; the fid is gone afterwards whether or not the removal succeeded (C2). */
  async remove(opts?: Omit<CallOptions, "signal">): Promise<void> {
    this.#check();
    this.#gone = true;
    try {
      await this.#settled();
      await this.client.rpc({ type: MsgType.Tremove, fid: this.num }, { timeoutMs: opts?.timeoutMs });
      this.client.fids.free(this.num);
    } catch (err) {
      if (err instanceof RemoteError) this.client.fids.free(this.num);
      throw err;
    }
  }

  /**
   * Waits until no aborted or timed-out call on this fid is still on the server (its Tflush not
   * yet answered). A server that runs requests concurrently may still be running such a call: a
   * Tclunk or Tremove that overtook it would free the number while the server still holds the
   * fid, and the next walk to that number would find it taken.
   */
  async #settled(): Promise<void> {
    const settled = this.client.fidSettled(this.num);
    if (settled) await settled;
  }

  /**
   * Forgets the fid; safe to call twice. The number is reused only after the server answered (C1).
   * The Tclunk waits for the Rflush of calls on this fid that were aborted or timed out.
   */
  async clunk(): Promise<void> {
    if (this.#gone) return;
    this.#gone = true;
    if (this.client.closed) return;
    try {
      await this.#settled();
      // Under the client's time limit, if it has one: a server that never answers must not
      // hold the caller forever.
      await this.client.rpc({ type: MsgType.Tclunk, fid: this.num });
      this.client.fids.free(this.num);
    } catch (err) {
      if (err instanceof RemoteError) {
        this.client.fids.free(this.num);
        throw err;
      }
      // Connection gone: nothing left to forget. Timed out: the server may or may not have
      // forgotten the fid, so its number is never reused.
      if (!this.client.closed) this.client.fids.quarantine(this.num);
    }
  }

  /**
   * Lists a directory as stat entries (never "." or ".."). On an unopened fid a clone is opened,
   * read and clunked; in 9P2000.L each entry is then stat'ed with walk+getattr (pipelined). On a
   * fid that is already open the entries are read through it, and in .L carry only name, qid and type.
   */
  async readdir(opts?: CallOptions): Promise<T.Stat[]> {
    this.#check();
    if (this.opened) {
      if (this.#dotL) return (await this.#readDirents(opts)).filter(notDots).map(statFromDirent);
      return this.#readStats(opts);
    }
    const dir = await this.clone(opts);
    try {
      if (!this.#dotL) {
        await dir.open(OREAD, opts);
        return await dir.#readStats(opts);
      }
      await dir.lopen(L_O.RDONLY | L_O.DIRECTORY, opts);
      const entries = (await dir.#readDirents(opts)).filter(notDots);
      return await mapLimit(entries, 16, async (d) => {
        const f = await this.walk([d.name], opts);
        try {
          return statFromAttr(d.name, await f.getattr(GETATTR.ALL, opts));
        } finally {
          await f.clunk();
        }
      });
    } finally {
      await dir.clunk();
    }
  }

  async #readStats(opts?: CallOptions): Promise<T.Stat[]> {
    const out: T.Stat[] = [];
    let offset = 0n;
    for (;;) {
      const r = await this.client.rpc(
        { type: MsgType.Tread, fid: this.num, offset, count: this.iounit },
        opts,
      );
      if (r.data.length === 0) return out;
      offset += BigInt(r.data.length);
      out.push(...decodeStats(r.data, this.client.dialect));
    }
  }

  async #readDirents(opts?: CallOptions): Promise<T.Dirent[]> {
    const out: T.Dirent[] = [];
    let offset = 0n;
    // Offsets are the server's cookies, in no particular order; one asked for twice is a loop.
    const asked = new Set<bigint>([offset]);
    for (;;) {
      const r = await this.client.rpc(
        { type: MsgType.Treaddir, fid: this.num, offset, count: this.iounit },
        opts,
      );
      if (r.data.length === 0) return out;
      const batch = decodeDirents(r.data);
      if (batch.length === 0) return out;
      out.push(...batch);
      offset = batch[batch.length - 1]?.offset ?? offset;
      if (asked.has(offset)) {
        throw new ProtocolError("unexpected", `${this.client.label} repeated directory offset ${offset}`);
      }
      asked.add(offset);
    }
  }

  /** 9P2000.L: the raw directory entries of this open directory, "." and ".." included. */
  async lreaddir(opts?: CallOptions): Promise<T.Dirent[]> {
    this.#check();
    return this.#readDirents(opts);
  }

  // ---- 9P2000.L operations ----

  /** 9P2000.L Tgetattr. Times' seconds are signed (before 1970: negative). */
  async getattr(mask: bigint = GETATTR.ALL, opts?: CallOptions): Promise<GetattrResult> {
    this.#check();
    const r = await this.client.rpc({ type: MsgType.Tgetattr, fid: this.num, request_mask: mask }, opts);
    // Every field but type and tag, named one by one (cheaper than a rest copy, same object).
    return {
      valid: r.valid,
      qid: r.qid,
      mode: r.mode,
      uid: r.uid,
      gid: r.gid,
      nlink: r.nlink,
      rdev: r.rdev,
      size: r.size,
      blksize: r.blksize,
      blocks: r.blocks,
      // Seconds are signed in Linux (a time before 1970 is negative), a bare u64 on the wire.
      atime_sec: BigInt.asIntN(64, r.atime_sec),
      atime_nsec: r.atime_nsec,
      mtime_sec: BigInt.asIntN(64, r.mtime_sec),
      mtime_nsec: r.mtime_nsec,
      ctime_sec: BigInt.asIntN(64, r.ctime_sec),
      ctime_nsec: r.ctime_nsec,
      btime_sec: BigInt.asIntN(64, r.btime_sec),
      btime_nsec: r.btime_nsec,
      gen: r.gen,
      data_version: r.data_version,
    };
  }

  /** 9P2000.L Tsetattr for the attributes given. */
  async setattr(attrs: SetattrChanges, opts?: CallOptions): Promise<void> {
    this.#check();
    let valid = 0;
    const time = (t: Date | number | "now" | undefined, bit: number, setBit: number): [bigint, bigint] => {
      if (t === undefined) return [0n, 0n];
      valid |= bit;
      if (t === "now") return [0n, 0n];
      valid |= setBit;
      const ms = t instanceof Date ? t.getTime() : t * 1000;
      if (!Number.isFinite(ms)) throw new RangeError(`setattr: invalid time ${String(t)}`);
      // Whole seconds down, nanoseconds up from there (so a time before 1970 has them positive);
      // the seconds go out as the u64 Linux reads back as signed.
      let sec = Math.floor(ms / 1000);
      let nsec = Math.round((ms - sec * 1000) * 1e6);
      if (nsec >= 1e9) {
        sec += 1;
        nsec -= 1e9;
      }
      return [BigInt.asUintN(64, BigInt(sec)), BigInt(nsec)];
    };
    if (attrs.mode !== undefined) valid |= SETATTR.MODE;
    if (attrs.uid !== undefined) valid |= SETATTR.UID;
    if (attrs.gid !== undefined) valid |= SETATTR.GID;
    if (attrs.size !== undefined) valid |= SETATTR.SIZE;
    const [asec, ansec] = time(attrs.atime, SETATTR.ATIME, SETATTR.ATIME_SET);
    const [msec, mnsec] = time(attrs.mtime, SETATTR.MTIME, SETATTR.MTIME_SET);
    await this.client.rpc(
      {
        type: MsgType.Tsetattr,
        fid: this.num,
        valid,
        mode: attrs.mode ?? 0,
        uid: attrs.uid ?? 0,
        gid: attrs.gid ?? 0,
        size: BigInt(attrs.size ?? 0),
        atime_sec: asec,
        atime_nsec: ansec,
        mtime_sec: msec,
        mtime_nsec: mnsec,
      },
      opts,
    );
  }

  /** 9P2000.L Tmkdir in this directory; resolves with the new directory's qid. */
  async mkdir(
    name: string,
    mode = 0o755,
    gid = this.createGid ?? defaultGid(),
    opts?: CallOptions,
  ): Promise<T.Qid> {
    this.#check();
    return (await this.client.rpc({ type: MsgType.Tmkdir, dfid: this.num, name, mode, gid }, opts)).qid;
  }

  /** 9P2000.L Tsymlink: makes `name` in this directory pointing at `target`. */
  async symlink(
    name: string,
    target: string,
    gid = this.createGid ?? defaultGid(),
    opts?: CallOptions,
  ): Promise<T.Qid> {
    this.#check();
    return (await this.client.rpc({ type: MsgType.Tsymlink, fid: this.num, name, symtgt: target, gid }, opts))
      .qid;
  }

  /** 9P2000.L Tmknod in this directory. */
  async mknod(
    name: string,
    mode: number,
    major = 0,
    minor = 0,
    gid = this.createGid ?? defaultGid(),
    opts?: CallOptions,
  ): Promise<T.Qid> {
    this.#check();
    return (
      await this.client.rpc({ type: MsgType.Tmknod, dfid: this.num, name, mode, major, minor, gid }, opts)
    ).qid;
  }

  /** 9P2000.L Treadlink: the target of this symlink. */
  async readlink(opts?: CallOptions): Promise<string> {
    this.#check();
    return (await this.client.rpc({ type: MsgType.Treadlink, fid: this.num }, opts)).target;
  }

  /** 9P2000.L Tlink: makes `name` in this directory a hard link to `target`. */
  async link(target: Fid, name: string, opts?: CallOptions): Promise<void> {
    this.#check();
    await this.client.rpc({ type: MsgType.Tlink, dfid: this.num, fid: target.num, name }, opts);
  }

  /** 9P2000.L Trename: moves this file into directory `dir` as `name`. */
  async rename(dir: Fid, name: string, opts?: CallOptions): Promise<void> {
    this.#check();
    await this.client.rpc({ type: MsgType.Trename, fid: this.num, dfid: dir.num, name }, opts);
    this.name = name;
  }

  /**
   * 9P2000.L Trenameat from this directory to `newDir`. Servers that answer EOPNOTSUPP/ENOSYS
   * (diod 1.0.24) get walk + Trename + clunk instead.
   */
  async renameat(oldname: string, newDir: Fid, newname: string, opts?: CallOptions): Promise<void> {
    this.#check();
    try {
      await this.client.rpc(
        { type: MsgType.Trenameat, olddirfid: this.num, oldname, newdirfid: newDir.num, newname },
        opts,
      );
    } catch (err) {
      if (!isUnsupported(err)) throw err;
      const f = await this.walk([oldname], opts);
      try {
        await f.rename(newDir, newname, opts);
      } finally {
        await f.clunk();
      }
    }
  }

  /**
   * 9P2000.L Tunlinkat of `name` in this directory (`AT_REMOVEDIR` for a directory). Servers that
   * answer EOPNOTSUPP/ENOSYS get walk + Tremove instead.
   */
  async unlinkat(name: string, flags = 0, opts?: CallOptions): Promise<void> {
    this.#check();
    try {
      await this.client.rpc({ type: MsgType.Tunlinkat, dirfd: this.num, name, flags }, opts);
    } catch (err) {
      if (!isUnsupported(err)) throw err;
      const f = await this.walk([name], opts);
      await f.remove();
    }
  }

  /** 9P2000.L Tstatfs. */
  async statfs(opts?: CallOptions): Promise<StatfsResult> {
    this.#check();
    const {
      type: _t,
      tag: _g,
      ...fs
    } = await this.client.rpc({ type: MsgType.Tstatfs, fid: this.num }, opts);
    return fs;
  }

  /** Commits the file to stable storage: Tfsync in .L, an all-"don't touch" Twstat otherwise (S3). */
  async fsync(datasync = false, opts?: CallOptions): Promise<void> {
    this.#check();
    if (this.#dotL) {
      await this.client.rpc({ type: MsgType.Tfsync, fid: this.num, datasync: datasync ? 1 : 0 }, opts);
      return;
    }
    await this.client.rpc({ type: MsgType.Twstat, fid: this.num, stat: dontTouchStat({}) }, opts);
  }
}

function notDots(d: T.Dirent): boolean {
  return d.name !== "." && d.name !== "..";
}
