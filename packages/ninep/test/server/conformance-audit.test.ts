// An audit of the server framework against spec/9p.md, rule by rule, with raw frames over real
// sockets to the synthetic-tree fixture: the edge cases rules.test.ts, malformed.test.ts and the
// conformance suite leave out (flushing a flush, duplicate tags of a pending flush, walks moving
// their own fid, append-only truncation, ORCLOSE failures, unknown fids on every request, 9P2000.L
// open-state errors chosen to match diod where the spec leaves the errno open).

import { afterEach, describe, expect, it } from "vitest";
import {
  AT_REMOVEDIR,
  DMAPPEND,
  DMEXCL,
  L_O,
  MsgType,
  NOFID,
  NOTAG,
  OEXEC,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
} from "../../src/codec/constants.js";
import { dontTouchStat } from "../../src/codec/stat.js";
import type { Message } from "../../src/codec/types.js";
import { encode } from "../../src/codec/wire.js";
import { Ename, Errno } from "../../src/errors.js";
import { BytesFile, staticFile } from "../../src/server/index.js";
import { errorOf, RawClient, type Request } from "../../src/testing/raw.js";
import { getlock, lock, lopen, walk } from "../helpers/requests.js";
import { type Fixture, startFixture } from "./fixture.js";

let fx: Fixture | undefined;
const clients: RawClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await fx?.close();
  fx = undefined;
});

/** A fixture (started on first use) and a connection attached as glenda on fid 0. */
async function session(version = "9P2000", opts = {}): Promise<RawClient> {
  fx ??= await startFixture(opts);
  const c = await RawClient.connect(fx.addr);
  clients.push(c);
  const v = await c.version(8192 + 24, version);
  expect(v.version).toBe(version);
  await c.attach(0, "glenda");
  return c;
}

/** Fails the test with the reply when it is not of `type`. */
async function ok(c: RawClient, req: Request, type: number): Promise<Message> {
  const r = await c.call(req, 10_000);
  if (r.type !== type) throw new Error(`expected type ${type}, got ${JSON.stringify(r, bigints)}`);
  return r;
}
const bigints = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

async function err(c: RawClient, req: Request): Promise<string | number | undefined> {
  return errorOf(await c.call(req, 10_000));
}

const open = (fid: number, mode: number): Request => ({ type: MsgType.Topen, fid, mode });
const read = (fid: number, offset = 0n, count = 4096): Request => ({
  type: MsgType.Tread,
  fid,
  offset,
  count,
});
const write = (fid: number, text: string, offset = 0n): Request => ({
  type: MsgType.Twrite,
  fid,
  offset,
  data: Buffer.from(text),
});

async function readText(c: RawClient, fid: number, offset = 0n): Promise<string> {
  const r = await ok(c, read(fid, offset), MsgType.Rread);
  return r.type === MsgType.Rread ? Buffer.from(r.data).toString() : "";
}

describe("version (V2, V3, V6)", () => {
  it("V2: accepts the smallest msize (256) exactly and refuses 255 with Rerror", async () => {
    fx = await startFixture();
    const c = await RawClient.connect(fx.addr);
    clients.push(c);
    c.send({ type: MsgType.Tversion, tag: NOTAG, msize: 255, version: "9P2000" });
    const r = await c.reply(NOTAG);
    expect(r.type).toBe(MsgType.Rerror);
    expect(await c.version(256, "9P2000")).toMatchObject({ tag: NOTAG, msize: 256, version: "9P2000" });
    await c.attach(0);
  });

  it("V3: after Rversion 'unknown' no session exists: the old fids are gone and requests are refused until a good Tversion", async () => {
    const c = await session();
    await ok(c, walk(0, 1, "hello"), MsgType.Rwalk);
    expect(await c.version(8216, "9P3000")).toMatchObject({ tag: NOTAG, version: "unknown" });
    expect(await err(c, { type: MsgType.Tstat, fid: 0 })).toBe(Ename.Botch);
    expect(await err(c, { type: MsgType.Tattach, fid: 5, afid: NOFID, uname: "glenda", aname: "" })).toBe(
      Ename.Botch,
    );
    expect((await c.version(8216, "9P2000")).version).toBe("9P2000");
    await c.attach(0);
    expect(await err(c, { type: MsgType.Tstat, fid: 1 })).toBe(Ename.UnknownFid);
  });

  it("V6: a Tversion drops a pending Tflush too: neither Rflush nor the flushed reply follows the Rversion", async () => {
    const c = await session("9P2000", { flushTimeoutMs: 3_600_000 });
    await ok(c, walk(0, 1, "stubborn"), MsgType.Rwalk);
    await ok(c, open(1, OREAD), MsgType.Ropen);
    c.send({ type: MsgType.Tread, tag: 10, fid: 1, offset: 0n, count: 10 });
    await expect.poll(() => fx!.stubborn(), { timeout: 10_000 }).toBe(1);
    c.send({ type: MsgType.Tflush, tag: 11, oldtag: 10 });
    await c.version(8216, "9P2000");
    fx!.finishStubborn("late");
    await c.attach(0);
    await c.stat(0);
    expect(c.log.some((m) => m.tag === 10 || m.tag === 11)).toBe(false);
  });

  it("V6/O4: a Tversion releases the DMEXCL lock of a file the old session had open", async () => {
    const a = await session();
    const b = await session();
    await ok(a, walk(0, 1, "excl"), MsgType.Rwalk);
    await ok(a, open(1, OREAD), MsgType.Ropen);
    await ok(b, walk(0, 1, "excl"), MsgType.Rwalk);
    expect(await err(b, open(1, OREAD))).toBe(Ename.ExclInUse);
    await a.version(8216, "9P2000");
    await ok(b, open(1, OREAD), MsgType.Ropen);
  });
});

describe("tags and flush (T3, FL1-FL4)", () => {
  it("FL4: flushing a pending Tflush gets Rflush for both, in order, and nothing for the original tag", async () => {
    const c = await session("9P2000", { flushTimeoutMs: 3_600_000 });
    await ok(c, walk(0, 1, "stubborn"), MsgType.Rwalk);
    await ok(c, open(1, OREAD), MsgType.Ropen);
    c.send({ type: MsgType.Tread, tag: 20, fid: 1, offset: 0n, count: 10 });
    await expect.poll(() => fx!.stubborn(), { timeout: 10_000 }).toBe(1);
    c.send({ type: MsgType.Tflush, tag: 21, oldtag: 20 });
    c.send({ type: MsgType.Tflush, tag: 22, oldtag: 21 });
    // The stubborn read ignores its abort: both flushes wait for it (FL3), then answer in order.
    fx!.finishStubborn("done");
    const r22 = await c.reply(22, 10_000);
    const r21 = await c.reply(21, 10_000);
    expect([r21.type, r22.type]).toEqual([MsgType.Rflush, MsgType.Rflush]);
    expect(c.log.indexOf(r21)).toBeLessThan(c.log.indexOf(r22));
    // The read finished before the first Rflush (allowed by FL3) or not at all, never after it.
    const i20 = c.log.findIndex((m) => m.tag === 20);
    if (i20 >= 0) expect(i20).toBeLessThan(c.log.indexOf(r21));
  });

  it("FL2: a Tflush naming its own tag is answered with Rflush at once", async () => {
    const c = await session();
    c.send({ type: MsgType.Tflush, tag: 30, oldtag: 30 });
    expect(await c.reply(30)).toEqual({ type: MsgType.Rflush, tag: 30 });
    await c.stat(0);
  });

  it("T3: a request reusing the tag of a pending Tflush is refused; the flush still completes", async () => {
    const c = await session("9P2000", { flushTimeoutMs: 3_600_000 });
    await ok(c, walk(0, 1, "stubborn"), MsgType.Rwalk);
    await ok(c, open(1, OREAD), MsgType.Ropen);
    c.send({ type: MsgType.Tread, tag: 40, fid: 1, offset: 0n, count: 10 });
    await expect.poll(() => fx!.stubborn(), { timeout: 10_000 }).toBe(1);
    c.send({ type: MsgType.Tflush, tag: 41, oldtag: 40 });
    c.send({ type: MsgType.Tstat, tag: 41, fid: 0 });
    expect(await c.reply(41, 10_000)).toMatchObject({ type: MsgType.Rerror, ename: Ename.DuplicateTag });
    fx!.finishStubborn("done");
    expect((await c.reply(41, 10_000)).type).toBe(MsgType.Rflush);
    await c.stat(0);
  });
});

describe("fids (F2, F4)", () => {
  it("F4: every 9P2000 request naming an unknown fid gets 'unknown fid' and creates nothing", async () => {
    const c = await session();
    const reqs: Request[] = [
      walk(9, 10),
      open(9, OREAD),
      { type: MsgType.Tcreate, fid: 9, name: "x", perm: 0o644, mode: OWRITE },
      read(9),
      write(9, "x"),
      { type: MsgType.Tclunk, fid: 9 },
      { type: MsgType.Tremove, fid: 9 },
      { type: MsgType.Tstat, fid: 9 },
      { type: MsgType.Twstat, fid: 9, stat: dontTouchStat({}) },
    ];
    for (const r of reqs) expect(await err(c, r)).toBe(Ename.UnknownFid);
    expect(await err(c, { type: MsgType.Tstat, fid: 10 })).toBe(Ename.UnknownFid);
  });

  it("F1/F2: NOFID is never accepted as a new fid (attach, walk newfid)", async () => {
    const c = await session();
    expect(
      (await c.call({ type: MsgType.Tattach, fid: NOFID, afid: NOFID, uname: "glenda", aname: "" })).type,
    ).toBe(MsgType.Rerror);
    expect((await c.call(walk(0, NOFID))).type).toBe(MsgType.Rerror);
    expect(await err(c, { type: MsgType.Tstat, fid: NOFID })).toBe(Ename.UnknownFid);
  });

  it("F2: Txattrwalk to an in-use newfid is refused and the existing fid is left as it was (.L)", async () => {
    const c = await session("9P2000.L");
    await ok(c, walk(0, 1, "hello"), MsgType.Rwalk);
    await ok(c, lopen(1, L_O.RDONLY), MsgType.Rlopen);
    expect(await err(c, { type: MsgType.Txattrwalk, fid: 0, newfid: 1, name: "" })).toBe(Errno.EBADF);
    expect(await readText(c, 1)).toBe("hello, world\n");
  });
});

describe("walk (W1-W7)", () => {
  it("W1/W6: newfid == fid moves the fid on a full walk and leaves it in place on a partial one", async () => {
    const c = await session();
    expect(await c.call(walk(0, 0, "dir", "nope"))).toMatchObject({
      type: MsgType.Rwalk,
      wqid: [expect.anything()],
    });
    expect((await c.stat(0)).name).toBe("/");
    await ok(c, walk(0, 0, "dir", "sub"), MsgType.Rwalk);
    expect((await c.stat(0)).name).toBe("sub");
  });

  it("W2: an open fid cannot be walked even onto itself with no names, and stays open", async () => {
    const c = await session();
    await ok(c, walk(0, 1, "hello"), MsgType.Rwalk);
    await ok(c, open(1, OREAD), MsgType.Ropen);
    expect(await err(c, walk(1, 1))).toBe(Ename.AlreadyOpen);
    expect(await err(c, walk(1, 2))).toBe(Ename.AlreadyOpen);
    expect(await readText(c, 1)).toBe("hello, world\n");
    expect(await err(c, { type: MsgType.Tclunk, fid: 2 })).toBe(Ename.UnknownFid);
  });

  it("W5/W6: a 16-name walk failing at the 10th name returns 9 qids and creates no newfid", async () => {
    const c = await session();
    const names = ["dir", "..", "dir", "..", "dir", "..", "dir", "..", "dir", "nope"];
    while (names.length < 16) names.push("..");
    const r = await ok(c, walk(0, 1, ...names), MsgType.Rwalk);
    expect(r.type === MsgType.Rwalk && r.wqid.length).toBe(9);
    expect(await err(c, { type: MsgType.Tstat, fid: 1 })).toBe(Ename.UnknownFid);
  });

  it("W4: nwname 0 clones a file fid; any name from a file is 'walk in non-directory'", async () => {
    const c = await session();
    await ok(c, walk(0, 1, "hello"), MsgType.Rwalk);
    expect(await c.call(walk(1, 2))).toMatchObject({ type: MsgType.Rwalk, wqid: [] });
    expect((await c.stat(2)).name).toBe("hello");
    expect(await err(c, walk(1, 3, "x"))).toBe(Ename.WalkNoDir);
  });

  it("W7/S1: '..' from a member climbs back to the root, which stats as '/'", async () => {
    const c = await session();
    const r = await ok(c, walk(0, 1, "dir", ".."), MsgType.Rwalk);
    const root = await c.stat(0);
    if (r.type === MsgType.Rwalk) expect(r.wqid[1]).toEqual(root.qid);
    expect((await c.stat(1)).name).toBe("/");
  });
});

describe("open and create (O1-O6, 1.3)", () => {
  it("1.3: bit 0x80 is ignored on 9P2000 (a write lands at its offset, not at the end); 0x08 is 'bad open mode'", async () => {
    const c = await session();
    await ok(c, walk(0, 1, "data"), MsgType.Rwalk);
    expect(await err(c, open(1, OREAD | 0x08))).toBe(Ename.BadOpenMode);
    await ok(c, open(1, ORDWR | 0x80), MsgType.Ropen);
    await ok(c, write(1, "AB", 2n), MsgType.Rwrite);
    expect(await readText(c, 1)).toBe("01AB456789");
  });

  it("O3/R3: OTRUNC on an append-only file opens without truncating, and writes land at the end", async () => {
    const c = await session();
    fx!.root.add(new BytesFile("log", "abc", { mode: (DMAPPEND | 0o666) >>> 0, uid: "glenda" }));
    await ok(c, walk(0, 1, "log"), MsgType.Rwalk);
    const r = await ok(c, open(1, ORDWR | OTRUNC), MsgType.Ropen);
    if (r.type === MsgType.Ropen) expect(r.qid.type & 0x40).toBe(0x40);
    expect((await c.stat(1)).length).toBe(3n);
    await ok(c, write(1, "Z", 0n), MsgType.Rwrite);
    expect(await readText(c, 1)).toBe("abcZ");
  });

  it("O1/R1: OEXEC needs the execute bit and then allows reads", async () => {
    const c = await session();
    fx!.root.add(staticFile("tool", "#!/bin/sh\n", { mode: 0o555, uid: "glenda" }));
    await ok(c, walk(0, 1, "hello"), MsgType.Rwalk); // 0444
    expect(await err(c, open(1, OEXEC))).toBe(Ename.Perm);
    await ok(c, walk(0, 2, "tool"), MsgType.Rwalk);
    await ok(c, open(2, OEXEC), MsgType.Ropen);
    expect(await readText(c, 2)).toBe("#!/bin/sh\n");
    expect(await err(c, write(2, "x"))).toBe(Ename.Perm);
  });

  it("O6: Tcreate on an open fid is refused and the fid stays open", async () => {
    const c = await session();
    await ok(c, walk(0, 1, "dir"), MsgType.Rwalk);
    await ok(c, open(1, OREAD), MsgType.Ropen);
    expect(await err(c, { type: MsgType.Tcreate, fid: 1, name: "n", perm: 0o644, mode: OWRITE })).toBe(
      Ename.AlreadyOpen,
    );
    expect((await ok(c, read(1), MsgType.Rread)).type).toBe(MsgType.Rread);
    await ok(c, walk(0, 2, "dir"), MsgType.Rwalk);
    expect(await err(c, walk(2, 3, "n"))).toBe(Ename.NotFound); // nothing was made
  });

  it("O4/C2: Tremove of an open DMEXCL file releases its lock with the fid", async () => {
    const c = await session();
    fx!.root.add(new BytesFile("lockme", "x", { mode: (DMEXCL | 0o666) >>> 0, uid: "glenda" }));
    const d = await session();
    await ok(c, walk(0, 1, "lockme"), MsgType.Rwalk);
    await ok(c, open(1, OREAD), MsgType.Ropen);
    await ok(d, walk(0, 1, "lockme"), MsgType.Rwalk);
    expect(await err(d, open(1, OREAD))).toBe(Ename.ExclInUse);
    await ok(c, { type: MsgType.Tremove, fid: 1 }, MsgType.Rremove);
    // The file is gone but d's fid still names it: the lock no longer stands in the way.
    expect((await d.call(open(1, OREAD))).type).toBe(MsgType.Ropen);
  });
});

describe("clunk, remove, stat (C1, C2, S1-S4)", () => {
  it("C1: an ORCLOSE removal that fails at clunk is reported, and the fid is freed anyway", async () => {
    const c = await session();
    await ok(c, walk(0, 1, "dir"), MsgType.Rwalk);
    await ok(
      c,
      { type: MsgType.Tcreate, fid: 1, name: "tmp", perm: 0o644, mode: OWRITE | ORCLOSE },
      MsgType.Rcreate,
    );
    await ok(c, walk(0, 2, "dir", "tmp"), MsgType.Rwalk);
    await ok(c, { type: MsgType.Tremove, fid: 2 }, MsgType.Rremove);
    expect(await err(c, { type: MsgType.Tclunk, fid: 1 })).toBe(Ename.RemoveProhibited);
    expect(await err(c, { type: MsgType.Tclunk, fid: 1 })).toBe(Ename.UnknownFid);
    await ok(c, walk(0, 1), MsgType.Rwalk); // the number is free again
  });

  it("C2: Tremove of the attach root fails, clunks that fid, and leaves the tree served", async () => {
    const c = await session();
    await ok(c, walk(0, 1), MsgType.Rwalk);
    expect(await err(c, { type: MsgType.Tremove, fid: 1 })).toBe(Ename.RemoveProhibited);
    expect(await err(c, { type: MsgType.Tstat, fid: 1 })).toBe(Ename.UnknownFid);
    expect((await c.stat(0)).name).toBe("/");
  });

  it("S2: wstat may not rename the root, change muid, or give a directory a length; length 0 is fine", async () => {
    const c = await session();
    expect(await err(c, { type: MsgType.Twstat, fid: 0, stat: dontTouchStat({ name: "x" }) })).toBe(
      Ename.WstatProhibited,
    );
    await ok(c, walk(0, 1, "data"), MsgType.Rwalk);
    expect(await err(c, { type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ muid: "bob" }) })).toBe(
      Ename.WstatProhibited,
    );
    await ok(c, walk(0, 2, "dir"), MsgType.Rwalk);
    expect(await err(c, { type: MsgType.Twstat, fid: 2, stat: dontTouchStat({ length: 5n }) })).toBe(
      Ename.IsDir,
    );
    await ok(c, { type: MsgType.Twstat, fid: 2, stat: dontTouchStat({ length: 0n }) }, MsgType.Rwstat);
    expect((await c.stat(0)).name).toBe("/");
  });
});

describe("read (R2, D2)", () => {
  it("R2: a generated file read at 2^63 and at 2^64-1 gives 0 bytes (a crash of xcpufs 1.2.3)", async () => {
    const c = await session();
    await ok(c, walk(0, 1, "counter"), MsgType.Rwalk);
    await ok(c, open(1, OREAD), MsgType.Ropen);
    for (const offset of [1n << 63n, 0xffffffffffffffffn, 1n << 40n]) {
      expect(await readText(c, 1, offset)).toBe("");
    }
    expect((await readText(c, 1)).startsWith("generation")).toBe(true);
  });

  it("D2/D4: at the end of a listing the next offset gives 0 bytes; offset 0 then lists everything again", async () => {
    const c = await session();
    await ok(c, walk(0, 1, "dir"), MsgType.Rwalk);
    await ok(c, open(1, OREAD), MsgType.Ropen);
    const all = await ok(c, read(1, 0n, 8000), MsgType.Rread);
    const n = all.type === MsgType.Rread ? all.data.length : 0;
    expect(n).toBeGreaterThan(0);
    expect(await readText(c, 1, BigInt(n))).toBe("");
    const again = await ok(c, read(1, 0n, 8000), MsgType.Rread);
    expect(again.type === MsgType.Rread && again.data.length).toBe(n);
  });
});

describe("errors per dialect (E1, 9P2000.u errno)", () => {
  it("9P2000.u: Rerror carries the Unix errno of each common failure", async () => {
    const c = await session("9P2000.u");
    const u = async (req: Request) => {
      const r = await c.call(req, 10_000);
      return r.type === MsgType.Rerror ? [r.ename, r.errno] : r.type;
    };
    expect(await u({ type: MsgType.Tstat, fid: 99 })).toEqual([Ename.UnknownFid, Errno.EBADF]);
    expect(await u(walk(0, 1, "nope"))).toEqual([Ename.NotFound, Errno.ENOENT]);
    await ok(c, walk(0, 1, "hello"), MsgType.Rwalk);
    expect(await u(walk(1, 2, "x"))).toEqual([Ename.WalkNoDir, Errno.ENOTDIR]);
    expect(await u(open(1, OWRITE))).toEqual([Ename.Perm, Errno.EACCES]);
    await ok(c, walk(0, 2, "dir"), MsgType.Rwalk);
    expect(await u(open(2, OWRITE))).toEqual([Ename.IsDir, Errno.EISDIR]);
    expect(
      await u({ type: MsgType.Tcreate, fid: 2, name: "sub", perm: 0o644, mode: OWRITE, extension: "" }),
    ).toEqual([Ename.Exists, Errno.EEXIST]);
  });

  it("3.5: 9P2000-only messages on a 9P2000.L connection get Rlerror and the connection keeps working", async () => {
    const c = await session("9P2000.L");
    const plain: Parameters<typeof encode>[0][] = [
      { type: MsgType.Topen, tag: 50, fid: 0, mode: OREAD },
      { type: MsgType.Tstat, tag: 51, fid: 0 },
      { type: MsgType.Tcreate, tag: 52, fid: 0, name: "x", perm: 0o644, mode: OWRITE },
      { type: MsgType.Twstat, tag: 53, fid: 0, stat: dontTouchStat({}) },
    ];
    for (const m of plain) {
      c.sendRaw(encode(m, "9P2000"));
      expect(await c.reply(m.tag)).toEqual({ type: MsgType.Rlerror, tag: m.tag, ecode: Errno.ENOSYS });
    }
    await ok(c, { type: MsgType.Tgetattr, fid: 0, request_mask: 0x7ffn }, MsgType.Rgetattr);
  });
});

describe("9P2000.L open state (errnos as diod answers them)", () => {
  it("Tlopen of an already open fid is EINVAL and the fid stays open", async () => {
    const c = await session("9P2000.L");
    await ok(c, walk(0, 1, "hello"), MsgType.Rwalk);
    await ok(c, lopen(1, L_O.RDONLY), MsgType.Rlopen);
    expect(await err(c, lopen(1, L_O.RDONLY))).toBe(Errno.EINVAL);
    expect(await readText(c, 1)).toBe("hello, world\n");
  });

  it("Tlcreate in an open directory fid is EINVAL; in a file, ENOTDIR", async () => {
    const c = await session("9P2000.L");
    const lcreate = (fid: number): Request => ({
      type: MsgType.Tlcreate,
      fid,
      name: "new",
      flags: L_O.RDWR,
      mode: 0o644,
      gid: NOFID,
    });
    await ok(c, walk(0, 1, "dir"), MsgType.Rwalk);
    await ok(c, lopen(1, L_O.RDONLY), MsgType.Rlopen);
    expect(await err(c, lcreate(1))).toBe(Errno.EINVAL);
    await ok(c, walk(0, 2, "hello"), MsgType.Rwalk);
    expect(await err(c, lcreate(2))).toBe(Errno.ENOTDIR);
    await ok(c, walk(0, 3, "dir"), MsgType.Rwalk);
    await ok(c, lcreate(3), MsgType.Rlcreate);
  });

  it("Treaddir needs an open fid (EBADF) of a directory (EINVAL on an open file)", async () => {
    const c = await session("9P2000.L");
    const readdir = (fid: number): Request => ({ type: MsgType.Treaddir, fid, offset: 0n, count: 4096 });
    await ok(c, walk(0, 1, "dir"), MsgType.Rwalk);
    expect(await err(c, readdir(1))).toBe(Errno.EBADF);
    await ok(c, walk(0, 2, "hello"), MsgType.Rwalk);
    await ok(c, lopen(2, L_O.RDONLY), MsgType.Rlopen);
    expect(await err(c, readdir(2))).toBe(Errno.EINVAL);
  });

  it("Twrite to a directory (opened read-only, as directories must be) is EBADF; Tread of it EISDIR", async () => {
    const c = await session("9P2000.L");
    await ok(c, walk(0, 1, "dir"), MsgType.Rwalk);
    expect(await err(c, lopen(1, L_O.WRONLY))).toBe(Errno.EISDIR);
    await ok(c, lopen(1, L_O.RDONLY), MsgType.Rlopen);
    expect(await err(c, write(1, "x"))).toBe(Errno.EBADF);
    expect(await err(c, read(1))).toBe(Errno.EISDIR);
  });

  it("Tlock and Tgetlock need an open fid (EBADF), a valid type and flags (EINVAL), then the backend (EOPNOTSUPP here)", async () => {
    const c = await session("9P2000.L");
    await ok(c, walk(0, 1, "data"), MsgType.Rwalk);
    expect(await err(c, lock(1, 1))).toBe(Errno.EBADF);
    expect(await err(c, getlock(1, 1))).toBe(Errno.EBADF);
    await ok(c, lopen(1, L_O.RDWR), MsgType.Rlopen);
    expect(await err(c, lock(1, 3))).toBe(Errno.EINVAL);
    expect(await err(c, lock(1, 1, 4))).toBe(Errno.EINVAL);
    expect(await err(c, getlock(1, 2))).toBe(Errno.EINVAL);
    expect(await err(c, getlock(1, 9))).toBe(Errno.EINVAL);
    // The synthetic tree has no locks: a well-formed request reaches it and is not supported.
    expect(await err(c, lock(1, 1))).toBe(Errno.EOPNOTSUPP);
    expect(await err(c, getlock(1, 0))).toBe(Errno.EOPNOTSUPP);
  });

  it("W6 on .L: a partial walk creates no newfid (a Tclunk of it is EBADF)", async () => {
    const c = await session("9P2000.L");
    expect(await c.call(walk(0, 1, "dir", "nope"))).toMatchObject({
      type: MsgType.Rwalk,
      wqid: [expect.anything()],
    });
    expect(await err(c, { type: MsgType.Tclunk, fid: 1 })).toBe(Errno.EBADF);
  });

  it("Tunlinkat as unlinkat(2): flags other than AT_REMOVEDIR are EINVAL, AT_REMOVEDIR of a file ENOTDIR, a directory without it EISDIR", async () => {
    const c = await session("9P2000.L");
    const unlinkat = (name: string, flags: number): Request => ({
      type: MsgType.Tunlinkat,
      dirfd: 1,
      name,
      flags,
    });
    await ok(c, walk(0, 1, "dir"), MsgType.Rwalk);
    expect(await err(c, unlinkat("entry--0", 0x1))).toBe(Errno.EINVAL);
    expect(await err(c, unlinkat("entry--0", AT_REMOVEDIR))).toBe(Errno.ENOTDIR);
    expect(await err(c, unlinkat("sub", 0))).toBe(Errno.EISDIR);
    expect(await err(c, unlinkat("sub", AT_REMOVEDIR))).toBe(Errno.ENOTEMPTY);
    await ok(c, walk(0, 2, "dir", "entry--0"), MsgType.Rwalk);
    await ok(c, unlinkat("entry--0", 0), MsgType.Runlinkat);
    expect(await err(c, walk(1, 3, "entry--0"))).toBe(Errno.ENOENT);
    await ok(c, walk(0, 3, "dir", "sub", "leaf"), MsgType.Rwalk);
  });
});

describe("no fid leaks (F2-F4, C1, C2, W6, V6)", () => {
  it("failed and partial operations leave exactly the fids that were created, and Tversion leaves none", async () => {
    const c = await session();
    const conn = () => fx!.server.connections[0]!;
    expect(conn().fidCount).toBe(1); // the attach
    const failing: Request[] = [
      walk(0, 1, "nope"), // first element fails
      walk(0, 1, "dir", "nope"), // partial
      walk(0, 0, "dir", "nope"), // partial onto itself
      walk(0, 1, ...Array<string>(16).fill("nope")),
      { type: MsgType.Tattach, fid: 0, afid: NOFID, uname: "glenda", aname: "" }, // fid in use
      { type: MsgType.Tauth, afid: 2, uname: "glenda", aname: "" }, // no auth here
      { type: MsgType.Tattach, fid: 3, afid: 4, uname: "glenda", aname: "" }, // unknown afid
    ];
    for (const r of failing) await c.call(r, 10_000);
    expect(conn().fidCount).toBe(1);
    // Open, create and remove failures keep (or, for Tremove, drop) only their own fid.
    await ok(c, walk(0, 1, "secret"), MsgType.Rwalk);
    await ok(c, walk(0, 2, "dir"), MsgType.Rwalk);
    await c.call({ type: MsgType.Tcreate, fid: 2, name: "sub", perm: 0o644, mode: OWRITE }, 10_000);
    await c.call(open(1, OWRITE | 0x08), 10_000);
    expect(conn().fidCount).toBe(3);
    await ok(c, walk(0, 3, "dir", "sub"), MsgType.Rwalk);
    expect(await err(c, { type: MsgType.Tremove, fid: 3 })).toBe(Ename.NotEmpty);
    expect(await err(c, { type: MsgType.Tremove, fid: 0 })).toBe(Ename.RemoveProhibited);
    expect(conn().fidCount).toBe(2);
    await c.attach(0);
    await ok(c, walk(0, 4, "dir"), MsgType.Rwalk);
    await ok(
      c,
      { type: MsgType.Tcreate, fid: 4, name: "t", perm: 0o644, mode: OWRITE | ORCLOSE },
      MsgType.Rcreate,
    );
    expect(conn().fidCount).toBe(4);
    await c.version(8216, "9P2000");
    expect(conn().fidCount).toBe(0);
  });
});

describe("version errors on 9P2000.L (spec 7: Rlerror for everything)", () => {
  it("V2: a 9P2000.L Tversion with an msize too small gets Rlerror (diod's EIO), which a .L client can parse", async () => {
    fx = await startFixture();
    const c = await RawClient.connect(fx.addr);
    clients.push(c);
    c.dialect = "9P2000.L";
    c.send({ type: MsgType.Tversion, tag: NOTAG, msize: 100, version: "9P2000.L" });
    expect(await c.reply(NOTAG)).toEqual({ type: MsgType.Rlerror, tag: NOTAG, ecode: Errno.EIO });
    // The plain dialects still get Rerror, and the connection negotiates normally afterwards.
    c.dialect = "9P2000";
    c.send({ type: MsgType.Tversion, tag: NOTAG, msize: 100, version: "9P2000.u" });
    expect(await c.reply(NOTAG)).toMatchObject({ type: MsgType.Rerror, tag: NOTAG });
    expect((await c.version(8216, "9P2000.L")).version).toBe("9P2000.L");
    await c.attach(0);
  });
});

describe("wstat as Linux v9fs sends it (S2, S4)", () => {
  it("open(O_TRUNC) of a command file: Topen OWRITE|OTRUNC, then Twstat of length 0 (its length already) and mtime, succeeds", async () => {
    const c = await session("9P2000.u");
    await ok(c, walk(0, 1, "ctl"), MsgType.Rwalk);
    await ok(c, open(1, OWRITE | OTRUNC), MsgType.Ropen);
    const now = Math.floor(Date.now() / 1000);
    await ok(
      c,
      { type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ length: 0n, mtime: now }) },
      MsgType.Rwstat,
    );
    await ok(c, write(1, "ping\n"), MsgType.Rwrite);
    expect(fx!.ctlLog).toEqual(["ping"]);
    // A real length change of a file that cannot be truncated is still refused, atomically.
    const before = (await c.stat(1)).mtime;
    expect(
      await err(c, { type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ length: 5n, mtime: 7 }) }),
    ).toBe(Ename.WstatProhibited);
    expect((await c.stat(1)).mtime).toBe(before);
  });
});

describe("rename as Linux v9fs sends it (S2)", () => {
  it("a Twstat of a new name whose muid is the renaming user's name renames; another muid is refused", async () => {
    const c = await session("9P2000.u");
    await ok(c, walk(0, 1, "data"), MsgType.Rwalk);
    // fs/9p's rename on 9P2000 and 9P2000.u mounts: name = the new name, muid = the mount's uname.
    expect(
      await err(c, { type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ name: "moved", muid: "bob" }) }),
    ).toBe(Ename.WstatProhibited);
    expect((await c.stat(1)).name).toBe("data");
    await ok(
      c,
      { type: MsgType.Twstat, fid: 1, stat: dontTouchStat({ name: "moved", muid: "glenda" }) },
      MsgType.Rwstat,
    );
    expect((await c.stat(1)).name).toBe("moved");
    expect(await err(c, walk(0, 2, "data"))).toBe(Ename.NotFound);
    await ok(c, walk(0, 2, "moved"), MsgType.Rwalk);
  });

  it("with a user attached for itself (access=user), the muid is the mount's name: renames too", async () => {
    const c = await session("9P2000.u");
    // the mount attached as glenda (fid 0); a local user then attaches for itself
    await c.attach(5, "bob");
    await ok(c, walk(5, 6, "data"), MsgType.Rwalk);
    await ok(
      c,
      { type: MsgType.Twstat, fid: 6, stat: dontTouchStat({ name: "by-bob", muid: "glenda" }) },
      MsgType.Rwstat,
    );
    expect((await c.stat(6)).name).toBe("by-bob");
    // a name nobody attached with is still a request to change muid
    expect(
      await err(c, { type: MsgType.Twstat, fid: 6, stat: dontTouchStat({ name: "data", muid: "carol" }) }),
    ).toBe(Ename.WstatProhibited);
  });
});

describe("times (4.10)", () => {
  it("creating, renaming and removing a member each change the directory's qid.vers and muid", async () => {
    const c = await session();
    const other = await session();
    await ok(c, walk(0, 1, "dir"), MsgType.Rwalk);
    const v0 = (await c.stat(1)).qid.version;
    await ok(c, walk(0, 2, "dir"), MsgType.Rwalk);
    await ok(c, { type: MsgType.Tcreate, fid: 2, name: "a", perm: 0o666, mode: OWRITE }, MsgType.Rcreate);
    const v1 = (await c.stat(1)).qid.version;
    expect(v1).not.toBe(v0);
    await ok(c, { type: MsgType.Twstat, fid: 2, stat: dontTouchStat({ name: "b" }) }, MsgType.Rwstat);
    const s2 = await c.stat(1);
    expect(s2.qid.version).not.toBe(v1);
    expect(s2.muid).toBe("glenda");
    await ok(other, walk(0, 1, "dir", "b"), MsgType.Rwalk);
    await ok(other, { type: MsgType.Tremove, fid: 1 }, MsgType.Rremove);
    expect((await c.stat(1)).qid.version).not.toBe(s2.qid.version);
  });
});
