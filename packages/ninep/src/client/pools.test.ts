import { describe, expect, it } from "vitest";
import { NOFID, NOTAG } from "../codec/index.js";
import { FidPool, TagPool } from "./pools.js";

describe("TagPool", () => {
  it("hands out 65535 distinct tags, never NOTAG, then makes callers wait for a free one", async () => {
    const pool = new TagPool();
    const seen = new Set<number>();
    for (let i = 0; i < NOTAG; i++) {
      const t = pool.tryAlloc();
      expect(t).toBeDefined();
      seen.add(t as number);
    }
    expect(seen.size).toBe(NOTAG);
    expect(seen.has(NOTAG)).toBe(false);
    expect(pool.tryAlloc()).toBeUndefined();
    let got: number | undefined;
    const waiting = pool.alloc().then((t) => {
      got = t;
    });
    await Promise.resolve();
    expect(got).toBeUndefined();
    pool.free(42);
    await waiting;
    expect(got).toBe(42);
    expect(pool.size).toBe(NOTAG); // 42 went straight to the waiter
  });

  it("does not reuse a tag until it is freed, and ignores double frees", () => {
    const pool = new TagPool();
    const a = pool.tryAlloc() as number;
    const b = pool.tryAlloc() as number;
    expect(a).not.toBe(b);
    pool.free(a);
    pool.free(a);
    expect(pool.size).toBe(1);
  });
});

describe("FidPool", () => {
  it("reuses freed numbers but never quarantined ones", () => {
    const pool = new FidPool();
    const a = pool.alloc();
    const b = pool.alloc();
    pool.quarantine(a);
    pool.free(b);
    const c = pool.alloc();
    expect(c).toBe(b);
    const d = pool.alloc();
    expect(d).not.toBe(a);
    expect(pool.size).toBe(2);
    expect([a, b, c, d]).not.toContain(NOFID);
  });
});
