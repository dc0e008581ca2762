// Raw 9P requests for tests that talk to a server frame by frame (src/testing/raw.ts).
import { MsgType } from "../../src/codec/constants.js";
import type { Request } from "../../src/testing/raw.js";

export const walk = (fid: number, newfid: number, ...wname: string[]): Request => ({
  type: MsgType.Twalk,
  fid,
  newfid,
  wname,
});

export const lopen = (fid: number, flags: number): Request => ({ type: MsgType.Tlopen, fid, flags });

/** A 9P2000.L Tlock of the whole file for one owner. */
export const lock = (fid: number, locktype: number, flags = 0): Request => ({
  type: MsgType.Tlock,
  fid,
  locktype,
  flags,
  start: 0n,
  length: 0n,
  proc_id: 7,
  client_id: "audit",
});

/** A 9P2000.L Tgetlock of the whole file for the same owner as {@link lock}. */
export const getlock = (fid: number, locktype: number): Request => ({
  type: MsgType.Tgetlock,
  fid,
  locktype,
  start: 0n,
  length: 0n,
  proc_id: 7,
  client_id: "audit",
});
