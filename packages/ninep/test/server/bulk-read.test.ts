// Bulk reads over real sockets: Rread frames read in place (and reused from the frame pool once
// written) must carry exactly the file's bytes however many reads are in flight, and a client
// that stops reading its replies must stop the server from reading more requests.

import { createHash } from "node:crypto";
import * as fs from "node:fs";
import net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, Fsys, memoryPair } from "../../src/client/index.js";
import { L_O, MsgType, OREAD } from "../../src/codec/constants.js";
import { Framer } from "../../src/codec/framer.js";
import { decode, encode } from "../../src/codec/index.js";
import { Server } from "../../src/server/index.js";
import { passthrough } from "../../src/server/passthrough.js";
import { formatAddress } from "../../src/transport/address.js";

const L = "9P2000.L";
let dir: string;
let content: Buffer;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ninep-bulk-"));
  // 5 MiB + 123 bytes of distinct 32-bit words, so a block out of place changes the digest.
  content = Buffer.alloc(5 * 1024 * 1024 + 123);
  for (let i = 0; i + 4 <= content.length; i += 4) content.writeUInt32LE((i * 2654435761) >>> 0, i);
  fs.writeFileSync(path.join(dir, "big.bin"), content);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function readAll(address: string, msize: number, window: number): Promise<Buffer> {
  const client = await Client.connect(address, { version: L, msize });
  const fsys = new Fsys(client, await client.attach("u", dir), { ownsClient: true });
  const parts: Buffer[] = [];
  try {
    await pipeline(
      fsys.createReadStream("big.bin", { window }),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          parts.push(Buffer.from(chunk));
          cb();
        },
      }),
    );
  } finally {
    await fsys.close();
  }
  return Buffer.concat(parts);
}

describe("bulk reads over TCP", () => {
  for (const syncIo of [true, false]) {
    it(`pipelined reads return the file's exact bytes at several msizes (syncIo ${syncIo})`, async () => {
      const server = new Server({ backend: passthrough(dir, { syncIo, permissions: "process" }) });
      const addr = await server.listen("tcp!127.0.0.1!0");
      const address = formatAddress(addr);
      try {
        for (const msize of [8192 + 24, 65536 + 24, 1048576 + 24]) {
          // Two readers at once share the frame pool.
          const [a, b] = await Promise.all([readAll(address, msize, 16), readAll(address, msize, 3)]);
          expect(a.length).toBe(content.length);
          expect(sha(a)).toBe(sha(content));
          expect(sha(b)).toBe(sha(content));
        }
      } finally {
        await server.close(100);
      }
    });
  }

  it("reads over an in-memory pair (frames handed over by reference, never pooled) stay intact", async () => {
    const server = new Server({ backend: passthrough(dir, { permissions: "process" }) });
    const [near, far] = memoryPair();
    server.serveDuplex(far, "memory");
    const client = await Client.connect(near, { version: L, msize: 65536 + 24 });
    const fsys = new Fsys(client, await client.attach("u", dir), { ownsClient: true });
    try {
      const fid = await fsys.open("big.bin", OREAD);
      // Many reads in flight, then compare every block once all replies are in.
      const offsets = Array.from({ length: 64 }, (_, i) => i * 65536);
      const blocks = await Promise.all(offsets.map((o) => fid.read(BigInt(o), 65536)));
      // And one at a time, keeping every result until the end.
      for (const o of offsets) blocks.push(await fid.read(BigInt(o), 65536));
      offsets.push(...offsets);
      for (let i = 0; i < offsets.length; i++) {
        const o = offsets[i] as number;
        expect(Buffer.from(blocks[i] as Uint8Array).equals(content.subarray(o, o + 65536))).toBe(true);
      }
      await fid.clunk();
    } finally {
      await fsys.close();
      await server.close(100);
    }
  });

  it("a client that does not read its replies stops the server from reading its requests", async () => {
    const server = new Server({ backend: passthrough(dir, { permissions: "process" }) });
    const addr = await server.listen("tcp!127.0.0.1!0");
    if (addr.network !== "tcp") throw new Error("expected a TCP address");
    const sock = net.connect(addr.port, "127.0.0.1");
    const framer = new Framer({ maxSize: 1 << 21 });
    const replies: Buffer[] = [];
    let waiting: (() => void) | undefined;
    sock.on("data", (chunk: Buffer) => {
      for (const f of framer.push(chunk)) replies.push(Buffer.from(f));
      waiting?.();
    });
    const until = async (n: number) => {
      while (replies.length < n) await new Promise<void>((r) => (waiting = r));
    };
    const msize = 65536 + 24;
    const send = (m: object) => sock.write(encode(m as never, L));
    try {
      await new Promise<void>((r) => sock.once("connect", () => r()));
      send({ type: MsgType.Tversion, tag: 0xffff, msize, version: L });
      send({ type: MsgType.Tattach, tag: 1, fid: 0, afid: 0xffffffff, uname: "u", aname: dir, n_uname: 0 });
      send({ type: MsgType.Twalk, tag: 2, fid: 0, newfid: 1, wname: ["big.bin"] });
      send({ type: MsgType.Tlopen, tag: 3, fid: 1, flags: L_O.RDONLY });
      await until(4);
      expect(replies.map((f) => f[4])).toEqual([
        MsgType.Rversion,
        MsgType.Rattach,
        MsgType.Rwalk,
        MsgType.Rlopen,
      ]);
      replies.length = 0;
      sock.pause();
      // 1500 reads of 64 KiB (94 MiB of replies that nobody reads for a while), sent in batches
      // of 50 so that the server has to come back to the socket for each batch.
      const n = 1500;
      const before = process.memoryUsage().arrayBuffers;
      for (let i = 0; i < n; i++) {
        send({ type: MsgType.Tread, tag: i, fid: 1, offset: BigInt((i % 80) * 65536), count: 65536 });
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 500));
      const grown = process.memoryUsage().arrayBuffers - before;
      // Without backpressure every reply would be waiting in the server's write buffer.
      expect(grown).toBeLessThan(30 * 1024 * 1024);
      sock.resume();
      await until(n);
      const tags = new Set<number>();
      for (const f of replies) {
        const m = decode(f, L);
        expect(m.type).toBe(MsgType.Rread);
        if (m.type !== MsgType.Rread) continue;
        tags.add(m.tag);
        const off = (m.tag % 80) * 65536;
        expect(Buffer.from(m.data).equals(content.subarray(off, off + 65536))).toBe(true);
      }
      expect(tags.size).toBe(n);
    } finally {
      sock.destroy();
      await server.close(100);
    }
  }, 30_000);
});
