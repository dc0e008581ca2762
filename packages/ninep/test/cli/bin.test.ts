// End to end: the built `ninep` binary serving a directory in one process and reading it in another.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const BIN = join(dirname(fileURLToPath(import.meta.url)), "../../dist/bin/ninep.js");
const missing = existsSync(BIN) ? undefined : `${BIN} not built (pnpm run build)`;
if (missing) {
  if (process.env.CI) throw new Error(missing);
  console.warn(`skipping ninep binary tests: ${missing}`);
}
const run = promisify(execFile);

describe.skipIf(missing !== undefined)("the ninep binary", () => {
  let server: ChildProcess | undefined;
  let dir: string | undefined;

  afterAll(async () => {
    if (server && server.exitCode === null) server.kill("SIGKILL");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("serves a directory until SIGTERM and exits 0; cat and ls read it", async () => {
    dir = await mkdtemp(join(tmpdir(), "ninep-bin-"));
    await chmod(dir, 0o755); // readable by whoever the client attaches as ($USER, else the user running it)
    await writeFile(join(dir, "greeting"), "hello from a child\n");
    const child = spawn(process.execPath, [BIN, "serve", dir, "--listen", "tcp!127.0.0.1!0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    server = child;
    const addr = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (d) => {
        out += d;
        const m = /on (tcp!\S+)/.exec(out);
        if (m) resolve(m[1] as string);
      });
      child.once("exit", (code) => reject(new Error(`serve exited ${code}`)));
    });
    const cat = await run(process.execPath, [BIN, "cat", addr, "/greeting", "--version", "9P2000.L"]);
    expect(cat.stdout).toBe("hello from a child\n");
    const ls = await run(process.execPath, [BIN, "ls", addr, "/"]);
    expect(ls.stdout).toBe("greeting\n");
    const bad = await run(process.execPath, [BIN, "cat", addr, "/missing"]).catch((e) => e);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(`ninep cat ${addr} /missing: file not found\n`);
    // A directory is refused in every dialect (9P2000 and .u would read its stat records).
    for (const version of ["9P2000", "9P2000.u", "9P2000.L"]) {
      const dirCat = await run(process.execPath, [BIN, "cat", addr, "/", "--version", version]).catch(
        (e) => e,
      );
      expect(dirCat.code, version).toBe(1);
      expect(dirCat.stderr, version).toBe(`ninep cat ${addr} /: is a directory\n`);
    }
    // Output that cannot be written is the command's failure, said at once (it waited for good).
    const full = await run(
      "/bin/sh",
      ["-c", `exec "$0" "$1" cat "$2" /greeting > /dev/full`, process.execPath, BIN, addr],
      {
        timeout: 30_000,
      },
    ).catch((e) => e);
    expect(full.code).toBe(1);
    expect(full.stderr).toBe("ninep: cannot write standard output (ENOSPC)\n");
    // An msize 9P cannot carry, or too small to hold a message, is a usage error.
    for (const argv of [
      ["cat", addr, "/greeting", "--msize", "0"],
      ["serve", dir, "--listen", "tcp!127.0.0.1!0", "--msize", "10"],
      ["serve", dir, "--listen", "tcp!127.0.0.1!0", "--msize", "99999999999"],
    ]) {
      const r = await run(process.execPath, [BIN, ...argv]).catch((e) => e);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.stderr, argv.join(" ")).toContain("--msize wants a number from 256 to 4294967295");
    }
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 120_000); // four node processes, one after the other
});

describe("the installed command", () => {
  const pkgDir = join(dirname(fileURLToPath(import.meta.url)), "../..");
  const launcher = join(pkgDir, "bin/ninep.cjs");

  it("is the committed bin/ninep.cjs, so a fresh checkout links it before anything is built", () => {
    const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
    expect(pkg.bin).toEqual({ ninep: "./bin/ninep.cjs" });
    expect(pkg.files).toContain("bin");
    expect(statSync(launcher).mode & 0o111).toBe(0o111);
  });

  it.skipIf(missing !== undefined)("runs the build when started as a command (through sh)", async () => {
    const { stdout } = await run(launcher, ["--version"]);
    expect(stdout).toMatch(/^ninep \d+\.\d+\.\d+/);
  });

  it("says the package needs building when there is no build beside it (exit 1)", async () => {
    const pkgCopy = await mkdtemp(join(tmpdir(), "ninep-unbuilt-"));
    try {
      await mkdir(join(pkgCopy, "bin"));
      await copyFile(launcher, join(pkgCopy, "bin/ninep.cjs"));
      await chmod(join(pkgCopy, "bin/ninep.cjs"), 0o755);
      const err = await run(join(pkgCopy, "bin/ninep.cjs"), ["--version"]).catch((e) => e);
      expect(err.code).toBe(1);
      expect(err.stderr).toBe(
        `ninep: ${join(pkgCopy, "dist/bin/ninep.js")} is missing: build the package first (pnpm build)\n`,
      );
    } finally {
      await rm(pkgCopy, { recursive: true, force: true });
    }
  });
});
