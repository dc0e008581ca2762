// The passthrough backend never reaches outside its root: `..` chains, symlinks out of the tree
// (absolute and relative), loops, absolute names, NUL, and directories swapped for links after a
// walk. Runs the backend directly against a temp tree.

import * as fs from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Dialect,
  DMDIR,
  DMNAMEDPIPE,
  DMSYMLINK,
  OREAD,
  OTRUNC,
  OWRITE,
  QTDIR,
  QTSYMLINK,
  SETATTR,
} from "../../src/codec/constants.js";
import { FsError } from "../../src/errors.js";
import type { Node } from "../../src/server/backend.js";
import type { PassthroughOptions } from "../../src/server/passthrough.js";
import { checkName, ExportRoot } from "../../src/server/passthrough-path.js";
import { attach, ctx, readAll, setattr, tempDir, walk } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
let root: string;

beforeAll(() => {
  tmp = tempDir("pt-safety-");
  root = path.join(tmp.dir, "root");
  fs.mkdirSync(path.join(root, "sub", "deeper"), { recursive: true });
  fs.writeFileSync(path.join(root, "sub", "file"), "hello");
  fs.writeFileSync(path.join(tmp.dir, "secret.txt"), "secret");
  fs.symlinkSync("sub/file", path.join(root, "in-link"));
  fs.symlinkSync(path.join(root, "sub", "file"), path.join(root, "in-abs"));
  fs.symlinkSync("sub", path.join(root, "dir-link"));
  fs.symlinkSync("/etc", path.join(root, "etc-link"));
  fs.symlinkSync("/etc/passwd", path.join(root, "passwd-link"));
  fs.symlinkSync("../..", path.join(root, "up-link"));
  fs.symlinkSync("../secret.txt", path.join(root, "up-file"));
  fs.symlinkSync("../../secret.txt", path.join(root, "sub", "deep-up-file"));
  fs.symlinkSync("loop-b", path.join(root, "loop-a"));
  fs.symlinkSync("loop-a", path.join(root, "loop-b"));
  fs.symlinkSync("nowhere", path.join(root, "dangling"));
});
afterAll(() => tmp.cleanup());

async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FsError) return e.errno;
    const code = (e as { code?: string }).code;
    throw new Error(`expected FsError, got ${code ?? e}`);
  }
  throw new Error("expected an error");
}

/** Node errors are mapped by the server; tests accept FsError or a Node error code. */
async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FsError) return `errno:${e.errno}`;
    return String((e as { code?: string }).code);
  }
  throw new Error("expected an error");
}

describe("checkName", () => {
  it.each([
    ["", 22],
    ["a/b", 22],
    ["/etc", 22],
    ["a\0b", 22],
    [".", 17],
    ["..", 17],
    ["x".repeat(256), 36],
  ])("refuses %j", (name, errno) => {
    expect(() => checkName(name)).toThrowError(FsError);
    try {
      checkName(name);
    } catch (e) {
      expect((e as FsError).errno).toBe(errno);
    }
  });
  it("accepts ordinary names and dots when walking", () => {
    expect(() => checkName("a b.c")).not.toThrow();
    expect(() => checkName("..", true)).not.toThrow();
  });
});

describe("ExportRoot", () => {
  it("contains only the root and below", async () => {
    const er = await ExportRoot.open(root);
    expect(er.contains(er.real)).toBe(true);
    expect(er.contains(`${er.real}/x`)).toBe(true);
    expect(er.contains(`${er.real}x`)).toBe(false);
    expect(er.contains(path.dirname(er.real))).toBe(false);
    expect(() => er.relOf("/etc")).toThrowError(FsError);
  });
  it("refuses a root that is not a directory", async () => {
    await expect(ExportRoot.open(path.join(root, "sub", "file"))).rejects.toThrow(/not a directory/);
  });
});

for (const dialect of [Dialect.P2000, Dialect.P2000u, Dialect.P2000L]) {
  describe(`walks stay inside the root (${dialect})`, () => {
    const c = ctx(dialect);
    let r: Node;
    beforeAll(async () => {
      r = await attach(root, c);
    });

    it("`..` below the root climbs one level, never above", async () => {
      const deeper = await walk(r, "sub/deeper", c);
      const up = await walk(deeper, "..", c);
      expect(up.qid.path).toBe((await walk(r, "sub", c)).qid.path);
      const top = await walk(up, "..", c);
      expect(top.qid.path).toBe(r.qid.path);
      // The backend's own `..` of the root is the root (the server normally answers it itself).
      let cur = r;
      for (let i = 0; i < 20; i++) cur = await cur.walk1!("..", c);
      expect(cur.qid.path).toBe(r.qid.path);
      expect((await cur.stat(c)).name).toBe("/");
      const chain = await walk(r, "sub/deeper/../../../../..", c);
      expect(chain.qid.path).toBe(r.qid.path);
    });

    it("refuses absolute and NUL names", async () => {
      expect(await errnoOf(r.walk1!("/etc", c))).toBe(22);
      expect(await errnoOf(r.walk1!("sub/../..", c))).toBe(22);
      expect(await errnoOf(r.walk1!("a\0b", c))).toBe(22);
      expect(await failure(r.walk1!("missing", c))).toBe("ENOENT");
    });

    it("a link to /etc is visible but cannot be opened or walked through", async () => {
      const l = await walk(r, "etc-link", c);
      expect(l.qid.type & QTDIR).toBe(0);
      if (dialect !== Dialect.P2000) {
        expect(l.qid.type).toBe(QTSYMLINK);
        const st = await l.stat(c);
        expect(st.mode & DMSYMLINK).toBeTruthy();
        expect(st.extension).toBe("/etc");
      }
      expect(await errnoOf(l.open!(OREAD, c))).toBe(13);
      expect(await errnoOf(l.lopen!(0, c))).toBe(13);
      expect(await failure(l.walk1!("passwd", c))).toBe("errno:20");
      const pw = await walk(r, "passwd-link", c);
      expect(await errnoOf(pw.open!(OREAD, c))).toBe(13);
    });

    it("relative links out of the tree (../.., ../secret) cannot be opened", async () => {
      for (const name of ["up-link", "up-file", "sub/deep-up-file"]) {
        const l = await walk(r, name, c);
        expect(l.qid.type & QTDIR).toBe(0);
        expect(await errnoOf(l.open!(OREAD, c))).toBe(13);
      }
      const upLink = await walk(r, "up-link", c);
      expect(await failure(upLink.walk1!("secret.txt", c))).toBe("errno:20");
    });

    it("link loops and dangling links fail cleanly", async () => {
      const a = await walk(r, "loop-a", c);
      expect(await failure(a.open!(OREAD, c))).toBe("ELOOP");
      const d = await walk(r, "dangling", c);
      expect(await failure(d.open!(OREAD, c))).toBe("ENOENT");
    });

    it("links inside the tree (relative and absolute) open their target", async () => {
      for (const name of ["in-link", "in-abs"]) {
        const l = await walk(r, name, c);
        const f = await l.open!(OREAD, c);
        expect((await readAll(f, c)).toString()).toBe("hello");
        await f.clunk?.(c);
      }
    });

    if (dialect === Dialect.P2000) {
      it("plain 9P2000: removing or renaming a followed link acts on the link, not its target", async () => {
        const t = tempDir("pt-via-");
        try {
          fs.writeFileSync(path.join(t.dir, "target"), "keep me");
          fs.symlinkSync("target", path.join(t.dir, "l1"));
          fs.symlinkSync("target", path.join(t.dir, "l2"));
          const tr = await attach(t.dir, c);
          const l1 = await walk(tr, "l1", c);
          expect((await l1.stat(c)).length).toBe(7n);
          await l1.wstat!({ name: "renamed" }, c);
          expect(fs.readlinkSync(path.join(t.dir, "renamed"))).toBe("target");
          expect((await l1.stat(c)).name).toBe("renamed");
          await l1.remove!(c);
          expect(fs.existsSync(path.join(t.dir, "renamed"))).toBe(false);
          await (await walk(tr, "l2", c)).remove!(c);
          expect(fs.readdirSync(t.dir)).toEqual(["target"]);
          expect(fs.readFileSync(path.join(t.dir, "target"), "utf8")).toBe("keep me");
        } finally {
          t.cleanup();
        }
      });
    }

    if (dialect === Dialect.P2000) {
      it("plain 9P2000 walks through links inside the tree", async () => {
        const f = await walk(r, "dir-link/file", c);
        expect((await f.stat(c)).length).toBe(5n);
        const l = await walk(r, "in-link", c);
        const st = await l.stat(c);
        expect(st.name).toBe("in-link");
        expect(st.qid.path).toBe((await walk(r, "sub/file", c)).qid.path);
      });
    } else {
      it("9P2000.u/.L do not walk through links", async () => {
        expect(await failure(walk(r, "dir-link/file", c))).toBe("errno:20");
      });
    }
  });
}

/** EACCES (a swapped directory above) or ENOTDIR (the directory itself is now a link). */
const refused = (errno: number) => errno === 13 || errno === 20;

describe("a directory swapped for a link after the walk", () => {
  it("is refused instead of followed (the swapped directory itself)", async () => {
    const t = tempDir("pt-swap-");
    try {
      const rt = path.join(t.dir, "root");
      fs.mkdirSync(path.join(rt, "d"), { recursive: true });
      fs.writeFileSync(path.join(rt, "d", "passwd"), "inside");
      const c = ctx(Dialect.P2000u);
      const r = await attach(rt, c);
      const d = await walk(r, "d", c);
      const f = await walk(d, "passwd", c);
      // Swap d for a link to /etc: the walked fids must not reach /etc/passwd.
      fs.renameSync(path.join(rt, "d"), path.join(rt, "d.old"));
      fs.symlinkSync("/etc", path.join(rt, "d"));
      expect(await errnoOf(f.open!(OREAD, c))).toBe(20);
      expect(await errnoOf(f.stat(c))).toBe(20);
      expect(await errnoOf(d.walk1!("passwd", c))).toBe(20);
      expect(await errnoOf(f.remove!(c))).toBe(20);
      expect(fs.existsSync("/etc/passwd")).toBe(true);
    } finally {
      t.cleanup();
    }
  });

  it("is refused instead of followed (a directory further up)", async () => {
    const t = tempDir("pt-swap2-");
    try {
      const rt = path.join(t.dir, "root");
      fs.mkdirSync(path.join(rt, "a", "d"), { recursive: true });
      fs.writeFileSync(path.join(rt, "a", "d", "f"), "inside");
      fs.mkdirSync(path.join(t.dir, "outside", "d"), { recursive: true });
      fs.writeFileSync(path.join(t.dir, "outside", "d", "f"), "outside secret");
      const c = ctx(Dialect.P2000L);
      const r = await attach(rt, c);
      const d = await walk(r, "a/d", c);
      const f = await walk(d, "f", c);
      fs.renameSync(path.join(rt, "a"), path.join(rt, "a.old"));
      fs.symlinkSync(path.join(t.dir, "outside"), path.join(rt, "a"));
      expect(await errnoOf(f.lopen!(0, c))).toSatisfy(refused);
      // getattr answers a success synchronously, a failure as a rejected promise.
      expect(await errnoOf(Promise.resolve(f.getattr!(0x7ffn, c)))).toSatisfy(refused);
      expect(await errnoOf(d.walk1!("f", c))).toSatisfy(refused);
      expect(await errnoOf(d.unlinkat!("f", 0, c))).toSatisfy(refused);
      expect(await errnoOf(d.lcreate!("new", 0o102, 0o644, 0xffffffff, c))).toSatisfy(refused);
      expect(await errnoOf(f.setattr!(setattr({ valid: 8 }), c))).toSatisfy(refused);
      expect(fs.readFileSync(path.join(t.dir, "outside", "d", "f"), "utf8")).toBe("outside secret");
      expect(fs.readdirSync(path.join(t.dir, "outside", "d"))).toEqual(["f"]);
    } finally {
      t.cleanup();
    }
  });
});

describe("create refuses names that would escape", () => {
  it("refuses ., .., slashes and NUL", async () => {
    const t = tempDir("pt-create-");
    try {
      const c = ctx(Dialect.P2000u);
      const r = await attach(t.dir, c);
      for (const name of ["..", "."]) {
        expect(await errnoOf(r.create!({ name, perm: 0o644, mode: OREAD, extension: "" }, c))).toBe(17);
        expect(await errnoOf(r.mkdir!(name, 0o755, 0xffffffff, c))).toBe(17);
      }
      for (const name of ["../x", "/tmp/x", "a\0b"]) {
        expect(await errnoOf(r.create!({ name, perm: 0o644, mode: OREAD, extension: "" }, c))).toBe(22);
        expect(await errnoOf(r.lcreate!(name, 0o102, 0o644, 0xffffffff, c))).toBe(22);
        expect(await errnoOf(r.symlink!(name, "x", 0xffffffff, c))).toBe(22);
        expect(await errnoOf(r.renameat!("nothing", r, name, c))).toBe(22);
      }
      expect(fs.readdirSync(t.dir)).toEqual([]);
    } finally {
      t.cleanup();
    }
  });

  it("aname cannot climb out", async () => {
    const c = ctx(Dialect.P2000L);
    const { passthrough } = await import("../../src/server/passthrough.js");
    const be = passthrough(root);
    await expect(be.attach({ ...c.user, aname: "../" }, c)).rejects.toThrowError(FsError);
    await expect(be.attach({ ...c.user, aname: "etc-link" }, c)).rejects.toThrowError(FsError);
    const sub = await be.attach({ ...c.user, aname: "/sub" }, c);
    expect((await sub.stat(c)).qid.path).toBe(
      (await walk(await be.attach({ ...c.user }, c), "sub", c)).qid.path,
    );
  });
});

// A local user who may write in the tree swaps their own file for a link to someone else's just
// as the server (root) changes the file for them: chmod, chown, truncate and utimes follow a final
// link, so each must reach the file that was checked, or nothing. The swap is made at the worst
// moment, inside the server's own call, by wrapping that call.
describe.skipIf(process.getuid?.() !== 0)("a file swapped for a link while it is being changed", () => {
  const fsPromises = createRequire(import.meta.url)("node:fs/promises") as Record<string, unknown>;

  async function swappedDuring(
    call: "chmod" | "truncate" | "chown" | "utimes",
    dialect: Dialect,
    change: (f: Node, c: ReturnType<typeof ctx>) => Promise<unknown>,
  ): Promise<void> {
    const t = tempDir("pt-swapcall-");
    const real = fsPromises[call] as (...a: unknown[]) => Promise<unknown>;
    try {
      const rt = path.join(t.dir, "root");
      fs.mkdirSync(rt);
      fs.chownSync(rt, 1000, 1000);
      const secret = path.join(t.dir, "secret");
      fs.writeFileSync(secret, "root only");
      fs.chmodSync(secret, 0o600);
      const f = path.join(rt, "f");
      fs.writeFileSync(f, "mine");
      fs.chownSync(f, 1000, 1000);
      const c = ctx(dialect, "u", 1000);
      const node = await walk(await attach(rt, c, { permissions: "user" }), "f", c);
      const before = fs.statSync(secret);
      fsPromises[call] = (...a: unknown[]) => {
        if (fs.lstatSync(f).isFile()) {
          fs.renameSync(f, path.join(rt, "f.old"));
          fs.symlinkSync(secret, f);
        }
        return real(...a);
      };
      syncBuiltinESMExports();
      await change(node, c).catch(() => {});
      const after = fs.statSync(secret);
      expect([after.mode, after.uid, after.gid, after.size, after.mtimeMs]).toEqual([
        before.mode,
        before.uid,
        before.gid,
        before.size,
        before.mtimeMs,
      ]);
    } finally {
      fsPromises[call] = real;
      syncBuiltinESMExports();
      t.cleanup();
    }
  }

  for (const [dialect, name] of [
    [Dialect.P2000L, "9P2000.L setattr"],
    [Dialect.P2000u, "9P2000.u wstat"],
  ] as const) {
    const L = dialect === Dialect.P2000L;
    it(`${name}: mode`, () =>
      swappedDuring("chmod", dialect, (f, c) =>
        L ? f.setattr!(setattr({ valid: SETATTR.MODE, mode: 0o666 }), c) : f.wstat!({ mode: 0o666 }, c),
      ));
    it(`${name}: size`, () =>
      swappedDuring("truncate", dialect, (f, c) =>
        L ? f.setattr!(setattr({ valid: SETATTR.SIZE, size: 0n }), c) : f.wstat!({ length: 0n }, c),
      ));
    it(`${name}: group`, () =>
      swappedDuring("chown", dialect, (f, c) =>
        L ? f.setattr!(setattr({ valid: SETATTR.GID, gid: 1000 }), c) : f.wstat!({ n_gid: 1000 }, c),
      ));
    it(`${name}: times`, () =>
      swappedDuring("utimes", dialect, (f, c) =>
        L
          ? f.setattr!(
              setattr({ valid: SETATTR.MTIME | SETATTR.MTIME_SET, mtime_sec: 1000n, mtime_nsec: 0n }),
              c,
            )
          : f.wstat!({ mtime: 1000 }, c),
      ));
  }
});

// The same for a directory of the path: the server removes, renames or makes a name in a directory
// it checked, and a local user swaps that directory for a link to another one inside the call.
describe("a directory swapped for a link during a remove, rename or create", () => {
  const req = createRequire(import.meta.url);
  const modules = {
    "fs/promises": req("node:fs/promises") as Record<string, unknown>,
    fs: req("node:fs") as Record<string, unknown>,
    child_process: req("node:child_process") as Record<string, unknown>,
  };

  async function swappedDuring(
    where: [keyof typeof modules, string],
    dialect: Dialect,
    change: (d: Node, f: Node, c: ReturnType<typeof ctx>) => Promise<unknown>,
    opts: PassthroughOptions = {},
  ): Promise<void> {
    const t = tempDir("pt-swapdir-");
    const [mod, call] = where;
    const m = modules[mod];
    const real = m[call] as (...a: unknown[]) => unknown;
    try {
      const rt = path.join(t.dir, "root");
      const outside = path.join(t.dir, "outside");
      fs.mkdirSync(path.join(rt, "d"), { recursive: true });
      fs.mkdirSync(outside);
      fs.writeFileSync(path.join(rt, "d", "f"), "inside");
      fs.writeFileSync(path.join(outside, "f"), "outside");
      const c = ctx(dialect);
      const d = await walk(await attach(rt, c, opts), "d", c);
      const f = await walk(d, "f", c);
      const dLink = path.join(rt, "d");
      // What the outside directory holds right after the server's call (a failure path may tidy
      // up afterwards: the entry must never have been made there at all).
      let seen: string[] | undefined;
      const look = () => {
        seen = fs.readdirSync(outside).sort();
      };
      m[call] = (...a: unknown[]) => {
        if (!fs.lstatSync(dLink).isSymbolicLink()) {
          fs.renameSync(dLink, path.join(rt, "d.old"));
          fs.symlinkSync(outside, dLink);
        }
        const cb = a.at(-1);
        if (typeof cb === "function") {
          a[a.length - 1] = (...r: unknown[]) => {
            look();
            return cb(...r);
          };
        }
        const out = real(...a);
        if (out instanceof Promise) return out.finally(look);
        look();
        return out;
      };
      syncBuiltinESMExports();
      await change(d, f, c).catch(() => {});
      m[call] = real;
      syncBuiltinESMExports();
      expect(seen).toEqual(["f"]);
      expect(fs.readdirSync(outside)).toEqual(["f"]);
      expect(fs.readFileSync(path.join(outside, "f"), "utf8")).toBe("outside");
    } finally {
      m[call] = real;
      syncBuiltinESMExports();
      t.cleanup();
    }
  }

  const U = Dialect.P2000u;
  const L = Dialect.P2000L;
  it("9P2000 remove", () => swappedDuring(["fs/promises", "unlink"], U, (_d, f, c) => f.remove!(c)));
  it("9P2000 wstat rename", () =>
    swappedDuring(["fs/promises", "rename"], U, (_d, f, c) => f.wstat!({ name: "g" }, c)));
  // (a file is opened through the thread pool here: fs.open can be wrapped, openSync cannot)
  it("9P2000 create of a file", () =>
    swappedDuring(
      ["fs", "open"],
      U,
      (d, _f, c) => d.create!({ name: "new", perm: 0o644, mode: 1, extension: "" } as never, c),
      { syncIo: false },
    ));
  it("9P2000 create of a directory", () =>
    swappedDuring(["fs/promises", "mkdir"], U, (d, _f, c) =>
      d.create!({ name: "new", perm: DMDIR | 0o755, mode: 0, extension: "" } as never, c),
    ));
  it("9P2000.u create of a FIFO", () =>
    swappedDuring(["child_process", "execFile"], U, (d, _f, c) =>
      d.create!({ name: "new", perm: DMNAMEDPIPE | 0o644, mode: 0, extension: "" } as never, c),
    ));
  it("9P2000.L unlinkat", () =>
    swappedDuring(["fs/promises", "unlink"], L, (d, _f, c) => d.unlinkat!("f", 0, c)));
  it("9P2000.L renameat", () =>
    swappedDuring(["fs/promises", "rename"], L, (d, _f, c) => d.renameat!("f", d, "g", c)));
  it("9P2000.L rename", () => swappedDuring(["fs/promises", "rename"], L, (d, f, c) => f.rename!(d, "g", c)));
  it("9P2000.L lcreate", () =>
    swappedDuring(["fs", "open"], L, (d, _f, c) => d.lcreate!("new", 0o102, 0o644, 0xffffffff, c), {
      syncIo: false,
    }));
  it("9P2000.L mkdir", () =>
    swappedDuring(["fs/promises", "mkdir"], L, (d, _f, c) => d.mkdir!("new", 0o755, 0, c)));
  it("9P2000.L symlink", () =>
    swappedDuring(["fs/promises", "symlink"], L, (d, _f, c) => d.symlink!("new", "f", 0, c)));
  it("9P2000 open with OTRUNC", () =>
    swappedDuring(["fs", "open"], U, (_d, f, c) => f.open!(OWRITE | OTRUNC, c), { syncIo: false }));
  it("9P2000.L lopen with O_TRUNC", () =>
    swappedDuring(["fs", "open"], L, (_d, f, c) => f.lopen!(0o1001, c), { syncIo: false }));
  it("9P2000.L link", () => swappedDuring(["fs/promises", "link"], L, (d, f, c) => d.link!(f, "new", c)));
  it("9P2000.L mknod of a FIFO", () =>
    swappedDuring(["child_process", "execFile"], L, (d, _f, c) => d.mknod!("new", 0o10644, 0, 0, 0, c)));
});
