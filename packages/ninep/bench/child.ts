// Shared by the benchmarks that run servers as child processes.
import type { ChildProcess } from "node:child_process";
import { PACKAGE_VERSION } from "../src/version.js";

/** esbuild options for a server bundled the way tools/build.mjs bundles the package's bins. */
export const BUNDLE_OPTIONS = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  logLevel: "warning",
  // The constant tools/build.mjs gives every bundle (src/version.ts reads it).
  define: { __CLUSTERMATIC_VERSION__: JSON.stringify(PACKAGE_VERSION) },
} as const;

/** A stop() for a child server: SIGTERM, resolved once it has exited (at once if it already has). */
export function stopChild(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((r) => {
      if (child.exitCode !== null) return r();
      child.once("exit", () => r());
      child.kill("SIGTERM");
    });
}
