// The seam between the 9P protocol engine (connection.ts) and whatever serves files: a synthetic
// tree (tree.ts), a passthrough of a real directory, or anything else implementing these types.
//
// Division of labour (lib9p srv.c style): the Connection owns every piece of protocol bookkeeping —
// version negotiation, the fid table, tags and Tflush, "fid is open / not open / is a directory"
// checks, open-mode validation, DMEXCL locking, the 9P2000 directory cursor (D1–D4), clamping counts
// to msize, `..` at the attach root, Tremove clunking even on failure, ORCLOSE on clunk. It commits
// fid state only after a backend call succeeds. The backend only answers questions about files and
// enforces permissions (it alone knows owners and groups).
//
// Every backend method receives a RequestContext whose `signal` is aborted on Tflush, Tversion,
// disconnect or server shutdown; long or blocking operations must honour it (reject promptly, e.g.
// with `signal.reason`). To answer a request with an error, throw `new FsError(Ename.X)` (the ename
// goes on the wire, the errno is used on 9P2000.u/.L); Node system errors (ENOENT, EACCES, …) are
// mapped by code; anything else is logged and answered with a generic "i/o error".

import type { Dialect } from "../codec/constants.js";
import type {
  Dirent,
  Qid,
  Rgetattr,
  Rgetlock,
  Rstatfs,
  Stat,
  Tgetlock,
  Tlock,
  Tsetattr,
} from "../codec/types.js";

/** The user a request is made for: established by Tattach (or Tauth) and kept in every fid. */
export interface Identity {
  /** uname from Tattach/Tauth. */
  readonly uname: string;
  /** Numeric uid from 9P2000.u/.L Tattach; NONUNAME (0xFFFFFFFF) when absent or on 9P2000. */
  readonly n_uname: number;
  /** aname from Tattach/Tauth: which tree was asked for ("" = default). */
  readonly aname: string;
}

/** Facts about the connection a request arrived on. */
export interface ConnectionInfo {
  /** Unique per Server, increasing. */
  readonly id: number;
  /** e.g. "127.0.0.1:40312", "unix", "duplex". */
  readonly remote: string;
}

/** Passed to every backend call. */
export interface RequestContext {
  /** Aborted on Tflush of this request, Tversion, disconnect or server shutdown. */
  readonly signal: AbortSignal;
  /** The user of the fid the request is about (for Tauth/Tattach: the user being introduced). */
  readonly user: Identity;
  /** Negotiated dialect of the connection. */
  readonly dialect: Dialect;
  /** Negotiated msize. */
  readonly msize: number;
  /** msize - IOHDRSZ: the largest read/write count on this connection. */
  readonly iounit: number;
  readonly connection: ConnectionInfo;
}

/**
 * Changes requested by a Twstat (9P2000/.u). Only fields that are NOT "don't touch" are present
 * (S3): an empty object means "commit to stable storage" and the server calls `Node.sync` (if any)
 * instead of `wstat`. The Connection has already rejected changes to type, dev and qid, a flip of
 * the DMDIR bit and names containing "/" or equal to "." / "..". The backend must apply all
 * remaining changes or none (S4) and check permissions (S2).
 */
export interface StatChanges {
  name?: string;
  length?: bigint;
  mode?: number;
  atime?: number;
  mtime?: number;
  uid?: string;
  gid?: string;
  muid?: string;
  /** 9P2000.u */
  extension?: string;
  n_uid?: number;
  n_gid?: number;
  n_muid?: number;
}

/** Arguments of Tcreate (O6). */
export interface CreateRequest {
  /** Already checked: not "", ".", ".." and contains no "/". */
  name: string;
  /** Permission and DM* bits as sent (the backend applies the parent-directory mask of O6). */
  perm: number;
  /** Open mode for the new file (OREAD…OEXEC plus OTRUNC/ORCLOSE). Not checked against perm. */
  mode: number;
  /** 9P2000.u extension string ("" on 9P2000). */
  extension: string;
  /** 9P2000.u hard link (perm has DMLINK): the node named by the fid number in `extension`. */
  linkTarget?: Node;
}

/** Result of a create: the new node, opened. */
export interface Created {
  node: Node;
  file: OpenFile;
}

/** 9P2000.L getattr result (everything after the header of Rgetattr). */
export type Attr = Omit<Rgetattr, "type" | "tag">;
/** 9P2000.L setattr request (everything after `fid`). */
export type SetAttr = Omit<Tsetattr, "type" | "tag" | "fid">;
/** 9P2000.L statfs result. */
export type StatFs = Omit<Rstatfs, "type" | "tag">;
/** 9P2000.L lock request. */
export type LockRequest = Omit<Tlock, "type" | "tag" | "fid">;
/** 9P2000.L getlock request and result. */
export type GetLockRequest = Omit<Tgetlock, "type" | "tag" | "fid">;
export type GetLockResult = Omit<Rgetlock, "type" | "tag">;

/**
 * A file as named by one or more fids (not necessarily open). Node objects may be shared by several
 * fids (a Twalk with no names clones the reference); per-open state belongs in the OpenFile.
 *
 * Only `qid`, `stat` and (for directories) `walk1` and `open` are needed for a read-only tree;
 * everything else is optional and the server answers the corresponding request with an error
 * (9P2000/.u: "operation not supported" / "permission denied" style enames; .L: EOPNOTSUPP) when
 * absent.
 */
export interface Node {
  /**
   * The file's current qid. Read synchronously by the server for Rattach/Rwalk/Ropen; may be a
   * getter (vers changes on write). `qid.type` must equal the top byte of the mode `stat` reports,
   * and `qid.path` must be unique among all files the backend serves (the server keys DMEXCL locks
   * on it, and uses it to recognise the attach root).
   */
  readonly qid: Qid;

  /** Tstat. Needs no permission (S1). The server replaces `name` with "/" for the attach root. */
  stat(ctx: RequestContext): Promise<Stat>;

  /**
   * Look up one name in this directory (W4). Check search (execute) permission for ctx.user.
   * Called with "..": return the parent (the server never asks for ".." of the attach root: it
   * answers with the root itself, W7). Throw FsError(Ename.NotFound) when missing.
   */
  walk1?(name: string, ctx: RequestContext): Promise<Node>;

  /**
   * Topen: check permission for the access in `mode` (low two bits; OTRUNC needs write, ORCLOSE
   * needs remove permission) and prepare I/O. The server has already refused directories opened
   * for anything but OREAD (O2), bad mode bits, and a second open of a DMEXCL file (O4).
   * OTRUNC must truncate (unless the file is append-only).
   */
  open?(mode: number, ctx: RequestContext): Promise<OpenFile>;

  /** Tcreate in this directory (O6): create `req.name`, open it with `req.mode`. */
  create?(req: CreateRequest, ctx: RequestContext): Promise<Created>;

  /**
   * Tremove, and clunk of a fid opened with ORCLOSE: remove this file (permission: write in the
   * parent). The server clunks the fid whatever happens (C2).
   */
  remove?(ctx: RequestContext): Promise<void>;

  /** Twstat with at least one field to change (see StatChanges). */
  wstat?(changes: StatChanges, ctx: RequestContext): Promise<void>;

  /** Twstat with every field "don't touch" (S3): flush to stable storage. Default: success. */
  sync?(ctx: RequestContext): Promise<void>;

  /**
   * A fid names this node from now on (Tattach, the fid a Twalk made or moved, a clone, the fid a
   * create moved to the new file). Each hold is later matched by one release().
   */
  hold?(): void;

  /**
   * A fid naming this node went away (Tclunk, Tremove, Tversion, disconnect), after its OpenFile
   * (if any) was clunked. Called once per fid, including clones; also for a node the backend
   * produced that no fid came to hold (an attach or create that was flushed), without a hold
   * before it. Errors are logged, never sent.
   */
  release?(ctx: RequestContext): void | Promise<void>;

  // ---- 9P2000.L (only used on a 9P2000.L connection) -------------------------------------------
  // When a method is missing the server answers Rlerror EOPNOTSUPP, except where a fallback is
  // noted: the server derives getattr from stat, lopen from open, lcreate and mkdir from create,
  // and Treaddir from OpenFile.list.

  /**
   * Tgetattr. Fallback: built from stat(). A backend that has the answer at once may return it
   * directly: the reply then goes out without a promise round trip.
   */
  getattr?(mask: bigint, ctx: RequestContext): Promise<Attr> | Attr;
  /** Tsetattr. */
  setattr?(attr: SetAttr, ctx: RequestContext): Promise<void>;
  /**
   * Tlopen with Linux open(2) flags. Fallback: open() with the flags mapped to a 9P mode
   * (O_ACCMODE → OREAD/OWRITE/ORDWR, O_TRUNC → OTRUNC).
   */
  lopen?(flags: number, ctx: RequestContext): Promise<OpenFile>;
  /** Tlcreate in this directory; the fid then names the new, open file. Fallback: create(). */
  lcreate?(name: string, flags: number, mode: number, gid: number, ctx: RequestContext): Promise<Created>;
  /** Tsymlink in this directory. */
  symlink?(name: string, target: string, gid: number, ctx: RequestContext): Promise<Node>;
  /** Tmknod in this directory (mode carries S_IFMT). */
  mknod?(
    name: string,
    mode: number,
    major: number,
    minor: number,
    gid: number,
    ctx: RequestContext,
  ): Promise<Node>;
  /** Tmkdir in this directory. Fallback: create() with DMDIR. */
  mkdir?(name: string, mode: number, gid: number, ctx: RequestContext): Promise<Node>;
  /** Tlink: make `name` in this directory a hard link to `target`. */
  link?(target: Node, name: string, ctx: RequestContext): Promise<void>;
  /** Trename: move this node into directory `dir` under `name`. */
  rename?(dir: Node, name: string, ctx: RequestContext): Promise<void>;
  /** Trenameat: rename `oldname` in this directory to `newname` in `newDir`. */
  renameat?(oldname: string, newDir: Node, newname: string, ctx: RequestContext): Promise<void>;
  /** Tunlinkat: remove `name` from this directory (flags may carry AT_REMOVEDIR). */
  unlinkat?(name: string, flags: number, ctx: RequestContext): Promise<void>;
  /** Treadlink. */
  readlink?(ctx: RequestContext): Promise<string>;
  /** Tstatfs. */
  statfs?(ctx: RequestContext): Promise<StatFs>;
  /** Txattrwalk: the returned file is read through `newfid`; `size` is the value (or list) size. */
  xattrwalk?(name: string, ctx: RequestContext): Promise<{ size: bigint; file: OpenFile }>;
  /** Txattrcreate: the fid becomes a write target; commit the value in the file's clunk(). */
  xattrcreate?(name: string, size: bigint, flags: number, ctx: RequestContext): Promise<OpenFile>;
}

/**
 * Per-fid state of an open file (Topen, Tcreate, Tlopen, Tlcreate, Txattrwalk, Txattrcreate).
 * The server only calls read/write when the open mode allows it (R1), clamps counts to msize -
 * IOHDRSZ (R4) and truncates over-long read results defensively.
 */
export interface OpenFile {
  /** Preferred I/O size (O5); 0 or absent = msize - IOHDRSZ. Clamped by the server. */
  readonly iounit?: number;
  /** The qid after opening (e.g. a new version after OTRUNC); absent = node.qid. */
  readonly qid?: Qid;

  /**
   * Tread on a file: at most `count` bytes at `offset`; an empty result means end of file (R2).
   * May block until data is available (R5) and must then honour ctx.signal.
   */
  read?(offset: bigint, count: number, ctx: RequestContext): Promise<Uint8Array>;

  /**
   * Optional zero-copy form of `read`, preferred by the server when present: fill `buf` (its
   * length is the clamped count) with the bytes at `offset` and return how many were filled
   * (0 = end of file). `buf` is the data field of the reply frame itself, so nothing is copied.
   * Same rules as `read`; keep `read` too (the server uses it where the frame cannot be shared).
   */
  readInto?(offset: bigint, buf: Buffer, ctx: RequestContext): Promise<number> | number;

  /** Twrite: returns the number of bytes written (append-only files ignore offset). */
  write?(offset: bigint, data: Uint8Array, ctx: RequestContext): Promise<number>;

  /**
   * True when nothing refers to `data` any more once the promise `write` returned has settled
   * (no copy kept, no write still running): the server may then reuse the memory of the frame
   * the data came in.
   */
  readonly releasesWriteData?: boolean;

  /**
   * Directory listing for 9P2000/.u directory reads (and the .L Treaddir fallback): one stat per
   * member, no "." or "..". The server calls it on the first read and on every read at offset 0,
   * keeps the result as the fid's snapshot and cuts it into whole entries (D1–D4).
   */
  list?(ctx: RequestContext): Promise<Stat[]>;

  /**
   * 9P2000.L Treaddir: entries following the cookie `offset` (0 = from the start). Return as many as
   * convenient; the server packs whole entries into `count` bytes and drops the rest (the client
   * continues from the last entry it got).
   */
  readdir?(offset: bigint, count: number, ctx: RequestContext): Promise<Dirent[]>;

  /** 9P2000.L Tfsync. Default: success. */
  fsync?(datasync: boolean, ctx: RequestContext): Promise<void>;
  /** 9P2000.L Tlock: returns the status byte (0 success, 1 blocked, 2 error, 3 grace). */
  lock?(req: LockRequest, ctx: RequestContext): Promise<number>;
  /** 9P2000.L Tgetlock. */
  getlock?(req: GetLockRequest, ctx: RequestContext): Promise<GetLockResult>;

  /**
   * The fid is going away (Tclunk, Tremove, Tversion, disconnect). Called exactly once, before
   * any ORCLOSE removal and before Node.release. A client may clunk a fid while one of its reads is still
   * pending (it did not flush it first): end such a read here if it would block forever. A thrown FsError is reported in the Rclunk's
   * place (the fid is freed anyway, C1); during Tversion/disconnect errors are only logged.
   */
  clunk?(ctx: RequestContext): void | Promise<void>;
}

/**
 * The file behind an afid (Tauth, A3/A4). Reads and writes carry the authentication protocol.
 */
export interface AuthFile {
  /** Must have QTAUTH in its type. */
  readonly qid: Qid;
  read(offset: bigint, count: number, ctx: RequestContext): Promise<Uint8Array>;
  write(offset: bigint, data: Uint8Array, ctx: RequestContext): Promise<number>;
  /**
   * True once the protocol has completed successfully for this uname/aname (Tattach presents the
   * afid; the server refuses the attach while this is false).
   */
  authenticated(user: Identity): boolean;
  clunk?(ctx: RequestContext): void | Promise<void>;
}

/** Arguments of Tattach. */
export interface AttachRequest extends Identity {
  /** The validated auth file when the client attached with an afid; undefined for NOFID. */
  readonly auth?: AuthFile;
}

/**
 * What a Server serves. One Backend per Server; `attach` is called once per Tattach and returns
 * the root of the tree named by `aname` for that user.
 *
 * @example
 * const backend: Backend = { attach: async () => root }; // root: a SynthDir from tree.ts
 */
export interface Backend {
  /**
   * Dialects this backend can serve, e.g. ["9P2000", "9P2000.u"] (the default when absent).
   * Include "9P2000.L" only if it implements (or accepts the fallbacks for) the .L methods.
   */
  readonly dialects?: readonly Dialect[];

  /**
   * Tattach: return the root node of the tree for `req.aname` as seen by `req.uname`. Throw
   * FsError to refuse (e.g. unknown aname, authentication required but req.auth absent).
   */
  attach(req: AttachRequest, ctx: RequestContext): Promise<Node>;

  /**
   * Tauth: return the auth file for this user, or leave undefined: the server then answers Tauth
   * with Rerror "authentication not required" (A4).
   */
  auth?(req: Identity, ctx: RequestContext): Promise<AuthFile>;

  /** A connection ended (all its fids are already clunked). */
  disconnect?(conn: ConnectionInfo): void;
}
