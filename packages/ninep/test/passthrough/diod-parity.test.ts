// 9P2000.L behaviours of the passthrough that follow diod (and Linux) exactly, checked against the
// backend directly so that they hold where diod is not installed (diod-compare.test.ts compares
// them with a live diod).

import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { Dialect, L_O, MsgType, NONUNAME, SETATTR } from "../../src/codec/constants.js";
import type { Node } from "../../src/server/backend.js";
import { passthrough } from "../../src/server/passthrough.js";
import { V9FS_MAGIC } from "../../src/server/passthrough-l.js";
import { Server } from "../../src/server/server.js";
import { attach, ctx, setattr, tempDir } from "./helpers.js";

const c = ctx(Dialect.P2000L, "root", 0);

describe("passthrough 9P2000.L parity with diod", () => {
  let tmp: ReturnType<typeof tempDir>;
  let root: Node;
  beforeEach(async () => {
    tmp = tempDir("pt-parity-");
    root = await attach(tmp.dir, c);
  });
  afterEach(() => tmp.cleanup());

  it("mknod makes a socket file, even in a directory whose path is too long for a socket address", async () => {
    const deep = path.join(tmp.dir, "d".repeat(60), "e".repeat(60));
    fs.mkdirSync(deep, { recursive: true });
    let dir = root;
    for (const part of ["d".repeat(60), "e".repeat(60)]) dir = await dir.walk1!(part, c);
    await dir.mknod!("s", 0o140640, 0, 0, NONUNAME, c);
    const st = fs.lstatSync(path.join(deep, "s"));
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o640);
    // nothing else is left behind, and a second mknod of the name fails as mknod(2) does
    expect(fs.readdirSync(deep)).toEqual(["s"]);
    await expect(dir.mknod!("s", 0o140640, 0, 0, NONUNAME, c)).rejects.toMatchObject({ code: "EEXIST" });
    expect(fs.readdirSync(deep)).toEqual(["s"]);
  });

  it("setattr sets explicit times to the nanosecond and leaves the other time exactly as it was", async () => {
    fs.writeFileSync(path.join(tmp.dir, "f"), "x");
    const f = await root.walk1!("f", c);
    const { ATIME, MTIME, ATIME_SET, MTIME_SET } = SETATTR;
    await f.setattr!(
      setattr({
        valid: ATIME | MTIME | ATIME_SET | MTIME_SET,
        atime_sec: 1_000_000_000n,
        atime_nsec: 5n,
        mtime_sec: 1_200_000_000n,
        mtime_nsec: 7000n,
      }),
      c,
    );
    const ns = () => {
      const st = fs.lstatSync(path.join(tmp.dir, "f"), { bigint: true });
      return [st.atimeNs, st.mtimeNs];
    };
    expect(ns()).toEqual([1_000_000_000_000_000_005n, 1_200_000_000_000_007_000n]);
    // microseconds only: the quick path, still exact
    await f.setattr!(
      setattr({ valid: MTIME | MTIME_SET, mtime_sec: 1_300_000_000n, mtime_nsec: 999_999_000n }),
      c,
    );
    expect(ns()).toEqual([1_000_000_000_000_000_005n, 1_300_000_000_999_999_000n]);
    await f.setattr!(setattr({ valid: ATIME | ATIME_SET, atime_sec: 1_400_000_000n, atime_nsec: 3000n }), c);
    expect(ns()).toEqual([1_400_000_000_000_003_000n, 1_300_000_000_999_999_000n]);
    await expect(
      f.setattr!(setattr({ valid: MTIME | MTIME_SET, mtime_nsec: 1_000_000_000n }), c),
    ).rejects.toMatchObject({ errno: 22 });
  });

  it("a directory removed while open reads as empty; one renamed away is ENOENT (files are named by path)", async () => {
    fs.mkdirSync(path.join(tmp.dir, "gone"));
    fs.mkdirSync(path.join(tmp.dir, "moved"));
    fs.writeFileSync(path.join(tmp.dir, "moved", "x"), "");
    const gone = await (await root.walk1!("gone", c)).lopen!(L_O.RDONLY, c);
    const moved = await (await root.walk1!("moved", c)).lopen!(L_O.RDONLY, c);
    fs.rmdirSync(path.join(tmp.dir, "gone"));
    fs.renameSync(path.join(tmp.dir, "moved"), path.join(tmp.dir, "elsewhere"));
    expect(await gone.readdir!(0n, 8192, c)).toEqual([]);
    await expect(moved.readdir!(0n, 8192, c)).rejects.toMatchObject({ code: "ENOENT" });
    await gone.clunk?.(c);
    await moved.clunk?.(c);
  });

  it.skipIf(process.getuid?.() !== 0)(
    "a write or truncation by a user other than root clears set-user-ID (and group-executable set-group-ID)",
    async () => {
      fs.chmodSync(tmp.dir, 0o777);
      const nb = ctx(Dialect.P2000L, "nobody", 65534);
      const r = await attach(tmp.dir, nb, { permissions: "user" });
      const mode = () => fs.statSync(path.join(tmp.dir, "f")).mode & 0o7777;
      const made = await r.lcreate!("f", L_O.RDWR | L_O.CREAT, 0o6755, 65534, nb);
      expect(mode()).toBe(0o6755);
      await made.file.write!(0n, Buffer.from("x"), nb);
      expect(mode()).toBe(0o755);
      await made.file.clunk?.(nb);
      const f = await r.walk1!("f", nb);
      fs.chmodSync(path.join(tmp.dir, "f"), 0o6745);
      await f.setattr!(setattr({ valid: SETATTR.SIZE }), nb);
      expect(mode()).toBe(0o2745); // set-group-ID without group execute is a lock mark: kept
      fs.chmodSync(path.join(tmp.dir, "f"), 0o4755);
      await (await f.lopen!(L_O.WRONLY | L_O.TRUNC, nb)).clunk?.(nb);
      expect(mode()).toBe(0o755);
      // root keeps them, as a process with CAP_FSETID
      fs.chmodSync(path.join(tmp.dir, "f"), 0o6755);
      const rf = await (await attach(tmp.dir, c)).walk1!("f", c);
      const w = await rf.lopen!(L_O.WRONLY | L_O.TRUNC, c);
      await w.write!(0n, Buffer.from("y"), c);
      await w.clunk?.(c);
      expect(mode()).toBe(0o6755);
    },
  );

  it("statfs reports the v9fs type, as a Linux 9P mount of diod does", async () => {
    const s = await root.statfs!(c);
    expect(s.fstype).toBe(V9FS_MAGIC);
    expect(s.namelen).toBe(255);
    expect(s.bsize).toBeGreaterThan(0);
  });

  it("lcreate of an existing directory, or a link to one, is EISDIR; symlink to '' is ENOENT", async () => {
    fs.mkdirSync(path.join(tmp.dir, "d"));
    fs.symlinkSync("d", path.join(tmp.dir, "l"));
    for (const name of ["d", "l"]) {
      for (const acc of [L_O.RDONLY, L_O.RDWR]) {
        await expect(root.lcreate!(name, acc | L_O.CREAT, 0o644, NONUNAME, c)).rejects.toMatchObject({
          errno: 21,
        });
      }
    }
    await expect(root.symlink!("e", "", NONUNAME, c)).rejects.toMatchObject({ errno: 2 });
  });
});

describe("passthrough 9P2000.L parity with diod, over a connection", () => {
  it("offsets of 2^63 and more are EINVAL (negative to Linux); Tfsync needs an open fid", async () => {
    const tmp = tempDir("pt-parity-conn-");
    fs.writeFileSync(path.join(tmp.dir, "f"), "data");
    const server = new Server({ backend: passthrough(tmp.dir) });
    let client: Client | undefined;
    try {
      const a = await server.listen("tcp!127.0.0.1!0");
      if (a.network !== "tcp") throw new Error("tcp");
      client = await Client.connect(`tcp!127.0.0.1!${a.port}`, { version: "9P2000.L" });
      const root = await client.attach("root", "");
      const f = await root.walk("f");
      await expect(client.rpc({ type: MsgType.Tfsync, fid: f.num, datasync: 0 })).rejects.toMatchObject({
        errno: 9,
      });
      await f.lopen(L_O.RDWR);
      const errno = (p: Promise<unknown>) =>
        p.then(
          () => "ok",
          (e: { errno?: number }) => e.errno,
        );
      expect(await errno(client.rpc({ type: MsgType.Tread, fid: f.num, offset: 1n << 63n, count: 10 }))).toBe(
        22,
      );
      expect(
        await errno(
          client.rpc({ type: MsgType.Twrite, fid: f.num, offset: (1n << 64n) - 1n, data: Buffer.from("x") }),
        ),
      ).toBe(22);
      // just below: past the end of the file, an empty read
      const r = await client.rpc({ type: MsgType.Tread, fid: f.num, offset: (1n << 63n) - 1n, count: 10 });
      expect(r.data.length).toBe(0);
      await f.clunk();
      await root.clunk();
    } finally {
      await client?.close();
      await server.close();
      tmp.cleanup();
    }
  });
});
