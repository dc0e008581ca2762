// The statfs program as a process: start-up errors, SIGHUP reload (a broken file keeps the old
// configuration), and a restart that serves again and keeps admin holds.

import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, existsSync, lstatSync, openSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount } from "@clustermatic/ninep/client";
import { OREAD, OWRITE } from "@clustermatic/ninep/codec";
import type { XcpufsHandle } from "@clustermatic/xcpufs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signChallenge } from "../src/auth.js";
import { main as xstat } from "../src/cli/xstat.js";
import { type ParsedRow, parseTable } from "../src/table.js";
import { type AdminKeys, makeAdminKey, startNode } from "./helpers/cluster.js";
import { deadPort, waitFor } from "./helpers/net.js";
import { daemonOf, processScope } from "./helpers/proc.js";

async function table(addr: string): Promise<ParsedRow[] | undefined> {
  let out = "";
  const code = await xstat(["-a", addr, "-t", "10s"], {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: () => {} },
    handleSignals: false,
  });
  return code === 0 ? parseTable(out) : undefined;
}

describe("statfs process", () => {
  let dir: string;
  let keys: AdminKeys;
  const nodes: XcpufsHandle[] = [];
  // Everything the tests start (background processes they found too), stopped whatever an
  // assertion did.
  const scope = processScope();
  const { daemons, spawnStatfs } = scope;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-proc-"));
    keys = await makeAdminKey(dir);
    nodes.push(scope.keep(await startNode(keys, dir)), scope.keep(await startNode(keys, dir)));
  });
  afterAll(async () => {
    await scope.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses a broken configuration at start-up with file and line, and bad usage with 2", async () => {
    const conf = join(dir, "bad.conf");
    await writeFile(conf, "n1=127.0.0.1!1\nthis line is wrong\n");
    const bad = spawnStatfs(["-c", conf, "--no-auth", "-l", "tcp!127.0.0.1!0", "--http", "off"]);
    expect(await bad.exited).toBe(1);
    expect(bad.stderr()).toContain(`${conf}:2: invalid format: this line is wrong`);

    const usage = spawnStatfs(["--bogus"]);
    expect(await usage.exited).toBe(2);
    expect(usage.stderr()).toBe("statfs: unknown option --bogus (see statfs --help)\n");

    const nokey = spawnStatfs(["-c", conf, "-a", join(dir, "missing_key")]);
    expect(await nokey.exited).toBe(1);
    expect(nokey.stderr()).toMatch(/cannot read admin key .*missing_key: ENOENT/);
  }, 120_000);

  it("statfs and xstat with a standard output that cannot be written (/dev/full): one line and exit 1", () => {
    const full = openSync("/dev/full", "w");
    try {
      for (const name of ["statfs", "xstat"]) {
        const r = spawnSync(
          process.execPath,
          [
            "--conditions=@clustermatic/source",
            "--import",
            "tsx",
            join(import.meta.dirname, "..", "src", "bin", `${name}.ts`),
            "--help",
          ],
          { stdio: ["ignore", full, "pipe"], encoding: "utf8", timeout: 20_000 },
        );
        expect(r.status, name).toBe(1);
        expect(r.stderr).toBe(
          `${name}: cannot write standard output (ENOSPC: no space left on device, write)\n`,
        );
      }
    } finally {
      closeSync(full);
    }
  });

  it("goes into the background once it serves, as the original (its own session), unless -f", async () => {
    const port = await deadPort();
    const addr = `tcp!127.0.0.1!${port}`;
    const conf = join(dir, "background.conf");
    await writeFile(conf, `n1=127.0.0.1!${await deadPort()}\n`);
    const starter = spawnStatfs(["-c", conf, "--no-auth", "-l", addr, "--http", "off"]);
    const status = await starter.exited;
    const pid = daemonOf(conf);
    if (pid) daemons.add(pid);
    expect(status).toBe(0);
    expect(starter.stderr()).toMatch(/^statfs: serving 1 node on /m);
    expect(pid).toBeDefined();
    try {
      // A session of its own (setsid), out of the directory it was started in, and it answers.
      expect(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[3]).toBe(String(pid));
      expect(readlinkSync(`/proc/${pid}/cwd`)).toBe("/");
      expect((await table(addr))?.map((r) => r.name)).toEqual(["n1"]);
    } finally {
      process.kill(pid!, "SIGTERM");
    }
    await waitFor(() => daemonOf(conf) === undefined, 30_000, "the background statfs stopped");
    // A second one on an address in use: the failure comes back to the starter, status 1.
    const held = spawnStatfs(["-f", "-c", conf, "--no-auth", "-l", addr, "--http", "off"]);
    await held.waitStderr(/serving 1 node/, 60_000);
    const second = spawnStatfs(["-c", conf, "--no-auth", "-l", addr, "--http", "off"]);
    expect(await second.exited).toBe(1);
    expect(second.stderr()).toMatch(/^statfs: .*127\.0\.0\.1/m);
    held.kill("SIGTERM");
    expect(await held.exited).toBe(0);
  }, 120_000);

  it("in the background, a long refusal (every error of a large broken file) reaches the starter whole", async () => {
    const conf = join(dir, "large-bad.conf");
    const lines = Array.from({ length: 20_000 }, (_, i) => `this line ${i} is wrong ${"x".repeat(60)}\n`);
    await writeFile(conf, lines.join(""));
    const starter = spawnStatfs(["-c", conf, "--no-auth", "-l", "tcp!127.0.0.1!0", "--http", "off"]);
    // Its stderr read to the end (it may still be coming when the process has exited).
    const closed = new Promise((resolve) => starter.proc.once("close", resolve));
    expect(await starter.exited).toBe(1);
    await closed;
    expect(starter.stderr()).toMatch(/^statfs: configuration rejected:\n/);
    expect(starter.stderr()).toContain(`${conf}:20000: invalid format: this line 19999 is wrong`);
  }, 120_000);

  it("stopped before it serves (Ctrl-C, SIGTERM), the starter stops the background process too", async () => {
    const conf = join(dir, "interrupted.conf");
    await writeFile(conf, `n1=127.0.0.1!${await deadPort()}\n`);
    // A key file that is a fifo nobody writes: the background process waits in its start-up.
    const key = join(dir, "key-fifo");
    execFileSync("mkfifo", [key]);
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const starter = spawnStatfs(["-c", conf, "-a", key, "-l", "tcp!127.0.0.1!0", "--http", "off"]);
      const pid = (await waitFor(() => daemonOf(conf, true), 60_000, "the background process")) as number;
      daemons.add(pid);
      starter.kill(sig);
      expect(await starter.exited).toBe(1);
      expect(starter.stderr()).toBe(`statfs: stopped by ${sig} before serving\n`);
      await waitFor(() => daemonOf(conf, true) === undefined, 30_000, "the background process gone");
    }
  }, 120_000);

  it("in the background, a Unix socket named relative to where it was started is served and removed there", async () => {
    const conf = join(dir, "unix.conf");
    await writeFile(conf, `n1=127.0.0.1!${await deadPort()}\n`);
    const starter = spawnStatfs(["-c", conf, "--no-auth", "-l", "unix!statfs-rel.sock", "--http", "off"], {
      cwd: dir,
    });
    const status = await starter.exited;
    const pid = daemonOf(conf);
    if (pid) daemons.add(pid);
    expect(status, starter.stderr()).toBe(0);
    const sock = join(dir, "statfs-rel.sock");
    expect(starter.stderr()).toContain(`serving 1 node on unix!${sock}`);
    expect(lstatSync(sock).isSocket()).toBe(true);
    expect((await table(`unix!${sock}`))?.map((r) => r.name)).toEqual(["n1"]);
    process.kill(pid!, "SIGTERM");
    await waitFor(() => daemonOf(conf) === undefined, 30_000, "the background statfs stopped");
    expect(existsSync(sock)).toBe(false);
  }, 120_000);

  it("reloads on SIGHUP, keeps the old configuration on error, and keeps serving across a restart", async () => {
    const port = await deadPort();
    const addr = `tcp!127.0.0.1!${port}`;
    const conf = join(dir, "statfs.conf");
    const holds = join(dir, "holds.json");
    const two = `n1=tcp!127.0.0.1!${nodes[0]!.port}\nn2=tcp!127.0.0.1!${nodes[1]!.port}\n`;
    await writeFile(conf, two);
    const args = [
      "-f",
      "-c",
      conf,
      "-a",
      keys.privateFile,
      "-l",
      addr,
      "--http",
      "off",
      // The nodes answer from this process: timeouts of seconds, so that a busy machine does not
      // make them miss a poll (each node is polled at once when it is configured or statfs starts).
      "-i",
      "10s",
      "--connect-timeout",
      "5s",
      "--read-timeout",
      "5s",
      "--hold-file",
      holds,
    ];
    const s1 = spawnStatfs(args);
    await s1.waitStderr(/serving 2 nodes/, 60_000);
    await waitFor(async () => (await table(addr))?.every((r) => r.status === "up"), 30_000, "both nodes up");

    await writeFile(conf, `${two}oops\n`);
    s1.kill("SIGHUP");
    await s1.waitStderr(/reload rejected/, 60_000);
    expect(s1.stderr()).toContain(`${conf}:3: invalid format: oops`);
    expect((await table(addr))!.map((r) => [r.name, r.status])).toEqual([
      ["n1", "up"],
      ["n2", "up"],
    ]);
    // An emptied file does not drop the cluster.
    await writeFile(conf, "# being edited\n");
    s1.kill("SIGHUP");
    await s1.waitStderr(/names no node/, 60_000);
    expect(s1.stderr()).toContain(`${conf}: names no node; the 2 configured stay`);
    expect((await table(addr))!.map((r) => r.name)).toEqual(["n1", "n2"]);

    // A 9P client connected before the reload keeps its connection.
    const held = await mount(addr, { uname: "nobody" });
    const dead = await deadPort();
    await writeFile(conf, `${two}n3=127.0.0.1!${dead}\n`);
    s1.kill("SIGHUP");
    await s1.waitStderr(/reloaded .*: 3 nodes/, 60_000);
    await waitFor(
      async () => (await table(addr))?.[2]?.status === "down(connect_failed)",
      30_000,
      "n3 polled",
    );
    expect((await table(addr))!.map((r) => r.name)).toEqual(["n1", "n2", "n3"]);
    const f = await held.open("state", OREAD);
    expect(parseTable((await f.read(0, 8192)).toString()).map((r) => r.name)).toEqual(["n1", "n2", "n3"]);
    await f.clunk();
    await held.close();

    // An admin hold, then a restart: the new process serves the same address and the hold.
    const admin = await mount(addr, {
      uname: "xcpu-admin",
      authenticate: async (afid) => {
        await afid.write(signChallenge(await afid.read(16), keys.privateKey));
      },
    });
    const ctl = await admin.open("ctl", OWRITE);
    await ctl.write(0, "down n2 repair\n");
    await admin.close();
    expect((await table(addr))![1]!.status).toBe("down(repair)");

    s1.kill("SIGTERM");
    expect(await s1.exited).toBe(0);
    expect(await table(addr)).toBeUndefined();

    const s2 = spawnStatfs(args);
    await s2.waitStderr(/serving 3 nodes/, 60_000);
    await waitFor(async () => (await table(addr))?.[0]?.status === "up", 30_000, "n1 up after restart");
    const rows = (await table(addr))!;
    expect(rows.map((r) => [r.name, r.status])).toEqual([
      ["n1", "up"],
      ["n2", "down(repair)"],
      ["n3", "down(connect_failed)"],
    ]);
    s2.kill("SIGTERM");
    expect(await s2.exited).toBe(0);
  }, 180_000);
});
