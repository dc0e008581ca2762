// A golden vector and the one helper that turns it into decode, encode and round-trip tests.

import { expect, it } from "vitest";
import { type Dialect, decode, encode, type Message } from "../../src/codec/index.js";

export interface Vector {
  name: string;
  /** Dialects in which these bytes mean this message. */
  dialects: Dialect[];
  message: Message;
  /** The whole frame, written by hand. */
  hex: string;
}

/** Registers decode, encode and round-trip tests for one vector in each of its dialects. */
export function vectorTests(v: Vector): void {
  for (const d of v.dialects) {
    const bytes = Buffer.from(v.hex, "hex");
    it(`${v.name} [${d}]: size field matches the listing`, () => {
      expect(bytes.readUInt32LE(0)).toBe(bytes.length);
    });
    it(`${v.name} [${d}]: decodes`, () => {
      expect(decode(bytes, d)).toEqual(v.message);
    });
    it(`${v.name} [${d}]: encodes to the same bytes`, () => {
      expect(encode(v.message, d).toString("hex")).toBe(v.hex);
    });
    it(`${v.name} [${d}]: round-trips`, () => {
      expect(encode(decode(bytes, d), d).toString("hex")).toBe(v.hex);
      expect(decode(encode(v.message, d), d)).toEqual(v.message);
    });
  }
}
