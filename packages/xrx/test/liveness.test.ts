// xrx and a node that falls silent while its program runs (its xcpufs stopped with SIGSTOP, as a
// link that drops every packet looks from here): the node is asked whether it is alive and given
// up on, the others finish, the summary names it; a first Ctrl-C does not wait for it either; and
// a node whose program is merely quiet is never taken for a lost one.
import { EventEmitter } from "node:events";
import { afterAll, describe, expect, it } from "vitest";
import { main as xrx } from "../src/cli/xrx.js";
import { type ChildNode, cleanupAll, type RunResult, runCli, startChildNode, until } from "./harness.js";

afterAll(cleanupAll);

/** Generous bound for anything timed on a loaded machine. */
const BOUND_MS = 20_000;

/** `run`, or a failure once `ms` have passed (without the check xrx would wait for good). */
function within(run: Promise<RunResult>, ms: number, what: string): Promise<RunResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`xrx did not end within ${ms} ms ${what}`)), ms);
  });
  return Promise.race([run, late]).finally(() => clearTimeout(timer));
}

/** Lets a stopped node go on (its wipe and the closed connection then end the session there). */
function resume(n: ChildNode): void {
  try {
    process.kill(n.child.pid!, "SIGCONT");
  } catch {
    // already gone
  }
}

/** Lines equal to `line` in `text`. */
function count(text: string, line: string): number {
  return text.split("\n").filter((l) => l === line).length;
}

describe("a node that falls silent while its program runs", () => {
  it("is reported lost after the alive timeout; the other nodes finish and the status is 1", async () => {
    const nodes = [await startChildNode(), await startChildNode(), await startChildNode()];
    const silent = nodes[1]!;
    const list = nodes.map((n) => n.spec).join(",");
    let stderrSoFar = "";
    const run = runCli(
      xrx,
      ["--no-key", "--alive-timeout", "2", list, "/bin/sh", "-c", "echo up >&2; sleep 3; echo done"],
      { onStderr: (t) => (stderrSoFar = t) },
    );
    try {
      // Every program runs: one node's xcpufs stops answering.
      await until(() => count(stderrSoFar, "up") === 3, BOUND_MS, "the programs to start");
      process.kill(silent.child.pid!, "SIGSTOP");
      const stoppedAt = Date.now();
      const r = await within(run, BOUND_MS, "after a node was stopped");
      const took = Date.now() - stoppedAt;
      expect(r.code).toBe(1);
      // The others' output is whole.
      expect(r.stdout).toBe("done\ndone\n");
      const lost = `xrx: ${silent.spec}: error: no answer for 2 s while the program ran; giving up on this node`;
      // Said when it happens, and again in the summary.
      expect(count(r.stderr, lost)).toBe(2);
      expect(r.stderr).toContain("xrx: 2 of 3 nodes exited 0\n");
      for (const n of [nodes[0]!, nodes[2]!]) expect(r.stderr).not.toContain(n.spec);
      // Interval (0.67 s) + limit (2 s) + the wipe's second, and a loaded machine's margin.
      expect(took).toBeLessThan(BOUND_MS);
    } finally {
      resume(silent);
    }
  });

  it("a first SIGINT is not held up by it: its signal is given the call timeout", async () => {
    const nodes = [await startChildNode(), await startChildNode()];
    const [live, silent] = nodes as [ChildNode, ChildNode];
    const list = nodes.map((n) => n.spec).join(",");
    const signals = new EventEmitter();
    let stderrSoFar = "";
    // The alive timeout is far off: what ends the job here is the signal's own time limit.
    const run = runCli(
      xrx,
      [
        "--no-key",
        "--call-timeout",
        "2",
        "--alive-timeout",
        "60",
        list,
        "/bin/sh",
        "-c",
        "echo up >&2; exec sleep 60",
      ],
      { signals, onStderr: (t) => (stderrSoFar = t) },
    );
    try {
      await until(() => count(stderrSoFar, "up") === 2, BOUND_MS, "the programs to start");
      process.kill(silent.child.pid!, "SIGSTOP");
      const at = Date.now();
      signals.emit("SIGINT");
      const r = await within(run, BOUND_MS, "after the first SIGINT");
      const took = Date.now() - at;
      expect(r.code).toBe(128 + 2);
      expect(r.stderr).toContain(
        `xrx: ${silent.spec}: error: no answer to SIGINT for 2 s; giving up on this node\n`,
      );
      expect(r.stderr).toContain(`xrx: ${live.spec}: killed by signal 2\n`);
      expect(r.stderr).toContain("xrx: 0 of 2 nodes exited 0\n");
      expect(r.stderr).not.toContain("wiping sessions");
      // The call timeout (2 s) + the wipe's second, with a loaded machine's margin.
      expect(took).toBeLessThan(BOUND_MS);
    } finally {
      resume(silent);
    }
  });
});

describe("a node whose program is quiet", () => {
  it("answers every liveness question and is never declared lost", async () => {
    const nodes = [await startChildNode(), await startChildNode()];
    const list = nodes.map((n) => n.spec).join(",");
    // Asked every 1/3 s, for a program silent 5 s (15 questions a node). -d shows the questions.
    const r = await within(
      runCli(xrx, ["-d", "--no-key", "--alive-timeout", "1", list, "/bin/sh", "-c", "sleep 5; echo ok"]),
      BOUND_MS + 5000,
      "for a 5 s program",
    );
    const lines = r.stderr.split("\n");
    // Nothing on stderr but the 9P trace.
    const said = lines.filter((l) => l !== "" && !/^(->|<-) /.test(l));
    expect({ code: r.code, stdout: r.stdout, said }).toEqual({ code: 0, stdout: "ok\nok\n", said: [] });
    const questions = lines.filter((l) => l.startsWith("-> Tstat "));
    const answers = lines.filter((l) => l.startsWith("<- Rstat "));
    // A few apiece at least (the interval timer may run late on a loaded machine).
    expect(questions.length).toBeGreaterThanOrEqual(6);
    // Every question is answered, but for one per node asked just as its program ended: the run
    // closes the connection without waiting for that answer (the node was not lost).
    expect(answers.length).toBeLessThanOrEqual(questions.length);
    expect(answers.length).toBeGreaterThanOrEqual(questions.length - nodes.length);
  });
});

describe("--alive-timeout", () => {
  it("takes seconds > 0, or 0 to ask nothing", async () => {
    const r = await runCli(xrx, ["--no-key", "--alive-timeout", "soon", "127.0.0.1!1", "/bin/true"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'xrx: bad --alive-timeout value "soon": expected seconds > 0, or 0 for no checks\n',
    );
    const neg = await runCli(xrx, ["--no-key", "--alive-timeout", "-1", "127.0.0.1!1", "/bin/true"]);
    expect(neg.code).toBe(2);
    // 0 is taken (the launch then fails on the node nobody listens on, not on the option).
    const off = await runCli(xrx, ["--no-key", "--alive-timeout", "0", "127.0.0.1!1", "/bin/true"]);
    expect(off.code).toBe(1);
    expect(off.stderr).toContain("127.0.0.1!1: error:");
  });
});
