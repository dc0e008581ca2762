// diod's own 9P2000.L client tools (diodcat, diodls from the Debian diod package) against our
// passthrough server: a client written elsewhere, driving our server over TCP and a Unix socket.

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { startDiod } from "../helpers/diod.js";
import { tempDir } from "../passthrough/helpers.js";

const run = promisify(execFile);
const DIODCAT = "/usr/sbin/diodcat";
const DIODLS = "/usr/sbin/diodls";
const missing =
  existsSync(DIODCAT) && existsSync(DIODLS)
    ? undefined
    : "diodcat/diodls not installed (apt-get install diod)";
if (missing) {
  if (process.env.CI) throw new Error(`diod tool tests need diod in CI: ${missing}`);
  console.warn(`skipping diod tool tests: ${missing}`);
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe.skipIf(missing !== undefined)("diod's client tools against the passthrough server", () => {
  let tmp: ReturnType<typeof tempDir>;
  let sockDir: ReturnType<typeof tempDir>;
  let server: Server;
  let tcp: string;
  let unix: string;
  const big = randomBytes(3 * 1024 * 1024 + 123);

  beforeAll(async () => {
    tmp = tempDir("diod-tools-");
    sockDir = tempDir("diod-tools-sock-");
    writeFileSync(join(tmp.dir, "hello.txt"), "hello from ninep\n");
    writeFileSync(join(tmp.dir, "big.bin"), big);
    mkdirSync(join(tmp.dir, "sub"));
    writeFileSync(join(tmp.dir, "sub", "inner.txt"), "inner\n");
    chmodSync(join(tmp.dir, "hello.txt"), 0o640);
    server = new Server({ backend: passthrough(tmp.dir) });
    const a = await server.listen("tcp!127.0.0.1!0");
    if (a.network !== "tcp") throw new Error("tcp");
    tcp = `127.0.0.1:${a.port}`;
    unix = join(sockDir.dir, "9p.sock");
    await server.listen(`unix!${unix}`);
  });
  afterAll(async () => {
    await server?.close();
    tmp?.cleanup();
    sockDir?.cleanup();
  });

  it("diodcat reads a small file (Tauth answered 'not required', then attach, walk, lopen, read)", async () => {
    const { stdout, stderr } = await run(DIODCAT, ["-s", tcp, "-a", tmp.dir, "-t", "20", "hello.txt"]);
    expect(stderr).toBe("");
    expect(stdout).toBe("hello from ninep\n");
  });

  it("diodcat reads a 3 MiB file byte for byte at msize 64 KiB and 8 KiB, over TCP and a Unix socket", async () => {
    for (const [server, msize] of [
      [tcp, "65536"],
      [tcp, "8192"],
      [unix, "65536"],
    ] as const) {
      const { stdout } = await run(
        DIODCAT,
        ["-s", server, "-m", msize, "-a", tmp.dir, "-t", "30", "big.bin"],
        {
          encoding: "buffer",
          maxBuffer: 16 * 1024 * 1024,
        },
      );
      expect(stdout.length).toBe(big.length);
      expect(sha(stdout)).toBe(sha(big));
    }
  });

  it("diodcat reports a missing file as diod would (ENOENT) and exits 1", async () => {
    const e = await run(DIODCAT, ["-s", tcp, "-a", tmp.dir, "-t", "20", "no-such-file"]).then(
      () => undefined,
      (err: { code: number; stderr: string }) => err,
    );
    expect(e?.code).toBe(1);
    expect(e?.stderr).toMatch(/no-such-file: No such file or directory/);
  });

  it("diodls lists the root and a subdirectory", async () => {
    const { stdout, stderr } = await run(DIODLS, ["-s", tcp, "-a", tmp.dir, "-t", "20"]);
    expect(stderr).toBe("");
    expect(stdout.split("\n").filter(Boolean).sort()).toEqual(["big.bin", "hello.txt", "sub"]);
    const sub = await run(DIODLS, ["-s", unix, "-a", tmp.dir, "-t", "20", "sub"]);
    expect(sub.stdout.split("\n").filter(Boolean)).toEqual(["inner.txt"]);
  });

  it("diodls and diodcat attach to a subdirectory named by its host path (aname below the export)", async () => {
    const { stdout, stderr } = await run(DIODLS, ["-s", tcp, "-a", join(tmp.dir, "sub"), "-t", "20"]);
    expect(stderr).toBe("");
    expect(stdout.split("\n").filter(Boolean)).toEqual(["inner.txt"]);
    const cat = await run(DIODCAT, ["-s", tcp, "-a", join(tmp.dir, "sub"), "-t", "20", "inner.txt"]);
    expect(cat.stdout).toBe("inner\n");
  });

  it("diodls -l walks from the directory it is reading and shows each entry's mode and size", async () => {
    const { stdout, stderr } = await run(DIODLS, ["-s", tcp, "-a", tmp.dir, "-t", "20", "-l"]);
    expect(stderr).toBe("");
    const byName = new Map(
      stdout
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const f = line.trim().split(/\s+/);
          return [f[f.length - 1]!, { mode: f[0]!, size: Number(f[4]) }] as const;
        }),
    );
    expect([...byName.keys()].sort()).toEqual([".", "..", "big.bin", "hello.txt", "sub"]);
    expect(byName.get("hello.txt")).toEqual({ mode: "-rw-r-----.", size: 17 });
    expect(byName.get("big.bin")?.size).toBe(big.length);
    expect(byName.get("sub")?.mode.startsWith("d")).toBe(true);
  });
});

describe.skipIf(missing !== undefined || !existsSync("/usr/sbin/diod"))(
  "diodls -l against diod and against the passthrough",
  () => {
    it("lists the same entries with the same modes, link counts, owners and sizes", async () => {
      const tDiod = tempDir("diodls-diod-");
      const tOurs = tempDir("diodls-ours-");
      for (const d of [tDiod.dir, tOurs.dir]) {
        chmodSync(d, 0o755);
        writeFileSync(join(d, "plain"), "12345");
        chmodSync(join(d, "plain"), 0o640);
        writeFileSync(join(d, "setuid"), "");
        chmodSync(join(d, "setuid"), 0o4755);
        mkdirSync(join(d, "sticky"));
        chmodSync(join(d, "sticky"), 0o1777);
        symlinkSync("plain", join(d, "link"));
        await run("mkfifo", ["-m", "600", join(d, "fifo")]);
      }
      const diod = await startDiod(tDiod.dir);
      const server = new Server({ backend: passthrough(tOurs.dir) });
      try {
        const a = await server.listen("tcp!127.0.0.1!0");
        if (a.network !== "tcp") throw new Error("tcp");
        // mode, links, owner, group, size and name: not the times
        const list = async (addr: string, dir: string) => {
          const { stdout, stderr } = await run(DIODLS, ["-s", addr, "-a", dir, "-t", "20", "-l"]);
          expect(stderr).toBe("");
          return stdout
            .split("\n")
            .filter(Boolean)
            .map((line) => {
              const f = line.trim().split(/\s+/);
              return [...f.slice(0, 5), f[f.length - 1]].join(" ");
            })
            .sort();
        };
        // ".." of the export is the export itself here; diod shows the host directory above it.
        const notParent = (l: string) => !l.endsWith(" ..");
        const theirs = (await list(`127.0.0.1:${diod.port}`, tDiod.dir)).filter(notParent);
        const ours = (await list(`127.0.0.1:${a.port}`, tOurs.dir)).filter(notParent);
        expect(theirs.length).toBe(6);
        expect(ours).toEqual(theirs);
      } finally {
        await server.close();
        await diod.stop();
        tDiod.cleanup();
        tOurs.cleanup();
      }
    });
  },
);
