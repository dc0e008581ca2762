// Fid operations of 9P2000 and 9P2000.u against our passthrough server exporting a temp directory.

import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdtemp, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, Fsys } from "../../src/client/index.js";
import { Dialect, DMDIR, DMSYMLINK, ORDWR, OREAD, OWRITE } from "../../src/codec/index.js";
import { RemoteError } from "../../src/errors.js";
import { passthrough, Server } from "../../src/server/index.js";

describe("client against the passthrough server", () => {
  let dir: string;
  let server: Server;
  let addr: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ninep-pt-"));
    server = new Server({ backend: passthrough(dir) });
    const a = await server.listen("tcp!127.0.0.1!0");
    addr = `tcp!127.0.0.1!${a.network === "tcp" ? a.port : 0}`;
  });

  afterAll(async () => {
    await server.close(0);
    await rm(dir, { recursive: true, force: true });
  });

  async function fsys(version: Dialect, msize?: number): Promise<Fsys> {
    const c = await Client.connect(addr, { version, msize });
    return new Fsys(c, await c.attach(process.env.USER ?? "root", ""), { ownsClient: true });
  }

  it("9P2000.u: symlink via Tcreate extension, stat extension, wstat rename and mode", async () => {
    const fs = await fsys(Dialect.P2000u);
    try {
      const root = await fs.walk("");
      const d = await root.clone();
      await d.create("u-link", DMSYMLINK | 0o777, OREAD, "target/file");
      await d.clunk();
      expect(await readlink(join(dir, "u-link"))).toBe("target/file");
      const st = await fs.stat("u-link");
      expect(st.mode & DMSYMLINK).toBe(DMSYMLINK);
      expect(st.extension).toBe("target/file");
      expect(typeof st.n_uid).toBe("number");
      await fs.writeFile("u-file", "12345");
      const f = await fs.walk("u-file");
      await f.wstat({ name: "u-renamed", mode: 0o600 });
      await f.clunk();
      expect((await stat(join(dir, "u-renamed"))).mode & 0o777).toBe(0o600);
      await fs.remove("u-renamed");
      await fs.remove("u-link");
      await root.clunk();
    } finally {
      await fs.close();
    }
  });

  it("9P2000: directories by Tcreate with DMDIR, wstat length, readdir stats, ORDWR", async () => {
    const fs = await fsys(Dialect.P2000);
    try {
      expect(fs.client.dialect).toBe("9P2000");
      const dd = await fs.walk("");
      await dd.create("plain", DMDIR | 0o755, OREAD);
      expect(dd.opened).toBe(true);
      await dd.clunk();
      expect((await lstat(join(dir, "plain"))).isDirectory()).toBe(true);
      const f = await fs.create("plain/f", 0o644, ORDWR);
      expect(await f.write(0, "hello world")).toBe(11);
      expect((await f.read(6, 100)).toString()).toBe("world");
      await f.wstat({ length: 5n });
      expect((await f.stat()).length).toBe(5n);
      await f.clunk();
      const list = await fs.readdir("plain");
      expect(list.map((s) => [s.name, s.length])).toEqual([["f", 5n]]);
      expect(list[0]?.uid).not.toBe("");
      const err = await fs.remove("plain").catch((e) => e);
      expect(err).toBeInstanceOf(RemoteError); // not empty
      await fs.remove("plain/f");
      await fs.remove("plain");
    } finally {
      await fs.close();
    }
  });

  it("9P2000.L: create() with DMDIR and plain files, wstat as setattr, hard links, unlinkat", async () => {
    const fs = await fsys(Dialect.P2000L);
    try {
      const d = await fs.walk("");
      await d.create("ldir", DMDIR | 0o750, OREAD);
      expect(d.opened).toBe(true);
      expect(d.name).toBe("ldir");
      await d.clunk();
      expect((await stat(join(dir, "ldir"))).mode & 0o777).toBe(0o750);
      const f = await fs.create("ldir/file", 0o640, ORDWR);
      await f.write(0, "0123456789");
      await f.wstat({ length: 4n, mode: 0o600, mtime: 1_000_000_000 });
      const st = await f.stat();
      expect(st.length).toBe(4n);
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.mtime).toBe(1_000_000_000);
      await expect(f.wstat({ name: "other" })).rejects.toMatchObject({ errno: 95 });
      await f.clunk();
      const ldir = await fs.walk("ldir");
      const target = await fs.walk("ldir/file");
      await ldir.link(target, "hard");
      expect((await stat(join(dir, "ldir", "hard"))).nlink).toBe(2);
      await target.clunk();
      await ldir.unlinkat("hard");
      await ldir.unlinkat("file");
      await ldir.clunk();
      const root = await fs.walk("");
      await root.unlinkat("ldir", 0x200);
      await root.clunk();
      await expect(lstat(join(dir, "ldir"))).rejects.toThrow();
    } finally {
      await fs.close();
    }
  });

  for (const version of [Dialect.P2000, Dialect.P2000u, Dialect.P2000L]) {
    it(`streams 8 MiB through 8 KiB messages with a window of 16 (${version})`, async () => {
      const fs = await fsys(version, 8192 + 24);
      try {
        const data = randomBytes(8 * 1024 * 1024);
        // Uneven chunks so the writer has to regroup them into iounits.
        const parts = [];
        for (let i = 0; i < data.length; i += 100_003) parts.push(data.subarray(i, i + 100_003));
        await pipeline(Readable.from(parts), fs.createWriteStream(`s-${version}`, { window: 16 }));
        const onDisk = await readFile(join(dir, `s-${version}`));
        expect(onDisk.equals(data)).toBe(true);
        const h = createHash("sha256");
        for await (const c of fs.createReadStream(`s-${version}`, { window: 16 })) h.update(c);
        expect(h.digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
        // Fid.write splits into iounits on its own.
        const f = await fs.openForWrite(`w-${version}`);
        expect(await f.write(0, data.subarray(0, 50_000))).toBe(50_000);
        await f.clunk();
        expect((await fs.readFile(`w-${version}`)).equals(data.subarray(0, 50_000))).toBe(true);
        await fs.remove(`s-${version}`);
        await fs.remove(`w-${version}`);
      } finally {
        await fs.close();
      }
    });
  }

  it("opening a missing file for writing in a missing directory names the walk failure", async () => {
    const fs = await fsys(Dialect.P2000u);
    try {
      const err = await fs.writeFile("no/such/dir/file", "x").catch((e) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect((err as RemoteError).ename).toBe("file not found");
      const f = await fs.openForWrite("fresh", 0o600);
      await f.write(0, "abc");
      await f.clunk();
      expect((await stat(join(dir, "fresh"))).mode & 0o777).toBe(0o600);
      const again = await fs.open("fresh", OWRITE);
      await again.clunk();
      await fs.remove("fresh");
    } finally {
      await fs.close();
    }
  });
});
