// Turns a byte stream cut into arbitrary chunks into whole 9P frames, checking each size field as soon as it is read.

import { ProtocolError } from "../errors.js";
import { asBuffer } from "./reader.js";

/** Default bound on a frame before version negotiation: 8 MiB. */
export const FRAMER_DEFAULT_MAX = 8 * 1024 * 1024;

/** Options of Framer. */
export interface FramerOptions {
  /** Largest acceptable frame, size field included (the msize once negotiated). */
  maxSize?: number;
  /**
   * Largest acceptable first frame, when smaller than maxSize: a server's first message is a
   * Tversion of a few dozen bytes, and until it is read nobody is known on the connection.
   */
  firstMaxSize?: number;
  /**
   * Where a frame that came in several chunks is put together: a buffer of at least `size` bytes
   * (its first `size` bytes become the frame), or undefined for a new one. A server reuses the
   * memory of large frames this way instead of faulting in fresh pages for each.
   */
  alloc?: (size: number) => Buffer | undefined;
}

/** Views of an incomplete frame kept before they are gathered into one buffer... */
const MAX_PIECES = 8;
/**
 * ...unless its pieces are this large on average: a big frame read from a socket in 64 KiB
 * chunks is then copied once, at its end, instead of into buffers that grow by doubling.
 */
const LARGE_PIECE = 4096;

/**
 * Accumulates chunks of a 9P byte stream and returns whole frames. A frame lying inside one chunk
 * is returned as a view of that chunk (no copy); a frame spanning chunks is copied once, when its
 * last byte arrives (its pieces are kept as views until then, so nothing is allocated from an
 * untrusted size field).
 *
 * As soon as 4 bytes of a size field are there it is checked: size < 7 throws
 * ProtocolError("bad-size"), size > maxSize throws ProtocolError("too-large"), before any of the
 * body is waited for. A byte stream cannot be resynchronised, so after a throw the framer is
 * unusable: every later push throws the same error (close the connection). Frames completed
 * earlier in the same push as the bad size field are lost with the throw.
 *
 * @example
 * const framer = new Framer({ maxSize: 8216 });
 * socket.on("data", (chunk) => { for (const frame of framer.push(chunk)) handle(decode(frame, dialect)); });
 */
export class Framer {
  /** Largest acceptable frame; set it to the msize after version negotiation. */
  maxSize: number;
  /** Pieces of the incomplete frame (views of earlier chunks). */
  private pieces: Buffer[] = [];
  /**
   * The incomplete frame gathered in one buffer (bytes 0..pending), once it came in more than
   * MAX_PIECES pieces smaller than LARGE_PIECE on average: a peer sending a frame a byte at a time
   * would otherwise make the server keep one small Buffer per byte, hundreds of bytes of memory
   * for each byte sent. It grows by doubling, never past the frame's size.
   */
  private gathered: Buffer | undefined;
  private pending = 0;
  /** Size of the incomplete frame, or -1 while fewer than 4 bytes of it are there. */
  private expect = -1;
  private failed: ProtocolError | undefined;
  private firstMaxSize: number | undefined;
  private readonly alloc: ((size: number) => Buffer | undefined) | undefined;

  constructor(opts?: FramerOptions) {
    this.maxSize = opts?.maxSize ?? FRAMER_DEFAULT_MAX;
    this.firstMaxSize = opts?.firstMaxSize;
    this.alloc = opts?.alloc;
  }

  /** Keeps `piece` as part of the incomplete frame of `expect` bytes. */
  private keep(piece: Buffer): void {
    if (
      this.gathered === undefined &&
      (this.pieces.length < MAX_PIECES ||
        this.pending + piece.length >= (this.pieces.length + 1) * LARGE_PIECE)
    ) {
      this.pieces.push(piece);
    } else {
      const need = this.pending + piece.length;
      let g = this.gathered;
      if (g === undefined || g.length < need) {
        const cap = Math.min(Math.max(need, 2 * (g?.length ?? 0), 4096), Math.max(this.expect, need));
        const grown = Buffer.allocUnsafe(cap);
        if (g) g.copy(grown, 0, 0, this.pending);
        else Buffer.concat(this.pieces, this.pending).copy(grown, 0);
        this.pieces = [];
        g = this.gathered = grown;
      }
      piece.copy(g, this.pending);
    }
    this.pending += piece.length;
  }

  /** The incomplete frame's bytes so far plus `last`, as one buffer of `total` bytes. */
  private complete(last: Buffer, total: number): Buffer {
    let frame: Buffer;
    if (this.gathered) {
      const g =
        this.gathered.length >= total
          ? this.gathered
          : Buffer.concat([this.gathered.subarray(0, this.pending)], total);
      last.copy(g, this.pending);
      frame = g.subarray(0, total);
    } else {
      this.pieces.push(last);
      const into = this.alloc?.(total);
      if (into !== undefined && into.length >= total) {
        let at = 0;
        for (const piece of this.pieces) at += piece.copy(into, at);
        frame = into.subarray(0, total);
      } else {
        frame = Buffer.concat(this.pieces, total);
      }
    }
    this.pieces = [];
    this.gathered = undefined;
    this.pending = 0;
    this.expect = -1;
    return frame;
  }

  /** Bytes held back: the start of a frame whose end has not arrived yet. */
  get buffered(): number {
    return this.pending;
  }

  /** Feeds a chunk; returns the frames it completes, in order. */
  push(chunk: Uint8Array): Buffer[] {
    if (this.failed !== undefined) throw this.failed;
    const c = asBuffer(chunk);
    const n = c.length;
    const out: Buffer[] = [];
    let pos = 0;
    if (this.pending > 0) {
      if (this.expect < 0) {
        // Fewer than 4 bytes of a size field so far: complete it into one small buffer.
        const k = Math.min(4 - this.pending, n);
        const head = Buffer.concat([...this.pieces, c.subarray(0, k)]);
        pos = k;
        this.pieces = [head];
        this.pending = head.length;
        if (head.length < 4) return out;
        this.expect = this.check(head.readUInt32LE(0));
      }
      const need = this.expect - this.pending;
      if (n - pos < need) {
        if (n > pos) this.keep(c.subarray(pos));
        return out;
      }
      const total = this.expect;
      out.push(this.complete(c.subarray(pos, pos + need), total));
      pos += need;
    }
    while (n - pos >= 4) {
      const size = this.check(c.readUInt32LE(pos));
      if (n - pos < size) {
        this.expect = size;
        this.keep(c.subarray(pos));
        return out;
      }
      out.push(c.subarray(pos, pos + size));
      pos += size;
    }
    if (pos < n) {
      this.pieces.push(c.subarray(pos));
      this.pending = n - pos;
    }
    return out;
  }

  private check(size: number): number {
    if (size < 7) this.fail(new ProtocolError("bad-size", `size field ${size} is smaller than 7`));
    const max = this.firstMaxSize !== undefined ? Math.min(this.firstMaxSize, this.maxSize) : this.maxSize;
    this.firstMaxSize = undefined;
    if (size > max) {
      this.fail(new ProtocolError("too-large", `message of ${size} bytes exceeds the limit of ${max}`));
    }
    return size;
  }

  private fail(err: ProtocolError): never {
    this.failed = err;
    throw err;
  }
}
