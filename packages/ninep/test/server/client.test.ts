// The package's own client against the server framework, in every dialect, over TCP, a Unix
// socket and an in-memory Duplex pair; plus a check that the conformance suite can fail.

import { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { Client, mount } from "../../src/client/index.js";
import { DMDIR, MsgType, NOFID, OREAD } from "../../src/codec/constants.js";
import type { Stat } from "../../src/codec/types.js";
import { RemoteError } from "../../src/errors.js";
import type { Backend, Node, OpenFile } from "../../src/server/backend.js";
import { Server, SynthDir, staticFile, treeBackend } from "../../src/server/index.js";
import { runConformance } from "../../src/testing/index.js";
import { type Fixture, startFixture } from "./fixture.js";

let fx: Fixture | undefined;
afterEach(async () => {
  await fx?.close();
  fx = undefined;
});

describe("with the package's client", () => {
  for (const [version, where] of [
    ["9P2000", "tcp"],
    ["9P2000.u", "unix"],
    ["9P2000.L", "tcp"],
  ] as const) {
    it(`reads, writes, lists, creates and removes over ${version} (${where})`, async () => {
      fx = await startFixture({}, where);
      const fs = await mount(fx.addr, { version, uname: "glenda" });
      try {
        expect((await fs.readFile("hello")).toString()).toBe("hello, world\n");
        await fs.writeFile("dir/new.txt", "fresh data\n");
        expect((await fs.readFile("dir/new.txt")).toString()).toBe("fresh data\n");
        const names = (await fs.readdir("dir")).map((s) => s.name);
        expect(names).toContain("new.txt");
        expect(names).toContain("sub");
        expect(names.length).toBe(27);
        await fs.mkdir("dir/made");
        expect(((await fs.stat("dir/made")).mode & DMDIR) !== 0).toBe(true);
        await fs.remove("dir/new.txt");
        await expect(fs.stat("dir/new.txt")).rejects.toBeInstanceOf(RemoteError);
        await fs.writeFile("ctl", "echo via client\n");
        expect(fx.ctlLog).toContain("via|client");
      } finally {
        await fs.close();
      }
    });
  }

  it("cancels a blocked read with an AbortSignal (the server sees Tflush and aborts the handler)", async () => {
    fx = await startFixture();
    const client = await Client.connect(fx.addr, { version: "9P2000" });
    try {
      const root = await client.attach("glenda", "");
      const f = await root.walk("block");
      await f.open(OREAD);
      const ac = new AbortController();
      const p = f.read(0n, 10, { signal: ac.signal });
      await expect.poll(() => fx!.blocked()).toBe(1);
      ac.abort();
      await expect(p).rejects.toThrow();
      await expect.poll(() => fx!.blocked()).toBe(0);
      const st = await root.stat();
      expect(st.name).toBe("/");
    } finally {
      client.destroy();
    }
  });

  it("serves any Duplex with serveDuplex", async () => {
    const root = new SynthDir("/", { mode: 0o555 });
    root.add(staticFile("x", "over a duplex"));
    const server = new Server({ backend: treeBackend(root) });
    const [a, b] = duplexPair();
    const conn = server.serveDuplex(a);
    const client = await Client.connect(b, { version: "9P2000.u" });
    const r = await client.attach("u", "");
    const f = await r.walk("x");
    await f.open(OREAD);
    expect(Buffer.from(await f.read(0n, 100)).toString()).toBe("over a duplex");
    expect(conn.fidCount).toBe(2);
    await client.close();
    await conn.closed;
    expect(server.connectionCount).toBe(0);
    await server.close();
  });
});

/** Two connected in-memory Duplex streams: what one writes, the other reads. */
function duplexPair(): [Duplex, Duplex] {
  const peers: Duplex[] = [];
  const make = (i: number) =>
    new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        peers[1 - i]!.push(chunk);
        cb();
      },
      final(cb) {
        peers[1 - i]!.push(null);
        cb();
      },
    });
  peers.push(make(0), make(1));
  return [peers[0]!, peers[1]!];
}

describe("the conformance suite", () => {
  it("detects a backend that breaks the rules", async () => {
    // A backend whose directory listing disagrees with stat (D5) and whose file ignores offsets (R2).
    const fileQid = { type: 0, version: 0, path: 2n };
    const mkStat = (name: string, path: bigint, mode: number): Stat => ({
      type: 0,
      dev: 0,
      qid: { type: mode >>> 24, version: 0, path },
      mode,
      atime: 0,
      mtime: 0,
      length: 0n,
      name,
      uid: "u",
      gid: "u",
      muid: "",
    });
    const file: Node = {
      qid: fileQid,
      stat: async () => mkStat("f", 2n, 0o444),
      open: async (): Promise<OpenFile> => ({ read: async () => Buffer.from("same bytes at every offset") }),
    };
    const root: Node = {
      qid: { type: 0x80, version: 0, path: 1n },
      stat: async () => mkStat("root", 1n, (DMDIR | 0o555) >>> 0),
      walk1: async (name) => {
        if (name === "f" || name === "g") return file;
        throw new RemoteError("file not found");
      },
      open: async () => ({ list: async () => [mkStat("f", 99n, 0o444), mkStat("g", 2n, 0o444)] }),
    };
    const backend: Backend = { attach: async () => root };
    const results = await runConformance({
      start: async () => {
        const server = new Server({ backend });
        const address = await server.listen("tcp!127.0.0.1!0");
        return { address, stop: () => server.close(100) };
      },
      file: ["f"],
    });
    const failed = results.filter((r) => !r.ok).map((r) => r.rules.join(","));
    expect(failed).toContain("R1,R2,R4,V7");
    expect(failed).toContain("D5,W8");
    expect(results.filter((r) => r.ok).length).toBeGreaterThan(15);
    // Sanity: the same suite passes against the fixture (see conformance.test.ts).
    expect(NOFID).toBe(0xffffffff);
    expect(MsgType.Rflush).toBe(109);
  });
});
