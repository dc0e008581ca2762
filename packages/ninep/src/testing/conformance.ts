// A protocol conformance suite any 9P server can run over a real socket: each check starts the
// server under test, drives it with exact frames (RawClient) and verifies one rule of spec/9p.md.

import { MsgType, NOFID, NOTAG, ORCLOSE, ORDWR, OREAD, OTRUNC, OWRITE, QTDIR } from "../codec/constants.js";
import { decodeStats, dontTouchStat } from "../codec/stat.js";
import type { Message, Qid, Stat } from "../codec/types.js";
import type { Address } from "../transport/address.js";
import { RawClient, type Request } from "./raw.js";

/** The server under test and what it serves. */
export interface ConformanceTarget {
  /** Starts a fresh server (called once per check) and returns where it listens. */
  start(): Promise<{ address: string | Address; stop(): Promise<void> }>;
  /** Version string to negotiate: "9P2000" (default) or "9P2000.u". */
  version?: "9P2000" | "9P2000.u";
  uname?: string;
  aname?: string;
  /** Path (names from the root) of a readable regular file. */
  file: string[];
  /**
   * Path of a directory with at least two members (default: the root). One check sends Tremove
   * for it (expecting the server to refuse because it is not empty): do not point it at data you
   * cannot lose on a server that removes non-empty directories.
   */
  dir?: string[];
  /**
   * Path of a file whose first read blocks until flushed (xcpufs `wait`, a FIFO…). Enables the
   * flush, duplicate-tag and version-reset-with-outstanding-request checks.
   */
  blockingFile?: string[];
  /** A name that does not exist in the root (default "no-such-file.conformance"). */
  missing?: string;
}

/** One named check. `run` rejects with a descriptive Error when the server breaks the rule. */
export interface Check {
  readonly name: string;
  /** Spec rules covered, e.g. ["W6"]. */
  readonly rules: readonly string[];
  run(): Promise<void>;
}

/** Result of runConformance. */
export interface CheckResult {
  name: string;
  rules: readonly string[];
  ok: boolean;
  error?: string;
}

class CheckFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConformanceFailure";
  }
}

function fail(msg: string): never {
  throw new CheckFailure(msg);
}

function show(m: Message | undefined): string {
  return JSON.stringify(m, (_k, v) =>
    typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array ? `<${v.length} bytes>` : v,
  );
}

function isError(m: Message): boolean {
  return m.type === MsgType.Rerror || m.type === MsgType.Rlerror;
}

function expectError(m: Message, what: string): void {
  if (!isError(m)) fail(`${what}: expected an error reply, got ${show(m)}`);
}

function expectType<T extends number>(m: Message, type: T, what: string): Extract<Message, { type: T }> {
  if (m.type !== type) fail(`${what}: expected message type ${type}, got ${show(m)}`);
  return m as Extract<Message, { type: T }>;
}

function sameQid(a: Qid, b: Qid): boolean {
  return a.type === b.type && a.path === b.path;
}

const MSIZE = 8192 + 24;

/**
 * The checks, for use with any test runner:
 *
 * @example
 * import { describe, it } from "vitest";
 * import { conformanceChecks } from "@clustermatic/ninep/testing";
 * describe("my server conforms", () => {
 *   for (const c of conformanceChecks(target)) it(c.name, () => c.run());
 * });
 */
export function conformanceChecks(target: ConformanceTarget): Check[] {
  const version = target.version ?? "9P2000";
  const uname = target.uname ?? "glenda";
  const aname = target.aname ?? "";
  const dirPath = target.dir ?? [];
  const missing = target.missing ?? "no-such-file.conformance";

  /** Runs `body` against a fresh server with one negotiated, attached connection (root fid 0). */
  async function session(
    body: (c: RawClient, extra: () => Promise<RawClient>) => Promise<void>,
  ): Promise<void> {
    const srv = await target.start();
    const clients: RawClient[] = [];
    const open = async () => {
      const c = await RawClient.connect(srv.address);
      clients.push(c);
      return c;
    };
    try {
      const c = await open();
      const v = await c.version(MSIZE, version);
      if (v.version !== version) fail(`Tversion ${version}: server answered ${v.version}`);
      const a = await c.call({ type: MsgType.Tattach, fid: 0, afid: NOFID, uname, aname });
      expectType(a, MsgType.Rattach, "Tattach");
      await body(c, open);
    } finally {
      for (const c of clients) c.destroy();
      await srv.stop();
    }
  }

  /** Runs `body` against a fresh server with one connection, before any Tversion. */
  async function bare(body: (c: RawClient) => Promise<void>): Promise<void> {
    const srv = await target.start();
    const c = await RawClient.connect(srv.address);
    try {
      await body(c);
    } finally {
      c.destroy();
      await srv.stop();
    }
  }

  /** A fresh connection: negotiated and attached (root fid 0). */
  async function attached(open: () => Promise<RawClient>): Promise<RawClient> {
    const c = await open();
    await c.version(MSIZE, version);
    expectType(
      await c.call({ type: MsgType.Tattach, fid: 0, afid: NOFID, uname, aname }),
      MsgType.Rattach,
      "Tattach",
    );
    return c;
  }

  async function walkTo(c: RawClient, newfid: number, path: string[]): Promise<Qid[]> {
    const r = await c.walk(0, newfid, ...path);
    const w = expectType(r, MsgType.Rwalk, `walk to ${path.join("/") || "/"}`);
    if (w.wqid.length !== path.length) fail(`walk to ${path.join("/")}: partial walk ${show(w)}`);
    return w.wqid;
  }

  /** Opens the blocking file as fid 1 and leaves a Tread on it pending; returns that read's tag. */
  async function startBlockedRead(c: RawClient, path: string[]): Promise<number> {
    await walkTo(c, 1, path);
    expectType(
      await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }),
      MsgType.Ropen,
      "open blocking file",
    );
    const tag = c.tag();
    c.send({ type: MsgType.Tread, tag, fid: 1, offset: 0n, count: 100 });
    await c.stat(0); // the connection keeps serving other tags while the read is blocked
    return tag;
  }

  async function readAllDir(
    c: RawClient,
    fid: number,
    count: number,
  ): Promise<{ stats: Stat[]; chunks: number }> {
    const stats: Stat[] = [];
    let offset = 0n;
    let chunks = 0;
    for (let i = 0; i < 10_000; i++) {
      const r = await c.call({ type: MsgType.Tread, fid, offset, count });
      const rr = expectType(r, MsgType.Rread, `directory read at offset ${offset} count ${count}`);
      if (rr.data.length === 0) return { stats, chunks };
      if (rr.data.length > count) fail(`directory read returned ${rr.data.length} bytes for count ${count}`);
      let parsed: Stat[];
      try {
        parsed = decodeStats(rr.data, c.dialect);
      } catch (e) {
        fail(`directory read (count ${count}) returned a split or malformed entry: ${(e as Error).message}`);
      }
      stats.push(...parsed);
      offset += BigInt(rr.data.length);
      chunks++;
    }
    fail("directory read never reached the end");
  }

  const checks: Check[] = [
    {
      name: "version: the reply msize is at most the client's offer",
      rules: ["V2"],
      run: () =>
        bare(async (c) => {
          const v = await c.version(300, version);
          if (v.msize > 300) fail(`offered msize 300, server answered ${v.msize}`);
          const big = await c.version(0xffffffff, version);
          if (big.msize > 0xffffffff || big.msize <= 24) fail(`offered 2^32-1, server answered ${big.msize}`);
        }),
    },
    {
      name: "version: an unknown protocol gets Rversion 'unknown' and the connection stays usable",
      rules: ["V3"],
      run: () =>
        bare(async (c) => {
          c.send({ type: MsgType.Tversion, tag: NOTAG, msize: MSIZE, version: "XYZ-not-9P" });
          const r = await c.reply(NOTAG);
          const v = expectType(r, MsgType.Rversion, "Tversion XYZ-not-9P");
          if (v.version !== "unknown") fail(`expected version "unknown", got "${v.version}"`);
          const again = await c.version(MSIZE, version);
          if (again.version !== version) fail(`second Tversion answered ${again.version}`);
        }),
    },
    {
      name: "version: an unknown suffix falls back to 9P2000",
      rules: ["V4"],
      run: () =>
        bare(async (c) => {
          const v = await c.version(MSIZE, "9P2000.conformance");
          if (v.version !== "9P2000") fail(`"9P2000.conformance" answered "${v.version}", expected "9P2000"`);
        }),
    },
    {
      name: "version: an msize too small for any read is refused",
      rules: ["V2"],
      run: () =>
        bare(async (c) => {
          c.send({ type: MsgType.Tversion, tag: NOTAG, msize: 16, version });
          const r = await c.reply(NOTAG).catch(() => undefined);
          if (r && r.type === MsgType.Rversion && r.version !== "unknown" && r.msize <= 24) {
            fail(`msize 16 accepted as ${r.msize}`);
          }
        }),
    },
    {
      name: "attach: Rattach names a directory; reusing the fid is refused and the first attach survives",
      rules: ["A1", "A2", "F2"],
      run: () =>
        session(async (c) => {
          const again = await c.call({ type: MsgType.Tattach, fid: 0, afid: NOFID, uname, aname });
          expectError(again, "second Tattach on fid 0");
          const s = await c.stat(0);
          if ((s.qid.type & QTDIR) === 0) fail(`root qid is not a directory: ${show(s as never)}`);
        }),
    },
    {
      name: "walk: nwname 0 clones, and newfid == fid is a no-op",
      rules: ["W1", "W3"],
      run: () =>
        session(async (c) => {
          const r = expectType(await c.walk(0, 1), MsgType.Rwalk, "clone");
          if (r.wqid.length !== 0) fail(`clone returned qids ${show(r)}`);
          const s0 = await c.stat(0);
          const s1 = await c.stat(1);
          if (!sameQid(s0.qid, s1.qid)) fail("clone does not name the same file");
          expectType(await c.walk(0, 0), MsgType.Rwalk, "walk fid 0 newfid 0");
          expectType(await c.walk(0, 0, ...target.file), MsgType.Rwalk, "walk moving fid 0");
          const moved = await c.stat(0);
          if ((moved.qid.type & QTDIR) !== 0) fail("fid did not move with newfid == fid");
        }),
    },
    {
      name: "walk: returned qids match stat",
      rules: ["W8"],
      run: () =>
        session(async (c) => {
          const qids = await walkTo(c, 1, target.file);
          const s = await c.stat(1);
          if (!sameQid(qids[qids.length - 1]!, s.qid))
            fail(`walk qid ${show(qids.at(-1) as never)} vs stat ${show(s as never)}`);
        }),
    },
    {
      name: "walk: a failing first element is an error and newfid is not created",
      rules: ["W6", "F4"],
      run: () =>
        session(async (c) => {
          expectError(await c.walk(0, 1, missing), `walk to ${missing}`);
          expectError(await c.call({ type: MsgType.Tclunk, fid: 1 }), "clunk of the newfid of a failed walk");
        }),
    },
    {
      name: "walk: a partial walk returns the qids that worked and creates no newfid",
      rules: ["W6"],
      run: () =>
        session(async (c) => {
          const r = expectType(
            await c.walk(0, 1, ...target.file, "beyond"),
            MsgType.Rwalk,
            "walk past a file",
          );
          if (r.wqid.length !== target.file.length)
            fail(`expected ${target.file.length} qids, got ${show(r)}`);
          expectError(
            await c.call({ type: MsgType.Tclunk, fid: 1 }),
            "clunk of the newfid of a partial walk",
          );
          // Same with newfid == fid: the fid must not move.
          expectType(await c.walk(0, 2), MsgType.Rwalk, "clone");
          expectType(
            await c.walk(2, 2, ...target.file, "beyond"),
            MsgType.Rwalk,
            "partial walk of fid onto itself",
          );
          const s = await c.stat(2);
          if ((s.qid.type & QTDIR) === 0) fail("fid moved on a partial walk");
        }),
    },
    {
      name: "walk: '..' at the root is the root; 16 names work; 17 are refused",
      rules: ["W5", "W7"],
      run: () =>
        session(async (c) => {
          const root = await c.stat(0);
          const up = expectType(await c.walk(0, 1, ".."), MsgType.Rwalk, "walk ..");
          if (up.wqid.length !== 1 || !sameQid(up.wqid[0]!, root.qid))
            fail(`.. from the root gave ${show(up)}`);
          const sixteen = expectType(
            await c.walk(0, 2, ...Array(16).fill("..")),
            MsgType.Rwalk,
            "walk 16 × ..",
          );
          if (sixteen.wqid.length !== 16) fail(`16 names gave ${sixteen.wqid.length} qids`);
          if (!sixteen.wqid.every((q) => sameQid(q, root.qid))) fail(".. escaped the root");
          const r17 = await c.walk(0, 3, ...Array(17).fill("..")).catch(() => undefined);
          if (r17 && !isError(r17)) fail(`17 names accepted: ${show(r17)}`);
        }),
    },
    {
      name: "walk: an open fid cannot be walked; an in-use newfid is refused and left intact",
      rules: ["W2", "F2"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, target.file);
          expectType(await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }), MsgType.Ropen, "open file");
          expectError(await c.walk(1, 2), "clone of an open fid");
          expectType(await c.walk(0, 3), MsgType.Rwalk, "clone root");
          expectError(await c.walk(0, 3, ...target.file), "walk onto an in-use newfid");
          const s = await c.stat(3);
          if ((s.qid.type & QTDIR) === 0) fail("the in-use newfid was changed by a refused walk");
          expectType(
            await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 1 }),
            MsgType.Rread,
            "read",
          );
        }),
    },
    {
      name: "open: a directory opens only for reading (no write, truncate or remove-on-close)",
      rules: ["O2"],
      run: () =>
        session(async (c) => {
          for (const mode of [OWRITE, ORDWR, OREAD | OTRUNC, OREAD | ORCLOSE]) {
            await walkTo(c, 1, dirPath);
            expectError(
              await c.call({ type: MsgType.Topen, fid: 1, mode }),
              `open directory with mode ${mode}`,
            );
            expectType(await c.call({ type: MsgType.Tclunk, fid: 1 }), MsgType.Rclunk, "clunk");
          }
          await walkTo(c, 1, dirPath);
          expectType(
            await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }),
            MsgType.Ropen,
            "open dir OREAD",
          );
        }),
    },
    {
      name: "open: a fid opens once; iounit fits in msize",
      rules: ["O1", "O5"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, target.file);
          const o = expectType(
            await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }),
            MsgType.Ropen,
            "open",
          );
          if (o.iounit > MSIZE - 24) fail(`iounit ${o.iounit} > msize - 24`);
          expectError(await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }), "second open");
        }),
    },
    {
      name: "read: needs an open fid; counts are clamped; past the end gives 0 bytes",
      rules: ["R1", "R2", "R4", "V7"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, target.file);
          expectError(
            await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 10 }),
            "read of an unopened fid",
          );
          expectType(await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }), MsgType.Ropen, "open");
          const big = await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 0xffffffff });
          if (big.type === MsgType.Rread && big.data.length > MSIZE - 24)
            fail(`Rread of ${big.data.length} bytes`);
          const far = await c.call({ type: MsgType.Tread, fid: 1, offset: 1n << 40n, count: 100 });
          const r = expectType(far, MsgType.Rread, "read at offset 2^40");
          if (r.data.length !== 0) fail(`read past the end returned ${r.data.length} bytes`);
          const huge = await c.call({ type: MsgType.Tread, fid: 1, offset: (1n << 63n) + 5n, count: 100 });
          if (huge.type === MsgType.Rread && huge.data.length !== 0) fail("read at 2^63 returned data");
        }),
    },
    {
      name: "directory reads: whole entries, each member exactly once, at every small count",
      rules: ["D1", "D3", "D4"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, dirPath);
          expectType(await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }), MsgType.Ropen, "open dir");
          const all = await readAllDir(c, 1, MSIZE - 24);
          if (all.stats.length < 2) fail(`directory has ${all.stats.length} members; the check needs 2`);
          const names = all.stats.map((s) => s.name);
          if (new Set(names).size !== names.length) fail(`duplicate names in listing: ${names.join(",")}`);
          if (names.includes(".") || names.includes("..")) fail("listing includes . or ..");
          const sizes = all.stats.map(
            (s) =>
              2 +
              47 +
              Buffer.byteLength(s.name) +
              Buffer.byteLength(s.uid) +
              Buffer.byteLength(s.gid) +
              Buffer.byteLength(s.muid) +
              (c.dialect === "9P2000.u" ? 14 + Buffer.byteLength(s.extension ?? "") : 0),
          );
          const biggest = Math.max(...sizes);
          for (const count of [biggest, biggest + 1, biggest + 37, 2 * biggest - 1]) {
            const part = await readAllDir(c, 1, count);
            const got = part.stats.map((s) => s.name);
            if (got.join("\0") !== names.join("\0")) {
              fail(`count ${count}: got [${got.join(", ")}], expected [${names.join(", ")}]`);
            }
          }
          const tooSmall = await c.call({
            type: MsgType.Tread,
            fid: 1,
            offset: 0n,
            count: Math.min(...sizes) - 1,
          });
          if (tooSmall.type === MsgType.Rread && tooSmall.data.length > 0)
            fail("a read smaller than any entry returned data");
          // The entry that did not fit must come first in the next read.
          const first = await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: biggest });
          const f = expectType(first, MsgType.Rread, "rewind");
          if (decodeStats(f.data, c.dialect)[0]?.name !== names[0])
            fail("the first entry was skipped after a short read");
        }),
    },
    {
      name: "directory reads: an offset that is neither 0 nor the previous end is refused or gives whole entries",
      rules: ["D2"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, dirPath);
          expectType(await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }), MsgType.Ropen, "open dir");
          expectType(
            await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 200 }),
            MsgType.Rread,
            "first read",
          );
          const r = await c.call({ type: MsgType.Tread, fid: 1, offset: 7n, count: 4096 });
          if (r.type === MsgType.Rread && r.data.length > 0) {
            try {
              decodeStats(r.data, c.dialect);
            } catch {
              fail("read at a bad directory offset returned a partial entry");
            }
          } else if (!isError(r) && r.type !== MsgType.Rread) fail(`unexpected ${show(r)}`);
        }),
    },
    {
      name: "directory reads: entries agree with stat of each member",
      rules: ["D5", "W8"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, dirPath);
          expectType(await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD }), MsgType.Ropen, "open dir");
          const { stats } = await readAllDir(c, 1, MSIZE - 24);
          let fid = 10;
          for (const e of stats.slice(0, 8)) {
            const w = expectType(
              await c.walk(0, fid, ...dirPath, e.name),
              MsgType.Rwalk,
              `walk to ${e.name}`,
            );
            const s = await c.stat(fid);
            if (!sameQid(s.qid, e.qid) || !sameQid(w.wqid.at(-1)!, e.qid))
              fail(`${e.name}: entry qid differs from stat/walk`);
            if (s.mode !== e.mode || s.name !== e.name) fail(`${e.name}: entry mode/name differ from stat`);
            if ((s.qid.type & 0xff) !== s.mode >>> 24) fail(`${e.name}: qid type disagrees with mode`);
            fid++;
          }
        }),
    },
    {
      name: "stat: the root is named '/', its qid type echoes its mode",
      rules: ["S1"],
      run: () =>
        session(async (c) => {
          const s = await c.stat(0);
          if (s.name !== "/") fail(`root stat name is "${s.name}"`);
          if (s.qid.type !== s.mode >>> 24) fail("qid type disagrees with mode");
          if (s.length !== 0n) fail("directory length is not 0");
        }),
    },
    {
      name: "wstat: a stat of only don't-touch values succeeds and changes nothing",
      rules: ["S3"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, target.file);
          const before = await c.stat(1);
          const dt = dontTouchStat();
          expectType(
            await c.call({ type: MsgType.Twstat, fid: 1, stat: dt }),
            MsgType.Rwstat,
            "all don't-touch wstat",
          );
          const after = await c.stat(1);
          if (after.name !== before.name || after.mode !== before.mode)
            fail("don't-touch wstat changed the file");
        }),
    },
    {
      name: "clunk: the fid is freed and its number reusable; unknown fids are refused",
      rules: ["C1", "F3", "F4"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, target.file);
          expectType(await c.call({ type: MsgType.Tclunk, fid: 1 }), MsgType.Rclunk, "clunk");
          expectError(await c.call({ type: MsgType.Tclunk, fid: 1 }), "second clunk");
          await walkTo(c, 1, target.file);
          const reqs: Request[] = [
            { type: MsgType.Tstat, fid: 4242 },
            { type: MsgType.Topen, fid: 4242, mode: OREAD },
            { type: MsgType.Tread, fid: 4242, offset: 0n, count: 1 },
            { type: MsgType.Twrite, fid: 4242, offset: 0n, data: new Uint8Array(1) },
            { type: MsgType.Twalk, fid: 4242, newfid: 4243, wname: [] },
            { type: MsgType.Tclunk, fid: 4242 },
            { type: MsgType.Tremove, fid: 4242 },
          ];
          for (const req of reqs) {
            expectError(await c.call(req), `${req.type} on an unknown fid`);
          }
          await c.stat(1);
        }),
    },
    {
      name: "remove: the fid is clunked even when the removal fails",
      rules: ["C2"],
      run: () =>
        session(async (c) => {
          // The target directory is not empty, so a Unix-like or Plan 9 server refuses to remove it.
          await walkTo(c, 1, dirPath);
          await c.call({ type: MsgType.Tremove, fid: 1 });
          expectError(await c.call({ type: MsgType.Tstat, fid: 1 }), "stat after Tremove");
        }),
    },
    {
      name: "flush: flushing a tag that is not pending gets Rflush",
      rules: ["FL1", "FL2"],
      run: () =>
        session(async (c) => {
          expectType(
            await c.call({ type: MsgType.Tflush, oldtag: 4321 }),
            MsgType.Rflush,
            "Tflush of an idle tag",
          );
        }),
    },
    {
      name: "pipelining: 32 requests sent at once are all answered",
      rules: ["T2", "T4"],
      run: () =>
        session(async (c) => {
          const tags: number[] = [];
          for (let i = 0; i < 32; i++) {
            const tag = c.tag();
            tags.push(tag);
            c.send({ type: MsgType.Tstat, tag, fid: 0 });
          }
          for (const t of tags) expectType(await c.reply(t), MsgType.Rstat, `pipelined Tstat tag ${t}`);
        }),
    },
    {
      name: "version reset: a second Tversion clunks every fid of the session",
      rules: ["V6", "F3"],
      run: () =>
        session(async (c) => {
          await walkTo(c, 1, target.file);
          await c.version(MSIZE, version);
          expectError(
            await c.call({ type: MsgType.Tstat, fid: 1 }),
            "stat of a fid from the previous session",
          );
          expectType(
            await c.call({ type: MsgType.Tattach, fid: 1, afid: NOFID, uname, aname }),
            MsgType.Rattach,
            "attach reusing a fid number after reset",
          );
        }),
    },
    {
      name: "malformed input: a bad frame affects only its own connection",
      rules: ["3.5"],
      run: () =>
        session(async (c, open) => {
          const bad = await attached(open);
          bad.sendRaw(Buffer.from([3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])); // size 3 < 7
          await bad.waitClosed(5000).catch(() => fail("a frame with size 3 did not close the connection"));
          const odd = await attached(open);
          odd.sendRaw(Buffer.from([7, 0, 0, 0, 250, 9, 0])); // unknown type 250, tag 9
          const r = await odd.reply(9, 3000).catch(() => undefined);
          if (r && !isError(r)) fail(`unknown message type answered with ${show(r)}`);
          if (!r && !odd.closed)
            await odd.waitClosed(2000).catch(() => fail("unknown type: neither error nor close"));
          await c.stat(0);
        }),
    },
  ];

  if (target.blockingFile) {
    const blocking = target.blockingFile;
    checks.push(
      {
        name: "flush: a blocked read is answered by Rflush and nothing follows for its tag",
        rules: ["FL1", "FL3", "R5", "T2"],
        run: () =>
          session(async (c) => {
            const tag = await startBlockedRead(c, blocking);
            const ftag = c.tag();
            c.send({ type: MsgType.Tflush, tag: ftag, oldtag: tag });
            const rf = await c.reply(ftag, 5000);
            expectType(rf, MsgType.Rflush, "Tflush of the blocked read");
            const i = c.log.indexOf(rf);
            const late = c.log.slice(i + 1).find((m) => m.tag === tag);
            await c.stat(0);
            const later = c.log.slice(i + 1).find((m) => m.tag === tag);
            if (late || later)
              fail(`a reply for the flushed tag followed the Rflush: ${show(late ?? later)}`);
          }),
      },
      {
        name: "duplicate tag: a second request with an in-flight tag is refused; the first is unaffected",
        rules: ["T1", "T3"],
        run: () =>
          session(async (c) => {
            const tag = await startBlockedRead(c, blocking);
            c.send({ type: MsgType.Tstat, tag, fid: 0 });
            const dup = await c.reply(tag, 5000);
            expectError(dup, "request reusing an in-flight tag");
            const ftag = c.tag();
            c.send({ type: MsgType.Tflush, tag: ftag, oldtag: tag });
            expectType(await c.reply(ftag), MsgType.Rflush, "flush of the original request");
          }),
      },
      {
        name: "version reset: blocked requests are dropped without replies and do not delay Rversion",
        rules: ["V6"],
        run: () =>
          session(async (c) => {
            const tag = await startBlockedRead(c, blocking);
            await c.version(MSIZE, version);
            const i = c.log.findIndex((m) => m.type === MsgType.Rversion);
            expectType(
              await c.call({ type: MsgType.Tattach, fid: 0, afid: NOFID, uname, aname }),
              MsgType.Rattach,
              "attach",
            );
            const after = c.log.slice(i + 1).find((m) => m.tag === tag && m.type !== MsgType.Rattach);
            if (after) fail(`reply for an aborted request after Rversion: ${show(after)}`);
          }),
      },
    );
  }
  return checks;
}

/** Runs every check and reports, without needing a test runner. */
export async function runConformance(target: ConformanceTarget): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const c of conformanceChecks(target)) {
    try {
      await c.run();
      out.push({ name: c.name, rules: c.rules, ok: true });
    } catch (e) {
      out.push({ name: c.name, rules: c.rules, ok: false, error: (e as Error).message });
    }
  }
  return out;
}
