import { describe, expect, it } from "vitest";
import { ProtocolError } from "../errors.js";
import { FRAMER_DEFAULT_MAX, Framer } from "./framer.js";

const tclunk = Buffer.from("0b000000780300" + "01000000", "hex");
const rclunk = Buffer.from("07000000790300", "hex");

describe("Framer", () => {
  it("returns frames inside one chunk as views of it, without copying", () => {
    const chunk = Buffer.concat([tclunk, rclunk, tclunk]);
    const out = new Framer().push(chunk);
    expect(out).toHaveLength(3);
    expect(out[1]?.buffer).toBe(chunk.buffer);
    expect(out[1]?.byteOffset).toBe(chunk.byteOffset + 11);
  });

  it("copies a frame that spans chunks once, when its last byte arrives", () => {
    const f = new Framer();
    expect(f.push(tclunk.subarray(0, 2))).toEqual([]);
    expect(f.buffered).toBe(2);
    expect(f.push(tclunk.subarray(2, 9))).toEqual([]);
    expect(f.buffered).toBe(9);
    const out = f.push(Buffer.concat([tclunk.subarray(9), rclunk]));
    expect(out.map((b) => b.toString("hex"))).toEqual([tclunk.toString("hex"), rclunk.toString("hex")]);
    expect(f.buffered).toBe(0);
  });

  it("handles one byte at a time and empty chunks", () => {
    const f = new Framer();
    const got: Buffer[] = [];
    for (const byte of Buffer.concat([rclunk, tclunk])) {
      got.push(...f.push(new Uint8Array(0)));
      got.push(...f.push(Uint8Array.of(byte)));
    }
    expect(got.map((b) => b.toString("hex"))).toEqual([rclunk.toString("hex"), tclunk.toString("hex")]);
  });

  it("rejects size < 7 and size > maxSize before the body arrives, and stays failed", () => {
    const small = new Framer();
    expect(() => small.push(Buffer.from("06000000", "hex"))).toThrow(
      expect.objectContaining({ reason: "bad-size" }),
    );
    expect(() => small.push(rclunk)).toThrow(ProtocolError);

    const big = new Framer({ maxSize: 100 });
    expect(big.push(Buffer.from("65", "hex"))).toEqual([]);
    expect(() => big.push(Buffer.from("000000", "hex"))).toThrow(
      expect.objectContaining({ reason: "too-large" }),
    );
    expect(() => big.push(rclunk)).toThrow(expect.objectContaining({ reason: "too-large" }));
  });

  it("maxSize can be changed after version negotiation", () => {
    const f = new Framer();
    expect(f.maxSize).toBe(FRAMER_DEFAULT_MAX);
    f.maxSize = 10;
    expect(() => f.push(tclunk)).toThrow(expect.objectContaining({ reason: "too-large" }));
    const g = new Framer({ maxSize: 11 });
    expect(g.push(tclunk)).toHaveLength(1);
  });

  it("a frame trickled in byte by byte is gathered into one buffer, not kept as a view per byte", () => {
    const body = Buffer.alloc(20_000, 0x5a);
    const frame = Buffer.concat([Buffer.alloc(4), body]);
    frame.writeUInt32LE(frame.length, 0);
    frame[4] = 118; // Twrite, not that the framer looks
    const f = new Framer({ maxSize: 1 << 20 });
    let out: Buffer[] = [];
    for (let i = 0; i < frame.length; i++) {
      out = f.push(frame.subarray(i, i + 1));
      const held = f as unknown as { pieces: Buffer[]; gathered?: Buffer };
      expect(held.pieces.length).toBeLessThanOrEqual(8);
      expect(held.gathered?.length ?? 0).toBeLessThanOrEqual(frame.length);
      if (i < frame.length - 1) expect(out).toEqual([]);
    }
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(frame)).toBe(true);
    // and frames after it are found as before
    expect(f.push(Buffer.concat([tclunk, rclunk])).map((b) => b.toString("hex"))).toEqual([
      tclunk.toString("hex"),
      rclunk.toString("hex"),
    ]);
  });

  it("a large frame read in socket-sized chunks is kept as views and copied once, at its end", () => {
    const frame = Buffer.alloc((1 << 20) + 24, 0x33);
    frame.writeUInt32LE(frame.length, 0);
    const f = new Framer({ maxSize: 2 << 20 });
    const held = f as unknown as { pieces: Buffer[]; gathered?: Buffer };
    let out: Buffer[] = [];
    for (let at = 0; at < frame.length; at += 65536) {
      out = f.push(frame.subarray(at, at + 65536));
      expect(held.gathered).toBeUndefined();
    }
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(frame)).toBe(true);
  });

  it("large pieces followed by a trickle are gathered once the pieces are small on average", () => {
    const frame = Buffer.alloc(200_000, 0x44);
    frame.writeUInt32LE(frame.length, 0);
    const f = new Framer({ maxSize: 1 << 20 });
    const held = f as unknown as { pieces: Buffer[]; gathered?: Buffer };
    let at = 0;
    for (; at < 8 * 16384; at += 16384) f.push(frame.subarray(at, at + 16384));
    let out: Buffer[] = [];
    for (; at < frame.length; at++) {
      out = f.push(frame.subarray(at, at + 1));
      // never more views than one per 4 KiB held, plus the first few
      expect(held.pieces.length).toBeLessThanOrEqual(8 + Math.ceil(at / 4096));
    }
    expect(held.gathered).toBeUndefined(); // handed over with the frame
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(frame)).toBe(true);
  });

  it("firstMaxSize bounds the first frame only", () => {
    const f = new Framer({ maxSize: 1 << 20, firstMaxSize: 10 });
    expect(() => f.push(tclunk)).toThrow("message of 11 bytes exceeds the limit of 10");
    const g = new Framer({ maxSize: 1 << 20, firstMaxSize: 11 });
    const big = Buffer.alloc(100);
    big.writeUInt32LE(100, 0);
    expect(g.push(Buffer.concat([tclunk, big]))).toHaveLength(2);
  });
});
