// The launch engine behind xrx: connect to many nodes with a bounded number of attempts in
// flight, create one session per node, stage the program per architecture (flat, or by tree
// spawn with verification and a direct-copy retry), start it everywhere, multiplex stdio, forward
// signals, and collect one outcome per node. A node that fails is reported and never stalls the
// others.
import { readFileSync } from "node:fs";
import { causeOf, TimeoutError } from "@clustermatic/ninep/errors";
import type { NodeSpec } from "@clustermatic/ninep/nodes";
import { mapLimit } from "./limit.js";
import { DrainGate, formatBytes, OutputMux, Progress, type Sink } from "./output.js";
import { jobMainProcesses } from "./procs.js";
import { fanout, planLocal, planStaging, type StagePlan, StagingError, sysrootFor } from "./staging.js";
import { aggregateExit, type NodeOutcome, summarize } from "./status.js";
import { type Identity, reasonOf, type Session, XcpuError, XcpuNode } from "./xcpu.js";

export interface JobOptions {
  nodes: NodeSpec[];
  identity: Identity;
  /** The program as typed (ignored with `attach`). */
  program?: string;
  args?: string[];
  /** -e */
  execName?: string;
  /** -S */
  noLibraries?: boolean;
  /** -l: the program is already on the nodes. */
  localProgram?: boolean;
  /** Tree-spawn width (0 = flat). */
  treeWidth?: number | "sqrt";
  /** -j */
  jobId?: string;
  /** -c */
  cwd?: string;
  /** Extra env-file text (XCPUENV, already decoded). */
  env?: string;
  msize?: number;
  connectTimeoutMs?: number;
  /** Time limit of each control and staging request once connected (default 60000, see ConnectOptions). */
  callTimeoutMs?: number;
  /**
   * While the programs run, each node that has not finished is asked a cheap question (a stat of
   * its session directory, answered by xcpufs itself, not by the program) every
   * {@link aliveIntervalOf} ms; a node that gives no answer within this many ms is reported as
   * lost, its session abandoned, and the others go on (default 30000; 0 = never ask).
   */
  aliveTimeoutMs?: number;
  /** Connection attempts in flight at once (default 32). */
  maxConnecting?: number;
  /** -L / -p */
  lines?: boolean;
  prefix?: boolean;
  stdin?: NodeJS.ReadableStream | null;
  stdout: Sink;
  stderr: Sink & { isTTY?: boolean };
  /** Progress display (defaults to stderr when it is a TTY). */
  progress?: boolean;
  /** $XCPU_SYSROOT */
  sysrootBase?: string;
  /** $PATH for the program lookup. */
  path?: string;
  extraLibPath?: string[];
  /** Local working directory (lookups; -l default remote cwd). */
  localCwd?: string;
  /** Source of INT/TERM/HUP/QUIT. */
  signals?: NodeJS.EventEmitter;
  /** -J: attach to this running job instead of launching. */
  attach?: string;
  /** -d */
  trace?: (line: string) => void;
  /**
   * The dial string other nodes use to reach a node during tree spawn (default: the address
   * xrx itself dials). Useful when nodes see each other under other names than the head does.
   */
  peerAddress?: (node: NodeSpec) => string;
  /** -v: phase timings and staging statistics on stderr. */
  verbose?: boolean;
  /** Program name for messages (default "xrx"). */
  prog?: string;
}

export interface JobResult {
  outcomes: NodeOutcome[];
  exitCode: number;
  stats: StageStats;
}

/** How the files reached the nodes. */
export interface StageStats {
  /** Nodes copied to from here. */
  direct: number;
  /** Nodes reached by tree spawn (verified). */
  byTree: number;
  /** Nodes the tree did not reach completely, copied to directly afterwards. */
  retried: number;
  /** clone commands that failed. */
  cloneFailed: number;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGTERM: 15 };

/** How long a wiped session may take to end before its node's connection is dropped. */
const WIPE_GRACE_MS = 5000;

/** Default of JobOptions.aliveTimeoutMs. */
export const ALIVE_TIMEOUT_MS = 30_000;

/** How often a running node is asked whether it is alive: every 10 s, or a third of a shorter limit. */
export function aliveIntervalOf(aliveTimeoutMs: number): number {
  return Math.min(10_000, Math.max(50, Math.round(aliveTimeoutMs / 3)));
}

/** How long the wipe of a lost node's session is waited for before its connection is dropped. */
const LOST_WIPE_MS = 1000;

/** A duration for a message: `30 s`, `1.5 s`. */
function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/** Did a call fail for want of an answer in time (not refused, not disconnected)? */
function noAnswer(err: unknown): boolean {
  return causeOf(err, TimeoutError) !== undefined;
}

/** Event on JobOptions.signals meaning "our standard output is gone (EPIPE)". */
export const OUTPUT_CLOSED = "xrx:output-closed";

interface Slot {
  spec: NodeSpec;
  rank: number;
  node?: XcpuNode;
  session?: Session;
  arch?: string;
  /** The node can pass a tree spawn on (asked only for -n); the original xcpufs cannot. */
  relays?: boolean;
  outcome?: NodeOutcome;
  /** Its main process has ended (wait answered); output may still be held open by its children. */
  mainEnded?: boolean;
  /** Settles once the node has answered the exec (started the program or refused). */
  execAnswered?: Promise<unknown>;
  /** Why this run wiped the session (its outcome, when the wipe leaves no exit status). */
  wipedBy?: string;
}

/** Runs a job on every node and returns per-node outcomes and the exit code. */
export async function runJob(opts: JobOptions): Promise<JobResult> {
  const prog = opts.prog ?? "xrx";
  const callTimeoutMs = opts.callTimeoutMs ?? 60_000;
  const aliveTimeoutMs = opts.aliveTimeoutMs ?? ALIVE_TIMEOUT_MS;
  const note = (msg: string) => opts.stderr.write(`${prog}: ${msg}\n`);
  const progress = new Progress(opts.stderr, opts.progress ?? !!opts.stderr.isTTY);
  const slots: Slot[] = opts.nodes.map((spec, i) => ({ spec, rank: i + 1 }));
  const fail = (slot: Slot, err: unknown) => {
    if (!slot.outcome) slot.outcome = { node: slot.spec.name, error: reasonOf(err) };
  };
  const plansByArch = new Map<string, StagePlan>();
  const stats: StageStats = { direct: 0, byTree: 0, retried: 0, cloneFailed: 0 };
  let stopStdin: (() => void) | undefined;
  const live = () => slots.filter((s) => !s.outcome && s.session);
  // A node that stopped answering while its program ran (link down, its xcpufs stopped): its
  // outcome is settled now, its session wiped if the wipe gets through at once, and its
  // connection dropped, which ends its reads; the other nodes go on.
  const lose = (s: Slot, why: string) => {
    if (s.outcome) return;
    s.outcome = { node: s.spec.name, error: why, announced: true };
    note(`${s.spec.name}: error: ${why}`);
    const session = s.session;
    const gone = () => s.node?.close();
    if (!session) return gone();
    void Promise.race([
      session.wipe().catch(() => {}),
      new Promise((r) => setTimeout(r, LOST_WIPE_MS).unref()),
    ]).then(gone);
  };
  // Wipes a session. A node that goes on answering its reads afterwards (broken, or not an xcpufs)
  // would keep the job running for ever: after a grace period its connection is dropped, which
  // ends the reads.
  const wipe = (s: Slot, why: string) => {
    s.wipedBy ??= why;
    void s.session!.wipe().catch(() => {});
    setTimeout(() => {
      if (s.outcome) return;
      fail(s, new XcpuError(s.spec.name, `session did not end within ${WIPE_GRACE_MS} ms of wipe`));
      s.node?.close();
    }, WIPE_GRACE_MS).unref();
  };

  // Signals: before the programs start, a signal aborts the launch; afterwards it is forwarded,
  // and a second interrupt wipes the sessions.
  let started = false;
  let interrupts = 0;
  let abort: ((sig: string) => void) | undefined;
  const aborted = new Promise<string>((resolve) => {
    abort = resolve;
  });
  let abortedBy: string | undefined;
  const onSignal = (name: string) => {
    if (!started) {
      abortedBy ??= name;
      abort?.(name);
      return;
    }
    if (name === "SIGINT") interrupts++;
    if (interrupts >= 2) {
      note("wiping sessions");
      for (const s of live()) wipe(s, "wiped after a second SIGINT");
      return;
    }
    const orphaned = live().filter((s) => s.mainEnded);
    // The node carries out an exec asynchronously and drops a signal for a program it has not
    // started yet: a signal is sent once the node has answered the session's exec.
    // A node that does not take the signal within the call time limit is silent: it is given up
    // on rather than waited for.
    for (const s of live()) {
      const session = s.session!;
      void (s.execAnswered ?? Promise.resolve())
        .then(() => session.signal(SIGNALS[name] ?? 15))
        .catch((e) => {
          if (noAnswer(e))
            lose(s, `no answer to ${name} for ${seconds(callTimeoutMs)}; giving up on this node`);
        });
    }
    // A session whose main process has ended has nobody to take the signal: what keeps it going
    // is a process it left behind holding its output open (a daemon). Such sessions are wiped.
    if (orphaned.length > 0) {
      note(
        `${name}: wiping ${orphaned.length} session(s) whose program ended but whose output is still held open`,
      );
      for (const s of orphaned) wipe(s, `wiped on ${name}`);
    }
  };
  const stdoutGate = new DrainGate(opts.stdout);
  const stderrGate = new DrainGate(opts.stderr);
  // Our stdout went away (`xrx … | head -1`): nobody reads the output any more, end the job.
  let outputClosed = false;
  const onOutputClosed = () => {
    if (outputClosed) return;
    outputClosed = true;
    // Reads waiting for the output to drain go on (what they read is dropped) until the wipe ends them.
    stdoutGate.release();
    if (!started) {
      abortedBy ??= "SIGPIPE";
      abort?.("SIGPIPE");
      return;
    }
    if (opts.attach !== undefined) {
      // A viewer (-J) whose output is gone stops watching; the job is not its to end. (Its
      // connections close: a normal session that nobody else holds open ends then, as always.)
      for (const s of live()) {
        s.outcome = { node: s.spec.name, error: "stopped watching: output closed" };
        s.node?.close();
      }
      return;
    }
    for (const s of live()) wipe(s, "wiped: output closed");
  };
  const handlers = [
    ...Object.keys(SIGNALS).map((name) => [name, () => onSignal(name)] as const),
    [OUTPUT_CLOSED, onOutputClosed] as const,
  ];
  for (const [name, h] of handlers) opts.signals?.on(name, h);

  const cleanup = () => {
    for (const [name, h] of handlers) opts.signals?.off(name, h);
    progress.clear();
    for (const s of slots) s.node?.close();
  };

  // process.hrtime, not performance.now(): the global `performance` loads perf_hooks and ~8 more
  // built-in modules at start, for a timer that is only printed with -v.
  const t0 = process.hrtime.bigint();
  const phase = (what: string) => {
    if (opts.verbose)
      opts.stderr.write(`${prog}: ${what} at ${Number((process.hrtime.bigint() - t0) / 1_000_000n)} ms\n`);
  };
  try {
    // 1. Connect and create sessions (or find the job's sessions with -J).
    let connected = 0;
    const attachedCopies: Slot[] = [];
    const connectAll = mapLimit(slots, opts.maxConnecting ?? 32, async (slot) => {
      // After an interrupt no node is dialled, and a connection that completes only afterwards is
      // closed here: the clean-up has already run, and in xrxd nothing else would ever close it.
      if (abortedBy) return;
      try {
        const node = await XcpuNode.connect(slot.spec, {
          identity: opts.identity,
          msize: opts.msize,
          timeoutMs: opts.connectTimeoutMs,
          callTimeoutMs,
          trace: opts.trace,
        });
        if (abortedBy) {
          node.close();
          return;
        }
        slot.node = node;
        if (opts.attach !== undefined) {
          const mains = jobMainProcesses(await slot.node.procs(), opts.attach);
          if (mains.length === 0) {
            slot.outcome = { node: slot.spec.name, error: `no sessions found (job ${opts.attach})` };
            return;
          }
          try {
            slot.session = await slot.node.attachSession(mains[0]!.sid);
          } catch (err) {
            // A job that ends between the listing and the attach takes its session with it.
            if (jobMainProcesses(await slot.node.procs(), opts.attach).length > 0) throw err;
            slot.outcome = {
              node: slot.spec.name,
              error: `job ${opts.attach} ended before it could be attached`,
            };
            return;
          }
          // A job run twice on one node (the node listed twice) has a session per copy: each is
          // followed, as its launch printed each.
          for (const more of mains.slice(1)) {
            try {
              const session = await node.attachSession(more.sid);
              attachedCopies.push({ spec: slot.spec, rank: slot.rank, node, session });
            } catch {
              // That copy ended since the listing; the others are followed.
            }
          }
        } else {
          const [arch, session, relays] = await Promise.all([
            slot.node.arch(),
            slot.node.createSession({ stdin: Boolean(opts.stdin) }),
            opts.treeWidth ? slot.node.relaysTreeSpawn() : false,
          ]);
          slot.arch = arch;
          slot.session = session;
          slot.relays = relays;
        }
        connected++;
        progress.update(`${prog}: connected ${connected}/${slots.length} nodes`);
      } catch (err) {
        fail(slot, err);
      }
    });
    await Promise.race([connectAll, aborted]);
    if (abortedBy) return finishAborted();
    slots.push(...attachedCopies);
    phase("sessions ready");

    if (opts.attach !== undefined) {
      if (!slots.some((s) => s.session)) {
        for (const s of slots) fail(s, new Error("no sessions found"));
      }
    } else {
      // 2. Plan per architecture and stage.
      const groups = new Map<string, Slot[]>();
      for (const s of slots) {
        if (s.outcome || !s.session) continue;
        const a = s.arch ?? "";
        const group = groups.get(a);
        if (group) group.push(s);
        else groups.set(a, [s]);
      }
      const plans = new Map<string, StagePlan>();
      const contents = new Map<string, Buffer>();
      for (const [arch, members] of groups) {
        try {
          let plan: StagePlan;
          if (opts.localProgram) {
            plan = planLocal(opts.program!, opts.args ?? []);
          } else {
            const sysroot = sysrootFor(arch, opts.sysrootBase);
            plan = planStaging({
              program: opts.program!,
              args: opts.args ?? [],
              execName: opts.execName,
              noLibraries: opts.noLibraries,
              sysroot,
              path: opts.path,
              extraLibPath: opts.extraLibPath,
              cwd: opts.localCwd,
            });
          }
          for (const f of plan.files) {
            let data = contents.get(f.local);
            if (!data) {
              try {
                data = readFileSync(f.local);
              } catch (err) {
                // Node's "File size (…) is greater than 2 GiB" names no file.
                throw new StagingError(`cannot stage ${f.local}: ${(err as Error).message}`);
              }
              contents.set(f.local, data);
            }
            // What is sent, should the file have changed since it was listed (verify compares).
            plan.bytes += data.length - f.size;
            f.size = data.length;
          }
          plans.set(arch, plan);
        } catch (err) {
          // A plan error for every architecture is a plain error; for one of several, those nodes fail.
          if (groups.size === 1) throw err;
          for (const m of members) fail(m, err);
        }
      }
      phase("planned");
      const staging = stageAll(groups, plans, contents);
      await Promise.race([staging, aborted]);
      if (abortedBy) return finishAborted();
      phase("staged");
    }

    // 3. Start, stream, wait.
    const running = slots.filter((s) => !s.outcome && s.session);
    const mux = new OutputMux(opts.stdout, opts.stderr, { lines: opts.lines, prefix: opts.prefix });
    started = true;
    progress.clear();
    const localCwd = opts.localCwd ?? process.cwd();
    // Liveness: output, status and stdin have no time limit (a program may be quiet for days), so
    // a node that falls silent would be waited for without end. Each node still running is asked
    // a question its xcpufs answers at once, every few seconds, within aliveTimeoutMs.
    const stopWatches: (() => void)[] = [];
    const done = running.map(async (slot) => {
      const session = slot.session!;
      stopWatches.push(
        probeWhile(slot, (silence) => lose(slot, `${silence} while the program ran; giving up on this node`)),
      );
      const streams = mux.streams(slot.spec.name);
      // The next read waits while our own output is full: memory stays bounded by one read per
      // stream and node however slowly the output is taken.
      const out = session.pump("stdout", (b) => streams.stdout.write(b) || stdoutGate.wait());
      const err = session.pump("stderr", (b) => streams.stderr.write(b) || stderrGate.wait());
      const status = session.wait().then((st) => {
        slot.mainEnded = true;
        return st;
      });
      // Any of them may fail while the exec below is still under way (a wipe answers the parked
      // wait at once, and the node carries out the exec asynchronously). They are awaited after
      // the exec; until then such a failure is not an unhandled rejection, which would end the
      // whole process with a stack trace.
      for (const p of [out, err, status]) p.catch(() => {});
      // Reads are parked on the node before the program starts, so nothing is missed.
      try {
        if (opts.attach === undefined) {
          const plan = plansByArch.get(slot.arch ?? "");
          if (!plan) throw new Error("nothing staged");
          const exec = session.exec(plan.command, {
            job: opts.jobId ?? "",
            rank: slot.rank,
            cwd: opts.cwd ?? (opts.localProgram ? localCwd : undefined),
            closeStdin: !opts.stdin,
          });
          slot.execAnswered = exec.catch(() => {});
          await exec;
        }
        const [, , st] = await Promise.all([out, err, status]);
        streams.stdout.end();
        streams.stderr.end();
        // (A node given up on keeps that verdict, whatever it says afterwards.)
        slot.outcome ??= { node: slot.spec.name, status: st };
      } catch (e) {
        streams.stdout.end();
        streams.stderr.end();
        // A session this run wiped ends without a status: say why rather than "no status".
        fail(slot, slot.wipedBy ? new XcpuError(slot.spec.name, slot.wipedBy, { cause: e }) : e);
        // The session cannot be followed any more (exec refused, a read failed, the node went
        // away): end it and the connection, so that the parked reads settle.
        await Promise.race([session.wipe().catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
        slot.node?.close();
        await Promise.allSettled([out, err, status]);
      }
    });
    const stdinDone = opts.attach === undefined ? feedStdin(running) : Promise.resolve();
    await Promise.all(done);
    for (const stop of stopWatches) stop();
    phase("all ended");
    stopStdin?.();
    await stdinDone;
    const outcomes = slots.map((s) => s.outcome ?? { node: s.spec.name, error: "no status" });
    if (outputClosed) return { outcomes, exitCode: 128 + 13, stats };
    for (const line of summarize(outcomes, prog)) opts.stderr.write(`${line}\n`);
    if (opts.verbose) {
      note(
        `staging: ${stats.direct} direct, ${stats.byTree} by tree spawn, ${stats.retried} retried directly, ${stats.cloneFailed} clone failures`,
      );
    }
    return { outcomes, exitCode: aggregateExit(outcomes), stats };
  } finally {
    cleanup();
  }

  // ---- helpers (hoisted) ----

  function finishAborted(): JobResult {
    const sig = abortedBy ?? "SIGINT";
    note(`interrupted by ${sig} before the program started; sessions removed`);
    for (const s of slots) {
      void s.session?.wipe().catch(() => {});
      fail(s, new Error(`interrupted by ${sig}`));
    }
    const outcomes = slots.map((s) => s.outcome!);
    return { outcomes, exitCode: 128 + (SIGNALS[sig] ?? (sig === "SIGPIPE" ? 13 : 2)), stats };
  }

  /**
   * Asks `slot`'s node a question its xcpufs answers at once, every few seconds, until the
   * returned function is called or the node has an outcome; calls `onSilent` (with `no answer for
   * N s`) when one goes unanswered for aliveTimeoutMs. Any other failure (the connection is gone)
   * ends the questions: the node's other requests fail with it.
   */
  function probeWhile(slot: Slot, onSilent: (silence: string) => void): () => void {
    if (aliveTimeoutMs <= 0) return () => {};
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const next = () => {
      timer = setTimeout(() => {
        if (stopped || slot.outcome) return;
        slot.session!.alive(aliveTimeoutMs).then(
          () => {
            if (!stopped) next();
          },
          (e) => {
            if (!stopped && noAnswer(e)) onSilent(`no answer for ${seconds(aliveTimeoutMs)}`);
          },
        );
      }, aliveIntervalOf(aliveTimeoutMs));
      timer.unref();
    };
    next();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  async function stageAll(
    groups: Map<string, Slot[]>,
    plans: Map<string, StagePlan>,
    contents: Map<string, Buffer>,
  ) {
    // Bytes this process sends: one copy per node staged directly (with -n, the tree's first
    // level; a node whose clone failed is added when it is copied to directly).
    let totalBytes = 0;
    const counted = new Set<Slot>();
    let sent = 0;
    let nodesDone = 0;
    let nodesTotal = 0;
    const widthFor = (n: number) =>
      opts.treeWidth === "sqrt" ? Math.ceil(Math.sqrt(n)) : Math.min(opts.treeWidth ?? 0, n);
    // Only nodes that relay a tree spawn reliably form the tree; the others (the original
    // xcpufs) are copied to directly, beside it.
    const treeOf = (members: Slot[]) => {
      const relays = members.filter((m) => m.relays);
      const width = widthFor(relays.length);
      return {
        relays,
        leaves: members.filter((m) => !m.relays),
        width,
        flat: width <= 0 || width >= relays.length,
      };
    };
    for (const [arch, members0] of groups) {
      const plan = plans.get(arch);
      if (!plan) continue;
      const members = members0.filter((m) => !m.outcome);
      nodesTotal += members.length;
      const t = treeOf(members);
      const flat = plan.files.length === 0 || t.flat;
      for (const m of flat ? members : [...fanout(t.relays, t.width).map((x) => x.child), ...t.leaves]) {
        counted.add(m);
        totalBytes += plan.bytes;
      }
    }
    const show = (force = false) =>
      progress.update(
        `${prog}: staging ${nodesDone}/${nodesTotal} nodes, ${formatBytes(sent)} of ${formatBytes(totalBytes)}`,
        force,
      );
    const onBytes = (n: number) => {
      sent += n;
      show();
    };
    const direct = async (slot: Slot, plan: StagePlan) => {
      stats.direct++;
      if (!counted.has(slot)) {
        counted.add(slot);
        totalBytes += plan.bytes;
      }
      await slot.session!.stage(plan, contents, onBytes);
    };
    const prepare = async (slot: Slot, plan: StagePlan) => {
      const s = slot.session!;
      await Promise.all([s.setArgv(plan.argv), opts.env ? s.appendEnv(opts.env) : Promise.resolve()]);
    };
    await Promise.all(
      [...groups].map(async ([arch, members0]) => {
        const plan = plans.get(arch);
        if (!plan) return;
        plansByArch.set(arch, plan);
        const members = members0.filter((m) => !m.outcome);
        const { relays, leaves, width, flat } = treeOf(members);
        if (plan.files.length === 0 || flat) {
          // Flat: argv/env and files go in parallel.
          await mapLimit(members, 64, async (m) => {
            await Promise.all([prepare(m, plan), direct(m, plan)]).catch((e) => fail(m, e));
            nodesDone++;
            show();
          });
          return;
        }
        // Tree: a node copies its argv/env on to its subtree, so they must be in place first.
        await Promise.all(members.map((m) => prepare(m, plan).catch((e) => fail(m, e))));
        if (leaves.length > 0 && opts.verbose)
          note(
            `${leaves.length} ${leaves.length === 1 ? "node" : "nodes"} cannot relay a tree spawn (no sysinfo: the original xcpufs); copying to ${leaves.length === 1 ? "it" : "them"} directly`,
          );
        await Promise.all([
          treeStage(
            relays.filter((m) => !m.outcome),
            plan,
            width,
          ),
          mapLimit(
            leaves.filter((m) => !m.outcome),
            64,
            async (m) => {
              await direct(m, plan).catch((e) => fail(m, e));
              nodesDone++;
              show();
            },
          ),
        ]);
      }),
    );
    show(true);

    async function treeStage(members: Slot[], plan: StagePlan, width: number) {
      // Passkeys for every delegated node: without them (Ed25519 users) copy directly.
      const tree = fanout(members, width);
      const keys = new Map<Slot, string>();
      const delegatedAll = tree.flatMap((t) => t.delegated);
      const keyResults = await Promise.allSettled(delegatedAll.map((m) => m.node!.passkey()));
      const noKey = keyResults.find((r) => r.status === "rejected");
      if (noKey) {
        note(
          `tree spawn unavailable (${reasonOf((noKey as PromiseRejectedResult).reason)}); copying directly`,
        );
        await mapLimit(members, 64, async (m) => {
          await direct(m, plan).catch((e) => fail(m, e));
          nodesDone++;
          show();
        });
        return;
      }
      delegatedAll.forEach((m, i) => {
        keys.set(m, (keyResults[i] as PromiseFulfilledResult<string>).value);
      });
      const width0 = width;
      await Promise.all(
        tree.map(async ({ child, delegated }) => {
          try {
            await direct(child, plan);
          } catch (e) {
            fail(child, e);
          }
          nodesDone++;
          show();
          if (delegated.length === 0) return;
          if (!child.outcome) {
            const peer = opts.peerAddress ?? ((n: NodeSpec) => n.address);
            const targets = delegated.map((d) => ({
              address: peer(d.spec),
              sid: d.session!.id,
              passkey: keys.get(d),
            }));
            // The clone's reply waits for the whole subtree, however long that takes; a relay
            // that falls silent meanwhile is given up on like a silent node in the run.
            const giveUp = new AbortController();
            const stopProbes = probeWhile(child, (silence) =>
              giveUp.abort(new Error(`${silence} while it passed the tree spawn on`)),
            );
            try {
              await child.session!.cloneTo(width0, targets, giveUp.signal);
            } catch (e) {
              stats.cloneFailed++;
              if (opts.verbose || giveUp.signal.aborted)
                note(`${child.spec.name}: clone failed (${reasonOf(e)}); copying directly`);
            } finally {
              stopProbes();
            }
          }
          // Verify every delegated node and copy directly to any the tree did not reach.
          await Promise.all(
            delegated.map(async (d) => {
              try {
                const missing = await d.session!.verify(plan);
                if (missing.length > 0) {
                  stats.retried++;
                  if (opts.verbose)
                    note(
                      `${d.spec.name}: ${missing.length} files missing after tree spawn; copying directly`,
                    );
                  // Only what is missing, over what the tree left half-written.
                  const want = new Set(missing);
                  const rest = { ...plan, files: plan.files.filter((f) => want.has(f.remote)) };
                  stats.direct++;
                  await d.session!.stage(rest, contents, onBytes, { overwrite: true });
                  const still = await d.session!.verify(plan);
                  if (still.length > 0)
                    throw new XcpuError(d.spec.name, `staging incomplete: ${still.join(", ")}`);
                } else {
                  stats.byTree++;
                }
                // The clone replaced env and argv with the parent's copy: the same content.
              } catch (e) {
                fail(d, e);
              }
              nodesDone++;
              show();
            }),
          );
        }),
      );
    }
  }

  function feedStdin(running: Slot[]): Promise<void> {
    const input = opts.stdin;
    // Without input, the exec write closed every program's stdin already.
    if (!input) return Promise.resolve();
    const targets = running.filter((s) => s.session?.stdinFid);
    const queues = new Map<Slot, Promise<void>>(targets.map((s) => [s, Promise.resolve()]));
    let pendingBytes = 0;
    return new Promise<void>((resolve) => {
      let ended = false;
      const finish = () => {
        if (ended) return;
        ended = true;
        input.off("data", onData);
        input.off("end", onEnd);
        input.off("error", onEnd);
        input.pause?.();
        Promise.all(
          [...queues].map(([s, q]) =>
            q.then(() => (s.outcome ? undefined : s.session!.closeStdin())).catch(() => {}),
          ),
        ).then(() => resolve());
      };
      const onData = (chunk: Buffer | string) => {
        const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
        pendingBytes += b.length * queues.size;
        if (pendingBytes > 4 * 1024 * 1024) input.pause?.();
        for (const [s, q] of queues) {
          queues.set(
            s,
            q.then(async () => {
              try {
                if (!s.outcome) await s.session!.writeStdin(b);
              } catch {
                // The program closed its stdin or the node went away: drop the data for it.
              } finally {
                pendingBytes -= b.length;
                if (pendingBytes < 1024 * 1024) input.resume?.();
              }
            }),
          );
        }
      };
      const onEnd = () => finish();
      input.on("data", onData);
      input.once("end", onEnd);
      input.once("error", onEnd);
      stopStdin = () => {
        // Every program ended: stop reading our stdin.
        if (!ended) {
          ended = true;
          input.off("data", onData);
          input.off("end", onEnd);
          input.off("error", onEnd);
          input.pause?.();
          resolve();
        }
      };
      input.resume?.();
    });
  }
}
