// Sessions one user may hold at once (--max-sessions, maxSessionsPerUser): a client opening
// `clone` in a loop cannot fill the node's disk or memory with sessions.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Fid, mount } from "@clustermatic/ninep/client";
import { OREAD } from "@clustermatic/ninep/codec";
import type { RemoteError } from "@clustermatic/ninep/errors";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";
import { startXcpufs } from "../src/index.js";

const work = mkdtempSync(join(tmpdir(), "xcpufs-limit-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("sessions per user", () => {
  it("a user holding the most sessions gets EAGAIN at clone until one goes", async () => {
    const h = await startXcpufs({ port: 0, noAuth: true, tmpdir: work, maxSessionsPerUser: 3 });
    const fs = await mount(h.address, { uname: "tester", authenticate: async () => {} });
    try {
      const held: Fid[] = [];
      for (let i = 0; i < 3; i++) held.push(await fs.open("clone", OREAD));
      const refused = (await fs.open("clone", OREAD).catch((e) => e)) as RemoteError;
      expect(refused.ename).toBe(
        "too many sessions: tester holds 3 (the most one user may); wipe some first",
      );
      expect(refused.errno).toBe(11);
      await held.pop()!.clunk(); // a normal session goes with its last fid
      held.push(await fs.open("clone", OREAD));
      for (const f of held) await f.clunk();
    } finally {
      await fs.close();
      await h.close();
    }
  });

  it("holds when many clones are opened at once", async () => {
    const h = await startXcpufs({ port: 0, noAuth: true, tmpdir: work, maxSessionsPerUser: 3 });
    const fs = await mount(h.address, { uname: "tester", authenticate: async () => {} });
    try {
      const opened = await Promise.allSettled(Array.from({ length: 20 }, () => fs.open("clone", OREAD)));
      const held = opened
        .filter((r) => r.status === "fulfilled")
        .map((r) => (r as PromiseFulfilledResult<Fid>).value);
      expect(held).toHaveLength(3);
      for (const r of opened) {
        if (r.status === "rejected") expect((r.reason as RemoteError).errno).toBe(11);
      }
      for (const f of held) await f.clunk();
    } finally {
      await fs.close();
      await h.close();
    }
  });

  it("--max-sessions takes a positive count; anything else is a usage error", async () => {
    for (const bad of ["0", "many", "1e3", "2000000"]) {
      let err = "";
      const io = { stdout: { write: (_s: string) => true }, stderr: { write: (s: string) => (err += s) } };
      const code = await main(["--max-sessions", bad, "--no-auth", "-p", "0"], io);
      expect(code).toBe(2);
      expect(err).toBe(`xcpufs: invalid --max-sessions: ${bad} (1 to 1000000)\n`);
    }
  });
});
