import { describe, expect, it } from "vitest";
import { Ename, Errno, FsError, fsErrorFromCode, toFsError } from "./errors.js";

function nodeError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe("Node error codes to FsError", () => {
  it("fsErrorFromCode: canonical enames where they exist, else Node's short text and errno", () => {
    const e = fsErrorFromCode(nodeError("ENOENT", "ENOENT: no such file or directory, open '/x'"), "ENOENT");
    expect([e.ename, e.errno]).toEqual([Ename.NotFound, Errno.ENOENT]);
    const l = fsErrorFromCode(
      nodeError("ELOOP", "ELOOP: too many symbolic links encountered, open '/x'"),
      "ELOOP",
    );
    expect([l.ename, l.errno]).toEqual(["too many symbolic links encountered", Errno.ELOOP]);
    const u = fsErrorFromCode(nodeError("EWEIRD", "something odd"), "EWEIRD");
    expect([u.ename, u.errno]).toEqual(["eweird", Errno.EIO]);
  });
  it("toFsError: passes FsError through, maps known codes, falls back to EIO", () => {
    const fe = new FsError("mine", Errno.EPERM);
    expect(toFsError(fe)).toBe(fe);
    const e = toFsError(nodeError("ELOOP", "ELOOP: x"));
    expect([e.ename, e.errno]).toEqual(["too many levels of symbolic links", Errno.ELOOP]);
    const f = toFsError(new Error("boom"));
    expect([f.ename, f.errno]).toEqual([Ename.Io, Errno.EIO]);
  });
});
