// Fid numbers and tags always come back: calls that fail before their request is sent give back
// the fid number they took, and calls waiting for a free tag (all 65535 in flight) end with their
// abort, their time limit or the connection, instead of waiting for ever.

import { getEventListeners } from "node:events";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { Client, memoryPair } from "../../src/client/index.js";
import { Dialect, decode, encode, Framer, MsgType, NOTAG } from "../../src/codec/index.js";
import type * as T from "../../src/codec/types.js";
import { ClosedError, ConnectionError, TimeoutError } from "../../src/errors.js";
import { Server, SynthDir, staticFile, treeBackend } from "../../src/server/index.js";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A peer on a memory pair that agrees to 9P2000.u, answers Tattach, and sees (never answers) the rest. */
function silentPeer(): { near: Duplex; far: Duplex; seen: () => number } {
  const [near, far] = memoryPair();
  const framer = new Framer({ maxSize: 1 << 20 });
  let seen = 0;
  far.on("data", (chunk: Buffer) => {
    for (const frame of framer.push(chunk)) {
      const m = decode(frame, Dialect.P2000u) as T.TMessage;
      const reply = (r: T.RMessage) => far.write(encode(r, Dialect.P2000u));
      if (m.type === MsgType.Tversion)
        reply({ type: MsgType.Rversion, tag: m.tag, msize: 8192, version: "9P2000.u" });
      else if (m.type === MsgType.Tattach)
        reply({ type: MsgType.Rattach, tag: m.tag, qid: { type: 0x80, version: 0, path: 1n } });
      else seen++;
    }
  });
  far.on("error", () => {});
  return { near, far, seen: () => seen };
}

/** Puts every one of the 65535 tags in flight on `c` (Tclunks the peer never answers). */
async function fillTags(c: Client, seen: () => number): Promise<Promise<unknown>[]> {
  const calls: Promise<unknown>[] = [];
  for (let i = 0; i < NOTAG; i++) calls.push(c.rpc({ type: MsgType.Tclunk, fid: 1000 + i }).catch((e) => e));
  while (seen() < NOTAG) await new Promise((r) => setTimeout(r, 5));
  expect(c.inFlight).toBe(NOTAG);
  return calls;
}

describe("fid numbers of calls that were never sent", () => {
  it("come back after an already-aborted walk, walkThen, attach or auth, and on a closed client", async () => {
    const root = new SynthDir("/", { mode: 0o555 });
    root.add(staticFile("hello", "hello\n"));
    const server = new Server({ backend: treeBackend(root) });
    const [near, far] = memoryPair();
    server.serveDuplex(far, "memory");
    cleanup.push(() => server.close(0));
    const c = await Client.connect(near, { version: Dialect.P2000u });
    cleanup.push(() => c.destroy());
    const top = await c.attach("glenda", "");
    expect(c.fids.size).toBe(1);
    const aborted = AbortSignal.abort();
    for (let i = 0; i < 5; i++) {
      await expect(top.walk("hello", { signal: aborted })).rejects.toMatchObject({ name: "AbortError" });
      await expect(
        top.walk("a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r", { signal: aborted }),
      ).rejects.toMatchObject({
        name: "AbortError",
      });
      await expect(
        top.walkThen("hello", (f) => f.read(0, 10).catch(() => Buffer.alloc(0)), { signal: aborted }),
      ).rejects.toMatchObject({ name: "AbortError" });
      await expect(c.attach("glenda", "", { signal: aborted })).rejects.toMatchObject({ name: "AbortError" });
      await expect(c.auth("glenda", "", { signal: aborted })).rejects.toMatchObject({ name: "AbortError" });
    }
    expect(c.fids.size).toBe(1);
    // The numbers given back are handed out again (the pool does not just forget them).
    const f = await top.walk("hello");
    expect(f.num).toBeLessThan(2);
    await f.clunk();
    expect(c.fids.size).toBe(1);
    c.destroy();
    await expect(top.walk("hello")).rejects.toBeInstanceOf(ClosedError);
    await expect(c.attach("glenda", "")).rejects.toBeInstanceOf(ClosedError);
    expect(c.fids.size).toBe(1);
  }, 120_000); // 65535 calls in flight: seconds of work on a loaded machine
});

describe("a call waiting for a free tag", () => {
  it("ends with its abort signal, with its time limit, and with ConnectionError when the connection is lost", async () => {
    const { near, far, seen } = silentPeer();
    const c = await Client.connect(near, { version: Dialect.P2000u });
    cleanup.push(() => c.destroy());
    const top = await c.attach("glenda", "");
    const calls = await fillTags(c, seen);
    const ac = new AbortController();
    const aborted = top.walk("x", { signal: ac.signal }).catch((e) => e);
    const timed = top.walk("y", { timeoutMs: 50 }).catch((e) => e);
    ac.abort();
    expect(await aborted).toMatchObject({ name: "AbortError" });
    expect(await timed).toBeInstanceOf(TimeoutError);
    // Neither was sent, and both gave their fid number back.
    expect(seen()).toBe(NOTAG);
    expect(c.fids.size).toBe(1);
    const waiting = [top.walk("x").catch((e) => e), c.rpc({ type: MsgType.Tclunk, fid: 7 }).catch((e) => e)];
    far.destroy();
    for (const e of await Promise.all(waiting)) expect(e).toBeInstanceOf(ConnectionError);
    for (const e of await Promise.all(calls)) expect(e).toBeInstanceOf(ConnectionError);
    expect(c.fids.size).toBe(1);
  }, 120_000); // 65535 calls in flight: seconds of work on a loaded machine
});

describe("many calls under one abort signal", () => {
  it("share one listener on it: no leak warning, and every call aborts", async () => {
    const { near, seen } = silentPeer();
    const c = await Client.connect(near, { version: Dialect.P2000u });
    cleanup.push(() => c.destroy());
    await c.attach("glenda", "");
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    cleanup.push(() => process.off("warning", onWarning));
    const ac = new AbortController();
    const calls = Array.from({ length: 32 }, (_, i) =>
      c.rpc({ type: MsgType.Tclunk, fid: 100 + i }, { signal: ac.signal }).catch((e) => e),
    );
    while (seen() < 32) await new Promise((r) => setTimeout(r, 2));
    expect(getEventListeners(ac.signal, "abort").length).toBe(1);
    ac.abort();
    for (const e of await Promise.all(calls)) expect(e).toMatchObject({ name: "AbortError" });
    expect(getEventListeners(ac.signal, "abort").length).toBe(0);
    // A call that ends normally takes its listener away too.
    const other = new AbortController();
    const attached = c.attach("glenda", "", { signal: other.signal });
    expect(getEventListeners(other.signal, "abort").length).toBe(1);
    await attached;
    expect(getEventListeners(other.signal, "abort").length).toBe(0);
    await new Promise((r) => setTimeout(r, 10)); // warnings are emitted on a later tick
    expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
  });
});
