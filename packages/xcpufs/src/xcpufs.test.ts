import type { RequestContext } from "@clustermatic/ninep/server";
import { describe, expect, it } from "vitest";
import { UserContext } from "./xcpufs.js";

describe("UserContext", () => {
  it("carries the request's signal without reading it before it is asked for", () => {
    const ac = new AbortController();
    let reads = 0;
    const base = {
      user: { uname: "a", n_uname: 1, aname: "" },
      dialect: "9P2000.u",
      msize: 8192,
      iounit: 8168,
      connection: { id: 1, remote: "r", local: "l" },
      get signal() {
        reads++;
        return ac.signal;
      },
    } as unknown as RequestContext;
    const u = new UserContext(base, { uname: "b", n_uname: 2, aname: "" });
    expect(reads).toBe(0);
    expect(u.user.uname).toBe("b");
    expect([u.dialect, u.msize, u.iounit, u.connection]).toEqual([
      base.dialect,
      base.msize,
      base.iounit,
      base.connection,
    ]);
    expect(u.signal).toBe(ac.signal);
    expect(reads).toBe(1);
    // a spread copy (as a backend may make) still has it
    const copy = { ...u };
    expect(copy.signal).toBe(ac.signal);
    expect(copy.user.uname).toBe("b");
  });
});
