// The conformance suite of @clustermatic/ninep/testing run against the synthetic-tree fixture,
// over TCP for 9P2000 and over a Unix socket for 9P2000.u.
import { describe, it } from "vitest";
import { conformanceChecks } from "../../src/testing/index.js";
import { startFixture } from "./fixture.js";

for (const [version, where] of [
  ["9P2000", "tcp"],
  ["9P2000.u", "unix"],
] as const) {
  describe(`conformance of a synthetic tree (${version} over ${where})`, () => {
    const checks = conformanceChecks({
      version,
      start: async () => {
        const fx = await startFixture({}, where);
        return { address: fx.addr, stop: () => fx.close() };
      },
      file: ["hello"],
      dir: ["dir"],
      blockingFile: ["block"],
    });
    for (const c of checks) it(`${c.name} [${c.rules.join(" ")}]`, () => c.run());
  });
}
