// An xcpufs node process that freezes (SIGSTOP: its connections stay open but nothing answers),
// thaws, and is then killed with SIGKILL: statfs follows each change within two polls.

import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { type NodeView, statusOf } from "../src/monitor.js";
import { waitFor } from "./helpers/net.js";

// The same read timeout must fire for the frozen node and not for the live one, which answers from
// another process on a machine that may be busy: seconds, not half of one. It stays at half the
// interval so the frozen node's poll fails before the watchdog's limit (two intervals) passes.
const INTERVAL = 4000;
const TIMEOUT = 2000;
const xcpufsBin = join(import.meta.dirname, "helpers", "xcpufs-process.ts");

describe("a node process that stops answering", () => {
  let dir: string;
  let child: ReturnType<typeof spawn> | undefined;
  let statfs: Statfs;

  // Port 0: a port picked beforehand could be taken (by some other test's outgoing connection)
  // before the node binds it, and the node would never answer.
  const startNodeProcess = async (): Promise<string> => {
    const c = spawn(
      process.execPath,
      [
        "--conditions=@clustermatic/source",
        "--import",
        "tsx",
        xcpufsBin,
        "--no-auth",
        "-p",
        "0",
        "--state-dir",
        join(dir, "st"),
        "-t",
        dir,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    child = c;
    let err = "";
    return new Promise<string>((resolve, reject) => {
      c.stderr!.setEncoding("utf8");
      c.stderr!.on("data", (d: string) => {
        err += d;
        const m = /listening on (\S+)/.exec(err);
        if (m) resolve(m[1]!);
      });
      c.once("exit", (code, sig) => reject(new Error(`the node process ended (${sig ?? code}): ${err}`)));
    });
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-stop-"));
    const address = await startNodeProcess();
    const conf = join(dir, "statfs.conf");
    await writeFile(conf, `frozen=${address}\n`);
    statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      pollOverrides: { intervalMs: INTERVAL, connectTimeoutMs: TIMEOUT, readTimeoutMs: TIMEOUT },
    });
  }, 120_000);
  afterAll(async () => {
    await statfs?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      await new Promise((r) => child!.once("exit", r));
    }
    await rm(dir, { recursive: true, force: true });
  });

  const status = () => statusOf(statfs.monitor.node("frozen")!).toString();

  it("goes down on SIGSTOP, up on SIGCONT, down on SIGKILL, each within two polls", async () => {
    // Counted in polls, not milliseconds: how long a poll takes depends on the machine's load, how
    // many polls statfs needs to notice a change does not.
    const changes: { status: string; polls: number }[] = [];
    statfs.monitor.on("change", (v: NodeView) => {
      if (v.name === "frozen") changes.push({ status: v.status, polls: v.polls });
    });
    const follows = async (signal: NodeJS.Signals, want: (s: string) => boolean, what: string) => {
      const polls = statfs.monitor.node("frozen")!.polls; // includes a poll in flight
      const seen = changes.length;
      child!.kill(signal);
      const change = (await waitFor(() => changes.slice(seen).find((c) => want(c.status)), 30_000, what))!;
      expect(change.polls - polls, `polls until ${what}`).toBeLessThanOrEqual(2);
      return change.status;
    };

    await waitFor(() => status() === "up", 60_000, "the node process to start and answer");
    const isDown = (s: string) => s.startsWith("down(");
    // Its kernel still takes connections: a node that answered before and now does not has hung,
    // which the original statfs showed as down(no_contact).
    expect(await follows("SIGSTOP", isDown, "down after SIGSTOP")).toBe("down(no_contact)");
    await follows("SIGCONT", (s) => s === "up", "up after SIGCONT");
    await follows("SIGKILL", isDown, "down after SIGKILL");
  }, 120_000);
});
