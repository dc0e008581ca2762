// Moves whole 9P frames over any Duplex: splits the byte stream with the codec's Framer, writes
// each message in one write, enforces msize both ways and reports socket failures as ConnectionError.

import type { Duplex } from "node:stream";
import { Framer } from "../codec/index.js";
import { ConnectionError, MessageTooLargeError, NinepError } from "../errors.js";

export interface FrameTransportHandlers {
  /** Called with each complete frame, in arrival order. */
  onFrame(frame: Buffer): void;
  /**
   * Called once when the stream ends for any reason: `undefined` after our own `end()`/`destroy()`,
   * a ConnectionError when the peer closed or the socket failed, a ProtocolError/MessageTooLargeError
   * when the peer sent something that cannot be framed.
   */
  onClose(err: Error | undefined): void;
  /**
   * Called after frames were handed to the stream (a bulk frame, or the small frames of one
   * tick) when more than its high-water mark is still queued (the peer is not reading): a cue to
   * stop producing until `drain()` resolves.
   */
  onBacklog?(): void;
}

export interface FrameTransportOptions {
  /** Largest frame accepted or sent (the msize). */
  maxSize: number;
  /** How the peer is named in error messages, e.g. "tcp!127.0.0.1!564". */
  label?: string;
  /** Largest first frame received, when smaller (a server's: the Tversion). */
  firstMaxSize?: number;
  /** Memory for frames received in several chunks (Framer's `alloc`). */
  frameAlloc?: (size: number) => Buffer | undefined;
}

/** Frames at least this large are written at once instead of being corked until the next tick. */
const UNCORKED_FRAME = 16 * 1024;

/** Frames over a Duplex. Knows nothing about tags or fids. */
export class FrameTransport {
  readonly stream: Duplex;
  readonly label: string;
  #framer: Framer;
  #maxSize: number;
  #handlers: FrameTransportHandlers;
  #closed = false;
  #ending = false;
  #corked = false;
  /** A message was sent in this tick (it is held; later ones in the same tick are corked). */
  #inTick = false;
  /** The first small frame of this tick, not yet handed to the stream, and its callback. */
  #held: Buffer | undefined;
  #heldDone: (() => void) | undefined;
  /** Frames of the chunk being handled that come after the current one. */
  #chunkLeft = 0;
  #endTick = (): void => {
    this.#inTick = false;
    if (this.#held === undefined && !this.#corked) return;
    if (this.#closed && this.#held !== undefined) {
      this.#held = this.#heldDone = undefined;
      return;
    }
    // The only frame of the tick leaves in one plain write (no cork), several in one writev.
    this.#flushTick();
    if (this.#handlers.onBacklog && this.backlogged && !this.#closed) this.#handlers.onBacklog();
  };

  /** Hands what this tick holds back (a held frame, or corked frames) to the stream now. */
  #flushTick(): void {
    if (this.#held !== undefined) {
      this.#writeHeld();
    } else if (this.#corked) {
      this.#corked = false;
      this.stream.uncork();
    }
  }

  /** Hands the held frame, if any, to the stream. */
  #writeHeld(): void {
    const frame = this.#held;
    if (frame === undefined) return;
    const done = this.#heldDone;
    this.#held = this.#heldDone = undefined;
    this.stream.write(frame, done);
  }

  constructor(stream: Duplex, handlers: FrameTransportHandlers, opts: FrameTransportOptions) {
    this.stream = stream;
    this.label = opts.label ?? "peer";
    this.#handlers = handlers;
    this.#maxSize = opts.maxSize;
    this.#framer = new Framer({
      maxSize: opts.maxSize,
      ...(opts.firstMaxSize !== undefined ? { firstMaxSize: opts.firstMaxSize } : {}),
      ...(opts.frameAlloc !== undefined ? { alloc: opts.frameAlloc } : {}),
    });
    stream.on("data", this.#onData);
    stream.on("error", this.#onError);
    stream.on("end", this.#onEnd);
    stream.on("close", this.#onStreamClose);
  }

  /** The msize in force; lowering it after version negotiation applies to the next frame. */
  get maxSize(): number {
    return this.#maxSize;
  }
  set maxSize(n: number) {
    this.#maxSize = n;
    this.#framer.maxSize = n;
  }

  /** True once the stream has ended or failed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True when the socket's write buffer is full; wait for `drain()` before sending more bulk data. */
  get needDrain(): boolean {
    return this.stream.writableNeedDrain;
  }

  /**
   * True when bytes are waiting in our write buffer because the peer is not taking them: more than
   * the stream's high-water mark is still queued after the frames of this tick were handed to
   * the OS. (While frames of the current tick are corked, nothing is counted as backlog.)
   */
  get backlogged(): boolean {
    if (this.#corked || this.#held !== undefined) return false;
    return this.stream.writableLength > this.stream.writableHighWaterMark;
  }

  /** Resolves when the write buffer has drained (or the stream closed). */
  drain(): Promise<void> {
    if (!this.stream.writableNeedDrain || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.stream.off("drain", done);
        this.stream.off("close", done);
        resolve();
      };
      this.stream.on("drain", done);
      this.stream.on("close", done);
    });
  }

  /**
   * Writes one whole message. Throws MessageTooLargeError past msize, ConnectionError when closed.
   * `more`: further messages are likely in this tick (other requests in flight), so a first
   * small frame is held until the tick ends and leaves with them in one write.
   */
  send(frame: Buffer, written?: () => void, more = false): void {
    if (this.#closed || this.#ending) throw new ConnectionError(`connection to ${this.label} is closed`);
    if (frame.length > this.#maxSize) throw new MessageTooLargeError(frame.length, this.#maxSize);
    if (frame.length >= UNCORKED_FRAME) {
      // A bulk frame (a large Rread or Twrite) goes out now, with whatever small frames were
      // corked before it: holding megabytes until the end of the tick only makes the peer wait.
      this.#flushTick();
      this.stream.write(frame, written);
      if (this.#handlers.onBacklog && this.backlogged) this.#handlers.onBacklog();
      return;
    }
    if (!this.#inTick) {
      this.#inTick = true;
      process.nextTick(this.#endTick);
      if (more || this.#chunkLeft > 0) {
        // More is coming (other requests in flight, or frames of the same chunk still to be
        // handled): hold it until the tick ends, then it goes out alone in one plain write (no
        // cork) or in one writev with the others.
        this.#held = frame;
        this.#heldDone = written;
        return;
      }
      // A lone reply goes out at once.
      this.stream.write(frame, written);
      if (this.#handlers.onBacklog && this.backlogged) this.#handlers.onBacklog();
      return;
    }
    // Further messages sent in the same tick (a pipelined window) leave together with the first
    // in one writev at the end of the tick: one system call for all of them.
    if (!this.#corked) {
      this.#corked = true;
      this.stream.cork();
      this.#writeHeld();
    }
    this.stream.write(frame, written);
  }

  /** Half-closes our side after pending writes; resolves when the stream has closed. */
  end(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#flushTick();
    this.#ending = true;
    return new Promise((resolve) => {
      this.stream.once("close", () => resolve());
      this.stream.end();
      // Some Duplexes never emit "close" after end() unless the peer ends too; don't wait forever.
      const t = setTimeout(() => this.destroy(), 2000);
      t.unref();
      this.stream.once("close", () => clearTimeout(t));
    });
  }

  /** Tears the stream down now. */
  destroy(): void {
    this.#ending = true;
    this.#held = this.#heldDone = undefined;
    this.#finish(undefined);
    this.stream.destroy();
  }

  #finish(err: Error | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    this.stream.off("data", this.#onData);
    this.#handlers.onClose(err);
  }

  #onData = (chunk: Buffer): void => {
    if (this.#closed) return;
    let frames: Buffer[];
    try {
      frames = this.#framer.push(chunk);
    } catch (err) {
      // No way to resynchronise a byte stream: give up on the connection.
      this.#finish(
        err instanceof NinepError ? err : new ConnectionError(`bad data from ${this.label}`, { cause: err }),
      );
      this.stream.destroy();
      return;
    }
    const n = frames.length;
    for (let i = 0; i < n; i++) {
      if (this.#closed) break;
      this.#chunkLeft = n - 1 - i;
      this.#handlers.onFrame(frames[i]!);
    }
    this.#chunkLeft = 0;
  };

  #onError = (err: Error): void => {
    const code = (err as NodeJS.ErrnoException).code;
    this.#finish(
      new ConnectionError(`connection to ${this.label} failed: ${code ?? err.message}`, { cause: err }),
    );
  };

  #onEnd = (): void => {
    if (this.#ending) this.#finish(undefined);
    else if (!this.#closed)
      this.#finish(withoutStack(() => new ConnectionError(`connection closed by ${this.label}`)));
    // Make sure our side goes away too.
    if (!this.stream.writableEnded) this.stream.end();
  };

  #onStreamClose = (): void => {
    if (this.#closed) return;
    if (this.#ending) this.#finish(undefined);
    else this.#finish(withoutStack(() => new ConnectionError(`connection to ${this.label} closed`)));
  };
}

/**
 * An error made in a socket event has no caller worth a stack trace (only Node's event plumbing),
 * and every disconnect makes one: capturing the trace was most of what a disconnect cost.
 */
function withoutStack<E extends Error>(make: () => E): E {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
