// The original C XCPU tools as a side-by-side column of the xcpufs and xrx benchmarks. They are
// not packaged anywhere we can install from: a site that has them built points BENCH_ORIGINAL at
// the directory holding their binaries (`xcpufs`, `xrx`, `xuserset`). Everything here talks to
// them only as their users do: command lines, keys in files, 9P on loopback.

import { spawnSync } from "node:child_process";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import {
  accessSync,
  constants,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

/** The directory of the original binaries, or undefined when BENCH_ORIGINAL is not set. */
export function originalDir(): string | undefined {
  const dir = process.env.BENCH_ORIGINAL;
  if (!dir) return undefined;
  for (const tool of ["xcpufs", "xrx", "xuserset"]) {
    try {
      accessSync(join(dir, tool), constants.X_OK);
    } catch {
      throw new Error(`BENCH_ORIGINAL=${dir}: no executable ${tool} there`);
    }
  }
  return dir;
}

/** Throwaway RSA keys in the formats the original reads: PEM private keys, `ssh-rsa` public lines. */
export interface OriginalKeys {
  adminKey: string;
  adminPub: string;
  userKey: string;
  userPub: string;
  /** The admin private key, for signing challenges in-process. */
  admin: KeyObject;
}

/** How a public key is written as an OpenSSH line (`@clustermatic/ninep/keys`' publicKeyLine). */
export type PublicKeyLine = (key: KeyObject, comment?: string) => string;

export function makeOriginalKeys(dir: string, publicKeyLine: PublicKeyLine): OriginalKeys {
  mkdirSync(dir, { recursive: true });
  const write = (name: string) => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const key = join(dir, name);
    writeFileSync(key, privateKey.export({ type: "pkcs1", format: "pem" }), { mode: 0o600 });
    writeFileSync(`${key}.pub`, `${publicKeyLine(publicKey, `bench-${name}`)}\n`);
    return { key, pub: `${key}.pub`, privateKey };
  };
  const admin = write("admin_key");
  const user = write("id_rsa");
  return {
    adminKey: admin.key,
    adminPub: admin.pub,
    userKey: user.key,
    userPub: user.pub,
    admin: admin.privateKey,
  };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The pid of the process holding a TCP socket that listens on `port`, from /proc. */
export function listenerPid(port: number): number | undefined {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex}`) && f[3] === "0A") inodes.add(f[9] as string);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1] as string)) return Number(pid);
      } catch {}
    }
  }
  return undefined;
}

export interface OriginalNode {
  port: number;
  pid: number;
  address: string;
}

/**
 * Starts the original xcpufs as it runs on a node (it forks into the background; without -d it
 * prints nothing) and finds the daemon by its listening port.
 */
export async function startOriginalXcpufs(dir: string, tmp: string, adminPub: string): Promise<OriginalNode> {
  const port = await freePort();
  mkdirSync(tmp, { recursive: true });
  const r = spawnSync(join(dir, "xcpufs"), ["-p", String(port), "-t", tmp, "-a", adminPub], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { PATH: "/usr/bin:/bin" },
  });
  if (r.status !== 0) throw new Error(`original xcpufs exited ${r.status}: ${r.stderr}`);
  const until = Date.now() + 10_000;
  for (;;) {
    const pid = listenerPid(port);
    if (pid) return { port, pid, address: `tcp!127.0.0.1!${port}` };
    if (Date.now() > until) throw new Error(`original xcpufs did not listen on port ${port}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** SIGTERM, then SIGKILL if it is still there after 5 s; resolves once the process is gone. */
export async function stopOriginal(node: OriginalNode): Promise<void> {
  const alive = () => {
    try {
      process.kill(node.pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(node.pid, "SIGTERM");
  const until = Date.now() + 5000;
  while (alive()) {
    if (Date.now() > until) {
      process.kill(node.pid, "SIGKILL");
      break;
    }
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** Registers the invoking user (its uid, group xcpu-admin) with `userPub` on every node, with the original xuserset. */
export function registerOriginalUser(dir: string, keys: OriginalKeys, nodes: readonly OriginalNode[]): void {
  const list = nodes.map((n) => `127.0.0.1!${n.port}`).join(",");
  const uid = process.getuid?.() ?? 0;
  const name = uid === 0 ? "root" : (process.env.USER ?? `u${uid}`);
  const r = spawnSync(
    join(dir, "xuserset"),
    ["add", "-A", keys.adminKey, list, name, String(uid), "xcpu-admin", keys.userPub],
    { encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`original xuserset add failed (${r.status}): ${r.stderr}`);
}
