// Backends may answer Tgetattr and reads at once (an Attr / a byte count instead of a promise):
// the replies are the same as with promises, other thenables are still awaited, failures become
// error replies, and a context spread by the backend still carries the request's signal.

import { afterEach, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { Dialect, GETATTR, L_O, QTFILE } from "../../src/codec/constants.js";
import type { Qid } from "../../src/codec/types.js";
import { Errno, FsError, RemoteError } from "../../src/errors.js";
import type { Attr, Backend, Node, OpenFile, RequestContext } from "../../src/server/backend.js";
import { Server } from "../../src/server/index.js";
import { memoryPair } from "../../src/transport/index.js";

const QID: Qid = { type: QTFILE, version: 0, path: 7n };
const ATTR: Attr = {
  valid: GETATTR.BASIC,
  qid: QID,
  mode: 0o100644,
  uid: 1,
  gid: 2,
  nlink: 1n,
  rdev: 0n,
  size: 5n,
  blksize: 4096n,
  blocks: 1n,
  atime_sec: 1n,
  atime_nsec: 2n,
  mtime_sec: 3n,
  mtime_nsec: 4n,
  ctime_sec: 5n,
  ctime_nsec: 6n,
  btime_sec: 0n,
  btime_nsec: 0n,
  gen: 0n,
  data_version: 0n,
};

type Answer = "value" | "promise" | "thenable" | "reject" | "throw";

function backend(how: { getattr: Answer; read: Answer }, seen: { signals: AbortSignal[] }): Backend {
  const answer = <T>(a: Answer, v: T): T | Promise<T> => {
    switch (a) {
      case "value":
        return v;
      case "promise":
        return Promise.resolve(v);
      case "thenable":
        // A foreign promise-like object, not a native Promise.
        // biome-ignore lint/suspicious/noThenProperty: a foreign thenable is what this case tests
        return { then: (ok: (x: T) => void) => setTimeout(() => ok(v), 1) } as unknown as Promise<T>;
      case "reject":
        return Promise.reject(new FsError("no such file", Errno.ENOENT));
      case "throw":
        throw new FsError("permission denied", Errno.EACCES);
    }
  };
  const file: OpenFile = {
    readInto: (offset: bigint, buf: Buffer, ctx: RequestContext) => {
      // A backend that passes on a copy of its context: the signal comes along.
      seen.signals.push({ ...ctx }.signal);
      const data = Buffer.from("hello").subarray(Number(offset));
      data.copy(buf);
      return answer(how.read, Math.min(data.length, buf.length));
    },
  };
  const node: Node = {
    qid: QID,
    stat: async () => {
      throw new FsError("not used", Errno.EIO);
    },
    getattr: () => answer(how.getattr, ATTR),
    lopen: async () => file,
  };
  return { dialects: ["9P2000.L"], attach: async () => node };
}

let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup) c();
  cleanup = [];
});

async function connect(how: { getattr: Answer; read: Answer }) {
  const seen = { signals: [] as AbortSignal[] };
  const server = new Server({ backend: backend(how, seen) });
  const [a, b] = memoryPair();
  server.serveDuplex(b);
  const client = await Client.connect(a, { version: Dialect.P2000L });
  cleanup.push(() => client.destroy());
  const root = await client.attach("u", "");
  return { root, seen };
}

async function errnoOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RemoteError) return e.errno;
    throw e;
  }
  throw new Error("expected an error reply");
}

describe("answers given at once or later", () => {
  for (const a of ["value", "promise", "thenable"] as const) {
    it(`getattr and read answered as a ${a}`, async () => {
      const { root, seen } = await connect({ getattr: a, read: a });
      const got = await root.getattr(GETATTR.BASIC);
      expect(got).toEqual(ATTR);
      // Several in flight at once: each gets its own complete reply.
      const many = await Promise.all(Array.from({ length: 20 }, () => root.getattr(GETATTR.BASIC)));
      for (const m of many) expect(m).toEqual(ATTR);
      await root.lopen(L_O.RDONLY);
      expect((await root.read(0, 100)).toString()).toBe("hello");
      expect((await root.read(3, 100)).toString()).toBe("lo");
      expect((await root.read(5, 100)).length).toBe(0);
      expect(seen.signals.length).toBe(3);
      for (const s of seen.signals) {
        expect(s).toBeInstanceOf(AbortSignal);
        expect(s.aborted).toBe(false);
      }
    });
  }
  for (const a of ["reject", "throw"] as const) {
    it(`a failure (${a}) becomes the error reply`, async () => {
      const { root } = await connect({ getattr: a, read: a });
      const want = a === "reject" ? Errno.ENOENT : Errno.EACCES;
      expect(await errnoOf(root.getattr(GETATTR.BASIC))).toBe(want);
      await root.lopen(L_O.RDONLY);
      expect(await errnoOf(root.read(0, 100))).toBe(want);
      // The connection goes on.
      expect(await errnoOf(root.getattr(GETATTR.BASIC))).toBe(want);
    });
  }
});
