// Reusable buffers for large frames: reply frames (Rread read in place) and received frames (a
// large Twrite put together from socket chunks, given back once the file has written its data).
// Allocating a fresh 64 KiB–1 MiB buffer per frame costs a malloc (an mmap plus page faults for
// the large ones) and adds external memory that makes V8 collect more often; a buffer that is
// done with can serve the next frame instead.

/** A bounded free list of buffers, by exact capacity. */
export class FramePool {
  readonly #free = new Map<number, Buffer[]>();
  #bytes = 0;

  /**
   * @param maxBytes most bytes kept for reuse across all capacities (beyond it, given-back
   *   buffers are left to the garbage collector)
   */
  constructor(readonly maxBytes: number) {}

  /** Bytes currently kept for reuse. */
  get kept(): number {
    return this.#bytes;
  }

  /** A buffer of exactly `capacity` bytes, reused when one is free. Its contents are arbitrary. */
  take(capacity: number): Buffer {
    const b = this.#free.get(capacity)?.pop();
    if (b) {
      this.#bytes -= capacity;
      return b;
    }
    return Buffer.allocUnsafeSlow(capacity);
  }

  /** Gives back a buffer obtained from take() once nothing refers to its memory any more. */
  give(buf: Buffer): void {
    const cap = buf.length;
    if (this.#bytes + cap > this.maxBytes) return;
    let list = this.#free.get(cap);
    if (!list) {
      list = [];
      this.#free.set(cap, list);
    }
    list.push(buf);
    this.#bytes += cap;
  }

  /** Drops every kept buffer. */
  clear(): void {
    this.#free.clear();
    this.#bytes = 0;
  }
}

/** Smallest reply frame worth taking from the pool (smaller ones come from Node's allocator). */
export const POOLED_FRAME_MIN = 16 * 1024;

/** Shared by every connection of the process: at most 32 MiB kept. */
export const replyFramePool = new FramePool(32 * 1024 * 1024);

/** Smallest received frame put together in a pooled buffer. */
export const POOLED_RECEIVE_MIN = 128 * 1024;

/** Received frames, shared by every connection of the process: at most 32 MiB kept. */
export const receiveFramePool = new FramePool(32 * 1024 * 1024);

/** The memory of every buffer receiveFrame() handed out (a frame's data is a view into one). */
const received = new WeakSet<ArrayBufferLike>();

/** A pooled buffer of at least `size` bytes (`capacity` when larger) for a received frame. */
export function receiveFrame(size: number, capacity: number): Buffer {
  const b = receiveFramePool.take(Math.max(size, capacity));
  received.add(b.buffer);
  return b;
}

/**
 * Gives back the received frame that `view` lies in, if it came from receiveFrame(); call it
 * once, when nothing refers to that frame's memory any more.
 */
export function releaseReceived(view: Uint8Array): void {
  if (received.has(view.buffer)) receiveFramePool.give(Buffer.from(view.buffer));
}
