// The 9P tree statfs serves:
//
//   /state              the original table (read-only; what xstat and `xrx -a` read)
//   /json               every node as JSON (the /api/nodes document)
//   /ctl                admin commands naming a node: `down NODE [reason]`, `up NODE`,
//                       `state NODE TEXT`, `poll [NODE]`
//   /nodes/NODE/        per node: status, arch, address, numjobs, info, json, ctl
//                       (its ctl takes the same commands without the node name)
//
// Anyone may attach and read, without authentication, as with the original. Writing a ctl file
// needs an attach authenticated with the admin key (the xcpufs challenge–response), or the
// `ctlWithoutAuth` option for development.

import type { KeyObject } from "node:crypto";
import { userInfo } from "node:os";
import type { Qid, Stat } from "@clustermatic/ninep/codec";
import { DMDIR, OTRUNC, QTAUTH, QTDIR, QTFILE } from "@clustermatic/ninep/codec";
import { Ename, Errno, FsError } from "@clustermatic/ninep/errors";
import type {
  AttachRequest,
  AuthFile,
  Backend,
  Identity,
  Node,
  OpenFile,
  RequestContext,
  StatChanges,
} from "@clustermatic/ninep/server";
import { newChallenge, verifyResponse } from "./auth.js";
import { holdReasonProblem, type Monitor, type NodeRecord, statusOf, viewOf } from "./monitor.js";

export interface StatfsTreeOptions {
  /** Admin key: an attach authenticated with it may write ctl files. */
  adminKey?: KeyObject;
  /** Let any attach write ctl files (development only). */
  ctlWithoutAuth?: boolean;
}

const OWNER = (() => {
  try {
    return userInfo().username;
  } catch {
    return "statfs";
  }
})();
const START = Math.floor(Date.now() / 1000);

type Content = () => Buffer;

/** Longest error text a ctl write answers with (characters). */
const MAX_ENAME = 200;

/** A read-only or control file. */
interface FileSpec {
  name: string;
  mode: number;
  read?: Content;
  write?: (text: string, ctx: RequestContext) => Promise<void>;
}

class Ids {
  private next = 16n;
  private readonly map = new Map<string, bigint>();
  get(key: string): bigint {
    let v = this.map.get(key);
    if (v === undefined) {
      v = this.next++;
      this.map.set(key, v);
    }
    return v;
  }
}

function mkStat(name: string, qid: Qid, mode: number, length = 0n): Stat {
  return {
    type: 0,
    dev: 0,
    qid,
    mode,
    atime: START,
    mtime: START,
    length,
    name,
    uid: OWNER,
    gid: OWNER,
    muid: OWNER,
    extension: "",
    n_uid: process.getuid?.() ?? 0,
    n_gid: process.getgid?.() ?? 0,
    n_muid: process.getuid?.() ?? 0,
  };
}

function sliceAt(buf: Buffer, offset: bigint, count: number): Uint8Array {
  if (offset >= BigInt(buf.length)) return new Uint8Array(0);
  const o = Number(offset);
  return buf.subarray(o, o + count);
}

class FileNode implements Node {
  readonly qid: Qid;
  constructor(
    private readonly spec: FileSpec,
    path: bigint,
    private readonly parent: () => Node,
    private readonly admin: boolean,
    private readonly ctlOpen: boolean,
  ) {
    this.qid = { type: QTFILE, version: 0, path };
  }

  get name(): string {
    return this.spec.name;
  }

  async stat(): Promise<Stat> {
    return mkStat(this.spec.name, this.qid, this.spec.mode);
  }

  async walk1(name: string): Promise<Node> {
    if (name === "..") return this.parent();
    throw new FsError(Ename.WalkNoDir);
  }

  /**
   * A ctl file takes a truncation to 0, with or without times, from whoever may write it: what
   * Linux v9fs sends after the truncating open of `echo down > ctl` on a mounted statfs. There is
   * nothing to truncate; anything else is refused.
   */
  async wstat(changes: StatChanges): Promise<void> {
    const truncation =
      changes.length === 0n &&
      Object.entries(changes).every(([k, v]) => v === undefined || ["length", "mtime", "atime"].includes(k));
    if (!truncation || !this.spec.write || (!this.admin && !this.ctlOpen)) {
      throw new FsError(Ename.WstatProhibited, Errno.EPERM);
    }
  }

  async open(mode: number): Promise<OpenFile> {
    const acc = mode & 3;
    const wantsWrite = acc === 1 || acc === 2 || (mode & OTRUNC) !== 0;
    const wantsRead = acc === 0 || acc === 2;
    if (wantsRead && !this.spec.read) throw new FsError(Ename.Perm);
    if (wantsWrite) {
      if (!this.spec.write) throw new FsError(Ename.Perm);
      if (!this.admin && !this.ctlOpen) {
        throw new FsError(
          `${Ename.Perm}: ctl writes need an attach authenticated with the admin key (or statfs --ctl-noauth)`,
          Errno.EACCES,
        );
      }
    }
    const spec = this.spec;
    let snapshot: Buffer | undefined;
    return {
      read: async (offset, count) => {
        // A read at offset 0 regenerates the content (clients that re-read an open fid see fresh
        // data); later offsets continue the same snapshot so a multi-read transfer is consistent.
        if (offset === 0n || !snapshot) snapshot = spec.read!();
        return sliceAt(snapshot, offset, count);
      },
      write: async (_offset, data, ctx) => {
        try {
          await spec.write!(Buffer.from(data).toString("utf8"), ctx);
        } catch (err) {
          // Errors quote what was written: keep them short (the 9P server itself cuts an error
          // only where it would no longer fit in msize, which leaves a 64 KiB line nearly whole).
          if (err instanceof FsError && err.ename.length > MAX_ENAME)
            throw new FsError(`${err.ename.slice(0, MAX_ENAME - 1)}…`, err.errno);
          throw err;
        }
        return data.length;
      },
    };
  }
}

class DirNode implements Node {
  readonly qid: Qid;
  constructor(
    readonly name: string,
    path: bigint,
    private readonly parent: () => Node,
    private readonly children: () => Node[],
    private readonly lookup: (name: string) => Node | undefined,
  ) {
    this.qid = { type: QTDIR, version: 0, path };
  }

  async stat(): Promise<Stat> {
    return mkStat(this.name, this.qid, DMDIR | 0o555);
  }

  async walk1(name: string): Promise<Node> {
    if (name === "..") return this.parent();
    const n = this.lookup(name);
    if (!n) throw new FsError(Ename.NotFound);
    return n;
  }

  async open(mode: number): Promise<OpenFile> {
    if ((mode & 3) !== 0) throw new FsError(Ename.Perm);
    return {
      list: async (ctx) => Promise.all(this.children().map((c) => c.stat(ctx))),
    };
  }
}

/** Splits a ctl line into a command word and the rest. */
function splitCommand(line: string): [string, string] {
  const t = line.trim();
  const i = t.search(/\s/);
  return i < 0 ? [t, ""] : [t.slice(0, i), t.slice(i + 1).trim()];
}

/** Runs one per-node ctl command. */
async function nodeCommand(mon: Monitor, node: string, line: string): Promise<void> {
  const [cmd, rest] = splitCommand(line);
  switch (cmd) {
    case "down": {
      const reason = rest || "admin";
      const problem = holdReasonProblem(reason);
      if (problem) throw new FsError(problem);
      mon.setHold(node, reason);
      return persisted(mon);
    }
    case "up":
      if (rest) throw new FsError("usage: up");
      mon.setHold(node, undefined);
      return persisted(mon);
    case "state":
      if (/[\t\n]/.test(rest)) throw new FsError("bad state text: no tabs or newlines");
      try {
        await mon.writeNodeState(node, rest);
      } catch (err) {
        throw new FsError((err as Error).message);
      }
      return;
    case "poll":
      if (rest) throw new FsError("usage: poll");
      mon.pollNow(node);
      return;
    default:
      throw new FsError(`unknown command "${cmd}" (down [reason], up, state TEXT, poll)`);
  }
}

/** A hold is in force at once; the writer learns when it will not outlive a restart. */
async function persisted(mon: Monitor): Promise<void> {
  try {
    await mon.persistHolds?.();
  } catch (err) {
    throw new FsError(`in force, but not saved: ${(err as Error).message}`);
  }
}

/** Commands of the root ctl: the per-node ones, each followed by the node's name. */
const ROOT_COMMANDS = ["down", "up", "state", "poll"];

async function runLines(text: string, fn: (line: string) => Promise<void>): Promise<void> {
  for (const line of text.split("\n")) if (line.trim() !== "") await fn(line);
}

/** Builds the tree for one attach. */
class View {
  readonly root: DirNode;
  private readonly nodesDir: DirNode;

  constructor(
    private readonly mon: Monitor,
    private readonly ids: Ids,
    private readonly admin: boolean,
    private readonly ctlOpen: boolean,
  ) {
    const rootFiles = (): Node[] => [
      this.file(this.stateSpec, "/state", () => this.root),
      this.file(this.jsonSpec, "/json", () => this.root),
      this.file(this.ctlSpec, "/ctl", () => this.root),
      this.nodesDir,
    ];
    this.root = new DirNode(
      "/",
      ids.get("/"),
      () => this.root,
      rootFiles,
      (name) => rootFiles().find((n) => nameOf(n) === name),
    );
    this.nodesDir = new DirNode(
      "nodes",
      ids.get("/nodes"),
      () => this.root,
      () => this.mon.nodes().map((r) => this.nodeDir(r)),
      (name) => {
        const r = this.mon.node(name);
        return r ? this.nodeDir(r) : undefined;
      },
    );
  }

  private readonly stateSpec: FileSpec = { name: "state", mode: 0o444, read: () => this.mon.table() };
  private readonly jsonSpec: FileSpec = {
    name: "json",
    mode: 0o444,
    read: () => Buffer.from(`${JSON.stringify({ nodes: this.mon.nodes().map(viewOf) })}\n`),
  };
  private readonly ctlSpec: FileSpec = {
    name: "ctl",
    mode: 0o660,
    write: (text) =>
      runLines(text, async (line) => {
        const [cmd, rest] = splitCommand(line);
        if (cmd === "poll" && rest === "") {
          this.mon.pollNow();
          return;
        }
        if (!ROOT_COMMANDS.includes(cmd))
          throw new FsError(
            `unknown command "${cmd}" (down NODE [reason], up NODE, state NODE TEXT, poll [NODE])`,
          );
        const [node, args] = splitCommand(rest);
        if (!node) throw new FsError(`usage: ${cmd} NODE …`);
        if (!this.mon.node(node)) throw new FsError(`unknown node "${node}"`);
        await nodeCommand(this.mon, node, `${cmd} ${args}`);
      }),
  };

  private file(spec: FileSpec, key: string, parent: () => Node): FileNode {
    return new FileNode(spec, this.ids.get(key), parent, this.admin, this.ctlOpen);
  }

  private nodeDir(r: NodeRecord): DirNode {
    const name = r.config.name;
    const key = `/nodes/${name}`;
    const self: DirNode = new DirNode(
      name,
      this.ids.get(key),
      () => this.nodesDir,
      () => files(),
      (n) => files().find((f) => nameOf(f) === n),
    );
    const mon = this.mon;
    const cur = () => mon.node(name) ?? r;
    const line = (s: string) => Buffer.from(`${s}\n`);
    const specs: FileSpec[] = [
      { name: "status", mode: 0o444, read: () => Buffer.concat([statusOf(cur()), Buffer.from("\n")]) },
      { name: "arch", mode: 0o444, read: () => cur().arch },
      { name: "address", mode: 0o444, read: () => line(cur().config.address) },
      { name: "numjobs", mode: 0o444, read: () => line(String(cur().numjobs)) },
      { name: "info", mode: 0o444, read: () => Buffer.from(infoText(cur())) },
      { name: "json", mode: 0o444, read: () => line(JSON.stringify(viewOf(cur()))) },
      { name: "ctl", mode: 0o660, write: (text) => runLines(text, (l) => nodeCommand(mon, name, l)) },
    ];
    const files = () => specs.map((s) => this.file(s, `${key}/${s.name}`, () => self));
    return self;
  }
}

function nameOf(n: Node): string {
  return n instanceof DirNode || n instanceof FileNode ? n.name : "";
}

/** `key value` lines with everything known about a node. */
export function infoText(r: NodeRecord): string {
  const v = viewOf(r);
  const out: string[] = [
    `name ${v.name}`,
    `address ${v.address}`,
    `arch ${v.arch}`,
    `status ${v.status}`,
    `sessions ${v.sessions}`,
  ];
  if (v.hold !== null) out.push(`hold ${v.hold}`);
  if (v.jobs !== null) out.push(`jobs ${v.jobs}`);
  if (v.processes !== null) out.push(`processes ${v.processes}`);
  if (v.load) out.push(`load ${v.load.join(" ")}`);
  if (v.memTotalBytes !== null) out.push(`memtotal ${v.memTotalBytes}`);
  if (v.memAvailableBytes !== null) out.push(`memavail ${v.memAvailableBytes}`);
  if (v.uptimeSeconds !== null) out.push(`uptime ${v.uptimeSeconds}`);
  for (const [k, val] of Object.entries(v.labels)) out.push(`label ${k}=${val}`);
  if (v.error !== null) out.push(`error ${v.error}`);
  out.push(`since ${v.since}`);
  return `${out.join("\n")}\n`;
}

class ChallengeFile implements AuthFile {
  readonly qid: Qid;
  private readonly challenge = newChallenge();
  private response = Buffer.alloc(0);
  constructor(
    private readonly key: KeyObject | undefined,
    path: bigint,
  ) {
    this.qid = { type: QTAUTH, version: 0, path };
  }
  async read(offset: bigint, count: number): Promise<Uint8Array> {
    return sliceAt(this.challenge, offset, count);
  }
  async write(offset: bigint, data: Uint8Array): Promise<number> {
    const end = Number(offset) + data.length;
    if (end > 4096) throw new FsError("invalid size");
    const next = Buffer.alloc(Math.max(end, this.response.length));
    this.response.copy(next);
    Buffer.from(data).copy(next, Number(offset));
    this.response = next;
    return data.length;
  }
  authenticated(_user: Identity): boolean {
    return this.key !== undefined && verifyResponse(this.challenge, this.response, this.key);
  }
}

/** The 9P backend of statfs. */
export function statfsBackend(mon: Monitor, opts: StatfsTreeOptions = {}): Backend {
  const ids = new Ids();
  let authPath = 1n << 40n;
  return {
    dialects: ["9P2000", "9P2000.u"],
    async auth(): Promise<AuthFile> {
      return new ChallengeFile(opts.adminKey, authPath++);
    },
    async attach(req: AttachRequest): Promise<Node> {
      if (req.auth && !req.auth.authenticated(req)) throw new FsError(Ename.AuthFailed);
      const admin = req.auth !== undefined;
      return new View(mon, ids, admin, opts.ctlWithoutAuth === true).root;
    },
  };
}
