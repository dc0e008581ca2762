// A reload that lowers poll.concurrency takes effect while polls are queued: slots that end above
// the new limit are not handed on (they used to be, so the old limit held as long as the queue
// never emptied, as with many nodes that hang on connect).

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../src/config.js";
import { Monitor } from "../src/monitor.js";
import { XcpufsConnector } from "../src/xcpufs-session.js";
import { type RawServer, silentServer, waitFor } from "./helpers/net.js";

const config = (concurrency: number, ports: number[]) =>
  parseConfig(
    `poll: { interval: 4s, connectTimeout: 2s, readTimeout: 2s, concurrency: ${concurrency} }\nnodes:\n${ports
      .map((p, i) => `  - { name: s${i}, address: "tcp!127.0.0.1!${p}" }\n`)
      .join("")}`,
    "silent.yaml",
  );

describe("a reload that lowers the concurrency", () => {
  let servers: RawServer[] = [];
  let mon: Monitor | undefined;

  beforeAll(async () => {
    // Nodes that accept and never answer: each login holds a slot until it times out.
    servers = await Promise.all(Array.from({ length: 6 }, () => silentServer()));
  });
  afterAll(async () => {
    await mon?.stop();
    await Promise.all(servers.map((s) => s.close()));
  });

  it("runs no more polls at once than the new limit once the running ones end", async () => {
    const ports = servers.map((s) => s.port);
    const m = new Monitor(config(3, ports), { connector: new XcpufsConnector() });
    mon = m;
    m.start();
    await waitFor(() => m.inFlight === 3 && m.queued === 3, 20_000, "3 logins running, 3 queued");
    const first = m.nodes().filter((n) => n.polls === 1);
    expect(first).toHaveLength(3);

    m.reload(config(1, ports));
    // Once the three running logins have failed, at most one runs at a time.
    await waitFor(() => first.every((n) => n.pollErrors === 1), 30_000, "the first logins failed");
    let most = 0;
    await waitFor(
      () => {
        most = Math.max(most, m.inFlight);
        return m.nodes().every((n) => n.polls >= 1);
      },
      60_000,
      "every node tried",
    );
    expect(most).toBe(1);
  }, 120_000);
});
