// The round time (statfs_poll_round_seconds) keeps being measured after a reload that removes a
// node: the removed node, which will not be polled again, no longer holds up the round.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { deadPort, waitFor } from "./helpers/net.js";

describe("poll rounds across a reload", () => {
  let dir: string;
  let conf: string;
  let statfs: Statfs;
  let a: number;
  let b: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-rounds-"));
    conf = join(dir, "statfs.conf");
    a = await deadPort();
    b = await deadPort();
    await writeFile(conf, `a=127.0.0.1!${a}\nb=127.0.0.1!${b}\n`);
    // Both nodes refuse at once and then wait out a long backoff: between polls, each is in the
    // round that started when the previous one ended.
    statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      pollOverrides: {
        intervalMs: 600_000,
        connectTimeoutMs: 20_000,
        readTimeoutMs: 20_000,
        backoffInitialMs: 600_000,
        backoffMaxMs: 600_000,
      },
    });
  });
  afterAll(async () => {
    await statfs?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("completes the round once the nodes that remain have been polled", async () => {
    const mon = statfs.monitor;
    await waitFor(() => mon.lastRoundMs >= 0, 20_000, "the first round");
    const first = mon.lastRoundMs;
    expect(mon.node("a")!.polls).toBe(1);

    await writeFile(conf, `b=127.0.0.1!${b}\n`);
    await statfs.reload();
    const polls = mon.node("b")!.polls;
    mon.pollNow("b");
    await waitFor(() => mon.node("b")!.polls > polls && mon.node("b")!.lastPollMs > 0, 20_000, "b polled");
    await waitFor(() => mon.lastRoundMs !== first, 20_000, "the second round");
  });
});
