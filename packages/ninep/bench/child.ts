// Shared by the benchmarks that run servers as child processes.
import type { ChildProcess } from "node:child_process";

/** A stop() for a child server: SIGTERM, resolved once it has exited (at once if it already has). */
export function stopChild(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((r) => {
      if (child.exitCode !== null) return r();
      child.once("exit", () => r());
      child.kill("SIGTERM");
    });
}
