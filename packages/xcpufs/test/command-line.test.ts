// The command line against its help text: every option the parser takes is named in --help, and
// a port chosen by the system is printed whichever way port 0 was asked for.

import { type ChildProcess, spawn } from "node:child_process";
import type { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { main, OPTIONS } from "../src/cli.js";
import { listeningOn, PKG, xcpufsArgs } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "xcpufs-cmdline-"));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

describe("xcpufs command line", () => {
  it("--help names every option the parser accepts", async () => {
    let out = "";
    const code = await main(["--help"], {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: () => true },
    });
    expect(code).toBe(0);
    const spellings = Object.entries(OPTIONS as Record<string, { short?: string }>).flatMap(([name, o]) => [
      ...(name.length > 1 ? [`--${name}`] : []),
      ...(o.short ? [`-${o.short}`] : []),
    ]);
    const missing = spellings.filter((s) => !new RegExp(`(?<![\\w-])${s}(?![\\w-])`).test(out));
    expect(missing).toEqual([]);
  });

  it("prints the address when port 0 comes from a --listen dial string (whose port wins over -p)", async () => {
    const child = spawn(
      process.execPath,
      xcpufsArgs("--no-auth", "--listen", "tcp!127.0.0.1!0", "-t", tmp, "--state-dir", tmp),
      { cwd: PKG, stdio: ["ignore", "ignore", "pipe"] },
    );
    children.push(child);
    const err = (await listeningOn(child)).stderr();
    const m = /^xcpufs: listening on tcp!127\.0\.0\.1!(\d+)$/m.exec(err);
    expect(m, err).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 90_000);

  it("listens for SIGTERM before it says it listens (a stop sent at once is handled, not fatal)", async () => {
    // A SIGTERM sent as soon as the address was printed used to find no handler yet: the process
    // died at once, its sessions not wiped. Here main() runs in this process; what it adds to the
    // process's listeners is taken away afterwards.
    const proc = process as EventEmitter;
    const events = ["SIGTERM", "SIGINT", "SIGPIPE", "uncaughtException", "unhandledRejection"];
    const before = new Map(events.map((e) => [e, proc.listeners(e)]));
    let atReady: number | undefined;
    try {
      const code = await main(["--no-auth", "--listen", "tcp!127.0.0.1!0", "-t", tmp, "--state-dir", tmp], {
        stdout: { write: () => true },
        stderr: { write: () => true },
        ready: () => {
          atReady = process.listenerCount("SIGTERM");
          setImmediate(() => process.emit("SIGTERM", "SIGTERM"));
        },
      });
      expect(code).toBe(0);
      expect(atReady).toBe(before.get("SIGTERM")!.length + 1);
    } finally {
      for (const e of events) {
        const had = new Set(before.get(e));
        for (const l of proc.listeners(e)) if (!had.has(l)) proc.off(e, l as () => void);
      }
    }
  }, 60_000);
});
