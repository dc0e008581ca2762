// xrxd's side: a Unix socket on which each connection is one xrx run. The run is xrx's own main()
// with the client's argv, environment, working directory and terminal flags; its standard streams
// and signals travel over the connection. A client that goes away mid-run is treated like a
// closed standard output: the sessions are wiped, as they would be had xrx itself died.
import { EventEmitter } from "node:events";
import { chmodSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { Readable, Writable } from "node:stream";
import { type CliIo, emptyInput } from "../cli/args.js";
import { OUTPUT_CLOSED } from "../job.js";
import { PACKAGE_VERSION } from "../version.js";
import {
  encodeFrame,
  exitFrame,
  Frame,
  FrameReader,
  parseStartRequest,
  type StartRequest,
  XRXD_PROTOCOL,
} from "./protocol.js";

export type CliMain = (argv: readonly string[], io: CliIo) => Promise<number>;

export interface XrxdOptions {
  /** Path of the Unix socket to listen on (made 0600). */
  socketPath: string;
  /** The xrx main() that runs each job. */
  main: CliMain;
  /** Called once no run has been in progress for this long (never when unset). */
  idleMs?: number;
  onIdle?: () => void;
  /** How long a new connection may take to send its start request. */
  startTimeoutMs?: number;
}

export interface XrxdServer {
  socketPath: string;
  /** Runs in progress. */
  readonly running: number;
  /** Stops accepting; runs in progress wipe their sessions and end; removes the socket. */
  close(): Promise<void>;
}

const FORWARDED = new Set(["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"]);
const STOP_GRACE_MS = 5000;
/** Standard input xrxd holds for a run at most (the client is asked to pause well before). */
const MAX_UNREAD_INPUT = 16 * 1024 * 1024;

export async function serveXrxd(opts: XrxdOptions): Promise<XrxdServer> {
  const runs = new Set<Run>();
  let stopping = false;
  let idleTimer: NodeJS.Timeout | undefined;
  const armIdle = () => {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = undefined;
    if (opts.idleMs === undefined || runs.size > 0 || stopping) return;
    idleTimer = setTimeout(() => opts.onIdle?.(), opts.idleMs);
  };

  const server: Server = createServer((sock) => {
    if (stopping) {
      sock.destroy();
      return;
    }
    const run = new Run(sock, opts, () => stopping);
    runs.add(run);
    armIdle();
    run.done.then(() => {
      runs.delete(run);
      armIdle();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  chmodSync(opts.socketPath, 0o600);
  server.on("error", () => {});
  armIdle();

  return {
    socketPath: opts.socketPath,
    get running() {
      return runs.size;
    },
    async close() {
      if (stopping) return;
      stopping = true;
      if (idleTimer) clearTimeout(idleTimer);
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const run of runs) run.stop();
      await Promise.race([
        Promise.all([...runs].map((r) => r.done)),
        new Promise((r) => setTimeout(r, STOP_GRACE_MS).unref()),
      ]);
      for (const run of runs) run.sock.destroy();
      await closed;
      rmSync(opts.socketPath, { force: true });
    },
  };
}

/**
 * The signals of one run. xrx itself dies of a signal that comes before it listens for signals;
 * a run in xrxd listens only once it has found its nodes (`-a` reads statfs first), and a signal
 * emitted before that would be lost and the job run anyway. Such a signal, and a closed output,
 * is kept and delivered as soon as the run listens for it.
 */
class RunSignals extends EventEmitter {
  private readonly kept = new Set<string | symbol>();
  constructor() {
    super();
    this.on("newListener", (event: string | symbol) => {
      // Emitted before the listener is added: deliver once it is.
      if (this.kept.delete(event)) process.nextTick(() => this.emit(event));
    });
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== "newListener" && this.listenerCount(event) === 0) {
      this.kept.add(event);
      return false;
    }
    return super.emit(event, ...args);
  }
}

/** One client connection: waits for START, then runs main() with the client's I/O. */
class Run {
  readonly done: Promise<void>;
  private finish!: () => void;
  private signals = new RunSignals();
  private input: Readable | undefined;
  private inputPaused = true;
  private clientGone = false;
  private outputClosed = false;
  private started = false;
  private stoppedByServer = false;
  private drainWaiters: Array<() => void> = [];

  constructor(
    readonly sock: Socket,
    private readonly opts: XrxdOptions,
    private readonly serverStopping: () => boolean,
  ) {
    this.done = new Promise((r) => {
      this.finish = r;
    });
    const startTimer = setTimeout(() => sock.destroy(), opts.startTimeoutMs ?? 10_000);
    const reader = new FrameReader((type, payload) => {
      if (!this.started) {
        clearTimeout(startTimer);
        this.start(type, payload);
      } else this.onFrame(type, payload);
    });
    sock.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch {
        sock.destroy();
      }
    });
    sock.on("drain", () => this.wakeWriters());
    sock.on("error", () => {});
    sock.on("close", () => {
      clearTimeout(startTimer);
      this.clientGone = true;
      this.wakeWriters();
      if (!this.started) this.finish();
      else this.endOfClient();
    });
  }

  /** Asked by a stopping xrxd: end the run as if its output were gone. */
  stop(): void {
    this.stoppedByServer = true;
    this.signals.emit(OUTPUT_CLOSED);
  }

  private start(type: number, payload: Buffer) {
    this.started = true;
    let req: StartRequest;
    try {
      if (type !== Frame.Start) throw new Error("expected a start request");
      req = parseStartRequest(payload);
    } catch (e) {
      this.refuse((e as Error).message);
      return;
    }
    if (req.protocol !== XRXD_PROTOCOL || req.version !== PACKAGE_VERSION) {
      this.refuse(`xrxd runs xrx ${PACKAGE_VERSION} (protocol ${XRXD_PROTOCOL}), not ${req.version}`);
      return;
    }
    if (this.serverStopping()) {
      this.refuse("xrxd is stopping");
      return;
    }
    this.sock.write(encodeFrame(Frame.Ready));
    void this.runMain(req);
  }

  private refuse(reason: string) {
    this.sock.end(encodeFrame(Frame.Refuse, reason));
    this.finish();
  }

  private async runMain(req: StartRequest) {
    const stdout = this.sink(Frame.Stdout, req.tty.stdout, () => this.outputClosed);
    const stderr = this.sink(Frame.Stderr, req.tty.stderr, () => false);
    let stdin: CliIo["stdin"];
    if (req.stdin === "null") stdin = emptyInput();
    else {
      this.input = new Readable({
        highWaterMark: 64 * 1024,
        read: () => {
          if (!this.inputPaused) return;
          this.inputPaused = false;
          this.send(encodeFrame(Frame.ResumeStdin));
        },
      });
      stdin = this.input;
    }
    Object.assign(stdin, { isTTY: req.tty.stdin });
    const io: CliIo = { stdin, stdout, stderr, env: req.env, cwd: req.cwd, signals: this.signals };
    let code: number;
    try {
      code = await this.opts.main(req.argv, io);
    } catch (e) {
      stderr.write(`Error: ${e instanceof Error ? e.message : String(e)}\n`);
      code = 1;
    }
    if (this.stoppedByServer) {
      stderr.write("xrx: xrxd was stopped during the run; its sessions were wiped\n");
      code = 1;
    }
    // Both sinks send in order on the one socket, so everything written precedes EXIT.
    await Promise.all([endOf(stdout), endOf(stderr)]);
    if (!this.sock.destroyed) this.sock.end(exitFrame(code));
    this.input?.destroy();
    this.finish();
  }

  private onFrame(type: number, payload: Buffer) {
    switch (type) {
      case Frame.Stdin:
        if (!this.input || this.input.readableEnded) break;
        // A client that goes on sending after PauseStdin is not an xrx: it does not get to fill
        // xrxd's memory.
        if (this.input.readableLength > MAX_UNREAD_INPUT) {
          this.sock.destroy();
          break;
        }
        if (!this.input.push(Buffer.from(payload))) {
          this.inputPaused = true;
          this.send(encodeFrame(Frame.PauseStdin));
        }
        break;
      case Frame.StdinEnd:
        this.input?.push(null);
        break;
      case Frame.Signal: {
        const name = payload.toString("utf8");
        if (FORWARDED.has(name)) this.signals.emit(name);
        break;
      }
      case Frame.OutputClosed:
        if (!this.outputClosed) {
          this.outputClosed = true;
          this.signals.emit(OUTPUT_CLOSED);
        }
        break;
      default:
        this.sock.destroy();
    }
  }

  private endOfClient() {
    if (this.input && !this.input.readableEnded) this.input.push(null);
    if (!this.outputClosed) {
      this.outputClosed = true;
      this.signals.emit(OUTPUT_CLOSED);
    }
  }

  private send(frame: Buffer): boolean {
    if (this.clientGone || this.sock.destroyed) return true;
    return this.sock.write(frame);
  }

  private wakeWriters() {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /** A writable that forwards to the client as `type` frames, with the socket's backpressure. */
  private sink(type: typeof Frame.Stdout | typeof Frame.Stderr, isTTY: boolean, discard: () => boolean) {
    const w = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        if (discard() || this.send(encodeFrame(type, chunk))) cb();
        else this.drainWaiters.push(() => cb());
      },
    });
    return Object.assign(w, { isTTY });
  }
}

function endOf(w: Writable): Promise<void> {
  return new Promise((resolve) => {
    w.end(() => resolve());
    w.once("error", () => resolve());
  });
}
