import { describe, expect, it } from "vitest";
import { mapLimit } from "./map-limit.js";

describe("mapLimit", () => {
  it("keeps the order and at most `limit` calls in flight", async () => {
    let inFlight = 0;
    let most = 0;
    const out = await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 8 - n));
      inFlight--;
      return n * 10;
    });
    expect(out).toEqual([10, 20, 30, 40, 50, 60, 70]);
    expect(most).toBe(3);
  });

  it("after a rejection starts nothing more, and rejects only once the calls in flight have ended", async () => {
    const release: Array<() => void> = [];
    const started: number[] = [];
    const ended: number[] = [];
    let settled = false;
    const all = mapLimit([0, 1, 2, 3, 4, 5], 3, async (n) => {
      started.push(n);
      if (n === 0) throw new Error("first");
      await new Promise<void>((r) => release.push(r));
      ended.push(n);
      if (n === 1) throw new Error("second");
      return n;
    }).finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(started).toEqual([0, 1, 2]);
    expect(settled).toBe(false); // 1 and 2 are still running
    for (const r of release.splice(0)) r();
    await expect(all).rejects.toThrow("first");
    expect(ended).toEqual([1, 2]);
    expect(started).toEqual([0, 1, 2]);
  });
});
