// What a flushed call leaves behind on the server. A server that runs requests concurrently (diod)
// may still be running a call the client has given up on until it answers the Tflush, and may
// even finish a flushed walk and drop its reply. The client must not clunk a fid under such a
// call (the number would come back while the server still holds the fid), and must not reuse the
// newfid of a walk flushed without a reply before a Tclunk has told whether it exists.

import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { Client, Fsys, memoryPair } from "../../src/client/index.js";
import { Dialect, decode, encode, encodeDirents, Framer, MsgType, OREAD } from "../../src/codec/index.js";
import type * as T from "../../src/codec/types.js";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const DIR: T.Qid = { type: 0x80, version: 0, path: 1n };
const FILE: T.Qid = { type: 0, version: 0, path: 2n };

/**
 * A 9P2000.L peer on a memory pair. Tversion, Tattach, Twalk (of existing names), Tlopen and
 * Tclunk are answered at once unless `hold` says otherwise; held requests and every Tflush wait
 * for the test to answer them. `log` lists what arrived, in order.
 */
function peer(hold: (m: T.TMessage) => boolean, answer?: (m: T.TMessage) => T.RMessage | undefined) {
  const [near, far] = memoryPair();
  const framer = new Framer({ maxSize: 1 << 20 });
  const log: string[] = [];
  const held: T.TMessage[] = [];
  const reply = (r: T.RMessage) => far.write(encode(r, Dialect.P2000L));
  const describe = (m: T.TMessage): string => {
    switch (m.type) {
      case MsgType.Tclunk:
        return `Tclunk ${m.fid}`;
      case MsgType.Twalk:
        return `Twalk ${m.fid}->${m.newfid}`;
      case MsgType.Tflush:
        return `Tflush ${m.oldtag}`;
      default:
        return `type ${m.type}`;
    }
  };
  far.on("data", (chunk: Buffer) => {
    for (const frame of framer.push(chunk)) {
      const m = decode(frame, Dialect.P2000L) as T.TMessage;
      log.push(describe(m));
      if (m.type === MsgType.Tversion) {
        reply({ type: MsgType.Rversion, tag: m.tag, msize: Math.min(m.msize, 8192), version: "9P2000.L" });
      } else if (m.type === MsgType.Tflush || hold(m)) {
        held.push(m);
      } else if (answer?.(m)) {
        reply(answer(m)!);
      } else if (m.type === MsgType.Tattach) {
        reply({ type: MsgType.Rattach, tag: m.tag, qid: DIR });
      } else if (m.type === MsgType.Twalk) {
        reply({ type: MsgType.Rwalk, tag: m.tag, wqid: m.wname.map(() => FILE) });
      } else if (m.type === MsgType.Tlopen) {
        reply({ type: MsgType.Rlopen, tag: m.tag, qid: FILE, iounit: 0 });
      } else if (m.type === MsgType.Tclunk) {
        reply({ type: MsgType.Rclunk, tag: m.tag });
      } else {
        reply({ type: MsgType.Rlerror, tag: m.tag, ecode: 95 });
      }
    }
  });
  far.on("error", () => {});
  /** The held request of `type`, taken out of the held list. */
  const take = (type: number): T.TMessage => {
    const i = held.findIndex((m) => m.type === type);
    if (i < 0) throw new Error(`nothing of type ${type} held (log: ${log.join(", ")})`);
    return held.splice(i, 1)[0]!;
  };
  return { near: near as Duplex, log, held, reply, take };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A few turns of the event loop: time for anything the client would send now to arrive. */
const settle = () => new Promise((r) => setTimeout(r, 20));

describe("a fid with a flushed call still on the server", () => {
  it("is clunked only after the Rflush, and its number is reused only after the Rclunk", async () => {
    const p = peer((m) => m.type === MsgType.Tread);
    const c = await Client.connect(p.near, { version: Dialect.P2000L });
    cleanup.push(() => c.destroy());
    const root = await c.attach("glenda", "");
    const f = await root.walk("file");
    await f.lopen(0);
    const ac = new AbortController();
    const reading = f.read(0, 100, { signal: ac.signal });
    await until(() => p.held.length === 1, "the Tread at the peer");
    ac.abort();
    await expect(reading).rejects.toMatchObject({ name: "AbortError" });
    const read = p.take(MsgType.Tread);
    await until(() => p.log.includes(`Tflush ${read.tag}`), "the Tflush");
    const clunking = f.clunk();
    await settle();
    // The server may still be running the read: no Tclunk under it.
    expect(p.log).not.toContain(`Tclunk ${f.num}`);
    const flush = p.take(MsgType.Tflush);
    p.reply({ type: MsgType.Rflush, tag: flush.tag });
    await until(() => p.log.includes(`Tclunk ${f.num}`), "the Tclunk after the Rflush");
    expect(p.log.indexOf(`Tclunk ${f.num}`)).toBeGreaterThan(p.log.indexOf(`Tflush ${read.tag}`));
    await clunking;
    const again = await root.walk("file");
    expect(again.num).toBe(f.num);
  });

  it("waits for a flushed call that names it as a directory (renameat), and for every one of several", async () => {
    const p = peer((m) => m.type === MsgType.Trenameat || m.type === MsgType.Tread);
    const c = await Client.connect(p.near, { version: Dialect.P2000L });
    cleanup.push(() => c.destroy());
    const root = await c.attach("glenda", "");
    const dir = await root.walk("d");
    const other = await root.walk("e");
    const ac = new AbortController();
    const renaming = dir.renameat("a", other, "b", { signal: ac.signal });
    await until(() => p.held.length === 1, "the Trenameat");
    ac.abort();
    await expect(renaming).rejects.toMatchObject({ name: "AbortError" });
    await until(() => p.log.filter((l) => l.startsWith("Tflush")).length === 1, "the Tflush");
    p.take(MsgType.Trenameat);
    const clunks = [dir.clunk(), other.clunk()];
    await settle();
    expect(p.log.filter((l) => l.startsWith("Tclunk"))).toEqual([]);
    const flush = p.take(MsgType.Tflush);
    p.reply({ type: MsgType.Rflush, tag: flush.tag });
    await Promise.all(clunks);
    expect(p.log.filter((l) => l.startsWith("Tclunk")).sort()).toEqual(
      [`Tclunk ${dir.num}`, `Tclunk ${other.num}`].sort(),
    );
  });

  it("is clunked at once when the connection is lost meanwhile (nothing is left on the server)", async () => {
    const p = peer((m) => m.type === MsgType.Tread);
    const c = await Client.connect(p.near, { version: Dialect.P2000L });
    const root = await c.attach("glenda", "");
    const f = await root.walk("file");
    await f.lopen(0);
    const ac = new AbortController();
    const reading = f.read(0, 100, { signal: ac.signal });
    await until(() => p.held.length === 1, "the Tread");
    ac.abort();
    await expect(reading).rejects.toMatchObject({ name: "AbortError" });
    const clunking = f.clunk();
    await settle();
    c.destroy();
    await clunking; // settles: the wait ends with the connection
  });
});

describe("a walk flushed without a reply", () => {
  it("has its newfid clunked before the number is used again", async () => {
    const p = peer((m) => m.type === MsgType.Twalk && m.wname[0] === "slow");
    const c = await Client.connect(p.near, { version: Dialect.P2000L });
    cleanup.push(() => c.destroy());
    const root = await c.attach("glenda", "");
    const ac = new AbortController();
    const walking = root.walk("slow", { signal: ac.signal });
    await until(() => p.held.length === 1, "the Twalk");
    ac.abort();
    await expect(walking).rejects.toMatchObject({ name: "AbortError" });
    await until(() => p.held.length === 2, "the Tflush");
    // As diod may: the walk ran and made newfid, its reply was dropped, only Rflush comes.
    const walk = p.take(MsgType.Twalk) as T.Twalk;
    const flush = p.take(MsgType.Tflush);
    p.reply({ type: MsgType.Rflush, tag: flush.tag });
    await until(() => p.log.includes(`Tclunk ${walk.newfid}`), "a Tclunk of the walk's newfid");
    await until(() => c.inFlight === 0, "the Rclunk");
    // Now the number is known to be free on the server, and is handed out again.
    const f = await root.walk("file");
    expect(f.num).toBe(walk.newfid);
    expect(c.fids.size).toBe(2);
    await f.open(OREAD);
  });
});

describe("a 9P2000.L readdir whose entry lookups fail part way", () => {
  it("rejects only once the lookups from the directory still in flight have ended", async () => {
    const names = ["a", "b", "c"];
    const p = peer(
      (m) => m.type === MsgType.Twalk && (m.wname[0] === "b" || m.wname[0] === "c"),
      (m) => {
        if (m.type === MsgType.Treaddir) {
          const data =
            m.offset === 0n
              ? encodeDirents(names.map((name, i) => ({ qid: FILE, offset: BigInt(i + 1), type: 0, name })))
              : Buffer.alloc(0);
          return { type: MsgType.Rreaddir, tag: m.tag, data };
        }
        if (m.type === MsgType.Twalk && m.wname[0] === "a")
          return { type: MsgType.Rlerror, tag: m.tag, ecode: 2 };
        return undefined;
      },
    );
    const c = await Client.connect(p.near, { version: Dialect.P2000L });
    cleanup.push(() => c.destroy());
    const root = await c.attach("glenda", "");
    const dir = await root.walk([]);
    let settled = false;
    const listing = dir.readdir().finally(() => {
      settled = true;
    });
    listing.catch(() => {});
    await until(() => p.held.length === 2, "the lookups of b and c");
    await settle();
    // "a" failed, but the walks of b and c from this directory are still on the server.
    expect(settled).toBe(false);
    for (const m of p.held.splice(0)) p.reply({ type: MsgType.Rwalk, tag: m.tag, wqid: [FILE] });
    await expect(listing).rejects.toMatchObject({ errno: 2 });
    await dir.clunk();
    // The directory is clunked after every walk from it was answered.
    const lastWalk = Math.max(...p.log.map((l, i) => (l.startsWith(`Twalk ${dir.num}->`) ? i : -1)));
    expect(p.log.indexOf(`Tclunk ${dir.num}`)).toBeGreaterThan(lastWalk);
  });
});

describe("a pipelined writeFile whose first write fails", () => {
  it("throws, and clunks the file, only once the writes still in flight have ended", async () => {
    let writes = 0;
    const p = peer(
      (m) => m.type === MsgType.Twrite && writes++ > 0,
      (m) => (m.type === MsgType.Twrite ? { type: MsgType.Rlerror, tag: m.tag, ecode: 28 } : undefined),
    );
    const c = await Client.connect(p.near, { version: Dialect.P2000L, msize: 4096 + 24 });
    cleanup.push(() => c.destroy());
    const fs = new Fsys(c, await c.attach("glenda", ""));
    let settled = false;
    // Eight iounits, four in flight: the fifth waits for room, and finds the error instead.
    const writing = fs.writeFile("f", Buffer.alloc(8 * 4096, 1), { window: 4 }).finally(() => {
      settled = true;
    });
    writing.catch(() => {});
    await until(() => p.held.length === 3, "three writes held");
    await settle();
    // The first write failed (ENOSPC); three more are on the server.
    expect(settled).toBe(false);
    expect(p.log.some((l) => l.startsWith("Tclunk"))).toBe(false);
    for (const m of p.held.splice(0)) p.reply({ type: MsgType.Rwrite, tag: m.tag, count: 4096 });
    await expect(writing).rejects.toMatchObject({ errno: 28 });
    expect(p.log.filter((l) => l.startsWith("Tclunk")).length).toBe(1);
  });
});
