// statfs against a node shaped like the original xcpufs 1.2.3: only the original root files
// (arch without a newline, state, clone, procs…, no `sysinfo`), a session directory, and no
// authentication. Built with the 9P server framework's synthetic tree.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BytesFile, Server, SynthDir, staticFile, treeBackend } from "@clustermatic/ninep/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../src/config.js";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { Monitor, viewOf } from "../src/monitor.js";
import { XcpufsConnector } from "../src/xcpufs-session.js";
import { waitFor } from "./helpers/net.js";

const PROCS = [
  "(pid (cmdline) state ppid pgrp psid tty tpgid utime stime etime priority nice wchan euid suid fsuid egid sgid fsgid vmsize rssize shsize txtsize datsize xcpusid xcpujid ) ",
  "(1 (/sbin/init) S 0 1 1 ?? -1 10 0 86400500 5 0 0 0 0 0 0 0 0 5476352 1048576 856064 4096 135168 '' '' ) ",
  "(4711 (/var/xcpu/xcpu-Ab12Cd/a.out -n 3) S 4100 4711 4711 ?? -1 10 0 5230 5 0 0 1000 1000 1000 100 100 100 5476352 1048576 856064 4096 135168 3 job7/2 ) ",
  "(4712 (sh -c 'x (y'' )') R 4711 4711 4711 ?? -1 10 0 5230 5 0 0 1000 1000 1000 100 100 100 5476352 1048576 856064 4096 135168 3 job7/2 ) ",
  "(4800 (sleep 3) S 4100 4800 4800 ?? -1 10 0 5230 5 0 0 1000 1000 1000 100 100 100 5476352 1048576 856064 4096 135168 4 /1 ) ",
  "",
].join("\n");

describe("a node like the original xcpufs", () => {
  let dir: string;
  let server: Server;
  let ours: Server;
  let state: BytesFile;
  let statfs: Statfs;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-orig-"));
    const opts = { uid: "xcpu-admin", gid: "xcpu-admin" };
    const root = new SynthDir("/", opts);
    root.add(staticFile("clone", "", opts));
    root.add(staticFile("ctl", "", { ...opts, mode: 0o660 }));
    root.add(staticFile("arch", "/Linux/x86_64", opts));
    root.add(staticFile("env", "", opts));
    root.add(staticFile("procs", PROCS, opts));
    state = root.add(new BytesFile("state", "", { ...opts, mode: 0o666 }));
    root.add(staticFile("passkey", "", opts));
    root.add(staticFile("pwent", "", { ...opts, mode: 0o440 }));
    root.add(staticFile("grent", "", { ...opts, mode: 0o440 }));
    root.add(new SynthDir("3", { uid: "root", gid: "root" }));
    root.add(new SynthDir("4", { uid: "root", gid: "root" }));
    server = new Server({ backend: treeBackend(root) });
    const bound = await server.listen("tcp!127.0.0.1!0");
    const port = bound.network === "tcp" ? bound.port : 0;
    // The same files and a sysinfo: a node of ours, whose procs may be read.
    const root2 = new SynthDir("/", opts);
    for (const name of ["clone", "arch", "procs"]) {
      root2.add(staticFile(name, name === "arch" ? "/Linux/x86_64" : name === "procs" ? PROCS : "", opts));
    }
    root2.add(staticFile("state", "", opts));
    root2.add(staticFile("sysinfo", "uptime 100\n", opts));
    ours = new Server({ backend: treeBackend(root2) });
    const bound2 = await ours.listen("tcp!127.0.0.1!0");
    const port2 = bound2.network === "tcp" ? bound2.port : 0;
    const conf = join(dir, "c.yaml");
    await writeFile(
      conf,
      `poll: { interval: 2s, procs: true }\nnodes:\n  - { name: old1, address: "tcp!127.0.0.1!${port}" }\n`,
    );
    await writeFile(
      join(dir, "ours.yaml"),
      `poll: { interval: 2s, procs: true }\nnodes:\n  - { name: new1, address: "tcp!127.0.0.1!${port2}" }\n`,
    );
    statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      ctlWithoutAuth: true,
    });
  });
  afterAll(async () => {
    await statfs?.close();
    await server?.close(0);
    await ours?.close(0);
    await rm(dir, { recursive: true, force: true });
  });

  it("reads arch, state and sessions; not procs (the original can crash on it), so no jobs, load or memory", async () => {
    await waitFor(() => statfs.monitor.node("old1")!.polled.toString() === "up", 20_000, "old1 up");
    expect(statfs.monitor.table().toString()).toMatch(
      new RegExp(
        `^old1\ttcp!127\\.0\\.0\\.1!${statfs.monitor.node("old1")!.config.port}\t/Linux/x86_64\tup\t2\n`,
      ),
    );
    const v = viewOf(statfs.monitor.node("old1")!);
    expect(v).toMatchObject({
      sessions: 2,
      jobs: null,
      processes: null,
      load: null,
      memTotalBytes: null,
      uptimeSeconds: null,
    });
  });

  it("reads procs with poll.procs from a node that has sysinfo (ours)", async () => {
    const s2 = await startStatfs({
      configFile: join(dir, "ours.yaml"),
      listen: ["tcp!127.0.0.1!0"],
      http: null,
    });
    try {
      await waitFor(() => s2.monitor.node("new1")!.polled.toString() === "up", 20_000, "new1 up");
      expect(viewOf(s2.monitor.node("new1")!)).toMatchObject({ jobs: 2, processes: 4, uptimeSeconds: 100 });
    } finally {
      await s2.close();
    }
  });

  it("shows the node's own state text, cut like the original", async () => {
    state.content = Buffer.from("down");
    await waitFor(() => statfs.monitor.node("old1")!.polled.toString() === "down", 20_000, "state down");
    expect(statfs.monitor.table().toString()).toMatch(/\t\/Linux\/x86_64\tdown\t\d+\n$/);
    state.content = Buffer.from("x".repeat(100));
    await waitFor(
      () => statfs.monitor.node("old1")!.polled.length === 63,
      20_000,
      "long state cut to 63 bytes",
    );
    state.content = Buffer.alloc(0);
    await waitFor(() => statfs.monitor.node("old1")!.polled.toString() === "up", 20_000, "up again");
  });
  it("marks a node that has not answered for two intervals down(no_contact), then reconnects", async () => {
    // The watchdog is driven by the monitor's clock: jump it forward three intervals. The interval
    // (and the timeouts, half of it) is seconds long so that only the jump, not a busy machine,
    // makes the node miss its contact.
    let offset = 0;
    const addr = statfs.monitor.node("old1")!.config.address;
    const config = parseConfig(
      `poll: { interval: 4s }\nnodes:\n  - { name: w, address: "${addr}" }\n`,
      "w.yaml",
    );
    const mon = new Monitor(config, { connector: new XcpufsConnector(), now: () => Date.now() + offset });
    const seen: string[] = [];
    mon.on("change", (v) => seen.push(v.status));
    mon.start();
    try {
      await waitFor(() => mon.node("w")!.polled.toString() === "up", 20_000, "w up");
      offset = 3 * 4000;
      await waitFor(() => seen.includes("down(no_contact)"), 20_000, "down(no_contact)");
      expect(mon.node("w")!.error).toMatch(/^no answer for \d+ s$/);
      await waitFor(() => mon.node("w")!.polled.toString() === "up", 20_000, "w up again");
      expect(seen.slice(-2)).toEqual(["down(no_contact)", "up"]);
    } finally {
      await mon.stop();
    }
  });
});
