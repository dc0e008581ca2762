// Path-level file access over one attach (the lib9pclient layer): whole-file reads and writes,
// stat, listing, remove, mkdir, and Node streams that pipeline several iounit-sized requests.

import { Readable, Writable } from "node:stream";
import { AT_REMOVEDIR, Dialect, DMDIR, L_O, MsgType, OREAD, OTRUNC, OWRITE } from "../codec/index.js";
import type { Stat } from "../codec/types.js";
import { RemoteError } from "../errors.js";
import { isDirQid } from "./attr.js";
import type { CallOptions, Client } from "./client.js";
import { WalkError } from "./errors.js";
import { type Fid, splitPath } from "./fid.js";

/** Requests kept in flight by streams and whole-file helpers unless told otherwise. */
export const DEFAULT_WINDOW = 8;

export interface ReadOptions extends CallOptions {
  /** Reads in flight at once (1 = strictly sequential). Default 8. */
  window?: number;
  /** Byte offset to start at. Default 0. */
  start?: number | bigint;
}

export interface WriteOptions extends CallOptions {
  /** Writes in flight at once. Default 8. */
  window?: number;
  /** Permissions for a file that has to be created. Default 0o644. */
  perm?: number;
}

/**
 * Yields a file's contents in order. When the file reports a length (a regular file), up to
 * `window` reads are in flight at offsets up to that length; past it, and for files that report
 * length 0 (synthetic files, whose reads may block), reads go one at a time until an empty read.
 * A short read is followed by a read of the missing part before anything later is yielded.
 */
export async function* readChunks(fid: Fid, length: bigint, opts: ReadOptions = {}): AsyncGenerator<Buffer> {
  const window = Math.max(1, opts.window ?? DEFAULT_WINDOW);
  const unit = BigInt(fid.iounit);
  type Seg = { off: bigint; len: number; p: Promise<Buffer> };
  const queue: Seg[] = [];
  let next = BigInt(opts.start ?? 0);
  const issue = (off: bigint, len: number): Seg => {
    const p = fid.read(off, len, opts);
    p.catch(() => {}); // observed when dequeued; avoids unhandled rejections for abandoned reads
    return { off, len, p };
  };
  try {
    for (;;) {
      // Pipelined up to the known length.
      while (queue.length < window && next < length) {
        const len = Number(length - next < unit ? length - next : unit);
        queue.push(issue(next, len));
        next += BigInt(len);
      }
      // Past it: one read at a time.
      if (queue.length === 0) {
        queue.push(issue(next, fid.iounit));
        next += unit;
      }
      const seg = queue.shift() as Seg;
      const data = await seg.p;
      if (data.length === 0) return;
      yield data;
      if (data.length < seg.len) {
        const off = seg.off + BigInt(data.length);
        if (queue.length === 0 && next === seg.off + BigInt(seg.len)) {
          next = off; // nothing issued after it: just continue from here
        } else {
          queue.unshift(issue(off, seg.len - data.length)); // fill the gap before later data
        }
      }
    }
  } finally {
    // Let reads still in flight finish before the caller clunks the fid.
    await Promise.allSettled(queue.map((s) => s.p));
  }
}

/** Keeps up to `window` Twrites in flight on an open fid, in order of offset. */
export class PipelinedWriter {
  readonly fid: Fid;
  #offset: bigint;
  #window: number;
  #inflight = new Set<Promise<void>>();
  #error: unknown;
  #opts: CallOptions;
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(fid: Fid, opts: { offset?: bigint; window?: number } & CallOptions = {}) {
    this.fid = fid;
    this.#offset = opts.offset ?? 0n;
    this.#window = Math.max(1, opts.window ?? DEFAULT_WINDOW);
    this.#opts = { signal: opts.signal, timeoutMs: opts.timeoutMs };
  }

  /** Bytes handed to `write` so far. */
  get position(): bigint {
    return this.#offset + BigInt(this.#pendingBytes);
  }

  /** Queues `data`; resolves when there is room for more (window not full). */
  async write(data: Uint8Array): Promise<void> {
    if (this.#error) return this.#fail();
    this.#pending.push(Buffer.from(data.buffer, data.byteOffset, data.length));
    this.#pendingBytes += data.length;
    const unit = this.fid.iounit;
    while (this.#pendingBytes >= unit) {
      await this.#send(this.#take(unit));
    }
  }

  /** Sends what is buffered and waits for every write to be answered. */
  async flush(): Promise<void> {
    if (this.#pendingBytes > 0) await this.#send(this.#take(this.#pendingBytes));
    await Promise.allSettled([...this.#inflight]);
    if (this.#error) throw this.#error;
  }

  #take(n: number): Buffer {
    const all = this.#pending.length === 1 ? (this.#pending[0] as Buffer) : Buffer.concat(this.#pending);
    const chunk = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#pending = rest.length > 0 ? [rest] : [];
    this.#pendingBytes = rest.length;
    return chunk;
  }

  /**
   * Throws the first error, once the writes still in flight have ended: the caller clunks the fid
   * next, and a Tclunk must not overtake writes a server may still be running on it.
   */
  async #fail(): Promise<never> {
    await Promise.allSettled([...this.#inflight]);
    throw this.#error;
  }

  async #send(chunk: Buffer): Promise<void> {
    while (this.#inflight.size >= this.#window) await Promise.race(this.#inflight);
    if (this.#error) return this.#fail();
    const off = this.#offset;
    this.#offset += BigInt(chunk.length);
    const p = this.fid.client
      .rpc({ type: MsgType.Twrite, fid: this.fid.num, offset: off, data: chunk }, this.#opts)
      .then((r) => {
        if (r.count !== chunk.length && !this.#error) {
          this.#error = new RemoteError(`short write: ${r.count} of ${chunk.length} bytes at offset ${off}`);
        }
      })
      .catch((err) => {
        if (!this.#error) this.#error = err;
      })
      .finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
  }
}

/**
 * A mounted tree: an attach root plus path-level helpers. Paths are relative to the root
 * ("a/b", "/a/b" and "a//b" are the same). Works in all three dialects.
 */
export class Fsys {
  readonly client: Client;
  readonly root: Fid;
  #ownsClient: boolean;

  constructor(client: Client, root: Fid, opts: { ownsClient?: boolean } = {}) {
    this.client = client;
    this.root = root;
    this.#ownsClient = opts.ownsClient ?? false;
  }

  get #dotL(): boolean {
    return this.client.dialect === Dialect.P2000L;
  }

  /** A new fid for `path` (clunk it when done). */
  walk(path: string, opts?: CallOptions): Promise<Fid> {
    return this.root.walk(splitPath(path), opts);
  }

  /** Walks to `path` and opens it with a Plan 9 mode (Tlopen in .L). */
  async open(path: string, mode: number = OREAD, opts?: CallOptions): Promise<Fid> {
    const fid = await this.walk(path, opts);
    try {
      await fid.open(mode, opts);
      return fid;
    } catch (err) {
      await fid.clunk().catch(() => {});
      throw err;
    }
  }

  /** Creates `path` (its parent must exist) and returns it open with `mode`. */
  async create(path: string, perm: number, mode: number = OREAD, opts?: CallOptions): Promise<Fid> {
    const names = splitPath(path);
    const name = names.pop();
    if (name === undefined) throw new RemoteError("file exists", 17);
    const fid = await this.root.walk(names, opts);
    try {
      await fid.create(name, perm, mode, "", opts);
      return fid;
    } catch (err) {
      await fid.clunk().catch(() => {});
      throw err;
    }
  }

  /** Opens `path` for writing, truncated; creates it (perm) when it does not exist. */
  async openForWrite(path: string, perm = 0o644, opts?: CallOptions): Promise<Fid> {
    const names = splitPath(path);
    try {
      return await this.open(path, OWRITE | OTRUNC, opts);
    } catch (err) {
      // Only the last name missing: create it. Some servers (nfs-ganesha) answer a walk of several
      // names that fails anywhere with an error for the first: the walk to the parent tells.
      const lastMissing =
        err instanceof WalkError &&
        (err.walked === names.length - 1 || (err.walked === 0 && names.length > 1));
      if (!lastMissing) throw err;
    }
    try {
      if (this.#dotL) {
        const dir = await this.root.walk(names.slice(0, -1), opts);
        try {
          await dir.lcreate(
            names[names.length - 1] as string,
            L_O.WRONLY | L_O.CREAT | L_O.TRUNC,
            perm,
            undefined,
            opts,
          );
          return dir;
        } catch (err) {
          await dir.clunk().catch(() => {});
          throw err;
        }
      }
      return await this.create(path, perm, OWRITE, opts);
    } catch (err) {
      // Someone created it meanwhile: open it after all.
      if (err instanceof RemoteError && (err.errno === 17 || /exist/.test(err.ename))) {
        return this.open(path, OWRITE | OTRUNC, opts);
      }
      throw err;
    }
  }

  /** The whole file, read with `window` requests in flight. */
  async readFile(path: string, opts: ReadOptions = {}): Promise<Buffer> {
    const fid = await this.open(path, OREAD, opts);
    try {
      const st = await fid.stat(opts);
      const parts: Buffer[] = [];
      for await (const chunk of readChunks(fid, st.length, opts)) parts.push(chunk);
      return Buffer.concat(parts);
    } finally {
      await fid.clunk();
    }
  }

  /** Writes `data` to `path`, creating it or truncating it first. */
  async writeFile(path: string, data: Uint8Array | string, opts: WriteOptions = {}): Promise<void> {
    const fid = await this.openForWrite(path, opts.perm, opts);
    try {
      const w = new PipelinedWriter(fid, opts);
      await w.write(typeof data === "string" ? Buffer.from(data) : data);
      await w.flush();
    } finally {
      await fid.clunk();
    }
  }

  /** Stat of `path` (in .L built from getattr). */
  async stat(path: string, opts?: CallOptions): Promise<Stat> {
    const fid = await this.walk(path, opts);
    try {
      return await fid.stat(opts);
    } finally {
      await fid.clunk();
    }
  }

  /** The entries of directory `path` as stats (no "." or ".."). */
  async readdir(path: string, opts?: CallOptions): Promise<Stat[]> {
    const fid = await this.walk(path, opts);
    try {
      return await fid.readdir(opts);
    } finally {
      await fid.clunk();
    }
  }

  /**
   * Removes `path` (a directory must be empty). In 9P2000.L by Tunlinkat in its directory, as
   * Linux does: some servers (nfs-ganesha) remove the wrong file on a Tremove of a fid walked
   * through several names.
   */
  async remove(path: string, opts?: CallOptions): Promise<void> {
    const names = splitPath(path);
    if (!this.#dotL || names.length === 0) {
      const fid = await this.walk(path, opts);
      await fid.remove(opts);
      return;
    }
    // The file itself (does it exist, is it a directory) and its directory, asked at once.
    const [target, dir] = await Promise.allSettled([
      this.root.walk(names, opts),
      this.root.walk(names.slice(0, -1), opts),
    ]);
    try {
      if (target.status === "rejected") throw target.reason;
      if (dir.status === "rejected") throw dir.reason;
      const flags = isDirQid(target.value.qid) ? AT_REMOVEDIR : 0;
      await dir.value.unlinkat(names[names.length - 1] as string, flags, opts);
    } finally {
      for (const f of [target, dir]) if (f.status === "fulfilled") await f.value.clunk().catch(() => {});
    }
  }

  /** Makes directory `path` (its parent must exist). `perm` is the permission bits, default 0o755. */
  async mkdir(path: string, perm = 0o755, opts?: CallOptions): Promise<void> {
    const names = splitPath(path);
    const name = names.pop();
    if (name === undefined) throw new RemoteError("file exists", 17);
    const dir = await this.root.walk(names, opts);
    try {
      if (this.#dotL) await dir.mkdir(name, perm & 0o7777, undefined, opts);
      else await dir.create(name, (DMDIR | (perm & 0o777)) >>> 0, OREAD, "", opts);
    } finally {
      await dir.clunk();
    }
  }

  /**
   * A Readable of the file's bytes, `window` reads in flight (see readChunks). The fid is opened
   * lazily and clunked when the stream ends or is destroyed.
   */
  createReadStream(path: string, opts: ReadOptions = {}): Readable {
    const self = this;
    async function* gen(): AsyncGenerator<Buffer> {
      const fid = await self.open(path, OREAD, opts);
      try {
        const st = await fid.stat(opts);
        yield* readChunks(fid, st.length, opts);
      } finally {
        await fid.clunk();
      }
    }
    return Readable.from(gen(), { objectMode: false });
  }

  /**
   * A Writable that creates or truncates `path` and writes with `window` Twrites in flight, each a
   * full iounit except the last. 'finish' fires after every write was answered and the fid clunked.
   */
  createWriteStream(path: string, opts: WriteOptions = {}): Writable {
    let fid: Fid | undefined;
    let writer: PipelinedWriter | undefined;
    return new Writable({
      construct: (cb) => {
        this.openForWrite(path, opts.perm, opts).then(
          (f) => {
            fid = f;
            writer = new PipelinedWriter(f, opts);
            cb();
          },
          (err) => cb(err),
        );
      },
      write: (chunk: Buffer, _enc, cb) => {
        (writer as PipelinedWriter).write(chunk).then(() => cb(), cb);
      },
      final: (cb) => {
        const w = writer as PipelinedWriter;
        w.flush()
          .then(() => fid?.clunk())
          .then(() => cb(), cb);
      },
      destroy: (err, cb) => {
        const f = fid;
        if (!f || f.clunked) return cb(err);
        const w = writer;
        (w ? w.flush().catch(() => {}) : Promise.resolve())
          .then(() => f.clunk())
          .catch(() => {})
          .then(() => cb(err));
      },
    });
  }

  /** Clunks the root; closes the client too when this Fsys made it (see `mount`). */
  async close(): Promise<void> {
    await this.root.clunk().catch(() => {});
    if (this.#ownsClient) await this.client.close();
  }
}
