// The answers a request gets do not depend on whether the passthrough finishes it at once (syncIo:
// synchronous lstat and reads, the reply written without a promise) or through the thread pool:
// the same attributes, data and errnos over a real TCP connection, never a stale attribute after a
// change made through the server or locally, and pipelined requests still answered in full.

import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { GETATTR, L_O, MsgType } from "../../src/codec/constants.js";
import { Errno, RemoteError } from "../../src/errors.js";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { tempDir } from "./helpers.js";

async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RemoteError) return e.errno ?? -1;
    throw e;
  }
  throw new Error("expected a remote error");
}

let tmp: ReturnType<typeof tempDir>;
const servers: Server[] = [];

beforeAll(() => {
  tmp = tempDir("pt-sync-");
});
afterAll(async () => {
  for (const s of servers) await s.close(100);
  tmp.cleanup();
});

for (const syncIo of [true, false]) {
  describe(`passthrough over TCP, syncIo ${syncIo}`, () => {
    let dir: string;
    let client: Client;

    beforeAll(async () => {
      dir = path.join(tmp.dir, `export-${syncIo}`);
      fs.mkdirSync(path.join(dir, "sub"), { recursive: true });
      const server = new Server({ backend: passthrough(dir, { syncIo }) });
      servers.push(server);
      const addr = await server.listen("tcp!127.0.0.1!0");
      if (addr.network !== "tcp") throw new Error("tcp expected");
      client = await Client.connect(`tcp!127.0.0.1!${addr.port}`, { version: "9P2000.L", msize: 8192 + 24 });
    });
    afterAll(() => client?.destroy());

    it("getattr follows every change, through the server or made locally", async () => {
      const root = await client.attach("root", "");
      const file = await root.walk("sub");
      await file.lcreate("a", L_O.RDWR, 0o644, 0); // the fid is now the new file
      const host = path.join(dir, "sub", "a");
      expect((await file.getattr(GETATTR.BASIC)).size).toBe(0n);

      await file.write(0, "hello");
      expect((await file.getattr(GETATTR.BASIC)).size).toBe(5n);

      await file.setattr({ size: 2 });
      let a = await file.getattr(GETATTR.BASIC);
      expect(a.size).toBe(2n);

      await file.setattr({ mode: 0o600 });
      a = await file.getattr(GETATTR.BASIC);
      expect(a.mode & 0o777).toBe(0o600);

      fs.writeFileSync(host, "local change, longer");
      fs.utimesSync(host, 1_000_000, 1_234_567);
      a = await file.getattr(GETATTR.BASIC);
      const st = fs.lstatSync(host, { bigint: true });
      expect(a.size).toBe(st.size);
      expect(a.mtime_sec).toBe(st.mtimeNs / 1_000_000_000n);
      expect(a.mtime_nsec).toBe(st.mtimeNs % 1_000_000_000n);
      expect(a.qid.path).toBe(st.ino);

      // Pipelined: many calls in flight at once, each answered, all with the same answer.
      const all = await Promise.all(Array.from({ length: 50 }, () => file.getattr(GETATTR.BASIC)));
      for (const x of all) expect(x).toEqual(a);
      await file.clunk();
      await root.clunk();
    });

    it("errnos are those of the file system: removed file, swapped directory", async () => {
      const root = await client.attach("root", "");
      fs.mkdirSync(path.join(dir, "d"));
      fs.writeFileSync(path.join(dir, "d", "gone"), "x");
      fs.writeFileSync(path.join(dir, "d", "f"), "y");
      const gone = await root.walk("d/gone");
      const f = await root.walk("d/f");
      fs.rmSync(path.join(dir, "d", "gone"));
      expect(await errnoOf(gone.getattr(GETATTR.BASIC))).toBe(Errno.ENOENT);
      // The directory replaced by a link leading out of the export: refused (the last directory
      // component is now a link: "not a directory"), never followed.
      fs.mkdirSync(path.join(tmp.dir, `outside-${syncIo}`));
      fs.writeFileSync(path.join(tmp.dir, `outside-${syncIo}`, "f"), "outside");
      fs.renameSync(path.join(dir, "d"), path.join(dir, "d.old"));
      fs.symlinkSync(path.join(tmp.dir, `outside-${syncIo}`), path.join(dir, "d"));
      expect(await errnoOf(f.getattr(GETATTR.BASIC))).toBe(Errno.ENOTDIR);
      // An unknown fid is still the server's error.
      expect(
        await errnoOf(client.rpc({ type: MsgType.Tgetattr, fid: 4242, request_mask: GETATTR.BASIC })),
      ).toBe(Errno.EBADF);
      await root.clunk();
    });

    it("reads: data, end of file and a read after a local truncate", async () => {
      const root = await client.attach("root", "");
      const data = Buffer.alloc(20000);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      fs.writeFileSync(path.join(dir, "r.bin"), data);
      const f = await root.walk("r.bin");
      await f.lopen(L_O.RDONLY);
      // Several reads in flight at once, out of order.
      const offsets = [16384, 0, 8192, 19990, 20000, 40000];
      const got = await Promise.all(offsets.map((o) => f.read(o, 8192)));
      offsets.forEach((o, i) => {
        expect(got[i]).toEqual(data.subarray(o, o + 8192));
      });
      fs.truncateSync(path.join(dir, "r.bin"), 10);
      expect(await f.read(0, 8192)).toEqual(data.subarray(0, 10));
      expect((await f.read(10, 8192)).length).toBe(0);
      await f.clunk();
      await root.clunk();
    });

    it("setattr through the server is seen by the next getattr at once", async () => {
      const root = await client.attach("root", "");
      const file = await root.clone();
      await file.lcreate("t", L_O.RDWR, 0o644, 0);
      const before = await file.getattr(GETATTR.BASIC);
      await file.setattr({ mtime: new Date(Date.UTC(2001, 0, 2, 3, 4, 5)) });
      const after = await file.getattr(GETATTR.BASIC);
      expect(after.mtime_sec).toBe(BigInt(Date.UTC(2001, 0, 2, 3, 4, 5) / 1000));
      expect(after.mtime_sec).not.toBe(before.mtime_sec);
      await file.clunk();
      await root.clunk();
    });
  });
}

describe("trace of replies encoded by their handler", () => {
  it("shows Rgetattr and Rread like any other reply", async () => {
    const dir = path.join(tmp.dir, "traced");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "f"), "traced data");
    const lines: string[] = [];
    const server = new Server({ backend: passthrough(dir), trace: (l) => lines.push(l) });
    servers.push(server);
    const addr = await server.listen("tcp!127.0.0.1!0");
    if (addr.network !== "tcp") throw new Error("tcp expected");
    const client = await Client.connect(`tcp!127.0.0.1!${addr.port}`, { version: "9P2000.L" });
    try {
      const f = await (await client.attach("root", "")).walk("f");
      const a = await f.getattr(GETATTR.BASIC);
      await f.lopen(L_O.RDONLY);
      expect((await f.read(0, 100)).toString()).toBe("traced data");
      const getattr = lines.find((l) => l.includes("-> Rgetattr"));
      expect(getattr).toMatch(/-> Rgetattr tag \d+ /);
      expect(getattr).toContain(String(a.size));
      expect(lines.some((l) => /-> Rread tag \d+ data 11 /.test(l))).toBe(true);
    } finally {
      client.destroy();
    }
  });
});
