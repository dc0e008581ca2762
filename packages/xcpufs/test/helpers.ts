// Test helpers: keys, authenticated mounts, running a job through the session files.

import type { ChildProcess } from "node:child_process";
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Fid, type Fsys, mount } from "@clustermatic/ninep/client";
import { OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import { RemoteError } from "@clustermatic/ninep/errors";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { passkeyResponse, toOpenSshLine } from "../src/keys.js";
import { nativeForkHelper } from "../src/native-helper.js";
import type { XcpufsOptions } from "../src/server.js";

/** The ways a node starts programs, for tests of what they must all do alike. */
export const STARTERS: ReadonlyArray<{
  label: string;
  opts: Pick<XcpufsOptions, "forkHelper" | "noForkHelper">;
  args: string[];
}> = [
  ...((await nativeForkHelper()).path
    ? [
        {
          label: "native fork helper",
          opts: { forkHelper: "native" as const },
          args: ["--fork-helper", "native"],
        },
      ]
    : []),
  { label: "perl fork helper", opts: { forkHelper: "perl" }, args: ["--fork-helper", "perl"] },
  { label: "spawn()", opts: { noForkHelper: true }, args: ["--no-fork-helper"] },
];

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  line: string;
}

export function rsaKey(bits = 2048): KeyPair {
  const k = generateKeyPairSync("rsa", { modulusLength: bits });
  return { ...k, line: toOpenSshLine(k.publicKey, "test@xcpufs") };
}

export function edKey(): KeyPair {
  const k = generateKeyPairSync("ed25519");
  return { ...k, line: toOpenSshLine(k.publicKey, "test@xcpufs") };
}

export interface Login {
  uname: string;
  uid: number;
  /** Sign with this key (RSA SHA-1 or Ed25519). */
  key?: KeyObject;
  /** Answer with a passkey. */
  passkey?: string;
  /** Write these bytes as the response. */
  raw?: Buffer;
}

/** Mount an xcpufs as a user, running the challenge–response. */
export function login(address: string, who: Login): Promise<Fsys> {
  return mount(address, {
    uname: who.uname,
    n_uname: who.uid,
    msize: 32792,
    authenticate: async (afid) => {
      const ch = await afid.read(4096);
      let resp: Buffer | undefined = who.raw;
      if (who.key) resp = sign(who.key.asymmetricKeyType === "rsa" ? "sha1" : null, ch, who.key);
      if (who.passkey) resp = passkeyResponse(ch, who.passkey);
      if (resp && resp.length > 0) await afid.write(resp);
    },
  });
}

export { decryptPasskey } from "../src/keys.js";

/**
 * The node of the tests that check the original's behaviour statement by statement: an admin key,
 * one user, alice (uid 5001, group users 5000), and once started a connection as each.
 */
export function adminAndAlice(tmpPrefix: string) {
  const admin = rsaKey();
  const alice = rsaKey();
  const tmp = mkdtempSync(join(tmpdir(), tmpPrefix));
  const adminLogin = { uname: "xcpu-admin", uid: 65530, key: admin.privateKey };
  const aliceLogin = { uname: "alice", uid: 5001, key: alice.privateKey };
  return {
    admin,
    alice,
    tmp,
    adminLogin,
    aliceLogin,
    async start(env: Record<string, string>): Promise<{ h: XcpufsHandle; adm: Fsys; fs: Fsys }> {
      const h = await startXcpufs({
        port: 0,
        listen: "127.0.0.1",
        adminKey: admin.line,
        sameUser: true,
        tmpdir: tmp,
        stateDir: tmp,
        env,
      });
      const adm = await login(h.address, adminLogin);
      await cmd(adm, "ctl", `group-add users 5000\nuser-add alice 5001 users '${alice.line}'\n`);
      return { h, adm, fs: await login(h.address, aliceLogin) };
    },
    async stop(started: { h?: XcpufsHandle; adm?: Fsys; fs?: Fsys }): Promise<void> {
      await started.fs?.close();
      await started.adm?.close();
      await started.h?.close();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

export async function readAll(fid: Fid, count = 8192): Promise<Buffer> {
  const parts: Buffer[] = [];
  let off = 0n;
  for (;;) {
    const b = await fid.read(off, count);
    if (b.length === 0) return Buffer.concat(parts);
    parts.push(b);
    off += BigInt(b.length);
  }
}

export async function write(fs: Fsys, path: string, text: string, mode = OWRITE | OTRUNC): Promise<void> {
  const fid = await fs.open(path, mode);
  try {
    await fid.write(0, text);
  } finally {
    await fid.clunk();
  }
}

export async function cmd(fs: Fsys, path: string, text: string): Promise<void> {
  const fid = await fs.open(path, OWRITE);
  try {
    await fid.write(0, text);
  } finally {
    await fid.clunk();
  }
}

export interface Job {
  sid: string;
  ctl: Fid;
  wait: Fid;
  stdin: Fid;
  stdout: Fid;
  stderr: Fid;
  close(): Promise<void>;
}

/** Open a session the way the original clients do: clone, then ctl/wait/stdin/stdout/stderr, then close clone. */
export async function openJob(fs: Fsys): Promise<Job> {
  const clone = await fs.open("clone", OREAD);
  const sid = (await clone.read(0, 64)).toString();
  const ctl = await fs.open(`${sid}/ctl`, OWRITE);
  const wait = await fs.open(`${sid}/wait`, OREAD);
  const stdin = await fs.open(`${sid}/stdin`, OWRITE);
  const stdout = await fs.open(`${sid}/stdout`, OREAD);
  const stderr = await fs.open(`${sid}/stderr`, OREAD);
  await clone.clunk();
  return {
    sid,
    ctl,
    wait,
    stdin,
    stdout,
    stderr,
    async close() {
      await Promise.all([ctl, wait, stdin, stdout, stderr].map((f) => f.clunk().catch(() => {})));
    },
  };
}

/** Run `argv` with program `prog` and return stdout, stderr and the wait status. */
export async function run(
  fs: Fsys,
  prog: string,
  argv: string,
  opts: { stdin?: string; env?: string; keep?: boolean } = {},
): Promise<{ sid: string; out: string; err: string; status: string; job: Job }> {
  const job = await openJob(fs);
  if (opts.env !== undefined) await write(fs, `${job.sid}/env`, opts.env, OWRITE);
  await write(fs, `${job.sid}/argv`, argv);
  await job.ctl.write(0, `id /1\nexec ${prog}\n`);
  if (opts.stdin !== undefined) {
    if (opts.stdin.length > 0) await job.stdin.write(0, opts.stdin);
    await job.ctl.write(0, "close stdin\n");
  }
  const [out, err, status] = await Promise.all([readAll(job.stdout), readAll(job.stderr), readAll(job.wait)]);
  if (!opts.keep) await job.close();
  return { sid: job.sid, out: out.toString(), err: err.toString(), status: status.toString(), job };
}

/** Pids of the live (non-zombie) processes whose process group is `pgid`. */
export function liveInGroup(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = readFileSync(`/proc/${name}/stat`, "latin1");
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      if (Number(f[2]) === pgid && f[0] !== "Z") out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * Waits until process `pid` runs the program named `argv0`. The server hands out a job's pid as
 * soon as it forks; until the child has exec'd, /proc shows the fork helper's command line (and
 * during the exec, an empty one).
 */
export async function untilExecuted(pid: number | string, argv0: string): Promise<void> {
  await until(() => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0")[0] === argv0;
    } catch {
      return false;
    }
  });
}

/** Live processes whose command line contains `marker`. */
export function liveWithMarker(marker: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, "latin1");
      const st = readFileSync(`/proc/${name}/stat`, "latin1");
      const state = st.slice(st.lastIndexOf(")") + 2).split(" ")[0];
      if (cmd.includes(marker) && state !== "Z") out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

export async function until(cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The session directories (`xcpu-*`) under a node's tmpdir, as paths relative to it: directly in
 * it, or in the node's own `xcpufs-*` directory there (made when the node runs as root).
 */
export function sessionDirsIn(tmpdir: string): string[] {
  const out: string[] = [];
  for (const n of readdirSync(tmpdir)) {
    if (n.startsWith("xcpu-")) out.push(n);
    else if (n.startsWith("xcpufs-"))
      for (const m of readdirSync(join(tmpdir, n))) if (m.startsWith("xcpu-")) out.push(`${n}/${m}`);
  }
  return out;
}

/** The Rerror of a failing call: its text and 9P2000.u errno. */
export async function rerror(p: Promise<unknown>): Promise<{ ename: string; errno: number | undefined }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RemoteError) return { ename: err.message, errno: err.errno };
    throw err;
  }
  throw new Error("the call succeeded");
}

/** The Rerror of writing `line` to the root `ctl` of `f`. */
export async function rootCtlError(
  f: Fsys,
  line: string,
): Promise<{ ename: string; errno: number | undefined }> {
  const fid = await f.open("ctl", OWRITE);
  try {
    return await rerror(fid.write(0, line));
  } finally {
    await fid.clunk();
  }
}

/** This package's directory. */
export const PKG = dirname(dirname(fileURLToPath(import.meta.url)));

/** Node's arguments that run the xcpufs command from its sources with `args`. */
export function xcpufsArgs(...args: string[]): string[] {
  return ["--conditions=@clustermatic/source", "--import", "tsx", join(PKG, "src/bin/xcpufs.ts"), ...args];
}

/**
 * The address a starting xcpufs child prints (`listening on ADDRESS`) and all it wrote on stderr
 * so far; throws with that text when it exits first.
 */
export async function listeningOn(child: ChildProcess): Promise<{ address: string; stderr: () => string }> {
  let err = "";
  child.stderr?.on("data", (d) => {
    err += d;
  });
  await until(() => /listening on \S+\n/.test(err) || child.exitCode !== null, 60_000);
  const m = /listening on (\S+)\n/.exec(err);
  if (!m) throw new Error(`xcpufs did not start: ${err}`);
  return { address: m[1] as string, stderr: () => err };
}

/**
 * Stops an xcpufs child: SIGTERM, then SIGKILL if it has not exited within `ms` (a server that
 * a regression left hung must not outlive its test).
 */
export async function stopChild(child: ChildProcess, ms = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  await exited;
  clearTimeout(timer);
}
