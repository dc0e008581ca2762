// The native fork helper's build, cache and choice (src/native-helper.ts), through real xcpufs
// processes: each has its own cache directory and compiler setting, as an operator's would.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { mount } from "@clustermatic/ninep/client";
import { afterAll, describe, expect, it } from "vitest";
import { findPerl } from "../src/fork-helper.js";
import { nativeForkHelper } from "../src/native-helper.js";
import { listeningOn, PKG, run, stopChild, xcpufsArgs } from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "xcpufs-native-"));
const haveCompiler = (await nativeForkHelper()).path !== undefined;
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
  await Promise.all(
    children.map((c) =>
      c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once("exit", r)) : null,
    ),
  );
  rmSync(work, { recursive: true, force: true });
});

function xcpufs(env: Record<string, string>, ...args: string[]): ChildProcess {
  const child = spawn(process.execPath, xcpufsArgs("-p", "0", "--no-auth", "-t", work, ...args), {
    cwd: PKG,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  children.push(child);
  return child;
}

/** The executable of the process that started a program on a node started with `env` and `args`. */
async function starter(env: Record<string, string>, ...args: string[]): Promise<string> {
  const child = xcpufs(env, ...args);
  const { address } = await listeningOn(child);
  const fs = await mount(address, {
    uname: "tester",
    n_uname: process.getuid?.() ?? 0,
    authenticate: async () => {},
  });
  try {
    const r = await run(fs, "/bin/sh", "sh -c 'echo $PPID'");
    expect(r.status).toBe("0");
    const helper = Number(r.out.trim());
    // Either kind shows in ps under the same name (ps -C xcpufs-fork-helper).
    expect(readFileSync(`/proc/${helper}/comm`, "utf8")).toBe("xcpufs-fork-hel\n");
    return readlinkSync(`/proc/${helper}/exe`);
  } finally {
    await fs.close();
    await stopChild(child);
  }
}

/** How a node started with `env` and `args` ends when it cannot start: its status and stderr. */
async function refused(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number | null; err: string }> {
  const child = xcpufs(env, ...args);
  let err = "";
  child.stderr?.on("data", (d) => (err += d));
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  return { code, err };
}

const PERL = /\/perl[\d.]*$/;

describe.skipIf(!haveCompiler || !findPerl())("the native fork helper", () => {
  it("is built on first use into a private cache, then taken from it without a compiler", async () => {
    const cache = join(work, "cache-a");
    const exe = await starter({ XCPUFS_HELPER_CACHE: cache });
    expect(exe.startsWith(`${cache}/fork-helper-`)).toBe(true);
    expect(statSync(cache).mode & 0o777).toBe(0o700);
    expect(statSync(exe).mode & 0o777).toBe(0o700);
    // Nothing left of the build but the binary.
    expect(readdirSync(cache)).toEqual([exe.slice(cache.length + 1)]);
    const built = statSync(exe).mtimeMs;
    expect(await starter({ XCPUFS_HELPER_CACHE: cache, CC: "/no/such/cc" }, "--fork-helper", "native")).toBe(
      exe,
    );
    expect(statSync(exe).mtimeMs).toBe(built);
  });

  it("is not built without a compiler: the perl helper starts programs, and --fork-helper native refuses to start", async () => {
    const env = { XCPUFS_HELPER_CACHE: join(work, "cache-b"), CC: "/no/such/cc" };
    expect(await starter(env)).toMatch(PERL);
    const r = await refused(env, "--fork-helper", "native");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/the native fork helper cannot be used: cannot build it: \/no\/such\/cc: .*ENOENT/);
    expect(existsSync(join(work, "cache-b")) ? readdirSync(join(work, "cache-b")) : []).toEqual([]);
  });

  it("is not taken from, nor built into, a cache directory others may write", async () => {
    const cache = join(work, "cache-c");
    const exe = await starter({ XCPUFS_HELPER_CACHE: cache });
    chmodSync(cache, 0o777);
    expect(await starter({ XCPUFS_HELPER_CACHE: cache })).toMatch(PERL);
    chmodSync(cache, 0o700);
    chmodSync(exe, 0o722);
    expect(await starter({ XCPUFS_HELPER_CACHE: cache })).toMatch(PERL);
    const open = join(work, "cache-d");
    mkdirSync(open, { mode: 0o777 });
    chmodSync(open, 0o777);
    expect(await starter({ XCPUFS_HELPER_CACHE: open })).toMatch(PERL);
    expect(readdirSync(open)).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)("is not run from a cache on a file system mounted noexec", async () => {
    const built = await starter({ XCPUFS_HELPER_CACHE: join(work, "cache-f") });
    const noexec = join(work, "noexec");
    mkdirSync(noexec);
    execFileSync("mount", ["-t", "tmpfs", "-o", "noexec,mode=0700", "tmpfs", noexec]);
    try {
      copyFileSync(built, join(noexec, basename(built)));
      chmodSync(join(noexec, basename(built)), 0o700);
      expect(await starter({ XCPUFS_HELPER_CACHE: noexec })).toMatch(PERL);
      const r = await refused({ XCPUFS_HELPER_CACHE: noexec }, "--fork-helper", "native");
      expect(r.err).toMatch(/cannot be executed here \(EACCES\)/);
    } finally {
      execFileSync("umount", [noexec]);
    }
  });

  it("is left alone with --fork-helper perl or XCPUFS_HELPER_CACHE=0", async () => {
    const cache = join(work, "cache-e");
    expect(await starter({ XCPUFS_HELPER_CACHE: cache }, "--fork-helper", "perl")).toMatch(PERL);
    expect(existsSync(cache)).toBe(false);
    expect(await starter({ XCPUFS_HELPER_CACHE: "0" })).toMatch(PERL);
  });

  it("refuses an unknown --fork-helper with a usage error", async () => {
    const r = await refused({}, "--fork-helper", "fast");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/invalid fork helper: fast \(auto, native or perl\)/);
  });
});
