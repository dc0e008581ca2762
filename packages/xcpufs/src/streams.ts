// Standard streams of a session: output fan-out with backpressure, and input with bounded buffering.

import { constants as osConstants } from "node:os";
import type { Readable, Writable } from "node:stream";
import { Errno, FsError } from "@clustermatic/ninep/errors";
import { XcpuError } from "./errors.js";

interface PendingRead {
  key: object;
  count: number;
  resolve(data: Buffer): void;
  reject(err: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

const EMPTY = Buffer.alloc(0);

/**
 * One output stream (stdout or stderr) of a session.
 *
 * Data is pulled from the process's pipe only while somebody is reading: if nobody reads, the pipe
 * fills and the program blocks on write (memory stays bounded by the pipe and the stream's small
 * read buffer). When data is available it goes to every pending read, grouped by reader (`key`,
 * the open fid): each reader's oldest pending read receives the same piece; the piece leaves the
 * buffer once every waiting reader took it. A reader that arrives later does not see data already
 * delivered. After the program closes the stream every read returns 0 bytes (end of file).
 */
export class OutputStream {
  private src: Readable | undefined;
  private buf: Buffer = EMPTY;
  private eof = false;
  /** `close` was asked for (perhaps before the program started). */
  private closed = false;
  private readonly pending: PendingRead[] = [];

  /**
   * Connect the process's pipe. One closed before the program started is let go at once: its
   * writes fail (EPIPE, SIGPIPE) instead of filling a pipe nobody would ever read, which stopped
   * the program for good and its `wait` with it.
   */
  attach(src: Readable): void {
    if (this.closed) {
      src.destroy();
      return;
    }
    this.src = src;
    src.on("readable", () => this.pump());
    src.on("end", () => this.finish());
    src.on("close", () => this.finish());
    src.on("error", () => this.finish());
    this.pump();
  }

  /** True once the stream reached end of file. */
  get ended(): boolean {
    return this.eof && this.buf.length === 0;
  }

  /** Number of reads waiting for data. */
  get waiting(): number {
    return this.pending.length;
  }

  /** Read at most `count` bytes for reader `key`; resolves with an empty buffer at end of file. */
  read(key: object, count: number, signal?: AbortSignal): Promise<Buffer> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (count <= 0) return Promise.resolve(EMPTY);
    return new Promise<Buffer>((resolve, reject) => {
      const p: PendingRead = { key, count, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        p.onAbort = () => {
          const i = this.pending.indexOf(p);
          if (i >= 0) this.pending.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", p.onAbort, { once: true });
      }
      this.pending.push(p);
      this.pump();
    });
  }

  /** A reader went away (its fid was clunked): its pending reads end with no data. */
  cancel(key: object): void {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = this.pending[i] as PendingRead;
      if (p.key === key) {
        this.pending.splice(i, 1);
        this.settle(p, EMPTY);
      }
    }
  }

  /** Every waiting read ends now with no data (none is taken from the stream). */
  wakeAll(): void {
    for (const p of this.pending.splice(0)) this.settle(p, EMPTY);
  }

  /** Stop reading from the process (its writes then fail with EPIPE) and end the stream. */
  close(): void {
    this.closed = true;
    const src = this.src;
    this.src = undefined;
    src?.destroy();
    this.buf = EMPTY;
    this.finish();
  }

  /** End of file: called when the pipe ends, on `close`, or when the session goes away. */
  finish(): void {
    this.eof = true;
    this.pump();
  }

  private settle(p: PendingRead, data: Buffer): void {
    if (p.onAbort) p.signal?.removeEventListener("abort", p.onAbort);
    p.resolve(data);
  }

  private pump(): void {
    while (this.pending.length > 0) {
      if (this.buf.length === 0 && this.src && !this.eof) {
        const chunk = this.src.read() as Buffer | null;
        if (chunk && chunk.length > 0) this.buf = chunk;
      }
      if (this.buf.length === 0) {
        if (!this.eof) return;
        for (const p of this.pending.splice(0)) this.settle(p, EMPTY);
        return;
      }
      // The oldest pending read of each distinct reader.
      const firsts: PendingRead[] = [];
      const seen = new Set<object>();
      for (const p of this.pending) {
        if (!seen.has(p.key)) {
          seen.add(p.key);
          firsts.push(p);
        }
      }
      let n = this.buf.length;
      for (const p of firsts) n = Math.min(n, p.count);
      const piece = Buffer.from(this.buf.subarray(0, n));
      this.buf = n === this.buf.length ? EMPTY : this.buf.subarray(n);
      for (const p of firsts) {
        this.pending.splice(this.pending.indexOf(p), 1);
        this.settle(p, piece);
      }
    }
  }
}

interface PendingWrite {
  data: Buffer;
  /** The open file it came through (its clunk withdraws it), when given. */
  key?: object;
  /** Its reply has been sent (a write held before the program started is answered at once). */
  answered?: boolean;
  resolve(n: number): void;
  reject(err: unknown): void;
}

/** Bytes of stdin writes one session may hold waiting for its program's pipe. */
export const STDIN_QUEUE_LIMIT = 16 * 1024 * 1024;

/** Bytes accepted for stdin before the program starts (the capacity of a pipe). */
export const PRESTART_CAPACITY = 65536;

/** Bytes handed to the program's pipe (Node's buffer included) ahead of the program's reading. */
const SINK_AHEAD = 65536;

/**
 * The stdin of a session. Before the program starts, writes are kept (up to a pipe's capacity; a
 * write beyond that waits for the start). Afterwards a write is answered once all its bytes went
 * into the pipe, so a program that does not read its input stops the writer.
 *
 * Writes wait in the stream's own queue, not in Node's, so that a flushed write the program has
 * not taken yet is withdrawn and the flush answered at once; one already handed to the pipe is
 * answered as flushed too, though its bytes may still reach the program (like an interrupted
 * write to a pipe).
 */
export class InputStream {
  private sink: Writable | undefined;
  /** Waiting for the program to start, or for room in its pipe. */
  private readonly queue: PendingWrite[] = [];
  /** Bytes queued before the program started. */
  private heldBytes = 0;
  /** Handed to the pipe, waiting for it to take them. */
  private readonly inSink = new Set<PendingWrite>();
  /** Bytes of the writes in `queue` and `inSink`. */
  private waitingBytes = 0;
  private closed = false;
  private gone = false;

  /** Connect the process's stdin pipe and hand it everything written so far. */
  attach(sink: Writable): void {
    this.sink = sink;
    sink.on("error", () => this.detach());
    this.heldBytes = 0;
    this.pump();
  }

  /**
   * The program has exited (or never started): further writes are discarded, and the pipe is let
   * go (as Node does with a spawned child's stdin at its exit). A pipe the fork helper handed over
   * is xcpufs's own descriptor: nothing else closes it, and one was kept per job whose program
   * ended before `close stdin`.
   */
  detach(): void {
    this.gone = true;
    this.sink?.destroy();
    const waiting = [...this.queue, ...this.inSink];
    this.heldBytes = 0;
    this.waitingBytes = 0;
    this.queue.length = 0;
    this.inSink.clear();
    // Answered as written, like writes after the exit (README: the original's clients abort on
    // a failed stdin write, and a program may well end before reading all its input).
    for (const w of waiting) w.resolve(w.data.length);
  }

  /**
   * Queues `data` for the program; resolves once the pipe took all of it. `key` names the open
   * file it came through: `cancel(key)` (its clunk) withdraws what the pipe has not taken.
   */
  write(data: Uint8Array, signal?: AbortSignal, key?: object): Promise<number> {
    // EPIPE, as a write to the closed pipe got from the original (its text was "Broken pipe").
    if (this.closed) return Promise.reject(new XcpuError("stdin closed", osConstants.errno.EPIPE));
    if (this.gone || data.length === 0) return Promise.resolve(data.length);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.waitingBytes + data.length > STDIN_QUEUE_LIMIT) {
      // Held in memory until the program reads: a client that sends far ahead of it waits.
      return Promise.reject(
        new FsError(
          `stdin: ${this.waitingBytes} bytes already wait for the program to read; write again when earlier writes are answered`,
          Errno.EAGAIN,
        ),
      );
    }
    return new Promise<number>((resolve, reject) => {
      let settled = false;
      const w: PendingWrite = {
        data: Buffer.from(data),
        key,
        resolve: (n) => {
          if (settled) return;
          settled = true;
          w.answered = true;
          this.waitingBytes -= w.data.length;
          signal?.removeEventListener("abort", onAbort);
          resolve(n);
        },
        reject: (err) => {
          if (settled) return;
          settled = true;
          this.waitingBytes -= w.data.length;
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      this.waitingBytes += w.data.length;
      const onAbort = (): void => this.withdraw(w, signal?.reason);
      this.queue.push(w);
      if (this.sink) {
        signal?.addEventListener("abort", onAbort, { once: true });
        this.pump();
        return;
      }
      this.heldBytes += data.length;
      if (this.heldBytes <= PRESTART_CAPACITY) w.resolve(data.length);
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * The open file `key` was clunked: its writes still waiting for an answer are withdrawn (the
   * ones answered before the program started stay queued for it), or answered if the pipe has them.
   */
  cancel(key: object): void {
    for (const w of this.queue.filter((q) => q.key === key && !q.answered)) {
      this.withdraw(w, new FsError("file closed", Errno.EBADF));
    }
    // Already handed to the pipe: the program gets them when it reads; answered as written.
    for (const w of this.inSink) if (w.key === key) w.resolve(w.data.length);
  }

  /** `close stdin`: the program sees end of file once it has read what was written. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pump();
  }

  /** A flushed write: taken back if the pipe does not have it yet, and answered as flushed. */
  private withdraw(w: PendingWrite, reason: unknown): void {
    const queued = this.queue.indexOf(w);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      if (!this.sink) this.heldBytes -= w.data.length;
    }
    this.inSink.delete(w);
    w.reject(reason);
    this.pump();
  }

  /** Hand queued writes to the pipe while it has room; end it after the last one once closed. */
  private pump(): void {
    const sink = this.sink;
    if (!sink) return;
    if (this.gone || sink.destroyed || sink.writableEnded) {
      for (const w of this.queue.splice(0)) w.resolve(w.data.length);
      return;
    }
    while (this.queue.length > 0 && sink.writableLength < SINK_AHEAD) {
      const w = this.queue.shift() as PendingWrite;
      this.inSink.add(w);
      sink.write(w.data, () => {
        this.inSink.delete(w);
        w.resolve(w.data.length);
        this.pump();
      });
    }
    if (this.closed && this.queue.length === 0) sink.end();
  }
}
