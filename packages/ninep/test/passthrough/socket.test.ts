// The passthrough backend served by the real Server over TCP loopback to the real Client, in each
// dialect: create/write/read/stat/wstat/remove/mkdir/readdir with small counts/symlinks, a 64 MiB
// file with checksum, and read-only refusals.

import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import {
  AT_REMOVEDIR,
  Dialect,
  DMDIR,
  DMLINK,
  DMSYMLINK,
  GETATTR,
  L_O,
  MsgType,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
  QTDIR,
  QTSYMLINK,
} from "../../src/codec/constants.js";
import { decodeDirents, decodeStats } from "../../src/codec/index.js";
import { RemoteError } from "../../src/errors.js";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { tempDir } from "./helpers.js";

const MSIZE = 1024 * 1024 + 24;

async function serve(dir: string, readOnly = false) {
  const server = new Server({ backend: passthrough(dir, { readOnly }), maxMsize: MSIZE });
  const addr = await server.listen("tcp!127.0.0.1!0");
  if (addr.network !== "tcp") throw new Error("tcp expected");
  return { server, addr: `tcp!127.0.0.1!${addr.port}` };
}

async function remoteErr(p: Promise<unknown>): Promise<RemoteError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RemoteError) return e;
    throw e;
  }
  throw new Error("expected a remote error");
}

let tmp: ReturnType<typeof tempDir>;
let srv: Awaited<ReturnType<typeof serve>>;
let ro: Awaited<ReturnType<typeof serve>>;
let roDir: string;

beforeAll(async () => {
  tmp = tempDir("pt-sock-");
  fs.mkdirSync(path.join(tmp.dir, "rw"));
  roDir = path.join(tmp.dir, "ro");
  fs.mkdirSync(path.join(roDir, "sub"), { recursive: true });
  fs.writeFileSync(path.join(roDir, "file"), "read only data");
  srv = await serve(path.join(tmp.dir, "rw"));
  ro = await serve(roDir, true);
});
afterAll(async () => {
  await srv?.server.close();
  await ro?.server.close();
  tmp.cleanup();
});

for (const dialect of [Dialect.P2000, Dialect.P2000u, Dialect.P2000L]) {
  describe(`passthrough over TCP, ${dialect}`, () => {
    let client: Client;
    let top: string;
    const dotL = dialect === Dialect.P2000L;

    beforeAll(async () => {
      client = await Client.connect(srv.addr, { version: dialect, msize: 65536 + 24 });
      expect(client.dialect).toBe(dialect);
      top = path.join(tmp.dir, "rw", dialect);
      fs.mkdirSync(top);
    });
    afterAll(async () => {
      await client?.close();
    });

    const attach = async () => (await client.attach("root", "")).walk(dialect);

    it("create, write, read, stat", async () => {
      const dir = await attach();
      if (dotL) await dir.lcreate("a.txt", L_O.RDWR | L_O.CREAT, 0o640);
      else await dir.create("a.txt", 0o640, ORDWR);
      expect(await dir.write(0, "hello, world")).toBe(12);
      expect((await dir.read(0, 100)).toString()).toBe("hello, world");
      expect((await dir.read(7, 100)).toString()).toBe("world");
      expect((await dir.read(100, 100)).length).toBe(0);
      const st = await dir.stat();
      expect(st.length).toBe(12n);
      expect(st.mode & 0o777).toBe(0o640);
      expect(st.qid.path).toBe(BigInt(fs.statSync(path.join(top, "a.txt")).ino));
      if (!dotL) {
        expect(st.name).toBe("a.txt");
        expect(st.uid).toBe("root");
      }
      await dir.clunk();
      expect(fs.readFileSync(path.join(top, "a.txt"), "utf8")).toBe("hello, world");
      // Creating it again fails with "file exists".
      const again = await attach();
      const err = await remoteErr(
        dotL
          ? again.lcreate("a.txt", L_O.RDWR | L_O.CREAT | L_O.EXCL, 0o640)
          : again.create("a.txt", 0o640, ORDWR),
      );
      if (dialect !== Dialect.P2000) expect(err.errno).toBe(17);
      if (!dotL) expect(err.ename).toBe("file exists");
      await again.clunk();
    });

    it("wstat/setattr: truncate, chmod, mtime, rename", async () => {
      const f = await (await attach()).walk("a.txt");
      await f.wstat({ length: 5n });
      expect(fs.readFileSync(path.join(top, "a.txt"), "utf8")).toBe("hello");
      await f.wstat({ mode: 0o600 });
      expect(fs.statSync(path.join(top, "a.txt")).mode & 0o7777).toBe(0o600);
      await f.wstat({ mtime: 1_000_000_000 });
      expect(fs.statSync(path.join(top, "a.txt")).mtimeMs).toBe(1_000_000_000_000);
      const dir = await attach();
      if (dotL) await f.rename(dir, "b.txt");
      else await f.wstat({ name: "b.txt" });
      expect(fs.existsSync(path.join(top, "a.txt"))).toBe(false);
      expect(fs.readFileSync(path.join(top, "b.txt"), "utf8")).toBe("hello");
      // The same fid still names the renamed file.
      const st = await f.stat();
      expect(st.length).toBe(5n);
      if (!dotL) {
        expect(st.name).toBe("b.txt");
        // Atomic wstat: a rename plus an illegal DMDIR flip changes nothing.
        await remoteErr(f.wstat({ name: "c.txt", mode: (DMDIR | 0o755) >>> 0 }));
        expect(fs.existsSync(path.join(top, "b.txt"))).toBe(true);
        // Rename onto an existing name fails.
        fs.writeFileSync(path.join(top, "taken"), "");
        const e = await remoteErr(f.wstat({ name: "taken" }));
        expect(e.ename).toBe("file exists");
        fs.unlinkSync(path.join(top, "taken"));
        // All "don't touch": a sync that succeeds.
        await f.fsync();
      } else {
        await f.setattr({ atime: "now", mtime: "now" });
        const now = Date.now();
        expect(Math.abs(fs.statSync(path.join(top, "b.txt")).mtimeMs - now)).toBeLessThan(60_000);
        const a = await f.getattr(GETATTR.BASIC);
        expect(a.valid & GETATTR.BASIC).toBe(GETATTR.BASIC);
        expect(a.size).toBe(5n);
      }
      await f.clunk();
      await dir.clunk();
    });

    it("open modes: OTRUNC, permission bits all required, directories read-only", async () => {
      const f = await (await attach()).walk("b.txt");
      await f.open(OWRITE | OTRUNC);
      expect(fs.readFileSync(path.join(top, "b.txt"), "utf8")).toBe("");
      await f.write(0, "xyz");
      await f.clunk();
      const d = await attach();
      const e = await remoteErr(d.open(OWRITE));
      expect(e.errno === undefined || e.errno === 21).toBe(true);
      await d.clunk();
      if (!dotL) {
        // A fid opened OREAD cannot write (R1).
        const r = await (await attach()).walk("b.txt");
        await r.open(OREAD);
        await remoteErr(r.write(0, "no"));
        await r.clunk();
      }
    });

    it("mkdir and directory reads with small counts", async () => {
      const d = await attach();
      if (dotL) await d.mkdir("dir", 0o750);
      else await d.create("dir", (DMDIR | 0o750) >>> 0, OREAD);
      await d.clunk();
      expect(fs.statSync(path.join(top, "dir")).isDirectory()).toBe(true);
      expect(fs.statSync(path.join(top, "dir")).mode & 0o777).toBe(0o750);
      const names = Array.from(
        { length: 40 },
        (_, i) => `entry-${String(i).padStart(2, "0")}-${"x".repeat(i)}`,
      );
      for (const n of names) fs.writeFileSync(path.join(top, "dir", n), n);
      const dir = await (await attach()).walk("dir");
      await dir.open(OREAD);
      const seen: string[] = [];
      if (dotL) {
        let offset = 0n;
        for (;;) {
          // Room for one or two entries per reply.
          const r = await client.rpc({ type: MsgType.Treaddir, fid: dir.num, offset, count: 90 });
          if (r.data.length === 0) break;
          const ents = decodeDirents(r.data);
          expect(ents.length).toBeGreaterThan(0);
          for (const e of ents) seen.push(e.name);
          offset = ents[ents.length - 1]!.offset;
        }
        expect(seen.slice(0, 2).sort()).toEqual([".", ".."]);
        // A count that cannot hold the next entry is an error, not an empty (= end) reply.
        const tooSmall = await remoteErr(
          client.rpc({ type: MsgType.Treaddir, fid: dir.num, offset: 0n, count: 10 }),
        );
        expect(tooSmall.errno).toBe(22);
        expect(seen.slice(2).sort()).toEqual(names);
      } else {
        let offset = 0n;
        for (;;) {
          const r = await client.rpc({ type: MsgType.Tread, fid: dir.num, offset, count: 200 });
          if (r.data.length === 0) break;
          for (const s of decodeStats(r.data, dialect)) {
            seen.push(s.name);
            expect(s.length).toBe(BigInt(Buffer.byteLength(s.name)));
          }
          offset += BigInt(r.data.length);
        }
        expect(seen.sort()).toEqual(names);
      }
      await dir.clunk();
      // Remove: a non-empty directory fails, files and then the directory succeed.
      const full = await (await attach()).walk("dir");
      await remoteErr(full.remove());
      for (const n of names) await (await (await attach()).walk(`dir/${n}`)).remove();
      await (await (await attach()).walk("dir")).remove();
      expect(fs.existsSync(path.join(top, "dir"))).toBe(false);
    });

    it("symlinks", async () => {
      const d = await attach();
      if (dialect === Dialect.P2000) {
        // No symlinks in 9P2000; links made locally inside the tree are followed.
        fs.symlinkSync("b.txt", path.join(top, "ln"));
        const l = await d.walk("ln");
        const st = await l.stat();
        expect(st.qid.type & QTSYMLINK).toBe(0);
        expect(st.length).toBe(3n);
        await l.open(OREAD);
        expect((await l.read(0, 10)).toString()).toBe("xyz");
        await l.clunk();
      } else if (dialect === Dialect.P2000u) {
        const c = await d.clone();
        await c.create("ln", (DMSYMLINK | 0o777) >>> 0, OREAD, "b.txt");
        await c.clunk();
        expect(fs.readlinkSync(path.join(top, "ln"))).toBe("b.txt");
        const l = await d.walk("ln");
        expect(l.qid.type).toBe(QTSYMLINK);
        const st = await l.stat();
        expect(st.extension).toBe("b.txt");
        expect(st.mode & DMSYMLINK).toBeTruthy();
        await l.clunk();
      } else {
        const qid = await d.symlink("ln", "b.txt");
        expect(qid.type).toBe(QTSYMLINK);
        const l = await d.walk("ln");
        expect(await l.readlink()).toBe("b.txt");
        const a = await l.getattr();
        expect(Number(a.mode) & 0o170000).toBe(0o120000);
        await l.clunk();
        // readlink of a non-link: EINVAL.
        const f = await d.walk("b.txt");
        expect((await remoteErr(f.readlink())).errno).toBe(22);
        await f.clunk();
      }
      const l = await d.walk("ln");
      await l.remove();
      expect(fs.existsSync(path.join(top, "ln"))).toBe(false);
      await d.clunk();
    });

    if (!dotL) {
      it("ORCLOSE removes on clunk; .u hard links name an existing fid", async () => {
        const d = await attach();
        const c = await d.clone();
        await c.create("tmpfile", 0o644, ORDWR | ORCLOSE);
        await c.write(0, "temporary");
        expect(fs.existsSync(path.join(top, "tmpfile"))).toBe(true);
        await c.clunk();
        expect(fs.existsSync(path.join(top, "tmpfile"))).toBe(false);
        if (dialect === Dialect.P2000u) {
          const target = await d.walk("b.txt");
          const h = await d.clone();
          await h.create("hard", (DMLINK | 0o644) >>> 0, OREAD, `${target.num}\n`);
          expect((await h.read(0, 100)).toString()).toBe("xyz");
          await h.clunk();
          expect(fs.statSync(path.join(top, "hard")).ino).toBe(fs.statSync(path.join(top, "b.txt")).ino);
          fs.unlinkSync(path.join(top, "hard"));
          await target.clunk();
        }
        await d.clunk();
      });
    }

    if (dotL) {
      it(".L extras: renameat, unlinkat, link, mknod FIFO, statfs, fsync, lock", async () => {
        const d = await attach();
        await d.renameat("b.txt", d, "c.txt");
        expect(fs.existsSync(path.join(top, "c.txt"))).toBe(true);
        const f = await d.walk("c.txt");
        await d.link(f, "hard");
        expect(fs.statSync(path.join(top, "hard")).ino).toBe(fs.statSync(path.join(top, "c.txt")).ino);
        await d.unlinkat("hard");
        expect((await remoteErr(d.unlinkat("nope"))).errno).toBe(2);
        await d.mkdir("sd", 0o755);
        expect((await remoteErr(d.unlinkat("sd"))).errno).toBe(21);
        await d.unlinkat("sd", AT_REMOVEDIR);
        const q = await d.mknod("fifo", 0o010644, 0, 0);
        expect(q.type).toBe(0);
        expect(fs.statSync(path.join(top, "fifo")).isFIFO()).toBe(true);
        await d.unlinkat("fifo");
        const sfs = await d.statfs();
        expect(sfs.bsize).toBeGreaterThan(0);
        expect(sfs.namelen).toBe(255);
        await f.lopen(L_O.RDWR);
        await f.fsync(true);
        const lk = { flags: 0, start: 0n, length: 0n, proc_id: 1, client_id: "a" };
        const r1 = await client.rpc({ type: MsgType.Tlock, fid: f.num, locktype: 1, ...lk });
        expect(r1.status).toBe(0);
        const g = await (await attach()).walk("c.txt");
        await g.lopen(L_O.RDWR);
        const r2 = await client.rpc({ type: MsgType.Tlock, fid: g.num, locktype: 1, ...lk, proc_id: 2 });
        expect(r2.status).toBe(1); // BLOCKED: another owner holds it
        const gl = await client.rpc({
          type: MsgType.Tgetlock,
          fid: g.num,
          locktype: 1,
          start: 0n,
          length: 0n,
          proc_id: 2,
          client_id: "a",
        });
        expect(gl.locktype).toBe(1);
        expect(gl.proc_id).toBe(1);
        await client.rpc({ type: MsgType.Tlock, fid: f.num, locktype: 2, ...lk });
        const r3 = await client.rpc({ type: MsgType.Tlock, fid: g.num, locktype: 1, ...lk, proc_id: 2 });
        expect(r3.status).toBe(0);
        await g.clunk();
        await f.clunk();
        // xattrs are not supported.
        const x = await remoteErr(
          client.rpc({ type: MsgType.Txattrwalk, fid: d.num, newfid: 999, name: "" }),
        );
        expect(x.errno).toBe(95);
        await d.clunk();
      });
    }

    // Once per .u and .L (the 9P2000 data path is the same as .u's).
    it.skipIf(dialect === Dialect.P2000)(
      "a 64 MiB file round-trips with the same checksum",
      async () => {
        const big = await Client.connect(srv.addr, { version: dialect, msize: MSIZE });
        try {
          const data = randomBytes(64 * 1024 * 1024);
          const want = createHash("sha256").update(data).digest("hex");
          const { Fsys } = await import("../../src/client/index.js");
          const fsys = new Fsys(big, await big.attach("root", ""));
          await fsys.writeFile(`${dialect}/big`, data);
          expect(fs.statSync(path.join(top, "big")).size).toBe(data.length);
          const back = await fsys.readFile(`${dialect}/big`);
          expect(createHash("sha256").update(back).digest("hex")).toBe(want);
          await fsys.remove(`${dialect}/big`);
        } finally {
          await big.close();
        }
      },
      120_000,
    );

    it("read-only export refuses every change", async () => {
      const c = await Client.connect(ro.addr, { version: dialect });
      try {
        const r = await c.attach("root", "");
        const isRo = (e: RemoteError) => {
          if (dialect !== Dialect.P2000) expect(e.errno).toBe(30);
          if (!dotL) expect(e.ename).toBe("read-only file system");
        };
        const f = await r.walk("file");
        isRo(await remoteErr(f.open(OWRITE)));
        isRo(await remoteErr(f.open(OREAD | OTRUNC)));
        if (!dotL) isRo(await remoteErr(f.wstat({ mode: 0o600 })));
        else isRo(await remoteErr(f.setattr({ size: 0 })));
        const d = await r.clone();
        isRo(
          await remoteErr(
            dotL ? d.lcreate("new", L_O.RDWR | L_O.CREAT, 0o644) : d.create("new", 0o644, ORDWR),
          ),
        );
        const d2 = await r.clone();
        if (dotL) {
          isRo(await remoteErr(d2.mkdir("nd", 0o755)));
          isRo(await remoteErr(d2.symlink("sl", "file")));
          isRo(await remoteErr(d2.renameat("file", d2, "x")));
          isRo(await remoteErr(c.rpc({ type: MsgType.Tunlinkat, dirfd: d2.num, name: "file", flags: 0 })));
        } else {
          isRo(await remoteErr(d2.create("nd", (DMDIR | 0o755) >>> 0, OREAD)));
        }
        isRo(await remoteErr(f.remove()));
        // Reading still works.
        const g = await r.walk("file");
        await g.open(OREAD);
        expect((await g.read(0, 100)).toString()).toBe("read only data");
        await g.clunk();
        expect(fs.readdirSync(roDir).sort()).toEqual(["file", "sub"]);
        const st = await (await r.walk("sub")).stat();
        expect(st.qid.type & QTDIR).toBe(QTDIR);
      } finally {
        await c.close();
      }
    });
  });
}
