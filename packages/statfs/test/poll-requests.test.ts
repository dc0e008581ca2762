// A poll asked for (ctl `poll`, or the one after a ctl `state` write) while the node's poll is
// already running is not lost: that running poll may have read the node before the change, so the
// node is polled again as soon as it ends, not an interval later.

import { type Fsys, mount } from "@clustermatic/ninep/client";
import { OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import type { XcpufsHandle } from "@clustermatic/xcpufs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Statfs } from "../src/daemon.js";
import { type HoldingRelay, waitFor } from "./helpers/net.js";
import { type RelayedNode, relayedNode } from "./helpers/relayed-node.js";

// Long enough that only an asked-for poll can show the change within the test.
const POLL = { intervalMs: 600_000, connectTimeoutMs: 60_000, readTimeoutMs: 60_000 };

describe("a poll asked for during a poll", () => {
  let fixture: RelayedNode;
  let node: XcpufsHandle;
  let relay: HoldingRelay;
  let statfs: Statfs;
  let client: Fsys;

  beforeAll(async () => {
    fixture = await relayedNode("statfs-poll-requests-", POLL);
    ({ node, relay, statfs } = fixture);
    client = await mount(statfs.addresses[0]!, { uname: "someone", timeoutMs: 30_000 });
  });
  afterAll(async () => {
    await client?.close();
    await fixture?.close();
  });

  const ctl = async (line: string) => {
    const f = await client.open("ctl", OWRITE);
    try {
      await f.write(0, `${line}\n`);
    } finally {
      await f.clunk();
    }
  };

  it("polls the node again once the running poll ends", { timeout: 120_000 }, async () => {
    const mon = statfs.monitor;
    await waitFor(() => mon.node("n1")!.polled.toString() === "up", 30_000, "n1 up");

    // A poll that has read the node's state and directory, whose answers are still on their way.
    relay.hold();
    await ctl("poll n1");
    await waitFor(() => relay.heldMessages >= 2, 30_000, "the node's answers to the poll");

    // The node's state changes meanwhile, and someone asks for a poll to see it.
    const admin = await mount(node.address, { uname: "xcpu-admin", n_uname: 65530 });
    try {
      const f = await admin.open("state", OWRITE | OTRUNC);
      await f.write(0, "busy");
      await f.clunk();
    } finally {
      await admin.close();
    }
    await ctl("poll n1");

    // The running poll ends with what it read before the change; the one asked for follows it.
    relay.release();
    await waitFor(() => mon.node("n1")!.polled.toString() === "busy", 20_000, "n1 busy");
    expect(mon.node("n1")!.polls).toBeGreaterThanOrEqual(3);
  });
});
