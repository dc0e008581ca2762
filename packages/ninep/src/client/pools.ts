// Tag and fid number pools for one client connection.

import { NOFID, NOTAG } from "../codec/index.js";

/** Hands out 16-bit tags, never NOTAG, none twice while in use. */
export class TagPool {
  #inUse = new Set<number>();
  #next = 0;
  #waiters: Array<(tag: number) => void> = [];

  get size(): number {
    return this.#inUse.size;
  }

  /** A free tag now, or undefined when all 65535 are outstanding. */
  tryAlloc(): number | undefined {
    if (this.#inUse.size >= NOTAG) return undefined;
    while (this.#inUse.has(this.#next)) this.#next = (this.#next + 1) % NOTAG;
    const tag = this.#next;
    this.#next = (this.#next + 1) % NOTAG;
    this.#inUse.add(tag);
    return tag;
  }

  /** A free tag, waiting for one to be released if necessary. */
  alloc(): Promise<number> {
    const tag = this.tryAlloc();
    if (tag !== undefined) return Promise.resolve(tag);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  free(tag: number): void {
    if (!this.#inUse.has(tag)) return;
    const waiter = this.#waiters.shift();
    if (waiter)
      waiter(tag); // hand it straight over; stays in use
    else this.#inUse.delete(tag);
  }
}

/**
 * Hands out 32-bit fid numbers, never NOFID. Numbers come back through `free` once the server has
 * forgotten the fid (Rclunk, Rremove, or their Rerror). A number whose server-side state is unknown
 * (a partial walk: W6 says newfid was not created, some servers create it anyway) is simply never
 * freed, so it can never collide.
 */
export class FidPool {
  #free: number[] = [];
  #next = 0;
  #inUse = 0;

  get size(): number {
    return this.#inUse;
  }

  alloc(): number {
    this.#inUse++;
    const n = this.#free.pop();
    if (n !== undefined) return n;
    if (this.#next >= NOFID) throw new RangeError("fid numbers exhausted");
    return this.#next++;
  }

  free(fid: number): void {
    this.#inUse--;
    this.#free.push(fid);
  }

  /** Forget a number without reusing it. */
  quarantine(_fid: number): void {
    this.#inUse--;
  }
}
