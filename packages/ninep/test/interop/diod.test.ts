// Interop with diod, a 9P2000.L server written elsewhere: our client against a real peer.

import { createHash, randomBytes } from "node:crypto";
import {
  chmod,
  stat as fsStat,
  writeFile as fsWriteFile,
  lstat,
  mkdtemp,
  readFile,
  readlink,
  rm,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, Fsys, VersionError, WalkError } from "../../src/client/index.js";
import { GETATTR, L_O, OREAD } from "../../src/codec/index.js";
import { RemoteError } from "../../src/errors.js";
import { type DiodHandle, diodUnavailable, startDiod } from "../helpers/diod.js";

const missing = diodUnavailable();
if (missing) {
  if (process.env.CI) throw new Error(`diod interop tests need diod in CI: ${missing}`);
  console.warn(`skipping diod interop tests: ${missing}`);
}

const BIG_MB = Number(process.env.DIOD_BIG_MB ?? 64);

describe.skipIf(missing !== undefined)("client against diod (9P2000.L)", () => {
  let dir: string;
  let diod: DiodHandle;
  let client: Client;
  let fs: Fsys;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ninep-diod-"));
    await chmod(dir, 0o777); // diod -S squashes every user to nobody
    await fsWriteFile(join(dir, "seed.txt"), "seed data\n");
    diod = await startDiod(dir);
    client = await Client.connect(diod.address, { version: "9P2000.L" });
    fs = new Fsys(client, await client.attach("nobody", dir));
  });

  afterAll(async () => {
    await client?.close().catch(() => {});
    await diod?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("negotiates 9P2000.L and clamps msize to diod's", () => {
    expect(client.dialect).toBe("9P2000.L");
    expect(client.msize).toBeLessThanOrEqual(65560);
    expect(client.iounit).toBe(client.msize - 24);
  });

  it("auth() reports that diod -n needs no authentication", async () => {
    const c = await Client.connect(diod.address, { version: "9P2000.L" });
    try {
      expect(await c.auth("nobody", dir)).toBeNull();
    } finally {
      await c.close();
    }
  });

  it("refuses to fall back when diod rejects 9P2000.u", async () => {
    await expect(Client.connect(diod.address, { version: "9P2000.u" })).rejects.toBeInstanceOf(VersionError);
  });

  it("walks, getattrs and reads a file", async () => {
    const fid = await fs.walk("seed.txt");
    const attr = await fid.getattr(GETATTR.BASIC);
    expect(attr.size).toBe(10n);
    expect(attr.mode & 0o170000).toBe(0o100000);
    await fid.lopen(L_O.RDONLY);
    expect((await fid.read(0, 100)).toString()).toBe("seed data\n");
    expect((await fid.read(10, 100)).length).toBe(0);
    await fid.clunk();
    const st = await fs.stat("seed.txt");
    expect(st.name).toBe("seed.txt");
    expect(st.length).toBe(10n);
  });

  it("reports a partial walk as WalkError with the walked count", async () => {
    const err = await fs.walk("seed.txt/nope/more").catch((e) => e);
    expect(err).toBeInstanceOf(WalkError);
    const err2 = await fs.walk("nope").catch((e) => e);
    expect(err2).toBeInstanceOf(WalkError);
    expect((err2 as WalkError).errno).toBe(2);
    expect((err2 as WalkError).walked).toBe(0);
    // The connection is still fine afterwards.
    expect((await fs.readFile("seed.txt")).toString()).toBe("seed data\n");
  });

  it("lists a directory without . and ..", async () => {
    await fs.mkdir("listing");
    for (const n of ["a", "b", "c"]) await fs.writeFile(`listing/${n}`, n.repeat(3));
    const entries = await fs.readdir("listing");
    expect(entries.map((e) => e.name).sort()).toEqual(["a", "b", "c"]);
    expect(entries.every((e) => e.length === 3n)).toBe(true);
    const root = await fs.walk("listing");
    await root.lopen(L_O.RDONLY | L_O.DIRECTORY);
    const raw = await root.lreaddir();
    expect(raw.map((d) => d.name).sort()).toEqual([".", "..", "a", "b", "c"]);
    await root.clunk();
  });

  it(`writes and reads back a ${BIG_MB} MiB file with matching sha256`, async () => {
    const size = BIG_MB * 1024 * 1024;
    const hashIn = createHash("sha256");
    const block = randomBytes(1024 * 1024);
    let sent = 0;
    const source = Readable.from(
      (function* () {
        while (sent < size) {
          // Vary each MiB so a misplaced chunk changes the hash.
          const b = Buffer.from(block);
          b.writeUInt32LE(sent, 0);
          sent += b.length;
          hashIn.update(b);
          yield b;
        }
      })(),
    );
    await pipeline(source, fs.createWriteStream("big.bin", { window: 8 }));
    const expected = hashIn.digest("hex");
    expect((await fsStat(join(dir, "big.bin"))).size).toBe(size);
    const onDisk = createHash("sha256")
      .update(await readFile(join(dir, "big.bin")))
      .digest("hex");
    expect(onDisk).toBe(expected);
    const hashOut = createHash("sha256");
    let got = 0;
    for await (const chunk of fs.createReadStream("big.bin", { window: 8 })) {
      hashOut.update(chunk);
      got += chunk.length;
    }
    expect(got).toBe(size);
    expect(hashOut.digest("hex")).toBe(expected);
  }, 120_000);

  it("mkdir, symlink, readlink, rename and remove", async () => {
    const root = await fs.walk("");
    await root.mkdir("tree", 0o755);
    const tree = await fs.walk("tree");
    await tree.symlink("link", "../seed.txt");
    expect(await readlink(join(dir, "tree", "link"))).toBe("../seed.txt");
    const link = await tree.walk("link");
    expect(await link.readlink()).toBe("../seed.txt");
    expect((await link.stat()).mode & 0x02000000).not.toBe(0);
    await link.clunk();
    await fs.writeFile("tree/old", "x");
    await tree.renameat("old", root, "moved");
    await expect(lstat(join(dir, "tree", "old"))).rejects.toThrow();
    expect(await readFile(join(dir, "moved"), "utf8")).toBe("x");
    await tree.unlinkat("link");
    await root.unlinkat("moved");
    await fs.remove("tree");
    await expect(lstat(join(dir, "tree"))).rejects.toThrow();
    const err = await fs.remove("tree").catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    await tree.clunk();
    await root.clunk();
  });

  it("keeps many requests in flight on one connection", async () => {
    const fids = await Promise.all(Array.from({ length: 64 }, () => fs.walk("seed.txt")));
    await Promise.all(fids.map((f) => f.open(OREAD)));
    const data = await Promise.all(fids.map((f) => f.read(0, 4)));
    expect(data.every((d) => d.toString() === "seed")).toBe(true);
    await Promise.all(fids.map((f) => f.clunk()));
  });

  it("statfs and fsync", async () => {
    const root = await fs.walk("");
    const sfs = await root.statfs();
    expect(sfs.bsize).toBeGreaterThan(0);
    await root.clunk();
    const f = await fs.openForWrite("synced", 0o600);
    await f.write(0, "abc");
    await f.fsync();
    await f.clunk();
    expect(await readFile(join(dir, "synced"), "utf8")).toBe("abc");
  });
});
