// The root `procs` file on a node with many processes: how much it reads at once.

import { type ChildProcess, spawn } from "node:child_process";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROCS_AT_ONCE, procsText } from "../src/procs.js";

const sleepers: ChildProcess[] = [];
beforeAll(async () => {
  // Enough processes for the table to be larger than what is read at once, on any machine.
  for (let i = 0; i < 4 * PROCS_AT_ONCE; i++) {
    const c = spawn("/bin/sleep", ["60"], { stdio: "ignore" });
    sleepers.push(c);
    await new Promise((r) => c.once("spawn", r));
  }
});
afterAll(() => {
  for (const c of sleepers) c.kill("SIGKILL");
});

describe("procs", () => {
  // Every process's five files were opened together: 750 descriptors for 150 processes for each
  // reader of `procs`, all queued ahead of the server's other file system work (a soak with
  // `procs` readers among running jobs saw 1,500 descriptors open and every job wait for them).
  it("reads the files of a few processes at a time", async () => {
    const fsp = createRequire(import.meta.url)("node:fs/promises") as Record<string, unknown>;
    const realReadFile = fsp.readFile as (...a: unknown[]) => Promise<unknown>;
    let now = 0;
    let most = 0;
    fsp.readFile = async (...a: unknown[]) => {
      const proc = typeof a[0] === "string" && /^\/proc\/\d+\//.test(a[0]);
      if (proc) most = Math.max(most, ++now);
      try {
        return await realReadFile(...a);
      } finally {
        if (proc) now--;
      }
    };
    syncBuiltinESMExports();
    let text: string;
    try {
      text = await procsText(new Map());
    } finally {
      fsp.readFile = realReadFile;
      syncBuiltinESMExports();
    }
    for (const c of sleepers) expect(text).toContain(`\n(${c.pid} (/bin/sleep 60) `);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(5 * PROCS_AT_ONCE);
  });
});
