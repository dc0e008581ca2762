// One error hierarchy for the whole package. Match on `code`, which is stable; messages may change.

export type NinepErrorCode =
  | "E9P_PROTOCOL"
  | "E9P_TOO_LARGE"
  | "E9P_REMOTE"
  | "E9P_CONNECTION"
  | "E9P_CLOSED"
  | "E9P_TIMEOUT"
  | "E9P_FS";

/** Base class of every error this package throws on purpose. */
export class NinepError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * Reasons a byte sequence is not a valid message. `reason` is stable and listed in the README.
 * code is always "E9P_PROTOCOL".
 */
export type ProtocolErrorReason =
  | "truncated" // a field runs past the end of the frame
  | "bad-size" // size field < 7, or disagrees with the data
  | "too-large" // frame larger than the negotiated msize
  | "trailing-bytes" // bytes left after the last field
  | "unknown-type" // type number not known in this dialect
  | "bad-type" // Terror/Tlerror, or a T/R message where the other was expected
  | "too-many-wnames" // nwname or nwqid > 16
  | "bad-stat" // a stat entry whose inner size or strings disagree with its length
  | "bad-string" // invalid UTF-8 or NUL inside a string
  | "bad-value" // a field value outside what the protocol allows (encoder side)
  | "unexpected"; // a well-formed message that makes no sense here (wrong tag, wrong reply type)

export class ProtocolError extends NinepError {
  readonly reason: ProtocolErrorReason;
  /** Message type number if the header was readable. */
  readonly msgType: number | undefined;
  constructor(reason: ProtocolErrorReason, message: string, msgType?: number) {
    super("E9P_PROTOCOL", message);
    this.reason = reason;
    this.msgType = msgType;
  }
}

/** A frame bigger than the negotiated msize (sending or receiving). */
export class MessageTooLargeError extends NinepError {
  readonly size: number;
  readonly msize: number;
  constructor(size: number, msize: number) {
    super("E9P_TOO_LARGE", `message of ${size} bytes exceeds msize ${msize}`);
    this.size = size;
    this.msize = msize;
  }
}

/** The server answered Rerror (9P2000/.u) or Rlerror (.L). `ename` is the server's exact text. */
export class RemoteError extends NinepError {
  readonly ename: string;
  readonly errno: number | undefined;
  constructor(ename: string, errno?: number) {
    super("E9P_REMOTE", ename);
    this.ename = ename;
    this.errno = errno;
  }
}

/** The transport failed (refused, reset, EOF mid-session). The Node error, if any, is `cause`. */
export class ConnectionError extends NinepError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E9P_CONNECTION", message, options);
  }
}

/** The connection was closed on purpose (close()/destroy()) before the call finished. */
export class ClosedError extends NinepError {
  constructor(message = "connection closed") {
    super("E9P_CLOSED", message);
  }
}

/** A call took longer than its timeout. */
export class TimeoutError extends NinepError {
  constructor(message: string) {
    super("E9P_TIMEOUT", message);
  }
}

/** Canonical Plan 9 / lib9p error strings: what servers put on the wire. */
export const Ename = {
  UnknownFid: "unknown fid",
  DuplicateFid: "duplicate fid",
  DuplicateTag: "duplicate tag",
  NotFound: "file not found",
  Perm: "permission denied",
  IsDir: "is a directory",
  NotDir: "not a directory",
  WalkNoDir: "walk in non-directory",
  CreateNoDir: "create in non-directory",
  Exists: "file exists",
  BadOffset: "bad offset",
  BadCount: "bad count",
  Botch: "9P protocol botch",
  CreateProhibited: "create prohibited",
  RemoveProhibited: "remove prohibited",
  StatProhibited: "stat prohibited",
  WstatProhibited: "wstat prohibited",
  UnknownMessage: "unknown message",
  BadWstat: "bad directory in wstat",
  Short: "i/o count too small",
  NotOpen: "fid not open",
  AlreadyOpen: "fid already open",
  BadOpenMode: "bad open mode",
  ExclInUse: "exclusive use file already open",
  NotEmpty: "directory not empty",
  NoAuth: "authentication not required",
  AuthFailed: "authentication failed",
  Interrupted: "interrupted",
  NotSupported: "operation not supported",
  TooManyFids: "too many fids",
  TooManyRequests: "too many outstanding requests",
  Io: "i/o error",
  NoSpace: "no space left on device",
  ReadOnly: "read-only file system",
} as const;

/** Linux errno values used by 9P2000.u Rerror and 9P2000.L Rlerror. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EPROTO: 71,
  EOPNOTSUPP: 95,
} as const;

/**
 * An error a server handler throws to answer the request with Rerror/Rlerror.
 * `ename` goes on the wire as is; `errno` is used for 9P2000.u and 9P2000.L.
 */
export class FsError extends NinepError {
  readonly ename: string;
  readonly errno: number;
  constructor(ename: string, errno: number = errnoForEname(ename)) {
    super("E9P_FS", ename);
    this.ename = ename;
    this.errno = errno;
  }
}

const ENAME_ERRNO: Record<string, number> = {
  [Ename.UnknownFid]: Errno.EBADF,
  [Ename.DuplicateFid]: Errno.EBADF,
  [Ename.DuplicateTag]: Errno.EINVAL,
  [Ename.NotFound]: Errno.ENOENT,
  [Ename.Perm]: Errno.EACCES,
  [Ename.IsDir]: Errno.EISDIR,
  [Ename.NotDir]: Errno.ENOTDIR,
  [Ename.WalkNoDir]: Errno.ENOTDIR,
  [Ename.CreateNoDir]: Errno.ENOTDIR,
  [Ename.Exists]: Errno.EEXIST,
  [Ename.BadOffset]: Errno.EINVAL,
  [Ename.BadCount]: Errno.EINVAL,
  [Ename.Botch]: Errno.EPROTO,
  [Ename.UnknownMessage]: Errno.ENOSYS,
  [Ename.BadWstat]: Errno.EINVAL,
  [Ename.Short]: Errno.EINVAL,
  [Ename.NotOpen]: Errno.EBADF,
  [Ename.AlreadyOpen]: Errno.EBADF,
  [Ename.BadOpenMode]: Errno.EINVAL,
  [Ename.ExclInUse]: Errno.EBUSY,
  [Ename.NotEmpty]: Errno.ENOTEMPTY,
  [Ename.Interrupted]: Errno.EINTR,
  [Ename.NotSupported]: Errno.EOPNOTSUPP,
  [Ename.TooManyFids]: Errno.EMFILE,
  [Ename.TooManyRequests]: Errno.EAGAIN,
  [Ename.NoSpace]: Errno.ENOSPC,
  [Ename.ReadOnly]: Errno.EROFS,
};

/** The errno a canonical ename maps to (EIO for anything unknown). */
export function errnoForEname(ename: string): number {
  return ENAME_ERRNO[ename] ?? Errno.EIO;
}

/** Node error codes that have a canonical ename. */
const CANONICAL_CODE: Record<string, [string, number]> = {
  ENOENT: [Ename.NotFound, Errno.ENOENT],
  EACCES: [Ename.Perm, Errno.EACCES],
  EPERM: [Ename.Perm, Errno.EPERM],
  EEXIST: [Ename.Exists, Errno.EEXIST],
  ENOTDIR: [Ename.NotDir, Errno.ENOTDIR],
  EISDIR: [Ename.IsDir, Errno.EISDIR],
  ENOTEMPTY: [Ename.NotEmpty, Errno.ENOTEMPTY],
  ENOSPC: [Ename.NoSpace, Errno.ENOSPC],
  EROFS: [Ename.ReadOnly, Errno.EROFS],
};

const NODE_CODE: Record<string, [string, number]> = {
  ...CANONICAL_CODE,
  EINVAL: ["invalid argument", Errno.EINVAL],
  ELOOP: ["too many levels of symbolic links", Errno.ELOOP],
  ENAMETOOLONG: ["file name too long", Errno.ENAMETOOLONG],
  EXDEV: ["cross-device link", Errno.EXDEV],
  EBUSY: ["device or resource busy", Errno.EBUSY],
  ETXTBSY: ["text file busy", Errno.ETXTBSY],
  EFBIG: ["file too large", Errno.EFBIG],
  EMFILE: [Ename.TooManyFids, Errno.EMFILE],
  ENODATA: ["no data available", Errno.ENODATA],
  EOPNOTSUPP: [Ename.NotSupported, Errno.EOPNOTSUPP],
  ENOSYS: [Ename.NotSupported, Errno.ENOSYS],
  EIO: [Ename.Io, Errno.EIO],
  ENXIO: ["no such device or address", Errno.ENXIO],
  EBADF: ["bad file descriptor", Errno.EBADF],
  EAGAIN: ["resource temporarily unavailable", Errno.EAGAIN],
  EINTR: [Ename.Interrupted, Errno.EINTR],
  ESPIPE: ["illegal seek", Errno.ESPIPE],
};

/**
 * Turns anything a handler threw into an FsError: FsError passes through; Node system errors map
 * by `code`; anything else becomes `fallback` (the caller logs the original).
 */
export function toFsError(err: unknown, fallback = Ename.Io): FsError {
  if (err instanceof FsError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    const hit = NODE_CODE[code];
    if (hit) return new FsError(hit[0], hit[1]);
  }
  return new FsError(fallback, Errno.EIO);
}

/**
 * Turns a Node system error with `code` into the FsError a server replies with: a canonical ename
 * where there is one, else the short part of Node's message (from "EINVAL: invalid argument, open
 * '/x'" it keeps "invalid argument") with that code's errno (EIO if the code is not in Errno).
 */
export function fsErrorFromCode(err: unknown, code: string): FsError {
  const hit = CANONICAL_CODE[code];
  if (hit) return new FsError(hit[0], hit[1]);
  const errno = (Errno as Record<string, number>)[code];
  const msg = (err as Error).message ?? code;
  const short = /^[A-Z]+: ([^,]+)/.exec(msg)?.[1] ?? code.toLowerCase();
  return new FsError(short, errno ?? Errno.EIO);
}

/** The C library's text (strerror) for the errors a connect(2) ends with, as the original printed it. */
const CONNECT_ERROR_TEXT: Record<string, string> = {
  ECONNREFUSED: "Connection refused",
  EHOSTUNREACH: "No route to host",
  ENETUNREACH: "Network is unreachable",
  ETIMEDOUT: "Connection timed out",
  ECONNRESET: "Connection reset by peer",
  EADDRNOTAVAIL: "Cannot assign requested address",
  EACCES: "Permission denied",
  EPERM: "Operation not permitted",
};

/**
 * The original XCPU tools' words for a failed dial, which scripts look for, from a failed
 * connect's Node error (a ConnectionError's `cause`): ` (cannot resolve name: HOST)`, or the C
 * library's text of the connect error and the address (` (Connection refused:IP)`,
 * ` (No route to host:IP)`, …), or "" for any other failure. A host name with several addresses
 * fails with an AggregateError of one error per address tried: the IPv4 address is named (the
 * original tools dialled IPv4), a refusal first, else the first address tried.
 */
export function connectFailureWords(cause: unknown): string {
  type DialError = NodeJS.ErrnoException & { hostname?: string; address?: string; errors?: unknown[] };
  const e = cause as DialError | undefined;
  if (!e || typeof e !== "object") return "";
  if ((e.code === "ENOTFOUND" || e.code === "EAI_AGAIN") && e.hostname)
    return ` (cannot resolve name: ${e.hostname})`;
  const tried = (Array.isArray(e.errors) ? (e.errors as DialError[]) : [e]).filter(
    (x) => x && typeof x === "object" && x.code !== undefined && x.code in CONNECT_ERROR_TEXT,
  );
  if (tried.length === 0) return "";
  const refused = tried.filter((x) => x.code === "ECONNREFUSED");
  const pool = refused.length > 0 ? refused : tried;
  const named = pool.find((x) => x.address && !x.address.includes(":")) ?? pool[0]!;
  return ` (${CONNECT_ERROR_TEXT[named.code as string]}:${named.address ?? ""})`;
}

/** The first error of class `cls` in `err`'s chain of causes (err itself included), if any. */
export function causeOf<E extends Error>(
  err: unknown,
  cls: abstract new (...a: never[]) => E,
): E | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof cls) return e;
  }
  return undefined;
}
