// Behaviour tests of the server framework over real sockets, one per rule of spec/9p.md that the
// conformance suite does not already cover (or covers only loosely).

import { afterEach, describe, expect, it } from "vitest";
import {
  Dialect,
  DMAUTH,
  DMDIR,
  MsgType,
  NOFID,
  NOTAG,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
  QTAUTH,
} from "../../src/codec/constants.js";
import { decodeStats, dontTouchStat } from "../../src/codec/stat.js";
import type { Message } from "../../src/codec/types.js";
import { encode } from "../../src/codec/wire.js";
import { Ename, FsError } from "../../src/errors.js";
import type { AuthFile, Backend } from "../../src/server/backend.js";
import { BytesFile, Server, SynthDir, SynthFile, staticFile, treeBackend } from "../../src/server/index.js";
import { RawClient } from "../../src/testing/raw.js";
import { type Fixture, startFixture } from "./fixture.js";

let fx: Fixture | undefined;
const clients: RawClient[] = [];
const servers: Server[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await fx?.close();
  fx = undefined;
  for (const s of servers.splice(0)) await s.close(100);
});

async function connect(version = "9P2000", uname = "glenda", msize = 8192 + 24): Promise<RawClient> {
  const c = await RawClient.connect(fx!.addr);
  clients.push(c);
  await c.version(msize, version);
  expect(await c.call({ type: MsgType.Tattach, fid: 0, afid: NOFID, uname, aname: "" })).toMatchObject({
    type: MsgType.Rattach,
  });
  return c;
}

async function setup(version = "9P2000", uname = "glenda", opts = {}): Promise<RawClient> {
  fx = await startFixture(opts);
  return connect(version, uname);
}

function ename(m: Message): string | undefined {
  return m.type === MsgType.Rerror ? m.ename : undefined;
}

async function openPath(c: RawClient, fid: number, path: string[], mode: number): Promise<Message> {
  const w = await c.walk(0, fid, ...path);
  expect(w.type).toBe(MsgType.Rwalk);
  return c.call({ type: MsgType.Topen, fid, mode });
}

async function readText(c: RawClient, fid: number, offset = 0n, count = 4096): Promise<string> {
  const r = await c.call({ type: MsgType.Tread, fid, offset, count });
  if (r.type !== MsgType.Rread) throw new Error(`read failed: ${JSON.stringify(r)}`);
  return Buffer.from(r.data).toString();
}

describe("tags and flush", () => {
  it("keeps 64 blocked reads in flight and answers each when data arrives", async () => {
    const c = await setup();
    const tags: number[] = [];
    for (let i = 0; i < 64; i++) {
      expect(await openPath(c, 100 + i, ["block"], OREAD)).toMatchObject({ type: MsgType.Ropen });
    }
    for (let i = 0; i < 64; i++) {
      const tag = c.tag();
      tags.push(tag);
      c.send({ type: MsgType.Tread, tag, fid: 100 + i, offset: 0n, count: 64 });
    }
    // Still answering other requests while 64 are blocked (T2).
    await c.stat(0);
    await expect.poll(() => fx!.blocked()).toBe(64);
    fx!.release("ready");
    for (const t of tags) {
      const r = await c.reply(t);
      expect(r.type).toBe(MsgType.Rread);
      if (r.type === MsgType.Rread) expect(Buffer.from(r.data).toString()).toBe("ready");
    }
  });

  it("answers Tflush of a handler that ignores its signal after flushTimeoutMs and drops the late reply", async () => {
    const c = await setup("9P2000", "glenda", { flushTimeoutMs: 50 });
    await openPath(c, 1, ["stubborn"], OREAD);
    const tag = c.tag();
    c.send({ type: MsgType.Tread, tag, fid: 1, offset: 0n, count: 10 });
    const ftag = c.tag();
    c.send({ type: MsgType.Tflush, tag: ftag, oldtag: tag });
    expect(await c.reply(ftag)).toMatchObject({ type: MsgType.Rflush });
    expect(fx!.stubborn()).toBe(1); // answered while the handler still runs
    fx!.finishStubborn("late");
    await c.stat(0); // a late reply would come before this one
    expect(c.log.some((m) => m.tag === tag)).toBe(false);
  });

  it("answers Tflush of a request still waiting for its fid's gate at once, and keeps the fid's order", async () => {
    // A flush timeout longer than any test: the Rflush must not wait for the open ahead.
    const c = await setup("9P2000", "glenda", { flushTimeoutMs: 600_000 });
    expect((await c.walk(0, 1, "stubbornopen")).type).toBe(MsgType.Rwalk);
    const open = c.tag();
    c.send({ type: MsgType.Topen, tag: open, fid: 1, mode: OREAD });
    await expect.poll(() => fx!.stubborn()).toBe(1);
    // A clunk of the fid waits for the open (it changes the fid); it is flushed while it waits.
    const clunk = c.tag();
    c.send({ type: MsgType.Tclunk, tag: clunk, fid: 1 });
    expect((await c.call({ type: MsgType.Tflush, oldtag: clunk })).type).toBe(MsgType.Rflush);
    // A stat of the fid sent now still comes after the open, though the clunk it queued behind is gone.
    const stat = c.tag();
    c.send({ type: MsgType.Tstat, tag: stat, fid: 1 });
    await c.stat(0);
    expect(c.log.some((m) => m.tag === stat || m.tag === open)).toBe(false);
    fx!.finishStubborn("");
    expect((await c.reply(open)).type).toBe(MsgType.Ropen);
    expect((await c.reply(stat)).type).toBe(MsgType.Rstat);
    expect(c.log.findIndex((m) => m.tag === open)).toBeLessThan(c.log.findIndex((m) => m.tag === stat));
    // The flushed clunk never ran: the fid is still open and readable.
    expect(await readText(c, 1)).toBe("opened");
    expect(c.log.some((m) => m.tag === clunk && m.type !== MsgType.Rflush)).toBe(false);
  });

  it("sends the reply of a request that completes before the flush is processed, then Rflush", async () => {
    const c = await setup();
    const tag = c.tag();
    const ftag = c.tag();
    // Both in one write: the Tstat completes (it never blocks), the Rflush must come after it.
    c.sendRaw(
      Buffer.concat([
        encode({ type: MsgType.Tstat, tag, fid: 0 }, "9P2000"),
        encode({ type: MsgType.Tflush, tag: ftag, oldtag: tag }, "9P2000"),
      ]),
    );
    const rf = await c.reply(ftag);
    expect(rf.type).toBe(MsgType.Rflush);
    const iFlush = c.log.indexOf(rf);
    const iStat = c.log.findIndex((m) => m.tag === tag);
    if (iStat >= 0) expect(iStat).toBeLessThan(iFlush);
  });

  it("answers several Tflushes of the same tag in order", async () => {
    const c = await setup();
    await openPath(c, 1, ["block"], OREAD);
    const tag = c.tag();
    c.send({ type: MsgType.Tread, tag, fid: 1, offset: 0n, count: 10 });
    await expect.poll(() => fx!.blocked()).toBe(1);
    const f1 = c.tag();
    const f2 = c.tag();
    c.send({ type: MsgType.Tflush, tag: f1, oldtag: tag });
    c.send({ type: MsgType.Tflush, tag: f2, oldtag: tag });
    const r2 = await c.reply(f2);
    const r1 = await c.reply(f1);
    expect(c.log.indexOf(r1)).toBeLessThan(c.log.indexOf(r2));
    expect(c.log.some((m) => m.tag === tag)).toBe(false);
  });

  it("Tversion with outstanding requests answers at once, clunks fids (running clunk hooks) and sends nothing for the old tags", async () => {
    const c = await setup();
    for (let i = 0; i < 5; i++) await openPath(c, 10 + i, ["block"], OREAD);
    const tags = [0, 1, 2, 3, 4].map((i) => {
      const tag = c.tag();
      c.send({ type: MsgType.Tread, tag, fid: 10 + i, offset: 0n, count: 10 });
      return tag;
    });
    await expect.poll(() => fx!.blocked()).toBe(5);
    const v = await c.version(8216, "9P2000");
    expect(v.version).toBe("9P2000");
    expect(fx!.clunks).toBe(5);
    expect(fx!.blocked()).toBe(0);
    fx!.release("too late");
    await c.attach(0);
    await c.stat(0);
    const iv = c.log.findIndex((m) => m.type === MsgType.Rversion);
    expect(c.log.slice(iv).some((m) => tags.includes(m.tag) && m.type === MsgType.Rread)).toBe(false);
    // Old fids are gone; their numbers are free.
    expect(ename(await c.call({ type: MsgType.Tstat, fid: 10 }))).toBe(Ename.UnknownFid);
    expect((await c.walk(0, 10)).type).toBe(MsgType.Rwalk);
  });

  it("refuses requests beyond maxOutstandingPerConnection but still accepts Tflush", async () => {
    const c = await setup("9P2000", "glenda", { maxOutstandingPerConnection: 3 });
    for (let i = 0; i < 3; i++) await openPath(c, 10 + i, ["block"], OREAD);
    const tags = [0, 1, 2].map((i) => {
      const tag = c.tag();
      c.send({ type: MsgType.Tread, tag, fid: 10 + i, offset: 0n, count: 10 });
      return tag;
    });
    await expect.poll(() => fx!.blocked()).toBe(3);
    expect(ename(await c.call({ type: MsgType.Tstat, fid: 0 }))).toBe(Ename.TooManyRequests);
    expect((await c.call({ type: MsgType.Tflush, oldtag: tags[0]! })).type).toBe(MsgType.Rflush);
    expect((await c.call({ type: MsgType.Tstat, fid: 0 })).type).toBe(MsgType.Rstat);
  });

  it("at maxOutstandingPerConnection still clunks and removes: a fid is gone after Tclunk, whatever the answer (C1)", async () => {
    const c = await setup("9P2000", "glenda", { maxOutstandingPerConnection: 2 });
    for (let i = 0; i < 2; i++) await openPath(c, 10 + i, ["block"], OREAD);
    expect((await c.walk(0, 20)).type).toBe(MsgType.Rwalk);
    expect((await c.walk(0, 21)).type).toBe(MsgType.Rwalk);
    for (let i = 0; i < 2; i++) {
      c.send({ type: MsgType.Tread, tag: c.tag(), fid: 10 + i, offset: 0n, count: 10 });
    }
    await expect.poll(() => fx!.blocked()).toBe(2);
    const conn = fx!.server.connections[0]!;
    const before = conn.fidCount;
    expect(ename(await c.call({ type: MsgType.Tstat, fid: 0 }))).toBe(Ename.TooManyRequests);
    // A client frees the number once Tclunk is answered, error or not: a refused Tclunk would
    // leave the fid behind, and the number's next walk would find it taken.
    expect((await c.call({ type: MsgType.Tclunk, fid: 20 })).type).toBe(MsgType.Rclunk);
    expect(ename(await c.call({ type: MsgType.Tremove, fid: 21 }))).toBeDefined(); // not removable, but clunked (C2)
    expect(conn.fidCount).toBe(before - 2);
  });
});

describe("fids", () => {
  it("refuses new fids beyond maxFidsPerConnection", async () => {
    const c = await setup("9P2000", "glenda", { maxFidsPerConnection: 3 });
    expect((await c.walk(0, 1)).type).toBe(MsgType.Rwalk);
    expect((await c.walk(0, 2)).type).toBe(MsgType.Rwalk);
    expect(ename(await c.walk(0, 3))).toBe(Ename.TooManyFids);
  });

  it("keeps fid spaces per connection (F1)", async () => {
    const a = await setup();
    const b = await connect();
    await openPath(a, 5, ["hello"], OREAD);
    expect((await b.walk(0, 5, "data")).type).toBe(MsgType.Rwalk);
    expect(await readText(a, 5)).toBe("hello, world\n");
  });

  it("cleans up the fids of a connection that drops mid-message", async () => {
    const c = await setup();
    await openPath(c, 1, ["excl"], ORDWR);
    c.sendRaw(Buffer.from([30, 0, 0, 0, MsgType.Tstat, 1, 0])); // header promising more bytes
    c.destroy();
    const d = await connect();
    // The DMEXCL lock held by the dropped connection is released.
    await expect
      .poll(
        async () =>
          (await openPath(d, 9, ["excl"], OREAD).finally(() => d.call({ type: MsgType.Tclunk, fid: 9 })))
            .type,
      )
      .toBe(MsgType.Ropen);
  });
});

describe("open and create", () => {
  it("gives a DMEXCL file to one fid at a time, server-wide, until clunk", async () => {
    const a = await setup();
    const b = await connect();
    expect((await openPath(a, 1, ["excl"], OREAD)).type).toBe(MsgType.Ropen);
    expect(ename(await openPath(b, 1, ["excl"], OREAD))).toBe(Ename.ExclInUse);
    expect(ename(await openPath(a, 2, ["excl"], OREAD))).toBe(Ename.ExclInUse);
    await a.call({ type: MsgType.Tclunk, fid: 1 });
    expect((await b.call({ type: MsgType.Topen, fid: 1, mode: OREAD })).type).toBe(MsgType.Ropen);
  });

  it("removes an ORCLOSE file on clunk", async () => {
    const c = await setup();
    expect((await c.walk(0, 1, "dir")).type).toBe(MsgType.Rwalk);
    expect(
      await c.call({ type: MsgType.Tcreate, fid: 1, name: "tmp", perm: 0o644, mode: OWRITE | ORCLOSE }),
    ).toMatchObject({ type: MsgType.Rcreate });
    expect((await c.walk(0, 2, "dir", "tmp")).type).toBe(MsgType.Rwalk);
    await c.call({ type: MsgType.Tclunk, fid: 1 });
    // W6: "dir" walks, "tmp" is gone: a partial Rwalk.
    expect(await c.walk(0, 3, "dir", "tmp")).toMatchObject({
      type: MsgType.Rwalk,
      wqid: [expect.anything()],
    });
    expect(ename(await c.walk(0, 3, "dir"))).toBeUndefined();
    expect(ename(await c.walk(3, 4, "tmp"))).toBe(Ename.NotFound);
  });

  it("removes ORCLOSE files when Tversion resets the session and when the connection drops (V6)", async () => {
    const c = await setup();
    for (const name of ["gone-on-version", "gone-on-drop"]) {
      await c.walk(0, 1, "dir");
      expect(
        (await c.call({ type: MsgType.Tcreate, fid: 1, name, perm: 0o644, mode: OWRITE | ORCLOSE })).type,
      ).toBe(MsgType.Rcreate);
      if (name === "gone-on-version") {
        await c.version(8216, "9P2000");
        await c.attach(0);
      }
    }
    c.destroy();
    const d = await connect();
    await d.walk(0, 1, "dir");
    await expect.poll(async () => ename(await d.walk(1, 2, "gone-on-drop"))).toBe(Ename.NotFound);
    expect(ename(await d.walk(1, 3, "gone-on-version"))).toBe(Ename.NotFound);
  });

  it("refuses ORCLOSE without write permission in the parent (O3)", async () => {
    const c = await setup("9P2000", "bob"); // dir/sub is 0755 glenda
    expect(ename(await openPath(c, 1, ["dir", "sub", "leaf"], OREAD | ORCLOSE))).toBe(Ename.Perm);
    expect((await openPath(c, 2, ["dir", "sub", "leaf"], OREAD)).type).toBe(MsgType.Ropen);
  });

  it("requires every requested permission bit", async () => {
    const c = await setup(); // glenda: "other" for ownedbyother (0644 bob)
    expect((await openPath(c, 1, ["ownedbyother"], OREAD)).type).toBe(MsgType.Ropen);
    expect(ename(await openPath(c, 2, ["ownedbyother"], ORDWR))).toBe(Ename.Perm);
    expect(ename(await openPath(c, 3, ["ownedbyother"], OREAD | OTRUNC))).toBe(Ename.Perm);
    const other = await connect("9P2000", "mallory");
    expect(ename(await openPath(other, 1, ["secret"], OREAD))).toBe(Ename.Perm);
    // Walking needs search permission (W4): noexec is 0666.
    expect((await other.walk(0, 2, "noexec")).type).toBe(MsgType.Rwalk);
    expect(ename(await other.walk(2, 3, "hidden"))).toBe(Ename.Perm);
  });

  it("truncates with OTRUNC", async () => {
    const c = await setup();
    expect((await openPath(c, 1, ["data"], OWRITE | OTRUNC)).type).toBe(MsgType.Ropen);
    const s = await c.stat(1);
    expect(s.length).toBe(0n);
  });

  it("validates Tcreate (O6): names, existing files, directories, non-directories, permissions", async () => {
    const c = await setup();
    const tryCreate = async (name: string, perm: number, mode: number, dir = ["dir"]) => {
      const w = await c.walk(0, 1, ...dir);
      expect(w.type).toBe(MsgType.Rwalk);
      const r = await c.call({ type: MsgType.Tcreate, fid: 1, name, perm, mode });
      await c.call({ type: MsgType.Tclunk, fid: 1 });
      return r;
    };
    expect(ename(await tryCreate("sub", 0o644, OWRITE))).toBe(Ename.Exists);
    expect(ename(await tryCreate(".", 0o644, OWRITE))).toBe(Ename.Exists);
    expect(ename(await tryCreate("..", 0o644, OWRITE))).toBe(Ename.Exists);
    expect(ename(await tryCreate("a/b", 0o644, OWRITE))).toBe("illegal file name");
    expect(ename(await tryCreate("d", DMDIR | 0o755, OWRITE))).toBe(Ename.IsDir);
    expect(ename(await tryCreate("x", 0o644, OWRITE, ["hello"]))).toBe(Ename.CreateNoDir);
    expect(ename(await tryCreate("x", 0o644, OWRITE, ["empty"]))).toBe(Ename.CreateProhibited);
    const other = await connect("9P2000", "mallory");
    await other.walk(0, 1, "dir", "sub");
    expect(
      ename(await other.call({ type: MsgType.Tcreate, fid: 1, name: "x", perm: 0o644, mode: OWRITE })),
    ).toBe(Ename.CreateProhibited);
  });

  it("makes the created file the fid's open file, writable whatever its permissions (O6)", async () => {
    const c = await setup();
    await c.walk(0, 1, "dir");
    const r = await c.call({ type: MsgType.Tcreate, fid: 1, name: "ro", perm: 0o444, mode: ORDWR });
    expect(r.type).toBe(MsgType.Rcreate);
    const w = await c.call({ type: MsgType.Twrite, fid: 1, offset: 0n, data: Buffer.from("written") });
    expect(w).toMatchObject({ type: MsgType.Rwrite, count: 7 });
    expect(await readText(c, 1)).toBe("written");
    const s = await c.stat(1);
    expect(s.name).toBe("ro");
    expect(s.mode).toBe(0o444);
    if (r.type === MsgType.Rcreate) expect(s.qid.path).toBe(r.qid.path);
    // A directory is made with DMDIR and OREAD and is listed by its parent.
    await c.walk(0, 2, "dir");
    const d = await c.call({
      type: MsgType.Tcreate,
      fid: 2,
      name: "newdir",
      perm: DMDIR | 0o755,
      mode: OREAD,
    });
    expect(d.type).toBe(MsgType.Rcreate);
    if (d.type === MsgType.Rcreate) expect(d.qid.type).toBe(0x80);
  });
});

describe("create permissions", () => {
  it("limits a new file's permissions by its directory's (O6)", async () => {
    const root = new SynthDir("/", {
      mode: 0o750,
      uid: "glenda",
      create: (req, ctx) =>
        (req.perm & DMDIR) !== 0
          ? new SynthDir(req.name, { mode: req.perm & 0o777, uid: ctx.user.uname })
          : new BytesFile(req.name, "", { mode: req.perm & 0o777, uid: ctx.user.uname }),
    });
    const server = new Server({ backend: treeBackend(root) });
    servers.push(server);
    const c = await RawClient.connect(await server.listen("tcp!127.0.0.1!0"));
    clients.push(c);
    await c.version(8216, "9P2000");
    await c.attach(0);
    await c.walk(0, 1);
    expect((await c.call({ type: MsgType.Tcreate, fid: 1, name: "f", perm: 0o666, mode: OWRITE })).type).toBe(
      MsgType.Rcreate,
    );
    expect((await c.stat(1)).mode).toBe(0o640);
    await c.walk(0, 2);
    await c.call({ type: MsgType.Tcreate, fid: 2, name: "d", perm: (DMDIR | 0o777) >>> 0, mode: OREAD });
    expect((await c.stat(2)).mode).toBe((DMDIR | 0o750) >>> 0);
  });
});

describe("read and write", () => {
  it("refuses writes on fids open for reading and on directories; reads on fids open for writing", async () => {
    const c = await setup();
    await openPath(c, 1, ["data"], OREAD);
    expect(ename(await c.call({ type: MsgType.Twrite, fid: 1, offset: 0n, data: Buffer.from("x") }))).toBe(
      Ename.Perm,
    );
    await openPath(c, 2, ["data"], OWRITE);
    expect(ename(await c.call({ type: MsgType.Tread, fid: 2, offset: 0n, count: 1 }))).toBe(Ename.Perm);
    await openPath(c, 3, ["dir"], OREAD);
    expect(ename(await c.call({ type: MsgType.Twrite, fid: 3, offset: 0n, data: Buffer.from("x") }))).toBe(
      Ename.IsDir,
    );
  });

  it("writes at offsets and bumps qid.vers", async () => {
    const c = await setup();
    await openPath(c, 1, ["data"], ORDWR);
    const before = await c.stat(1);
    expect(
      await c.call({ type: MsgType.Twrite, fid: 1, offset: 12n, data: Buffer.from("AB") }),
    ).toMatchObject({
      count: 2,
    });
    expect(await readText(c, 1)).toBe("0123456789\0\0AB");
    const after = await c.stat(1);
    expect(after.qid.version).toBeGreaterThan(before.qid.version);
    expect(after.muid).toBe("glenda");
  });

  it("gives each fid of a generated file its own snapshot so offsets stay consistent", async () => {
    const c = await setup();
    await openPath(c, 1, ["counter"], OREAD);
    await openPath(c, 2, ["counter"], OREAD);
    const a = (await readText(c, 1, 0n, 100)) + (await readText(c, 1, 100n, 10_000));
    const b = await readText(c, 2, 0n, 10_000);
    expect(a.startsWith("generation 1")).toBe(true);
    expect(b.startsWith("generation 2")).toBe(true);
    expect(a.length).toBe(b.length);
    expect(await readText(c, 1, BigInt(a.length), 100)).toBe("");
  });

  it("answers a handler crash with a generic error, logs it, and keeps serving", async () => {
    const logged: unknown[] = [];
    const logger = {
      debug() {},
      info() {},
      warn() {},
      error: (o: unknown, m?: string) => void logged.push([o, m]),
    };
    const c = await setup("9P2000", "glenda", { logger });
    await openPath(c, 1, ["crash"], OREAD);
    expect(ename(await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 10 }))).toBe(Ename.Io);
    expect(JSON.stringify(logged)).toContain("boom");
    await c.stat(0);
  });

  it("runs ctl commands and reports unknown commands and usage errors", async () => {
    const c = await setup();
    await openPath(c, 1, ["ctl"], OWRITE);
    const w = (s: string) => c.call({ type: MsgType.Twrite, fid: 1, offset: 0n, data: Buffer.from(s) });
    expect((await w("ping\necho a 'b c' 'it''s'\n")).type).toBe(MsgType.Rwrite);
    expect(fx!.ctlLog).toEqual(["ping", "a|b c|it's"]);
    expect(ename(await w("frob 1"))).toBe("unknown command 'frob'");
    expect(ename(await w("echo"))).toBe("usage: echo text...");
    expect(ename(await w("ping extra"))).toBe("usage: ping");
    expect(ename(await w("fail"))).toBe(Ename.Perm);
  });
});

describe("remove, stat and wstat", () => {
  it("clunks the fid even when Tremove fails (C2)", async () => {
    const c = await setup("9P2000", "mallory"); // no write permission in dir/sub (0755 glenda)
    await c.walk(0, 1, "dir", "sub", "leaf");
    expect(ename(await c.call({ type: MsgType.Tremove, fid: 1 }))).toBe(Ename.Perm);
    expect(ename(await c.call({ type: MsgType.Tclunk, fid: 1 }))).toBe(Ename.UnknownFid);
  });

  it("removes files and refuses non-empty directories", async () => {
    const c = await setup();
    await c.walk(0, 1, "dir", "sub");
    expect(ename(await c.call({ type: MsgType.Tremove, fid: 1 }))).toBe(Ename.NotEmpty);
    await c.walk(0, 2, "dir", "sub", "leaf");
    expect((await c.call({ type: MsgType.Tremove, fid: 2 })).type).toBe(MsgType.Rremove);
    await c.walk(0, 3, "dir", "sub");
    expect(ename(await c.walk(3, 4, "leaf"))).toBe(Ename.NotFound);
  });

  it("applies wstat atomically: a rename with an illegal DMDIR flip changes nothing (S4)", async () => {
    const c = await setup();
    await c.walk(0, 1, "data");
    const r = await c.call({
      type: MsgType.Twstat,
      fid: 1,
      stat: dontTouchStat({ name: "renamed", mode: DMDIR | 0o666 }),
    });
    expect(r.type).toBe(MsgType.Rerror);
    expect((await c.stat(1)).name).toBe("data");
    const r2 = await c.call({ type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ name: "hello" }) });
    expect(ename(r2)).toBe(Ename.Exists);
    const r3 = await c.call({
      type: MsgType.Twstat,
      fid: 1,
      stat: dontTouchStat({ name: "renamed", length: 3n, mode: 0o640 }),
    });
    expect(r3.type).toBe(MsgType.Rwstat);
    const s = await c.stat(1);
    expect([s.name, s.length, s.mode]).toEqual(["renamed", 3n, 0o640]);
    expect((await c.walk(0, 2, "renamed")).type).toBe(MsgType.Rwalk);
  });

  it("refuses wstat of uid, of qid/type/dev, and mode changes by non-owners (S2)", async () => {
    const c = await setup();
    await c.walk(0, 1, "data");
    expect(ename(await c.call({ type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ uid: "bob" }) }))).toBe(
      Ename.WstatProhibited,
    );
    expect(ename(await c.call({ type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ type: 1 }) }))).toBe(
      Ename.WstatProhibited,
    );
    expect(
      ename(
        await c.call({
          type: MsgType.Twstat,
          fid: 1,
          stat: dontTouchStat({ qid: { type: 0, version: 0, path: 1n } }),
        }),
      ),
    ).toBe(Ename.WstatProhibited);
    const other = await connect("9P2000", "mallory");
    await other.walk(0, 1, "data");
    expect(
      ename(await other.call({ type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ mode: 0o777 }) })),
    ).toBe(Ename.Perm);
  });

  it("answers an Rstat that would not fit in msize with an error, and a too-small directory read with 'i/o count too small' (E3, D3)", async () => {
    const root = new SynthDir("/", { mode: 0o555 });
    root.add(staticFile("big", "x", { uid: "u".repeat(400) }));
    const server = new Server({ backend: treeBackend(root) });
    servers.push(server);
    const c = await RawClient.connect(await server.listen("tcp!127.0.0.1!0"));
    clients.push(c);
    await c.version(256, "9P2000");
    await c.attach(0);
    expect((await c.walk(0, 1, "big")).type).toBe(MsgType.Rwalk);
    expect(ename(await c.call({ type: MsgType.Tstat, fid: 1 }))).toBe("reply too large for msize");
    expect((await c.call({ type: MsgType.Topen, fid: 0, mode: OREAD })).type).toBe(MsgType.Ropen);
    expect(ename(await c.call({ type: MsgType.Tread, fid: 0, offset: 0n, count: 232 }))).toBe(Ename.Short);
    // The connection is still fine.
    expect((await c.call({ type: MsgType.Tclunk, fid: 1 })).type).toBe(MsgType.Rclunk);
  });

  it("cuts an error string that does not fit in msize or in a 9P string, at a character boundary, and still answers (E3)", async () => {
    let text = "";
    const root = new SynthDir("/", { mode: 0o555 });
    root.add(
      new SynthFile("refuse", {
        mode: 0o666,
        write: () => {
          throw new FsError(text, 5);
        },
      }),
    );
    const server = new Server({ backend: treeBackend(root) });
    servers.push(server);
    const address = await server.listen("tcp!127.0.0.1!0");
    for (const [version, room] of [
      ["9P2000", 8216 - 9],
      ["9P2000.u", 8216 - 13],
    ] as const) {
      const c = await RawClient.connect(address);
      clients.push(c);
      await c.version(8216, version);
      await c.attach(0);
      expect((await c.walk(0, 1, "refuse")).type).toBe(MsgType.Rwalk);
      expect((await c.call({ type: MsgType.Topen, fid: 1, mode: OWRITE })).type).toBe(MsgType.Ropen);
      // "é" is two bytes: a cut that would split one leaves the whole character out.
      const cases: [string, string][] = [
        ["x".repeat(room), "x".repeat(room)],
        ["x".repeat(room + 1), "x".repeat(room)],
        [`${"x".repeat(room - 1)}é`, "x".repeat(room - 1)],
        ["y".repeat(70_000), "y".repeat(room)],
      ];
      for (const [given, expected] of cases) {
        text = given;
        const r = await c.call({ type: MsgType.Twrite, fid: 1, offset: 0n, data: Buffer.from("w") });
        expect(ename(r)).toBe(expected);
      }
    }
  });
});

describe("errors per dialect (E1) and 9P2000.L", () => {
  it("sends no errno on 9P2000, an errno on 9P2000.u and Rlerror on 9P2000.L", async () => {
    fx = await startFixture();
    const plain = await connect("9P2000");
    const tag = plain.tag();
    plain.send({ type: MsgType.Tstat, tag, fid: 99 });
    await plain.reply(tag);
    const u = await connect("9P2000.u");
    expect(await u.call({ type: MsgType.Tstat, fid: 99 })).toMatchObject({
      ename: Ename.UnknownFid,
      errno: 9,
    });
    const l = await connect("9P2000.L");
    expect(await l.call({ type: MsgType.Tgetattr, fid: 99, request_mask: 0x7ffn })).toEqual({
      type: MsgType.Rlerror,
      tag: expect.any(Number),
      ecode: 9,
    });
    // The 9P2000 Rerror is exactly size[4] type[1] tag[2] ename[s]: no trailing errno.
    const raw = await new Promise<Buffer>((resolve) => {
      const chunks: Buffer[] = [];
      plain.stream.on("data", (b: Buffer) => {
        chunks.push(b);
        const all = Buffer.concat(chunks);
        if (all.length >= 4 && all.length >= all.readUInt32LE(0)) resolve(all);
      });
      plain.send({ type: MsgType.Tstat, tag: 5, fid: 98 });
    });
    expect(raw.readUInt32LE(0)).toBe(7 + 2 + Buffer.byteLength(Ename.UnknownFid));
  });

  it("serves a synthetic tree over 9P2000.L with derived getattr, lopen and readdir", async () => {
    fx = await startFixture();
    const c = await connect("9P2000.L");
    const ga = await c.call({ type: MsgType.Tgetattr, fid: 0, request_mask: 0x7ffn });
    expect(ga).toMatchObject({ type: MsgType.Rgetattr, mode: 0o040777 });
    await c.walk(0, 1, "dir");
    expect((await c.call({ type: MsgType.Tlopen, fid: 1, flags: 0 })).type).toBe(MsgType.Rlopen);
    const names: string[] = [];
    let offset = 0n;
    for (;;) {
      const r = await c.call({ type: MsgType.Treaddir, fid: 1, offset, count: 100 });
      if (r.type !== MsgType.Rreaddir) throw new Error(JSON.stringify(r));
      if (r.data.length === 0) break;
      const { decodeDirents } = await import("../../src/codec/dirent.js");
      const ents = decodeDirents(r.data);
      names.push(...ents.map((e) => e.name));
      offset = ents.at(-1)!.offset;
    }
    expect(names.length).toBe(26);
    expect(new Set(names).size).toBe(26);
    // Tread on a directory is not allowed in .L; an unimplemented method is EOPNOTSUPP.
    expect(await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 100 })).toMatchObject({
      ecode: 21,
    });
    expect(await c.call({ type: MsgType.Tsymlink, fid: 0, name: "l", symtgt: "x", gid: 0 })).toMatchObject({
      ecode: 95,
    });
    await c.walk(0, 2, "hello");
    expect((await c.call({ type: MsgType.Tlopen, fid: 2, flags: 0 })).type).toBe(MsgType.Rlopen);
    expect(await readText(c, 2)).toBe("hello, world\n");
  });

  it("answers 9P2000.L messages on a 9P2000 connection with 'unknown message'", async () => {
    const c = await setup();
    const tag = 33;
    c.sendRaw(encode({ type: MsgType.Tgetattr, tag, fid: 0, request_mask: 1n }, "9P2000.L"));
    expect(ename(await c.reply(tag))).toBe(Ename.UnknownMessage);
  });

  it("does not offer 9P2000.L for a backend without it", async () => {
    const server = new Server({ backend: treeBackend(new SynthDir("/")) });
    servers.push(server);
    const c = await RawClient.connect(await server.listen("tcp!127.0.0.1!0"));
    clients.push(c);
    expect((await c.version(8192, "9P2000.L")).version).toBe("9P2000");
    expect((await c.version(8192, "9P2000.u")).version).toBe("9P2000.u");
  });
});

describe("auth (A3, A4)", () => {
  function authBackend(): Backend {
    const root = new SynthDir("/", { mode: 0o555 });
    root.add(staticFile("f", "secret stuff"));
    return {
      auth: async (user) => {
        let ok = false;
        const af: AuthFile = {
          qid: { type: QTAUTH, version: 0, path: 999999n },
          read: async () => Buffer.from("say the word"),
          write: async (_o, data) => {
            ok = Buffer.from(data).toString() === "please";
            return data.length;
          },
          authenticated: (who) => ok && who.uname === user.uname && who.aname === user.aname,
        };
        return af;
      },
      attach: async (req) => {
        if (!req.auth) throw new FsError("authentication required");
        return root;
      },
    };
  }

  it("runs Tauth, refuses unfinished or foreign afids, then attaches", async () => {
    const server = new Server({ backend: authBackend() });
    servers.push(server);
    const c = await RawClient.connect(await server.listen("tcp!127.0.0.1!0"));
    clients.push(c);
    await c.version(8192, "9P2000");
    const ra = await c.call({ type: MsgType.Tauth, afid: 5, uname: "glenda", aname: "" });
    expect(ra.type).toBe(MsgType.Rauth);
    if (ra.type === MsgType.Rauth) expect(ra.aqid.type & QTAUTH).toBe(QTAUTH);
    const att = (afid: number, uname = "glenda", fid = 0) =>
      c.call({ type: MsgType.Tattach, fid, afid, uname, aname: "" });
    expect(ename(await att(NOFID))).toBe("authentication required");
    expect(ename(await att(5))).toBe(Ename.AuthFailed);
    expect(ename(await att(77))).toBe(Ename.UnknownFid);
    expect((await c.call({ type: MsgType.Tread, fid: 5, offset: 0n, count: 100 })).type).toBe(MsgType.Rread);
    expect(
      (await c.call({ type: MsgType.Twrite, fid: 5, offset: 0n, data: Buffer.from("please") })).type,
    ).toBe(MsgType.Rwrite);
    expect(ename(await att(5, "mallory"))).toBe(Ename.AuthFailed);
    expect((await att(5)).type).toBe(MsgType.Rattach);
    expect((await att(5, "glenda", 1)).type).toBe(MsgType.Rattach); // one afid, several attaches
    const st = await c.stat(5);
    expect(st.mode & DMAUTH).toBe(DMAUTH);
    // Clunking the auth fid frees its number (section 10: xcpufs 1.2.3 kept it taken).
    expect((await c.call({ type: MsgType.Tclunk, fid: 5 })).type).toBe(MsgType.Rclunk);
    expect((await c.call({ type: MsgType.Tauth, afid: 5, uname: "glenda", aname: "" })).type).toBe(
      MsgType.Rauth,
    );
    // An attach fid is not an auth fid.
    expect(ename(await att(0, "glenda", 2))).toBe("not an auth fid");
    expect(ename(await c.walk(5, 6))).toBe("operation not allowed on an auth fid");
  });

  it("keeps few auth fids per connection and few connections that have not attached", async () => {
    const server = new Server({
      backend: authBackend(),
      maxAuthFidsPerConnection: 2,
      maxUnattachedPerAddress: 3,
    });
    servers.push(server);
    const addr = await server.listen("tcp!127.0.0.1!0");
    const c = await RawClient.connect(addr);
    clients.push(c);
    await c.version(8192, "9P2000");
    const tauth = (afid: number) => c.call({ type: MsgType.Tauth, afid, uname: "glenda", aname: "" });
    expect((await tauth(1)).type).toBe(MsgType.Rauth);
    expect((await tauth(2)).type).toBe(MsgType.Rauth);
    expect(ename(await tauth(3))).toBe("too many authentication fids");
    expect((await c.call({ type: MsgType.Tclunk, fid: 1 })).type).toBe(MsgType.Rclunk);
    expect((await tauth(3)).type).toBe(MsgType.Rauth);
    // two more unattached connections are served; a fourth is closed at once
    const more = [await RawClient.connect(addr), await RawClient.connect(addr)];
    clients.push(...more);
    for (const m of more) expect((await m.version(8192, "9P2000")).version).toBe("9P2000");
    const over = await RawClient.connect(addr);
    clients.push(over);
    await expect(over.version(8192, "9P2000")).rejects.toThrow();
    // once one attaches, there is room again
    await c.call({ type: MsgType.Twrite, fid: 2, offset: 0n, data: Buffer.from("please") });
    expect((await c.call({ type: MsgType.Tattach, fid: 0, afid: 2, uname: "glenda", aname: "" })).type).toBe(
      MsgType.Rattach,
    );
    const next = await RawClient.connect(addr);
    clients.push(next);
    expect((await next.version(8192, "9P2000")).version).toBe("9P2000");
  });

  it("answers Tauth with an error when the backend needs no authentication", async () => {
    const c = await setup();
    expect(ename(await c.call({ type: MsgType.Tauth, afid: 7, uname: "glenda", aname: "" }))).toBe(
      "ninep: authentication not required",
    );
  });
});

describe("version negotiation edge cases", () => {
  it("answers a request tagged NOTAG with Rerror (T1: NOTAG is only for Tversion); the connection goes on", async () => {
    fx = await startFixture();
    const c = await connect();
    c.send({ type: MsgType.Tstat, tag: NOTAG, fid: 0 });
    const r = await c.reply(NOTAG);
    expect(r).toMatchObject({ type: MsgType.Rerror, ename: "tag NOTAG is only for Tversion" });
    expect((await c.call({ type: MsgType.Tstat, fid: 0 })).type).toBe(MsgType.Rstat);
  });

  it("refuses requests before Tversion and keeps the first Tversion's NOTAG", async () => {
    fx = await startFixture();
    const c = await RawClient.connect(fx.addr);
    clients.push(c);
    expect(ename(await c.call({ type: MsgType.Tattach, fid: 0, afid: NOFID, uname: "u", aname: "" }))).toBe(
      Ename.Botch,
    );
    const v = await c.version(1 << 30, "9P2000.u");
    expect(v.tag).toBe(NOTAG);
    expect(v.msize).toBe(1024 * 1024 + 24);
  });

  it("refuses frames larger than the negotiated msize by closing the connection", async () => {
    const c = await setup();
    const d = await connect();
    const big = encode(
      { type: MsgType.Twrite, tag: 1, fid: 0, offset: 0n, data: Buffer.alloc(9000) },
      "9P2000",
    );
    c.sendRaw(big);
    await c.waitClosed();
    await d.stat(0);
  });
});

describe("version pipelining", () => {
  it("processes requests pipelined behind a Tversion after the Rversion, each fid in order", async () => {
    fx = await startFixture();
    const c = await RawClient.connect(fx.addr);
    clients.push(c);
    c.sendRaw(
      Buffer.concat([
        encode({ type: MsgType.Tversion, tag: NOTAG, msize: 8216, version: "9P2000" }, "9P2000"),
        encode({ type: MsgType.Tattach, tag: 1, fid: 0, afid: NOFID, uname: "glenda", aname: "" }, "9P2000"),
        encode({ type: MsgType.Twalk, tag: 2, fid: 0, newfid: 1, wname: ["hello"] }, "9P2000"),
        encode({ type: MsgType.Tstat, tag: 3, fid: 1 }, "9P2000"),
        encode({ type: MsgType.Topen, tag: 4, fid: 1, mode: OREAD }, "9P2000"),
        encode({ type: MsgType.Tread, tag: 5, fid: 1, offset: 0n, count: 100 }, "9P2000"),
        encode({ type: MsgType.Tclunk, tag: 6, fid: 1 }, "9P2000"),
        encode({ type: MsgType.Tstat, tag: 7, fid: 1 }, "9P2000"),
      ]),
    );
    // Requests naming a fid wait for the earlier requests that create or change it.
    expect((await c.reply(3)).type).toBe(MsgType.Rstat);
    const rd = await c.reply(5);
    expect(rd.type === MsgType.Rread && Buffer.from(rd.data).toString()).toBe("hello, world\n");
    expect((await c.reply(6)).type).toBe(MsgType.Rclunk);
    expect(ename(await c.reply(7))).toBe(Ename.UnknownFid);
    expect(c.log.slice(0, 3).map((m) => m.type)).toEqual([MsgType.Rversion, MsgType.Rattach, MsgType.Rwalk]);
  });

  it("answers Tversion without waiting for a handler that ignores its abort signal", async () => {
    // The handler finishes only when told to, and the flush timeout is far beyond the test's own
    // timeout: an Rversion that waited for either would never come.
    const c = await setup("9P2000", "glenda", { flushTimeoutMs: 3_600_000 });
    await openPath(c, 1, ["stubborn"], OREAD);
    c.send({ type: MsgType.Tread, tag: 9, fid: 1, offset: 0n, count: 10 });
    await expect.poll(() => fx!.stubborn()).toBe(1);
    await c.version(8216, "9P2000");
    expect(fx!.stubborn()).toBe(1);
    fx!.finishStubborn("late");
    await c.version(8216, "9P2000"); // a late reply would come before this one
    expect(c.log.some((m) => m.tag === 9)).toBe(false);
  });
});

describe("lifecycle", () => {
  it("close() lets finished work through, aborts blocked requests after the grace period and closes connections", async () => {
    fx = await startFixture();
    const c = await connect();
    await openPath(c, 1, ["block"], OREAD);
    c.send({ type: MsgType.Tread, tag: 50, fid: 1, offset: 0n, count: 10 });
    await expect.poll(() => fx!.blocked()).toBe(1);
    expect(fx.server.connectionCount).toBe(1);
    await fx.server.close(50);
    await c.waitClosed();
    expect(fx.blocked()).toBe(0);
    expect(fx.clunks).toBe(1);
    expect(fx.server.connectionCount).toBe(0);
    fx = undefined;
  });

  it("closes connections that never send Tversion (handshakeTimeoutMs) and idle ones (idleTimeoutMs)", async () => {
    // Each timeout gets a server of its own: a short handshake or idle timeout could also close a
    // connection whose client is merely slow between two messages of its handshake.
    fx = await startFixture({ handshakeTimeoutMs: 100 });
    const silent = await RawClient.connect(fx.addr);
    clients.push(silent);
    await silent.waitClosed(10_000);
    await fx.close();
    fx = await startFixture({ idleTimeoutMs: 1500 });
    const idle = await connect();
    await idle.waitClosed(10_000);
  });

  it("reads a Tversion that came in time before its handshake timeout decides, after a stalled loop", async () => {
    fx = await startFixture({ handshakeTimeoutMs: 50 });
    const c = await RawClient.connect(fx.addr);
    clients.push(c);
    await expect.poll(() => fx!.server.connectionCount).toBe(1);
    // The Tversion leaves at once; the stall keeps the server from reading it until its 50 ms
    // handshake timer is due as well.
    const reply = c.version(8216, "9P2000");
    // The attach that ends the handshake leaves with it.
    c.send({ type: MsgType.Tattach, tag: 1, fid: 0, afid: NOFID, uname: "glenda", aname: "" });
    const end = Date.now() + 300;
    while (Date.now() < end) {}
    expect((await reply).version).toBe("9P2000");
    expect((await c.reply(1)).type).toBe(MsgType.Rattach);
    await new Promise((r) => setTimeout(r, 200));
    expect(c.closed).toBe(false);
  });

  it("closes a connection that negotiated a version but never attached (handshakeTimeoutMs)", async () => {
    fx = await startFixture({ handshakeTimeoutMs: 200 });
    const lingering = await RawClient.connect(fx.addr);
    clients.push(lingering);
    await lingering.version(8216, "9P2000");
    await lingering.waitClosed(10_000);
    // One that attached stays past the limit. Its Tattach leaves with its Tversion: waiting for
    // the Rversion first could take the whole limit on a stalled loop.
    const attached = await RawClient.connect(fx.addr);
    clients.push(attached);
    const negotiated = attached.version(8216, "9P2000");
    attached.send({ type: MsgType.Tattach, tag: 1, fid: 0, afid: NOFID, uname: "glenda", aname: "" });
    await negotiated;
    expect((await attached.reply(1)).type).toBe(MsgType.Rattach);
    await new Promise((r) => setTimeout(r, 500));
    expect(attached.closed).toBe(false);
    // Until a second Tversion takes its fids away: then it must attach again within the limit.
    await attached.version(8216, "9P2000");
    await attached.waitClosed(10_000);
  });

  it("answers a request before Tversion with a plain botch, whatever its body", async () => {
    fx = await startFixture();
    const c = await RawClient.connect(fx.addr);
    clients.push(c);
    // A 9P2000.u Tattach (n_uname at the end) would read as 9P2000 with trailing bytes.
    c.dialect = Dialect.P2000u;
    c.send({ type: MsgType.Tattach, tag: 1, fid: 0, afid: NOFID, uname: "u", aname: "", n_uname: 5 });
    c.dialect = Dialect.P2000; // the reply: no session, no errno
    expect(ename(await c.reply(1))).toBe(Ename.Botch);
  });

  it("reads a request that came in time before its idle timeout decides, after a stalled loop", async () => {
    // A second: a slow client is not closed between the messages of its handshake.
    fx = await startFixture({ idleTimeoutMs: 1000 });
    const c = await connect();
    // The Tstat leaves in time; the stall keeps the server from reading it until its idle timer
    // is due as well. The request came before the deadline: it is answered.
    c.send({ type: MsgType.Tstat, tag: 5, fid: 0 });
    const end = Date.now() + 1300;
    while (Date.now() < end) {}
    expect((await c.reply(5)).type).toBe(MsgType.Rstat);
    expect(c.closed).toBe(false);
  });

  it("keeps an idle-timed connection open while a request is outstanding", async () => {
    // Seconds, so that a slow client is not closed between the messages of its handshake.
    fx = await startFixture({ idleTimeoutMs: 1500 });
    const c = await connect();
    await openPath(c, 1, ["block"], OREAD);
    c.send({ type: MsgType.Tread, tag: 77, fid: 1, offset: 0n, count: 10 });
    await expect.poll(() => fx!.blocked()).toBe(1);
    await new Promise((r) => setTimeout(r, 3500)); // more than two idle timeouts
    expect(c.closed).toBe(false);
    fx.release("done");
    expect((await c.reply(77)).type).toBe(MsgType.Rread);
    await c.waitClosed(10_000);
  });

  it("validates its options and parses listen addresses", async () => {
    const backend = treeBackend(new SynthDir("/"));
    expect(() => new Server({ backend, maxMsize: 100 })).toThrow(RangeError);
    expect(() => new Server({ backend, maxFidsPerConnection: 0 })).toThrow(RangeError);
    expect(() => new Server({ backend, dialects: ["9P2000.L"] })).toThrow(RangeError);
    expect(() => new Server({} as never)).toThrow(TypeError);
    const server = new Server({ backend });
    servers.push(server);
    await expect(server.listen("tcp!127.0.0.1!notaport")).rejects.toThrow("bad port");
    const a = await server.listen("127.0.0.1:0");
    expect(a).toMatchObject({ network: "tcp", host: "127.0.0.1" });
    const b = await server.listen("[::1]:0").catch(() => undefined); // no IPv6 here: skip
    if (b) {
      const c = await RawClient.connect(b);
      clients.push(c);
      expect((await c.version(8216, "9P2000")).version).toBe("9P2000");
    }
    expect(server.addresses().length).toBe(b ? 2 : 1);
  });

  it("traces one line per message in and out", async () => {
    const lines: string[] = [];
    const c = await setup("9P2000", "glenda", { trace: (l: string) => lines.push(l) });
    await c.stat(0);
    expect(lines.some((l) => /<- Tstat/.test(l))).toBe(true);
    expect(lines.some((l) => /-> Rstat/.test(l))).toBe(true);
    expect(lines.some((l) => /<- Tversion/.test(l))).toBe(true);
  });

  it("serves 200 concurrent connections", async () => {
    fx = await startFixture();
    const conns = await Promise.all(Array.from({ length: 200 }, () => connect()));
    expect(fx.server.connectionCount).toBe(200);
    await Promise.all(
      conns.map(async (c, i) => {
        await openPath(c, 1, ["hello"], OREAD);
        expect(await readText(c, 1)).toBe("hello, world\n");
        expect((await c.walk(0, 2, "dir", `entry-${"x".repeat((i % 25) % 7)}-${i % 25}`)).type).toBe(
          MsgType.Rwalk,
        );
      }),
    );
    for (const c of conns) c.destroy();
    await expect.poll(() => fx!.server.connectionCount).toBe(0);
  });
});

describe("directory listing snapshot", () => {
  it("lists each member once even if the directory changes between small reads", async () => {
    const c = await setup();
    await openPath(c, 1, ["dir"], OREAD);
    const first = await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 150 });
    if (first.type !== MsgType.Rread) throw new Error("read");
    const got = decodeStats(first.data, "9P2000").map((s) => s.name);
    // Add a member mid-listing: the listing keeps its snapshot.
    await c.walk(0, 2, "dir");
    await c.call({ type: MsgType.Tcreate, fid: 2, name: "late", perm: 0o644, mode: OWRITE });
    let offset = BigInt(first.data.length);
    for (;;) {
      const r = await c.call({ type: MsgType.Tread, fid: 1, offset, count: 150 });
      if (r.type !== MsgType.Rread) throw new Error(JSON.stringify(r));
      if (r.data.length === 0) break;
      got.push(...decodeStats(r.data, "9P2000").map((s) => s.name));
      offset += BigInt(r.data.length);
    }
    expect(got.length).toBe(26);
    expect(got).not.toContain("late");
  });
});
