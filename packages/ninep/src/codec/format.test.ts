import { describe, expect, it } from "vitest";
import { MsgType } from "./constants.js";
import { formatMessage } from "./format.js";

describe("formatMessage", () => {
  it("prints walks, qids, data and bigints on one line", () => {
    expect(formatMessage({ type: MsgType.Twalk, tag: 2, fid: 0, newfid: 1, wname: ["usr", "lib"] })).toBe(
      'Twalk tag 2 fid 0 newfid 1 wname ["usr","lib"]',
    );
    expect(
      formatMessage({
        type: MsgType.Rwalk,
        tag: 2,
        wqid: [
          { type: 0x80, version: 0, path: 1n },
          { type: 0, version: 3, path: 2n ** 60n },
        ],
      }),
    ).toBe("Rwalk tag 2 wqid [(1 0 0x80) (1152921504606846976 3 0x0)]");
    expect(formatMessage({ type: MsgType.Rread, tag: 1, data: Buffer.alloc(20, 0xab) })).toBe(
      `Rread tag 1 data 20 ${"ab".repeat(16)}…`,
    );
    expect(formatMessage({ type: MsgType.Tread, tag: 1, fid: 3, offset: 2n ** 63n, count: 10 })).toBe(
      "Tread tag 1 fid 3 offset 9223372036854775808 count 10",
    );
    expect(
      formatMessage({
        type: MsgType.Tcreate,
        tag: 7,
        fid: 1,
        name: "d",
        perm: 0x800001ed,
        mode: 0,
        extension: "",
      }),
    ).toBe('Tcreate tag 7 fid 1 name "d" perm 020000000755 mode 00 extension ""');
    expect(formatMessage({ type: MsgType.Rerror, tag: 2, ename: "file not found", errno: 2 })).toBe(
      'Rerror tag 2 ename "file not found" errno 2',
    );
    expect(formatMessage({ type: MsgType.Rclunk, tag: 9 })).toBe("Rclunk tag 9");
  });

  it("never contains a newline, even for names with one", () => {
    expect(formatMessage({ type: MsgType.Rreadlink, tag: 1, target: "a\nb" })).toBe(
      'Rreadlink tag 1 target "a\\nb"',
    );
  });
});
