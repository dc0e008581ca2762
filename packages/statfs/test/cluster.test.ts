// statfs against 8 real xcpufs nodes on loopback (admin-key authentication), plus a node that
// answers garbage and one that never answers.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount } from "@clustermatic/ninep/client";
import { OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import type { XcpufsHandle } from "@clustermatic/xcpufs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signChallenge } from "../src/auth.js";
import { main as xstat } from "../src/cli/xstat.js";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { type NodeView, statusOf } from "../src/monitor.js";
import { parseTable } from "../src/table.js";
import { type AdminKeys, makeAdminKey, startNode } from "./helpers/cluster.js";
import { capture } from "./helpers/io.js";
import { deadPort, garbageServer, type RawServer, silentServer, waitFor } from "./helpers/net.js";
import { parsePrometheusText } from "./helpers/prom-parse.js";

// Every node but one answers from this process. Its read timeout is half the interval (as by
// default), and both are seconds long, so a busy machine does not make a live node miss a poll.
const INTERVAL = 4000;
const TIMEOUT = INTERVAL / 2;

describe("statfs with 8 xcpufs nodes", () => {
  let dir: string;
  let keys: AdminKeys;
  const nodes: XcpufsHandle[] = [];
  let garbage: RawServer;
  let silent: RawServer;
  let statfs: Statfs;
  let conf: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-cluster-"));
    keys = await makeAdminKey(dir);
    // n3 on a port the kernel hands to no one else: it is restarted on it.
    for (let i = 0; i < 8; i++) nodes.push(await startNode(keys, dir, i === 2 ? await deadPort() : 0));
    garbage = await garbageServer();
    silent = await silentServer();
    conf = join(dir, "cluster.yaml");
    await writeFile(
      conf,
      [
        "nodes:",
        ...nodes.map(
          (n, i) =>
            `  - { name: n${i + 1}, address: "tcp!127.0.0.1!${n.port}", labels: { rack: r${i < 4 ? 1 : 2} } }`,
        ),
        `  - { name: junk, address: "tcp!127.0.0.1!${garbage.port}" }`,
        `  - { name: mute, address: "tcp!127.0.0.1!${silent.port}" }`,
        "",
      ].join("\n"),
    );
    statfs = await startStatfs({
      configFile: conf,
      adminKey: keys.privateKey,
      listen: ["tcp!127.0.0.1!0"],
      http: "127.0.0.1:0",
      pollOverrides: { intervalMs: INTERVAL, connectTimeoutMs: TIMEOUT, readTimeoutMs: TIMEOUT },
    });
  });

  afterAll(async () => {
    await statfs?.close();
    for (const n of nodes) await n.close();
    await garbage?.close();
    await silent?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const status = (name: string) => statusOf(statfs.monitor.node(name)!).toString();

  it("sees all 8 nodes up while the broken ones are down", async () => {
    await waitFor(() => nodes.every((_, i) => status(`n${i + 1}`) === "up"), 30_000, "all nodes up");
    await waitFor(
      () => status("junk").startsWith("down(") && status("mute") !== "down(initializing)",
      30_000,
      "broken nodes polled",
    );
    expect(status("junk")).toBe("down(connect_failed)");
    expect(status("mute")).toBe("down(connect_failed)");
    const nodeArch = statfs.monitor.node("n1")!.arch.toString();
    expect(nodeArch).toMatch(/^\/Linux\/\S+\n?$/);
    const rows = parseTable(statfs.monitor.table().toString());
    expect(rows).toHaveLength(10);
    for (const r of rows.slice(0, 8)) {
      expect(r.arch).toBe(nodeArch); // copied verbatim from the node, newline included if it has one
      expect(r.status).toBe("up");
    }
  });

  it("does not let nodes that hang or answer garbage delay the others", async () => {
    // Three silent nodes and a garbage node come first, and only 4 polls may run at once.
    const mutes = [silent, await silentServer(), await silentServer()];
    const conf2 = join(dir, "hang-first.conf");
    await writeFile(
      conf2,
      [
        ...mutes.map((m, i) => `mute${i}=tcp!127.0.0.1!${m.port}`),
        `junk=tcp!127.0.0.1!${garbage.port}`,
        ...nodes.map((n, i) => `n${i + 1}=tcp!127.0.0.1!${n.port}`),
        "",
      ].join("\n"),
    );
    const s2 = await startStatfs({
      configFile: conf2,
      adminKey: keys.privateKey,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      // The silent nodes' first attempt lasts as long as the read timeout: far longer than the
      // real nodes need, however busy the machine.
      pollOverrides: { intervalMs: 60_000, connectTimeoutMs: 60_000, readTimeoutMs: 60_000, concurrency: 4 },
    });
    try {
      const st = (name: string) => statusOf(s2.monitor.node(name)!).toString();
      await waitFor(() => nodes.every((_, i) => st(`n${i + 1}`) === "up"), 30_000, "all real nodes up");
      // The silent nodes are still in their first attempt (it can last 60 s): nobody waited for them.
      for (let i = 0; i < 3; i++) expect(st(`mute${i}`)).toBe("down(initializing)");
      expect(st("junk")).toBe("down(connect_failed)");
    } finally {
      await s2.close();
      await mutes[1]!.close();
      await mutes[2]!.close();
    }
  });

  it("reports a killed node down within two polls and up again after a restart", async () => {
    const events: string[] = [];
    const sse = await openEvents(statfs.http!.address.port, (ev, data) =>
      events.push(`${ev} ${data.name ?? ""} ${data.status ?? ""}`),
    );
    // Counted in polls, not milliseconds: how long a poll takes depends on the machine's load, how
    // many polls statfs needs to notice a change does not.
    const changes: { status: string; polls: number }[] = [];
    const onChange = (v: NodeView) => {
      if (v.name === "n3") changes.push({ status: v.status, polls: v.polls });
    };
    statfs.monitor.on("change", onChange);
    const follows = async (act: () => Promise<void>, want: (s: string) => boolean, what: string) => {
      const polls = statfs.monitor.node("n3")!.polls; // includes a poll in flight
      const seen = changes.length;
      await act();
      const change = (await waitFor(() => changes.slice(seen).find((c) => want(c.status)), 30_000, what))!;
      expect(change.polls - polls, `polls until ${what}`).toBeLessThanOrEqual(2);
    };
    try {
      const victim = nodes[2]!;
      const port = victim.port;
      await follows(
        () => victim.close(),
        (s) => s.startsWith("down("),
        "n3 down",
      );
      // The others are unaffected.
      for (const n of ["n1", "n2", "n4", "n5", "n6", "n7", "n8"]) expect(status(n)).toBe("up");

      // Let the backoff grow: statfs still notices the restart at its next attempt.
      await waitFor(() => statfs.monitor.node("n3")!.failures >= 3, 30_000, "three failed attempts on n3");
      await follows(
        async () => {
          nodes[2] = await startNode(keys, dir, port);
        },
        (s) => s === "up",
        "n3 up again",
      );
      await waitFor(() => events.some((e) => e.startsWith("node n3 up")), 10_000, "SSE up event");
      expect(events[0]).toMatch(/^snapshot/);
      expect(events.some((e) => /^node n3 down\(/.test(e))).toBe(true);
    } finally {
      statfs.monitor.off("change", onChange);
      sse.close();
    }
  }, 90_000);

  it("counts sessions, and serves per-node files and JSON", async () => {
    // Open a session on n1 as the admin: its directory appears in the node's root.
    const fs = await mount(nodes[0]!.address, {
      uname: "xcpu-admin",
      n_uname: 65530,
      authenticate: async (afid) => {
        const ch = await afid.read(16);
        await afid.write(signChallenge(ch, keys.privateKey));
      },
    });
    try {
      const clone = await fs.open("clone", OREAD);
      statfs.monitor.pollNow("n1");
      await waitFor(() => statfs.monitor.node("n1")!.numjobs === 1, 10_000, "one session on n1");
      await clone.clunk();
    } finally {
      await fs.close();
    }
    const view = (await (
      await fetch(`http://127.0.0.1:${statfs.http!.address.port}/api/nodes/n1`)
    ).json()) as { arch: string };
    expect(view).toMatchObject({ name: "n1", status: "up", up: true, labels: { rack: "r1" } });
    expect(view.arch).toMatch(/^\/Linux\/\S+$/);
    const all = (await (
      await fetch(`http://127.0.0.1:${statfs.http!.address.port}/api/nodes?status=up`)
    ).json()) as { nodes: { name: string }[] };
    expect(all.nodes.map((n: { name: string }) => n.name)).toEqual([
      "n1",
      "n2",
      "n3",
      "n4",
      "n5",
      "n6",
      "n7",
      "n8",
    ]);

    const base = `http://127.0.0.1:${statfs.http!.address.port}`;
    expect((await fetch(`${base}/api/nodes/nosuch`)).status).toBe(404);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
    const sfs = await mount(statfs.addresses[0]!, { uname: "nobody" });
    try {
      const names = (await sfs.readdir("/")).map((s) => s.name);
      expect(names).toEqual(["state", "json", "ctl", "nodes"]);
      expect((await sfs.readdir("nodes")).map((s) => s.name)).toEqual([
        ...nodes.map((_, i) => `n${i + 1}`),
        "junk",
        "mute",
      ]);
      const read = async (p: string) => {
        const f = await sfs.open(p, OREAD);
        try {
          return (await f.read(0, 8192)).toString();
        } finally {
          await f.clunk();
        }
      };
      expect(await read("nodes/n2/status")).toBe("up\n");
      expect(await read("nodes/mute/status")).toBe("down(connect_failed)\n");
      expect(await read("nodes/n2/info")).toMatch(
        /^name n2\naddress tcp!127\.0\.0\.1!\d+\narch \/Linux\/\S+\nstatus up\nsessions 0\n/,
      );
      expect(JSON.parse(await read("nodes/n2/json")).name).toBe("n2");
      expect(await read("state")).toBe(statfs.monitor.table().toString());
      await expect(sfs.open("ctl", OREAD)).rejects.toThrow(/permission denied/);
      await expect(sfs.open("state", OWRITE)).rejects.toThrow(/permission denied/);
      await expect(sfs.open("nodes/nosuch/status", OREAD)).rejects.toThrow(/not found/);
      await expect(sfs.open("nodes", OWRITE)).rejects.toThrow();
      expect(await read("nodes/n2/../n3/address")).toBe(`${statfs.monitor.node("n3")!.config.address}\n`);
    } finally {
      await sfs.close();
    }
  });

  it("lets only the admin set a node's state through ctl", async () => {
    const anon = await mount(statfs.addresses[0]!, { uname: "nobody" });
    try {
      await expect(anon.open("ctl", OWRITE)).rejects.toThrow(
        /permission denied: ctl writes need an attach authenticated with the admin key \(or statfs --ctl-noauth\)/,
      );
      await expect(anon.open("nodes/n2/ctl", OWRITE)).rejects.toThrow(/permission denied/);
      const walked = await anon.walk("ctl");
      await expect(walked.wstat({ length: 0n })).rejects.toThrow(/wstat prohibited/);
      await walked.clunk();
    } finally {
      await anon.close();
    }
    const other = await makeAdminKey(dir, "not_admin");
    await expect(
      mount(statfs.addresses[0]!, {
        uname: "xcpu-admin",
        authenticate: async (afid) => {
          await afid.write(signChallenge(await afid.read(16), other.privateKey));
        },
      }),
    ).rejects.toThrow(/authentication failed/);

    const admin = await mount(statfs.addresses[0]!, {
      uname: "xcpu-admin",
      authenticate: async (afid) => {
        await afid.write(signChallenge(await afid.read(16), keys.privateKey));
      },
    });
    try {
      const ctl = await admin.open("ctl", OWRITE);
      await ctl.write(0, "down n2 maintenance\n");
      await expect(ctl.write(0, "down nosuch\n")).rejects.toThrow(/unknown node "nosuch"/);
      await expect(ctl.write(0, "reboot n2\n")).rejects.toThrow(/unknown command "reboot"/);
      await ctl.clunk();
      expect(status("n2")).toBe("down(maintenance)");
      const fams = parsePrometheusText(
        await (await fetch(`http://127.0.0.1:${statfs.http!.address.port}/metrics`)).text(),
      );
      expect(fams.get("statfs_node_held")!.samples.find((s) => s.labels.node === "n2")!.value).toBe(1);
      expect(fams.get("statfs_node_up")!.samples.find((s) => s.labels.node === "n2")!.value).toBe(0);

      // As `echo up > nodes/n2/ctl` through a Linux v9fs mount: a truncating open, then a wstat
      // of length 0 with times. Other changes, or an anonymous attach, are still refused.
      const n2 = await admin.open("nodes/n2/ctl", OWRITE | OTRUNC);
      const now = Math.floor(Date.now() / 1000);
      await n2.wstat({ length: 0n, mtime: now, atime: now });
      await expect(n2.wstat({ length: 0n, mode: 0o600 })).rejects.toThrow(/wstat prohibited/);
      await expect(n2.wstat({ length: 3n })).rejects.toThrow(/wstat prohibited/);
      await n2.write(0, "up\n");
      await n2.clunk();
      const state = await admin.walk("state");
      await expect(state.wstat({ length: 0n })).rejects.toThrow(/wstat prohibited/);
      await state.clunk();
      await waitFor(() => status("n2") === "up", 10_000, "n2 up after the hold");

      // `state` writes the node's own state file, as an operator would on the node.
      const n4 = await admin.open("nodes/n4/ctl", OWRITE);
      await n4.write(0, "state draining\n");
      await n4.clunk();
      await waitFor(() => status("n4") === "draining", 10_000, "n4 draining");
      expect(nodes[3]!.xcpufs.rootState.data.toString()).toBe("draining");
      const again = await admin.open("nodes/n4/ctl", OWRITE);
      await again.write(0, "state\n");
      await again.clunk();
      await waitFor(() => status("n4") === "up", 10_000, "n4 up");
    } finally {
      await admin.close();
    }
  });

  it("xstat prints the original table, filters, and JSON", async () => {
    const all = capture();
    expect(await xstat(["-a", statfs.addresses[0]!], all.io)).toBe(0);
    expect(all.out).toBe(statfs.monitor.table().toString());

    const some = capture();
    expect(await xstat(["-a", statfs.addresses[0]!, "n[1-2],mute"], some.io)).toBe(0);
    expect(parseTable(some.out).map((r) => r.name)).toEqual(["n1", "n2", "mute"]);
    expect(some.err).toBe("");

    // Named nodes the table lacks are said; none known at all is a failure, as in the original.
    const partly = capture();
    expect(await xstat(["-a", statfs.addresses[0]!, "n1,zz"], partly.io)).toBe(0);
    expect(parseTable(partly.out).map((r) => r.name)).toEqual(["n1"]);
    expect(partly.err).toBe("xstat: not in the statfs table: zz\n");
    const none = capture();
    expect(await xstat(["-a", statfs.addresses[0]!, "zz,n[98-99]"], none.io)).toBe(1);
    expect(none.out).toBe("");
    expect(none.err).toBe("xstat: not in the statfs table: zz, n98, n99\n");

    const up = capture();
    expect(await xstat(["-a", statfs.addresses[0]!, "--json", "status=up", "n[1-3],junk"], up.io)).toBe(0);
    const j = JSON.parse(up.out);
    expect(j.map((n: { name: string }) => n.name)).toEqual(["n1", "n2", "n3"]);
    expect(j[0]).toMatchObject({
      status: "up",
      up: true,
      sessions: expect.any(Number),
      labels: { rack: "r1" },
    });
  });

  it("reports load, memory and uptime when the node has the sysinfo extension", async () => {
    const fs = await mount(nodes[4]!.address, {
      uname: "xcpu-admin",
      n_uname: 65530,
      authenticate: async (afid) => {
        await afid.write(signChallenge(await afid.read(16), keys.privateKey));
      },
    });
    const hasSysinfo = (await fs.readdir("/")).some((e) => e.name === "sysinfo");
    await fs.close();
    if (!hasSysinfo) {
      console.log("sysinfo check skipped: this xcpufs has no sysinfo file");
      return;
    }
    statfs.monitor.pollNow("n5");
    await waitFor(() => statfs.monitor.node("n5")!.details.load !== undefined, 10_000, "n5 details");
    const v = (await (
      await fetch(`http://127.0.0.1:${statfs.http!.address.port}/api/nodes/n5`)
    ).json()) as Record<string, unknown>;
    expect(v.load).toEqual([expect.any(Number), expect.any(Number), expect.any(Number)]);
    expect(v.memTotalBytes as number).toBeGreaterThan(1 << 20);
    expect(v.memAvailableBytes as number).toBeGreaterThan(0);
    expect(v.uptimeSeconds as number).toBeGreaterThan(0);
    const fams = parsePrometheusText(
      await (await fetch(`http://127.0.0.1:${statfs.http!.address.port}/metrics`)).text(),
    );
    expect(fams.get("statfs_node_load1")!.samples.some((x) => x.labels.node === "n5")).toBe(true);
    expect(
      fams.get("statfs_node_memory_total_bytes")!.samples.find((x) => x.labels.node === "n5")!.value,
    ).toBe(v.memTotalBytes);
  });

  it("serves metrics with per-node gauges that parse", async () => {
    const res = await fetch(`http://127.0.0.1:${statfs.http!.address.port}/metrics`);
    const fams = parsePrometheusText(await res.text());
    const info = fams.get("statfs_node_info")!;
    expect(info.samples.find((s) => s.labels.node === "n5")!.labels).toMatchObject({
      rack: "r2",
      address: expect.stringMatching(/^tcp!127/),
    });
    expect(fams.get("statfs_node_up")!.samples.filter((s) => s.value === 1)).toHaveLength(8);
    expect(fams.get("statfs_node_sessions")!.samples).toHaveLength(10);
    expect(fams.get("statfs_node_poll_duration_seconds")!.samples).toHaveLength(10);
    expect(
      fams.get("statfs_node_poll_errors_total")!.samples.find((s) => s.labels.node === "junk")!.value,
    ).toBeGreaterThan(0);
    expect(fams.get("statfs_nodes_up")!.samples[0]!.value).toBe(8);
  });
});

function openEvents(
  port: number,
  on: (event: string, data: Record<string, string>) => void,
): Promise<{ close(): void }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/api/events" }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) on(event, JSON.parse(data));
        }
      });
      resolve({ close: () => req.destroy() });
    });
    req.on("error", () => {});
  });
}
