// A deliberately low-level 9P test client: sends exactly the frames it is given (including wrong
// ones) and collects replies by tag, so tests can check server behaviour message by message.

import net from "node:net";
import type { Duplex } from "node:stream";
import { Dialect, MsgType, NOFID, NOTAG } from "../codec/constants.js";
import { Framer } from "../codec/framer.js";
import type { Message, RMessage, Stat, TMessage } from "../codec/types.js";
import { decode, encode } from "../codec/wire.js";
import { type Address, parseAddress } from "../transport/address.js";

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A T-message without its tag (RawClient.call picks one). */
export type Request = DistributiveOmit<TMessage, "tag">;

/** Raised by RawClient when no reply arrives in time. */
export class RawTimeoutError extends Error {
  constructor(what: string) {
    super(`timed out waiting for ${what}`);
    this.name = "RawTimeoutError";
  }
}

/**
 * A raw 9P connection for tests. Replies are matched to requests by tag; nothing is validated
 * beyond decoding.
 *
 * @example
 * const c = await RawClient.connect("tcp!127.0.0.1!5640");
 * await c.version(8192, "9P2000");
 * const r = await c.call({ type: MsgType.Tattach, fid: 0, afid: NOFID, uname: "u", aname: "" });
 */
export class RawClient {
  readonly stream: Duplex;
  /** Dialect used to encode requests and decode replies (set by version()). */
  dialect: Dialect = Dialect.P2000;
  #framer = new Framer({ maxSize: 64 * 1024 * 1024 });
  #got: Message[] = [];
  #waiters: { match: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  #closed = false;
  #closeWaiters: (() => void)[] = [];
  #nextTag = 1;
  /** Every reply received, in order (for ordering assertions). */
  readonly log: Message[] = [];
  /** Set when the byte stream could not be decoded. */
  error: Error | undefined;

  constructor(stream: Duplex) {
    this.stream = stream;
    stream.on("data", (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = this.#framer.push(chunk);
      } catch (e) {
        this.error = e as Error;
        stream.destroy();
        return;
      }
      for (const f of frames) {
        let m: Message;
        try {
          m = decode(f, this.dialect);
        } catch (e) {
          this.error = e as Error;
          continue;
        }
        this.log.push(m);
        const w = this.#waiters.findIndex((x) => x.match(m));
        if (w >= 0) {
          const [x] = this.#waiters.splice(w, 1);
          x!.resolve(m);
        } else this.#got.push(m);
      }
    });
    const onClose = () => {
      if (this.#closed) return;
      this.#closed = true;
      for (const w of this.#closeWaiters.splice(0)) w();
    };
    stream.on("close", onClose);
    stream.on("end", onClose);
    stream.on("error", () => onClose());
  }

  /** Connects over TCP or a Unix socket (any address form parseAddress accepts). */
  static connect(address: string | Address): Promise<RawClient> {
    const a = typeof address === "string" ? parseAddress(address) : address;
    return new Promise((resolve, reject) => {
      const s =
        a.network === "unix"
          ? net.connect({ path: a.path })
          : net.connect({ host: a.host, port: a.port, noDelay: true });
      s.once("error", reject);
      s.once("connect", () => {
        s.off("error", reject);
        resolve(new RawClient(s));
      });
    });
  }

  /** True once the server closed the connection (or it failed). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves when the connection closes; rejects after `ms`. */
  waitClosed(ms = 5000): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return withTimeout(new Promise<void>((r) => this.#closeWaiters.push(r)), ms, "connection close");
  }

  /** A fresh tag (never NOTAG). */
  tag(): number {
    const t = this.#nextTag;
    this.#nextTag = (this.#nextTag % 0xfffe) + 1;
    return t;
  }

  /** Sends a message as is (tag included). */
  send(msg: TMessage): void {
    this.stream.write(encode(msg, this.dialect));
  }

  /** Sends arbitrary bytes. */
  sendRaw(bytes: Uint8Array): void {
    this.stream.write(bytes);
  }

  /** The next reply carrying `tag` (already received or still to come). */
  reply(tag: number, ms = 5000): Promise<Message> {
    return this.#take((m) => m.tag === tag, ms, `reply to tag ${tag}`);
  }

  /** Any next reply not yet taken. */
  next(ms = 5000): Promise<Message> {
    return this.#take(() => true, ms, "any reply");
  }

  /** Replies received and not yet taken. */
  pending(): Message[] {
    return [...this.#got];
  }

  #take(match: (m: Message) => boolean, ms: number, what: string): Promise<Message> {
    const i = this.#got.findIndex(match);
    if (i >= 0) return Promise.resolve(this.#got.splice(i, 1)[0]!);
    let entry: { match: (m: Message) => boolean; resolve: (m: Message) => void };
    const p = new Promise<Message>((resolve) => {
      entry = { match, resolve };
      this.#waiters.push(entry);
    });
    return withTimeout(p, ms, what).catch((e) => {
      const k = this.#waiters.indexOf(entry);
      if (k >= 0) this.#waiters.splice(k, 1);
      throw e;
    });
  }

  /** Sends `req` with a fresh tag and waits for its reply. */
  async call(req: Request, ms = 5000): Promise<RMessage> {
    const tag = this.tag();
    this.send({ ...req, tag } as TMessage);
    return (await this.reply(tag, ms)) as RMessage;
  }

  /** Tversion; adopts the dialect the server answers with. */
  async version(msize: number, version: string): Promise<Extract<Message, { type: 101 }>> {
    const prev = this.dialect;
    this.dialect = Dialect.P2000;
    this.send({ type: MsgType.Tversion, tag: NOTAG, msize, version });
    const r = await this.reply(NOTAG);
    if (r.type !== MsgType.Rversion) {
      this.dialect = prev;
      throw new Error(`Tversion answered with ${JSON.stringify(r)}`);
    }
    if (r.version === Dialect.P2000 || r.version === Dialect.P2000u || r.version === Dialect.P2000L) {
      this.dialect = r.version;
    }
    return r;
  }

  /** Tattach without auth; throws when the reply is not Rattach. */
  async attach(fid: number, uname = "glenda", aname = ""): Promise<Extract<Message, { type: 105 }>> {
    const r = await this.call({ type: MsgType.Tattach, fid, afid: NOFID, uname, aname });
    if (r.type !== MsgType.Rattach) throw new Error(`Tattach answered with ${JSON.stringify(r)}`);
    return r;
  }

  /** Twalk; returns the reply (Rwalk or an error). */
  walk(fid: number, newfid: number, ...wname: string[]): Promise<RMessage> {
    return this.call({ type: MsgType.Twalk, fid, newfid, wname });
  }

  /** Tstat; throws on error. */
  async stat(fid: number): Promise<Stat> {
    const r = await this.call({ type: MsgType.Tstat, fid });
    if (r.type !== MsgType.Rstat) throw new Error(`Tstat answered with ${JSON.stringify(r)}`);
    return r.stat;
  }

  /** Ends our side and waits for the close. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.stream.end();
    await this.waitClosed(2000).catch(() => this.stream.destroy());
  }

  /** Tears the connection down now. */
  destroy(): void {
    this.stream.destroy();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new RawTimeoutError(what)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** The ename of an Rerror, the errno of an Rlerror, or undefined for any other reply. */
export function errorOf(m: Message): string | number | undefined {
  if (m.type === MsgType.Rerror) return m.ename;
  if (m.type === MsgType.Rlerror) return m.ecode;
  return undefined;
}
