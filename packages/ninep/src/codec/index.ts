// The 9P codec: bytes ↔ message objects for 9P2000, 9P2000.u and 9P2000.L. Pure and synchronous.

/** Every decoding failure is a ProtocolError, its `reason` one of ProtocolErrorReason. */
export { ProtocolError, type ProtocolErrorReason } from "../errors.js";
export * from "./constants.js";
export { decodeDirents, direntSize, encodeDirent, encodeDirents } from "./dirent.js";
export { formatData, formatMessage, formatQid, formatStat } from "./format.js";
export { FRAMER_DEFAULT_MAX, Framer, type FramerOptions } from "./framer.js";
export { modeQidConsistent, qidIsDir, qidTypeOf } from "./qid.js";
export {
  decodeStat,
  decodeStats,
  dontTouchStat,
  encodeStat,
  encodeStats,
  isDontTouch,
  statSize,
} from "./stat.js";
export type * from "./types.js";
export {
  type DecodeOptions,
  decode,
  decodeHeader,
  encode,
  errorTypeFor,
  HEADER_SIZE,
  type Header,
  isDialectType,
  isRMessage,
  isTMessage,
  messageName,
  replyTypeFor,
} from "./wire.js";
