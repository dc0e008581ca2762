// What the benchmarks share: waiting for a server child process to listen, and stopping it.

import type { ChildProcess } from "node:child_process";

/** The address of the server's `listening on ADDRESS` line on stderr; rejects if it exits first. */
export function listening(child: ChildProcess): Promise<string> {
  let err = "";
  return new Promise((resolve, reject) => {
    child.stderr?.on("data", (d) => {
      err += d;
      const m = /listening on (\S+)/.exec(err);
      if (m) {
        child.stderr?.removeAllListeners("data");
        child.stderr?.resume();
        resolve(m[1] as string);
      }
    });
    child.once("exit", () => reject(new Error(`xcpufs exited: ${err}`)));
  });
}

/** SIGTERM, then the exit (nothing to do when it has exited). */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await gone;
}
