// encodeTagged (the client's way of sending a request with the tag it picked, without copying the
// message) gives exactly the bytes encode gives for the same message with that tag, and validates
// the tag the same way.

import { describe, expect, it } from "vitest";
import type { Request } from "../../src/client/client.js";
import { Dialect, GETATTR, MsgType } from "../../src/codec/constants.js";
import type { TMessage } from "../../src/codec/types.js";
import { encode, encodeTagged } from "../../src/codec/wire.js";
import { ProtocolError } from "../../src/errors.js";

describe("encodeTagged", () => {
  const msgs: Request[] = [
    { type: MsgType.Tgetattr, fid: 7, request_mask: GETATTR.BASIC },
    { type: MsgType.Tread, fid: 1, offset: 1n << 40n, count: 65536 },
    { type: MsgType.Twalk, fid: 0, newfid: 1, wname: ["usr", "lib"] },
  ];
  for (const m of msgs) {
    it(`type ${m.type}: same frame as encode with the tag`, () => {
      for (const tag of [0, 1, 0x1234, 0xfffe]) {
        expect(encodeTagged(m, tag, Dialect.P2000L)).toEqual(
          encode({ ...m, tag } as TMessage, Dialect.P2000L),
        );
      }
    });
  }
  it("ignores a tag inside the message and refuses tags out of range", () => {
    const withTag = { type: MsgType.Tclunk, tag: 9, fid: 3 } as const;
    expect(encodeTagged(withTag, 5, Dialect.P2000)[5]).toBe(5);
    expect(() => encodeTagged({ type: MsgType.Tclunk, fid: 3 }, 0x10000, Dialect.P2000)).toThrow(
      ProtocolError,
    );
    expect(() => encodeTagged({ type: MsgType.Tclunk, fid: 3 }, -1, Dialect.P2000)).toThrow(ProtocolError);
  });
});
