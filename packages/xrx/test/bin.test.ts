// The built commands (dist/bin): each is a small shim that runs the CommonJS bundle beside it
// through a per-user V8 code cache. These tests start the real files as an installed user would.
import { execFile, spawn } from "node:child_process";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupAll, startCluster, type TestNode, tempDir } from "./harness.js";

const PKG = join(dirname(fileURLToPath(import.meta.url)), "..");
const BIN = join(PKG, "dist/bin");
const COMMANDS = ["xrx", "xk", "xps", "xuserset", "xgroupset", "xgetent", "xrxd"];
const missing = COMMANDS.map((n) => join(BIN, `${n}.js`)).filter(
  (f) => !existsSync(f) || !existsSync(f.replace(/\.js$/, ".cjs")),
);
if (missing.length > 0) {
  const msg = `${missing.join(", ")} not built (pnpm run build)`;
  if (process.env.CI) throw new Error(msg);
  console.warn(`skipping built-command tests: ${msg}`);
}
const run = promisify(execFile);

/** Runs a built command with its own cache directory; resolves with code and output. */
async function runBin(name: string, args: string[], cache: string, env: NodeJS.ProcessEnv = {}) {
  try {
    const r = await run(join(BIN, `${name}.js`), args, {
      env: { ...process.env, CLUSTERMATIC_COMPILE_CACHE: cache, ...env },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? -1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

describe.skipIf(missing.length > 0)("the built xrx, xk, xps, xuserset, xgroupset, xgetent and xrxd", () => {
  let node: TestNode;
  beforeAll(async () => {
    node = (await startCluster(1)).nodes[0]!;
  });
  afterAll(cleanupAll);

  it("are executable files that print their usage", async () => {
    for (const name of COMMANDS) {
      const r = await runBin(name, ["--help"], tempDir("xrx-cc-help-"));
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`usage: ${name}`);
    }
  });

  it("are pure ASCII bundles (one other character makes V8 keep the whole source as UTF-16)", () => {
    // Such a character in a comment that survives bundling (a JSDoc line in a class) costs every
    // start a UTF-8 decode of the whole bundle and slower scanning of each lazily compiled function.
    for (const name of COMMANDS) {
      const text = readFileSync(join(BIN, `${name}.cjs`), "latin1");
      const at = text.search(/[^\x00-\x7f]/);
      expect(at === -1 ? "" : `${name}.cjs: ${JSON.stringify(text.slice(at - 40, at + 10))}`).toBe("");
    }
  });

  it("print the package's version", async () => {
    const { version } = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8"));
    for (const name of COMMANDS) {
      const r = await runBin(name, ["--version"], tempDir("xrx-cc-version-"));
      expect(r).toEqual({ code: 0, stdout: `${name} ${version}\n`, stderr: "" });
    }
  });

  it("write a code cache on the first run and start from it on the next", async () => {
    const cache = tempDir("xrx-cc-");
    const first = await runBin("xrx", ["--no-key", node.spec, "echo", "one"], cache);
    expect(first).toMatchObject({ code: 0, stdout: "one\n" });
    const files = readdirSync(cache);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(new RegExp(`^xrx-[0-9a-f]{16}-${process.version}-${process.arch}\\.v8$`));
    const path = join(cache, files[0]!);
    expect(statSync(path).size).toBeGreaterThan(10_000);
    const inode = statSync(path).ino;
    // An accepted cache is kept as it is (a rejected one would be replaced by a new file).
    const second = await runBin("xrx", ["--no-key", node.spec, "echo", "two"], cache);
    expect(second).toMatchObject({ code: 0, stdout: "two\n" });
    expect(statSync(path).ino).toBe(inode);
  }, 60_000);

  it("write no code cache from a run that only printed help or a version, or refused its arguments", async () => {
    const cache = tempDir("xrx-cc-brief-");
    expect((await runBin("xrx", ["--help"], cache)).code).toBe(0);
    expect((await runBin("xrx", ["-V"], cache)).code).toBe(0);
    expect((await runBin("xrx", ["--no-such-option"], cache)).code).toBe(2);
    expect(readdirSync(cache)).toEqual([]);
    // The first real run writes it, with the functions a launch compiles.
    expect(await runBin("xrx", ["--no-key", node.spec, "echo", "real"], cache)).toMatchObject({ code: 0 });
    expect(readdirSync(cache)).toHaveLength(1);
  }, 60_000);

  it("ignore a corrupt cache and replace it; drop caches of other builds", async () => {
    const cache = tempDir("xrx-cc-bad-");
    await runBin("xrx", ["--no-key", node.spec, "echo", "first"], cache);
    const [file] = readdirSync(cache);
    writeFileSync(join(cache, file!), Buffer.alloc(5000, 0x5a));
    writeFileSync(join(cache, "xrx-0000000000000000-v0.0.0-x64.v8"), "stale");
    writeFileSync(join(cache, "xps-0000000000000000-v0.0.0-x64.v8"), "another command's");
    const r = await runBin("xrx", ["--no-key", node.spec, "echo", "ok"], cache);
    expect(r).toMatchObject({ code: 0, stdout: "ok\n" });
    expect(readdirSync(cache).sort()).toEqual(["xps-0000000000000000-v0.0.0-x64.v8", file]);
    expect(readFileSync(join(cache, file!)).subarray(0, 16).equals(Buffer.alloc(16, 0x5a))).toBe(false);
  }, 60_000);

  it("take compiled code only from a cache nobody else could have written", async () => {
    const cache = tempDir("xrx-cc-perm-");
    chmodSync(cache, 0o777);
    const open = await runBin("xrx", ["--no-key", node.spec, "echo", "a"], cache);
    expect(open).toMatchObject({ code: 0, stdout: "a\n" });
    expect(readdirSync(cache)).toEqual([]); // a directory others may write to gets no cache
    chmodSync(cache, 0o700);
    await runBin("xrx", ["--no-key", node.spec, "echo", "b"], cache);
    const [file] = readdirSync(cache);
    const path = join(cache, file!);
    chmodSync(path, 0o666);
    const inode = statSync(path).ino;
    const again = await runBin("xrx", ["--no-key", node.spec, "echo", "c"], cache);
    expect(again).toMatchObject({ code: 0, stdout: "c\n" });
    // not taken: replaced by a fresh private file
    expect(statSync(path).ino).not.toBe(inode);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  }, 60_000);

  it("run normally when the cache cannot be written, or when it is turned off", async () => {
    // A regular file where the cache directory should be (directory modes do not stop root).
    const blocker = join(tempDir("xrx-cc-ro-"), "not-a-directory");
    writeFileSync(blocker, "");
    const blocked = await runBin("xrx", ["--no-key", node.spec, "echo", "still"], join(blocker, "sub"));
    expect(blocked).toMatchObject({ code: 0, stdout: "still\n", stderr: "" });
    const off = await runBin("xrx", ["--no-key", node.spec, "echo", "off"], "0");
    expect(off).toMatchObject({ code: 0, stdout: "off\n", stderr: "" });
    expect(existsSync(join(process.cwd(), "0"))).toBe(false);
  }, 60_000);

  it("start without reading NODE_EXTRA_CA_CERTS and pass every argument through as given", async () => {
    // Node reads that file before any script runs (and warns when it cannot); the commands make no
    // TLS connections, so their first line drops the variable before node starts.
    const cache = tempDir("xrx-cc-ca-");
    const missingFile = join(cache, "no-such-ca.pem");
    for (const name of COMMANDS) {
      const r = await runBin(name, ["--version"], cache, { NODE_EXTRA_CA_CERTS: missingFile });
      expect(r).toMatchObject({ code: 0, stderr: "" });
    }
    const args = ["a b", "", "$HOME", "*", "'quoted'", '"double"', "back\\slash", "-n", "x\ny"];
    const r = await runBin("xrx", ["--no-key", node.spec, "printf", "[%s]", ...args], cache, {
      NODE_EXTRA_CA_CERTS: missingFile,
    });
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toBe(args.map((a) => `[${a}]`).join(""));
  }, 60_000);

  it("give a program end of file at once when xrx's input is /dev/null, or closed", async () => {
    const cache = tempDir("xrx-cc-devnull-");
    const xrx = `"${join(BIN, "xrx.js")}" --no-key '${node.spec}' sh -c 'wc -c; echo done'`;
    for (const redirect of ["< /dev/null", "<&-"]) {
      const child = spawn("sh", ["-c", `exec ${xrx} ${redirect}`], {
        env: { ...process.env, CLUSTERMATIC_COMPILE_CACHE: cache },
        stdio: ["pipe", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      const code = await new Promise((resolve) => child.on("close", resolve));
      expect({ redirect, code, out: out.trim().split(/\s+/), err }).toEqual({
        redirect,
        code: 0,
        out: ["0", "done"],
        err: "",
      });
    }
  }, 60_000);

  it("exit with the program's status and report errors like the source build", async () => {
    const cache = tempDir("xrx-cc-status-");
    const failed = await runBin("xrx", ["--no-key", node.spec, "sh", "-c", "exit 3"], cache);
    expect(failed.code).toBe(3);
    const usage = await runBin("xrx", ["--bogus"], cache);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("--bogus");
  }, 60_000);
});
