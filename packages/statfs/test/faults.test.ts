// statfs against nodes that refuse, hang or answer garbage: they go down(...) and statfs keeps
// serving its 9P table, JSON and metrics.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xstat } from "../src/cli/xstat.js";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { capture } from "./helpers/io.js";
import { deadPort, garbageServer, type RawServer, silentServer, waitFor } from "./helpers/net.js";
import { parsePrometheusText } from "./helpers/prom-parse.js";

describe("broken nodes", () => {
  let dir: string;
  let garbage: RawServer;
  let silent: RawServer;
  let dead: number;
  let statfs: Statfs;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-faults-"));
    garbage = await garbageServer();
    silent = await silentServer();
    dead = await deadPort();
    const conf = join(dir, "statfs.conf");
    await writeFile(
      conf,
      `# broken nodes\ng1=tcp!127.0.0.1!${garbage.port}\nh1=tcp!127.0.0.1!${silent.port}\nd1=127.0.0.1!${dead}\n`,
    );
    statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: "127.0.0.1:0",
      // The read timeout must fire (the silent node never answers) so it stays short; the connect
      // timeout must not (d1 must be refused, not time out while the machine is busy), so it is
      // long, and the interval with it (timeouts never exceed it). Retries come from the backoff.
      pollOverrides: {
        intervalMs: 10_000,
        connectTimeoutMs: 10_000,
        readTimeoutMs: 200,
        backoffInitialMs: 300,
        backoffMaxMs: 400,
      },
    });
  });
  afterAll(async () => {
    await statfs?.close();
    await garbage?.close();
    await silent?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("marks each down with the original vocabulary and keeps polling", async () => {
    const mon = statfs.monitor;
    await waitFor(() => mon.nodes().every((n) => n.polls >= 2), 10_000, "two polls of every node");
    const status = Object.fromEntries(mon.nodes().map((n) => [n.config.name, n.polled.toString()]));
    expect(status).toEqual({
      g1: "down(connect_failed)",
      h1: "down(connect_failed)",
      d1: "down(connect_failed)",
    });
    const err = Object.fromEntries(mon.nodes().map((n) => [n.config.name, n.error]));
    expect(err.d1).toMatch(/connection refused/);
    expect(err.h1).toMatch(/timed out/);
    expect(err.g1).toBeTruthy();
    // A poll counts when statfs gives up on the node; the silent server may see the accept of
    // that connection a turn later on a loaded machine, so wait for it rather than assert at once.
    await waitFor(() => silent.connections >= 2, 10_000, "a second connection to the silent node");
  });

  it("serves the table over 9P to xstat", async () => {
    const c = capture();
    const code = await xstat(["-a", statfs.addresses[0]!], c.io);
    expect(c.err).toBe("");
    expect(code).toBe(0);
    expect(c.out).toBe(statfs.monitor.table().toString());
    expect(c.out.split("\n")[0]).toBe(
      `g1\ttcp!127.0.0.1!${garbage.port}\tunknown (not read yet)\tdown(connect_failed)\t0`,
    );
  });

  it("exports metrics a strict parser accepts", async () => {
    const res = await fetch(`http://127.0.0.1:${statfs.http!.address.port}/metrics`);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const fams = parsePrometheusText(await res.text());
    const up = fams.get("statfs_node_up")!;
    expect(up.type).toBe("gauge");
    expect(up.samples.map((s) => [s.labels.node, s.value])).toEqual([
      ["g1", 0],
      ["h1", 0],
      ["d1", 0],
    ]);
    const errors = fams.get("statfs_node_poll_errors_total")!;
    expect(errors.type).toBe("counter");
    for (const s of errors.samples) expect(s.value).toBeGreaterThanOrEqual(1);
    expect(fams.get("statfs_poll_duration_seconds")!.type).toBe("histogram");
    expect(fams.get("statfs_nodes_configured")!.samples[0]!.value).toBe(3);
  });

  it("xstat --watch prints the table again when it changes, until stopped", async () => {
    const c = capture();
    const stop = new AbortController();
    const done = xstat(["-a", statfs.addresses[0]!, "--watch", "--every", "50ms", "d1"], {
      ...c.io,
      signal: stop.signal,
    });
    await waitFor(() => c.out.includes("down(connect_failed)"), 10_000, "first table");
    statfs.monitor.setHold("d1", "repair");
    await waitFor(() => c.out.includes("down(repair)"), 10_000, "redrawn table");
    statfs.monitor.setHold("d1", undefined);
    stop.abort();
    expect(await done).toBe(0);
    const tables = c.out.split("\n\n").filter(Boolean);
    expect(tables[0]).toMatch(/^d1\t127\.0\.0\.1!\d+\tunknown \(not read yet\)\tdown\(connect_failed\)\t0$/);
    expect(tables[1]).toMatch(/\tdown\(repair\)\t0$/);
  });

  it("answers xstat with exit 1 and a clear message when statfs is unreachable", async () => {
    const c = capture();
    const code = await xstat(["-a", `tcp!127.0.0.1!${dead}`], c.io);
    expect(code).toBe(1);
    expect(c.out).toBe("");
    expect(c.err).toMatch(
      new RegExp(
        `^xstat: could not obtain node list from statfs: cannot reach statfs at tcp!127\\.0\\.0\\.1!${dead}: .*refused`,
        "i",
      ),
    );
  });
});

describe("an HTTP address statfs cannot listen on", () => {
  it("is named with the reason, and nothing is left listening", async () => {
    const dir = await mkdtemp(join(tmpdir(), "statfs-http-"));
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    try {
      const conf = join(dir, "statfs.conf");
      await writeFile(conf, `n1=tcp!127.0.0.1!${await deadPort()}\n`);
      const port = (busy.address() as AddressInfo).port;
      const base = { configFile: conf, listen: ["tcp!127.0.0.1!0"] };
      await expect(startStatfs({ ...base, http: `127.0.0.1:${port}` })).rejects.toThrow(
        `cannot listen for HTTP on 127.0.0.1:${port}: address already in use (EADDRINUSE)`,
      );
      // A label longer than 63 bytes: the resolver refuses the name without sending a query.
      const host = `${"h".repeat(64)}.invalid`;
      await expect(startStatfs({ ...base, http: `${host}:8080` })).rejects.toThrow(
        `cannot listen for HTTP on ${host}:8080: no such host (ENOTFOUND)`,
      );
    } finally {
      busy.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
