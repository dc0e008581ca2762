// The message table covers every type, and one sample per type round-trips in every dialect.

import { describe, expect, it } from "vitest";
import {
  Dialect,
  decode,
  encode,
  formatMessage,
  isDialectType,
  MsgType,
  type MsgTypeName,
  messageName,
  replyTypeFor,
} from "../../src/codec/index.js";
import { TABLE } from "../../src/codec/messages.js";
import { samples } from "./samples.js";

const DIALECTS = [Dialect.P2000, Dialect.P2000u, Dialect.P2000L];

describe("message table", () => {
  it("has one entry for every MsgType except Terror and Tlerror", () => {
    for (const [name, type] of Object.entries(MsgType)) {
      const e = TABLE[type];
      if (name === "Terror" || name === "Tlerror") expect(e).toBeUndefined();
      else expect(e?.name, name).toBe(name);
    }
    expect(TABLE.filter(Boolean)).toHaveLength(Object.keys(MsgType).length - 2);
  });

  it("names types and pairs requests with replies", () => {
    expect(messageName(110)).toBe("Twalk");
    expect(messageName(200)).toBeUndefined();
    expect(replyTypeFor(MsgType.Twalk)).toBe(MsgType.Rwalk);
    expect(replyTypeFor(MsgType.Tlopen)).toBe(MsgType.Rlopen);
    expect(replyTypeFor(MsgType.Rwalk)).toBeUndefined();
    expect(replyTypeFor(MsgType.Terror)).toBeUndefined();
  });
});

for (const d of DIALECTS) {
  describe(`samples in ${d}`, () => {
    const s = samples(d);
    it("cover exactly the types the dialect speaks", () => {
      const expected = (Object.keys(MsgType) as MsgTypeName[])
        .filter((n) => isDialectType(MsgType[n], d))
        .sort();
      expect(Object.keys(s).sort()).toEqual(expected);
    });
    for (const [name, msg] of Object.entries(s)) {
      it(`${name} round-trips and formats`, () => {
        const b = encode(msg, d);
        expect(b.readUInt32LE(0)).toBe(b.length);
        const back = decode(b, d);
        expect(back).toEqual(msg);
        expect(encode(back, d).equals(b)).toBe(true);
        expect(formatMessage(back).startsWith(`${name} tag ${msg.tag}`)).toBe(true);
      });
    }
  });
}

describe("u32 bit fields", () => {
  it("accept the negative int32 of DMDIR | perm and decode it unsigned", () => {
    const m = {
      type: MsgType.Tcreate,
      tag: 1,
      fid: 1,
      name: "d",
      perm: 0x80000000 | 0o755,
      mode: 0,
    } as const;
    expect(m.perm).toBeLessThan(0);
    const b = encode(m, Dialect.P2000);
    expect(b.readUInt32LE(b.length - 5)).toBe(0x800001ed);
    expect(decode(b, Dialect.P2000)).toMatchObject({ perm: 0x800001ed });
  });
});
