// The poll engine: one loop per configured node, a shared limit on polls in flight, timeouts,
// exponential backoff for nodes that are down, a watchdog, and the per-node records everything
// else serves (the `state` table, per-node files, JSON, metrics, events).

import { EventEmitter } from "node:events";
import { TimeoutError } from "@clustermatic/ninep/errors";
import type { Config, NodeConfig, PollSettings } from "./config.js";
import { Histogram } from "./prom.js";
import { ARCH_UNKNOWN, clampField, formatTable, type TableRow } from "./table.js";

/** What one poll of a node found. Optional fields come from nodes that offer them. */
export interface PollResult {
  /** The node's `state` file content (empty = up). */
  state: Uint8Array;
  /** Session directories in the node's root (the original `numjobs`). */
  sessions: number;
  /** Distinct job ids among the node's processes (when procs are read). */
  jobs?: number;
  processes?: number;
  load?: [number, number, number];
  memTotalBytes?: number;
  memAvailableBytes?: number;
  uptimeSeconds?: number;
}

/** A live, authenticated connection to one node. */
export interface NodeSession {
  /** The node's `arch` file, read at connect time. */
  readonly arch: Uint8Array;
  /** Reads the node's state and details. Rejects on any transport or protocol error. */
  poll(): Promise<PollResult>;
  /** Writes the node's own `state` file (empty text clears it). */
  writeState(text: string): Promise<void>;
  /** Called once when the node ends the connection (not after our own close()). */
  onClose(cb: (err?: Error) => void): void;
  close(): void;
}

export interface ConnectOptions {
  connectTimeoutMs: number;
  readTimeoutMs: number;
}

/** Opens sessions to nodes (9P + xcpufs auth in production). */
export interface Connector {
  connect(node: NodeConfig, opts: ConnectOptions): Promise<NodeSession>;
}

/**
 * A connector's failure when the TCP connection was made but the node did not answer the login in
 * time (a hung or stopped xcpufs: its kernel still accepts connections).
 */
export class NoAnswerError extends TimeoutError {}

/** Status strings of the original, plus the admin hold. */
export const Status = {
  up: "up",
  initializing: "down(initializing)",
  disconnected: "down(disconnected)",
  connectFailed: "down(connect_failed)",
  readFailed: "down(read_failed)",
  noContact: "down(no_contact)",
} as const;

/** Everything statfs knows about one node. */
export interface NodeRecord {
  config: NodeConfig;
  arch: Buffer;
  /** Status as polled (before an admin hold). */
  polled: Buffer;
  /** Admin hold reason set through `ctl`, if any: the node is shown as `down(<reason>)`. */
  hold: string | undefined;
  numjobs: number;
  details: Omit<PollResult, "state" | "sessions">;
  /** Last error text (connect/read failure), cleared when the node answers. */
  error: string | undefined;
  /** Consecutive failed polls. */
  failures: number;
  polls: number;
  pollErrors: number;
  lastPollMs: number;
  /** Wall-clock ms of the last answer from the node. */
  lastContact: number;
  /** Wall-clock ms of the last status change. */
  since: number;
  /** Internal. */
  session: NodeSession | undefined;
  wake: (() => void) | undefined;
  /**
   * Internal: a poll was asked for (ctl `poll`, a `state` write) while the loop was not asleep,
   * e.g. during a poll that may have read the node before the change: the loop polls again at once
   * instead of at the next interval.
   */
  pollAsked: boolean;
  active: boolean;
  looping: boolean;
  /** Bumped on every change that matters to readers of the table. */
  version: number;
}

/** A JSON view of a node (the `/api/nodes` items and the SSE payloads). */
export interface NodeView {
  name: string;
  address: string;
  arch: string;
  status: string;
  up: boolean;
  numjobs: number;
  hold: string | null;
  labels: Record<string, string>;
  sessions: number;
  jobs: number | null;
  processes: number | null;
  load: [number, number, number] | null;
  memTotalBytes: number | null;
  memAvailableBytes: number | null;
  uptimeSeconds: number | null;
  error: string | null;
  since: string;
  lastContact: string | null;
  lastPollMs: number;
  polls: number;
  pollErrors: number;
}

export interface MonitorOptions {
  connector: Connector;
  /** Clock for tests of the watchdog; defaults to Date.now. */
  now?: () => number;
}

/** Poll latency buckets in seconds. */
export const LATENCY_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Why `reason` cannot be an admin hold (it is shown as `down(<reason>)` in the table), or undefined. */
export function holdReasonProblem(reason: unknown): string | undefined {
  if (typeof reason !== "string" || reason === "") return "bad reason: expected a non-empty string";
  if (/[\t\n()]/.test(reason)) return "bad reason: no tabs, newlines or parentheses";
  if (Buffer.byteLength(`down(${reason})`) > 63) return "reason too long";
  return undefined;
}

export function statusOf(n: NodeRecord): Buffer {
  return n.hold !== undefined ? Buffer.from(`down(${n.hold})`) : n.polled;
}

function trimText(b: Uint8Array): string {
  return Buffer.from(b).toString("utf8").replace(/\s+$/, "");
}

export function viewOf(n: NodeRecord): NodeView {
  const status = statusOf(n).toString("utf8");
  const d = n.details;
  return {
    name: n.config.name,
    address: n.config.address,
    arch: trimText(n.arch),
    status: status.replace(/\s+$/, ""),
    up: status === "up",
    numjobs: n.numjobs,
    hold: n.hold ?? null,
    labels: n.config.labels,
    sessions: n.numjobs,
    jobs: d.jobs ?? null,
    processes: d.processes ?? null,
    load: d.load ?? null,
    memTotalBytes: d.memTotalBytes ?? null,
    memAvailableBytes: d.memAvailableBytes ?? null,
    uptimeSeconds: d.uptimeSeconds ?? null,
    error: n.error ?? null,
    since: new Date(n.since).toISOString(),
    lastContact: n.lastContact ? new Date(n.lastContact).toISOString() : null,
    lastPollMs: n.lastPollMs,
    polls: n.polls,
    pollErrors: n.pollErrors,
  };
}

/** Counts polls in flight and queues the rest (FIFO). */
class Semaphore {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(public limit: number) {}
  get inFlight(): number {
    return this.active;
  }
  get waiting(): number {
    return this.queue.length;
  }
  acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.queue.push(resolve));
  }
  release(): void {
    // Above a limit that a reload lowered, a slot that ends is not handed on.
    const next = this.active > this.limit ? undefined : this.queue.shift();
    if (next) next();
    else this.active--;
  }
  /** Applies a new limit, starting queued work if it grew. */
  resize(limit: number): void {
    this.limit = limit;
    while (this.active < this.limit && this.queue.length) {
      this.active++;
      this.queue.shift()!();
    }
  }
}

export interface MonitorEvents {
  change: [NodeView];
  reload: [Config];
}

/**
 * Polls every configured node. Emits `change` (a NodeView) when a node's status, arch, job count
 * or hold changes, and `reload` after a new configuration took effect.
 */
export class Monitor extends EventEmitter<MonitorEvents> {
  private config: Config;
  private records = new Map<string, NodeRecord>();
  private order: NodeRecord[] = [];
  /** Polls of connected nodes. */
  private readonly sem: Semaphore;
  /** Connection attempts (a separate budget, so nodes that hang on connect never hold up polls). */
  private readonly connectSem: Semaphore;
  private readonly connector: Connector;
  private readonly now: () => number;
  private running = false;
  private watchdog: NodeJS.Timeout | undefined;
  private tableCache: Buffer | undefined;
  /**
   * Makes the admin holds in force now survive a restart (the daemon's hold file); rejects when
   * they could not be saved. Awaited by the ctl commands that set or clear a hold.
   */
  persistHolds: (() => Promise<void>) | undefined;
  /** Poll latency histogram over all nodes. */
  readonly latency = new Histogram(LATENCY_BOUNDS);
  /** Time polls waited for a free slot (scheduler lag), seconds. */
  readonly queueWait = new Histogram(LATENCY_BOUNDS);
  private roundStart = 0;
  private roundPending = new Set<NodeRecord>();
  /** Wall time of the last complete round over all nodes (ms), -1 before the first. */
  lastRoundMs = -1;
  reloads = 0;

  constructor(config: Config, opts: MonitorOptions) {
    super();
    this.config = config;
    this.connector = opts.connector;
    this.now = opts.now ?? Date.now;
    this.sem = new Semaphore(config.poll.concurrency);
    this.connectSem = new Semaphore(config.poll.concurrency);
    this.setNodes(config.nodes);
  }

  get poll(): PollSettings {
    return this.config.poll;
  }

  get currentConfig(): Config {
    return this.config;
  }

  /** Nodes in configuration order. */
  nodes(): readonly NodeRecord[] {
    return this.order;
  }

  node(name: string): NodeRecord | undefined {
    return this.records.get(name);
  }

  get inFlight(): number {
    return this.sem.inFlight + this.connectSem.inFlight;
  }

  get queued(): number {
    return this.sem.waiting + this.connectSem.waiting;
  }

  /** The `state` table (cached until something in it changes). */
  table(): Buffer {
    if (!this.tableCache) {
      const rows: TableRow[] = this.order.map((n) => ({
        name: n.config.name,
        address: n.config.address,
        arch: n.arch,
        status: statusOf(n),
        numjobs: n.numjobs,
      }));
      this.tableCache = formatTable(rows);
    }
    return this.tableCache;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.startRound();
    for (const n of this.order) if (!n.looping) this.runLoop(n);
    const tick = Math.max(50, Math.floor(this.config.poll.intervalMs / 2));
    this.watchdog = setInterval(() => this.checkStale(), tick);
    this.watchdog.unref?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.watchdog) clearInterval(this.watchdog);
    for (const n of this.order) this.retire(n);
  }

  /**
   * Applies a new configuration. Nodes keep their state when their name and address stay the
   * same; new nodes start polling; removed nodes are disconnected.
   */
  reload(config: Config): void {
    this.config = config;
    this.sem.resize(config.poll.concurrency);
    this.connectSem.resize(config.poll.concurrency);
    const old = this.records;
    this.setNodes(config.nodes, old);
    for (const [name, rec] of old) if (this.records.get(name) !== rec) this.retire(rec);
    if (this.running) {
      for (const n of this.order) if (!n.looping && n.active) this.runLoop(n);
      if (this.watchdog) clearInterval(this.watchdog);
      const tick = Math.max(50, Math.floor(config.poll.intervalMs / 2));
      this.watchdog = setInterval(() => this.checkStale(), tick);
      this.watchdog.unref?.();
    }
    this.reloads++;
    this.invalidate();
    this.emit("reload", config);
  }

  /** Sets or clears (reason undefined) an admin hold on a node. */
  setHold(name: string, reason: string | undefined): void {
    const n = this.records.get(name);
    if (!n) throw new Error(`unknown node "${name}"`);
    if (n.hold === reason) return;
    n.hold = reason;
    n.since = this.now();
    this.changed(n);
  }

  /** Writes a node's own `state` file, then polls it at once. */
  async writeNodeState(name: string, text: string): Promise<void> {
    const n = this.records.get(name);
    if (!n) throw new Error(`unknown node "${name}"`);
    if (!n.session) throw new Error(`node ${name} is not connected (${statusOf(n).toString()})`);
    await n.session.writeState(text);
    this.askPoll(n);
  }

  /** Asks for an immediate poll of a node (or all nodes). */
  pollNow(name?: string): void {
    for (const n of name ? [this.records.get(name)] : this.order) if (n) this.askPoll(n);
  }

  /**
   * Polls `n` at once: wakes its loop if it sleeps; otherwise (a poll or a connection attempt is
   * running, which may have read the node before what the caller changed) the loop goes round
   * again without sleeping.
   */
  private askPoll(n: NodeRecord): void {
    if (n.wake) n.wake();
    else n.pollAsked = true;
  }

  private setNodes(nodes: readonly NodeConfig[], old?: Map<string, NodeRecord>): void {
    const records = new Map<string, NodeRecord>();
    const order: NodeRecord[] = [];
    const t = this.now();
    for (const cfg of nodes) {
      const prev = old?.get(cfg.name);
      if (
        prev &&
        prev.config.address === cfg.address &&
        prev.config.host === cfg.host &&
        prev.config.port === cfg.port
      ) {
        prev.config = cfg;
        records.set(cfg.name, prev);
        order.push(prev);
        continue;
      }
      const rec: NodeRecord = {
        config: cfg,
        arch: ARCH_UNKNOWN,
        polled: Buffer.from(Status.initializing),
        hold: prev?.hold,
        numjobs: 0,
        details: {},
        error: undefined,
        failures: 0,
        polls: 0,
        pollErrors: 0,
        lastPollMs: 0,
        lastContact: 0,
        since: t,
        session: undefined,
        wake: undefined,
        pollAsked: false,
        active: true,
        looping: false,
        version: 0,
      };
      records.set(cfg.name, rec);
      order.push(rec);
    }
    this.records = records;
    this.order = order;
  }

  private retire(n: NodeRecord): void {
    n.active = false;
    n.session?.close();
    n.session = undefined;
    n.wake?.();
    // A node that will not be polled again no longer holds up the round (a node removed while it
    // waited for its next poll used to leave the round, and the round time, unfinished for good).
    this.roundDone(n);
  }

  private invalidate(): void {
    this.tableCache = undefined;
  }

  private changed(n: NodeRecord): void {
    n.version++;
    this.invalidate();
    if (this.listenerCount("change")) this.emit("change", viewOf(n));
  }

  private setPolled(n: NodeRecord, status: Buffer | string, error?: string): void {
    const buf = typeof status === "string" ? Buffer.from(status) : status;
    n.error = error;
    if (!buf.equals(n.polled)) {
      n.polled = buf;
      n.since = this.now();
      // The original resets the job count only for the exact status `down`.
      if (buf.toString() === "down") n.numjobs = 0;
      this.changed(n);
    }
  }

  private startRound(): void {
    this.roundStart = performance.now();
    this.roundPending = new Set(this.order);
  }

  private roundDone(n: NodeRecord): void {
    if (!this.roundPending.delete(n)) return;
    if (this.roundPending.size === 0) {
      this.lastRoundMs = performance.now() - this.roundStart;
      this.startRound();
    }
  }

  private backoff(failures: number): number {
    const p = this.config.poll;
    return Math.min(p.backoffMaxMs, p.backoffInitialMs * 2 ** Math.max(0, failures - 1));
  }

  private sleep(n: NodeRecord, ms: number): Promise<void> {
    if (n.pollAsked) {
      n.pollAsked = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        n.wake = undefined;
        resolve();
      }
      n.wake = done;
    });
  }

  private async runLoop(n: NodeRecord): Promise<void> {
    n.looping = true;
    while (this.running && n.active) {
      const queuedAt = performance.now();
      const sem = n.session ? this.sem : this.connectSem;
      await sem.acquire();
      const started = performance.now();
      this.queueWait.observe((started - queuedAt) / 1000);
      const wall = this.now();
      // This poll answers every request made before it starts.
      n.pollAsked = false;
      try {
        if (n.active && this.running) await this.pollOnce(n);
      } catch {
        // pollOnce records every failure itself.
      } finally {
        sem.release();
      }
      const took = performance.now() - started;
      n.lastPollMs = took;
      this.latency.observe(took / 1000);
      this.roundDone(n);
      if (!this.running || !n.active) break;
      const ok = n.failures === 0;
      const delay = ok
        ? Math.max(0, wall + this.config.poll.intervalMs - this.now())
        : this.backoff(n.failures);
      await this.sleep(n, delay);
    }
    n.wake = undefined;
    n.looping = false;
  }

  private async pollOnce(n: NodeRecord): Promise<void> {
    n.polls++;
    const p = this.config.poll;
    if (!n.session) {
      let s: NodeSession;
      try {
        s = await this.connector.connect(n.config, {
          connectTimeoutMs: p.connectTimeoutMs,
          readTimeoutMs: p.readTimeoutMs,
        });
      } catch (err) {
        n.failures++;
        n.pollErrors++;
        // A node that answered before and now takes connections without answering has hung:
        // the original's down(no_contact). Never reached, or refusing: down(connect_failed).
        const hung = err instanceof NoAnswerError && n.lastContact > 0;
        this.setPolled(n, hung ? Status.noContact : Status.connectFailed, errorText(err));
        return;
      }
      if (!n.active || !this.running) {
        s.close();
        return;
      }
      n.session = s;
      s.onClose(() => {
        if (n.session !== s) return;
        n.session = undefined;
        if (!n.active || !this.running) return;
        // The connection broke between polls (node died or restarted): say so now, retry at once.
        n.failures = Math.max(1, n.failures);
        n.pollErrors++;
        this.setPolled(n, Status.disconnected, "connection closed by the node");
        n.wake?.();
      });
      const arch = clampField(s.arch);
      if (!arch.equals(n.arch)) {
        n.arch = arch;
        this.changed(n);
      }
    }
    const s = n.session;
    let r: PollResult;
    try {
      r = await s.poll();
    } catch (err) {
      if (n.session !== s) return; // the watchdog or a reload dropped this session meanwhile
      const firstMiss = n.failures === 0 && err instanceof TimeoutError;
      n.failures++;
      n.pollErrors++;
      n.session = undefined;
      s.close();
      // A node that was answering and is late once is busy, not down: asked again at once (after
      // the first backoff, on a new connection) before it is marked down. A job started from the
      // table meanwhile (xrx -a) would otherwise leave it out.
      if (firstMiss) return;
      this.setPolled(n, Status.readFailed, errorText(err));
      return;
    }
    if (n.session !== s) return;
    n.failures = 0;
    n.lastContact = this.now();
    const state = clampField(r.state);
    const jobsChanged = r.sessions !== n.numjobs;
    n.details = {
      jobs: r.jobs,
      processes: r.processes,
      load: r.load,
      memTotalBytes: r.memTotalBytes,
      memAvailableBytes: r.memAvailableBytes,
      uptimeSeconds: r.uptimeSeconds,
    };
    this.setPolled(n, state.length === 0 ? Status.up : state);
    if (jobsChanged && n.numjobs !== r.sessions) {
      n.numjobs = r.sessions;
      this.changed(n);
    }
  }

  /** Marks nodes that stopped answering as `down(no_contact)` and forces a reconnect. */
  private checkStale(): void {
    const limit = 2 * this.config.poll.intervalMs;
    const t = this.now();
    for (const n of this.order) {
      if (n.failures === 0 && n.lastContact > 0 && t - n.lastContact > limit) {
        n.failures = 1;
        this.setPolled(n, Status.noContact, `no answer for ${Math.round((t - n.lastContact) / 1000)} s`);
        const s = n.session;
        n.session = undefined;
        s?.close();
      }
    }
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
