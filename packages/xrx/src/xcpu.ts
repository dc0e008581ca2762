// The client side of xcpufs: connect and authenticate to a node, create or attach to sessions,
// stage files into a session's fs/, set argv/env, exec, stream stdio, wait, signal, wipe, list
// processes, kill. Every error raised here names the node (XcpuError).
import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import {
  type AuthFid,
  afterIoTimeout,
  type CallOptions,
  Client,
  dial,
  type Fid,
} from "@clustermatic/ninep/client";
import { DMDIR, ORDWR, OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import { ConnectionError, causeOf, connectFailureWords, RemoteError } from "@clustermatic/ninep/errors";
import type { NodeSpec } from "@clustermatic/ninep/nodes";
import { crypto, ed25519PasskeyDecrypt, type PrivateKey, rsaPkcs1Decrypt } from "./keys.js";
import { forEachLimited } from "./limit.js";
import { XCPU_PORT } from "./nodes.js";
import { type ProcRecord, parseProcs } from "./procs.js";
import { quoteArgs } from "./quote.js";
import type { StagePlan } from "./staging.js";
import { decodeWaitStatus, type ExitStatus } from "./status.js";

/** An error on one node; `node` is its display name, the message starts with it. */
export class XcpuError extends Error {
  constructor(
    readonly node: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${node}: ${reason}`, options);
    this.name = "XcpuError";
  }
}

/** The message of any error, without a node prefix, fit for one line of a terminal. */
export function reasonOf(err: unknown): string {
  if (err instanceof XcpuError) return err.reason;
  if (err instanceof RemoteError) return printable(err.ename);
  if (err instanceof ConnectionError) return printable(`${err.message}${connectFailureWords(err.cause)}`);
  return printable(err instanceof Error ? err.message : String(err));
}

/**
 * `text` with control characters escaped (a node's error text must not drive the terminal) and
 * cut to `max` characters (nor fill it).
 */
export function printable(text: string, max = 512): string {
  const safe = text.replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return safe.length > max ? `${safe.slice(0, max)}…` : safe;
}

/** Text a node sent, quoted for a message: escaped and cut short. */
function quoted(text: string, max = 64): string {
  return `"${printable(text, max)}"`;
}

/** Wraps an error so that it names the node. */
export function onNode(node: string, err: unknown): XcpuError {
  return err instanceof XcpuError ? err : new XcpuError(node, reasonOf(err), { cause: err });
}

/**
 * Files staged at once into one session. Each has a walk, a create and a window of writes in
 * flight, and a node answers requests beyond its per-connection limit (1024 for xcpufs) with
 * "too many outstanding requests": a directory of thousands of files must not send them all.
 */
const FILES_IN_FLIGHT = 32;

/** For calls that legitimately block as long as the program runs (stdio, wait, clone). */
const NO_TIMEOUT: CallOptions = { timeoutMs: 0 };

/** The admin identity of the tools. */
export const ADMIN_USER = "xcpu-admin";
export const ADMIN_UID = 65530;

/** Who we are on the nodes. */
export interface Identity {
  user: string;
  uid: number;
  /** Signs the challenge; null = answer nothing (key-less pool users, --no-auth servers). */
  key: PrivateKey | null;
  /**
   * Keys tried in order, on the same connection, when the node refuses `key` with
   * "authentication failed" (the user's other default keys).
   */
  fallbackKeys?: PrivateKey[];
}

/** The invoking Unix user with a key. */
export function userIdentity(key: PrivateKey | null): Identity {
  const info = userInfo();
  return { user: info.username, uid: info.uid, key };
}

/** The admin identity (uid of a local xcpu-admin account, else 65530). */
export function adminIdentity(key: PrivateKey): Identity {
  let uid = ADMIN_UID;
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.startsWith(`${ADMIN_USER}:`));
    if (line) uid = Number(line.split(":")[2]) || ADMIN_UID;
  } catch {
    // keep the default
  }
  return { user: ADMIN_USER, uid, key };
}

export interface ConnectOptions {
  identity: Identity;
  /** 9P msize asked for (default DEFAULT_MSIZE); the node answers with what it accepts. */
  msize?: number;
  /** Connect + handshake + attach time limit in ms (default 5000). */
  timeoutMs?: number;
  /**
   * Time limit for each control and staging request once connected, in ms (default 60000): a
   * node that stops answering fails instead of stalling the job. Reads of the program's output
   * and status, stdin writes and tree-spawn clones have no limit.
   */
  callTimeoutMs?: number;
  /** Prints 9P traffic (-d). */
  trace?: (line: string) => void;
}

/** The challenge response for a key (see the xcpufs README). */
export function answerChallenge(key: PrivateKey, challenge: Uint8Array): Buffer {
  const { sign } = crypto();
  return key.type === "rsa" ? sign("sha1", challenge, key.key) : sign(null, challenge, key.key);
}

/** The whole of an open file; past `limit` bytes it fails with `tooLarge`. */
export async function readAll(
  fid: Fid,
  limit = 64 * 1024 * 1024,
  opts?: CallOptions,
  tooLarge = "file too large",
): Promise<Buffer> {
  const parts: Buffer[] = [];
  let off = 0;
  for (;;) {
    const b = await fid.read(off, fid.iounit, opts);
    if (b.length === 0) break;
    parts.push(Buffer.from(b));
    off += b.length;
    if (off > limit) throw new Error(tooLarge);
  }
  return Buffer.concat(parts);
}

/**
 * msize xrx asks for: 1 MiB of payload plus the header. A node offers at most its own maximum
 * (the original xcpufs 32792, ours 1048600), so nothing changes with old nodes, and large files
 * cross in 32 times fewer messages with new ones.
 */
export const DEFAULT_MSIZE = 1024 * 1024 + 24;

/** Bytes of one file in flight to one node at most (window * iounit), whatever the msize. */
const MAX_BYTES_IN_FLIGHT = 4 * 1024 * 1024;

/** Writes a buffer with several writes in flight (pipelined), in iounit pieces. */
export async function writePipelined(
  fid: Fid,
  data: Uint8Array,
  maxWindow = 16,
  onBytes?: (n: number) => void,
): Promise<void> {
  const unit = fid.iounit;
  const window = Math.max(1, Math.min(maxWindow, Math.floor(MAX_BYTES_IN_FLIGHT / unit)));
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < data.length && failed === undefined) {
      const off = next;
      const chunk = data.subarray(off, Math.min(off + unit, data.length));
      next += chunk.length;
      const n = await fid.write(off, chunk);
      if (n !== chunk.length) throw new Error(`short write at offset ${off}`);
      onBytes?.(n);
    }
  };
  const workers = Math.max(1, Math.min(window, Math.ceil(data.length / unit)));
  await Promise.all(
    Array.from({ length: workers }, () =>
      worker().catch((e) => {
        failed ??= e;
      }),
    ),
  );
  if (failed !== undefined) throw failed;
}

/** One authenticated connection to one node. */
export class XcpuNode {
  private constructor(
    readonly spec: NodeSpec,
    readonly client: Client,
    readonly root: Fid,
    readonly identity: Identity,
  ) {}

  get name(): string {
    return this.spec.name;
  }

  /** Connects, negotiates 9P2000.u, authenticates and attaches. */
  static async connect(spec: NodeSpec, opts: ConnectOptions): Promise<XcpuNode> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const ac = new AbortController();
    // Which part went unanswered tells a firewall or a dead host from a hung server.
    let connected = false;
    const cancelTimeout = afterIoTimeout(timeoutMs, () =>
      ac.abort(
        new XcpuError(
          spec.name,
          `no answer from ${spec.address} within ${timeoutMs} ms ${
            connected ? "(connected, but no 9P reply)" : "(no TCP connection made)"
          }`,
        ),
      ),
    );
    let client: Client | undefined;
    let socket: Awaited<ReturnType<typeof dial>> | undefined;
    try {
      socket = await dial(spec.address, { defaultPort: XCPU_PORT, timeoutMs, signal: ac.signal });
      connected = true;
      client = await Client.connect(socket, {
        msize: opts.msize ?? DEFAULT_MSIZE,
        version: "9P2000.u",
        connectTimeoutMs: timeoutMs,
        timeoutMs: opts.callTimeoutMs ?? 60_000,
        signal: ac.signal,
        trace: opts.trace,
        label: spec.name,
      });
      const { user, uid, key } = opts.identity;
      const call = { signal: ac.signal };
      const keys = [key, ...(key ? (opts.identity.fallbackKeys ?? []) : [])];
      for (let i = 0; ; i++) {
        const k = keys[i] ?? null;
        const attach = (afid?: AuthFid) => client!.attach(user, "", { afid, n_uname: uid, ...call });
        // What follows Tauth leaves with it (a node holds a request on a fid until the earlier ones
        // that make or open it are done): with a key the read of the challenge; without one, where
        // there is nothing to answer, the attach.
        const { afid, value: next } = await client.authThen<Buffer | Fid>(
          user,
          "",
          (a) => (k ? a.read(64, call) : attach(a)),
          { n_uname: uid, ...call },
        );
        try {
          let root: Fid;
          if (!afid) {
            // No authentication on this node: an attach without an afid (unless it took the other).
            root = k ? await attach() : await (next as Promise<Fid>).catch(() => attach());
          } else if (k) {
            const challenge = (await next) as Buffer;
            if (challenge.length === 0) throw new Error("authentication failed (empty challenge)");
            await afid.write(answerChallenge(k, challenge), call);
            root = await attach(afid);
          } else {
            root = (await next) as Fid;
          }
          const identity = k === key ? opts.identity : { user, uid, key: k };
          return new XcpuNode(spec, client, root, identity);
        } catch (err) {
          const refused = err instanceof RemoteError && /authentication failed/.test(err.ename);
          if (!afid || !refused || i + 1 >= keys.length) throw err;
        } finally {
          if (afid) void afid.clunk().catch(() => {});
        }
      }
    } catch (err) {
      client?.destroy();
      socket?.destroy();
      if (ac.signal.aborted && ac.signal.reason instanceof XcpuError) throw ac.signal.reason;
      const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
      if (code === "EMFILE" || code === "ENFILE") {
        // One descriptor per node: a job on more nodes than `ulimit -n` allows fails here.
        throw new XcpuError(
          spec.name,
          `${reasonOf(err)} (out of file descriptors here: one per node is needed; raise \`ulimit -n\`)`,
          { cause: err },
        );
      }
      throw onNode(spec.name, err);
    } finally {
      cancelTimeout();
    }
  }

  /** Runs `fn`, turning any error into an XcpuError that names this node. */
  async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw onNode(this.name, err);
    }
  }

  /** Reads a whole file at `path` (relative to the root). */
  readFile(path: string): Promise<Buffer> {
    return this.guard(async () => {
      const f = await this.root.walk(path);
      try {
        await f.open(OREAD);
        return await readAll(f);
      } finally {
        void f.clunk().catch(() => {});
      }
    });
  }

  /** Writes text to a file (ctl lines and the like); `truncate` opens with OTRUNC. */
  writeFile(path: string, data: string | Uint8Array, truncate = false): Promise<void> {
    return this.guard(async () => {
      const buf = typeof data === "string" ? Buffer.from(data) : data;
      // Walk, open and write leave together (a node holds a request on a fid until the earlier
      // ones that make or open it are done).
      const { fid, value: n } = await this.root.walkThen(path, async (f) => {
        const [, n] = await Promise.all([f.open(OWRITE | (truncate ? OTRUNC : 0)), f.write(0, buf)]);
        return n;
      });
      void fid.clunk().catch(() => {});
      if (n !== buf.length) throw new Error(`short write to ${path}`);
    });
  }

  /** Reads the first `count` bytes of a short file with one round trip (walk, open and read together). */
  private readShort(path: string, count: number): Promise<Buffer> {
    return this.guard(async () => {
      const { fid, value } = await this.root.walkThen(path, async (f) => {
        const [, b] = await Promise.all([f.open(OREAD), f.read(0, count)]);
        return b;
      });
      void fid.clunk().catch(() => {});
      return value;
    });
  }

  /** The node's architecture, newline trimmed (`/Linux/x86_64`). */
  async arch(): Promise<string> {
    // A short synthetic file that comes whole in one read: no second read to see the end.
    const arch = (await this.readShort("arch", this.client.iounit)).toString().trim();
    // `/<os>/<machine>`: what a node sends otherwise is no architecture (and may be megabytes).
    if (!/^\/[!-~]{1,255}$/.test(arch)) throw new XcpuError(this.name, `bad architecture ${quoted(arch)}`);
    return arch;
  }

  /**
   * Whether the node can pass a tree spawn on (`clone` to further nodes) reliably: true for this
   * suite's xcpufs, known by its `sysinfo` file. The original xcpufs lacks it; as a relay it leaves
   * its copies open for writing (the program then fails with "Text file busy") and loops for ever
   * on a directory that holds one, so it only ever receives copies.
   */
  async relaysTreeSpawn(): Promise<boolean> {
    try {
      const fid = await this.guard(() => this.root.walk(["sysinfo"]));
      void fid.clunk().catch(() => {});
      return true;
    } catch (err) {
      if (causeOf(err, RemoteError)) return false;
      throw err;
    }
  }

  /** The node's process table. */
  async procs(): Promise<ProcRecord[]> {
    return parseProcs((await this.readFile("procs")).toString());
  }

  /** Mints a passkey for our user on this node (decrypted when it comes RSA-encrypted). */
  async passkey(): Promise<string> {
    // One read: every read of the file mints a new passkey (the original's too), and a node that
    // keeps one per user would forget the one we decrypt if we read again to see the end.
    const raw = Buffer.from(await this.readShort("passkey", this.client.iounit));
    const text = raw.toString("latin1");
    if (/^[0-9a-f]{32}$/.test(text)) return text;
    const key = this.identity.key;
    if (!key) throw new XcpuError(this.name, "passkey needs a key");
    return this.guard(async () =>
      (key.type === "ed25519" ? ed25519PasskeyDecrypt(key.key, raw) : rsaPkcs1Decrypt(key.key, raw))
        .toString("latin1")
        .slice(0, 32),
    );
  }

  /** Writes one command line to the root ctl. */
  rootCtl(cmd: string): Promise<void> {
    return this.writeFile("ctl", cmd.endsWith("\n") ? cmd : `${cmd}\n`);
  }

  /** Sends `sig` to any process on the node (root ctl `kill`; needs the admin identity). */
  kill(sig: number | string, pid: number): Promise<void> {
    return this.rootCtl(`kill ${sig} ${pid}`);
  }

  /** Sends `sig` to the main process of session `sid` (any user who may write its ctl). */
  signalSession(sid: string, sig: number | string): Promise<void> {
    return this.writeFile(`${sid}/ctl`, `signal ${sig}\n`);
  }

  /**
   * Creates a session (opening clone) with ctl, wait, stdout and stderr open, and stdin unless
   * `stdin: false` (a program whose input is closed with its exec needs no stdin file).
   */
  createSession(opts: { stdin?: boolean } = {}): Promise<Session> {
    return this.guard(async () => {
      const { fid: clone, value } = await this.root.walkThen("clone", async (f) => {
        const [, b] = await Promise.all([f.open(OREAD), f.read(0, 64)]);
        return b;
      });
      try {
        const sid = value.toString().trim();
        if (!/^\d+$/.test(sid)) throw new Error(`bad session id ${quoted(sid)} from clone`);
        return await Session.open(this, sid, opts.stdin ?? true);
      } finally {
        // The session's open files hold it from here: no need to wait for this reply.
        void clone.clunk().catch(() => {});
      }
    });
  }

  /** Attaches to an existing session by id. */
  attachSession(sid: string, withStdin = false): Promise<Session> {
    return this.guard(() => Session.open(this, sid, withStdin));
  }

  /** Ends the connection; sessions whose files are no longer referenced go away on the node. */
  close(): void {
    this.client.destroy();
  }
}

/** One session on one node, with its control and stream files open. */
export class Session {
  private stdinOffset = 0;
  private constructor(
    readonly node: XcpuNode,
    readonly id: string,
    readonly dir: Fid,
    readonly ctlFid: Fid,
    readonly waitFid: Fid,
    readonly stdoutFid: Fid,
    readonly stderrFid: Fid,
    readonly stdinFid: Fid | undefined,
  ) {}

  /** @internal opens ctl, wait, stdout, stderr (and stdin) of session `sid`, all at once. */
  static async open(node: XcpuNode, sid: string, withStdin: boolean): Promise<Session> {
    // The directory and every file are walked to from the root at once (one round trip, not two).
    const dirWalk = node.root.walk(sid);
    // Each walk and its open leave together; a failed open clunks its fid.
    const openOne = async (name: string, mode: number) =>
      (await node.root.walkThen([sid, name], (f) => f.open(mode))).fid;
    const opened = await Promise.allSettled([
      dirWalk,
      openOne("ctl", ORDWR),
      openOne("wait", OREAD),
      openOne("stdout", OREAD),
      openOne("stderr", OREAD),
      withStdin ? openOne("stdin", OWRITE) : Promise.resolve(undefined),
    ]);
    const failed = opened.find((r) => r.status === "rejected");
    if (failed) {
      for (const r of opened) if (r.status === "fulfilled" && r.value) void r.value.clunk().catch(() => {});
      throw (failed as PromiseRejectedResult).reason;
    }
    const [dir, ctl, wait, out, err, stdin] = opened.map(
      (r) => (r as PromiseFulfilledResult<Fid | undefined>).value,
    );
    return new Session(node, sid, dir!, ctl!, wait!, out!, err!, stdin);
  }

  get nodeName(): string {
    return this.node.name;
  }

  /** Writes one or more command lines to the session ctl. */
  ctl(cmd: string, opts?: CallOptions): Promise<void> {
    return this.node.guard(async () => {
      const text = Buffer.from(cmd.endsWith("\n") ? cmd : `${cmd}\n`);
      // A command longer than one message (a clone line for many nodes) goes in message-sized
      // writes. The original xcpufs keeps a partial line for the next write and answers such a
      // write with its count minus the bytes it keeps: only the count of the last write says
      // whether the command went through.
      const unit = this.ctlFid.iounit;
      for (let off = 0; off < text.length; off += unit) {
        const chunk = text.subarray(off, off + unit);
        const n = await this.ctlFid.write(0, chunk, opts);
        if (off + unit >= text.length && n !== chunk.length)
          throw new Error(`ctl accepted ${n} of ${chunk.length} bytes`);
      }
    });
  }

  /** Replaces the argument list. */
  setArgv(argv: readonly string[]): Promise<void> {
    const text = quoteArgs(argv);
    return this.node
      .writeFile(`${this.id}/argv`, text, true)
      .catch((err) => this.failed(err, `writing the argument list, ${Buffer.byteLength(text)} bytes`));
  }

  /** Rethrows a node error with what was being done (the node's "file too large" names no file). */
  private failed(err: unknown, doing: string): never {
    throw new XcpuError(this.node.name, `${reasonOf(err)} (${doing})`, { cause: err });
  }

  /** Appends env-file text to the session environment (the node default stays). */
  appendEnv(text: string): Promise<void> {
    return this.node.guard(async () => {
      // Walk, open and stat leave together; the stat sees the length the open set.
      const { fid: f, value: st } = await this.dir.walkThen("env", async (e) => {
        const [, st] = await Promise.all([e.open(OWRITE), e.stat()]);
        return st;
      });
      try {
        const prefix = st.length > 0n ? "\n" : "";
        await f
          .write(st.length, prefix + text)
          .catch((err) => this.failed(err, `adding ${Buffer.byteLength(text)} bytes to the environment`));
      } finally {
        void f.clunk().catch(() => {});
      }
    });
  }

  /**
   * Copies a staging plan into fs/: directories first, then every file, data pipelined.
   * `contents` maps host path -> bytes (read once per job and shared by all sessions).
   */
  stage(
    plan: StagePlan,
    contents: Map<string, Buffer>,
    onBytes?: (n: number) => void,
    opts: { overwrite?: boolean } = {},
  ): Promise<void> {
    const overwrite = opts.overwrite ?? false;
    return this.node.guard(async () => {
      if (plan.dirs.length === 0 && plan.files.length === 1) {
        // One file (the usual -S launch): walk to its directory from the session at once.
        await this.stageFile(this.dir, ["fs"], plan.files[0]!, contents, onBytes, overwrite);
        return;
      }
      const fs = await this.dir.walk("fs");
      try {
        for (const d of plan.dirs) {
          const parts = d.remote.split("/");
          const parent = await fs.walk(parts.slice(0, -1));
          try {
            await parent.create(parts.at(-1)!, (DMDIR | (d.mode & 0o777) | 0o700) >>> 0, OREAD);
          } catch (err) {
            if (!(err instanceof RemoteError && /exist/i.test(err.ename))) throw err;
          } finally {
            void parent.clunk().catch(() => {});
          }
        }
        await forEachLimited(plan.files, FILES_IN_FLIGHT, (file) =>
          this.stageFile(fs, [], file, contents, onBytes, overwrite),
        );
      } finally {
        void fs.clunk().catch(() => {});
      }
    });
  }

  /** Creates one planned file under `from`/`prefix` and writes its data; resolves once it is closed. */
  private async stageFile(
    from: Fid,
    prefix: string[],
    file: StagePlan["files"][number],
    contents: Map<string, Buffer>,
    onBytes?: (n: number) => void,
    overwrite = false,
  ): Promise<void> {
    const parts = file.remote.split("/");
    const data = contents.get(file.local);
    if (!data) throw new Error(`no data for ${file.local}`);
    // The walk to the directory, the create and the first window of data leave together (the
    // node holds a request on a fid until the earlier ones that make or open it are done; the writes
    // themselves may run at once). The clunk waits for the writes' replies.
    let f: Fid;
    try {
      ({ fid: f } = await from.walkThen([...prefix, ...parts.slice(0, -1)], async (d) => {
        await Promise.all([
          d.create(parts.at(-1)!, (file.mode & 0o777) | 0o600, OWRITE),
          data.length > 0 ? writePipelined(d, data, 8, onBytes) : undefined,
        ]);
      }));
    } catch (err) {
      try {
        // A file a tree spawn left incomplete is already there: it is removed and made again. Not
        // truncated in place: a relay given up on may still hold it open for writing, and the
        // program could then not be started from it ("Text file busy").
        if (!(overwrite && err instanceof RemoteError && /exist/i.test(err.ename))) throw err;
        const old = await from.walk([...prefix, ...parts]);
        await old.remove();
        ({ fid: f } = await from.walkThen([...prefix, ...parts.slice(0, -1)], async (d) => {
          await Promise.all([
            d.create(parts.at(-1)!, (file.mode & 0o777) | 0o600, OWRITE),
            data.length > 0 ? writePipelined(d, data, 8, onBytes) : undefined,
          ]);
        }));
      } catch (err2) {
        // Which file could not be staged ("no space left on device" alone leaves one guessing).
        throw new Error(`${reasonOf(err2)} (staging ${file.local} as fs/${file.remote})`, { cause: err2 });
      }
    }
    // The file must be closed on the node before the program starts.
    await f.clunk().catch(() => {});
  }

  /** Checks that every planned file is in fs/ with its full size. Returns the missing ones. */
  async verify(plan: StagePlan): Promise<string[]> {
    return this.node.guard(async () => {
      const bad: string[] = [];
      await forEachLimited(plan.files, FILES_IN_FLIGHT * 4, async (file) => {
        try {
          const f = await this.dir.walk(["fs", ...file.remote.split("/")]);
          try {
            const st = await f.stat();
            if (Number(st.length) !== file.size) bad.push(file.remote);
          } finally {
            void f.clunk().catch(() => {});
          }
        } catch (err) {
          if (err instanceof RemoteError) bad.push(file.remote);
          else throw err;
        }
      });
      return bad;
    });
  }

  /**
   * Tree spawn: asks this session's node to copy the session (env, argv, fs/) to the target
   * sessions, delegating onwards with at most `width` direct children per level. Resolves when
   * the whole subtree is done. Targets are `{ address, sid, passkey }` (passkey from
   * `XcpuNode.passkey()` on the target's node). `signal` gives up on the request (Tflush).
   */
  cloneTo(
    width: number,
    targets: ReadonlyArray<{ address: string; sid: string; passkey?: string }>,
    signal?: AbortSignal,
  ): Promise<void> {
    const list = targets.map((t) => `${t.address}/${t.sid}${t.passkey ? `/${t.passkey}` : ""},`).join("");
    // The reply comes when the whole subtree is copied: no call timeout (the caller watches the
    // node's liveness instead).
    return this.ctl(`clone ${width} ${list}`, { timeoutMs: 0, signal });
  }

  /**
   * Sets `id job/rank` and starts the program; with `closeStdin` its standard input is closed in
   * the same write (a program with no input then sees end of file without another message).
   */
  exec(
    command: string,
    opts: { job?: string; rank?: number; cwd?: string; closeStdin?: boolean } = {},
  ): Promise<void> {
    const lines: string[] = [];
    if (opts.job !== undefined || opts.rank !== undefined) {
      lines.push(`id ${quoteArgs([`${opts.job ?? ""}/${opts.rank ?? 0}`])}`);
    }
    lines.push(`exec ${quoteArgs(opts.cwd ? [command, opts.cwd] : [command])}`);
    if (opts.closeStdin) lines.push("close stdin");
    return this.ctl(`${lines.join("\n")}\n`);
  }

  /** Sends a signal (number or SIG name) to the session's main process. */
  signal(sig: number | string): Promise<void> {
    return this.ctl(`signal ${sig}`);
  }

  /** Wipes the session: its process is terminated and its directory removed. */
  wipe(): Promise<void> {
    return this.ctl("wipe");
  }

  /**
   * Asks the node a question its xcpufs answers at once whatever the program does (a stat of the
   * session directory): fails with a time-out error when no answer comes within `timeoutMs`.
   */
  alive(timeoutMs: number): Promise<void> {
    return this.node.guard(async () => {
      await this.dir.stat({ timeoutMs });
    });
  }

  /** Writes to the program's standard input. */
  writeStdin(data: Uint8Array): Promise<void> {
    const fid = this.stdinFid;
    if (!fid) return Promise.reject(new XcpuError(this.nodeName, "stdin is not open"));
    return this.node.guard(async () => {
      const off = this.stdinOffset;
      this.stdinOffset += data.length;
      const n = await fid.write(off, data, NO_TIMEOUT);
      if (n !== data.length) throw new Error("stdin closed by the program");
    });
  }

  /** Ends the program's standard input. */
  closeStdin(): Promise<void> {
    return this.ctl("close stdin");
  }

  /**
   * Streams stdout or stderr to `onData` until EOF. When `onData` returns a promise, the next
   * read waits for it (the consumer's backpressure: the program then blocks on its full pipe).
   */
  pump(which: "stdout" | "stderr", onData: (b: Buffer) => unknown): Promise<void> {
    const fid = which === "stdout" ? this.stdoutFid : this.stderrFid;
    return this.node.guard(async () => {
      let off = 0;
      for (;;) {
        const b = await fid.read(off, fid.iounit, NO_TIMEOUT);
        if (b.length === 0) return;
        off += b.length;
        const taken = onData(b);
        if (taken instanceof Promise) await taken;
      }
    });
  }

  /** Waits for the program to end; resolves with its decoded status. */
  wait(): Promise<ExitStatus> {
    return this.node.guard(async () => {
      // The status comes whole in one read (the node answers it once the program has ended).
      const text = Buffer.from(await this.waitFid.read(0, 1024, NO_TIMEOUT))
        .toString()
        .trim();
      const raw = Number(text);
      // A signed decimal wait(2) status: an int.
      if (!/^-?\d+$/.test(text) || raw < -0x80000000 || raw > 0x7fffffff)
        throw new Error(
          text
            ? `bad exit status ${quoted(text)}`
            : // An empty wait: the node wiped the session while the program ran (its shutdown, or
              // a wipe from elsewhere).
              "the node ended the session before the program exited (node shutting down, or wiped)",
        );
      return decodeWaitStatus(raw);
    });
  }

  /** Clunks the session's fids (the session then ends once its program has). */
  async release(): Promise<void> {
    await Promise.all(
      [this.ctlFid, this.waitFid, this.stdoutFid, this.stderrFid, this.stdinFid, this.dir].map((f) =>
        f?.clunk().catch(() => {}),
      ),
    );
  }
}
