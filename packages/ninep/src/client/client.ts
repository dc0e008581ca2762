// One 9P connection seen from the client: version negotiation, tag multiplexing with many
// requests in flight, Tflush on abort/timeout, and the close()/destroy() lifecycle.

import type { Duplex } from "node:stream";
import {
  Dialect,
  decode,
  decodeHeader,
  formatMessage,
  IOHDRSZ,
  MsgType,
  messageName,
  NOFID,
  NONUNAME,
  NOTAG,
} from "../codec/index.js";
import type * as T from "../codec/types.js";
import { encodeTagged, HEADER_SIZE } from "../codec/wire.js";
import {
  ClosedError,
  ConnectionError,
  MessageTooLargeError,
  ProtocolError,
  RemoteError,
  TimeoutError,
} from "../errors.js";
import { afterIoTimeout } from "../io-timeout.js";
import { type Address, dial, FrameTransport, formatAddress, parseAddress } from "../transport/index.js";
import { VersionError } from "./errors.js";
import { Fid } from "./fid.js";
import { lerrorText } from "./lerror.js";
import { FidPool, TagPool } from "./pools.js";

/** Twrite data of at least this many bytes is written from the caller's buffer, not copied into the frame. */
const SHARED_WRITE_DATA = 8192;
const NO_DATA = new Uint8Array(0);

/** Default msize: 64 KiB of data per read or write plus the 24-byte I/O header (Linux uses the same). */
export const DEFAULT_CLIENT_MSIZE = 65536 + IOHDRSZ;

export interface ClientOptions {
  /** Largest message we offer; the server may lower it. Default 65560 (64 KiB payloads). */
  msize?: number;
  /** Dialect to ask for. Default "9P2000.u"; a server may answer a plainer one (V4). */
  version?: Dialect;
  /** Default per-call timeout in ms (a timed-out call is flushed). Default: none. */
  timeoutMs?: number;
  /** Connect + version negotiation timeout in ms. Default 10000. */
  connectTimeoutMs?: number;
  /** Called with one line per message sent (`->`) and received (`<-`). */
  trace?: (line: string) => void;
  /** Port used when a TCP address has none. Default 564. */
  defaultPort?: number;
  /** Aborts connecting. */
  signal?: AbortSignal;
  /** Name for the peer in error messages when `address` is a Duplex. */
  label?: string;
}

export interface CallOptions {
  /** Abort the call: Tflush is sent and the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Per-call timeout in ms (overrides the client default; 0 = none). Flushes and rejects with TimeoutError. */
  timeoutMs?: number;
}

/** Internal: called when a reply (or, with `undefined`, the Rflush) arrives for an abandoned call. */
export interface LateHandler {
  onLate?: (reply: T.RMessage | undefined) => void;
  /**
   * Called when the call fails before its request was sent (closed client, signal already
   * aborted, a message too large): nothing happened on the server.
   */
  onUnsent?: () => void;
}

/** Any T-message without its tag (the client picks tags). */
export type Request = T.TMessage extends infer M ? (M extends T.TMessage ? Omit<M, "tag"> : never) : never;

interface ReplyMap {
  [MsgType.Tversion]: T.Rversion;
  [MsgType.Tauth]: T.Rauth;
  [MsgType.Tattach]: T.Rattach;
  [MsgType.Tflush]: T.Rflush;
  [MsgType.Twalk]: T.Rwalk;
  [MsgType.Topen]: T.Ropen;
  [MsgType.Tcreate]: T.Rcreate;
  [MsgType.Tread]: T.Rread;
  [MsgType.Twrite]: T.Rwrite;
  [MsgType.Tclunk]: T.Rclunk;
  [MsgType.Tremove]: T.Rremove;
  [MsgType.Tstat]: T.Rstat;
  [MsgType.Twstat]: T.Rwstat;
  [MsgType.Tstatfs]: T.Rstatfs;
  [MsgType.Tlopen]: T.Rlopen;
  [MsgType.Tlcreate]: T.Rlcreate;
  [MsgType.Tsymlink]: T.Rsymlink;
  [MsgType.Tmknod]: T.Rmknod;
  [MsgType.Trename]: T.Rrename;
  [MsgType.Treadlink]: T.Rreadlink;
  [MsgType.Tgetattr]: T.Rgetattr;
  [MsgType.Tsetattr]: T.Rsetattr;
  [MsgType.Txattrwalk]: T.Rxattrwalk;
  [MsgType.Txattrcreate]: T.Rxattrcreate;
  [MsgType.Treaddir]: T.Rreaddir;
  [MsgType.Tfsync]: T.Rfsync;
  [MsgType.Tlock]: T.Rlock;
  [MsgType.Tgetlock]: T.Rgetlock;
  [MsgType.Tlink]: T.Rlink;
  [MsgType.Tmkdir]: T.Rmkdir;
  [MsgType.Trenameat]: T.Rrenameat;
  [MsgType.Tunlinkat]: T.Runlinkat;
}

/** The reply type for a request type. */
export type ReplyFor<R extends { type: number }> = R["type"] extends keyof ReplyMap
  ? ReplyMap[R["type"]]
  : never;

interface Pending {
  tag: number;
  /** T-message type; the expected reply is type + 1. */
  type: number;
  resolve(reply: T.RMessage): void;
  reject(err: unknown): void;
  /** The caller has been answered (abort/timeout); we only wait for the Rflush now. */
  abandoned: boolean;
  /** The reply for an abandoned call came in before the Rflush. */
  replied: boolean;
  /** A Tflush for this call is in flight. */
  flushing?: boolean;
  onLate?: (reply: T.RMessage | undefined) => void;
  cleanup?: () => void;
  /** For a Tflush: the tag it flushes. */
  oldtag?: number;
  /** The request (for the fids it names, should it be abandoned). */
  msg?: Request;
  /** The fids an abandoned call names, counted in the client's #abandonedOnFid. */
  fids?: number[];
  /** When the call times out (monotonic ms, see `now`), while it is in the client's timed set. */
  deadline?: number;
  /** Its time limit, for the error message. */
  timeoutMs?: number;
  /** The most the reply may carry: bytes for Tread/Treaddir and Twrite, qids for Twalk. */
  limit?: number;
}

/** Monotonic milliseconds. */
function now(): number {
  const [s, ns] = process.hrtime();
  return s * 1000 + ns / 1e6;
}

function tryDecode(frame: Buffer, msize: number): T.Message | undefined {
  for (const d of [Dialect.P2000, Dialect.P2000L]) {
    try {
      return decode(frame, d, { msize });
    } catch {}
  }
  return undefined;
}

/**
 * An Rerror whose whole body is a u32 errno, as some 9P2000.L servers send in place of Rlerror
 * (Linux's client reads it so): read as the Rlerror it stands for. Any other frame: undefined.
 */
function bareErrnoReply(frame: Buffer): T.Rlerror | undefined {
  if (frame.length !== HEADER_SIZE + 4 || frame[4] !== MsgType.Rerror) return undefined;
  return { type: MsgType.Rlerror, tag: frame.readUInt16LE(5), ecode: frame.readUInt32LE(HEADER_SIZE) };
}

/** The first bytes of a frame in hex, for a trace line. */
function hexOf(frame: Buffer): string {
  const shown = frame.subarray(0, 64).toString("hex");
  return frame.length > 64 ? `${shown}… (${frame.length} bytes)` : shown;
}

/** What a reply to `msg` may carry at most (see Pending.limit). */
function limitOf(msg: Request): number | undefined {
  switch (msg.type) {
    case MsgType.Tread:
    case MsgType.Treaddir:
      return msg.count;
    case MsgType.Twrite:
      return msg.data.length;
    case MsgType.Twalk:
      return msg.wname.length;
    default:
      return undefined;
  }
}

/** What a reply carries, in the unit of Pending.limit, and that unit. */
function amountOf(reply: T.RMessage): [number, string] | undefined {
  switch (reply.type) {
    case MsgType.Rread:
    case MsgType.Rreaddir:
      return [reply.data.length, "bytes"];
    case MsgType.Rwrite:
      return [reply.count, "bytes"];
    case MsgType.Rwalk:
      return [reply.wqid.length, "qids"];
    default:
      return undefined;
  }
}

/** The existing fids a request names (not the one a walk, attach or auth makes). */
function fidsOf(msg: Request): number[] {
  const m = msg as {
    fid?: number;
    dfid?: number;
    olddirfid?: number;
    newdirfid?: number;
    dirfd?: number;
  };
  const fids: number[] = [];
  for (const f of [m.fid, m.dfid, m.olddirfid, m.newdirfid, m.dirfd]) {
    if (f !== undefined && !fids.includes(f)) fids.push(f);
  }
  return fids;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The operation was aborted", "AbortError");
}

/**
 * A 9P client connection.
 *
 * @example
 * const client = await Client.connect("tcp!127.0.0.1!564", { version: "9P2000.L" });
 * const root = await client.attach("nobody", "/srv");
 * const fid = await root.walk("etc/hostname");
 * await fid.open(OREAD);
 * console.log((await fid.read(0, 8192)).toString());
 * await fid.clunk();
 * await client.close();
 */
export class Client {
  /** Negotiated maximum message size. */
  msize: number;
  /** Negotiated dialect. */
  dialect: Dialect;
  /** How the peer is named in errors ("tcp!host!port", "unix!/path", or the label given). */
  readonly label: string;
  readonly #transport: FrameTransport;
  readonly #tags = new TagPool();
  /** @internal */
  readonly fids = new FidPool();
  readonly #pending = new Map<number, Pending>();
  readonly #trace: ((line: string) => void) | undefined;
  readonly #defaultTimeout: number;
  #closing = false;
  #closedErr: Error | undefined;
  #idleWaiters: Array<() => void> = [];
  /** Calls in flight per abort signal, and the signal's one listener (see #watch). */
  readonly #bySignal = new Map<AbortSignal, { calls: Set<Pending>; onAbort: () => void }>();
  /**
   * fid number → how many abandoned calls naming it are still on the server (no Rflush or reply
   * yet), and who waits for them to end (see `fidSettled`).
   */
  readonly #abandonedOnFid = new Map<number, { count: number; waiters: Array<() => void> }>();
  /**
   * Calls with a time limit. One timer for the connection, set to the earliest deadline, instead
   * of a timer per call: most calls are answered long before their limit.
   */
  readonly #timed = new Set<Pending>();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #timerRef = false;
  #verdict: NodeJS.Immediate | undefined;
  #onTimer = (): void => {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    // As afterIoTimeout does: the verdict waits for the I/O that arrived meanwhile (a reply that
    // came in time while the event loop was stalled is handled first).
    const cutoff = now() + 1;
    this.#verdict = setImmediate(() => {
      this.#verdict = undefined;
      this.#expire(cutoff);
    });
  };
  /** The socket is corked until the end of this tick (requests sent in one tick leave in one write). */
  #corked = false;
  #uncork = (): void => {
    this.#corked = false;
    this.#transport.stream.uncork();
  };

  private constructor(stream: Duplex, label: string, opts: ClientOptions) {
    this.msize = opts.msize ?? DEFAULT_CLIENT_MSIZE;
    // Until Rversion, decode in the dialect asked for (Tversion itself is the same in all three).
    const asked = opts.version ?? Dialect.P2000u;
    this.dialect = (Object.values(Dialect) as string[]).includes(asked) ? asked : Dialect.P2000;
    this.label = label;
    this.#trace = opts.trace;
    this.#defaultTimeout = opts.timeoutMs ?? 0;
    this.#transport = new FrameTransport(
      stream,
      { onFrame: (f) => this.#onFrame(f), onClose: (err) => this.#onClose(err) },
      { maxSize: this.msize, label },
    );
  }

  /** Largest read/write payload: msize - IOHDRSZ. */
  get iounit(): number {
    return this.msize - IOHDRSZ;
  }

  /** Requests in flight (including flushes awaiting Rflush). */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** True after close()/destroy() or connection loss. */
  get closed(): boolean {
    return this.#closing || this.#closedErr !== undefined;
  }

  /**
   * Connects (address string, parsed Address, or an already-open Duplex) and negotiates the version.
   * Rejects with ConnectionError/TimeoutError (connect) or VersionError (negotiation).
   */
  static async connect(address: string | Address | Duplex, opts: ClientOptions = {}): Promise<Client> {
    const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    const msize = opts.msize ?? DEFAULT_CLIENT_MSIZE;
    if (!Number.isInteger(msize) || msize <= IOHDRSZ || msize > 0xffffffff) {
      throw new RangeError(`msize ${msize} is not usable: it must be an integer above ${IOHDRSZ}`);
    }
    let stream: Duplex;
    let label: string;
    if (typeof address === "string" || (typeof address === "object" && "network" in address)) {
      const parsed = typeof address === "string" ? parseAddress(address, opts.defaultPort) : address;
      label = opts.label ?? formatAddress(parsed);
      stream = await dial(parsed, { timeoutMs: connectTimeoutMs, signal: opts.signal });
    } else {
      stream = address;
      label = opts.label ?? "peer";
    }
    const client = new Client(stream, label, opts);
    try {
      await client.#negotiate(msize, opts.version ?? Dialect.P2000u, connectTimeoutMs, opts.signal);
    } catch (err) {
      client.destroy();
      throw err;
    }
    return client;
  }

  async #negotiate(msize: number, version: Dialect, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const reply = await new Promise<T.RMessage>((resolve, reject) => {
      const entry: Pending = {
        tag: NOTAG,
        type: MsgType.Tversion,
        resolve,
        reject,
        abandoned: false,
        replied: false,
      };
      let cancelTimeout: (() => void) | undefined;
      const onAbort = () => this.#settle(entry, undefined, abortReason(signal as AbortSignal));
      entry.cleanup = () => {
        cancelTimeout?.();
        signal?.removeEventListener("abort", onAbort);
      };
      if (timeoutMs > 0) {
        cancelTimeout = afterIoTimeout(timeoutMs, () =>
          this.#settle(
            entry,
            undefined,
            new TimeoutError(`version negotiation with ${this.label} timed out after ${timeoutMs} ms`),
          ),
        );
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pending.set(NOTAG, entry);
      this.#sendMessage({ type: MsgType.Tversion, tag: NOTAG, msize, version });
    });
    if (reply.type === MsgType.Rerror || reply.type === MsgType.Rlerror) {
      const text = reply.type === MsgType.Rerror ? reply.ename : lerrorText(reply.ecode);
      throw new VersionError(`${this.label} refused version ${version}: ${text}`, text);
    }
    if (reply.type !== MsgType.Rversion) {
      throw new ProtocolError(
        "unexpected",
        `${this.label} answered Tversion with message type ${reply.type}`,
        reply.type,
      );
    }
    if (reply.version === "unknown") {
      throw new VersionError(`${this.label} does not speak ${version} (Rversion "unknown")`, reply.version);
    }
    const known = Object.values(Dialect) as string[];
    if (
      !known.includes(reply.version) ||
      !(reply.version === version || version.startsWith(`${reply.version}.`))
    ) {
      throw new VersionError(
        `${this.label} answered version "${reply.version}" to our ${version}`,
        reply.version,
      );
    }
    if (reply.msize > msize) {
      throw new VersionError(
        `${this.label} answered msize ${reply.msize}, larger than our ${msize}`,
        reply.version,
      );
    }
    if (reply.msize <= IOHDRSZ) {
      throw new VersionError(
        `${this.label} answered msize ${reply.msize}, too small for any I/O`,
        reply.version,
      );
    }
    this.msize = reply.msize;
    this.dialect = reply.version as Dialect;
    this.#transport.maxSize = reply.msize;
  }

  #sendMessage(msg: T.TMessage): void {
    this.#sendTagged(msg, msg.tag);
  }

  /** Sends `msg` with `tag` (the caller's message object is neither copied nor changed). */
  #sendTagged(msg: Request | T.TMessage, tag: number): void {
    let frame: Buffer;
    let data: Uint8Array | undefined;
    if (msg.type === MsgType.Twrite && msg.data.length >= SHARED_WRITE_DATA) {
      // A large Twrite goes out as its header followed by the caller's own bytes: no copy of
      // them into a frame (a program staged to many nodes is sent from one buffer). The header
      // is encoded with no data, then given the real size and count.
      frame = encodeTagged({ ...msg, data: NO_DATA }, tag, this.dialect);
      data = msg.data;
      const size = frame.length + data.length;
      if (size > this.msize) throw new MessageTooLargeError(size, this.msize);
      frame.writeUInt32LE(size, 0);
      frame.writeUInt32LE(data.length, frame.length - 4);
    } else {
      frame = encodeTagged(msg, tag, this.dialect);
    }
    if (!this.#corked && !this.#transport.closed) {
      // Every request of this tick (a walk and an open answered by the same reply, the opens of a
      // session's files, a write window) goes out in one write at its end: one syscall, and one
      // read for the server, instead of one per message. A lone request waits microseconds.
      this.#corked = true;
      this.#transport.stream.cork();
      process.nextTick(this.#uncork);
    }
    this.#transport.send(frame);
    // Corked above: the header and the data leave together.
    if (data) this.#transport.send(data as Buffer);
    if (this.#trace) this.#trace(`-> ${formatMessage({ ...msg, tag } as T.TMessage)}`);
  }

  /**
   * Sends one request and resolves with its reply. Rerror/Rlerror rejects with RemoteError (exact
   * ename; errno for .u, ecode for .L); a reply of the wrong type with ProtocolError; an abort or
   * timeout sends Tflush and rejects at once, keeping the tag reserved until Rflush (FL5).
   */
  async rpc<R extends Request>(msg: R, opts: CallOptions & LateHandler = {}): Promise<ReplyFor<R>> {
    const unsent = (err: unknown): unknown => {
      opts.onUnsent?.();
      return err;
    };
    if (this.#closedErr) throw unsent(this.#closedError());
    if (this.#closing) throw unsent(new ClosedError(`client for ${this.label} is closing`));
    const { signal } = opts;
    if (signal?.aborted) throw unsent(abortReason(signal));
    // A free tag is taken at once (the request goes out in this turn, no promise hop); only
    // when all 65535 are in flight does the call wait for one.
    const timeoutMs = opts.timeoutMs ?? this.#defaultTimeout;
    let timeLeft = timeoutMs;
    let tag = this.#tags.tryAlloc();
    if (tag === undefined) {
      // Waiting for a tag ends with the call's abort, its time limit (which counts the wait),
      // and the connection.
      const started = now();
      const limit = new AbortController();
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              const name = messageName(msg.type) ?? `type ${msg.type}`;
              limit.abort(
                new TimeoutError(
                  `${name} to ${this.label} timed out after ${timeoutMs} ms (waiting for a free tag)`,
                ),
              );
            }, timeoutMs)
          : undefined;
      try {
        tag = await this.#tags.alloc(signal ? AbortSignal.any([signal, limit.signal]) : limit.signal);
      } catch (err) {
        throw unsent(err);
      } finally {
        clearTimeout(timer);
      }
      if (timeoutMs > 0) timeLeft = Math.max(1, timeoutMs - (now() - started));
      if (this.#closedErr) {
        this.#tags.free(tag);
        throw unsent(this.#closedError());
      }
      if (signal?.aborted) {
        this.#tags.free(tag);
        throw unsent(abortReason(signal));
      }
    }
    const reply = new Promise<ReplyFor<R>>((resolve, reject) => {
      const entry: Pending = {
        tag,
        type: msg.type,
        resolve: resolve as (r: T.RMessage) => void,
        reject,
        abandoned: false,
        replied: false,
        onLate: opts.onLate,
        limit: limitOf(msg),
        msg,
      };
      try {
        this.#pending.set(tag, entry);
        this.#sendTagged(msg, tag);
      } catch (err) {
        this.#pending.delete(tag);
        this.#tags.free(tag);
        this.#checkIdle();
        reject(unsent(err));
        return;
      }
      if (timeoutMs > 0) this.#time(entry, timeLeft, timeoutMs);
      if (!signal) return;
      this.#watch(signal, entry);
      entry.cleanup = () => this.#unwatch(signal, entry);
    });
    try {
      return await reply;
    } catch (err) {
      // Errors made for this call were created in the socket's data handler: give them the
      // caller's (async) stack instead, which is what someone debugging wants to see.
      if (err instanceof RemoteError || err instanceof ProtocolError || err instanceof TimeoutError) {
        Error.captureStackTrace(err);
      }
      throw err;
    }
  }

  /**
   * Calls in flight under `signal`. One abort listener per signal, not one per call: a window of
   * reads or writes under one signal would otherwise pass the signal's listener limit and make
   * Node warn of a leak (MaxListenersExceededWarning) on the caller's stderr.
   */
  #watch(signal: AbortSignal, entry: Pending): void {
    let w = this.#bySignal.get(signal);
    if (!w) {
      const calls = new Set<Pending>();
      const onAbort = () => {
        this.#bySignal.delete(signal);
        for (const e of calls) this.#abandon(e, abortReason(signal));
      };
      w = { calls, onAbort };
      this.#bySignal.set(signal, w);
      signal.addEventListener("abort", onAbort, { once: true });
    }
    w.calls.add(entry);
  }

  #unwatch(signal: AbortSignal, entry: Pending): void {
    const w = this.#bySignal.get(signal);
    if (!w) return;
    w.calls.delete(entry);
    if (w.calls.size > 0) return;
    this.#bySignal.delete(signal);
    signal.removeEventListener("abort", w.onAbort);
  }

  /** Puts a call in the timed set (deadline `ms` from now) and makes sure the timer runs by then. */
  #time(entry: Pending, ms: number, limitMs = ms): void {
    const deadline = now() + ms;
    entry.deadline = deadline;
    entry.timeoutMs = limitMs;
    this.#timed.add(entry);
    if (deadline < this.#timerAt) this.#arm(deadline);
    else if (!this.#timerRef) {
      this.#timerRef = true;
      this.#timer?.ref();
    }
  }

  #arm(deadline: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = deadline;
    this.#timerRef = true;
    this.#timer = setTimeout(this.#onTimer, Math.max(1, Math.ceil(deadline - now())));
  }

  /** Takes a call out of the timed set; an idle timer no longer keeps the process alive. */
  #untime(entry: Pending): void {
    entry.deadline = undefined;
    this.#timed.delete(entry);
    if (this.#timed.size === 0 && this.#timerRef) {
      this.#timerRef = false;
      this.#timer?.unref();
    }
  }

  /** Times out every call due by `cutoff`, then sets the timer for the next deadline. */
  #expire(cutoff: number): void {
    let next = Number.POSITIVE_INFINITY;
    for (const entry of [...this.#timed]) {
      const deadline = entry.deadline!;
      if (deadline > cutoff) {
        if (deadline < next) next = deadline;
        continue;
      }
      const name = messageName(entry.type) ?? `type ${entry.type}`;
      this.#abandon(
        entry,
        new TimeoutError(`${name} to ${this.label} timed out after ${entry.timeoutMs} ms`),
      );
    }
    if (next < this.#timerAt) this.#arm(next);
  }

  /** The call no longer needs its timeout or abort listener. */
  #release(entry: Pending): void {
    if (entry.deadline !== undefined) this.#untime(entry);
    entry.cleanup?.();
  }

  /** Answer the caller now with `err`, then flush the tag; it stays reserved until Rflush. */
  #abandon(entry: Pending, err: unknown): void {
    if (entry.abandoned || this.#pending.get(entry.tag) !== entry) return;
    this.#release(entry);
    entry.abandoned = true;
    if (entry.msg) {
      entry.fids = fidsOf(entry.msg);
      for (const f of entry.fids) {
        const a = this.#abandonedOnFid.get(f);
        if (a) a.count++;
        else this.#abandonedOnFid.set(f, { count: 1, waiters: [] });
      }
    }
    entry.reject(err);
    this.#checkIdle(); // close() waits for it no longer
    const flushTag = this.#tags.tryAlloc();
    if (flushTag === undefined || this.#closedErr) {
      // No tag to flush with (65535 requests in flight): the tag stays reserved until its reply.
      return;
    }
    const flush: Pending = {
      tag: flushTag,
      type: MsgType.Tflush,
      oldtag: entry.tag,
      resolve: () => {},
      reject: () => {},
      abandoned: false,
      replied: false,
    };
    this.#pending.set(flushTag, flush);
    entry.flushing = true;
    try {
      this.#sendMessage({ type: MsgType.Tflush, tag: flushTag, oldtag: entry.tag });
    } catch {
      entry.flushing = false;
      this.#pending.delete(flushTag);
      this.#tags.free(flushTag);
    }
  }

  #settle(entry: Pending, reply: T.RMessage | undefined, err?: unknown): void {
    if (this.#pending.get(entry.tag) !== entry) return;
    this.#pending.delete(entry.tag);
    this.#release(entry);
    if (entry.tag !== NOTAG) this.#tags.free(entry.tag);
    if (err !== undefined) entry.reject(err);
    else if (reply) entry.resolve(reply);
    this.#checkIdle();
  }

  #onFrame(frame: Buffer): void {
    let msg: T.Message;
    try {
      msg = decode(frame, this.dialect, { msize: this.msize });
    } catch (err) {
      let tag: number | undefined;
      try {
        tag = decodeHeader(frame).tag;
      } catch {
        tag = undefined;
      }
      // A server that does not know our dialect may answer Tversion with the error reply of
      // another one (plain Rerror, or diod's Rlerror): accept either for the version reply.
      const retry = (tag === NOTAG ? tryDecode(frame, this.msize) : undefined) ?? bareErrnoReply(frame);
      if (!retry) {
        if (this.#trace) this.#trace(`<- undecodable (${(err as Error).message}): ${hexOf(frame)}`);
        this.#failReply(tag, err);
        return;
      }
      msg = retry;
    }
    if (this.#trace) this.#trace(`<- ${formatMessage(msg)}`);
    const entry = this.#pending.get(msg.tag);
    if (!entry) return; // a reply for nothing we sent: ignore
    const reply = msg as T.RMessage;
    if (entry.oldtag !== undefined) {
      // Rflush (or anything) for a Tflush: the flushed tag is free now.
      this.#settle(entry, reply);
      const old = this.#pending.get(entry.oldtag);
      if (old?.abandoned) {
        this.#endAbandoned(old);
        if (!old.replied) old.onLate?.(undefined);
        this.#checkIdle();
      }
      return;
    }
    if (entry.abandoned) {
      // The reply beat the Rflush: the request happened (FL5).
      if (!entry.replied) {
        entry.replied = true;
        entry.onLate?.(reply);
      }
      if (!entry.flushing) {
        // No Tflush went out for it: the tag is free once the reply is in.
        this.#endAbandoned(entry);
        this.#checkIdle();
      }
      return;
    }
    if (entry.type === MsgType.Tversion) {
      this.#settle(entry, reply); // #negotiate judges every kind of answer itself
    } else if (reply.type === MsgType.Rerror) {
      this.#settle(entry, undefined, new RemoteError(reply.ename, reply.errno));
    } else if (reply.type === MsgType.Rlerror) {
      this.#settle(entry, undefined, new RemoteError(lerrorText(reply.ecode), reply.ecode));
    } else if (reply.type !== entry.type + 1) {
      this.#settle(
        entry,
        undefined,
        new ProtocolError(
          "unexpected",
          `${this.label} answered message type ${entry.type} with type ${reply.type}`,
          reply.type,
        ),
      );
    } else if (entry.limit !== undefined && (amountOf(reply)?.[0] ?? 0) > entry.limit) {
      // More data than asked for, a count beyond what was written, more qids than names: taken
      // as they come they would be read past, counted twice or walked to nowhere.
      const [n, unit] = amountOf(reply)!;
      this.#settle(
        entry,
        undefined,
        new ProtocolError(
          "unexpected",
          `${this.label} answered with ${n} ${unit} in ${messageName(reply.type)}, more than the ${entry.limit} of the request`,
          reply.type,
        ),
      );
    } else {
      this.#settle(entry, reply);
    }
  }

  #failReply(tag: number | undefined, err: unknown): void {
    const entry = tag === undefined ? undefined : this.#pending.get(tag);
    if (!entry) {
      // Undecodable and unattributable: the stream can no longer be trusted.
      this.destroy(err instanceof Error ? err : new ProtocolError("unexpected", String(err)));
      return;
    }
    if (entry.oldtag !== undefined) {
      // An unreadable answer to a Tflush still ends the flush. What the flushed call did is
      // unknown: its onLate is not called (a fid it may have made is never reused).
      this.#settle(entry, undefined, err);
      const old = this.#pending.get(entry.oldtag);
      if (old?.abandoned) {
        old.replied = true;
        this.#endAbandoned(old);
        this.#checkIdle();
      }
      return;
    }
    if (entry.abandoned) {
      entry.replied = true;
      if (!entry.flushing) {
        this.#endAbandoned(entry);
        this.#checkIdle();
      }
      return;
    }
    this.#settle(entry, undefined, err);
  }

  #closedError(): Error {
    const cause = this.#closedErr;
    if (cause instanceof ClosedError) return new ClosedError(`client for ${this.label} is closed`);
    return new ConnectionError(`connection to ${this.label} is closed`, { cause });
  }

  #onClose(err: Error | undefined): void {
    const reason = err ?? new ClosedError(`client for ${this.label} is closed`);
    this.#failAll(reason);
  }

  #failAll(reason: Error): void {
    if (!this.#closedErr) this.#closedErr = reason;
    // Calls waiting for a tag (all 65535 in flight) would otherwise wait for a reply that never comes.
    this.#tags.cancel(reason);
    const entries = [...this.#pending.values()];
    this.#pending.clear();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#verdict) clearImmediate(this.#verdict);
    this.#timer = this.#verdict = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    for (const e of entries) {
      this.#release(e);
      if (!e.abandoned && e.oldtag === undefined) e.reject(reason);
    }
    // Nothing is on the server any more.
    const abandoned = [...this.#abandonedOnFid.values()];
    this.#abandonedOnFid.clear();
    for (const a of abandoned) for (const w of a.waiters) w();
    this.#checkIdle();
  }

  /** An abandoned call is over on the server (its Rflush, or its reply when no Tflush went out). */
  #endAbandoned(entry: Pending): void {
    this.#pending.delete(entry.tag);
    this.#tags.free(entry.tag);
    if (!entry.fids) return;
    for (const f of entry.fids) {
      const a = this.#abandonedOnFid.get(f);
      if (!a || --a.count > 0) continue;
      this.#abandonedOnFid.delete(f);
      for (const w of a.waiters) w();
    }
  }

  /**
   * @internal Undefined when no abandoned call (aborted or timed out, its Tflush not yet
   * answered) names fid `num`; else a promise that resolves once none does. A server may still be
   * running such a call: a Tclunk sent before it ends would let the fid number be reused while
   * the old call still holds it there.
   */
  fidSettled(num: number): Promise<void> | undefined {
    const a = this.#abandonedOnFid.get(num);
    if (!a) return undefined;
    return new Promise((resolve) => {
      // With a default time limit, a server that never answers the Tflush holds the wait no longer.
      const t = this.#defaultTimeout > 0 ? setTimeout(resolve, this.#defaultTimeout) : undefined;
      a.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /**
   * True while a call whose caller still waits is in flight. Calls already answered (aborted or
   * timed out) that wait for an Rflush, and the Tflushes themselves, do not count: a server that
   * never answers them must not hold close() up.
   */
  #busy(): boolean {
    for (const e of this.#pending.values()) if (!e.abandoned && e.oldtag === undefined) return true;
    return false;
  }

  #checkIdle(): void {
    if (this.#idleWaiters.length === 0 || this.#busy()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Stops new work (later calls reject with ClosedError), waits for every call in flight to finish
   * (not for the Rflush of calls already aborted or timed out), then closes the connection. Fids are not clunked one by one: the server forgets them on close.
   */
  async close(): Promise<void> {
    this.#closing = true;
    if (!this.#closedErr && this.#busy()) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
    if (!this.#closedErr) this.#closedErr = new ClosedError(`client for ${this.label} is closed`);
    await this.#transport.end();
  }

  /** Rejects every call in flight with `err` (default ClosedError) and drops the connection now. */
  destroy(err?: Error): void {
    this.#closing = true;
    this.#failAll(err ?? new ClosedError(`client for ${this.label} was destroyed`));
    this.#transport.destroy();
  }

  /** @internal waits until the socket can take more bulk data. */
  drain(): Promise<void> {
    return this.#transport.drain();
  }

  /**
   * Starts authentication: Tauth with a fresh afid. Resolves with an AuthFid to run the server's
   * protocol over (read/write), or null when the server says no authentication is needed (an
   * Rerror containing "not required" in 9P2000/.u; any Rlerror in 9P2000.L). Other errors reject.
   */
  async auth(
    uname: string,
    aname = "",
    opts: { n_uname?: number } & CallOptions = {},
  ): Promise<AuthFid | null> {
    return (await this.authThen(uname, aname, undefined, opts)).afid;
  }

  /**
   * `auth`, with the requests `then` makes on the new afid (the read of a challenge, or the attach
   * of a user with nothing to prove) sent in the same write instead of after Rauth: one round
   * trip less, for servers that run a fid's requests in order (as `Fid.walkThen`).
   *
   * Resolves once Rauth (or the refusal) is in, with the AuthFid (null when the server needs no
   * authentication, as `auth`) and `value`, the promise of what `then` resolves to. With a null
   * afid, `value` concerns an afid that does not exist: its rejection is already handled (a
   * server that ignores afids may still have attached). Any other error of Tauth rejects, after
   * `then`'s requests are settled.
   */
  async authThen<R>(
    uname: string,
    aname: string,
    then: ((afid: AuthFid) => Promise<R>) | undefined,
    opts: { n_uname?: number } & CallOptions = {},
  ): Promise<{ afid: AuthFid | null; value: Promise<R> }> {
    const afid = this.fids.alloc();
    let unsent = false;
    const authed = this.rpc(
      { type: MsgType.Tauth, afid, uname, aname, n_uname: opts.n_uname ?? NONUNAME },
      {
        ...opts,
        // (With no reply at all, as for a walk: a Tclunk tells whether the afid exists.)
        onLate: (r) =>
          r === undefined || r.type === MsgType.Rauth ? this.#clunkLater(afid) : this.fids.free(afid),
        onUnsent: () => {
          unsent = true;
        },
      },
    );
    // The AuthFid exists before Rauth so that `then` can send on it; its qid comes with the reply.
    const fid = new AuthFid(this, afid, { type: 0, version: 0, path: 0n });
    let value: Promise<R> = Promise.resolve(undefined as R);
    if (then) {
      try {
        value = then(fid);
      } catch (err) {
        value = Promise.reject(err);
      }
    }
    let reply: T.Rauth;
    try {
      reply = await authed;
    } catch (err) {
      value.catch(() => {});
      const notRequired =
        err instanceof RemoteError &&
        (this.dialect === Dialect.P2000L || /not required|no auth/i.test(err.ename));
      if (err instanceof RemoteError || err instanceof ProtocolError || unsent) {
        // Nothing was made on the server; the number is reused once what `then` sent is answered.
        await Promise.allSettled([value]);
        this.fids.free(afid);
      }
      // Aborted or timed-out calls settle the afid through onLate once the Rflush arrives.
      // 9P2000/.u servers say so in words (lib9p: "...: authentication not required"). An .L
      // Rlerror carries only an errno, and servers differ (diod -n answers ENOENT): treat any
      // refusal of Tauth in .L as "not required"; an attach that does need it will say so.
      if (notRequired) return { afid: null, value };
      throw err;
    }
    fid.aqid = reply.aqid;
    return { afid: fid, value };
  }

  /** Attaches to the tree `aname` as `uname`; resolves with the root Fid. */
  async attach(
    uname: string,
    aname = "",
    opts: { afid?: AuthFid | number; n_uname?: number; gid?: number } & CallOptions = {},
  ): Promise<Fid> {
    const fid = this.fids.alloc();
    const afid = opts.afid === undefined ? NOFID : typeof opts.afid === "number" ? opts.afid : opts.afid.num;
    let reply: T.Rattach;
    try {
      reply = await this.rpc(
        { type: MsgType.Tattach, fid, afid, uname, aname, n_uname: opts.n_uname ?? NONUNAME },
        {
          ...opts,
          onLate: (r) =>
            r === undefined || r.type === MsgType.Rattach ? this.#clunkLater(fid) : this.fids.free(fid),
          onUnsent: () => this.fids.free(fid),
        },
      );
    } catch (err) {
      if (err instanceof RemoteError || err instanceof ProtocolError) this.fids.free(fid);
      throw err;
    }
    const root = new Fid(this, fid, reply.qid, "/");
    root.createGid = opts.gid;
    return root;
  }

  /** @internal clunk a fid nobody holds any more (an abandoned walk/attach that happened after all). */
  #clunkLater(fid: number): void {
    if (this.closed) return;
    const clunk = () =>
      this.rpc({ type: MsgType.Tclunk, fid }).then(
        () => this.fids.free(fid),
        (err) => (err instanceof RemoteError ? this.fids.free(fid) : undefined),
      );
    // After the abandoned calls on it, as Fid.clunk does.
    const settled = this.fidSettled(fid);
    if (settled) void settled.then(clunk);
    else void clunk();
  }

  /** @internal */
  clunkLater(fid: number): void {
    this.#clunkLater(fid);
  }
}

/**
 * The afid of a Tauth: the authentication protocol (which 9P does not define) runs by reading and
 * writing it; each direction keeps its own offset. Pass it as `afid` to `attach`.
 */
export class AuthFid {
  readonly client: Client;
  readonly num: number;
  /** The qid of Rauth (set when it comes, for an AuthFid made by `authThen`). */
  aqid: T.Qid;
  #readOffset = 0n;
  #writeOffset = 0n;
  #clunked = false;

  /** @internal */
  constructor(client: Client, num: number, aqid: T.Qid) {
    this.client = client;
    this.num = num;
    this.aqid = aqid;
  }

  /** Reads up to `count` bytes at the current read offset (an empty buffer at the end). */
  async read(count: number, opts?: CallOptions): Promise<Buffer> {
    const r = await this.client.rpc(
      {
        type: MsgType.Tread,
        fid: this.num,
        offset: this.#readOffset,
        count: Math.min(count, this.client.iounit),
      },
      opts,
    );
    this.#readOffset += BigInt(r.data.length);
    return Buffer.from(r.data.buffer, r.data.byteOffset, r.data.length);
  }

  /** Writes `data` at the current write offset; resolves with the count the server took. */
  async write(data: Uint8Array | string, opts?: CallOptions): Promise<number> {
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    const r = await this.client.rpc(
      { type: MsgType.Twrite, fid: this.num, offset: this.#writeOffset, data: buf },
      opts,
    );
    this.#writeOffset += BigInt(r.count);
    return r.count;
  }

  /** Forgets the afid (after the attach that used it). Its number is not reused: some servers keep it. */
  async clunk(): Promise<void> {
    if (this.#clunked) return;
    this.#clunked = true;
    try {
      await this.client.rpc({ type: MsgType.Tclunk, fid: this.num });
    } catch (err) {
      if (!(err instanceof RemoteError)) throw err;
    } finally {
      this.client.fids.quarantine(this.num);
    }
  }
}
