// Large Twrite frames are put together in reused memory and given back once the file has written
// their data. What must hold: every byte lands where it was sent while buffers go round between
// connections, and a file that keeps the data it was given (a synthetic file that does not say it
// lets go of it) never sees that memory reused under it.

import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Fsys } from "../../src/client/fs.js";
import { Client } from "../../src/client/index.js";
import { OREAD, OWRITE } from "../../src/codec/constants.js";
import { POOLED_RECEIVE_MIN, receiveFramePool } from "../../src/server/frame-pool.js";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { SynthDir, SynthFile, treeBackend } from "../../src/server/tree.js";
import { tempDir } from "../passthrough/helpers.js";

const MSIZE = 1024 * 1024 + 24;
const tmp = tempDir("recv-pool-");
const servers: Server[] = [];

afterAll(async () => {
  for (const s of servers) await s.close();
  tmp.cleanup();
});

async function listen(server: Server): Promise<string> {
  servers.push(server);
  const addr = await server.listen("tcp!127.0.0.1!0");
  if (addr.network !== "tcp") throw new Error("tcp expected");
  return `tcp!127.0.0.1!${addr.port}`;
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("received frame pool", () => {
  it("writes from several connections at once land intact while the pool hands memory round", async () => {
    const dir = path.join(tmp.dir, "pt");
    fs.mkdirSync(dir);
    const address = await listen(new Server({ backend: passthrough(dir), maxMsize: MSIZE }));
    receiveFramePool.clear();
    const files = new Map<string, string>();
    await Promise.all(
      [0, 1, 2].map(async (c) => {
        const client = await Client.connect(address, { version: "9P2000.L", msize: MSIZE });
        const fsys = new Fsys(client, await client.attach("root", dir), { ownsClient: true });
        try {
          for (let i = 0; i < 4; i++) {
            const name = `c${c}-f${i}`;
            const data = randomBytes(3 * 1024 * 1024 + 1000 * c + i);
            files.set(name, sha(data));
            await new Promise<void>((resolve, reject) => {
              const w = fsys.createWriteStream(name, { window: 4 });
              w.on("error", reject);
              w.on("finish", resolve);
              w.end(data);
            });
          }
        } finally {
          await fsys.close();
        }
      }),
    );
    for (const [name, digest] of files) {
      expect(sha(fs.readFileSync(path.join(dir, name))), name).toBe(digest);
    }
    // The frames were pooled and given back (32 MiB at most are kept).
    expect(receiveFramePool.kept).toBeGreaterThanOrEqual(MSIZE);
  });

  it("a file that keeps the data it was written keeps it unchanged", async () => {
    const kept: Uint8Array[] = [];
    const digests: string[] = [];
    const root = new SynthDir("/", { mode: 0o777, uid: "glenda", gid: "glenda" });
    root.add(
      new SynthFile<undefined>("keeper", {
        mode: 0o666,
        write: (_h, _offset, data) => {
          kept.push(data); // a view into the frame, on purpose
          digests.push(sha(data));
          return data.length;
        },
      }),
    );
    const dir = path.join(tmp.dir, "pt2");
    fs.mkdirSync(dir);
    const synthAddress = await listen(new Server({ backend: treeBackend(root), maxMsize: MSIZE }));
    const ptAddress = await listen(new Server({ backend: passthrough(dir), maxMsize: MSIZE }));
    const synth = await Client.connect(synthAddress, { version: "9P2000.u", msize: MSIZE });
    const pt = await Client.connect(ptAddress, { version: "9P2000.L", msize: MSIZE });
    try {
      const keeper = await (await synth.attach("glenda", "")).walk(["keeper"]);
      await keeper.open(OWRITE);
      for (let i = 0; i < 4; i++) await keeper.write(0n, randomBytes(POOLED_RECEIVE_MIN * 4 + i));
      expect(kept).toHaveLength(4);
      // Then large writes elsewhere, which take every buffer the pool has.
      const fsys = new Fsys(pt, await pt.attach("root", dir));
      for (let i = 0; i < 6; i++) await fsys.writeFile(`big${i}`, randomBytes(2 * 1024 * 1024));
      expect(kept.map(sha)).toEqual(digests);
      const back = await fsys.open("big0", OREAD);
      await back.clunk();
    } finally {
      synth.destroy();
      pt.destroy();
    }
  });
});
