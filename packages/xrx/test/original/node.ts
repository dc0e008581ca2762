// A node that behaves like the ORIGINAL xcpufs 1.2.3 as far as xrx, xps and xk touch it, built on
// the 9P server framework's synthetic tree, with a passthrough of the session's real directory as
// fs/. Sources: the xcpu behavioural spec (sections 2–8; section numbers in comments) and the
// capture of the original tools against original nodes (xcpu-1.2.3-wire.jsonl): msize 32792,
// iounit 0, arch "/Linux/x86_64" without a newline, clone "0", wait "768", Rerror texts.
// The program really runs (child_process.spawn in the session directory, argv/env from the
// session buffers, stdio piped with the original's read semantics). Tree spawn (`clone`, passkeys)
// dials the other nodes with our 9P client.
//
// Where it is stricter than the original (so a client passing here passes there): a permission
// needs every requested bit (the original: any), and only open files hold a session (the original
// also counts walked fids). Not emulated: the legacy `exec` file, `redirect`, the passkey check
// bugs of 3.3/3.4 (a correct check here), uid switching unless running as root for another uid.
import { type ChildProcess, spawn } from "node:child_process";
import {
  constants,
  createHash,
  createPublicKey,
  type KeyObject,
  publicEncrypt,
  randomBytes,
  verify,
} from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@clustermatic/ninep/client";
import { Dialect, DMDIR, NONUNAME, OREAD, OTRUNC, OWRITE, QTAUTH } from "@clustermatic/ninep/codec";
import { Errno, FsError } from "@clustermatic/ninep/errors";
import {
  type AuthFile,
  abortable,
  BytesFile,
  generatedFile,
  type Identity,
  type Node,
  type OpenFile,
  passthrough,
  type RequestContext,
  Server,
  SynthDir,
  SynthFile,
  type SynthFileOptions,
  type SynthNode,
  type SynthNodeOptions,
  sliceAt,
  staticFile,
  treeBackend,
} from "@clustermatic/ninep/server";
import { procsText, type SessionPids } from "./procs.js";
import { quoteOriginal, tokenizeOriginal } from "./tokens.js";
import { OriginalWire } from "./wire.js";

export const ADMIN = { name: "xcpu-admin", uid: 65530 };

/** Signal names of the original's table (6): case-sensitive, SIG prefix required. */
const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGIOT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPOLL: 29,
  SIGPWR: 30,
  SIGSYS: 31,
  SIGUNUSED: 31,
};

function parseSignal(s: string | undefined): number {
  if (s !== undefined && /^\d+$/.test(s)) return Number(s);
  const n = s === undefined ? undefined : SIGNALS[s];
  if (n === undefined) throw new FsError("unsupported signal", Errno.EINVAL);
  return n;
}

/** A pool user (3.1). `key` null = no key (accepted without checking, 3.3a). */
export interface PoolUser {
  name: string;
  uid: number;
  group: string;
  groups: Set<string>;
  key: KeyObject | null;
}

export interface OriginalNodeOptions {
  /** Largest msize the node accepts (32792 in the capture; 8216 with -m 8216). */
  msize?: number;
  /** The arch file: the capture shows "/Linux/x86_64" (13 bytes); the spec's code reading adds "\n". */
  arch?: string;
  /** Admin public key (OpenSSH line); absent = the "always fail" marker. */
  adminKey?: string;
  /** Root env entries (default: PATH and HOME). */
  env?: Record<string, string>;
}

/** One stdout/stderr pipe as xcpufs serves it (4.3): a 256-byte window fanned out to readers. */
class OutStream {
  #win: Buffer = Buffer.alloc(0);
  #rest: Buffer = Buffer.alloc(0);
  #eof = false;
  #src: NodeJS.ReadableStream | undefined;
  #pending: Array<{ h: object; count: number; resolve: (b: Buffer) => void }> = [];

  attach(src: NodeJS.ReadableStream): void {
    this.#src = src;
    src.on("data", (chunk: Buffer) => {
      src.pause();
      this.#rest = Buffer.concat([this.#rest, chunk]);
      this.#pump();
    });
    src.on("end", () => this.end());
    src.on("error", () => this.end());
  }

  push(b: Buffer): void {
    this.#rest = Buffer.concat([this.#rest, b]);
    this.#pump();
  }

  end(): void {
    this.#eof = true;
    this.#pump();
  }

  get ended(): boolean {
    return this.#eof && this.#win.length === 0 && this.#rest.length === 0;
  }

  read(h: object, count: number, signal: AbortSignal): Promise<Buffer> {
    const p = new Promise<Buffer>((resolve) => {
      this.#pending.push({ h, count, resolve });
    });
    this.#pump();
    const entry = this.#pending.at(-1);
    signal.addEventListener("abort", () => {
      this.#pending = this.#pending.filter((e) => e !== entry);
    });
    return abortable(p, signal);
  }

  /** A fid went away: its parked reads end with nothing. */
  drop(h: object): void {
    for (const e of this.#pending.filter((x) => x.h === h)) e.resolve(Buffer.alloc(0));
    this.#pending = this.#pending.filter((e) => e.h !== h);
  }

  #pump(): void {
    for (;;) {
      if (this.#win.length < 256 && this.#rest.length > 0) {
        const take = Math.min(256 - this.#win.length, this.#rest.length);
        this.#win = Buffer.concat([this.#win, this.#rest.subarray(0, take)]);
        this.#rest = this.#rest.subarray(take);
      }
      if (this.#win.length > 0 && this.#pending.length > 0) {
        // Every fid with a pending read gets a copy; several reads of one fid get consecutive pieces.
        const byFid = new Map<object, Array<{ h: object; count: number; resolve: (b: Buffer) => void }>>();
        for (const e of this.#pending) byFid.set(e.h, [...(byFid.get(e.h) ?? []), e]);
        const served = new Set<object>();
        for (const reads of byFid.values()) {
          let off = 0;
          for (const r of reads) {
            if (off >= this.#win.length) break;
            const piece = Buffer.from(this.#win.subarray(off, off + r.count));
            off += piece.length;
            served.add(r);
            r.resolve(piece);
          }
        }
        this.#pending = this.#pending.filter((e) => !served.has(e));
        this.#win = Buffer.alloc(0);
        continue;
      }
      break;
    }
    if (this.ended) {
      for (const e of this.#pending) e.resolve(Buffer.alloc(0));
      this.#pending = [];
    }
    if (this.#rest.length === 0 && this.#win.length < 256 && !this.#eof) this.#src?.resume();
  }
}

/** One session (4.3, 5). */
class Session {
  state: "Initializing" | "Running" | "Finished" | "Wiped" = "Initializing";
  type: "normal" | "persistent" = "normal";
  argv: Buffer = Buffer.alloc(0);
  env: Buffer;
  jobid = "";
  rank = 0;
  ctlBuf = "";
  pid = -1;
  status: string | undefined;
  refs = 1;
  child: ChildProcess | undefined;
  readonly stdout = new OutStream();
  readonly stderr = new OutStream();
  stdinEarly: Buffer[] = [];
  stdinClosed = false;
  waiters: Array<() => void> = [];
  dir!: SynthDir;
  removed = false;
  /** The main process has been started and not yet reaped. */
  running = false;
  /** A clone command is in progress (7.1). */
  cloning = false;

  constructor(
    readonly node: OriginalNode,
    readonly id: number,
    readonly owner: PoolUser,
    readonly tmp: string,
  ) {
    this.env = Buffer.from(node.rootEnv.content);
  }

  get idText(): string {
    return `${this.jobid}/${this.rank}`;
  }

  incref(): void {
    this.refs++;
  }

  decref(): void {
    this.refs--;
    if (this.refs <= 0 && this.type === "normal" && !this.running) this.wipe();
  }

  /** 5.2: mark wiped, unlink from the root, SIGTERM a running program, answer parked waits. */
  wipe(): void {
    if (this.state !== "Wiped") {
      this.state = "Wiped";
      this.node.sessions.delete(this.id);
      if (this.pid > 0) {
        try {
          process.kill(this.pid, "SIGTERM");
        } catch {
          // gone
        }
      }
      for (const w of this.waiters.splice(0)) w();
    }
    if (this.refs <= 0 && !this.running && !this.removed) {
      this.removed = true;
      rmSync(this.tmp, { recursive: true, force: true });
    }
  }

  /** 7.1: session ctl commands. */
  /** Runs one command; only `clone` completes later (the original is one event loop: nothing else waits). */
  run(tokens: string[], ctx: RequestContext): Promise<void> | undefined {
    const [cmd, ...args] = tokens;
    switch (cmd) {
      case "exec":
        this.exec(args[0], args[1], ctx);
        return;
      case "wipe":
        this.wipe();
        return;
      case "signal": {
        const sig = parseSignal(args[0]);
        if (this.pid > 0) {
          try {
            process.kill(this.pid, sig);
          } catch {
            // the original ignores kill's result here
          }
        }
        return;
      }
      case "type":
        if (args[0] !== "normal" && args[0] !== "persistent")
          throw new FsError("invalid session type", Errno.EINVAL);
        this.type = args[0];
        return;
      case "close": {
        const which = args[0];
        if (which === "stdin") {
          this.stdinClosed = true;
          this.child?.stdin?.end();
        } else if (which === "stdout") this.child?.stdout?.destroy();
        else if (which === "stderr") this.child?.stderr?.destroy();
        else throw new FsError("invalid argument", Errno.EINVAL);
        return;
      }
      case "id": {
        const a = args[0];
        if (a === undefined) throw new FsError("argument expected", Errno.EINVAL);
        const slash = a.indexOf("/");
        const job = slash < 0 ? a : a.slice(0, slash);
        const rank = slash < 0 ? undefined : a.slice(slash + 1);
        if (rank !== undefined) {
          if (rank.startsWith("-")) throw new FsError("negative id not permitted", Errno.EINVAL);
          if (!/^\d+$/.test(rank)) throw new FsError("syntax error", Errno.EINVAL);
        }
        if (slash !== 0) this.jobid = job;
        if (rank !== undefined) this.rank = Number(rank);
        return;
      }
      case "redirect":
        if (args.length < 2) throw new FsError("too few arguments", Errno.EINVAL);
        if (!["stdin", "stdout", "stderr"].includes(args[0]!))
          throw new FsError("invalid stream", Errno.EINVAL);
        return;
      case "add":
      case "del":
        return;
      case "clone": {
        if (args.length < 2) throw new FsError("too few arguments", Errno.EINVAL);
        if (!/^-?\d+$/.test(args[0]!)) throw new FsError("invalid maxsession format", Errno.EINVAL);
        const writer = this.node.userOf(ctx.user);
        if (!writer) throw new FsError("unknown user", Errno.EIO);
        const targets = parseTargets(args[1]!);
        this.cloning = true;
        return treeSpawn(this, writer, Number(args[0]), targets).finally(() => {
          this.cloning = false;
        });
      }
      default:
        throw new FsError("unknown command", Errno.EINVAL);
    }
  }

  /** 5.3 */
  exec(program: string | undefined, cwd: string | undefined, ctx: RequestContext): void {
    if (this.state === "Wiped") throw new FsError("session wiped", Errno.EINVAL);
    if (!program) throw new FsError("executable not found", Errno.ENOENT);
    const path = program.startsWith("/") ? program : join(this.tmp, program);
    let dir = this.tmp;
    if (cwd) {
      try {
        if (statSync(cwd).isDirectory()) dir = cwd;
      } catch {
        // a failing chdir is ignored
      }
    }
    const addr = ctx.connection.remote.replace(/:(\d+)$/, "!$1");
    const injected = [
      `XCPUPATH=${this.tmp}`,
      `XCPUSID=${this.id}`,
      `XCPUID=${this.idText}`,
      `LD_LIBRARY_PATH=${this.tmp}`,
      `XCPU_PARENT=${addr}`,
    ];
    this.env = Buffer.concat([this.env, Buffer.from(injected.map((e) => `\n${quoteOriginal(e)}`).join(""))]);
    let envTokens: string[];
    let argvTokens: string[];
    try {
      envTokens = tokenizeOriginal(this.env.toString("latin1"));
    } catch {
      throw new FsError("environment bad format", Errno.EINVAL);
    }
    try {
      argvTokens = tokenizeOriginal(this.argv.toString("latin1"));
    } catch {
      throw new FsError("arguments bad format", Errno.EINVAL);
    }
    // The environment is exactly the token list; with duplicates libc's getenv sees the first.
    const env: Record<string, string> = {};
    for (const t of envTokens) {
      const eq = t.indexOf("=");
      const k = eq < 0 ? t : t.slice(0, eq);
      if (!(k in env)) env[k] = eq < 0 ? "" : t.slice(eq + 1);
    }
    const writer = this.node.userOf(ctx.user);
    const ids = writer && writer.uid !== process.getuid?.() ? { uid: writer.uid } : {};
    const child = spawn(path, argvTokens.slice(1), {
      argv0: argvTokens[0] ?? path,
      cwd: dir,
      env,
      stdio: ["pipe", "pipe", "pipe"],
      ...ids,
    });
    this.child = child;
    this.state = "Running";
    this.running = true;
    this.incref();
    child.stdin!.on("error", () => {});
    const finish = (status: string) => {
      if (this.state === "Running") this.state = "Finished";
      this.running = false;
      this.status = status;
      this.pid = -1;
      this.stdinClosed = true;
      for (const w of this.waiters.splice(0)) w();
      this.decref();
    };
    if (child.pid === undefined) {
      // execve failed in the child: the error on its stderr, exit status errno×256 (8.5).
      child.once("error", (err: NodeJS.ErrnoException) => {
        const errno = -(Number((err as { errno?: number }).errno) || -2);
        this.stdout.end();
        this.stderr.push(Buffer.from(`${path}: ${err.message}\n`));
        this.stderr.end();
        finish(String(errno * 256));
      });
      return;
    }
    this.pid = child.pid;
    this.stdout.attach(child.stdout!);
    this.stderr.attach(child.stderr!);
    for (const b of this.stdinEarly) child.stdin!.write(b);
    this.stdinEarly = [];
    if (this.stdinClosed) child.stdin!.end();
    child.once("exit", (code, signal) => {
      const sig = signal ? (SIGNALS[signal] ?? 15) : 0;
      finish(String(code !== null ? code * 256 : sig));
    });
  }

  /** A write to stdin: answered once the bytes are in the pipe. */
  async writeStdin(data: Uint8Array): Promise<number> {
    if (this.stdinClosed || this.state === "Finished" || this.state === "Wiped")
      throw new FsError("Broken pipe", 32);
    const child = this.child;
    if (!child) {
      this.stdinEarly.push(Buffer.from(data));
      return data.length;
    }
    return new Promise((resolve) => {
      child.stdin!.write(Buffer.from(data), (err) => resolve(err ? 0 : data.length));
    });
  }

  async readWait(offset: bigint, count: number, signal: AbortSignal): Promise<Uint8Array> {
    if (this.status === undefined && this.state !== "Wiped") {
      await abortable(new Promise<void>((resolve) => this.waiters.push(resolve)), signal);
    }
    return this.status === undefined ? new Uint8Array(0) : sliceAt(Buffer.from(this.status), offset, count);
  }
}

export class OriginalNode {
  readonly users = new Map<number, PoolUser>();
  readonly groups = new Map<string, number>();
  readonly sessions = new Map<number, Session>();
  readonly rootEnv: BytesFile;
  readonly root: SynthDir;
  /** The node's temporary directory (session directories are made in it). */
  readonly tmp: string;
  /** Root ctl buffer, one per server (6, [BUG]). */
  #rootCtl = "";
  #nextSid = 0;
  #adminKey: KeyObject | "fail";
  server!: Server;
  wire!: OriginalWire;
  #sock: string;

  private constructor(readonly opts: OriginalNodeOptions) {
    this.tmp = mkdtempSync(join(tmpdir(), "xrx-orig-"));
    this.#sock = join(this.tmp, "9p.sock");
    this.#adminKey = opts.adminKey ? createPublicKey(sshRsaToPem(opts.adminKey)) : "fail";
    this.groups.set(ADMIN.name, ADMIN.uid);
    this.users.set(ADMIN.uid, {
      name: ADMIN.name,
      uid: ADMIN.uid,
      group: ADMIN.name,
      groups: new Set([ADMIN.name]),
      key: this.#adminKey === "fail" ? null : this.#adminKey,
    });
    const own = { uid: ADMIN.name, gid: ADMIN.name, n_uid: ADMIN.uid, n_gid: ADMIN.uid };
    const policy = {
      inGroup: (user: Identity, gid: string) => !!this.userOf(user)?.groups.has(gid),
    };
    const root = new SynthDir("/", { ...own, mode: 0o555, policy, dynamic: () => this.#sessionDirs() });
    this.root = root;
    // 4.2, in listing order.
    root.add(
      new SynthFile<Session>("clone", {
        ...own,
        mode: 0o444,
        open: (_h, ctx) => this.#newSession(ctx),
        read: (h, offset, count) => sliceAt(Buffer.from(String(h.state.id)), offset, count),
        clunk: (h) => h.state?.decref(),
      }),
    );
    root.add(
      new SynthFile("ctl", {
        ...own,
        mode: 0o660,
        write: (_h, _off, data, ctx) => this.#rootCtlWrite(data, ctx),
      }),
    );
    const env = Object.entries(opts.env ?? { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/" });
    root.add(staticFile("arch", opts.arch ?? "/Linux/x86_64", { ...own, mode: 0o444 }));
    this.rootEnv = root.add(
      new BytesFile("env", env.map(([k, v]) => `${quoteOriginal(`${k}=${v}`)}\n`).join(""), {
        ...own,
        mode: 0o664,
      }),
    );
    root.add(generatedFile("procs", () => procsText(this.#sessionPids()), { ...own, mode: 0o444 }));
    root.add(new BytesFile("state", "", { ...own, mode: 0o664 }));
    root.add(
      new SynthFile<undefined>("passkey", {
        ...own,
        mode: 0o444,
        // 3.4: every read mints a passkey for the reader, RSA-encrypted to the reader's key.
        read: (h, offset, count) => sliceAt(this.#mintPasskey(h.user), offset, count),
      }),
    );
    root.add(generatedFile("pwent", () => this.#pwent(), { ...own, mode: 0o440 }));
    root.add(
      generatedFile("grent", () => [...this.groups].map(([g, id]) => `${g}:${id}\n`).join(""), {
        ...own,
        mode: 0o440,
      }),
    );
  }

  static async start(opts: OriginalNodeOptions = {}): Promise<OriginalNode> {
    const n = new OriginalNode(opts);
    const msize = opts.msize ?? 32792;
    n.server = new Server({
      backend: { ...treeBackend(n.root), attach: (req) => n.#attach(req), auth: (req) => n.#auth(req) },
      maxMsize: msize,
      dialects: [Dialect.P2000, Dialect.P2000u],
      name: "xcpufs",
    });
    await n.server.listen(`unix!${n.#sock}`);
    n.wire = await OriginalWire.start(n.#sock, msize);
    return n;
  }

  get port(): number {
    return this.wire.port;
  }
  /** Node-list element. */
  get spec(): string {
    return `127.0.0.1!${this.port}`;
  }

  /** user-add (6): `key` an OpenSSH ssh-rsa line or "" for none. */
  addUser(name: string, uid: number, group: string, key: string): void {
    if (!this.groups.has(group)) throw new Error(`${group}:group not found`);
    this.users.set(uid, {
      name,
      uid,
      group,
      groups: new Set([group]),
      key: key ? createPublicKey(sshRsaToPem(key)) : null,
    });
  }

  addGroup(name: string, gid: number): void {
    this.groups.set(name, gid);
  }

  /** 3.2: by numeric id when n_uname is present, else by name. */
  userOf(id: Identity): PoolUser | undefined {
    if (id.n_uname !== NONUNAME) return this.users.get(id.n_uname);
    for (const u of this.users.values()) if (u.name === id.uname) return u;
    return undefined;
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) {
      if (s.pid > 0) {
        try {
          process.kill(s.pid, "SIGKILL");
        } catch {
          // gone
        }
      }
    }
    await this.wire.close();
    await this.server.close(0);
    rmSync(this.tmp, { recursive: true, force: true });
  }

  /** Session directories still on disk (not yet released). */
  liveSessionDirs(): number {
    return [...this.sessions.values()].length;
  }

  #sessionPids(): SessionPids {
    const m: SessionPids = new Map();
    for (const s of this.sessions.values()) if (s.pid > 0) m.set(s.pid, [String(s.id), s.idText]);
    return m;
  }

  #pwent(): string {
    const gid = (g: string) => this.groups.get(g) ?? 0;
    return [...this.users.values()]
      .map((u) => `${u.name}:${u.uid}:${gid(u.group)}${u.groups.size ? `:${[...u.groups].join(",")}` : ""}\n`)
      .join("");
  }

  // ---- authentication (3.3) and passkeys (3.4) -----------------------------------------------

  /** Outstanding passkeys by uid (one-shot, no expiry). */
  readonly passkeys = new Map<number, string[]>();
  /** How many passkeys were minted (each read of `passkey` mints one). */
  passkeysMinted = 0;

  #mintPasskey(who: Identity): Buffer {
    const user = this.userOf(who);
    if (!user?.key) throw new FsError("no key", Errno.EINVAL);
    const text = randomBytes(16).toString("hex");
    this.passkeys.set(user.uid, [...(this.passkeys.get(user.uid) ?? []), text]);
    this.passkeysMinted++;
    return publicEncrypt({ key: user.key, padding: constants.RSA_PKCS1_PADDING }, Buffer.from(text));
  }

  async #auth(req: Identity): Promise<AuthFile> {
    const user = this.userOf(req);
    if (!user) throw new FsError("unknown user", Errno.EIO);
    const challenge = randomBytes(16);
    let response: Buffer | undefined;
    const adminKey = this.#adminKey;
    return {
      qid: { type: QTAUTH, version: 0, path: 0n },
      read: async (offset, count) => sliceAt(challenge, offset, count),
      write: async (_offset, data) => {
        if (data.length > 4096) throw new FsError("invalid size", Errno.EINVAL);
        response = Buffer.from(data);
        return data.length;
      },
      authenticated: (who) => {
        const u = this.userOf(who);
        if (u !== user) return false;
        if (user.key === null) return true; // a: no key, nothing checked
        if (!response) return false;
        if (verify("sha1", challenge, user.key, response)) return true; // c
        const pks = this.passkeys.get(user.uid) ?? [];
        const i = pks.findIndex((pk) =>
          createHash("sha1").update(challenge).update(pk).digest().equals(response!),
        );
        if (i >= 0) {
          pks.splice(i, 1); // d: consumed
          return true;
        }
        return adminKey !== "fail" && verify("sha1", challenge, adminKey, response); // e
      },
    };
  }

  async #attach(req: Identity & { auth?: AuthFile }): Promise<Node> {
    if (!this.userOf(req)) throw new FsError("unknown user", Errno.EIO);
    if (!req.auth) throw new FsError("authentication failed", Errno.EACCES);
    return this.root;
  }

  // ---- root ctl (6) --------------------------------------------------------------------------

  #rootCtlWrite(data: Uint8Array, _ctx: RequestContext): number {
    this.#rootCtl += Buffer.from(data).toString("latin1");
    for (;;) {
      const nl = this.#rootCtl.indexOf("\n");
      if (nl < 0) break;
      const line = this.#rootCtl.slice(0, nl);
      this.#rootCtl = this.#rootCtl.slice(nl + 1);
      try {
        this.#rootCommand(tokenizeOriginal(line));
      } catch (err) {
        this.#rootCtl = ""; // the whole buffer is discarded on the first failure
        throw err instanceof FsError ? err : new FsError((err as Error).message, Errno.EINVAL);
      }
    }
    return data.length;
  }

  #rootCommand(t: string[]): void {
    const [cmd, ...a] = t;
    if (cmd === undefined) return;
    switch (cmd) {
      case "kill": {
        const sig = parseSignal(a[0]);
        if (!a[1] || !/^-?\d+$/.test(a[1])) throw new FsError("invalid pid", Errno.EINVAL);
        try {
          process.kill(Number(a[1]), sig);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          throw new FsError(code === "ESRCH" ? "No such process" : String(code), Errno.EINVAL);
        }
        return;
      }
      case "group-add":
        if (a.length !== 2) throw new FsError("Usage: group-add groupname gid", Errno.EINVAL);
        this.addGroup(a[0]!, Number(a[1]));
        return;
      case "user-add":
        if (a.length !== 4) throw new FsError("Usage: user-add uname uid groupname key", Errno.EINVAL);
        this.addUser(a[0]!, Number(a[1]), a[2]!, a[3]!);
        return;
      default:
        throw new FsError("unknown command", Errno.EINVAL);
    }
  }

  // ---- sessions (4.3, 4.4) -------------------------------------------------------------------

  #sessionDirs(): SynthNode[] {
    return [...this.sessions.values()].map((s) => s.dir);
  }

  #newSession(ctx: RequestContext): Session {
    const owner = this.userOf(ctx.user);
    if (!owner) throw new FsError("unknown user", Errno.EIO);
    let id = this.#nextSid;
    while (this.sessions.has(id)) id++;
    this.#nextSid = id + 1;
    const tmp = mkdtempSync(join(this.tmp, "xcpu-"));
    const s = new Session(this, id, owner, tmp);
    s.dir = this.#sessionDir(s);
    this.sessions.set(id, s);
    return s;
  }

  #sessionDir(s: Session): SynthDir {
    const own: SynthNodeOptions = {
      uid: s.owner.name,
      gid: s.owner.group,
      n_uid: s.owner.uid,
      n_gid: this.groups.get(s.owner.group) ?? NONUNAME,
    };
    const pt = passthrough(s.tmp, { permissions: "process", dialects: [Dialect.P2000u] });
    const fsNode = async (ctx: RequestContext): Promise<Node> => {
      const n = await pt.attach({ uname: ctx.user.uname, n_uname: ctx.user.n_uname, aname: "" }, ctx);
      return withName(n, "fs");
    };
    class SessionDir extends SynthDir {
      override async walk1(name: string, ctx: RequestContext): Promise<Node> {
        if (name === "fs") {
          this.checkPerm(ctx.user, 1);
          return fsNode(ctx);
        }
        return super.walk1(name, ctx);
      }
      override async open(mode: number, ctx: RequestContext): Promise<OpenFile> {
        const f = await super.open(mode, ctx);
        return {
          ...f,
          list: async (c) => [...(await f.list!(c)), await (await fsNode(c)).stat(c)],
        };
      }
    }
    const dir = new SessionDir(String(s.id), { ...own, mode: 0o555 });
    // Every open file holds the session (5.2).
    const file = (name: string, mode: number, o: SynthFileOptions<object>) =>
      dir.add(
        new SynthFile<object>(name, {
          ...own,
          mode,
          ...o,
          open: () => {
            s.incref();
            return {};
          },
          clunk: async (h, ctx) => {
            await o.clunk?.(h, ctx);
            s.decref();
          },
        }),
      );
    file("ctl", 0o660, {
      read: (_h, offset, count) => sliceAt(Buffer.from(String(s.pid)), offset, count),
      write: async (_h, _off, data, ctx) => {
        if (s.cloning) throw new FsError("cannot write while the session is cloning", Errno.EBUSY);
        // 7.1: appended to the command buffer; complete lines run in order; the tail waits.
        s.ctlBuf += Buffer.from(data).toString("latin1");
        for (;;) {
          const nl = s.ctlBuf.indexOf("\n");
          if (nl < 0) break;
          const line = s.ctlBuf.slice(0, nl);
          let tokens: string[];
          try {
            tokens = tokenizeOriginal(line);
          } catch {
            throw new FsError("invalid format", Errno.EINVAL);
          }
          // [BUG] reproduced: a failing line stays at the head of the buffer.
          const pending = tokens.length > 0 ? s.run(tokens, ctx) : undefined;
          if (pending) await pending;
          s.ctlBuf = s.ctlBuf.slice(nl + 1);
        }
        // The count minus what stays buffered (never below 0 here; the original's count could wrap).
        return Math.max(0, data.length - s.ctlBuf.length);
      },
      truncate: () => {
        s.ctlBuf = "";
      },
    });
    file("exec", 0o660, {
      read: () => {
        throw new FsError("No such file or directory", Errno.ENOENT);
      },
    });
    const buffer = (get: () => Buffer, set: (b: Buffer) => void) => ({
      length: () => get().length,
      read: (_h: unknown, offset: bigint, count: number) => sliceAt(get(), offset, count),
      write: (_h: unknown, offset: bigint, data: Uint8Array) => {
        const cur = get();
        const end = Number(offset) + data.length;
        const next = Buffer.alloc(Math.max(cur.length, end));
        cur.copy(next);
        next.set(data, Number(offset));
        set(next);
        return data.length;
      },
      truncate: (n: bigint) => set(get().subarray(0, Number(n))),
    });
    file(
      "argv",
      0o660,
      buffer(
        () => s.argv,
        (b) => {
          s.argv = b;
        },
      ),
    );
    file(
      "env",
      0o660,
      buffer(
        () => s.env,
        (b) => {
          s.env = b;
        },
      ),
    );
    const stdinWrite = (_h: unknown, _off: bigint, data: Uint8Array) => s.writeStdin(data);
    const outRead = (stream: OutStream) => ({
      read: (h: { state: object }, _off: bigint, count: number, ctx: RequestContext) =>
        stream.read(h.state, count, ctx.signal),
      clunk: (h: { state: object }) => stream.drop(h.state),
    });
    file("stdin", 0o660, {
      read: () => {
        throw new FsError("Cannot read", Errno.EINVAL);
      },
      write: stdinWrite,
      truncate: () => {},
    });
    file("stdout", 0o440, { ...outRead(s.stdout), truncate: () => {} });
    file("stderr", 0o440, { ...outRead(s.stderr), truncate: () => {} });
    file("stdio", 0o660, { ...outRead(s.stdout), write: stdinWrite });
    file("wait", 0o440, {
      read: (_h, offset, count, ctx) => s.readWait(offset, count, ctx.signal),
    });
    file("id", 0o440, { read: (_h, offset, count) => sliceAt(Buffer.from(s.idText), offset, count) });
    return dir;
  }
}

/** A node whose stat reports another name (the passthrough root is the session's temp dir). */
function withName(n: Node, name: string): Node {
  return new Proxy(n, {
    get(target, prop, recv) {
      if (prop === "stat") return async (ctx: RequestContext) => ({ ...(await target.stat(ctx)), name });
      const v = Reflect.get(target, prop, recv);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** An OpenSSH `ssh-rsa AAAA…` line as a PEM public key. */
export function sshRsaToPem(line: string): string {
  const b = Buffer.from(line.trim().split(/\s+/)[1] ?? "", "base64");
  let off = 0;
  const next = () => {
    const len = b.readUInt32BE(off);
    const v = b.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    return v;
  };
  if (next().toString() !== "ssh-rsa") throw new Error("invalid key type");
  const e = next();
  const n = next();
  const jwk = {
    kty: "RSA",
    e: Buffer.from(e).toString("base64url"),
    n: Buffer.from(n[0] === 0 ? n.subarray(1) : n).toString("base64url"),
  };
  return createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "pem" }) as string;
}

// ---- tree spawn (7.2) -------------------------------------------------------------------------

interface Target {
  addr: string;
  sid: string;
  passkey?: string;
}

/** `addr/sid[/passkey],…` (trailing commas ignored). */
function parseTargets(list: string): Target[] {
  return list
    .split(",")
    .filter(Boolean)
    .map((e) => {
      const [addr, sid, passkey] = e.split("/");
      if (!addr || !sid) throw new FsError("invalid address format", Errno.EINVAL);
      return { addr, sid, passkey };
    });
}

/** The fan-out rule of 7.2, written from the spec. */
function groupsOf(targets: Target[], k: number): Array<{ child: Target; rest: Target[] }> {
  const n = targets.length;
  if (k <= 0) return targets.map((child) => ({ child, rest: [] }));
  const direct = Math.min(k, n);
  const m = Math.ceil(n / direct);
  const g = m > 1 ? Math.ceil((n - direct) / (m - 1)) : 0;
  const cut = n - direct + g;
  const out: Array<{ child: Target; rest: Target[] }> = [];
  for (let i = 0; i < cut; i += m) {
    const grp = targets.slice(i, Math.min(i + m, cut));
    out.push({ child: grp[0]!, rest: grp.slice(1) });
  }
  for (let i = cut; i < n; i++) out.push({ child: targets[i]!, rest: [] });
  return out;
}

/** Copies this session to every direct child as `writer` (passkey auth); errors are dropped ([BUG]). */
async function treeSpawn(s: Session, writer: PoolUser, k: number, targets: Target[]): Promise<void> {
  await Promise.all(
    groupsOf(targets, k).map(async ({ child, rest }) => {
      try {
        await copyTo(s, writer, child, k, rest);
      } catch {
        // The original never sets the aggregated error code: child failures are silent.
      }
    }),
  );
}

async function copyTo(s: Session, writer: PoolUser, t: Target, k: number, rest: Target[]): Promise<void> {
  const address = t.addr.startsWith("tcp!") ? t.addr : `tcp!${t.addr}`;
  const client = await Client.connect(address, { msize: 32792, version: "9P2000.u", defaultPort: 6667 });
  try {
    const afid = await client.auth(writer.name, "", { n_uname: writer.uid });
    if (afid && t.passkey) {
      const challenge = await afid.read(4096);
      await afid.write(createHash("sha1").update(challenge).update(t.passkey).digest());
    }
    const root = await client.attach(writer.name, "", { afid: afid ?? undefined, n_uname: writer.uid });
    const put = async (path: string[], data: Buffer, create?: number) => {
      const f = await root.walk(create === undefined ? path : path.slice(0, -1));
      try {
        if (create === undefined) await f.open(OWRITE | OTRUNC);
        else await f.create(path.at(-1)!, create, OWRITE);
        for (let off = 0; off < data.length; off += 32768)
          await f.write(off, data.subarray(off, off + 32768));
      } finally {
        await f.clunk().catch(() => {});
      }
    };
    if (s.env.length > 0) await put([t.sid, "env"], s.env);
    if (s.argv.length > 0) await put([t.sid, "argv"], s.argv);
    const walkDir = async (rel: string[]) => {
      for (const name of readdirSync(join(s.tmp, ...rel))) {
        const local = join(s.tmp, ...rel, name);
        const st = statSync(local);
        if (st.isDirectory()) {
          const d = await root.walk([t.sid, "fs", ...rel]);
          try {
            await d.create(name, (DMDIR | (st.mode & 0o777)) >>> 0, OREAD);
          } catch {
            // exists: opened instead
          } finally {
            await d.clunk().catch(() => {});
          }
          await walkDir([...rel, name]);
        } else if (st.isFile()) {
          await put([t.sid, "fs", ...rel, name], readFileSync(local), st.mode & 0o777);
        }
      }
    };
    await walkDir([]);
    if (rest.length > 0) {
      const list = rest.map((r) => `${r.addr}/${r.sid}${r.passkey ? `/${r.passkey}` : ""},`).join("");
      await put([t.sid, "ctl"], Buffer.from(`clone ${k} ${list}\n`));
    }
  } finally {
    client.destroy();
  }
}
