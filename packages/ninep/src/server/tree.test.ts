import { describe, expect, it } from "vitest";
import { DMEXEC, DMREAD, DMWRITE, NONUNAME } from "../codec/constants.js";
import type { Identity } from "./backend.js";
import { accessBits, allocPath, hasPerm, SynthDir, sliceAt, staticFile } from "./tree.js";

const user = (uname: string, n_uname = NONUNAME): Identity => ({ uname, n_uname, aname: "" });

describe("hasPerm", () => {
  const f = staticFile("f", "x", { mode: 0o640, uid: "alice", gid: "staff" });

  it("requires every requested bit, not any of them", () => {
    // Original XCPU granted ORDWR if either read or write was allowed; that is wrong.
    expect(hasPerm(f, user("bob"), DMREAD)).toBe(false);
    expect(hasPerm(f, user("staff"), DMREAD)).toBe(true);
    expect(hasPerm(f, user("staff"), DMREAD | DMWRITE)).toBe(false);
    expect(hasPerm(f, user("alice"), DMREAD | DMWRITE)).toBe(true);
    expect(hasPerm(f, user("alice"), DMREAD | DMWRITE | DMEXEC)).toBe(false);
  });

  it("matches the owner by numeric id on 9P2000.u", () => {
    const g = staticFile("g", "x", { mode: 0o600, uid: "alice", n_uid: 1000 });
    expect(hasPerm(g, user("whoever", 1000), DMREAD)).toBe(true);
    expect(hasPerm(g, user("whoever", 1001), DMREAD)).toBe(false);
  });

  it("uses the policy inherited from the nearest ancestor", () => {
    const root = new SynthDir("/", {
      policy: {
        isSuperuser: (u) => u.uname === "admin",
        inGroup: (u, g) => g === "staff" && u.uname === "carol",
      },
    });
    const h = root.add(staticFile("h", "x", { mode: 0o040, uid: "alice", gid: "staff" }));
    expect(hasPerm(h, user("admin"), DMREAD | DMWRITE)).toBe(true);
    expect(hasPerm(h, user("carol"), DMREAD)).toBe(true);
    expect(hasPerm(h, user("dave"), DMREAD)).toBe(false);
  });
});

describe("tree helpers", () => {
  it("maps open modes to permission bits", () => {
    expect(accessBits(0)).toBe(DMREAD);
    expect(accessBits(1)).toBe(DMWRITE);
    expect(accessBits(2)).toBe(DMREAD | DMWRITE);
    expect(accessBits(3)).toBe(DMEXEC);
    expect(accessBits(0x10)).toBe(DMREAD | DMWRITE);
  });

  it("slices at offsets, empty past the end", () => {
    const b = Buffer.from("abcdef");
    expect(Buffer.from(sliceAt(b, 2n, 3)).toString()).toBe("cde");
    expect(sliceAt(b, 6n, 3).length).toBe(0);
    expect(sliceAt(b, 1n << 63n, 3).length).toBe(0);
  });

  it("allocates distinct qid paths and keeps qid type equal to the mode's top byte", async () => {
    const a = allocPath();
    expect(allocPath()).toBe(a + 1n);
    const d = new SynthDir("d");
    expect(d.qid.type).toBe(0x80);
    expect(d.qid.type).toBe(d.mode >>> 24);
  });

  it("refuses bad names and duplicate children", () => {
    expect(() => staticFile("a/b", "")).toThrow();
    expect(() => staticFile("..", "")).toThrow();
    const d = new SynthDir("d");
    d.add(staticFile("x", ""));
    expect(() => d.add(staticFile("x", ""))).toThrow("already exists");
  });
});
