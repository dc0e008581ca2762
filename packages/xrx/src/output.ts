// Output multiplexing: many nodes' stdout/stderr onto one stdout/stderr. In line mode every
// write carries whole lines only (optionally prefixed with the node name), so lines from different
// nodes never interleave mid-line; a partial last line is delivered at end of stream. Line mode
// (-L) adds no byte: a line longer than maxLine is passed on in pieces as it comes (as the
// original did with a full buffer), and an unterminated last line stays unterminated. With
// prefixes (-p) every piece is a prefixed line of its own, ended by a newline, so that a piece of
// another node's line never continues one of this node's.

export interface Sink {
  /** `false` (a Writable past its high-water mark) asks the writer to wait for "drain". */
  write(chunk: string | Uint8Array): unknown;
}

/**
 * Waiting for a sink to take more: the nodes' output is read only as fast as xrx's own output
 * takes it (a slow pipe, a terminal scrolling, xrxd's client), so xrx holds at most one read per
 * stream and node instead of everything the programs write. A sink that is not an event emitter
 * (or is gone) never makes anybody wait.
 */
export class DrainGate {
  private waiting: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private released = false;
  constructor(private readonly sink: Sink) {}

  /** Resolves once the sink asks for more data (drain), closes or fails, or on release(). */
  wait(): Promise<void> {
    const s = this.sink as Sink &
      Partial<NodeJS.EventEmitter> & { writableNeedDrain?: boolean; destroyed?: boolean };
    if (
      this.released ||
      typeof s.once !== "function" ||
      typeof s.off !== "function" ||
      s.destroyed ||
      s.writableNeedDrain === false
    )
      return Promise.resolve();
    // One set of listeners for every writer of the sink (dozens of nodes would trip Node's
    // leak warning, on the very stderr the output goes to).
    this.waiting ??= new Promise<void>((resolve) => {
      const done = () => {
        s.off!("drain", done);
        s.off!("close", done);
        s.off!("error", done);
        this.waiting = undefined;
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
      s.once!("drain", done);
      s.once!("close", done);
      s.once!("error", done);
    });
    return this.waiting;
  }

  /** Ends every wait, now and later (nobody takes the output any more). */
  release(): void {
    this.released = true;
    this.wake?.();
  }
}

export interface MuxOptions {
  /** Prefix each line with `<node>: ` (implies lines). */
  prefix?: boolean;
  /** Deliver whole lines only. */
  lines?: boolean;
  /** A partial line this long is delivered before its end (default 64 KiB; see above). */
  maxLine?: number;
}

const NL = 0x0a;

/** One stream of one node. */
export class StreamMux {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  constructor(
    private readonly sink: Sink,
    private readonly prefixText: Buffer | undefined,
    private readonly lines: boolean,
    private readonly maxLine: number,
  ) {}

  /** Returns false when the sink asked the writer to wait for it (see DrainGate). */
  write(data: Uint8Array): boolean {
    if (data.length === 0) return true;
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (!this.lines) return this.sink.write(Buffer.from(buf)) !== false;
    const out: Buffer[] = [];
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(NL, start);
      if (nl < 0) break;
      const piece = buf.subarray(start, nl + 1);
      if (this.prefixText) out.push(this.prefixText);
      if (this.pendingLen > 0) {
        out.push(...this.pending);
        this.pending = [];
        this.pendingLen = 0;
      }
      out.push(piece);
      start = nl + 1;
    }
    if (start < buf.length) {
      this.pending.push(Buffer.from(buf.subarray(start)));
      this.pendingLen += buf.length - start;
      if (this.pendingLen >= this.maxLine) {
        if (this.prefixText) out.push(this.prefixText, ...this.pending, Buffer.from("\n"));
        else out.push(...this.pending);
        this.pending = [];
        this.pendingLen = 0;
      }
    }
    return out.length === 0 || this.sink.write(Buffer.concat(out)) !== false;
  }

  /**
   * End of stream: deliver a buffered partial line, as it is with -L; with -p prefixed and
   * terminated, so that the next node's line starts clean.
   */
  end(): void {
    if (this.pendingLen === 0) return;
    const out = this.prefixText ? [this.prefixText, ...this.pending, Buffer.from("\n")] : [...this.pending];
    this.pending = [];
    this.pendingLen = 0;
    this.sink.write(Buffer.concat(out));
  }
}

/** Creates the per-node stdout/stderr multiplexers. */
export class OutputMux {
  private readonly lines: boolean;
  private readonly maxLine: number;
  constructor(
    private readonly stdout: Sink,
    private readonly stderr: Sink,
    private readonly opts: MuxOptions = {},
  ) {
    this.lines = !!(opts.lines || opts.prefix);
    this.maxLine = opts.maxLine ?? 64 * 1024;
  }

  streams(node: string): { stdout: StreamMux; stderr: StreamMux } {
    const prefix = this.opts.prefix ? Buffer.from(`${node}: `) : undefined;
    return {
      stdout: new StreamMux(this.stdout, prefix, this.lines, this.maxLine),
      stderr: new StreamMux(this.stderr, prefix, this.lines, this.maxLine),
    };
  }
}

/** A progress line on a terminal: `staging 3/16 nodes, 1.2 MiB`; silent when not a TTY. */
export class Progress {
  private last = 0;
  private shown = false;
  constructor(
    private readonly out: Sink & { isTTY?: boolean },
    private readonly enabled = !!out.isTTY,
    private readonly intervalMs = 100,
  ) {}

  update(text: string, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < this.intervalMs) return;
    this.last = now;
    this.shown = true;
    this.out.write(`\r\x1b[K${text}`);
  }

  clear(): void {
    if (!this.enabled || !this.shown) return;
    this.shown = false;
    this.out.write("\r\x1b[K");
  }
}

/** Human size: 1.5 MiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}
