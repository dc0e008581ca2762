// The protocol conformance suite (@clustermatic/ninep/testing) run against the passthrough
// backend exporting a temp directory, for 9P2000 over TCP and 9P2000.u over a Unix socket. The
// blocking file is a FIFO whose write end this test holds open, so reads wait until flushed.

import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { conformanceChecks } from "../../src/testing/index.js";
import { tempDir } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
let root: string;
let holder: number | undefined;

beforeAll(async () => {
  tmp = tempDir("pt-conf-");
  root = path.join(tmp.dir, "export");
  fs.mkdirSync(path.join(root, "dir"), { recursive: true });
  fs.writeFileSync(path.join(root, "hello"), "hello, conformance\n");
  for (const n of ["a", "b", "c"]) fs.writeFileSync(path.join(root, "dir", n), n.repeat(10));
  const { execFileSync } = await import("node:child_process");
  execFileSync("mkfifo", [path.join(root, "block")]);
  // Holding both ends keeps a writer present: reads then wait for data instead of seeing EOF.
  holder = fs.openSync(path.join(root, "block"), fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
});
afterAll(() => {
  if (holder !== undefined) fs.closeSync(holder);
  tmp.cleanup();
});

for (const [version, where] of [
  ["9P2000", "tcp"],
  ["9P2000.u", "unix"],
] as const) {
  describe(`conformance of the passthrough (${version} over ${where})`, () => {
    const checks = conformanceChecks({
      version,
      start: async () => {
        const server = new Server({ backend: passthrough(root) });
        const address =
          where === "tcp"
            ? await server.listen("tcp!127.0.0.1!0")
            : await server.listen(
                `unix!${path.join(tmp.dir, `s-${process.pid}-${Math.random().toString(36).slice(2)}`)}`,
              );
        return { address, stop: () => server.close() };
      },
      file: ["hello"],
      dir: ["dir"],
      blockingFile: ["block"],
    });
    for (const c of checks) it(`${c.name} [${c.rules.join(" ")}]`, () => c.run());
  });
}
