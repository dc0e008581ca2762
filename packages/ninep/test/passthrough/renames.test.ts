// A fid stays on its file when the file is renamed or unlinked through 9P, as a kernel client
// expects of the fids it caches (a shell's working directory, an open descriptor): a rename moves
// every fid at or below the old name, on every connection, and an unlinked file that is still open
// is read and changed through its descriptor (fstat, ftruncate, fchmod). Over real sockets.

import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Request } from "../../src/client/index.js";
import { Client } from "../../src/client/index.js";
import { GETATTR, L_O, MsgType, NOFID, SETATTR } from "../../src/codec/constants.js";
import { dontTouchStat } from "../../src/codec/index.js";
import type { Rgetattr, RMessage, Rread, Rstat } from "../../src/codec/types.js";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { setattr, tempDir } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
let server: Server;
let address: string;

beforeAll(async () => {
  tmp = tempDir("pt-renames-");
  server = new Server({ backend: passthrough(tmp.dir) });
  const a = await server.listen("tcp!127.0.0.1!0");
  if (a.network !== "tcp") throw new Error("tcp expected");
  address = `tcp!127.0.0.1!${a.port}`;
});

afterAll(async () => {
  await server?.close();
  tmp?.cleanup();
});

/** A 9P2000.L (or .u) connection attached to the export as fid 1, with raw requests. */
async function session(version: "9P2000.L" | "9P2000.u" = "9P2000.L") {
  const c = await Client.connect(address, { version, msize: 65536 });
  const rpc = async <T extends RMessage = RMessage>(m: Request) => (await c.rpc(m)) as T;
  await rpc({ type: MsgType.Tattach, fid: 1, afid: NOFID, uname: "root", aname: "", n_uname: 0 });
  const walk = (fid: number, newfid: number, ...wname: string[]) =>
    rpc({ type: MsgType.Twalk, fid, newfid, wname });
  const getattr = (fid: number) =>
    rpc<Rgetattr>({
      type: MsgType.Tgetattr,
      fid,
      request_mask: GETATTR.BASIC,
    });
  const read = async (fid: number) =>
    Buffer.from((await rpc<Rread>({ type: MsgType.Tread, fid, offset: 0n, count: 4096 })).data).toString();
  return { c, rpc, walk, getattr, read };
}

/** A fresh directory of the export for one test, made on the host. */
function area(name: string): string {
  const d = path.join(tmp.dir, name);
  fs.mkdirSync(d);
  return d;
}

describe("fids follow renames made through 9P", () => {
  it("Trenameat of a directory: fids inside it (walked, open) keep working, on another connection too", async () => {
    const d = area("ra");
    fs.mkdirSync(path.join(d, "old"));
    fs.writeFileSync(path.join(d, "old", "f"), "inside\n");
    const a = await session();
    const b = await session();
    try {
      await a.walk(1, 10, "ra");
      await a.walk(1, 11, "ra", "old"); // a working directory
      await a.walk(1, 12, "ra", "old", "f");
      await a.rpc({ type: MsgType.Tlopen, fid: 12, flags: L_O.RDONLY }); // an open file
      await b.walk(1, 20, "ra", "old", "f"); // the other connection's fid

      await a.rpc({ type: MsgType.Trenameat, olddirfid: 10, oldname: "old", newdirfid: 10, newname: "new" });
      expect(fs.readdirSync(d)).toEqual(["new"]);

      // walks from the moved directory's fid find what is in it now
      await a.walk(11, 13, "f");
      expect((await a.getattr(13)).size).toBe(7n);
      await a.rpc({
        type: MsgType.Tlcreate,
        fid: 11,
        name: "made-after",
        flags: L_O.RDWR,
        mode: 0o644,
        gid: NOFID,
      });
      expect(fs.existsSync(path.join(d, "new", "made-after"))).toBe(true);
      expect((await a.getattr(12)).size).toBe(7n);
      expect(await a.read(12)).toBe("inside\n");
      // the other connection's fid moved too
      await b.rpc({ type: MsgType.Tsetattr, fid: 20, ...setattr({ valid: SETATTR.MODE, mode: 0o600 }) });
      expect(fs.statSync(path.join(d, "new", "f")).mode & 0o777).toBe(0o600);
    } finally {
      await a.c.close();
      await b.c.close();
    }
  });

  it("Trename moves the renaming fid, its clones and fids walked to it apart; a name that only starts alike stays", async () => {
    const d = area("rb");
    fs.mkdirSync(path.join(d, "a"));
    fs.mkdirSync(path.join(d, "ab"));
    fs.writeFileSync(path.join(d, "ab", "x"), "x");
    const s = await session();
    try {
      await s.walk(1, 10, "rb");
      await s.walk(1, 11, "rb", "a");
      await s.walk(11, 12); // a clone of the same file
      await s.walk(1, 13, "rb", "ab", "x");
      await s.walk(1, 14, "rb", "a"); // the same directory, walked on its own
      await s.rpc({ type: MsgType.Trename, fid: 11, dfid: 10, name: "c" });
      expect(fs.readdirSync(d).sort()).toEqual(["ab", "c"]);
      await s.rpc({ type: MsgType.Tmkdir, dfid: 12, name: "in-c", mode: 0o755, gid: NOFID });
      await s.rpc({ type: MsgType.Tmkdir, dfid: 14, name: "also-in-c", mode: 0o755, gid: NOFID });
      expect(fs.readdirSync(path.join(d, "c")).sort()).toEqual(["also-in-c", "in-c"]);
      expect((await s.getattr(13)).size).toBe(1n);
    } finally {
      await s.c.close();
    }
  });

  it("renaming a directory twice, then working in the innermost fid", async () => {
    const d = area("rc");
    fs.mkdirSync(path.join(d, "t1", "sub"), { recursive: true });
    const s = await session();
    try {
      await s.walk(1, 10, "rc");
      await s.walk(1, 11, "rc", "t1", "sub");
      await s.rpc({ type: MsgType.Trenameat, olddirfid: 10, oldname: "t1", newdirfid: 10, newname: "t2" });
      await s.rpc({ type: MsgType.Trenameat, olddirfid: 10, oldname: "t2", newdirfid: 10, newname: "t3" });
      await s.rpc({
        type: MsgType.Tlcreate,
        fid: 11,
        name: "here",
        flags: L_O.RDWR,
        mode: 0o644,
        gid: NOFID,
      });
      expect(fs.existsSync(path.join(d, "t3", "sub", "here"))).toBe(true);
    } finally {
      await s.c.close();
    }
  });

  it("9P2000.u: a wstat rename of a directory moves the fids inside it; the stat shows the new name", async () => {
    const d = area("rd");
    fs.mkdirSync(path.join(d, "u1"));
    fs.writeFileSync(path.join(d, "u1", "g"), "gg");
    const s = await session("9P2000.u");
    try {
      await s.walk(1, 11, "rd", "u1");
      await s.walk(1, 12, "rd", "u1", "g");
      await s.rpc({ type: MsgType.Twstat, fid: 11, stat: dontTouchStat({ name: "u2" }) });
      expect(fs.readdirSync(d)).toEqual(["u2"]);
      const st = (await s.rpc({ type: MsgType.Tstat, fid: 11 })) as Rstat;
      expect(st.stat.name).toBe("u2");
      const g = (await s.rpc({ type: MsgType.Tstat, fid: 12 })) as Rstat;
      expect(g.stat.length).toBe(2n);
    } finally {
      await s.c.close();
    }
  });
});

describe("an unlinked file still open on a fid", () => {
  it("getattr and setattr go through its descriptor (nlink 0, truncate, chmod, times)", async () => {
    const d = area("ua");
    const s = await session();
    try {
      await s.walk(1, 10, "ua");
      await s.walk(10, 11);
      await s.rpc({
        type: MsgType.Tlcreate,
        fid: 11,
        name: "gone",
        flags: L_O.RDWR,
        mode: 0o644,
        gid: NOFID,
      });
      await s.rpc({ type: MsgType.Twrite, fid: 11, offset: 0n, data: Buffer.from("still here") });
      await s.rpc({ type: MsgType.Tunlinkat, dirfd: 10, name: "gone", flags: 0 });
      expect(fs.readdirSync(d)).toEqual([]);

      const before = await s.getattr(11);
      expect(before.nlink).toBe(0n);
      expect(before.size).toBe(10n);
      await s.rpc({ type: MsgType.Tsetattr, fid: 11, ...setattr({ valid: SETATTR.SIZE, size: 5n }) });
      await s.rpc({ type: MsgType.Tsetattr, fid: 11, ...setattr({ valid: SETATTR.MODE, mode: 0o600 }) });
      await s.rpc({
        type: MsgType.Tsetattr,
        fid: 11,
        ...setattr({
          valid: SETATTR.MTIME | SETATTR.MTIME_SET,
          mtime_sec: 1_000_000_000n,
          mtime_nsec: 250_000n,
        }),
      });
      const after = await s.getattr(11);
      expect(after.size).toBe(5n);
      expect(after.mode & 0o7777).toBe(0o600);
      expect(after.mtime_sec).toBe(1_000_000_000n);
      expect(after.mtime_nsec).toBe(250_000n);
      expect(await s.read(11)).toBe("still");
      // nothing came back under the old name
      expect(fs.readdirSync(d)).toEqual([]);
    } finally {
      await s.c.close();
    }
  });

  it("9P2000.u: Tstat, a sync and a wstat of the length and mode go through its descriptor", async () => {
    const d = area("uc");
    fs.writeFileSync(path.join(d, "v"), "vanishing");
    const s = await session("9P2000.u");
    try {
      await s.walk(1, 11, "uc", "v");
      await s.rpc({ type: MsgType.Topen, fid: 11, mode: 2 });
      await s.walk(1, 12, "uc", "v");
      await s.rpc({ type: MsgType.Tremove, fid: 12 });
      expect(fs.readdirSync(d)).toEqual([]);
      // An all-"don't touch" wstat is a sync (v9fs sends it for fsync(2)): through the descriptor too.
      await s.rpc({ type: MsgType.Twstat, fid: 11, stat: dontTouchStat({}) });
      await s.rpc({ type: MsgType.Twstat, fid: 11, stat: dontTouchStat({ length: 3n, mode: 0o640 }) });
      const st = (await s.rpc({ type: MsgType.Tstat, fid: 11 })) as Rstat;
      expect(st.stat.length).toBe(3n);
      expect(st.stat.mode & 0o777).toBe(0o640);
      expect(await s.read(11)).toBe("van");
      expect(fs.readdirSync(d)).toEqual([]);
    } finally {
      await s.c.close();
    }
  });

  it("a file another was renamed over: open fids keep the old file, others see it gone; links of one file are left alone", async () => {
    const d = area("ud");
    fs.writeFileSync(path.join(d, "o1"), "old");
    fs.writeFileSync(path.join(d, "o2"), "newer");
    fs.writeFileSync(path.join(d, "l1"), "linked");
    fs.linkSync(path.join(d, "l1"), path.join(d, "l2"));
    const s = await session();
    try {
      await s.walk(1, 10, "ud");
      await s.walk(1, 11, "ud", "o1");
      await s.rpc({ type: MsgType.Tlopen, fid: 11, flags: L_O.RDONLY });
      await s.walk(1, 12, "ud", "o1");
      await s.walk(1, 13, "ud", "l2");
      await s.rpc({ type: MsgType.Trenameat, olddirfid: 10, oldname: "o2", newdirfid: 10, newname: "o1" });
      const open = await s.getattr(11);
      expect([open.nlink, open.size]).toEqual([0n, 3n]);
      expect(await s.read(11)).toBe("old");
      await expect(s.getattr(12)).rejects.toMatchObject({ errno: 2 });
      await s.walk(1, 14, "ud", "o1");
      expect((await s.getattr(14)).size).toBe(5n);
      // rename(2) between two links of one file changes nothing: the fid on l2 stays good
      await s.rpc({ type: MsgType.Trenameat, olddirfid: 10, oldname: "l1", newdirfid: 10, newname: "l2" });
      expect((await s.getattr(13)).size).toBe(6n);
    } finally {
      await s.c.close();
    }
  });

  it("without an open descriptor the name's absence is an error, as before", async () => {
    const d = area("ub");
    fs.writeFileSync(path.join(d, "h"), "h");
    const s = await session();
    try {
      await s.walk(1, 10, "ub");
      await s.walk(1, 11, "ub", "h");
      await s.rpc({ type: MsgType.Tunlinkat, dirfd: 10, name: "h", flags: 0 });
      await expect(s.getattr(11)).rejects.toMatchObject({ errno: 2 });
      await expect(
        s.rpc({ type: MsgType.Tsetattr, fid: 11, ...setattr({ valid: SETATTR.SIZE, size: 0n }) }),
      ).rejects.toMatchObject({ errno: 2 });
    } finally {
      await s.c.close();
    }
  });
});
