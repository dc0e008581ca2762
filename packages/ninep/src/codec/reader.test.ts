import { describe, expect, it } from "vitest";
import { ProtocolError } from "../errors.js";
import { Reader } from "./reader.js";

describe("Reader", () => {
  it("reads little-endian integers, including u32 and u64 with the top bit set", () => {
    const b = Buffer.from("01" + "0201" + "ffffffff" + "0100000000000080" + "efcdab8967452301", "hex");
    const r = new Reader(b);
    expect(r.u8()).toBe(1);
    expect(r.u16()).toBe(0x0102);
    expect(r.u32()).toBe(0xffffffff);
    expect(r.u64()).toBe(0x8000000000000001n);
    expect(r.u64()).toBe(0x0123456789abcdefn);
    expect(r.left).toBe(0);
  });

  it("throws its reason when a read passes the end, without moving", () => {
    const r = new Reader(Buffer.from("0102030405", "hex"), 0, 3, 110);
    expect(() => r.u32()).toThrow(ProtocolError);
    expect(r.pos).toBe(0);
    r.reason = "bad-stat";
    expect(() => r.u64()).toThrow(expect.objectContaining({ reason: "bad-stat", msgType: 110 }));
  });

  it("returns repeated short strings correctly (cached) and never confuses equal-length strings", () => {
    const words = ["abc", "abd", "xcpu-admin", "abc", "bbc", "xcpu-admin", "é", "abc"];
    const b = Buffer.concat(
      words.map((w) => {
        const s = Buffer.from(w, "utf8");
        const h = Buffer.alloc(2);
        h.writeUInt16LE(s.length, 0);
        return Buffer.concat([h, s]);
      }),
    );
    const r = new Reader(b);
    expect(words.map(() => r.str())).toEqual(words);
  });

  it("bytes() is a view of the frame", () => {
    const b = Buffer.from("0102030405", "hex");
    const v = new Reader(b, 1).bytes(3);
    b[2] = 9;
    expect([...v]).toEqual([2, 9, 4]);
  });
});
