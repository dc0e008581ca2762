// Talks to one xcpufs node the way statfs needs: connect with a deadline, authenticate as the admin
// user, read `arch` once, and on every poll read `state`, count the session directories in the
// root and, when the node offers them, read load/memory/uptime and the process table.
//
// Works against an original xcpufs (arch, state, clone, procs only) and uses our xcpufs' `sysinfo`
// file when the root directory lists it.

import type { KeyObject } from "node:crypto";
import net from "node:net";
import { afterIoTimeout, Client, type Fid } from "@clustermatic/ninep/client";
import { OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import { RemoteError, TimeoutError } from "@clustermatic/ninep/errors";
import { ADMIN_UID_DEFAULT, ADMIN_USER, signChallenge } from "./auth.js";
import type { NodeConfig } from "./config.js";
import {
  type ConnectOptions,
  type Connector,
  NoAnswerError,
  type NodeSession,
  type PollResult,
} from "./monitor.js";
import { FIELD_MAX } from "./table.js";

export interface XcpufsConnectorOptions {
  /** Admin private key; without one statfs attaches without authentication (xcpufs --no-auth). */
  key?: KeyObject;
  uname?: string;
  uid?: number;
  /** 9P msize offered (the original statfs uses 8216). */
  msize?: number;
  /** Called with one line per 9P message (debugging). */
  trace?: (node: string, line: string) => void;
}

/** Names in a node's root that are session directories. */
const SESSION_RE = /^\d+$/;
/** Our xcpufs' extension file with load, memory and uptime. */
export const SYSINFO_FILE = "sysinfo";

function dialTcp(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const cancelTimeout = afterIoTimeout(timeoutMs, () => {
      sock.destroy();
      reject(new TimeoutError(`connect to ${host}!${port} timed out after ${timeoutMs} ms`));
    });
    sock.once("connect", () => {
      cancelTimeout();
      sock.off("error", onError);
      sock.setNoDelay(true);
      resolve(sock);
    });
    const onError = (err: NodeJS.ErrnoException) => {
      cancelTimeout();
      sock.destroy();
      reject(
        new Error(`${err.code === "ECONNREFUSED" ? "connection refused" : err.message}: ${host}!${port}`),
      );
    };
    sock.once("error", onError);
  });
}

/** Races `p` against a deadline; on expiry runs `onTimeout` (which should tear the connection down). */
async function deadline<T>(p: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  let cancelTimeout: (() => void) | undefined;
  const t = new Promise<never>((_, reject) => {
    cancelTimeout = afterIoTimeout(ms, () => {
      onTimeout();
      reject(new TimeoutError(`${what} timed out after ${ms} ms`));
    });
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    cancelTimeout?.();
  }
}

/** Reads a whole (small) file through an open fid, up to `max` bytes. */
async function readAll(fid: Fid, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  while (total < max) {
    const chunk = await fid.read(total, Math.min(fid.iounit, max - total));
    if (chunk.length === 0) break;
    parts.push(Buffer.from(chunk));
    total += chunk.length;
  }
  return Buffer.concat(parts);
}

async function readFile(root: Fid, name: string, max: number): Promise<Buffer> {
  const f = await root.walk([name]);
  try {
    await f.open(OREAD);
    return await readAll(f, max);
  } finally {
    await f.clunk();
  }
}

/** Parses the `sysinfo` extension: `key value…` lines (load, mem, uptime). Unknown keys are ignored. */
export function parseSysinfo(text: string): Partial<PollResult> {
  const out: Partial<PollResult> = {};
  for (const line of text.split("\n")) {
    const [key, ...vals] = line.trim().split(/\s+/);
    const nums = vals.map(Number);
    if (key === "load" && nums.length >= 3 && nums.slice(0, 3).every(Number.isFinite)) {
      out.load = [nums[0]!, nums[1]!, nums[2]!];
    } else if ((key === "memtotal" || key === "mem_total") && Number.isFinite(nums[0])) {
      out.memTotalBytes = nums[0];
    } else if (
      (key === "memavail" || key === "mem_available" || key === "memavailable") &&
      Number.isFinite(nums[0])
    ) {
      out.memAvailableBytes = nums[0];
    } else if (key === "uptime" && Number.isFinite(nums[0])) {
      out.uptimeSeconds = nums[0];
    }
  }
  return out;
}

/** One record of a `procs` table, split into fields (the cmdline list kept as one field). */
export function splitProcsRecord(line: string): string[] | undefined {
  const t = line.trim();
  if (!t.startsWith("(") || !t.endsWith(")")) return undefined;
  const body = t.slice(1, -1);
  const fields: string[] = [];
  let i = 0;
  while (i < body.length) {
    while (body[i] === " ") i++;
    if (i >= body.length) break;
    const start = i;
    if (body[i] === "(") {
      // The command line: a parenthesised list whose elements may be quoted with '…' ('' = ').
      let depth = 0;
      let quoted = false;
      for (; i < body.length; i++) {
        const c = body[i];
        if (quoted) {
          if (c === "'") {
            if (body[i + 1] === "'") i++;
            else quoted = false;
          }
        } else if (c === "'") quoted = true;
        else if (c === "(") depth++;
        else if (c === ")" && --depth === 0) {
          i++;
          break;
        }
      }
    } else {
      while (i < body.length && body[i] !== " ") i++;
    }
    fields.push(body.slice(start, i));
  }
  return fields;
}

/**
 * Reads a `procs` table (8.4 format): processes, distinct job ids (the part of xcpujid before `/`),
 * runnable processes, and the node's uptime taken from the elapsed time of process 1.
 */
export function countJobs(
  procs: string,
): Pick<PollResult, "processes" | "jobs" | "uptimeSeconds"> & { running: number } {
  const jobs = new Set<string>();
  let processes = 0;
  let running = 0;
  let uptimeSeconds: number | undefined;
  const lines = procs.split("\n");
  for (let i = 1; i < lines.length; i++) {
    const f = splitProcsRecord(lines[i]!);
    if (!f || f.length < 11 || !/^\d+$/.test(f[0]!)) continue;
    processes++;
    if (f[2] === "R") running++;
    if (f[0] === "1" && /^\d+$/.test(f[10]!)) uptimeSeconds = Number(f[10]) / 1000;
    const jid = f[f.length - 1];
    if (f.length >= 27 && jid && jid !== "''" && jid.includes("/")) jobs.add(jid.slice(0, jid.indexOf("/")));
  }
  return { processes, jobs: jobs.size, running, ...(uptimeSeconds !== undefined ? { uptimeSeconds } : {}) };
}

class XcpufsSession implements NodeSession {
  readonly arch: Uint8Array;
  private closeCbs: ((err?: Error) => void)[] = [];
  private closed = false;
  private hasSysinfo: boolean | undefined;
  /** Re-open the root for every listing (if re-reading an open directory fails on this server). */
  private reopenDir = false;

  constructor(
    private readonly client: Client,
    private readonly socket: net.Socket,
    private readonly root: Fid,
    /** `state`, open for reading: re-read at offset 0 on every poll, as the original does. */
    private readonly stateFid: Fid,
    /** The root directory, open for reading: re-read from offset 0 on every poll. */
    private readonly dirFid: Fid,
    arch: Uint8Array,
    private readonly readTimeoutMs: number,
    private readonly procs: () => boolean,
  ) {
    this.arch = arch;
    socket.once("close", () => this.fireClose());
  }

  private fireClose(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const cb of this.closeCbs.splice(0)) cb(err);
  }

  onClose(cb: (err?: Error) => void): void {
    if (this.closed) cb();
    else this.closeCbs.push(cb);
  }

  /** Closes from our side: the onClose callbacks are for connections the node ended. */
  close(): void {
    this.closed = true;
    this.closeCbs = [];
    this.client.destroy();
    this.socket.destroy();
  }

  async poll(): Promise<PollResult> {
    return deadline(this.pollInner(), this.readTimeoutMs, `poll of ${this.client.label}`, () => this.close());
  }

  private async pollInner(): Promise<PollResult> {
    const [state, entries] = await Promise.all([this.stateFid.read(0, 128), this.listRoot()]);
    let sessions = 0;
    let sysinfo = false;
    let procs = false;
    for (const e of entries) {
      if (SESSION_RE.test(e.name)) sessions++;
      else if (e.name === SYSINFO_FILE) sysinfo = true;
      else if (e.name === "procs") procs = true;
    }
    this.hasSysinfo = sysinfo;
    const result: PollResult = { state, sessions };
    const extra: Promise<void>[] = [];
    if (this.hasSysinfo) {
      extra.push(
        readFile(this.root, SYSINFO_FILE, 4096).then(
          (b) => void Object.assign(result, parseSysinfo(b.toString())),
        ),
      );
    }
    let table: ReturnType<typeof countJobs> | undefined;
    // Not from the original xcpufs (no sysinfo): it can crash on a read of procs while a process
    // ends (a free of an unset pointer), and polling would read it every interval.
    if (procs && this.hasSysinfo && this.procs()) {
      extra.push(readFile(this.root, "procs", 16 << 20).then((b) => void (table = countJobs(b.toString()))));
    }
    await Promise.all(extra);
    if (table) {
      result.processes = table.processes;
      result.jobs = table.jobs;
      // sysinfo's uptime is exact; the elapsed time of process 1 is the fallback.
      result.uptimeSeconds ??= table.uptimeSeconds;
    }
    return result;
  }

  private async listRoot() {
    if (!this.reopenDir) {
      try {
        return await this.dirFid.readdir();
      } catch (err) {
        if (!(err instanceof RemoteError)) throw err;
        this.reopenDir = true;
      }
    }
    return this.root.readdir();
  }

  async writeState(text: string): Promise<void> {
    const f = await this.root.walk(["state"]);
    try {
      await f.open(OWRITE | OTRUNC);
      if (text.length) await f.write(0, text);
    } finally {
      await f.clunk();
    }
  }
}

/** Opens admin sessions to xcpufs nodes. */
export class XcpufsConnector implements Connector {
  constructor(
    private readonly opts: XcpufsConnectorOptions = {},
    private readonly procs: () => boolean = () => false,
  ) {}

  async connect(node: NodeConfig, t: ConnectOptions): Promise<NodeSession> {
    const socket = await dialTcp(node.host, node.port, t.connectTimeoutMs);
    let client: Client | undefined;
    const setup = async (): Promise<NodeSession> => {
      client = await Client.connect(socket, {
        msize: this.opts.msize ?? 8216,
        version: "9P2000.u",
        connectTimeoutMs: t.readTimeoutMs,
        timeoutMs: t.readTimeoutMs,
        label: node.address,
        trace: this.opts.trace ? (line) => this.opts.trace!(node.name, line) : undefined,
      });
      const uname = this.opts.uname ?? ADMIN_USER;
      const n_uname = this.opts.uid ?? ADMIN_UID_DEFAULT;
      let root: Fid;
      if (this.opts.key) {
        const afid = await client.auth(uname, "", { n_uname });
        if (afid) {
          const challenge = await readChallenge(afid);
          if (challenge.length === 0) throw new Error("authentication failed: empty challenge");
          await afid.write(signChallenge(challenge, this.opts.key));
          root = await client.attach(uname, "", { afid, n_uname });
          afid.clunk().catch(() => {});
        } else root = await client.attach(uname, "", { n_uname });
      } else {
        root = await client.attach(uname, "", { n_uname });
      }
      const arch = await readFile(root, "arch", FIELD_MAX);
      const stateFid = await root.walk(["state"]);
      await stateFid.open(OREAD);
      const dirFid = await root.clone();
      await dirFid.open(OREAD);
      return new XcpufsSession(client, socket, root, stateFid, dirFid, arch, t.readTimeoutMs, this.procs);
    };
    try {
      return await deadline(setup(), t.connectTimeoutMs + t.readTimeoutMs, `login to ${node.address}`, () => {
        client?.destroy();
        socket.destroy();
      });
    } catch (err) {
      client?.destroy();
      socket.destroy();
      if (err instanceof TimeoutError) throw new NoAnswerError(`connected, but no answer: ${err.message}`);
      throw err;
    }
  }
}

async function readChallenge(afid: { read(n: number): Promise<Buffer> }): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  while (total < 4096) {
    const b = await afid.read(4096 - total);
    if (b.length === 0) break;
    parts.push(Buffer.from(b));
    total += b.length;
  }
  return Buffer.concat(parts);
}
