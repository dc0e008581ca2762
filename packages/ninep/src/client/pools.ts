// Tag and fid number pools for one client connection.

import { NOFID, NOTAG } from "../codec/index.js";

/** Hands out 16-bit tags, never NOTAG, none twice while in use. */
export class TagPool {
  #inUse = new Set<number>();
  #next = 0;
  #waiters: Array<{ resolve(tag: number): void; reject(err: unknown): void }> = [];

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

  /**
   * A free tag, waiting for one to be released if necessary. The wait ends with a rejection when
   * `signal` aborts (with its reason) or when `cancel` is called.
   */
  alloc(signal?: AbortSignal): Promise<number> {
    const tag = this.tryAlloc();
    if (tag !== undefined) return Promise.resolve(tag);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal?.reason);
      };
      const waiter = {
        resolve: (t: number) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(t);
        },
        reject: (err: unknown) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Ends every wait in `alloc` with `err`. */
  cancel(err: unknown): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(err);
  }

  free(tag: number): void {
    if (!this.#inUse.has(tag)) return;
    const waiter = this.#waiters.shift();
    if (waiter)
      waiter.resolve(tag); // hand it straight over; stays in use
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
