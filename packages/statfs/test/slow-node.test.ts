// A node that was answering and is late once (busy, a slow moment on the link) stays `up`: it is
// asked again on a new connection before it is marked down. A node that stays silent goes down.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Statfs } from "../src/daemon.js";
import type { NodeView } from "../src/monitor.js";
import { type HoldingRelay, waitFor } from "./helpers/net.js";
import { type RelayedNode, relayedNode } from "./helpers/relayed-node.js";

// A read timeout the held poll surely passes, an interval long enough that only the retry after
// the miss (the first backoff, one second) polls again within the test.
const POLL = { intervalMs: 600_000, connectTimeoutMs: 10_000, readTimeoutMs: 1500 };

describe("a node late for one poll", () => {
  let fixture: RelayedNode;
  let relay: HoldingRelay;
  let statfs: Statfs;

  beforeAll(async () => {
    fixture = await relayedNode("statfs-slow-", POLL);
    ({ relay, statfs } = fixture);
  });
  afterAll(async () => {
    await fixture?.close();
  });

  it("stays up when one poll times out and the next is answered; goes down when none is", {
    timeout: 120_000,
  }, async () => {
    const mon = statfs.monitor;
    await waitFor(() => mon.node("n1")!.polled.toString() === "up", 30_000, "n1 up");
    const seen: string[] = [];
    mon.on("change", (v: NodeView) => {
      if (v.name === "n1") seen.push(v.status);
    });
    const errorsBefore = mon.node("n1")!.pollErrors;

    // One poll's answers held past the read timeout; the link is fine again for the retry.
    relay.hold();
    mon.pollNow("n1");
    await waitFor(() => mon.node("n1")!.pollErrors > errorsBefore, 20_000, "the poll to time out");
    relay.release();
    await waitFor(() => mon.node("n1")!.polls >= 3 && mon.node("n1")!.failures === 0, 20_000, "the retry");
    expect(seen.filter((s) => s.startsWith("down"))).toEqual([]);
    expect(mon.node("n1")!.polled.toString()).toBe("up");

    // Held for good: the retry times out too, and the node goes down.
    relay.hold();
    mon.pollNow("n1");
    await waitFor(() => seen.some((s) => s.startsWith("down(")), 30_000, "n1 down");
    relay.release();
  });
});
