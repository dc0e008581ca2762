// The wire in front of the emulated original node: a TCP proxy that sees every 9P frame and makes
// the replies look like the original xcpufs 1.2.3's where the server framework differs from it
// (xcpu-1.2.3-wire.jsonl): every Ropen/Rcreate carries iounit 0, and a Tread whose count exceeds
// msize − 24 is refused with "i/o count too large" (spfs) instead of being clamped. It also records
// what a client sent that the original could not have taken: a frame larger than the negotiated
// msize (the original's reader cannot hold it; the connection is closed here).
import { connect, createServer, type Server, type Socket } from "node:net";

const Tversion = 100;
const Rversion = 101;
const Tread = 116;
const Ropen = 113;
const Rcreate = 115;
const Rerror = 107;
const IOHDRSZ = 24;

export interface WireRecord {
  conn: number;
  dir: "c2s" | "s2c";
  type: number;
  size: number;
  /** Tread/Twrite count, Ropen/Rcreate iounit as the framework sent it. */
  count?: number;
}

/** Cuts a byte stream into 9P frames. */
class Frames {
  #buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Buffer[] = [];
    while (this.#buf.length >= 4) {
      const size = this.#buf.readUInt32LE(0);
      if (size < 7) throw new Error(`bad frame size ${size}`);
      if (this.#buf.length < size) break;
      out.push(this.#buf.subarray(0, size));
      this.#buf = this.#buf.subarray(size);
    }
    return out;
  }
}

function rerror(tag: number, ename: string, errno: number): Buffer {
  const e = Buffer.from(ename);
  const b = Buffer.alloc(7 + 2 + e.length + 4);
  b.writeUInt32LE(b.length, 0);
  b[4] = Rerror;
  b.writeUInt16LE(tag, 5);
  b.writeUInt16LE(e.length, 7);
  e.copy(b, 9);
  b.writeUInt32LE(errno, 9 + e.length);
  return b;
}

export class OriginalWire {
  readonly records: WireRecord[] = [];
  /** Things the original server would not have accepted. */
  readonly violations: string[] = [];
  #server: Server;
  #sockets = new Set<Socket>();
  #conns = 0;
  port = 0;

  private constructor(
    private readonly upstream: string,
    private readonly maxMsize: number,
  ) {
    this.#server = createServer((s) => this.#accept(s));
  }

  /** Listens on 127.0.0.1 (port 0) and forwards to the Unix socket `upstream`. */
  static async start(upstream: string, maxMsize: number): Promise<OriginalWire> {
    const w = new OriginalWire(upstream, maxMsize);
    await new Promise<void>((resolve) => w.#server.listen(0, "127.0.0.1", resolve));
    const a = w.#server.address();
    w.port = typeof a === "object" && a ? a.port : 0;
    return w;
  }

  #accept(client: Socket): void {
    const conn = this.#conns++;
    const server = connect(this.upstream);
    this.#sockets.add(client);
    this.#sockets.add(server);
    let msize = this.maxMsize;
    const c2s = new Frames();
    const s2c = new Frames();
    const end = () => {
      client.destroy();
      server.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(server);
    };
    client.on("error", end);
    server.on("error", end);
    client.on("close", end);
    server.on("close", end);
    client.on("data", (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = c2s.push(chunk);
      } catch (err) {
        this.violations.push(`conn ${conn}: ${(err as Error).message}`);
        end();
        return;
      }
      for (const f of frames) {
        const type = f[4]!;
        const rec: WireRecord = { conn, dir: "c2s", type, size: f.length };
        if (type === Tread || type === 118) rec.count = f.readUInt32LE(19);
        this.records.push(rec);
        if (type === Tversion) {
          // The original answers min(client msize, its own).
          msize = Math.min(f.readUInt32LE(7), this.maxMsize);
        } else if (f.length > msize) {
          this.violations.push(`conn ${conn}: ${type} frame of ${f.length} bytes exceeds msize ${msize}`);
          end();
          return;
        }
        if (type === Tread && rec.count! > msize - IOHDRSZ) {
          this.violations.push(`conn ${conn}: Tread count ${rec.count} exceeds msize ${msize} - 24`);
          client.write(rerror(f.readUInt16LE(5), "i/o count too large", 5));
          continue;
        }
        server.write(f);
      }
    });
    server.on("data", (chunk: Buffer) => {
      for (const f0 of s2c.push(chunk)) {
        const f = Buffer.from(f0);
        const type = f[4]!;
        const rec: WireRecord = { conn, dir: "s2c", type, size: f.length };
        if (type === Rversion) msize = f.readUInt32LE(7);
        if (type === Ropen || type === Rcreate) {
          // size[4] type[1] tag[2] qid[13] iounit[4]: the original always says 0.
          rec.count = f.readUInt32LE(20);
          f.writeUInt32LE(0, 20);
        }
        this.records.push(rec);
        client.write(f);
      }
    });
  }

  /** The largest Tread count and Twrite frame a client sent, for reports. */
  largest(): { read: number; frame: number } {
    let read = 0;
    let frame = 0;
    for (const r of this.records) {
      if (r.dir !== "c2s") continue;
      if (r.type === Tread) read = Math.max(read, r.count ?? 0);
      frame = Math.max(frame, r.size);
    }
    return { read, frame };
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
