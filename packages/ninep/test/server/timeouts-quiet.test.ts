// The handshake and idle timeouts on a process with nothing else to do: the verdict that follows
// each timer must run although no other event wakes the loop (an unref'd immediate does not, and
// a connection that never sent Tversion then stayed open until some unrelated I/O came along).
// Run in a child process, since the test runner's own activity would wake the loop.

import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL("quiet/silent-clients.ts", import.meta.url));

describe("timeouts on a quiet server process", () => {
  for (const [mode, what] of [
    ["silent", "a connection that never sends Tversion (handshakeTimeoutMs)"],
    ["idle", "an idle connection (idleTimeoutMs)"],
  ] as const) {
    it(`close ${what} soon after the limit (300 ms)`, async () => {
      const { stdout } = await run(
        process.execPath,
        ["--conditions=@clustermatic/source", "--import", "tsx", CHILD, mode],
        { timeout: 20_000 },
      );
      const after = Number(stdout.trim());
      // Without the fix this took until some unrelated timer in the process fired (8 s here).
      expect(after).toBeGreaterThanOrEqual(250);
      expect(after).toBeLessThan(2500);
    });
  }
});
