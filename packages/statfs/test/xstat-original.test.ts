// xstat with the original's command line against a statfs like the original's (npfs: no
// authentication, msize 8216, one `state` file): `-s server`, `-d`, a node-list filter, and the
// table printed verbatim, an arch that carries its node's newline included (8.10, 11.3).
import { BytesFile, Server, SynthDir, treeBackend } from "@clustermatic/ninep/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xstat } from "../src/cli/xstat.js";
import { capture } from "./helpers/io.js";
import { deadPort } from "./helpers/net.js";

// The table of the capture of the original statfs (xcpu-1.2.3-wire.jsonl), plus a node whose arch
// file ends in a newline and one that was never reached.
const rows = [
  "n1\ttcp!127.0.0.1!42135\t/Linux/x86_64\tup\t0\n",
  "n2\ttcp!127.0.0.1!45111\t/Linux/x86_64\tup\t0\n",
  "n3\ttcp!127.0.0.1!45112\t/Linux/x86_64\n\tmaintenance\t2\n",
  "n4\t10.0.0.4\tunknown (not read yet)\tdown(connect_failed)\t0\n",
];
const table = rows.join("");

describe("xstat against an original statfs", () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    const root = new SynthDir("/", { uid: "root", gid: "root" });
    root.add(new BytesFile("state", table, { uid: "root", gid: "root", mode: 0o444 }));
    server = new Server({ backend: treeBackend(root), maxMsize: 8216 });
    const addr = await server.listen("tcp!127.0.0.1!0");
    port = (addr as { port: number }).port;
  });
  afterAll(async () => {
    await server?.close(0);
  });

  it("xstat -s SERVER prints the table byte for byte, no header", async () => {
    for (const server of [`127.0.0.1!${port}`, `tcp!127.0.0.1!${port}`]) {
      const c = capture();
      expect(await xstat(["-s", server], c.io)).toBe(0);
      expect(c.err).toBe("");
      expect(c.out).toBe(table);
    }
  });

  it("keeps the lines of the named nodes, verbatim, in table order; -d traces on stderr only", async () => {
    const c = capture();
    expect(await xstat(["-s", `127.0.0.1!${port}`, "n3,n1"], c.io)).toBe(0);
    expect(c.out).toBe(rows[0]! + rows[2]!);
    const d = capture();
    expect(await xstat(["-d", "-s", `127.0.0.1!${port}`, "n[2-4]"], d.io)).toBe(0);
    expect(d.out).toBe(rows[1]! + rows[2]! + rows[3]!);
    expect(d.err).toMatch(/Tversion/);
  });

  it("an unreachable server: the original's words, status 1", async () => {
    const dead = await deadPort();
    const c = capture();
    expect(await xstat(["-s", `127.0.0.1!${dead}`], c.io)).toBe(1);
    expect(c.out).toBe("");
    expect(c.err).toMatch(
      new RegExp(`^xstat: could not obtain node list from statfs: .*127\\.0\\.0\\.1!${dead}\\b.*\n$`),
    );
  });
});
