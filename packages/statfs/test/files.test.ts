// The pid file and log file of a statfs process: written once it serves, a second instance
// refused, a stale pid file replaced, messages (a rejected reload) in the log file, and the log
// file reopened on SIGHUP after logrotate renamed it.

import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PidFileTakenError, writePidFile } from "../src/cli/daemon-files.js";
import { main as statfs } from "../src/cli/statfs.js";
import { main as xstat } from "../src/cli/xstat.js";
import { makeAdminKey, startNode } from "./helpers/cluster.js";
import { deadPort, waitFor } from "./helpers/net.js";
import { daemonOf, processScope } from "./helpers/proc.js";

/** The first line of each message in the log file: an ISO 8601 UTC time, then the stderr line. */
const STAMPED = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z statfs: /;

const read = (file: string) => (existsSync(file) ? readFileSync(file, "utf8") : "");
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The status column of the table served at `addr`, or undefined while it cannot be read. */
async function statuses(addr: string): Promise<string[] | undefined> {
  let out = "";
  const code = await xstat(["-a", addr, "-t", "10s"], {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: () => {} },
    handleSignals: false,
  });
  return code === 0
    ? out
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split("\t")[3]!)
    : undefined;
}

describe("statfs --pid-file and --log-file", () => {
  let dir: string;
  // Everything the tests start (background processes they found too), stopped whatever an
  // assertion did.
  const scope = processScope();
  const { daemons, spawnStatfs } = scope;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-files-"));
  });
  afterAll(async () => {
    await scope.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const config = async (name: string) => {
    const conf = join(dir, name);
    await writeFile(conf, `n1=127.0.0.1!${await deadPort()}\n`);
    return conf;
  };
  /** A foreground statfs of `conf` (no authentication, no HTTP) keeping `pidFile`, and `more`. */
  const withPidFile = (conf: string, pidFile: string, ...more: string[]) => [
    "-f",
    "-c",
    conf,
    "--no-auth",
    "-l",
    "tcp!127.0.0.1!0",
    "--http",
    "off",
    "--pid-file",
    pidFile,
    ...more,
  ];

  it("in the background: pid file of the serving process, second instance refused, log file with reloads, reopened on SIGHUP, pid file removed at SIGTERM", async () => {
    const conf = await config("bg.conf");
    const pidFile = join(dir, "statfs.pid");
    const logFile = join(dir, "statfs.log");
    const common = ["--no-auth", "--http", "off", "--pid-file", "statfs.pid", "--log-file", "statfs.log"];
    // Relative names, taken from where it was started (the background process works from /).
    const starter = spawnStatfs(["-c", conf, "-l", "tcp!127.0.0.1!0", ...common], { cwd: dir });
    const status = await starter.exited;
    const pid = daemonOf(conf);
    if (pid) daemons.add(pid);
    expect(status, starter.stderr()).toBe(0);
    expect(pid).toBeDefined();
    try {
      // Written before the starter returned, by the process that serves.
      expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
      expect(statSync(pidFile).mode & 0o777).toBe(0o644);
      // The start-up messages go to the starter's stderr and to the log file.
      expect(starter.stderr()).toMatch(/^statfs: serving 1 node on /m);
      const first = read(logFile);
      expect(first).toMatch(/serving 1 node on /);
      expect(first.split("\n")[0]).toMatch(STAMPED);

      // A second statfs with the same pid file is refused before it goes into the background.
      const conf2 = await config("second.conf");
      const second = spawnStatfs(["-c", conf2, "-l", "tcp!127.0.0.1!0", ...common], { cwd: dir });
      const secondStatus = await second.exited;
      const leaked = daemonOf(conf2);
      if (leaked) daemons.add(leaked);
      expect(secondStatus).toBe(1);
      expect(second.stderr()).toBe(
        `statfs: already running as pid ${pid} (pid file ${pidFile}); stop it first or use another --pid-file\n`,
      );
      expect(leaked).toBeUndefined();
      expect(readFileSync(pidFile, "utf8")).toBe(`${pid}\n`);
      // So is one in the foreground.
      const third = spawnStatfs(["-f", "-c", conf2, "-l", "tcp!127.0.0.1!0", ...common], { cwd: dir });
      expect(await third.exited).toBe(1);
      expect(third.stderr()).toMatch(/^statfs: already running as pid \d+ /);

      // A broken configuration on SIGHUP: reported in the log file, the old one stays.
      await writeFile(conf, `n1=127.0.0.1!1\nthis is wrong\n`);
      process.kill(pid!, "SIGHUP");
      await waitFor(() => read(logFile).includes("reload rejected"), 60_000, "the rejected reload logged");
      const rejected = read(logFile).split("\n");
      const at = rejected.findIndex((l) => l.includes("reload rejected"));
      expect(rejected[at]).toMatch(STAMPED);
      expect(rejected[at]).toMatch(/ statfs: reload rejected, keeping the running configuration:$/);
      expect(rejected[at + 1]).toContain(`${conf}:2: invalid format: this is wrong`);

      // logrotate: the file renamed, then SIGHUP; the messages go to a new file of that name.
      await rename(logFile, `${logFile}.1`);
      await writeFile(conf, `n1=127.0.0.1!1\nn2=127.0.0.1!2\n`);
      process.kill(pid!, "SIGHUP");
      await waitFor(() => read(logFile).includes("reloaded"), 60_000, "the reload logged in a new file");
      expect(read(logFile)).toMatch(new RegExp(`^${STAMPED.source.slice(1)}reloaded ${conf}: 2 nodes\n$`));
      expect(read(`${logFile}.1`)).not.toContain("reloaded");
    } finally {
      process.kill(pid!, "SIGTERM");
    }
    await waitFor(() => !alive(pid!), 30_000, "the background statfs stopped");
    expect(existsSync(pidFile)).toBe(false);
    expect(read(logFile)).toMatch(/ statfs: stopped\n$/);
  }, 180_000);

  it("replaces a stale pid file (a dead pid, another program, no pid) in the foreground, and logs only to the log file", async () => {
    const conf = await config("stale.conf");
    const pidFile = join(dir, "stale.pid");
    const logFile = join(dir, "stale.log");
    const dead = Number(execFileSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).trim());
    const cases: [string, string][] = [
      [`${dead}\n`, `pid ${dead} is not running`],
      [`${process.pid}\n`, `pid ${process.pid} is not a statfs`],
      ["garbage\n", "it holds no pid"],
    ];
    for (const [content, reason] of cases) {
      await writeFile(pidFile, content);
      await rm(logFile, { force: true });
      const s = spawnStatfs(withPidFile(conf, pidFile, "--log-file", logFile));
      try {
        await waitFor(() => read(pidFile) === `${s.proc.pid}\n`, 60_000, "the pid file written");
        await waitFor(() => read(logFile).includes("serving"), 60_000, "the start logged");
        const lines = read(logFile).split("\n");
        expect(lines[0]).toMatch(STAMPED);
        expect(lines[0]!.replace(STAMPED, "")).toBe(`replacing stale pid file ${pidFile}: ${reason}`);
        expect(lines[1]).toMatch(STAMPED);
      } finally {
        s.kill("SIGTERM");
      }
      expect(await s.exited).toBe(0);
      expect(s.stderr()).toBe("");
      expect(existsSync(pidFile)).toBe(false);
      expect(read(logFile)).toMatch(/ statfs: stopped\n$/);
    }
  }, 180_000);

  it("leaves a pid file alone at exit that another instance has taken over", async () => {
    const conf = await config("taken.conf");
    const pidFile = join(dir, "taken.pid");
    const t = spawnStatfs(withPidFile(conf, pidFile));
    try {
      await waitFor(() => read(pidFile) === `${t.proc.pid}\n`, 60_000, "the pid file written");
      await writeFile(pidFile, "4194304\n");
    } finally {
      t.kill("SIGTERM");
    }
    expect(await t.exited).toBe(0);
    expect(read(pidFile)).toBe("4194304\n");
  }, 120_000);

  it("does not take a pid file over from a statfs that wrote it after this one started", async () => {
    // Two statfs started at once both find no pid file; the one that writes it second must not
    // replace the first's (which would run on, named by no pid file). The second's write is
    // called here as the second instance would, once the first has written its pid.
    const conf = await config("race.conf");
    const pidFile = join(dir, "race.pid");
    const first = spawnStatfs(withPidFile(conf, pidFile));
    try {
      await waitFor(() => read(pidFile) === `${first.proc.pid}\n`, 60_000, "the first's pid file");
      expect(() => writePidFile(pidFile, process.pid)).toThrow(
        new PidFileTakenError(pidFile, first.proc.pid!),
      );
      expect(read(pidFile)).toBe(`${first.proc.pid}\n`);
      // Nothing of this call's is left. (The first's own temporary name may still be there for a
      // moment: it links that to race.pid before it removes it.)
      expect(readdirSync(dir).filter((f) => f.startsWith(`race.pid.${process.pid}.`))).toEqual([]);
    } finally {
      first.kill("SIGTERM");
    }
    expect(await first.exited).toBe(0);
    expect(existsSync(pidFile)).toBe(false);
    // A stale file (a dead pid) is still replaced.
    await writeFile(pidFile, `${execFileSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).trim()}\n`);
    writePidFile(pidFile, process.pid);
    expect(read(pidFile)).toBe(`${process.pid}\n`);
  }, 120_000);

  it("listens for SIGTERM before its pid file names it (a stop sent as soon as the file appears is handled)", async () => {
    // The moment the pid file appears is its link into place: a SIGTERM sent on the file's word
    // must find statfs listening then (it used to die at once, the file left behind, when the
    // signal came before the handlers, which were installed after the file was written).
    const conf = await config("listening.conf");
    const pidFile = join(dir, "listening.pid");
    const fsm = createRequire(import.meta.url)("node:fs") as Record<string, unknown>;
    const realLink = fsm.linkSync as (a: string, b: string) => void;
    const before = process.listenerCount("SIGTERM");
    let atLink: number | undefined;
    fsm.linkSync = (a: string, b: string) => {
      if (b === pidFile) atLink = process.listenerCount("SIGTERM");
      return realLink(a, b);
    };
    syncBuiltinESMExports();
    const ac = new AbortController();
    let code: Promise<number> | undefined;
    try {
      code = statfs(withPidFile(conf, pidFile), {
        stdout: { write: () => {} },
        stderr: { write: () => {} },
        signal: ac.signal,
      });
      await waitFor(() => read(pidFile) === `${process.pid}\n`, 60_000, "the pid file written");
    } finally {
      fsm.linkSync = realLink;
      syncBuiltinESMExports();
      ac.abort();
    }
    expect(await code).toBe(0);
    expect(atLink).toBe(before + 1);
    expect(existsSync(pidFile)).toBe(false);
    expect(process.listenerCount("SIGTERM")).toBe(before);
  }, 120_000);

  it("listens for SIGTERM from before it says it serves (a stop sent on that line is handled)", async () => {
    // `serving …` is written by the start itself, before the command went on to install its
    // handlers: a SIGTERM sent as soon as that line appeared killed the process outright.
    const conf = await config("serving.conf");
    const pidFile = join(dir, "serving.pid");
    const before = process.listenerCount("SIGTERM");
    let atServing: number | undefined;
    const ac = new AbortController();
    const code = statfs(withPidFile(conf, pidFile), {
      stdout: { write: () => {} },
      stderr: {
        write: (t: string) => {
          if (t.includes("serving")) atServing ??= process.listenerCount("SIGTERM");
        },
      },
      signal: ac.signal,
    });
    try {
      await waitFor(() => read(pidFile) === `${process.pid}\n`, 60_000, "the pid file written");
    } finally {
      ac.abort();
    }
    expect(await code).toBe(0);
    expect(atServing).toBe(before + 1);
    expect(process.listenerCount("SIGTERM")).toBe(before);
  }, 120_000);

  it("a log file or pid file it cannot write: exit 1 with the reason, nothing left running", async () => {
    const conf = await config("unwritable.conf");
    const missing = join(dir, "no-such-dir");
    const base = ["-c", conf, "--no-auth", "-l", "tcp!127.0.0.1!0", "--http", "off"];
    // The log file is opened before going into the background.
    const log = spawnStatfs([...base, "--log-file", join(missing, "statfs.log")]);
    expect(await log.exited).toBe(1);
    expect(log.stderr()).toBe(
      `statfs: cannot open log file ${join(missing, "statfs.log")}: ENOENT: no such file or directory, open '${join(missing, "statfs.log")}'\n`,
    );
    // The pid file is written by the background process once it serves: it reports the failure
    // to the starter and stops.
    const pid = spawnStatfs([...base, "--pid-file", join(missing, "statfs.pid")]);
    const status = await pid.exited;
    const leaked = daemonOf(conf);
    if (leaked) daemons.add(leaked);
    expect(status).toBe(1);
    expect(pid.stderr()).toMatch(/^statfs: serving 1 node on /m);
    expect(pid.stderr()).toMatch(
      new RegExp(`^statfs: cannot write pid file ${missing}/statfs\\.pid: ENOENT.*; stopped$`, "m"),
    );
    expect(leaked).toBeUndefined();

    const empty = spawnStatfs([...base, "--pid-file="]);
    expect(await empty.exited).toBe(2);
    expect(empty.stderr()).toBe("statfs: --pid-file: expected a file name (see statfs --help)\n");
  }, 120_000);

  it("in the background, logs a node going down and coming back", async () => {
    const keys = await makeAdminKey(dir);
    // On a port the kernel hands to no one else: the node comes back on it.
    const first = await startNode(keys, dir, await deadPort());
    scope.keep(first);
    const conf = join(dir, "outage.conf");
    await writeFile(conf, `n1=tcp!127.0.0.1!${first.port}\n`);
    const logFile = join(dir, "outage.log");
    const addr = `tcp!127.0.0.1!${await deadPort()}`;
    // Timeouts of seconds: the node answers from this process, which a loaded machine may slow.
    const args = ["-c", conf, "-a", keys.privateFile, "-l", addr, "--http", "off", "-i", "5s"];
    const starter = spawnStatfs([
      ...args,
      "--connect-timeout",
      "5s",
      "--read-timeout",
      "5s",
      "--log-file",
      logFile,
    ]);
    const status = await starter.exited;
    const pid = daemonOf(conf);
    if (pid) daemons.add(pid);
    expect(status, starter.stderr()).toBe(0);
    try {
      await waitFor(async () => (await statuses(addr))?.[0] === "up", 60_000, "n1 up");
      // The first status of a node is not a change.
      expect(read(logFile)).not.toContain("node n1");
      await first.close();
      await waitFor(() => read(logFile).includes("node n1 is down: "), 60_000, "n1 down logged");
      expect(read(logFile)).toMatch(/ statfs: node n1 is down: down\([a-z_]+\)/);
      // Back on the same port.
      scope.keep(await startNode(keys, dir, first.port));
      await waitFor(() => read(logFile).includes("node n1 is up"), 60_000, "n1 up logged");
      const lines = read(logFile)
        .split("\n")
        .filter((l) => l.includes("node n1"));
      expect(lines.slice(0, 2).map((l) => l.replace(STAMPED, "").replace(/: down.*/, ""))).toEqual([
        "node n1 is down",
        "node n1 is up",
      ]);
    } finally {
      process.kill(pid!, "SIGTERM");
    }
    await waitFor(() => !alive(pid!), 30_000, "the background statfs stopped");
  }, 180_000);
});
