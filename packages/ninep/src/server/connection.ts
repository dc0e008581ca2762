// One 9P connection on the server side: version negotiation, tags and Tflush, the fid table, every
// protocol check made before a backend call, and fid state committed only after the call succeeds
// (the s<op>/r<op> split of lib9p's srv.c). Rule numbers refer to spec/9p.md.

import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  AT_REMOVEDIR,
  Dialect,
  DMAUTH,
  DMDIR,
  DMLINK,
  IOHDRSZ,
  L_O,
  MAXWELEM,
  MsgType,
  NOFID,
  NONUNAME,
  NOTAG,
  OCEXEC,
  OEXEC,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
  QTDIR,
  QTEXCL,
  QTSYMLINK,
} from "../codec/constants.js";
import { decode, encode, encodeDirent, encodeStat, formatMessage } from "../codec/index.js";
import type { Dirent, Message, Qid, RMessage, Stat, TMessage } from "../codec/types.js";
import { type DistributiveOmit, encodeTagged, encodeTyped, HEADER_SIZE } from "../codec/wire.js";
import { Ename, Errno, FsError, fsErrorFromCode, NinepError, ProtocolError } from "../errors.js";
import { afterIoTimeout } from "../io-timeout.js";
import { FrameTransport } from "../transport/frames.js";
import type {
  Attr,
  AuthFile,
  ConnectionInfo,
  Identity,
  Node,
  OpenFile,
  RequestContext,
  StatChanges,
} from "./backend.js";
import {
  POOLED_FRAME_MIN,
  POOLED_RECEIVE_MIN,
  receiveFrame,
  releaseReceived,
  replyFramePool,
} from "./frame-pool.js";
import type { ServerCore } from "./server.js";

/** 9P2000.u open-mode bits accepted besides Plan 9's: Linux P9_OAPPEND and spfs's exclusive bit. */
const OAPPEND_U = 0x80;
const OEXCL_SPFS = 0x04;

/** 9P2000.L lock types and Tlock flags (spec 7, lock). */
const LOCK_RDLCK = 0;
const LOCK_WRLCK = 1;
const LOCK_UNLCK = 2;
const LOCK_FLAGS = 1 | 2; // BLOCK | RECLAIM

/** First 9P2000.L file offset that is negative as a Linux loff_t. */
const OFFSET_LIMIT_L = 1n << 63n;

/** Smallest msize accepted in Tversion (lib9p uses the same bound). */

/** Largest first frame a server reads: a Tversion with a version string of up to 8 KiB. */
const FIRST_FRAME_MAX = 8192 + 13;
export const MIN_MSIZE = 256;

/** What a fid names: a file of the tree, or the auth file of a Tauth. */
interface Fid {
  readonly num: number;
  node: Node | undefined;
  readonly auth: AuthFile | undefined;
  /** qid.path of the attach root: `..` from here stays here (W7), and Tstat reports "/" (S1). */
  readonly rootPath: bigint;
  readonly user: Identity;
  open: OpenState | undefined;
  /** An open/create is in progress: a second one must not race it. */
  opening: boolean;
}

interface OpenState {
  readonly file: OpenFile;
  readonly readable: boolean;
  readonly writable: boolean;
  readonly rclose: boolean;
  readonly isDir: boolean;
  exclKey: bigint | undefined;
  /** 9P2000/.u directory read cursor (D2–D4): the snapshot, next entry and byte offset. */
  cursor?: { entries: Buffer[]; index: number; offset: bigint };
  /** 9P2000.L Treaddir fallback snapshot (built from list()). */
  lsnap?: Dirent[];
}

/**
 * One in-flight request. Its AbortController and its completion promise are made only when
 * something asks for them (a handler reading ctx.signal, a Tflush, a fid gate): most requests
 * never need either.
 */
class Req {
  /** A Tflush named this request: drop an error reply (the client gets Rflush instead). */
  flushRequested = false;
  /** No reply may be sent any more (flushed and given up on, Tversion, disconnect). */
  dead = false;
  /** The fids whose gate this request holds (see #dispatch) until it settles. */
  gates: readonly number[] | undefined;
  /**
   * The requests this one waits for (their gates), while they run. A request flushed while it
   * waits ends at once, but the gates it holds open only after these: a later request on the same
   * fid must not overtake them.
   */
  waitingFor: Promise<unknown> | undefined;
  #ctl: AbortController | undefined;
  #aborted = false;
  #reason: unknown;
  #settled = false;
  #done: Promise<void> | undefined;
  #resolve: (() => void) | undefined;

  constructor(
    readonly tag: number,
    readonly type: number,
  ) {}

  /** Aborted by abort(). */
  get signal(): AbortSignal {
    if (!this.#ctl) {
      this.#ctl = new AbortController();
      if (this.#aborted) this.#ctl.abort(this.#reason);
    }
    return this.#ctl.signal;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#ctl?.abort(reason);
  }

  /** Settles once the request has finished (replied, failed or dropped). */
  get done(): Promise<void> {
    if (!this.#done) {
      this.#done = this.#settled
        ? Promise.resolve()
        : new Promise<void>((r) => {
            this.#resolve = r;
          });
    }
    return this.#done;
  }

  settle(): void {
    this.#settled = true;
    this.#resolve?.();
  }

  /** What a later request on a fid whose gate this one holds waits for. */
  get released(): Promise<unknown> {
    return this.waitingFor ? Promise.all([this.waitingFor, this.done]) : this.done;
  }

  /** Resolves with `ready`, or rejects with the abort reason as soon as the request is aborted. */
  untilReadyOrAborted(ready: Promise<unknown>): Promise<void> {
    if (this.#aborted) return Promise.reject(this.#reason);
    const signal = this.signal;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(this.#reason);
      signal.addEventListener("abort", onAbort, { once: true });
      void ready.then(() => {
        signal.removeEventListener("abort", onAbort);
        if (this.#aborted) reject(this.#reason);
        else resolve();
      });
    });
  }
}

/** What a request handler produces: a reply plus effects applied only if the reply is sent. */
interface Outcome {
  /** The reply (may be left out when `frame` holds it already encoded). */
  reply?: DistributiveOmit<RMessage, "tag">;
  /** Applied right before the reply is written; may throw FsError to answer with an error instead. */
  commit?: () => void;
  /** Undo backend effects when the reply will not be sent (flushed, reset, commit failed). */
  discard?: () => void;
  /** `reply` already encoded (everything but the tag): sent as is, without encoding again. */
  frame?: Buffer;
  /** Called once `frame` has been handed to the OS (its memory may then be reused). */
  written?: () => void;
}

/** size[4] type[1] tag[2] count[4] in front of Rread data. */
const RREAD_HEADER = 11;

/**
 * Handlers that can finish without waiting (a cached read, a synchronous getattr) return the
 * Outcome itself, and its reply is written in the same turn of the event loop: no promise, no
 * microtask hop.
 */
type Handler = (msg: TMessage, req: Req) => Outcome | Promise<Outcome>;

const EIO_GENERIC = Ename.Io;

/** `text` cut to at most `bytes` bytes of UTF-8, never inside a character. */
function cutUtf8(text: string, bytes: number): string {
  const b = Buffer.from(text);
  if (b.length <= bytes) return text;
  let end = bytes;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.subarray(0, end).toString("utf8");
}

/** The request behind a RequestContext (see #reqCtx). */
const CTX_REQ = Symbol("ninep.request");
function ctxSignal(this: { [CTX_REQ]: Req }): AbortSignal {
  return this[CTX_REQ].signal;
}
/** Object.prototype.__defineGetter__, which TypeScript's lib does not declare. */
type DefinesGetter = { __defineGetter__(name: string, get: () => unknown): void };

/** A live server-side connection. Created by Server.serveDuplex / listen. */
export class ServerConnection {
  readonly info: ConnectionInfo;
  /** Resolves once the connection is closed and every fid has been clunked. */
  readonly closed: Promise<void>;

  #core: ServerCore;
  #transport: FrameTransport;
  #dialect: Dialect | undefined;
  #msize: number;
  #fids = new Map<number, Fid>();
  /** The unames attached with since the session began (a Linux mount's own name among them). */
  #attachedNames = new Set<string>();
  #inflight = new Map<number, Req>();
  /** fid number → the latest request creating or changing that fid, until it has finished. */
  #fidGates = new Map<number, Req>();
  /** Frames held back while a Tversion resets the session. */
  #held: Buffer[] | undefined;
  #isClosed = false;
  #shuttingDown = false;
  #resolveClosed!: () => void;
  #cancelHandshake: (() => void) | undefined;
  /** A Tattach has succeeded on this connection (which ends the handshake timeout). */
  #attached = false;
  /** A Tattach has succeeded on this connection (and no Tversion has reset it since). */
  get attached(): boolean {
    return this.#attached;
  }
  #idleTimer: NodeJS.Timeout | undefined;
  /** The idle timer's verdict, run after the I/O that was pending when it fired. */
  #idleVerdict: NodeJS.Immediate | undefined;
  /** A frame arrived since the idle timer last fired. */
  #idleSeen = false;
  #paused = false;
  /** Replies go to a socket, which copies them: large Rread frames can be reused once written. */
  readonly #poolFrames: boolean;

  constructor(core: ServerCore, stream: Duplex, info: ConnectionInfo) {
    this.#core = core;
    this.info = info;
    this.#msize = core.maxMsize;
    this.#poolFrames = stream instanceof Socket;
    this.closed = new Promise((r) => {
      this.#resolveClosed = r;
    });
    this.#transport = new FrameTransport(
      stream,
      {
        onFrame: (f) => this.#onFrame(f),
        onClose: (err) => void this.#onClose(err),
        onBacklog: () => this.#onBacklog(),
      },
      // The first message must be a Tversion, a few dozen bytes: until it is read nobody is known,
      // and a peer announcing a frame of msize bytes would have the server keep what it trickles in.
      {
        maxSize: core.maxMsize,
        label: info.remote,
        firstMaxSize: FIRST_FRAME_MAX,
        // Large frames from a socket (a Twrite of a big file, in 64 KiB chunks) are put together
        // in reused memory; the Twrite handler gives it back when the file is done with the data.
        ...(this.#poolFrames
          ? {
              frameAlloc: (size: number) =>
                size >= POOLED_RECEIVE_MIN ? receiveFrame(size, this.#msize) : undefined,
            }
          : {}),
      },
    );
    this.#armHandshake();
    this.#armIdle();
  }

  /** Closes the connection unless it has attached within the handshake timeout. */
  #armHandshake(): void {
    const core = this.#core;
    const hs = core.opts.handshakeTimeoutMs;
    if (hs <= 0) return;
    this.#cancelHandshake?.();
    // Decided after the pending I/O: a Tversion that arrived while the loop was stalled is read first.
    this.#cancelHandshake = afterIoTimeout(
      hs,
      () => {
        if (!this.#attached && !this.#isClosed) {
          core.logger.info(
            { conn: this.info.id },
            this.#dialect === undefined
              ? "9p: no Tversion before handshake timeout; closing"
              : "9p: no attach before handshake timeout; closing",
          );
          this.destroy();
        }
      },
      { unref: true },
    );
  }

  /** Negotiated dialect, or undefined before a successful Tversion. */
  get dialect(): Dialect | undefined {
    return this.#dialect;
  }
  /** Negotiated msize (the server maximum before Tversion). */
  get msize(): number {
    return this.#msize;
  }
  /** Number of fids in use. */
  get fidCount(): number {
    return this.#fids.size;
  }
  /** Number of requests being processed. */
  get outstanding(): number {
    return this.#inflight.size;
  }

  /**
   * Graceful close: stop reading requests, let in-flight ones finish for up to `graceMs`, then
   * abort the rest (no reply), clunk every fid and close the stream.
   */
  async shutdown(graceMs: number): Promise<void> {
    if (this.#isClosed) return this.closed;
    this.#shuttingDown = true;
    this.#transport.stream.pause();
    if (this.#inflight.size > 0) {
      const all = Promise.all([...this.#inflight.values()].map((r) => r.done));
      await Promise.race([all, delay(graceMs)]);
    }
    await this.#transport.end();
    await this.closed;
  }

  /** Closes the connection now: in-flight requests are aborted without replies. */
  destroy(): void {
    this.#transport.destroy();
  }

  // ---- input --------------------------------------------------------------------------------

  #onFrame(frame: Buffer): void {
    try {
      this.#armIdle();
      if (this.#held) {
        this.#held.push(frame);
        return;
      }
      this.#dispatch(frame);
    } catch (err) {
      // A bug here must cost this connection at most, never the process.
      this.#internalError(err);
    }
  }

  #internalError(err: unknown): void {
    this.#core.logger.error(
      { conn: this.info.id, err },
      `9p: internal error: ${(err as Error)?.stack ?? String(err)}`,
    );
    this.destroy();
  }

  #dispatch(frame: Buffer): void {
    if (this.#isClosed || this.#shuttingDown) return;
    if (frame.length < HEADER_SIZE) {
      // (The framer never cuts one this short.)
      this.#core.logger.warn({ conn: this.info.id, frame: frame.length }, "9p: unreadable frame; closing");
      this.destroy();
      return;
    }
    const type = frame[4] as number;
    const tag = frame.readUInt16LE(5);
    if (this.#dialect === undefined && type !== MsgType.Tversion && type % 2 === 0) {
      // V1: nothing but Tversion before a session exists (its body would be read in the wrong
      // dialect, and its faults blamed on it).
      this.#sendError(tag, new FsError(Ename.Botch, Errno.EPROTO));
      return;
    }
    // R-messages (odd types) are never requests (3.5): no need to look at the body.
    if (type % 2 === 1) {
      this.#trace(`<- unexpected reply type=${type} tag=${tag}`);
      this.#sendError(tag, new FsError(Ename.UnknownMessage, Errno.ENOSYS));
      return;
    }
    let msg: Message;
    try {
      msg = decode(frame, this.#dialect ?? Dialect.P2000, { msize: this.#msize });
    } catch (err) {
      if (!(err instanceof ProtocolError)) {
        this.#core.logger.error({ conn: this.info.id, err }, "9p: decoder failed unexpectedly");
      }
      const reason = err instanceof ProtocolError ? err.reason : "unexpected";
      this.#trace(`<- malformed type=${type} tag=${tag}: ${(err as Error).message}`);
      let e: FsError;
      if (reason === "unknown-type" || reason === "bad-type")
        e = new FsError(Ename.UnknownMessage, Errno.ENOSYS);
      else if (type === MsgType.Twstat && reason === "bad-stat")
        e = new FsError(Ename.BadWstat, Errno.EINVAL);
      else if (err instanceof ProtocolError) {
        // What was wrong, for the client's developer: "9P protocol botch: type 110: …".
        e = new FsError(`${Ename.Botch}: ${err.message.slice(0, 200)}`, Errno.EPROTO);
      } else e = new FsError(Ename.Botch, Errno.EPROTO);
      this.#sendError(tag, e);
      return;
    }
    if (this.#core.opts.trace) this.#trace(`<- ${formatMessage(msg)}`);
    // R-messages, Terror and Tlerror are not requests (3.5).
    if (
      msg.type % 2 === 1 ||
      (msg.type as number) === MsgType.Terror ||
      (msg.type as number) === MsgType.Tlerror
    ) {
      this.#sendError(msg.tag, new FsError(Ename.UnknownMessage, Errno.ENOSYS));
      return;
    }
    const t = msg as TMessage;
    if (t.type === MsgType.Tversion) {
      this.#version(t).catch((err) => this.#internalError(err));
      return;
    }
    if (this.#dialect === undefined) {
      // V1: nothing but Tversion before a session exists.
      this.#sendError(t.tag, new FsError(Ename.Botch, Errno.EPROTO));
      return;
    }
    if (t.tag === NOTAG) {
      // T1: NOTAG belongs to Tversion; a request under it could not be told from one (or flushed).
      this.#sendError(t.tag, new FsError("tag NOTAG is only for Tversion", Errno.EINVAL));
      return;
    }
    // T3: a tag already in flight is a client bug; answer the second request, keep the first.
    if (this.#inflight.has(t.tag)) {
      this.#sendError(t.tag, new FsError(Ename.DuplicateTag, Errno.EINVAL));
      return;
    }
    // Tflush is never refused; nor are Tclunk and Tremove: the fid is gone after them whatever
    // the answer (C1, C2), so a client reuses its number once answered, and a refused one would
    // leave the fid behind under that number. (Each ends a fid: they stay bounded by maxFids.)
    if (
      t.type !== MsgType.Tflush &&
      t.type !== MsgType.Tclunk &&
      t.type !== MsgType.Tremove &&
      this.#inflight.size >= this.#core.opts.maxOutstandingPerConnection
    ) {
      this.#sendError(t.tag, new FsError(Ename.TooManyRequests, Errno.EAGAIN));
      return;
    }
    const handler = this.#handlers[t.type];
    if (!handler) {
      this.#sendError(t.tag, new FsError(Ename.UnknownMessage, Errno.ENOSYS));
      return;
    }
    const req = new Req(t.tag, t.type);
    this.#inflight.set(t.tag, req);
    // Per-fid ordering: a request naming a fid waits for earlier requests that create or change
    // that fid (attach, walk to newfid, open, create, clunk…), so a client may pipeline
    // "walk; open; read" without waiting for each reply. Reads, writes and stats of the same fid
    // still run concurrently with each other.
    // A gate is the request itself: its completion promise is made only when a later request
    // has to wait for it, and #finish removes the gate when it settles. Which fids a request only
    // reads is worked out only while some gate is open.
    const changes = changedFids(t);
    const gates = this.#fidGates;
    let waitFor: Promise<unknown>[] | undefined;
    if (gates.size > 0) {
      for (const f of usedFids(t)) {
        const g = gates.get(f);
        if (g) (waitFor ??= []).push(g.released);
      }
    }
    if (changes.length > 0) {
      for (const f of changes) {
        const g = gates.get(f);
        if (g) (waitFor ??= []).push(g.released);
        gates.set(f, req);
      }
      req.gates = changes;
    }
    if (waitFor) {
      // A Tflush of a request still waiting is answered at once (the handler never runs).
      const ready = Promise.all(waitFor);
      req.waitingFor = ready;
      void ready.then(() => {
        req.waitingFor = undefined;
      });
      this.#finishLater(
        req,
        req.untilReadyOrAborted(ready).then(() => handler(t, req)),
      );
      return;
    }
    let r: Outcome | PromiseLike<Outcome>;
    try {
      r = handler(t, req);
    } catch (err) {
      this.#finishSafely(req, undefined, err);
      return;
    }
    if (isThenable(r)) this.#finishLater(req, r);
    else this.#finishSafely(req, r, undefined);
  }

  #finishLater(req: Req, p: PromiseLike<Outcome>): void {
    Promise.resolve(p).then(
      (out) => this.#finishSafely(req, out, undefined),
      (err: unknown) => this.#finishSafely(req, undefined, err),
    );
  }

  #finishSafely(req: Req, out: Outcome | undefined, err: unknown): void {
    try {
      this.#finish(req, out, err);
    } catch (e) {
      this.#internalError(e);
    }
  }

  #finish(req: Req, out: Outcome | undefined, err: unknown): void {
    if (this.#inflight.get(req.tag) === req) this.#inflight.delete(req.tag);
    try {
      if (req.dead || this.#isClosed) {
        runQuietly(() => out?.discard?.(), this.#core.logger);
        return;
      }
      if (out) {
        const o = out;
        try {
          o.commit?.();
        } catch (e) {
          runQuietly(() => o.discard?.(), this.#core.logger);
          err = e;
          out = undefined;
        }
      }
      if (out) {
        if (out.frame) this.#sendFrame(out.frame, req.tag, out.reply, out.written);
        // (`reply` is always given when there is no frame.)
        else this.#send(out.reply as DistributiveOmit<RMessage, "tag">, req.tag);
        return;
      }
      // FL3: a flushed request that failed (typically because it was aborted) gets no reply.
      if (req.flushRequested) return;
      this.#sendError(req.tag, this.#toFsError(err, req.type));
    } finally {
      const held = req.gates;
      if (held) {
        const open = (): void => {
          for (const f of held) if (this.#fidGates.get(f) === req) this.#fidGates.delete(f);
        };
        if (req.waitingFor) void req.waitingFor.then(open);
        else open();
      }
      req.settle();
      this.#maybeResume();
    }
  }

  #toFsError(err: unknown, type: number): FsError {
    if (err instanceof FsError) return err;
    const code = (err as { code?: unknown } | null)?.code;
    if (err instanceof NinepError || typeof code !== "string") {
      if ((err as Error | null)?.name === "AbortError") return new FsError(Ename.Interrupted, Errno.EINTR);
      this.#core.logger.error(
        { conn: this.info.id, type, err },
        `9p: handler for message ${type} failed: ${(err as Error)?.stack ?? String(err)}`,
      );
      return new FsError(EIO_GENERIC, Errno.EIO);
    }
    return fsErrorFromCode(err, code);
  }

  // ---- output -------------------------------------------------------------------------------

  #sendError(tag: number, e: FsError): void {
    if (this.#dialect === Dialect.P2000L) {
      this.#send({ type: MsgType.Rlerror, ecode: e.errno || Errno.EIO }, tag);
    } else if (this.#dialect === Dialect.P2000u) {
      this.#send({ type: MsgType.Rerror, ename: e.ename || "error", errno: e.errno }, tag);
    } else {
      this.#send({ type: MsgType.Rerror, ename: e.ename || "error" }, tag);
    }
  }

  /** Encodes and sends a reply; the tag is given apart (a reply object is not copied to add it). */
  #send(msg: DistributiveOmit<RMessage, "tag">, tag: number): void {
    if (this.#isClosed || this.#transport.closed) return;
    const dialect = this.#dialect ?? Dialect.P2000;
    if (msg.type === MsgType.Rerror) {
      // Only error strings may be truncated (E3): one that does not fit in msize, or in a 9P
      // string at all (65535 bytes), is cut; otherwise the reply could not be sent and the client
      // would wait for it forever.
      const room = Math.min(0xffff, this.#msize - (7 + 2 + (dialect === Dialect.P2000u ? 4 : 0)));
      if (Buffer.byteLength(msg.ename) > room) msg = { ...msg, ename: cutUtf8(msg.ename, Math.max(room, 0)) };
    }
    let frame: Buffer;
    try {
      frame = encodeTagged(msg, tag, dialect);
    } catch (err) {
      // A backend produced something unencodable (a NUL in a name, a number out of range...).
      this.#core.logger.error({ conn: this.info.id, err }, "9p: reply could not be encoded");
      // An error reply that cannot be encoded still gets a reply: the plain one.
      if ((msg.type === MsgType.Rerror && msg.ename === EIO_GENERIC) || msg.type === MsgType.Rlerror) return;
      this.#sendError(tag, new FsError(EIO_GENERIC, Errno.EIO));
      return;
    }
    if (frame.length > this.#msize) {
      // V7/E3: never send more than msize; answer an error instead of truncating data.
      this.#sendError(tag, new FsError("reply too large for msize", Errno.EIO));
      return;
    }
    if (this.#core.opts.trace) this.#trace(`-> ${formatMessage({ ...msg, tag } as RMessage)}`);
    this.#write(frame);
  }

  /** Sends a reply encoded by its handler (Rread read in place), after setting its tag. */
  #sendFrame(
    frame: Buffer,
    tag: number,
    reply: DistributiveOmit<RMessage, "tag"> | undefined,
    written: (() => void) | undefined,
  ): void {
    if (this.#isClosed || this.#transport.closed) return;
    frame.writeUInt16LE(tag, 5);
    if (this.#core.opts.trace) {
      const msg = reply ? ({ ...reply, tag } as RMessage) : decode(frame, this.#dialect ?? Dialect.P2000);
      this.#trace(`-> ${formatMessage(msg)}`);
    }
    try {
      this.#transport.send(frame, written, this.#inflight.size > 0);
    } catch {
      // closed meanwhile: nothing to answer
    }
  }

  #write(frame: Buffer): void {
    try {
      this.#transport.send(frame, undefined, this.#inflight.size > 0);
    } catch {
      // closed meanwhile: nothing to answer
    }
  }

  /**
   * Replies are piling up in our write buffer (checked after each tick's frames went out, so a
   * large Rread that the OS takes at once does not count): the peer is not reading its replies,
   * so stop reading its requests until it does.
   */
  #onBacklog(): void {
    if (!this.#paused) {
      this.#paused = true;
      this.#transport.stream.pause();
      void this.#transport.drain().then(() => {
        this.#paused = false;
        this.#maybeResume();
      });
    }
  }

  #maybeResume(): void {
    if (
      !this.#paused &&
      !this.#held &&
      !this.#shuttingDown &&
      !this.#isClosed &&
      this.#transport.stream.isPaused()
    ) {
      this.#transport.stream.resume();
    }
  }

  #trace(line: string): void {
    const t = this.#core.opts.trace;
    if (t) {
      try {
        t(`${this.info.id} ${line}`);
      } catch {
        // tracing must never break serving
      }
    }
  }

  #armIdle(): void {
    const ms = this.#core.opts.idleTimeoutMs;
    if (ms <= 0 || this.#isClosed) return;
    this.#idleSeen = true;
    if (this.#idleTimer) {
      this.#idleTimer.refresh();
      return;
    }
    this.#idleTimer = setTimeout(() => {
      // Decided after the pending I/O, as the handshake timeout is: Node runs due timers before
      // it reads its sockets, so after a stalled loop a request that came in time would
      // otherwise find its connection closed under it.
      this.#idleSeen = false;
      this.#idleVerdict = setImmediate(() => {
        this.#idleVerdict = undefined;
        if (this.#isClosed) return;
        if (this.#idleSeen || this.#inflight.size > 0) {
          this.#idleTimer?.refresh();
          return;
        }
        this.#core.logger.info({ conn: this.info.id }, "9p: idle timeout; closing");
        this.destroy();
      });
      // Not unref'd (see afterIoTimeout): it must run on a process that has nothing else to do.
    }, ms);
    this.#idleTimer.unref();
  }

  // ---- session lifecycle --------------------------------------------------------------------

  /** Aborts every in-flight request (no replies) and clunks every fid (V6, disconnect). */
  async #resetSession(why: string): Promise<void> {
    for (const req of this.#inflight.values()) {
      req.dead = true;
      req.abort(new FsError(Ename.Interrupted, Errno.EINTR));
    }
    this.#inflight.clear();
    this.#fidGates.clear();
    const fids = [...this.#fids.values()];
    this.#fids.clear();
    this.#attachedNames.clear();
    if (fids.length === 0) return;
    const ctlr = new AbortController();
    const closing = Promise.allSettled(
      fids.map(async (fid) => {
        const err = await this.#closeFid(fid, this.#ctx(fid.user, ctlr.signal));
        if (err)
          this.#core.logger.debug(
            { conn: this.info.id, fid: fid.num, err: err.ename },
            `9p: clunk on ${why}`,
          );
      }),
    );
    // Clunk hooks should be quick; never let one stall the reset for long.
    const t = await Promise.race([
      closing.then(() => "ok"),
      delay(this.#core.opts.flushTimeoutMs).then(() => "late"),
    ]);
    if (t === "late") {
      ctlr.abort(new FsError(Ename.Interrupted, Errno.EINTR));
      this.#core.logger.warn({ conn: this.info.id }, `9p: clunk hooks still running after ${why}`);
    }
  }

  async #onClose(err: Error | undefined): Promise<void> {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#cancelHandshake?.();
    clearTimeout(this.#idleTimer);
    if (this.#idleVerdict) clearImmediate(this.#idleVerdict);
    if (err && !(err.name === "ConnectionError")) {
      this.#core.logger.info({ conn: this.info.id, err: err.message }, "9p: connection dropped");
    }
    try {
      await this.#resetSession("disconnect");
    } catch (e) {
      this.#core.logger.error({ conn: this.info.id, err: e }, "9p: cleanup failed");
    }
    try {
      this.#core.backend.disconnect?.(this.info);
    } catch (e) {
      this.#core.logger.error({ conn: this.info.id, err: e }, "9p: backend disconnect hook failed");
    }
    this.#core.forget(this);
    this.#resolveClosed();
  }

  /**
   * Tversion (V1–V6): hold back later frames, abort everything and clunk every fid without
   * waiting for blocked handlers, then answer.
   */
  async #version(msg: Extract<TMessage, { type: 100 }>): Promise<void> {
    this.#held = [];
    // Hold back the client while the session resets (it should not send anything meanwhile).
    this.#transport.stream.pause();
    try {
      await this.#resetSession("Tversion");
      this.#dialect = undefined;
      if (this.#isClosed) return;
      if (this.#attached) {
        // Every fid is gone: the connection must attach again, within the same limit.
        this.#attached = false;
        this.#armHandshake();
      }
      if (msg.msize < MIN_MSIZE) {
        if (this.#core.chooseDialect(msg.version) === Dialect.P2000L) {
          // A 9P2000.L client parses every error as Rlerror (spec 7); diod answers a refused
          // Tversion with EIO.
          const reply: RMessage = { type: MsgType.Rlerror, tag: msg.tag, ecode: Errno.EIO };
          if (this.#core.opts.trace) this.#trace(`-> ${formatMessage(reply)}`);
          this.#write(encode(reply, Dialect.P2000L));
          return;
        }
        this.#sendError(
          msg.tag,
          new FsError(`msize ${msg.msize} too small (minimum ${MIN_MSIZE})`, Errno.EINVAL),
        );
        return;
      }
      const chosen = this.#core.chooseDialect(msg.version);
      if (chosen === undefined) {
        // V3: "unknown", and no session exists.
        this.#send(
          { type: MsgType.Rversion, msize: Math.min(msg.msize, this.#core.maxMsize), version: "unknown" },
          msg.tag,
        );
        return;
      }
      const msize = Math.min(msg.msize, this.#core.maxMsize);
      this.#msize = msize;
      this.#send({ type: MsgType.Rversion, msize, version: chosen }, msg.tag);
      this.#dialect = chosen;
      this.#transport.maxSize = msize;
    } finally {
      const held: Buffer[] = this.#held ?? [];
      this.#held = undefined;
      for (const f of held) {
        const again = this.#held as Buffer[] | undefined;
        if (again) {
          // another Tversion started while replaying: keep holding the rest in order
          again.push(f);
        } else {
          this.#dispatch(f);
        }
      }
      this.#maybeResume();
    }
  }

  // ---- helpers ------------------------------------------------------------------------------

  /** The context of a request: its signal (made on first use) follows the request's abort. */
  #reqCtx(user: Identity, req: Req): RequestContext {
    const ctx = {
      user,
      dialect: this.#dialect ?? Dialect.P2000,
      msize: this.#msize,
      iounit: this.#msize - IOHDRSZ,
      connection: this.info,
      [CTX_REQ]: req,
    };
    // `signal` is an own, enumerable, configurable accessor (a spread copy of the context carries
    // the signal) whose getter is shared by every context: the objects keep one fast shape instead
    // of each turning into a dictionary, as an object literal with its own getter closure would.
    // __defineGetter__ defines exactly that property, at less than half the cost of
    // Object.defineProperty (which reads a descriptor object each time).
    (ctx as unknown as DefinesGetter).__defineGetter__("signal", ctxSignal);
    return ctx as typeof ctx & { readonly signal: AbortSignal };
  }

  /**
   * The context of work that nothing aborts (a clunk, a discarded result): its signal is made only
   * if something asks for it (an AbortController per clunk was a visible part of a clunk's cost).
   */
  #quietCtx(user: Identity): RequestContext {
    return this.#reqCtx(user, new Req(0xffff, 0));
  }

  #ctx(user: Identity, signal: AbortSignal): RequestContext {
    return {
      signal,
      user,
      dialect: this.#dialect ?? Dialect.P2000,
      msize: this.#msize,
      iounit: this.#msize - IOHDRSZ,
      connection: this.info,
    };
  }

  #fid(num: number): Fid {
    const f = this.#fids.get(num);
    if (!f) throw new FsError(Ename.UnknownFid, Errno.EBADF);
    return f;
  }

  /** A fid that names a file of the tree (not an auth fid). */
  #fileFid(num: number): Fid & { node: Node } {
    const f = this.#fid(num);
    if (!f.node) throw new FsError("operation not allowed on an auth fid", Errno.EINVAL);
    return f as Fid & { node: Node };
  }

  /**
   * O1/O6: the fid is open already. The errno is left open for 9P2000.L; it is EINVAL there, as
   * diod answers a second Tlopen or a Tlcreate on an open directory.
   */
  #alreadyOpen(): FsError {
    return new FsError(Ename.AlreadyOpen, this.#dialect === Dialect.P2000L ? Errno.EINVAL : Errno.EBADF);
  }

  #checkNewFid(num: number, except?: number): void {
    if (num === NOFID) throw new FsError("bad fid", Errno.EBADF);
    if (num !== except && this.#fids.has(num)) throw new FsError(Ename.DuplicateFid, Errno.EBADF);
    if (this.#fids.size >= this.#core.opts.maxFidsPerConnection)
      throw new FsError(Ename.TooManyFids, Errno.EMFILE);
  }

  /** Auth fids cost the backend state (a challenge, a response) before anyone is known: few per connection. */
  #checkAuthFids(): void {
    let n = 0;
    for (const f of this.#fids.values()) if (f.auth) n++;
    if (n >= this.#core.opts.maxAuthFidsPerConnection)
      throw new FsError("too many authentication fids", Errno.EMFILE);
  }

  /** Commit-time check that `fid` is still the same live fid (it may have been clunked meanwhile). */
  #stillThere(fid: Fid): void {
    if (this.#fids.get(fid.num) !== fid) throw new FsError(Ename.UnknownFid, Errno.EBADF);
  }

  #iounit(file: OpenFile): number {
    const max = this.#msize - IOHDRSZ;
    const want = file.iounit ?? 0;
    return want > 0 && want < max ? want : max;
  }

  /** Releases everything a fid holds; returns the first error worth reporting (C1, C2). */
  async #closeFid(fid: Fid, ctx: RequestContext, skipRclose = false): Promise<FsError | undefined> {
    // (A hook that returns nothing is not awaited: each await is a turn of the microtask queue.)
    if (fid.auth) {
      try {
        const done = fid.auth.clunk?.(ctx);
        if (done) await done;
      } catch (e) {
        return this.#toFsError(e, MsgType.Tclunk);
      }
      return undefined;
    }
    let first: FsError | undefined;
    const open = fid.open;
    fid.open = undefined;
    if (open) {
      try {
        const done = open.file.clunk?.(ctx);
        if (done) await done;
      } catch (e) {
        first = this.#toFsError(e, MsgType.Tclunk);
      }
      if (open.exclKey !== undefined) this.#core.exclRelease(open.exclKey);
      if (open.rclose && !skipRclose && fid.node) {
        try {
          if (!fid.node.remove) throw new FsError(Ename.RemoveProhibited, Errno.EPERM);
          await fid.node.remove(ctx);
        } catch (e) {
          const fe = this.#toFsError(e, MsgType.Tclunk);
          first ??= fe;
        }
      }
    }
    try {
      const released = fid.node?.release?.(ctx);
      if (released) await released;
    } catch (e) {
      this.#core.logger.warn({ conn: this.info.id, err: e }, "9p: release hook failed");
    }
    return first;
  }

  /** Closes an OpenFile that was produced but will not be committed. */
  #dropFile(file: OpenFile, exclKey: bigint | undefined, user: Identity): void {
    if (exclKey !== undefined) this.#core.exclRelease(exclKey);
    const ctx = this.#quietCtx(user);
    Promise.resolve()
      .then(() => file.clunk?.(ctx))
      .catch((e) =>
        this.#core.logger.warn({ conn: this.info.id, err: e }, "9p: clunk of discarded file failed"),
      );
  }

  #dropNode(node: Node, user: Identity): void {
    const ctx = this.#quietCtx(user);
    Promise.resolve()
      .then(() => node.release?.(ctx))
      .catch((e) =>
        this.#core.logger.warn({ conn: this.info.id, err: e }, "9p: release of discarded node failed"),
      );
  }

  /** Shared by Topen and Tlopen: checks, DMEXCL reservation and the commit. */
  async #openCommon(
    fid: Fid & { node: Node },
    access: number,
    flags: { trunc: boolean; rclose: boolean },
    req: Req,
    doOpen: (ctx: RequestContext) => Promise<OpenFile>,
    reply: (qid: Qid, iounit: number) => DistributiveOmit<RMessage, "tag">,
  ): Promise<Outcome> {
    if (fid.open || fid.opening) throw this.#alreadyOpen();
    const node = fid.node;
    const isDir = (node.qid.type & QTDIR) !== 0;
    // O2: directories are read-only: no write access, truncation or remove-on-close.
    if (isDir && (access !== OREAD || flags.trunc || flags.rclose))
      throw new FsError(Ename.IsDir, Errno.EISDIR);
    let exclKey: bigint | undefined;
    if ((node.qid.type & QTEXCL) !== 0) {
      // O4: exclusive use, server-wide; reserved now so concurrent opens cannot both win.
      if (!this.#core.exclAcquire(node.qid.path)) throw new FsError(Ename.ExclInUse, Errno.EBUSY);
      exclKey = node.qid.path;
    }
    fid.opening = true;
    let file: OpenFile;
    try {
      file = await doOpen(this.#reqCtx(fid.user, req));
    } catch (e) {
      if (exclKey !== undefined) this.#core.exclRelease(exclKey);
      throw e;
    } finally {
      fid.opening = false;
    }
    // What was opened decides how it is read: a symbolic link opened through to a directory
    // (Tlopen and Topen follow links) is read as the directory its Ropen/Rlopen qid names.
    const qid = file.qid ?? node.qid;
    const state: OpenState = {
      file,
      readable: access === OREAD || access === ORDWR || access === OEXEC,
      writable: access === OWRITE || access === ORDWR,
      rclose: flags.rclose,
      isDir: isDir || (qid.type & QTDIR) !== 0,
      exclKey,
    };
    return {
      reply: reply(qid, this.#iounit(file)),
      commit: () => {
        this.#stillThere(fid);
        if (fid.open) throw new FsError(Ename.AlreadyOpen, Errno.EBADF);
        fid.open = state;
      },
      discard: () => this.#dropFile(file, exclKey, fid.user),
    };
  }

  /** Shared by Tcreate and Tlcreate: the fid moves to the new, open file (O6). */
  #createOutcome(
    fid: Fid & { node: Node },
    created: { node: Node; file: OpenFile },
    access: number,
    rclose: boolean,
    reply: (qid: Qid, iounit: number) => DistributiveOmit<RMessage, "tag">,
  ): Outcome {
    const { node, file } = created;
    const isDir = (node.qid.type & QTDIR) !== 0;
    let exclKey: bigint | undefined;
    if ((node.qid.type & QTEXCL) !== 0 && this.#core.exclAcquire(node.qid.path)) exclKey = node.qid.path;
    const state: OpenState = {
      file,
      readable: access === OREAD || access === ORDWR || access === OEXEC,
      writable: access === OWRITE || access === ORDWR,
      rclose,
      isDir,
      exclKey,
    };
    const dirNode = fid.node;
    return {
      reply: reply(file.qid ?? node.qid, this.#iounit(file)),
      commit: () => {
        this.#stillThere(fid);
        if (fid.open) throw new FsError(Ename.AlreadyOpen, Errno.EBADF);
        fid.node = node;
        fid.open = state;
        node.hold?.();
        this.#dropNode(dirNode, fid.user);
      },
      discard: () => {
        this.#dropFile(file, exclKey, fid.user);
        this.#dropNode(node, fid.user);
      },
    };
  }

  /**
   * Validates a Topen/Tcreate mode and returns what the backend gets (OCEXEC dropped). On
   * 9P2000.u the Linux/spfs append bit 0x80 and the spfs exclusive bit 0x04 pass through to the
   * backend (XCPU clients send OWRITE|0x80); on 9P2000 they are ignored, never misinterpreted.
   * Any other unknown bit → "bad open mode".
   */
  #checkMode(mode: number): number {
    const extra = OAPPEND_U | OEXCL_SPFS;
    if ((mode & ~(3 | OTRUNC | OCEXEC | ORCLOSE | extra)) !== 0)
      throw new FsError(Ename.BadOpenMode, Errno.EINVAL);
    mode &= ~OCEXEC;
    if (this.#dialect !== Dialect.P2000u) mode &= ~extra;
    return mode;
  }

  /**
   * 9P2000.L offsets are Linux loff_t: one of 2^63 or more is negative there, and pread/pwrite
   * answer EINVAL (as diod passes on).
   */
  #checkOffsetL(offset: bigint): void {
    if (offset >= OFFSET_LIMIT_L && this.#dialect === Dialect.P2000L)
      throw new FsError("invalid argument", Errno.EINVAL);
  }

  #checkName(name: string): void {
    if (name === "." || name === "..") throw new FsError(Ename.Exists, Errno.EEXIST);
    if (name === "" || name.includes("/")) throw new FsError("illegal file name", Errno.EINVAL);
  }

  // ---- request handlers ---------------------------------------------------------------------

  #handlers: Partial<Record<number, Handler>> = {
    [MsgType.Tauth]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 102 }>;
      const user: Identity = { uname: msg.uname, aname: msg.aname, n_uname: msg.n_uname ?? NONUNAME };
      const backend = this.#core.backend;
      // ENOENT: diod's client library (diodcat, diodls, diodmount) reads exactly that errno as
      // "authentication not required" and attaches without an afid; any other errno is fatal there.
      if (!backend.auth) throw new FsError(`${this.#core.name}: ${Ename.NoAuth}`, Errno.ENOENT);
      this.#checkNewFid(msg.afid);
      this.#checkAuthFids();
      const auth = await backend.auth(user, this.#reqCtx(user, req));
      const fid: Fid = {
        num: msg.afid,
        node: undefined,
        auth,
        rootPath: -1n,
        user,
        open: undefined,
        opening: false,
      };
      return {
        reply: { type: MsgType.Rauth, aqid: auth.qid },
        commit: () => {
          this.#checkNewFid(msg.afid);
          this.#checkAuthFids();
          this.#fids.set(msg.afid, fid);
        },
        discard: () => {
          const ctx = this.#quietCtx(user);
          Promise.resolve()
            .then(() => auth.clunk?.(ctx))
            .catch(() => {});
        },
      };
    },

    [MsgType.Tattach]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 104 }>;
      const user: Identity = { uname: msg.uname, aname: msg.aname, n_uname: msg.n_uname ?? NONUNAME };
      this.#checkNewFid(msg.fid);
      let auth: AuthFile | undefined;
      if (msg.afid !== NOFID) {
        // A3: the afid must be an auth fid whose protocol has completed for this user.
        const af = this.#fids.get(msg.afid);
        if (!af) throw new FsError(Ename.UnknownFid, Errno.EBADF);
        if (!af.auth) throw new FsError("not an auth fid", Errno.EINVAL);
        if (!af.auth.authenticated(user)) throw new FsError(Ename.AuthFailed, Errno.EACCES);
        auth = af.auth;
      }
      const root = await this.#core.backend.attach({ ...user, auth }, this.#reqCtx(user, req));
      const fid: Fid = {
        num: msg.fid,
        node: root,
        auth: undefined,
        rootPath: root.qid.path,
        user,
        open: undefined,
        opening: false,
      };
      return {
        reply: { type: MsgType.Rattach, qid: root.qid },
        commit: () => {
          this.#checkNewFid(msg.fid);
          this.#fids.set(msg.fid, fid);
          this.#attachedNames.add(msg.uname);
          root.hold?.();
          // The handshake is over once a Tattach succeeded: a peer that only negotiated (or
          // failed to authenticate) does not hold a connection forever.
          this.#attached = true;
          this.#cancelHandshake?.();
        },
        discard: () => this.#dropNode(root, user),
      };
    },

    [MsgType.Tflush]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 108 }>;
      const old = this.#inflight.get(msg.oldtag);
      // FL2: not pending → Rflush at once.
      if (old && old !== req) {
        old.flushRequested = true;
        old.abort(new FsError(Ename.Interrupted, Errno.EINTR));
        // FL3: the aborted request answers (success) or goes silent before our Rflush. A handler
        // that ignores its signal is given up on after flushTimeoutMs: its reply is then dropped.
        const late = await Promise.race([
          old.done.then(() => false),
          delay(this.#core.opts.flushTimeoutMs).then(() => true),
        ]);
        if (late) {
          old.dead = true;
          if (this.#inflight.get(old.tag) === old) this.#inflight.delete(old.tag);
          this.#core.logger.warn(
            { conn: this.info.id, tag: old.tag, type: old.type },
            "9p: flushed request ignored its abort signal; reply dropped",
          );
        }
      }
      return { reply: { type: MsgType.Rflush } };
    },

    [MsgType.Twalk]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 110 }>;
      const fid = this.#fileFid(msg.fid);
      // W2: even a clone needs a fid that is not open. 9P2000.L servers (diod, QEMU) let a client
      // walk from an open fid to a new one, and diod's tools rely on it (diodls -l walks from the
      // directory it is reading); the open fid itself still cannot move (a walk of no names onto
      // itself, which moves nothing, is answered as diod does).
      const fromOpenAllowed =
        this.#dialect === Dialect.P2000L && (msg.newfid !== msg.fid || msg.wname.length === 0);
      if ((fid.open || fid.opening) && !fromOpenAllowed) throw new FsError(Ename.AlreadyOpen, Errno.EBADF);
      if (msg.newfid !== msg.fid) this.#checkNewFid(msg.newfid);
      if (msg.wname.length > MAXWELEM) throw new FsError("too many names in walk", Errno.EINVAL); // W5
      const ctx = this.#reqCtx(fid.user, req);
      let cur = fid.node;
      const wqid: Qid[] = [];
      let failure: unknown;
      for (const name of msg.wname) {
        try {
          if ((cur.qid.type & QTDIR) === 0) throw new FsError(Ename.WalkNoDir, Errno.ENOTDIR); // W4
          if (name === ".." && cur.qid.path === fid.rootPath) {
            // W7: the parent of the root is the root.
          } else {
            if (name === "" || name.includes("/")) throw new FsError(Ename.NotFound, Errno.ENOENT);
            if (!cur.walk1) throw new FsError(Ename.NotFound, Errno.ENOENT);
            if (req.aborted) throw req.reason;
            cur = await cur.walk1(name, ctx);
          }
          wqid.push(cur.qid);
        } catch (e) {
          failure = e;
          break;
        }
      }
      // W6: first element failed → error, nothing changes.
      if (failure !== undefined && wqid.length === 0) throw failure;
      if (wqid.length < msg.wname.length) {
        // W6: partial walk: the qids that worked; newfid is not created, fid does not move.
        return { reply: { type: MsgType.Rwalk, wqid } };
      }
      const target = cur;
      return {
        reply: { type: MsgType.Rwalk, wqid },
        commit: () => {
          this.#stillThere(fid);
          if (fid.open && !fromOpenAllowed) throw new FsError(Ename.AlreadyOpen, Errno.EBADF);
          if (msg.newfid === msg.fid) {
            if (target !== fid.node) {
              const old = fid.node;
              fid.node = target;
              target.hold?.();
              this.#dropNode(old, fid.user);
            }
          } else {
            this.#checkNewFid(msg.newfid);
            this.#fids.set(msg.newfid, {
              num: msg.newfid,
              node: target,
              auth: undefined,
              rootPath: fid.rootPath,
              user: fid.user,
              open: undefined,
              opening: false,
            });
            target.hold?.();
          }
        },
      };
    },

    // (Not async: an async function returning #openCommon's promise would take two more turns of
    // the microtask queue to adopt it. A synchronous throw is answered like a rejection.)
    [MsgType.Topen]: (m, req) => {
      const msg = m as Extract<TMessage, { type: 112 }>;
      const fid = this.#fileFid(msg.fid);
      const mode = this.#checkMode(msg.mode);
      const node = fid.node;
      if (!node.open) throw new FsError(Ename.Perm, Errno.EACCES);
      const open = node.open.bind(node);
      return this.#openCommon(
        fid,
        msg.mode & 3,
        { trunc: (msg.mode & OTRUNC) !== 0, rclose: (msg.mode & ORCLOSE) !== 0 },
        req,
        (ctx) => open(mode, ctx),
        (qid, iounit) => ({ type: MsgType.Ropen, qid, iounit }),
      );
    },

    [MsgType.Tcreate]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 114 }>;
      const fid = this.#fileFid(msg.fid);
      if (fid.open || fid.opening) throw this.#alreadyOpen();
      if ((fid.node.qid.type & QTDIR) === 0) throw new FsError(Ename.CreateNoDir, Errno.ENOTDIR);
      this.#checkName(msg.name);
      const mode = this.#checkMode(msg.mode);
      const access = msg.mode & 3;
      if ((msg.perm & DMDIR) !== 0 && (access !== OREAD || (msg.mode & (OTRUNC | ORCLOSE)) !== 0)) {
        throw new FsError(Ename.IsDir, Errno.EISDIR);
      }
      const extension = msg.extension ?? "";
      let linkTarget: Node | undefined;
      if ((msg.perm & DMLINK) !== 0 && this.#dialect === Dialect.P2000u) {
        const n = Number.parseInt(extension.trim(), 10);
        const target = Number.isFinite(n) ? this.#fids.get(n) : undefined;
        if (!target?.node) throw new FsError(Ename.UnknownFid, Errno.EBADF);
        linkTarget = target.node;
      }
      const node = fid.node;
      if (!node.create) throw new FsError(Ename.CreateProhibited, Errno.EPERM);
      fid.opening = true;
      let created: { node: Node; file: OpenFile };
      try {
        created = await node.create(
          { name: msg.name, perm: msg.perm, mode, extension, linkTarget },
          this.#reqCtx(fid.user, req),
        );
      } finally {
        fid.opening = false;
      }
      return this.#createOutcome(fid, created, access, (msg.mode & ORCLOSE) !== 0, (qid, iounit) => ({
        type: MsgType.Rcreate,
        qid,
        iounit,
      }));
    },

    [MsgType.Tread]: (m, req) => {
      const msg = m as Extract<TMessage, { type: 116 }>;
      const fid = this.#fid(msg.fid);
      const count = Math.min(msg.count, this.#msize - IOHDRSZ); // R4
      const ctx = this.#reqCtx(fid.user, req);
      if (fid.auth) {
        return Promise.resolve(fid.auth.read(msg.offset, count, ctx)).then((data) => ({
          reply: { type: MsgType.Rread, data: clip(data, count) },
        }));
      }
      const open = fid.open;
      if (!open) throw new FsError(Ename.NotOpen, Errno.EBADF);
      if (!open.readable) throw new FsError(Ename.Perm, Errno.EBADF); // R1
      if (open.isDir) {
        if (this.#dialect === Dialect.P2000L) throw new FsError(Ename.IsDir, Errno.EISDIR);
        return this.#readDir(fid, open, msg.offset, count, ctx);
      }
      this.#checkOffsetL(msg.offset);
      const file = open.file;
      if (file.readInto) {
        // Read straight into the reply frame: no second buffer, no copy. Large frames on sockets
        // (which copy what they are given into the kernel) come from a pool of this msize's
        // largest frame and go back to it once written. A read that finishes at once (cached
        // data read synchronously) is answered without a promise.
        const pooled = this.#poolFrames && RREAD_HEADER + count >= POOLED_FRAME_MIN;
        const buf = pooled
          ? replyFramePool.take(RREAD_HEADER + this.#msize - IOHDRSZ)
          : Buffer.allocUnsafe(RREAD_HEADER + count);
        // (A frame whose read failed is not given back: a read still running could write into it.)
        const r = file.readInto(msg.offset, buf.subarray(RREAD_HEADER, RREAD_HEADER + count), ctx);
        if (typeof r === "number") return rreadOutcome(buf, count, r, pooled);
        return Promise.resolve(r).then((got) => rreadOutcome(buf, count, got, pooled));
      }
      if (!file.read) throw new FsError(Ename.Perm, Errno.EACCES);
      return Promise.resolve(file.read(msg.offset, count, ctx)).then((data) => ({
        reply: { type: MsgType.Rread, data: clip(data, count) },
      }));
    },

    [MsgType.Twrite]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 118 }>;
      const fid = this.#fid(msg.fid);
      const ctx = this.#reqCtx(fid.user, req);
      if (fid.auth) {
        const n = await fid.auth.write(msg.offset, msg.data, ctx);
        return { reply: { type: MsgType.Rwrite, count: Math.min(n, msg.data.length) } };
      }
      const open = fid.open;
      if (!open) throw new FsError(Ename.NotOpen, Errno.EBADF);
      if (open.isDir) {
        // R3. On 9P2000.L a directory is open read-only, so write(2) (and diod) answer EBADF.
        if (this.#dialect === Dialect.P2000L) throw new FsError(Ename.Perm, Errno.EBADF);
        throw new FsError(Ename.IsDir, Errno.EISDIR);
      }
      if (!open.writable) throw new FsError(Ename.Perm, Errno.EBADF); // R1
      this.#checkOffsetL(msg.offset);
      if (!open.file.write) throw new FsError(Ename.Perm, Errno.EACCES);
      let n: number;
      try {
        n = await open.file.write(msg.offset, msg.data, ctx);
      } finally {
        if (open.file.releasesWriteData) releaseReceived(msg.data);
      }
      return { reply: { type: MsgType.Rwrite, count: Math.max(0, Math.min(n, msg.data.length)) } };
    },

    [MsgType.Tclunk]: async (m, _req) => {
      const msg = m as Extract<TMessage, { type: 120 }>;
      const fid = this.#fid(msg.fid);
      // C1/F3: the fid is gone whatever the hooks say.
      this.#fids.delete(msg.fid);
      const err = await this.#closeFid(fid, this.#quietCtx(fid.user));
      if (err) throw err;
      return { reply: { type: MsgType.Rclunk } };
    },

    [MsgType.Tremove]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 122 }>;
      const fid = this.#fid(msg.fid);
      // C2: Tremove clunks the fid even if the removal fails.
      this.#fids.delete(msg.fid);
      const ctx = this.#reqCtx(fid.user, req);
      let failure: unknown;
      if (!fid.node) failure = new FsError(Ename.RemoveProhibited, Errno.EPERM);
      const open = fid.open;
      if (open) {
        // Close the open file first (like Tclunk), then try the removal once.
        fid.open = undefined;
        try {
          await open.file.clunk?.(ctx);
        } catch (e) {
          this.#core.logger.debug({ conn: this.info.id, err: e }, "9p: clunk before remove failed");
        }
        if (open.exclKey !== undefined) this.#core.exclRelease(open.exclKey);
      }
      if (fid.node && failure === undefined) {
        try {
          if (!fid.node.remove) throw new FsError(Ename.RemoveProhibited, Errno.EPERM);
          await fid.node.remove(ctx);
        } catch (e) {
          failure = e;
        }
      }
      await this.#closeFid(fid, this.#quietCtx(fid.user), true);
      if (failure !== undefined) throw failure;
      return { reply: { type: MsgType.Rremove } };
    },

    [MsgType.Tstat]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 124 }>;
      const fid = this.#fid(msg.fid);
      if (fid.auth) {
        const stat: Stat = {
          type: 0,
          dev: 0,
          qid: fid.auth.qid,
          mode: (DMAUTH | 0o600) >>> 0,
          atime: 0,
          mtime: 0,
          length: 0n,
          name: "#a",
          uid: fid.user.uname,
          gid: fid.user.uname,
          muid: "",
        };
        return { reply: { type: MsgType.Rstat, stat } };
      }
      const node = fid.node!;
      const st = await node.stat(this.#reqCtx(fid.user, req));
      // S1: the attach root is called "/" (in a copy: the backend's object is left as it is).
      const stat = node.qid.path === fid.rootPath ? { ...st, name: "/" } : st;
      return { reply: { type: MsgType.Rstat, stat } };
    },

    [MsgType.Twstat]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 126 }>;
      const fid = this.#fileFid(msg.fid);
      const node = fid.node;
      const asked = wstatChanges(msg.stat, (node.qid.type & QTDIR) !== 0);
      // Linux's v9fs renames with a Twstat of the new name whose muid is the mount's user name,
      // which is not the fid's own when each local user attaches for itself (access=user: the
      // mount attaches as "nobody", then root as n_uname 0). A muid naming the user who makes the
      // change, or a name attached with on this connection, is not taken as a request to change
      // muid (S2), which any other muid still is.
      const { muid, ...rest } = asked;
      const changes: StatChanges =
        muid === undefined || muid === fid.user.uname || this.#attachedNames.has(muid) ? rest : asked;
      const ctx = this.#reqCtx(fid.user, req);
      if (Object.keys(changes).length === 0) {
        // S3: all "don't touch" = commit to stable storage.
        await node.sync?.(ctx);
      } else {
        if (!node.wstat) throw new FsError(Ename.WstatProhibited, Errno.EPERM);
        await node.wstat(changes, ctx);
      }
      return { reply: { type: MsgType.Rwstat } };
    },

    // ---- 9P2000.L ---------------------------------------------------------------------------

    [MsgType.Tstatfs]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 8 }>;
      const fid = this.#fileFid(msg.fid);
      if (!fid.node.statfs) throw notSupported();
      const r = await fid.node.statfs(this.#reqCtx(fid.user, req));
      return { reply: { type: MsgType.Rstatfs, ...r } };
    },

    [MsgType.Tlopen]: (m, req) => {
      const msg = m as Extract<TMessage, { type: 12 }>;
      const fid = this.#fileFid(msg.fid);
      const node = fid.node;
      const access = msg.flags & L_O.ACCMODE;
      if (access === 3) throw new FsError("invalid argument", Errno.EINVAL);
      const trunc = (msg.flags & L_O.TRUNC) !== 0;
      let doOpen: (ctx: RequestContext) => Promise<OpenFile>;
      if (node.lopen) {
        const lopen = node.lopen.bind(node);
        doOpen = (ctx) => lopen(msg.flags, ctx);
      } else if (node.open) {
        const open = node.open.bind(node);
        doOpen = (ctx) => open(access | (trunc ? OTRUNC : 0), ctx);
      } else throw notSupported();
      return this.#openCommon(fid, access, { trunc, rclose: false }, req, doOpen, (qid, iounit) => ({
        type: MsgType.Rlopen,
        qid,
        iounit,
      }));
    },

    [MsgType.Tlcreate]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 14 }>;
      const fid = this.#fileFid(msg.fid);
      if (fid.open || fid.opening) throw this.#alreadyOpen();
      if ((fid.node.qid.type & QTDIR) === 0) throw new FsError(Ename.NotDir, Errno.ENOTDIR);
      // open(2) with O_CREAT of "." or ".." names a directory: EISDIR, as diod answers.
      if (msg.name === "." || msg.name === "..") throw new FsError(Ename.IsDir, Errno.EISDIR);
      this.#checkName(msg.name);
      const node = fid.node;
      const access = msg.flags & L_O.ACCMODE;
      const ctx = this.#reqCtx(fid.user, req);
      fid.opening = true;
      let created: { node: Node; file: OpenFile };
      try {
        if (node.lcreate) created = await node.lcreate(msg.name, msg.flags, msg.mode, msg.gid, ctx);
        else if (node.create) {
          created = await node.create(
            {
              name: msg.name,
              perm: msg.mode & 0o777,
              mode: (access === 3 ? ORDWR : access) | ((msg.flags & L_O.TRUNC) !== 0 ? OTRUNC : 0),
              extension: "",
            },
            ctx,
          );
        } else throw notSupported();
      } finally {
        fid.opening = false;
      }
      return this.#createOutcome(fid, created, access, false, (qid, iounit) => ({
        type: MsgType.Rlcreate,
        qid,
        iounit,
      }));
    },

    [MsgType.Tsymlink]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 16 }>;
      const fid = this.#fileFid(msg.fid);
      this.#checkName(msg.name);
      if (!fid.node.symlink) throw notSupported();
      const n = await fid.node.symlink(msg.name, msg.symtgt, msg.gid, this.#reqCtx(fid.user, req));
      return { reply: { type: MsgType.Rsymlink, qid: n.qid } };
    },

    [MsgType.Tmknod]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 18 }>;
      const fid = this.#fileFid(msg.dfid);
      this.#checkName(msg.name);
      if (!fid.node.mknod) throw notSupported();
      const n = await fid.node.mknod(
        msg.name,
        msg.mode,
        msg.major,
        msg.minor,
        msg.gid,
        this.#reqCtx(fid.user, req),
      );
      return { reply: { type: MsgType.Rmknod, qid: n.qid } };
    },

    [MsgType.Trename]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 20 }>;
      const fid = this.#fileFid(msg.fid);
      const dir = this.#fileFid(msg.dfid);
      this.#checkName(msg.name);
      if (!fid.node.rename) throw notSupported();
      await fid.node.rename(dir.node, msg.name, this.#reqCtx(fid.user, req));
      return { reply: { type: MsgType.Rrename } };
    },

    [MsgType.Treadlink]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 22 }>;
      const fid = this.#fileFid(msg.fid);
      if (!fid.node.readlink) throw notSupported();
      const target = await fid.node.readlink(this.#reqCtx(fid.user, req));
      return { reply: { type: MsgType.Rreadlink, target } };
    },

    [MsgType.Tgetattr]: (m, req) => {
      const msg = m as Extract<TMessage, { type: 24 }>;
      const fid = this.#fileFid(msg.fid);
      const ctx = this.#reqCtx(fid.user, req);
      if (!fid.node.getattr)
        return Promise.resolve(fid.node.stat(ctx)).then((st) => rgetattr(attrFromStat(st)));
      // A backend that knows the answer at once (a synchronous lstat) returns it directly.
      const attr = fid.node.getattr(msg.request_mask, ctx);
      return isThenable(attr) ? Promise.resolve(attr).then(rgetattr) : rgetattr(attr);
    },

    [MsgType.Tsetattr]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 26 }>;
      const fid = this.#fileFid(msg.fid);
      if (!fid.node.setattr) throw notSupported();
      const { type: _t, tag: _g, fid: _f, ...attr } = msg;
      await fid.node.setattr(attr, this.#reqCtx(fid.user, req));
      return { reply: { type: MsgType.Rsetattr } };
    },

    [MsgType.Txattrwalk]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 30 }>;
      const fid = this.#fileFid(msg.fid);
      if (msg.newfid !== msg.fid) this.#checkNewFid(msg.newfid);
      if (!fid.node.xattrwalk) throw notSupported();
      const { size, file } = await fid.node.xattrwalk(msg.name, this.#reqCtx(fid.user, req));
      const node = fid.node;
      return {
        reply: { type: MsgType.Rxattrwalk, size },
        commit: () => {
          this.#stillThere(fid);
          const state: OpenState = {
            file,
            readable: true,
            writable: false,
            rclose: false,
            isDir: false,
            exclKey: undefined,
          };
          if (msg.newfid === msg.fid) {
            if (fid.open) throw new FsError(Ename.AlreadyOpen, Errno.EBADF);
            fid.open = state;
          } else {
            this.#checkNewFid(msg.newfid);
            this.#fids.set(msg.newfid, { ...fid, num: msg.newfid, node, open: state, opening: false });
            node.hold?.();
          }
        },
        discard: () => this.#dropFile(file, undefined, fid.user),
      };
    },

    [MsgType.Txattrcreate]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 32 }>;
      const fid = this.#fileFid(msg.fid);
      if (fid.open || fid.opening) throw new FsError(Ename.AlreadyOpen, Errno.EBADF);
      if (!fid.node.xattrcreate) throw notSupported();
      const file = await fid.node.xattrcreate(
        msg.name,
        msg.attr_size,
        msg.flags,
        this.#reqCtx(fid.user, req),
      );
      return {
        reply: { type: MsgType.Rxattrcreate },
        commit: () => {
          this.#stillThere(fid);
          if (fid.open) throw new FsError(Ename.AlreadyOpen, Errno.EBADF);
          fid.open = {
            file,
            readable: false,
            writable: true,
            rclose: false,
            isDir: false,
            exclKey: undefined,
          };
        },
        discard: () => this.#dropFile(file, undefined, fid.user),
      };
    },

    [MsgType.Treaddir]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 40 }>;
      const fid = this.#fileFid(msg.fid);
      const open = fid.open;
      if (!open) throw new FsError(Ename.NotOpen, Errno.EBADF);
      // An open file that is not a directory: EINVAL, as diod answers.
      if (!open.isDir) throw new FsError(Ename.NotDir, Errno.EINVAL);
      const count = Math.min(msg.count, this.#msize - IOHDRSZ);
      const ctx = this.#reqCtx(fid.user, req);
      let entries: Dirent[];
      if (open.file.readdir) {
        entries = await open.file.readdir(msg.offset, count, ctx);
      } else if (open.file.list) {
        if (msg.offset === 0n || !open.lsnap) {
          const stats = await open.file.list(ctx);
          open.lsnap = stats.map((s, i) => ({
            qid: s.qid,
            offset: BigInt(i + 1),
            type: direntType(s.mode),
            name: s.name,
          }));
        }
        entries = msg.offset < BigInt(open.lsnap.length) ? open.lsnap.slice(Number(msg.offset)) : [];
      } else throw notSupported();
      const parts: Buffer[] = [];
      let size = 0;
      for (const d of entries) {
        const b = encodeDirent(d);
        if (size + b.length > count) break;
        parts.push(b);
        size += b.length;
      }
      if (parts.length === 0 && entries.length > 0) throw new FsError(Ename.Short, Errno.EINVAL);
      return { reply: { type: MsgType.Rreaddir, data: Buffer.concat(parts, size) } };
    },

    [MsgType.Tfsync]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 50 }>;
      const fid = this.#fileFid(msg.fid);
      // fsync(2) needs an open file: EBADF otherwise, as diod answers.
      if (!fid.open) throw new FsError(Ename.NotOpen, Errno.EBADF);
      await fid.open.file.fsync?.(msg.datasync !== 0, this.#reqCtx(fid.user, req));
      return { reply: { type: MsgType.Rfsync } };
    },

    [MsgType.Tlock]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 52 }>;
      const fid = this.#fileFid(msg.fid);
      // Locks belong to open files (EBADF otherwise); a type or flag Linux does not define is
      // EINVAL. diod answers both the same way.
      const file = fid.open?.file;
      if (!file) throw new FsError(Ename.NotOpen, Errno.EBADF);
      if (msg.locktype > LOCK_UNLCK || (msg.flags & ~LOCK_FLAGS) !== 0)
        throw new FsError("invalid lock request", Errno.EINVAL);
      if (!file.lock) throw notSupported();
      const { type: _t, tag: _g, fid: _f, ...lk } = msg;
      const status = await file.lock(lk, this.#reqCtx(fid.user, req));
      return { reply: { type: MsgType.Rlock, status } };
    },

    [MsgType.Tgetlock]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 54 }>;
      const fid = this.#fileFid(msg.fid);
      const file = fid.open?.file;
      if (!file) throw new FsError(Ename.NotOpen, Errno.EBADF);
      // F_GETLK asks about a read or a write lock; anything else is EINVAL.
      if (msg.locktype !== LOCK_RDLCK && msg.locktype !== LOCK_WRLCK)
        throw new FsError("invalid lock request", Errno.EINVAL);
      if (!file.getlock) throw notSupported();
      const { type: _t, tag: _g, fid: _f, ...lk } = msg;
      const r = await file.getlock(lk, this.#reqCtx(fid.user, req));
      return { reply: { type: MsgType.Rgetlock, ...r } };
    },

    [MsgType.Tlink]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 70 }>;
      const dir = this.#fileFid(msg.dfid);
      const target = this.#fileFid(msg.fid);
      this.#checkName(msg.name);
      if (!dir.node.link) throw notSupported();
      await dir.node.link(target.node, msg.name, this.#reqCtx(dir.user, req));
      return { reply: { type: MsgType.Rlink } };
    },

    [MsgType.Tmkdir]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 72 }>;
      const dir = this.#fileFid(msg.dfid);
      this.#checkName(msg.name);
      const ctx = this.#reqCtx(dir.user, req);
      const node = dir.node;
      let qid: Qid;
      if (node.mkdir) qid = (await node.mkdir(msg.name, msg.mode, msg.gid, ctx)).qid;
      else if (node.create) {
        const c = await node.create(
          { name: msg.name, perm: (DMDIR | (msg.mode & 0o777)) >>> 0, mode: OREAD, extension: "" },
          ctx,
        );
        qid = c.file.qid ?? c.node.qid;
        await c.file.clunk?.(ctx);
        await c.node.release?.(ctx);
      } else throw notSupported();
      return { reply: { type: MsgType.Rmkdir, qid } };
    },

    [MsgType.Trenameat]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 74 }>;
      const olddir = this.#fileFid(msg.olddirfid);
      const newdir = this.#fileFid(msg.newdirfid);
      this.#checkName(msg.oldname);
      this.#checkName(msg.newname);
      if (!olddir.node.renameat) throw notSupported();
      await olddir.node.renameat(msg.oldname, newdir.node, msg.newname, this.#reqCtx(olddir.user, req));
      return { reply: { type: MsgType.Rrenameat } };
    },

    [MsgType.Tunlinkat]: async (m, req) => {
      const msg = m as Extract<TMessage, { type: 76 }>;
      const dir = this.#fileFid(msg.dirfd);
      this.#checkName(msg.name);
      // unlinkat(2): AT_REMOVEDIR is the only flag (EINVAL otherwise); with it the name must be
      // a directory (ENOTDIR), without it must not be one (EISDIR).
      if ((msg.flags & ~AT_REMOVEDIR) !== 0) throw new FsError("invalid argument", Errno.EINVAL);
      const ctx = this.#reqCtx(dir.user, req);
      const node = dir.node;
      if (node.unlinkat) await node.unlinkat(msg.name, msg.flags, ctx);
      else if (node.walk1) {
        const child = await node.walk1(msg.name, ctx);
        try {
          const isDir = (child.qid.type & QTDIR) !== 0;
          if ((msg.flags & AT_REMOVEDIR) !== 0 && !isDir) throw new FsError(Ename.NotDir, Errno.ENOTDIR);
          if ((msg.flags & AT_REMOVEDIR) === 0 && isDir) throw new FsError(Ename.IsDir, Errno.EISDIR);
          if (!child.remove) throw notSupported();
          await child.remove(ctx);
        } finally {
          this.#dropNode(child, dir.user);
        }
      } else throw notSupported();
      return { reply: { type: MsgType.Runlinkat } };
    },
  };

  /** 9P2000/.u directory read with a per-fid cursor (D1–D5). */
  async #readDir(
    fid: Fid,
    open: OpenState,
    offset: bigint,
    count: number,
    ctx: RequestContext,
  ): Promise<Outcome> {
    let cursor = open.cursor;
    if (offset === 0n) {
      // Offset 0 (re)starts the listing from a fresh snapshot.
      if (!open.file.list) throw new FsError(Ename.Perm, Errno.EACCES);
      const stats = await open.file.list(ctx);
      const dialect = this.#dialect ?? Dialect.P2000;
      cursor = { entries: stats.map((s) => encodeStat(s, dialect)), index: 0, offset: 0n };
    } else if (!cursor || cursor.offset !== offset) {
      // D2: only 0 or where the previous read ended.
      throw new FsError(Ename.BadOffset, Errno.EINVAL);
    }
    const snap = cursor;
    let i = snap.index;
    let size = 0;
    const parts: Buffer[] = [];
    while (i < snap.entries.length) {
      const e = snap.entries[i]!;
      if (size + e.length > count) break; // D3: never split an entry
      parts.push(e);
      size += e.length;
      i++;
    }
    // D3: not even one entry fits → error, and the entry stays first for the next read.
    if (parts.length === 0 && i < snap.entries.length) throw new FsError(Ename.Short, Errno.EINVAL);
    const startOffset = snap.offset;
    return {
      reply: { type: MsgType.Rread, data: Buffer.concat(parts, size) },
      commit: () => {
        this.#stillThere(fid);
        // A concurrent read moved the cursor meanwhile: this offset is no longer valid (D2).
        if (offset !== 0n && open.cursor !== snap) throw new FsError(Ename.BadOffset, Errno.EINVAL);
        open.cursor = { entries: snap.entries, index: i, offset: startOffset + BigInt(size) };
      },
    };
  }
}

// ---- free helpers -----------------------------------------------------------------------------

const NONE: readonly number[] = [];

/** The fids a request creates, moves, opens or frees (it holds their gates until it finishes). */
function changedFids(m: TMessage): readonly number[] {
  switch (m.type) {
    case MsgType.Tattach:
    case MsgType.Topen:
    case MsgType.Tcreate:
    case MsgType.Tlopen:
    case MsgType.Tlcreate:
    case MsgType.Txattrcreate:
    case MsgType.Tclunk:
    case MsgType.Tremove:
      return [m.fid];
    case MsgType.Tauth:
      return [m.afid];
    case MsgType.Twalk:
    case MsgType.Txattrwalk:
      return [m.newfid];
    default:
      return NONE;
  }
}

/** The fids a request only reads (it waits for the gates of those, and of the ones it changes). */
function usedFids(m: TMessage): readonly number[] {
  switch (m.type) {
    case MsgType.Tattach:
      return m.afid === NOFID ? NONE : [m.afid];
    case MsgType.Twalk:
    case MsgType.Txattrwalk:
      return m.newfid === m.fid ? NONE : [m.fid];
    case MsgType.Tread:
    case MsgType.Twrite:
    case MsgType.Tstat:
    case MsgType.Twstat:
    case MsgType.Tstatfs:
    case MsgType.Treadlink:
    case MsgType.Tgetattr:
    case MsgType.Tsetattr:
    case MsgType.Treaddir:
    case MsgType.Tfsync:
    case MsgType.Tlock:
    case MsgType.Tgetlock:
    case MsgType.Tsymlink:
      return [m.fid];
    case MsgType.Trename:
      return [m.fid, m.dfid];
    case MsgType.Tmknod:
    case MsgType.Tmkdir:
      return [m.dfid];
    case MsgType.Tlink:
      return [m.dfid, m.fid];
    case MsgType.Trenameat:
      return [m.olddirfid, m.newdirfid];
    case MsgType.Tunlinkat:
      return [m.dirfd];
    default:
      return NONE;
  }
}

/** The Rread outcome of `got` bytes read into `buf` after its 11-byte header. */
function rreadOutcome(buf: Buffer, count: number, got: number, pooled: boolean): Outcome {
  const n = Math.min(count, Math.max(0, got));
  buf.writeUInt32LE(RREAD_HEADER + n, 0);
  buf[4] = MsgType.Rread;
  buf.writeUInt32LE(n, 7);
  const frame = buf.subarray(0, RREAD_HEADER + n);
  return {
    reply: { type: MsgType.Rread, data: frame.subarray(RREAD_HEADER) },
    frame,
    written: pooled ? () => replyFramePool.give(buf) : undefined,
  };
}

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as { then?: unknown } | null)?.then === "function";
}

/** Rgetattr encoded straight from the backend's Attr (no reply object copied from it). */
function rgetattr(attr: Attr): Outcome {
  return { frame: encodeTyped(MsgType.Rgetattr, attr, 0, Dialect.P2000L) };
}

function notSupported(): FsError {
  return new FsError(Ename.NotSupported, Errno.EOPNOTSUPP);
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => {
    const t = setTimeout(r, ms);
    t.unref?.();
  });
}

function clip(data: Uint8Array, count: number): Uint8Array {
  return data.length > count ? data.subarray(0, count) : data;
}

function runQuietly(fn: () => void, logger: { warn(o: unknown, m?: string): void }): void {
  try {
    fn();
  } catch (e) {
    logger.warn({ err: e }, "9p: discard hook failed");
  }
}

/** S2/S3: turn a Twstat stat into the fields to change, rejecting the ones that never change. */
export function wstatChanges(s: Stat, isDir: boolean): StatChanges {
  const c: StatChanges = {};
  if (s.type !== 0xffff) throw new FsError(Ename.WstatProhibited, Errno.EPERM);
  if (s.dev !== 0xffffffff) throw new FsError(Ename.WstatProhibited, Errno.EPERM);
  if (s.qid.type !== 0xff || s.qid.version !== 0xffffffff || s.qid.path !== 0xffffffffffffffffn) {
    throw new FsError(Ename.WstatProhibited, Errno.EPERM);
  }
  if (s.mode !== 0xffffffff) {
    if (((s.mode & DMDIR) !== 0) !== isDir) throw new FsError("can't change directory bit", Errno.EPERM);
    c.mode = s.mode >>> 0;
  }
  if (s.name !== "") {
    if (s.name === "." || s.name === ".." || s.name.includes("/"))
      throw new FsError("illegal file name", Errno.EINVAL);
    c.name = s.name;
  }
  if (s.length !== 0xffffffffffffffffn) {
    if (isDir && s.length !== 0n) throw new FsError(Ename.IsDir, Errno.EISDIR);
    c.length = s.length;
  }
  if (s.atime !== 0xffffffff) c.atime = s.atime;
  if (s.mtime !== 0xffffffff) c.mtime = s.mtime;
  if (s.uid !== "") c.uid = s.uid;
  if (s.gid !== "") c.gid = s.gid;
  if (s.muid !== "") c.muid = s.muid;
  if (s.extension !== undefined && s.extension !== "") c.extension = s.extension;
  if (s.n_uid !== undefined && s.n_uid !== 0xffffffff) c.n_uid = s.n_uid;
  if (s.n_gid !== undefined && s.n_gid !== 0xffffffff) c.n_gid = s.n_gid;
  if (s.n_muid !== undefined && s.n_muid !== 0xffffffff) c.n_muid = s.n_muid;
  return c;
}

/** Linux d_type of a 9P mode. */
function direntType(mode: number): number {
  if ((mode & DMDIR) !== 0) return 4; // DT_DIR
  if (((mode >>> 24) & QTSYMLINK) !== 0) return 10; // DT_LNK
  return 8; // DT_REG
}

/** Fallback Rgetattr built from a 9P stat, for backends without getattr. */
export function attrFromStat(s: Stat): Attr {
  let fmt = 0o100000; // S_IFREG
  if ((s.mode & DMDIR) !== 0) fmt = 0o040000;
  else if (((s.mode >>> 24) & QTSYMLINK) !== 0) fmt = 0o120000;
  const size = s.length;
  return {
    valid: 0x7ffn,
    qid: s.qid,
    mode: fmt | (s.mode & 0o777),
    uid: s.n_uid !== undefined && s.n_uid !== NONUNAME ? s.n_uid : 0,
    gid: s.n_gid !== undefined && s.n_gid !== NONUNAME ? s.n_gid : 0,
    nlink: 1n,
    rdev: 0n,
    size,
    blksize: 4096n,
    blocks: (size + 511n) / 512n,
    atime_sec: BigInt(s.atime),
    atime_nsec: 0n,
    mtime_sec: BigInt(s.mtime),
    mtime_nsec: 0n,
    ctime_sec: BigInt(s.mtime),
    ctime_nsec: 0n,
    btime_sec: 0n,
    btime_nsec: 0n,
    gen: 0n,
    data_version: 0n,
  };
}
