// Errors only the client raises: failed version negotiation and walks that stopped short.

import { Ename, Errno, NinepError, RemoteError } from "../errors.js";

/** Version negotiation failed: Rversion "unknown", an error reply, or an unusable msize/version. */
export class VersionError extends NinepError {
  /** What the server answered ("unknown", a version string, or an error text). */
  readonly answer: string;
  constructor(message: string, answer: string) {
    super("E9P_VERSION", message);
    this.answer = answer;
  }
}

/**
 * A walk whose first element failed (Rerror) or that stopped part way (short Rwalk, W6).
 * `ename` is "file not found" for a short walk; `walked` counts the names that did resolve.
 */
export class WalkError extends RemoteError {
  readonly walked: number;
  readonly names: readonly string[];
  constructor(ename: string, errno: number | undefined, walked: number, names: readonly string[]) {
    super(ename, errno);
    this.walked = walked;
    this.names = names;
    const missing = names[walked];
    this.message =
      names.length > 1 && missing !== undefined
        ? `${ename} (walked ${walked} of ${names.length} names, stopped at "${missing}")`
        : ename;
  }
}

/** Short walk → the canonical "file not found" with ENOENT. */
export function shortWalkError(walked: number, names: readonly string[]): WalkError {
  return new WalkError(Ename.NotFound, Errno.ENOENT, walked, names);
}
