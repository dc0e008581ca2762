// Malformed input (spec 3.5): each bad frame gets Rerror with its tag or closes only its own
// connection, while another connection keeps working.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MsgType } from "../../src/codec/constants.js";
import { encode } from "../../src/codec/wire.js";
import { Ename } from "../../src/errors.js";
import { RawClient } from "../../src/testing/raw.js";
import { type Fixture, startFixture } from "./fixture.js";

let fx: Fixture;
let witness: RawClient;

beforeAll(async () => {
  fx = await startFixture();
  witness = await fresh();
});
afterAll(async () => {
  witness.destroy();
  await fx.close();
});

async function fresh(version = "9P2000"): Promise<RawClient> {
  const c = await RawClient.connect(fx.addr);
  await c.version(8192 + 24, version);
  await c.attach(0);
  return c;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/** A frame with a correct size field around the given type, tag and body. */
function frame(type: number, tag: number, body: Buffer): Buffer {
  const b = Buffer.concat([u32(7 + body.length), Buffer.from([type, tag & 0xff, tag >> 8]), body]);
  return b;
}

async function witnessStillWorks(): Promise<void> {
  expect((await witness.stat(0)).name).toBe("/");
}

describe("malformed frames", () => {
  it("closes the connection on random garbage", async () => {
    const c = await fresh();
    c.sendRaw(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    await c.waitClosed();
    await witnessStillWorks();
  });

  it("closes the connection on a size field below 7", async () => {
    for (const size of [0, 1, 6]) {
      const c = await fresh();
      c.sendRaw(Buffer.concat([u32(size), Buffer.from([MsgType.Tstat, 1, 0, 0, 0, 0, 0])]));
      await c.waitClosed();
    }
    await witnessStillWorks();
  });

  it("closes the connection on a size field above msize, before the body arrives", async () => {
    const c = await fresh();
    c.sendRaw(Buffer.concat([u32(0x7fffffff), Buffer.from([MsgType.Twrite, 1, 0])]));
    await c.waitClosed();
    // Before Tversion the bound is the server's own maximum.
    const d = await RawClient.connect(fx.addr);
    d.sendRaw(u32(fx.server.maxMsize + 1));
    await d.waitClosed();
    // and the first frame, which must be a Tversion, may not announce more than 8 KiB (a frame of
    // msize bytes trickled in by somebody nobody knows would be kept while it comes)
    const e = await RawClient.connect(fx.addr);
    e.sendRaw(Buffer.concat([u32(1_000_000), Buffer.from([MsgType.Tversion, 0xff, 0xff])]));
    await e.waitClosed();
    const ok = await RawClient.connect(fx.addr);
    expect((await ok.version(8192 + 24, "9P2000")).version).toBe("9P2000");
    ok.destroy();
    await witnessStillWorks();
  });

  it("answers a body shorter than its fields with Rerror carrying the tag", async () => {
    const c = await fresh();
    // Twalk fid newfid nwname=2 but only one name present.
    const body = Buffer.concat([u32(0), u32(1), Buffer.from([2, 0, 1, 0, 0x61])]);
    c.sendRaw(frame(MsgType.Twalk, 42, body));
    const r = await c.reply(42);
    expect(r.type).toBe(MsgType.Rerror);
    // The reason follows the canonical text.
    expect((r as { ename: string }).ename).toMatch(/^9P protocol botch: type 110: .*past the end/);
    // A Tread cut short, and a string running past the end.
    c.sendRaw(frame(MsgType.Tread, 43, Buffer.from([0, 0, 0, 0, 1, 2])));
    expect(await c.reply(43)).toMatchObject({ type: MsgType.Rerror });
    c.sendRaw(
      frame(MsgType.Tattach, 44, Buffer.concat([u32(5), u32(0xffffffff), Buffer.from([200, 0, 0x61])])),
    );
    expect(await c.reply(44)).toMatchObject({ type: MsgType.Rerror });
    await c.stat(0);
    c.destroy();
    await witnessStillWorks();
  });

  it("answers trailing bytes, 17 walk names and a bad wstat stat with Rerror", async () => {
    const c = await fresh();
    const clunk = encode({ type: MsgType.Tclunk, tag: 50, fid: 99 }, "9P2000");
    const padded = Buffer.concat([clunk, Buffer.from([1, 2, 3])]);
    padded.writeUInt32LE(padded.length, 0);
    c.sendRaw(padded);
    expect(await c.reply(50)).toMatchObject({
      type: MsgType.Rerror,
      ename: expect.stringMatching(/^9P protocol botch: /),
    });
    const names = Buffer.concat(Array.from({ length: 17 }, () => Buffer.from([1, 0, 0x61])));
    c.sendRaw(frame(MsgType.Twalk, 51, Buffer.concat([u32(0), u32(1), Buffer.from([17, 0]), names])));
    expect(await c.reply(51)).toMatchObject({ type: MsgType.Rerror });
    // Twstat whose inner stat size disagrees with n.
    const stat = Buffer.alloc(49, 0xff);
    stat.writeUInt16LE(40, 0);
    c.sendRaw(frame(MsgType.Twstat, 52, Buffer.concat([u32(0), Buffer.from([49, 0]), stat])));
    expect(await c.reply(52)).toMatchObject({ type: MsgType.Rerror, ename: Ename.BadWstat });
    await c.stat(0);
    c.destroy();
  });

  it("answers unknown types, Terror and R-messages with 'unknown message'", async () => {
    const c = await fresh();
    for (const [type, tag] of [
      [0, 60],
      [250, 61],
      [MsgType.Terror, 62],
      [MsgType.Rstat, 63],
      [MsgType.Tlerror, 64],
    ] as const) {
      c.sendRaw(frame(type, tag, Buffer.alloc(0)));
      expect(await c.reply(tag)).toMatchObject({ type: MsgType.Rerror, ename: Ename.UnknownMessage });
    }
    await c.stat(0);
    c.destroy();
    await witnessStillWorks();
  });

  it("survives a truncated frame followed by EOF", async () => {
    const c = await fresh();
    const f = encode({ type: MsgType.Twalk, tag: 70, fid: 0, newfid: 1, wname: ["dir"] }, "9P2000");
    c.sendRaw(f.subarray(0, 10));
    c.stream.end();
    await c.waitClosed();
    await witnessStillWorks();
    await expect.poll(() => fx.server.connectionCount).toBe(1);
  });

  it("handles a frame delivered one byte at a time and many frames in one chunk", async () => {
    const c = await fresh();
    const f = encode({ type: MsgType.Tstat, tag: 80, fid: 0 }, "9P2000");
    for (const byte of f) {
      c.sendRaw(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    expect((await c.reply(80)).type).toBe(MsgType.Rstat);
    const many = Buffer.concat(
      Array.from({ length: 50 }, (_, i) => encode({ type: MsgType.Tstat, tag: 100 + i, fid: 0 }, "9P2000")),
    );
    c.sendRaw(many);
    for (let i = 0; i < 50; i++) expect((await c.reply(100 + i)).type).toBe(MsgType.Rstat);
    c.destroy();
  });
});
