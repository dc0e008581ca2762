// Interop with nfs-ganesha's 9P2000.L server: our client against a peer that reads the protocol
// its own way. What it does differently, and what the client does about it:
// - every error is an Rerror (type 107) carrying only a u32 errno, even on 9P2000.L: read as the
//   Rlerror it stands for;
// - Tlopen with O_TRUNC keeps the data: an open for writing with OTRUNC also sets the size to 0;
// - a Tremove (or Trename) of a fid walked through several names acts on a file of the same name
//   in the directory the walk started from (and crashes ganesha): Fsys.remove uses Tunlinkat in
//   the file's own directory.

import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmod,
  stat as fsStat,
  writeFile as fsWriteFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, Fsys, VersionError, WalkError } from "../../src/client/index.js";
import { GETATTR } from "../../src/codec/index.js";
import { RemoteError } from "../../src/errors.js";
import { type GaneshaHandle, ganeshaUnavailable, startGanesha } from "../helpers/ganesha.js";

const missing = ganeshaUnavailable();
if (missing) {
  if (process.env.CI && process.getuid?.() === 0)
    throw new Error(`ganesha interop tests need ganesha in CI: ${missing}`);
  console.warn(`skipping ganesha interop tests: ${missing}`);
}

describe.skipIf(missing !== undefined)("client against nfs-ganesha (9P2000.L)", () => {
  let work: string;
  let dir: string;
  let ganesha: GaneshaHandle;
  let client: Client;
  let fs: Fsys;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "ninep-ganesha-"));
    dir = join(work, "export");
    await mkdir(dir);
    ganesha = await startGanesha(dir, work);
    client = await Client.connect(ganesha.address, { version: "9P2000.L" });
    fs = new Fsys(client, await client.attach("root", dir));
  }, 60_000);

  afterAll(async () => {
    await client?.close().catch(() => {});
    await ganesha?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  }, 30_000);

  const stillServing = async () => {
    expect(ganesha.alive(), ganesha.log().slice(-2000)).toBe(true);
    await fs.stat("");
  };

  it("negotiates 9P2000.L", () => {
    expect(client.dialect).toBe("9P2000.L");
    expect(client.msize).toBeLessThanOrEqual(65560);
  });

  it("reports ganesha's refusal of 9P2000.u as a VersionError naming the errno", async () => {
    const err = await Client.connect(ganesha.address, { version: "9P2000.u" }).catch((e) => e);
    expect(err).toBeInstanceOf(VersionError);
    expect(String(err.message)).toMatch(/refused version 9P2000\.u/);
  });

  it("reads its errno-only Rerror as a RemoteError with that errno", async () => {
    const walked = await fs.walk("no-such-file").catch((e) => e);
    expect(walked).toBeInstanceOf(WalkError);
    await mkdir(join(dir, "existing"));
    const made = await fs.mkdir("existing").catch((e) => e);
    expect(made).toBeInstanceOf(RemoteError);
    expect(made.errno).toBe(17);
    await stillServing();
  });

  it("creates a file with writeFile and reads it back", async () => {
    await fs.writeFile("new.txt", "fresh\n");
    expect(await readFile(join(dir, "new.txt"), "utf8")).toBe("fresh\n");
    expect((await fs.readFile("new.txt")).toString()).toBe("fresh\n");
  });

  it("overwrites a longer file without leaving its old tail", async () => {
    await fsWriteFile(join(dir, "ow.txt"), "a long original line of text\n");
    await fs.writeFile("ow.txt", "short\n");
    expect(await readFile(join(dir, "ow.txt"), "utf8")).toBe("short\n");
  });

  it("removes the file named, not one of the same name higher up, and stays up", async () => {
    await mkdir(join(dir, "rmt", "sub"), { recursive: true });
    await fsWriteFile(join(dir, "victim"), "ROOT\n");
    await fsWriteFile(join(dir, "rmt", "sub", "victim"), "SUB\n");
    await fs.remove("rmt/sub/victim");
    expect(await readdir(join(dir, "rmt", "sub"))).toEqual([]);
    expect(await readFile(join(dir, "victim"), "utf8")).toBe("ROOT\n");
    await fs.remove("rmt/sub"); // an empty directory
    expect(await readdir(join(dir, "rmt"))).toEqual([]);
    await fs.remove("victim"); // one name: the export's own directory
    expect((await readdir(dir)).includes("victim")).toBe(false);
    const gone = await fs.remove("rmt/nothing").catch((e) => e);
    expect(gone).toBeInstanceOf(WalkError);
    await stillServing();
  });

  it("refuses to remove a directory that is not empty", async () => {
    await mkdir(join(dir, "full"));
    await fsWriteFile(join(dir, "full", "f"), "x");
    const err = await fs.remove("full").catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(await readFile(join(dir, "full", "f"), "utf8")).toBe("x");
    await stillServing();
  });

  it("creates files in the group the mount names (gid), which ganesha checks against the user", async () => {
    await mkdir(join(dir, "shared"), { mode: 0o777 });
    await chmod(join(dir, "shared"), 0o777);
    const nobody = await Client.connect(ganesha.address, { version: "9P2000.L" });
    try {
      const root = await nobody.attach("nobody", dir, { n_uname: 65534, gid: 65534 });
      const asNobody = new Fsys(nobody, root);
      await asNobody.writeFile("shared/mine.txt", "x");
      await asNobody.mkdir("shared/sub");
      expect((await fsStat(join(dir, "shared", "mine.txt"))).gid).toBe(65534);
      expect((await fsStat(join(dir, "shared", "sub"))).gid).toBe(65534);
      // Without it: this process's group (root's), which nobody is not in.
      const plain = new Fsys(nobody, await nobody.attach("nobody", dir, { n_uname: 65534 }));
      const refused = await plain.writeFile("shared/theirs.txt", "x").catch((e) => e);
      expect(refused).toBeInstanceOf(RemoteError);
      expect(refused.errno).toBe(1);
    } finally {
      await nobody.close();
    }
    await stillServing();
  });

  it("reads and sets times before 1970 as negative seconds", async () => {
    await fsWriteFile(join(dir, "old.txt"), "old\n");
    // (Node's utimes takes a negative time as "now".)
    execFileSync("touch", ["-d", "1960-06-01T00:00:00Z", join(dir, "old.txt")]);
    const fid = await fs.walk("old.txt");
    try {
      const a = await fid.getattr(GETATTR.BASIC);
      expect(a.mtime_sec).toBe(-302486400n);
      expect((await fid.stat()).mtime).toBe(-302486400);
      await fid.setattr({ mtime: new Date("1950-01-01T00:00:00.250Z") });
      const st = await fsStat(join(dir, "old.txt"));
      expect(st.mtimeMs).toBe(Date.parse("1950-01-01T00:00:00.250Z"));
    } finally {
      await fid.clunk();
    }
  });

  it("moves 3 MiB each way intact", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    await fs.writeFile("big.bin", data);
    const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
    expect(sha(await readFile(join(dir, "big.bin")))).toBe(sha(data));
    expect(sha(await fs.readFile("big.bin"))).toBe(sha(data));
  });

  it("lists a directory of 500 entries as the disk does", async () => {
    await mkdir(join(dir, "many"));
    const names = Array.from({ length: 500 }, (_, i) => `entry-${i}-${"x".repeat(i % 120)}`);
    for (const n of names) await fsWriteFile(join(dir, "many", n), n);
    const listed = (await fs.readdir("many")).map((s) => s.name).sort();
    expect(listed).toEqual([...names].sort());
    await stillServing();
  });
});
