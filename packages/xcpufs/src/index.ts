// @clustermatic/xcpufs: the XCPU node server.

export { main } from "./cli.js";
export { XcpuError } from "./errors.js";
export {
  CHALLENGE_SIZE,
  decryptPasskey,
  ed25519ToX25519,
  encryptPasskey,
  type KeyKind,
  MAX_RESPONSE,
  type PublicKey,
  parsePublicKey,
  passkeyResponse,
  toOpenSshLine,
  verifyResponse,
} from "./keys.js";
export { PROCS_HEADER, procsText } from "./procs.js";
export { QuoteError, quote, quoteAll, tokenize } from "./quote.js";
export {
  DEFAULT_ADMIN_KEY,
  DEFAULT_MSIZE,
  DEFAULT_PORT,
  type ForkHelperKind,
  isLoopback,
  startXcpufs,
  XCPU_MSIZE,
  type XcpufsHandle,
  type XcpufsOptions,
} from "./server.js";
export { State } from "./session.js";
export { parseSignal, SIGNALS, waitStatus } from "./signals.js";
export { fanout, formatTargets, parseTargets, type Target, XCPU_PORT } from "./tspawn.js";
export { ADMIN_NAME, DEFAULT_ADMIN_ID, importUnixUsers, UserDb } from "./users.js";
