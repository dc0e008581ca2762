// encode and decode of whole frames (size[4] type[1] tag[2] body), driven by the message table.

import { ProtocolError } from "../errors.js";
import { Dialect, MsgType, type MsgTypeName } from "./constants.js";
import { DIALECT_TABLE, type Entry, TABLE } from "./messages.js";
import { asBuffer, Reader } from "./reader.js";
import type { Message } from "./types.js";
import { badValue, putU16 } from "./writer.js";

/** Omit applied to each member of a union (each message type keeps its own fields). */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Bytes before every message body: size[4] type[1] tag[2]. */
export const HEADER_SIZE = 7;

function tableOf(dialect: Dialect): readonly (Entry | undefined)[] {
  const t = DIALECT_TABLE[dialect];
  if (t === undefined) throw new ProtocolError("bad-value", `unknown dialect ${JSON.stringify(dialect)}`);
  return t;
}

/**
 * Encodes one message as a whole frame, size[4] included. The size is computed first and the
 * frame is filled in one allocation. Values are validated (u8/u16/u32 ranges, u64 bigints,
 * strings ≤ 65535 bytes without NUL, at most 16 wname/wqid, a type this dialect speaks):
 * anything else throws ProtocolError("bad-value").
 *
 * Dialect fields: n_uname (Tauth/Tattach, .u and .L; default NONUNAME), errno (Rerror, .u;
 * default 0), extension (Tcreate, .u; default ""), the .u stat tail (extension "", n_uid/n_gid/
 * n_muid default NONUNAME). Fields of another dialect are ignored. The count of Rread, Twrite and
 * Rreaddir is `data.length`.
 *
 * @example
 * encode({ type: MsgType.Tclunk, tag: 3, fid: 1 }, "9P2000") // <0b 00 00 00 78 03 00 01 00 00 00>
 */
export function encode(msg: Message, dialect: Dialect): Buffer {
  return encodeTagged(msg, msg?.tag, dialect);
}

/**
 * encode() with the tag given apart from the message (whose own `tag`, if any, is ignored): a
 * caller that picks tags need not copy each message just to add one.
 */
export function encodeTagged(msg: DistributiveOmit<Message, "tag">, tag: number, dialect: Dialect): Buffer {
  if (msg === null || typeof msg !== "object") badValue("message", msg);
  return encodeTyped(msg.type, msg, tag, dialect);
}

/**
 * encode() with type and tag given apart from the fields (`body` needs no `type`): a server can
 * encode a reply straight from what its backend returned, without building a message from it.
 */
export function encodeTyped(type: number, body: object, tag: number, dialect: Dialect): Buffer {
  if (body === null || typeof body !== "object") badValue("message", body);
  const e = typeof type === "number" ? tableOf(dialect)[type] : undefined;
  if (e === undefined) badValue(`message type for ${dialect}`, type);
  const msg = body as Message;
  const size = HEADER_SIZE + e.size(msg, dialect);
  if (size > 0xffffffff) badValue("message size", size);
  const b = Buffer.allocUnsafe(size);
  b.writeUInt32LE(size, 0);
  b[4] = type;
  putU16(b, 5, tag, "tag");
  const end = e.encode(b, HEADER_SIZE, msg, dialect);
  if (end !== size) throw new Error(`internal: ${e.name} wrote ${end} of ${size} bytes`);
  return b;
}

/** Options of decode. */
export interface DecodeOptions {
  /** Reject frames larger than this (the negotiated msize) with "too-large". */
  msize?: number;
}

/**
 * Decodes one whole frame (as cut by the Framer). Throws only ProtocolError, with `reason`:
 * "truncated" (frame shorter than its size, or a field runs past the end), "bad-size" (size < 7
 * or frame longer than its size), "too-large" (size > opts.msize), "trailing-bytes",
 * "unknown-type" (not a type of this dialect: 9P2000.L types on 9P2000/.u, Topen/Tcreate/Tstat/
 * Twstat and their replies on .L), "bad-type" (Terror, Tlerror), "too-many-wnames", "bad-stat",
 * "bad-string". Never reads outside `frame`.
 *
 * The `data` of Rread, Twrite and Rreaddir is a view into `frame`, not a copy: copy it if the
 * frame's memory is reused.
 *
 * Rerror on a 9P2000.L connection (not part of .L, but what a non-.L server may answer to the
 * version offer) is accepted; its errno is read when exactly 4 bytes follow ename.
 */
export function decode(frame: Uint8Array, dialect: Dialect, opts?: DecodeOptions): Message {
  const table = tableOf(dialect);
  const b = asBuffer(frame);
  const n = b.length;
  if (n < 7) decodeHeader(b); // throws the precise reason
  const size =
    ((b[0] as number) | ((b[1] as number) << 8) | ((b[2] as number) << 16)) + (b[3] as number) * 0x1000000;
  const type = b[4] as number;
  const tag = (b[5] as number) | ((b[6] as number) << 8);
  if (size < HEADER_SIZE) throw new ProtocolError("bad-size", `size field ${size} is smaller than 7`, type);
  if (n < size)
    throw new ProtocolError("truncated", `frame of ${n} bytes is shorter than its size ${size}`, type);
  if (n > size)
    throw new ProtocolError("bad-size", `frame of ${n} bytes is longer than its size ${size}`, type);
  if (opts?.msize !== undefined && size > opts.msize) {
    throw new ProtocolError("too-large", `message of ${size} bytes exceeds msize ${opts.msize}`, type);
  }
  const e = table[type];
  if (e === undefined) {
    if (type === MsgType.Terror || type === MsgType.Tlerror) {
      throw new ProtocolError("bad-type", `${messageName(type)} is not a valid message`, type);
    }
    const name = messageName(type);
    throw new ProtocolError(
      "unknown-type",
      name === undefined ? `unknown message type ${type}` : `${name} is not a ${dialect} message`,
      type,
    );
  }
  const r = new Reader(b, HEADER_SIZE, size, type);
  const msg = e.decode(r, tag, dialect);
  if (r.pos !== size) {
    throw new ProtocolError("trailing-bytes", `${e.name}: ${size - r.pos} bytes after the last field`, type);
  }
  return msg;
}

/** The header of a frame. */
export interface Header {
  size: number;
  type: number;
  tag: number;
}

/**
 * Reads size, type and tag from the first 7 bytes of a frame (or of a frame's beginning): "truncated"
 * if fewer than 7 bytes, "bad-size" if size < 7. It does not compare size with the bytes given,
 * so a server can answer a malformed or oversized message with its tag.
 */
export function decodeHeader(frame: Uint8Array): Header {
  const b = asBuffer(frame);
  if (b.length < 4) throw new ProtocolError("truncated", `frame of ${b.length} bytes has no size field`);
  const size = b.readUInt32LE(0);
  if (size < HEADER_SIZE) throw new ProtocolError("bad-size", `size field ${size} is smaller than 7`);
  if (b.length < HEADER_SIZE)
    throw new ProtocolError("truncated", `frame of ${b.length} bytes has no header`);
  return { size, type: b[4] as number, tag: b.readUInt16LE(5) };
}

const NAMES: (MsgTypeName | undefined)[] = new Array(256).fill(undefined);
for (const [name, t] of Object.entries(MsgType)) NAMES[t] = name as MsgTypeName;

/** "Twalk" for 110; undefined for numbers that are no 9P message type. */
export function messageName(type: number): MsgTypeName | undefined {
  return NAMES[type];
}

/** True for known request types (even numbers: Tversion 100, Tlopen 12, ...). */
export function isTMessage(type: number): boolean {
  return NAMES[type] !== undefined && (type & 1) === 0;
}

/** True for known reply types. */
export function isRMessage(type: number): boolean {
  return NAMES[type] !== undefined && (type & 1) === 1;
}

/** The reply type of a request type (t + 1), or undefined if `ttype` is no request (or Terror/Tlerror). */
export function replyTypeFor(ttype: number): number | undefined {
  if (!isTMessage(ttype) || ttype === MsgType.Terror || ttype === MsgType.Tlerror) return undefined;
  return ttype + 1;
}

/** The error reply type of a dialect: Rlerror for 9P2000.L, Rerror otherwise. */
export function errorTypeFor(dialect: Dialect): number {
  return dialect === Dialect.P2000L ? MsgType.Rlerror : MsgType.Rerror;
}

/** True if `type` is a message this dialect speaks (what decode accepts). */
export function isDialectType(type: number, dialect: Dialect): boolean {
  return tableOf(dialect)[type] !== undefined;
}

/** Every message table entry, for tests and tools. */
export function messageEntries(): readonly Entry[] {
  return TABLE.filter((e): e is Entry => e !== undefined);
}
