// Exit statuses: decoding the raw wait(2) word xcpufs reports, and folding many nodes' outcomes
// into one exit code plus a per-node summary.

/** A decoded wait status. */
export interface ExitStatus {
  raw: number;
  /** Exit code when the program exited normally. */
  code?: number;
  /** Signal number when it was killed. */
  signal?: number;
  core?: boolean;
}

/** Decodes a raw wait status (`c×256` for exit c, `s` (+128 for core) for signal s). */
export function decodeWaitStatus(raw: number): ExitStatus {
  const low = raw & 0x7f;
  if (low === 0) return { raw, code: (raw >> 8) & 0xff };
  return { raw, signal: low, core: (raw & 0x80) !== 0 };
}

/** Shell-style code for a status: the exit code, or 128 + signal. */
export function shellCode(st: ExitStatus): number {
  return st.code ?? 128 + (st.signal ?? 0);
}

/** What happened on one node. */
export interface NodeOutcome {
  node: string;
  status?: ExitStatus;
  /** Set when the node failed (connection lost, launch refused…); the message names the cause. */
  error?: string;
  /** The error was printed when it happened (a node given up on while the others ran on). */
  announced?: boolean;
}

/** Describes one outcome in a word or two: `exit 3`, `killed by signal 9`, `error: …`. */
export function describeOutcome(o: NodeOutcome): string {
  if (o.error !== undefined) return `error: ${o.error}`;
  if (!o.status) return "no status";
  if (o.status.code !== undefined) return `exit ${o.status.code}`;
  return `killed by signal ${o.status.signal}${o.status.core ? " (core dumped)" : ""}`;
}

/**
 * The job's exit code: the program's code when every node agrees; otherwise non-zero — the
 * largest program code when the programs disagree, 1 when a node failed without a status.
 */
export function aggregateExit(outcomes: readonly NodeOutcome[]): number {
  if (outcomes.length === 0) return 1;
  const codes = outcomes.map((o) => (o.error === undefined && o.status ? shellCode(o.status) : undefined));
  if (codes.every((c) => c !== undefined && c === codes[0])) return codes[0]!;
  const nonZero = codes.filter((c): c is number => c !== undefined && c !== 0);
  if (nonZero.length > 0) return Math.max(...nonZero);
  return 1;
}

/** Summary lines for the nodes that did not exit 0 (empty when all did). */
export function summarize(outcomes: readonly NodeOutcome[], prog = "xrx"): string[] {
  const bad = outcomes.filter((o) => o.error !== undefined || !o.status || shellCode(o.status) !== 0);
  if (bad.length === 0) return [];
  // With one node the summary would only repeat the error printed as it happened; with more it
  // gathers every node's outcome in one place.
  const lines = bad
    .filter((o) => !(o.announced && outcomes.length === 1))
    .map((o) => `${prog}: ${o.node}: ${describeOutcome(o)}`);
  lines.push(`${prog}: ${outcomes.length - bad.length} of ${outcomes.length} nodes exited 0`);
  return lines;
}
