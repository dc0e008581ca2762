// Hand-written golden vectors: decode, encode and round-trip, and coverage of every message type per dialect.

import { describe, expect, it } from "vitest";
import { Dialect, isDialectType, MsgType, type MsgTypeName } from "../../src/codec/index.js";
import { vectorTests } from "./vector.js";
import { vectors9P2000 } from "./vectors-9p2000.js";
import { vectors9P2000L } from "./vectors-9p2000L.js";

const all = [...vectors9P2000, ...vectors9P2000L];

describe("golden vectors 9P2000 / 9P2000.u", () => {
  for (const v of vectors9P2000) vectorTests(v);
});

describe("golden vectors 9P2000.L", () => {
  for (const v of vectors9P2000L) vectorTests(v);
});

describe("golden vector coverage", () => {
  for (const d of [Dialect.P2000, Dialect.P2000u, Dialect.P2000L]) {
    it(`every message type of ${d} has a vector`, () => {
      const have = new Set<number>(all.filter((v) => v.dialects.includes(d)).map((v) => v.message.type));
      const missing = (Object.keys(MsgType) as MsgTypeName[]).filter(
        (n) => isDialectType(MsgType[n], d) && !have.has(MsgType[n]),
      );
      expect(missing).toEqual([]);
    });
  }
});
