import { afterEach, describe, expect, it } from "vitest";
import { MsgType, OREAD } from "../../src/codec/constants.js";
import { RawClient } from "../../src/testing/raw.js";
import { type Fixture, startFixture } from "./fixture.js";

let fx: Fixture;
afterEach(async () => {
  await fx?.close();
});

describe("server smoke", () => {
  it("serves a synthetic file over TCP", async () => {
    fx = await startFixture();
    const c = await RawClient.connect(fx.addr);
    const v = await c.version(8192, "9P2000");
    expect(v.version).toBe("9P2000");
    await c.attach(0);
    expect(await c.walk(0, 1, "hello")).toMatchObject({ type: MsgType.Rwalk });
    expect(await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD })).toMatchObject({ type: MsgType.Ropen });
    const r = await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 100 });
    expect(r.type).toBe(MsgType.Rread);
    if (r.type === MsgType.Rread) expect(Buffer.from(r.data).toString()).toBe("hello, world\n");
    await c.close();
  });
});
