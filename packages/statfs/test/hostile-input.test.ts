// What a node, a statfs impostor or a hand-edited hold file can put in front of statfs and xstat:
// a node state with tabs must not forge table rows, a `state` that never ends must not fill
// xstat's memory, and a hold file with bad entries (or a full disk) must not corrupt the table
// or leave a partial file behind.

import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatAddress, mount } from "@clustermatic/ninep/client";
import { OTRUNC, OWRITE, QTDIR, QTFILE, type Stat } from "@clustermatic/ninep/codec";
import { Ename, FsError } from "@clustermatic/ninep/errors";
import { type Node, Server } from "@clustermatic/ninep/server";
import { startXcpufs, type XcpufsHandle } from "@clustermatic/xcpufs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xstat } from "../src/cli/xstat.js";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { parseTable } from "../src/table.js";
import { capture } from "./helpers/io.js";
import { waitFor } from "./helpers/net.js";

const POLL = { intervalMs: 10_000, connectTimeoutMs: 5000, readTimeoutMs: 5000 };

describe("a node's state text", () => {
  let dir: string;
  let node: XcpufsHandle;
  let statfs: Statfs;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-hostile-"));
    node = await startXcpufs({ listen: "tcp!127.0.0.1!0", noAuth: true, tmpdir: dir });
    const conf = join(dir, "statfs.conf");
    await writeFile(conf, `n1=${node.address}\n`);
    statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      pollOverrides: POLL,
    });
  });
  afterAll(async () => {
    await statfs?.close();
    await node?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("cannot add rows to the table with tabs and newlines", async () => {
    const mon = statfs.monitor;
    await waitFor(() => mon.node("n1")!.polled.toString() === "up", 20_000, "n1 up");
    const forged = "up\t0\nghost\ttcp!127.0.0.1!1\t/Linux/x86_64\tup";
    const admin = await mount(node.address, { uname: "xcpu-admin", n_uname: 65530 });
    try {
      const f = await admin.open("state", OWRITE | OTRUNC);
      await f.write(0, forged);
      await f.clunk();
    } finally {
      await admin.close();
    }
    mon.pollNow("n1");
    await waitFor(() => mon.node("n1")!.polled.toString() !== "up", 20_000, "n1's new state");

    const cap = capture();
    expect(await xstat(["-a", statfs.addresses[0]!], cap.io)).toBe(0);
    const rows = parseTable(cap.out);
    expect(rows.map((r) => r.name)).toEqual(["n1"]);
    expect(rows[0]!.status).toBe("up 0\nghost tcp!127.0.0.1!1 /Linux/x86_64 up");
    expect(rows[0]!.numjobs).toBe(0);

    const up = capture();
    expect(await xstat(["-a", statfs.addresses[0]!, "status=up"], up.io)).toBe(0);
    expect(up.out).toBe("");
  });
});

/** A 9P server whose `state` file answers every read with more table lines: it never ends. */
async function endlessStatfs(): Promise<{ address: string; close(): Promise<void> }> {
  const line = Buffer.from("n1\ttcp!127.0.0.1!6667\t/Linux/x86_64\tup\t0\n");
  const stat = (name: string, qid: Node["qid"], mode: number): Stat => ({
    type: 0,
    dev: 0,
    qid,
    mode,
    atime: 0,
    mtime: 0,
    length: 0n,
    name,
    uid: "root",
    gid: "root",
    muid: "root",
    extension: "",
    n_uid: 0,
    n_gid: 0,
    n_muid: 0,
  });
  const state: Node = {
    qid: { type: QTFILE, version: 0, path: 2n },
    stat: async () => stat("state", state.qid, 0o444),
    open: async () => ({
      read: async (_offset, count) => {
        const out = Buffer.alloc(count);
        for (let o = 0; o < count; o += line.length) line.copy(out, o);
        return out;
      },
    }),
  };
  const root: Node = {
    qid: { type: QTDIR, version: 0, path: 1n },
    stat: async () => stat("/", root.qid, 0o555 | 0x80000000),
    walk1: async (name) => {
      if (name === "state") return state;
      throw new FsError(Ename.NotFound);
    },
  };
  const server = new Server({ backend: { attach: async () => root }, name: "endless" });
  const address = formatAddress(await server.listen("tcp!127.0.0.1!0"));
  return { address, close: () => server.close(0) };
}

describe("xstat against a server whose state never ends", () => {
  it("gives up with a clear error instead of reading forever", async () => {
    const srv = await endlessStatfs();
    try {
      const cap = capture();
      expect(await xstat(["-a", srv.address], cap.io)).toBe(1);
      expect(cap.out).toBe("");
      expect(cap.err).toMatch(
        /^xstat: could not obtain node list from statfs: cannot read statfs at tcp!127\.0\.0\.1!\d+: state is larger than 67108864 bytes/,
      );
    } finally {
      await srv.close();
    }
  });
});

describe("the hold file", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-holds-"));
    // Nodes nobody answers for: only the holds matter here.
    await writeFile(
      join(dir, "statfs.conf"),
      "n1=127.0.0.1!1\nn2=127.0.0.1!1\nn3=127.0.0.1!1\nn4=127.0.0.1!1\n",
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  /** A statfs of the four nodes keeping its holds in `holdFile`, logging into `log`. */
  const start = (holdFile: string, log: string[]) =>
    startStatfs({
      configFile: join(dir, "statfs.conf"),
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      holdFile,
      log: (l) => log.push(l),
      pollOverrides: POLL,
      ctlWithoutAuth: true,
    });

  it("a hold file that cannot be read (damaged, a directory) stops statfs from starting; the file is left as it was", async () => {
    const damaged = join(dir, "damaged.json");
    const text = '{"holds":{"n1":"maint","zz":"keepme"';
    writeFileSync(damaged, text);
    await expect(start(damaged, [])).rejects.toThrow(`cannot read hold file ${damaged}: `);
    await expect(start(damaged, [])).rejects.toThrow(
      /not started, so that the file is not overwritten \(mend or remove it\)$/,
    );
    expect(readFileSync(damaged, "utf8")).toBe(text);
    const asDir = join(dir, "holds-dir");
    mkdirSync(asDir);
    await expect(start(asDir, [])).rejects.toThrow(`cannot read hold file ${asDir}: EISDIR`);
  });

  it("restores good holds only, and says which it refused", async () => {
    const holdFile = join(dir, "holds.json");
    writeFileSync(
      holdFile,
      JSON.stringify({ holds: { n1: "a\tb", n2: 5, n3: { x: 1 }, n4: "maintenance" } }),
    );
    const log: string[] = [];
    const statfs = await start(holdFile, log);
    try {
      const cap = capture();
      expect(await xstat(["-a", statfs.addresses[0]!], cap.io)).toBe(0);
      const rows = parseTable(cap.out);
      expect(rows.map((r) => r.name)).toEqual(["n1", "n2", "n3", "n4"]);
      expect(rows[3]!.status).toBe("down(maintenance)");
      for (const r of rows.slice(0, 3)) expect(r.status).not.toMatch(/^down\((a|5|\[object)/);
      expect(statfs.monitor.nodes().map((n) => n.hold)).toEqual([
        undefined,
        undefined,
        undefined,
        "maintenance",
      ]);
      expect(log.filter((l) => l.includes("not restored"))).toEqual([
        `hold file ${holdFile}: "n1": bad reason: no tabs, newlines or parentheses; not restored`,
        `hold file ${holdFile}: "n2": bad reason: expected a non-empty string; not restored`,
        `hold file ${holdFile}: "n3": bad reason: expected a non-empty string; not restored`,
      ]);
    } finally {
      await statfs.close();
    }
  });

  it("keeps the holds of nodes the configuration does not name, and restores them when they return", async () => {
    const conf = join(dir, "comings-and-goings.conf");
    writeFileSync(conf, "n1=127.0.0.1!1\nn2=127.0.0.1!1\n");
    const holdFile = join(dir, "kept.json");
    writeFileSync(holdFile, JSON.stringify({ holds: { n2: "maint", zz: "x" } }));
    const saved = () => JSON.parse(readFileSync(holdFile, "utf8")).holds as Record<string, string>;
    const log: string[] = [];
    const open = () =>
      startStatfs({
        configFile: conf,
        listen: ["tcp!127.0.0.1!0"],
        http: null,
        holdFile,
        log: (l) => log.push(l),
        pollOverrides: POLL,
        ctlWithoutAuth: true,
      });
    const ctl = async (statfs: Statfs, line: string) => {
      const c = await mount(statfs.addresses[0]!, { uname: "nobody" });
      try {
        const f = await c.open("ctl", OWRITE);
        await f.write(0, line);
        await f.clunk();
      } finally {
        await c.close();
      }
    };
    const status = async (statfs: Statfs) => {
      const cap = capture();
      expect(await xstat(["-a", statfs.addresses[0]!], cap.io)).toBe(0);
      return Object.fromEntries(parseTable(cap.out).map((r) => [r.name, r.status]));
    };

    let statfs = await open();
    try {
      expect(statfs.monitor.nodes().map((n) => n.hold)).toEqual([undefined, "maint"]);
      expect(log).toContain(
        `hold file ${holdFile}: "zz": not in the configuration; its hold (x) stays in the file for when it returns`,
      );
      // A save (another hold set through ctl) keeps zz's entry.
      await ctl(statfs, "down n1 disk\n");
      expect(saved()).toEqual({ n1: "disk", n2: "maint", zz: "x" });
      // A reload brings zz back, held as it was, and takes n2 out: its hold stays in the file.
      writeFileSync(conf, "n1=127.0.0.1!1\nzz=127.0.0.1!1\n");
      await statfs.reload();
      expect(await status(statfs)).toEqual({ n1: "down(disk)", zz: "down(x)" });
      expect(log).toContain(
        `node n2 left the configuration; its hold (maint) stays in ${holdFile} for when it returns`,
      );
      expect(log).toContain("node zz is back in the configuration; its hold (x) is in force again");
      await ctl(statfs, "up zz\n");
      expect(saved()).toEqual({ n1: "disk", n2: "maint" });
    } finally {
      await statfs.close();
    }
    // A restart with n2 configured again finds its hold.
    writeFileSync(conf, "n1=127.0.0.1!1\nn2=127.0.0.1!1\n");
    statfs = await open();
    try {
      expect(await status(statfs)).toEqual({ n1: "down(disk)", n2: "down(maint)" });
      expect(saved()).toEqual({ n1: "disk", n2: "maint" });
    } finally {
      await statfs.close();
    }
  });

  it("a full disk leaves the previous hold file whole and no temporary file", async (ctx) => {
    if (process.getuid?.() !== 0) {
      console.log("hold-file full-disk test skipped: mounting a small tmpfs needs root");
      ctx.skip();
    }
    const small = join(dir, "small");
    mkdirSync(small);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", small], { stdio: "pipe" });
    } catch (err) {
      console.log(`hold-file full-disk test skipped: cannot mount a tmpfs (${(err as Error).message})`);
      ctx.skip();
    }
    const log: string[] = [];
    let statfs: Statfs | undefined;
    try {
      const holdFile = join(small, "holds.json");
      const before = `${JSON.stringify({ holds: { n4: "maintenance" } }, null, 1)}\n`;
      writeFileSync(holdFile, before);
      statfs = await start(holdFile, log);
      // Fill the file system, then change a hold: the new file cannot be written.
      writeFileSync(join(small, "fill"), Buffer.alloc(60 * 1024));
      try {
        writeFileSync(join(small, "fill2"), Buffer.alloc(64 * 1024));
      } catch {}
      statfs.monitor.setHold("n1", "disk");
      await waitFor(
        () => log.some((l) => l.startsWith("cannot write hold file")),
        20_000,
        "the write failure",
      );
      expect(readFileSync(holdFile, "utf8")).toBe(before);
      expect(readdirSync(small)).toContain("holds.json");
      // Every later change (a poll's) tries the write again, and its partial copy exists until
      // that attempt fails too: what must not happen is a copy left behind.
      await waitFor(
        () => !readdirSync(small).includes("holds.json.tmp"),
        20_000,
        "the partial hold file removed",
      );
      expect(readFileSync(holdFile, "utf8")).toBe(before);
      // Through ctl the writer learns it: the hold is in force, and will not outlive a restart.
      const c = await mount(statfs.addresses[0]!, { uname: "nobody" });
      try {
        const ctl = await c.open("ctl", OWRITE);
        await expect(ctl.write(0, "down n2 disk2\n")).rejects.toThrow(
          `in force, but not saved: cannot write hold file ${holdFile}: ENOSPC`,
        );
        await ctl.clunk();
      } finally {
        await c.close();
      }
      expect(statfs.monitor.node("n2")?.hold).toBe("disk2");
      expect(readFileSync(holdFile, "utf8")).toBe(before);
    } finally {
      await statfs?.close();
      execFileSync("umount", ["-l", small]);
    }
  });
});

/** Sends raw bytes to the HTTP port and returns the status line of the answer. */
function rawHttp(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(request));
    let got = "";
    s.on("data", (b) => {
      got += b.toString("latin1");
    });
    s.on("error", reject);
    s.on("close", () => resolve(got.split("\r\n")[0] ?? ""));
  });
}

describe("the HTTP side against malformed requests", () => {
  let dir: string;
  let statfs: Statfs;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-http-"));
    await writeFile(join(dir, "statfs.conf"), "n1=127.0.0.1!1\n");
    statfs = await startStatfs({
      configFile: join(dir, "statfs.conf"),
      listen: ["tcp!127.0.0.1!0"],
      http: "127.0.0.1:0",
      pollOverrides: POLL,
    });
  });
  afterAll(async () => {
    await statfs?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers 400 to a bad %-escape or a target that is no URL, and keeps serving", async () => {
    const port = statfs.http!.address.port;
    for (const target of ["/api/nodes/%ZZ", "/api/nodes/n%E0%A4%A", "http://[::1/api/nodes"])
      expect(
        await rawHttp(port, `GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`),
        target,
      ).toBe("HTTP/1.1 400 Bad Request");
    const ok = await fetch(`http://127.0.0.1:${port}/api/nodes/n1`);
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { name: string }).name).toBe("n1");
  });
});

describe("ctl errors quoting a long write", () => {
  it("are cut short, so the answer fits the connection (the writer used to wait forever)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "statfs-ctl-"));
    await writeFile(join(dir, "statfs.conf"), "n1=127.0.0.1!1\n");
    const statfs = await startStatfs({
      configFile: join(dir, "statfs.conf"),
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      ctlWithoutAuth: true,
      pollOverrides: POLL,
    });
    try {
      const fs = await mount(statfs.addresses[0]!, { uname: "someone", msize: 8216, timeoutMs: 20_000 });
      try {
        const ctl = await fs.open("ctl", OWRITE);
        const err = await ctl.write(0, `${"x".repeat(8000)}\n`).catch((e: Error) => e);
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(/^unknown command "x{100,}…$/);
        expect((err as Error).message.length).toBeLessThanOrEqual(200);
        await ctl.clunk();
      } finally {
        await fs.close();
      }
    } finally {
      await statfs.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
