// Open files of the passthrough backend: regular files and devices (positional I/O on a kept
// descriptor), directories (9P2000 stat listings and 9P2000.L cookie readdir), and the byte-range
// lock table behind Tlock/Tgetlock.

import type { BigIntStats } from "node:fs";
import {
  close,
  closeSync,
  fchmod,
  fdatasync,
  open as fsOpen,
  read as fsRead,
  fstat,
  fstatSync,
  write as fsWrite,
  fsync,
  readSync,
} from "node:fs";
import type { FileHandle } from "node:fs/promises";
import type { Dirent, Qid, Stat } from "../codec/types.js";
import { Errno, FsError } from "../errors.js";
import type {
  GetLockRequest,
  GetLockResult,
  Identity,
  LockRequest,
  OpenFile,
  RequestContext,
} from "./backend.js";
import { setIdBits } from "./passthrough-access.js";

/** Largest file offset we pass to the OS (beyond it reads are EOF and writes EFBIG). */
const MAX_OFFSET = BigInt(Number.MAX_SAFE_INTEGER);

function aborted(_signal: AbortSignal): FsError {
  return new FsError("interrupted", Errno.EINTR);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(aborted(signal));
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(aborted(signal));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

// ---- locks ------------------------------------------------------------------------------------

export const LOCK_RDLCK = 0;
export const LOCK_WRLCK = 1;
export const LOCK_UNLCK = 2;
export const LOCK_SUCCESS = 0;
export const LOCK_BLOCKED = 1;
export const LOCK_ERROR = 2;

interface HeldLock {
  owner: string;
  holder: object;
  type: number;
  start: bigint;
  /** exclusive end; -1n = to end of file */
  end: bigint;
  proc_id: number;
  client_id: string;
}

const overlaps = (a: { start: bigint; end: bigint }, b: { start: bigint; end: bigint }) =>
  (a.end === -1n || b.start < a.end) && (b.end === -1n || a.start < b.end);

/**
 * POSIX-style advisory byte-range locks kept by this server (per backend, keyed by qid path).
 * They exclude other 9P clients of the same server; local processes do not see them.
 */
export class LockTable {
  private readonly files = new Map<bigint, HeldLock[]>();

  private range(start: bigint, length: bigint) {
    return { start, end: length === 0n ? -1n : start + length };
  }

  /** Remove [start,end) of `owner`'s locks, splitting where needed. */
  private cut(list: HeldLock[], owner: string, r: { start: bigint; end: bigint }): HeldLock[] {
    const out: HeldLock[] = [];
    for (const l of list) {
      if (l.owner !== owner || !overlaps(l, r)) {
        out.push(l);
        continue;
      }
      if (l.start < r.start) out.push({ ...l, end: r.start });
      if (r.end !== -1n && (l.end === -1n || l.end > r.end)) out.push({ ...l, start: r.end });
    }
    return out;
  }

  lock(file: bigint, owner: string, holder: object, req: LockRequest): number {
    if (req.locktype !== LOCK_RDLCK && req.locktype !== LOCK_WRLCK && req.locktype !== LOCK_UNLCK) {
      return LOCK_ERROR;
    }
    const r = this.range(req.start, req.length);
    let list = this.files.get(file) ?? [];
    if (req.locktype !== LOCK_UNLCK) {
      const conflict = list.some(
        (l) => l.owner !== owner && overlaps(l, r) && (l.type === LOCK_WRLCK || req.locktype === LOCK_WRLCK),
      );
      // A blocking request is answered BLOCKED too: the client polls (spec 7, lock).
      if (conflict) return LOCK_BLOCKED;
    }
    list = this.cut(list, owner, r);
    if (req.locktype !== LOCK_UNLCK) {
      list.push({
        owner,
        holder,
        type: req.locktype,
        ...r,
        proc_id: req.proc_id,
        client_id: req.client_id,
      });
    }
    if (list.length === 0) this.files.delete(file);
    else this.files.set(file, list);
    return LOCK_SUCCESS;
  }

  getlock(file: bigint, owner: string, req: GetLockRequest): GetLockResult {
    const r = this.range(req.start, req.length);
    const hit = (this.files.get(file) ?? []).find(
      (l) => l.owner !== owner && overlaps(l, r) && (l.type === LOCK_WRLCK || req.locktype === LOCK_WRLCK),
    );
    if (!hit) return { ...req, locktype: LOCK_UNLCK };
    return {
      locktype: hit.type,
      start: hit.start,
      length: hit.end === -1n ? 0n : hit.end - hit.start,
      proc_id: hit.proc_id,
      client_id: hit.client_id,
    };
  }

  /** Drop every lock taken through `holder` (an open file being clunked). */
  release(holder: object): void {
    for (const [file, list] of this.files) {
      const keep = list.filter((l) => l.holder !== holder);
      if (keep.length === 0) this.files.delete(file);
      else if (keep.length !== list.length) this.files.set(file, keep);
    }
  }
}

/** The owner of a lock: the client's lock owner (client_id, proc_id) on this connection. */
function lockOwner(req: LockRequest | GetLockRequest, ctx: RequestContext): string {
  return `${ctx.connection.id}/${req.client_id}/${req.proc_id}`;
}

// ---- files ------------------------------------------------------------------------------------

/** open(2) through the thread pool, giving the raw descriptor. */
export function openFd(p: string, flags: number, mode?: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fsOpen(p, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))),
  );
}

/** fstat of a raw descriptor (bigint), synchronously or through the thread pool. */
export function fstatFd(fd: number, sync: boolean): BigIntStats | Promise<BigIntStats> {
  if (sync) return fstatSync(fd, { bigint: true });
  return new Promise((resolve, reject) =>
    fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))),
  );
}

/** close of a raw descriptor, synchronously or through the thread pool. */
export function closeFd(fd: number, sync: boolean): void | Promise<void> {
  if (sync) return closeSync(fd);
  return new Promise((resolve, reject) => close(fd, (err) => (err ? reject(err) : resolve())));
}

/** closeFd on an error path: never throws, so the error being handled is the one reported. */
export async function closeFdQuietly(fd: number, sync: boolean): Promise<void> {
  try {
    await closeFd(fd, sync);
  } catch {}
}

const cb =
  (resolve: () => void, reject: (e: unknown) => void) =>
  (err: NodeJS.ErrnoException | null): void =>
    err ? reject(err) : resolve();

export interface FileIoOptions {
  /** The open descriptor; FileIo owns it and closes it at clunk. */
  fd: number;
  qid: Qid;
  /** FIFO or character/block device: no positions, non-blocking descriptor polled on EAGAIN. */
  stream: boolean;
  canRead: boolean;
  canWrite: boolean;
  locks: LockTable;
  /** Receives fresh metadata after writes (at most every STAT_EVERY_MS), so the node's qid follows. */
  onStat?: (st: BigIntStats) => void;
  /**
   * Regular files: pread synchronously on the event loop, straight into the reply frame, instead
   * of a thread-pool round trip (PassthroughOptions.syncIo). Default false.
   */
  syncRead?: boolean;
  /**
   * Metadata calls on the descriptor (the fstat after writes, close) synchronously on the event
   * loop (PassthroughOptions.syncIo). Data writes always go through the thread pool. Default false.
   */
  syncMeta?: boolean;
  /** The file's mode when opened (for the set-ID bits a write must clear). */
  mode?: number;
  /** Must a write made for `user` clear set-ID bits? (Access.dropsSetId) */
  dropsSetId?: (user: Identity) => boolean;
  /** Called once at clunk, before the descriptor is closed. */
  onClose?: () => void;
}

/** Minimum time between the fstat calls that keep a written file's qid version current. */
const STAT_EVERY_MS = 20;

/** pread/pwrite on a raw descriptor through the callback API (cheaper than FileHandle methods). */
function preadAsync(fd: number, buf: Buffer, count: number, pos: number | null): Promise<number> {
  return new Promise((resolve, reject) =>
    fsRead(fd, buf, 0, count, pos, (err, n) => (err ? reject(err) : resolve(n))),
  );
}
function pwriteAsync(
  fd: number,
  data: Uint8Array,
  off: number,
  len: number,
  pos: number | null,
): Promise<number> {
  return new Promise((resolve, reject) =>
    fsWrite(fd, data, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

/** An open regular file or device. */
export class FileIo implements OpenFile {
  readonly qid: Qid;
  readonly iounit = 0;
  private readonly fd: number;
  private readonly stream: boolean;
  private readonly locks: LockTable;
  private readonly onStat: ((st: BigIntStats) => void) | undefined;
  private closed = false;
  /** I/O calls in progress on the raw descriptor: clunk waits for them before closing it. */
  private inflight = 0;
  private drained: (() => void) | undefined;
  private lastStat = 0;
  private statPending = false;
  private readonly syncRead: boolean;
  private readonly syncMeta: boolean;
  /** Last known mode (from open, then the fstat after writes). */
  private mode: number;
  private readonly dropsSetId: ((user: Identity) => boolean) | undefined;
  private readonly onClose: (() => void) | undefined;
  read?: OpenFile["read"];
  readInto?: OpenFile["readInto"];
  write?: OpenFile["write"];
  /** doWrite waits for each pwrite and keeps nothing of the data. */
  readonly releasesWriteData = true;

  constructor(o: FileIoOptions) {
    this.fd = o.fd;
    this.qid = o.qid;
    this.stream = o.stream;
    this.locks = o.locks;
    this.onStat = o.onStat;
    this.syncRead = !o.stream && (o.syncRead ?? false);
    this.syncMeta = o.syncMeta ?? false;
    this.mode = o.mode ?? 0;
    this.dropsSetId = o.stream ? undefined : o.dropsSetId;
    this.onClose = o.onClose;
    if (o.canRead) {
      this.read = (offset, count, ctx) => this.doRead(offset, count, ctx);
      this.readInto = (offset, buf, ctx) => this.doReadInto(offset, buf, ctx);
    }
    if (o.canWrite) this.write = (offset, data, ctx) => this.doWrite(offset, data, ctx);
  }

  private async doRead(offset: bigint, count: number, ctx: RequestContext): Promise<Uint8Array> {
    if (count <= 0) return new Uint8Array(0);
    // One buffer of the requested size; the result is a view of what was filled.
    const buf = Buffer.allocUnsafe(count);
    const n = await this.doReadInto(offset, buf, ctx);
    return buf.subarray(0, n);
  }

  /** Fills `buf` from `offset` (one pread); FIFOs and devices wait for data, polling. */
  private doReadInto(offset: bigint, buf: Buffer, ctx: RequestContext): number | Promise<number> {
    const count = buf.length;
    if (count <= 0) return 0;
    if (!this.stream && offset > MAX_OFFSET) return 0;
    if (this.syncRead) {
      if (this.closed) throw new FsError("file closed", Errno.EBADF);
      return readSync(this.fd, buf, 0, count, Number(offset));
    }
    return this.readPolled(offset, buf, ctx);
  }

  private async readPolled(offset: bigint, buf: Buffer, ctx: RequestContext): Promise<number> {
    const count = buf.length;
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      try {
        return await this.io(() => preadAsync(this.fd, buf, count, this.stream ? null : Number(offset)));
      } catch (err) {
        if (!this.stream || (err as { code?: string }).code !== "EAGAIN") throw err;
      }
      await sleep(delay, ctx.signal);
    }
  }

  /** Runs one operation on the raw descriptor, refusing after clunk and counting it for clunk. */
  private async io<T>(op: () => Promise<T>): Promise<T> {
    if (this.closed) throw new FsError("file closed", Errno.EBADF);
    this.inflight++;
    try {
      return await op();
    } finally {
      if (--this.inflight === 0) this.drained?.();
    }
  }

  private noteWrite(): void {
    if (!this.onStat || this.statPending || this.closed) return;
    const now = Date.now();
    if (now - this.lastStat < STAT_EVERY_MS) {
      // A burst of writes: refresh once when it is over.
      this.statPending = true;
      setTimeout(() => {
        this.statPending = false;
        this.noteWrite();
      }, STAT_EVERY_MS).unref();
      return;
    }
    this.lastStat = now;
    if (this.syncMeta) {
      try {
        const st = fstatSync(this.fd, { bigint: true });
        this.mode = Number(st.mode);
        this.onStat(st);
      } catch {}
      return;
    }
    this.statPending = true;
    this.io(async () => fstatFd(this.fd, false)).then(
      (st) => {
        this.statPending = false;
        this.mode = Number(st.mode);
        this.onStat?.(st);
      },
      () => {
        this.statPending = false;
      },
    );
  }

  private async doWrite(offset: bigint, data: Uint8Array, ctx: RequestContext): Promise<number> {
    if (!this.stream && offset + BigInt(data.length) > MAX_OFFSET) {
      throw new FsError("file too large", Errno.EFBIG);
    }
    if (setIdBits(this.mode) !== 0 && this.dropsSetId?.(ctx.user)) await this.clearSetId();
    let done = 0;
    let delay = 5;
    while (done < data.length) {
      try {
        const pos = this.stream ? null : Number(offset) + done;
        const bytesWritten = await this.io(() => pwriteAsync(this.fd, data, done, data.length - done, pos));
        done += bytesWritten;
        if (bytesWritten > 0) delay = 5;
      } catch (err) {
        if (!this.stream || (err as { code?: string }).code !== "EAGAIN") {
          if (done > 0) break; // report the short write; the client treats it as an error
          throw err;
        }
        await sleep(delay, ctx.signal);
        delay = Math.min(delay * 2, 100);
      }
    }
    this.noteWrite();
    return done;
  }

  /** A write by an unprivileged user: clear the set-ID bits first, as write(2) would. */
  private async clearSetId(): Promise<void> {
    await this.io(async () => {
      const mode = Number((await fstatFd(this.fd, this.syncMeta)).mode);
      const kill = setIdBits(mode);
      if (kill !== 0) {
        await new Promise<void>((resolve, reject) =>
          fchmod(this.fd, mode & 0o7777 & ~kill, cb(resolve, reject)),
        );
      }
      this.mode = mode & ~kill;
    });
  }

  async fsync(datasync: boolean): Promise<void> {
    if (this.stream) return;
    await this.io(
      () =>
        new Promise<void>((resolve, reject) => (datasync ? fdatasync : fsync)(this.fd, cb(resolve, reject))),
    );
  }

  lock(req: LockRequest, ctx: RequestContext): Promise<number> {
    return Promise.resolve(this.locks.lock(this.qid.path, lockOwner(req, ctx), this, req));
  }

  getlock(req: GetLockRequest, ctx: RequestContext): Promise<GetLockResult> {
    return Promise.resolve(this.locks.getlock(this.qid.path, lockOwner(req, ctx), req));
  }

  /** The open descriptor (undefined once clunked). */
  get descriptor(): number | undefined {
    return this.closed ? undefined : this.fd;
  }

  async clunk(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose?.();
    this.locks.release(this);
    if (this.inflight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    await closeFd(this.fd, this.syncMeta);
  }
}

/** What a directory listing needs from its node. */
export interface DirSource {
  readonly qid: Qid;
  /** Names of the members (no "." or ".."), in the order the OS returns them. */
  names(): Promise<string[]>;
  /** Stats of the members as Tstat after a walk would return them, in order; vanished ones left out. */
  memberStats(names: readonly string[], ctx: RequestContext): Promise<Stat[]>;
  /** 9P2000.L dirents ("." and ".." included), in order; vanished ones left out. */
  memberDirents(entries: readonly { name: string; offset: bigint }[], ctx: RequestContext): Promise<Dirent[]>;
}

/** An open directory. */
export class DirIo implements OpenFile {
  readonly qid: Qid;
  readonly iounit = 0;
  private snapshot: string[] | undefined;

  /**
   * `locks`: the table Tlock/Tgetlock use (a directory open for reading can be locked, as flock(2)
   * allows). `handle`: the directory opened, kept until clunk, to recognise its removal.
   */
  constructor(
    private readonly src: DirSource,
    private readonly locks?: LockTable,
    private readonly handle?: FileHandle,
  ) {
    this.qid = src.qid;
  }

  /** Was the directory removed since it was opened? (Its name is gone and it has no links left.) */
  private async removed(err: unknown): Promise<boolean> {
    if ((err as { code?: string }).code !== "ENOENT" || !this.handle) return false;
    const st = await this.handle.stat().catch(() => undefined);
    return st !== undefined && st.nlink === 0;
  }

  list(ctx: RequestContext): Promise<Stat[]> {
    return this.src.names().then((names) => this.src.memberStats(names, ctx));
  }

  /**
   * Cookies are snapshot index + 1: ".", "..", then the members. Offset 0 takes a new snapshot.
   * Returns entries until their encoded size (24 + name bytes each) would exceed `count` (at least one).
   */
  async readdir(offset: bigint, count: number, ctx: RequestContext): Promise<Dirent[]> {
    if (offset === 0n || this.snapshot === undefined) {
      let names: string[];
      try {
        names = await this.src.names();
      } catch (err) {
        // A directory removed while open lists nothing, not even "." and "..", as getdents(2).
        if (!(await this.removed(err))) throw err;
        this.snapshot = [];
        return [];
      }
      this.snapshot = [".", "..", ...names];
    }
    const snap = this.snapshot;
    const start = offset <= 0n ? 0 : offset >= BigInt(snap.length) ? snap.length : Number(offset);
    const want: { name: string; offset: bigint }[] = [];
    let used = 0;
    for (let i = start; i < snap.length; i++) {
      const name = snap[i]!;
      const size = 24 + Buffer.byteLength(name);
      // The first entry is returned even when it does not fit: the server then answers "count too
      // small" instead of an empty reply that would read as the end of the directory (D3).
      if (used + size > count && want.length > 0) break;
      want.push({ name, offset: BigInt(i + 1) });
      used += size;
    }
    if (want.length === 0) return [];
    return this.src.memberDirents(want, ctx);
  }

  async fsync(): Promise<void> {}

  lock(req: LockRequest, ctx: RequestContext): Promise<number> {
    if (!this.locks) return Promise.reject(new FsError("operation not supported", Errno.EOPNOTSUPP));
    return Promise.resolve(this.locks.lock(this.qid.path, lockOwner(req, ctx), this, req));
  }

  getlock(req: GetLockRequest, ctx: RequestContext): Promise<GetLockResult> {
    if (!this.locks) return Promise.reject(new FsError("operation not supported", Errno.EOPNOTSUPP));
    return Promise.resolve(this.locks.getlock(this.qid.path, lockOwner(req, ctx), req));
  }

  async clunk(): Promise<void> {
    this.snapshot = undefined;
    this.locks?.release(this);
    await this.handle?.close();
  }
}

/** An "open" file that carries no I/O: a symbolic link or socket made by Tcreate. */
export class NoIo implements OpenFile {
  readonly iounit = 0;
  constructor(readonly qid: Qid) {}
}
