// Tree spawn: `clone K addr/sid[/passkey],…` copies a session to sessions on other nodes, delegating
// part of the list to the first children so that copies fan out as a tree.

import { createHash } from "node:crypto";
import { lstat, readdir, realpath } from "node:fs/promises";
import { join } from "node:path";
import { type Fid, type Fsys, mount } from "@clustermatic/ninep/client";
import { OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import { causeOf, connectFailureWords, ProtocolError, TimeoutError } from "@clustermatic/ninep/errors";
import { XcpuError } from "./errors.js";
import { openFileInside, resolvesInside } from "./local-files.js";
import { DEFAULT_MSIZE } from "./server.js";
import type { Session } from "./session.js";
import type { User } from "./users.js";
import type { Xcpufs } from "./xcpufs.js";

/** Default xcpufs port (XCPU_PORT). */
export const XCPU_PORT = 6667;
/** Size of the copies' writes. */
const CHUNK = 32 * 1024;

export interface Target {
  /** Dial string (`[tcp!]host[!port]`, `host:port`). */
  addr: string;
  sid: number;
  passkey: string | undefined;
}

export interface Child {
  target: Target;
  delegated: Target[];
}

/** Parse an address list `addr/sid[/passkey],…` (empty elements ignored). */
export function parseTargets(list: string): Target[] {
  const out: Target[] = [];
  for (const el of list.split(",")) {
    if (el === "") continue;
    const parts = el.split("/");
    if (parts.length < 2 || parts.length > 3) throw new XcpuError("invalid address format");
    const [addr, sidText, passkey] = parts as [string, string, string | undefined];
    if (addr === "" || !/^\d+$/.test(sidText)) throw new XcpuError("invalid address format");
    if (passkey !== undefined && !/^[0-9a-f]{32}$/.test(passkey))
      throw new XcpuError("invalid address format");
    out.push({ addr, sid: Number(sidText), passkey });
  }
  return out;
}

export function formatTargets(ts: readonly Target[]): string {
  return ts.map((t) => `${t.addr}/${t.sid}${t.passkey ? `/${t.passkey}` : ""},`).join("");
}

/**
 * The fan-out rule: with K ≤ 0 every target is a direct child; otherwise exactly min(K, S) direct
 * children, each delegated at most m − 1 targets where m = ceil(S / k).
 */
export function fanout<T>(targets: readonly T[], K: number): { target: T; delegated: T[] }[] {
  const S = targets.length;
  if (K <= 0 || S === 0) return targets.map((t) => ({ target: t, delegated: [] }));
  const k = Math.min(K, S);
  const m = Math.ceil(S / k);
  const g = m > 1 ? Math.ceil((S - k) / (m - 1)) : 0;
  const cut = S - k + g;
  const out: { target: T; delegated: T[] }[] = [];
  for (let i = 0; i < cut; i += m) {
    const group = targets.slice(i, Math.min(i + m, cut));
    out.push({ target: group[0] as T, delegated: group.slice(1) });
  }
  for (let i = cut; i < S; i++) out.push({ target: targets[i] as T, delegated: [] });
  return out;
}

/** Run a session's `clone` command: copy to every direct child (in parallel), then answer. */
export async function cloneSession(
  fs: Xcpufs,
  s: Session,
  user: User,
  maxText: string,
  list: string,
  signal: AbortSignal,
): Promise<void> {
  if (!/^-?\d+$/.test(maxText)) throw new XcpuError("invalid maxsession format");
  const K = Number(maxText);
  const targets = parseTargets(list);
  const children = fanout(targets, K);
  const results = await Promise.allSettled(children.map((c) => copyTo(fs, s, user, c, K, signal)));
  let err = "";
  results.forEach((r, i) => {
    if (r.status === "rejected") {
      // Whatever answers at an address that is not a 9P server is not repeated back: the first
      // bytes of another service's greeting (read as a message size) tell nothing useful.
      const reason = causeOf(r.reason, ProtocolError)
        ? "not a 9P server (its reply is not a 9P message)"
        : (r.reason instanceof Error ? r.reason.message : String(r.reason)) +
          connectFailureWords((r.reason as { cause?: unknown } | undefined)?.cause);
      // A child's own clone failure is its list of failed targets, each ending in a comma.
      err += `${children[i]?.target.addr}: ${reason.replace(/,$/, "")},`;
    }
  });
  if (err) throw new XcpuError(err);
}

/** Connect to a child node as `user`, answering the challenge with the passkey. */
async function connect(fs: Xcpufs, user: User, t: Target, signal: AbortSignal): Promise<Fsys> {
  return mount(t.addr, {
    uname: user.name,
    n_uname: user.uid,
    defaultPort: XCPU_PORT,
    msize: DEFAULT_MSIZE,
    signal,
    connectTimeoutMs: 10_000,
    // A child that stops answering while it logs in fails within the liveness limit too (the
    // probes start once it is attached).
    timeoutMs: cloneAliveMs(),
    trace: fs.clientTrace,
    authenticate: async (afid) => {
      const challenge = await afid.read(4096);
      if (t.passkey) {
        const resp = createHash("sha1").update(challenge).update(t.passkey, "latin1").digest();
        await afid.write(resp);
      }
    },
  });
}

async function writeAll(fid: Fid, data: Buffer, signal: AbortSignal): Promise<void> {
  for (let off = 0; off < data.length; off += CHUNK) {
    const n = await fid.write(off, data.subarray(off, off + CHUNK), { signal });
    if (n <= 0) throw new XcpuError("short write");
  }
}

/**
 * How long a child node of a tree spawn (being copied to, or passing the copy on) may leave a
 * liveness question (a stat of its root) unanswered before it is given up on; asked every third
 * of that. XCPUFS_CLONE_ALIVE_MS overrides.
 */
function cloneAliveMs(): number {
  const v = Number(process.env.XCPUFS_CLONE_ALIVE_MS);
  return Number.isFinite(v) && v > 0 ? v : 30_000;
}

/** Stats `remote`'s root every third of cloneAliveMs() until stopped; aborts `ac` when one goes unanswered. */
function probeWhile(remote: Fsys, ac: AbortController): () => void {
  const limit = cloneAliveMs();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const next = () => {
    timer = setTimeout(
      () => {
        remote.root.stat({ timeoutMs: limit }).then(
          () => {
            if (!stopped) next();
          },
          (err) => {
            if (!stopped && err instanceof TimeoutError)
              ac.abort(new XcpuError(`no answer for ${limit / 1000} s during the copy`));
          },
        );
      },
      Math.max(50, Math.round(limit / 3)),
    );
    timer.unref();
  };
  next();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

async function copyTo(
  fs: Xcpufs,
  s: Session,
  user: User,
  c: Child,
  K: number,
  signal: AbortSignal,
): Promise<void> {
  const remote = await connect(fs, user, c.target, signal);
  const base = String(c.target.sid);
  // A child that stops answering is given up on at once: its connection is dropped, which fails
  // whatever request waits on it (each would otherwise wait out its own timeout, and then a flush
  // and a clunk theirs), and the copy fails with why.
  const silent = new AbortController();
  silent.signal.addEventListener("abort", () => remote.client.destroy(), { once: true });
  const stopProbes = probeWhile(remote, silent);
  try {
    await copyFiles(remote, s, base, c, K, signal);
  } catch (err) {
    throw silent.signal.aborted ? silent.signal.reason : err;
  } finally {
    stopProbes();
    if (!silent.signal.aborted) await remote.close().catch(() => {});
  }
}

async function copyFiles(
  remote: Fsys,
  s: Session,
  base: string,
  c: Child,
  K: number,
  signal: AbortSignal,
): Promise<void> {
  // Before the files. An empty argv or env is not copied (the child keeps its own, as with the
  // original) but still opened for writing: a target that is this very session refuses that
  // while it clones, before any file is touched.
  for (const name of ["env", "argv"] as const) {
    const data = s[name];
    const fid = await remote.open(`${base}/${name}`, data.length > 0 ? OWRITE | OTRUNC : OWRITE, {
      signal,
    });
    try {
      await writeAll(fid, data, signal);
    } finally {
      await fid.clunk().catch(() => {});
    }
  }
  await copyDir(remote, await realpath(s.dir), s.dir, `${base}/fs`, signal);
  if (c.delegated.length > 0) {
    const fid = await remote.open(`${base}/ctl`, OWRITE, { signal });
    // The reply comes when the child's whole subtree is copied, however long that takes; a
    // child that stops answering meanwhile is given up on by copyTo's probes (its subtree is then
    // found incomplete by whoever started the tree spawn, and copied to directly).
    try {
      await fid.write(0, Buffer.from(`clone ${K} ${formatTargets(c.delegated)}\n`), {
        signal,
        timeoutMs: 0,
      });
    } finally {
      await fid.clunk().catch(() => {});
    }
  }
}

/**
 * Copy a session directory's content into a remote directory (created or reused), recursively.
 * The server reads it with its own (root's) rights in a directory the user's programs write to,
 * so only real directories are entered, and a symbolic link is copied, as the file it names, only
 * when that is a regular file inside the session directory (`root`, a real path): links leading
 * out of it, links to directories (`ln -s . loop` would never end) and dangling links are skipped.
 */
async function copyDir(
  remote: Fsys,
  root: string,
  local: string,
  rpath: string,
  signal: AbortSignal,
): Promise<void> {
  const entries = await readdir(local, { withFileTypes: true });
  for (const e of entries) {
    const lp = join(local, e.name);
    const rp = `${rpath}/${e.name}`;
    if (e.isDirectory()) {
      // A directory swapped for a link since the listing is not entered.
      if (!(await resolvesInside(root, lp))) continue;
      const st = await lstat(lp);
      if (!st.isDirectory()) continue;
      try {
        await remote.mkdir(rp, st.mode & 0o777, { signal });
      } catch (err) {
        if (!/exist/i.test((err as Error).message)) throw err;
      }
      await copyDir(remote, root, lp, rp, signal);
    } else if (e.isFile() || e.isSymbolicLink()) {
      const fh = await openFileInside(root, lp);
      if (!fh) continue;
      let fid: Fid | undefined;
      try {
        const st = await fh.stat();
        try {
          fid = await remote.create(rp, st.mode & 0o777, OWRITE, { signal });
        } catch (err) {
          if (!/exist/i.test((err as Error).message)) throw err;
          fid = await remote.open(rp, OWRITE | OTRUNC, { signal });
        }
        const buf = Buffer.alloc(CHUNK);
        let off = 0;
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, CHUNK, off);
          if (bytesRead === 0) break;
          await fid.write(off, buf.subarray(0, bytesRead), { signal });
          off += bytesRead;
        }
      } finally {
        await fh.close();
        await fid?.clunk().catch(() => {});
      }
    }
  }
}
