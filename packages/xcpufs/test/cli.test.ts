// The xcpufs command run as a child process: SIGTERM cleanup, bounded memory, restarts.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { type Fsys, mount } from "@clustermatic/ninep/client";
import { OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, describe, expect, it } from "vitest";
import { main } from "../src/cli.js";
import {
  cmd,
  listeningOn,
  liveInGroup,
  login,
  openJob,
  PKG,
  readAll,
  rsaKey,
  sessionDirsIn,
  until,
  write,
  xcpufsArgs,
} from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "xcpufs-cli-"));
const children: ChildProcess[] = [];
const onExit: (() => void)[] = [];
afterAll(() => {
  for (const f of onExit) f();
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

/** Start the CLI from source; resolves with its address once it listens. */
async function startCli(
  args: string[],
): Promise<{ child: ChildProcess; address: string; stderr: () => string }> {
  const child = spawn(process.execPath, xcpufsArgs("-p", "0", ...args), {
    cwd: PKG,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  return { child, ...(await listeningOn(child)) };
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once("exit", (code) => r(code)));
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0);
}

const uid = process.getuid?.() ?? 0;
const anon = (address: string) => mount(address, { uname: "t", n_uname: uid, authenticate: async () => {} });

describe("xcpufs command", () => {
  it("prints usage and rejects bad options", async () => {
    const c = spawn(process.execPath, xcpufsArgs("-p", "x"), { cwd: PKG });
    let err = "";
    c.stderr.on("data", (d) => {
      err += d;
    });
    expect(await exited(c)).toBe(2);
    expect(err).toContain("invalid port");
    const m = spawn(process.execPath, xcpufsArgs("-m", "100"), { cwd: PKG });
    let merr = "";
    m.stderr.on("data", (d) => {
      merr += d;
    });
    expect(await exited(m)).toBe(2);
    expect(merr).toContain("invalid msize");
    for (const flag of ["-t", "--state-dir"]) {
      const e = spawn(process.execPath, xcpufsArgs(flag, ""), { cwd: PKG });
      let eerr = "";
      e.stderr.on("data", (d) => {
        eerr += d;
      });
      expect(await exited(e)).toBe(2);
      expect(eerr).toBe(`xcpufs: ${flag} needs a directory name\n`);
    }
    // unknown or incomplete options: one line, in the words the other tools use
    for (const [argv, text] of [
      [["--bogus"], "xcpufs: unknown option --bogus (see xcpufs --help)\n"],
      [["-p"], "xcpufs: option -p/--port needs a value (see xcpufs --help)\n"],
    ] as const) {
      let out = "";
      let err = "";
      const code = await main([...argv], {
        stdout: {
          write: (t: string) => {
            out += t;
            return true;
          },
        },
        stderr: {
          write: (t: string) => {
            err += t;
            return true;
          },
        },
      } as never);
      expect([code, out, err], argv[0]).toEqual([2, "", text]);
    }
  }, 120_000);

  it("--version and -V print the package's version and exit 0", async () => {
    const { version } = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8"));
    const run = async (argv: string[]) => {
      let out = "";
      let err = "";
      const stdout = { write: (s: string) => (out += s) };
      const stderr = { write: (s: string) => (err += s) };
      return { code: await main(argv, { stdout, stderr }), out, err };
    };
    for (const flag of ["--version", "-V"])
      expect(await run([flag])).toEqual({ code: 0, out: `xcpufs ${version}\n`, err: "" });
    expect((await run(["--help"])).out).toContain("-V, --version");
  });

  it("--help names the keys -u reads and every default of --state-dir", async () => {
    let out = "";
    const io = { stdout: { write: (s: string) => (out += s) }, stderr: { write: (_s: string) => true } };
    expect(await main(["--help"], io)).toBe(0);
    const flat = out.replace(/\s+/g, " ");
    expect(flat).toContain("readable ~/.ssh/id_rsa.pub (else ~/.ssh/id_ed25519.pub)");
    expect(flat).toContain(
      "(default /var/lib/xcpufs as root, else $XDG_STATE_HOME/xcpufs, else ~/.local/state/xcpufs)",
    );
  });

  it("refuses at start a -t it could not make session directories in (exit 1, the reason)", async () => {
    const run = async (argv: string[]) => {
      let err = "";
      const stdout = { write: (_s: string) => true };
      const stderr = { write: (s: string) => (err += s) };
      return { code: await main(argv, { stdout, stderr }), err };
    };
    const file = join(tmp, "not-a-dir");
    writeFileSync(file, "");
    const missing = join(tmp, "missing", "dir");
    expect(await run(["--no-auth", "-p", "0", "-t", missing])).toEqual({
      code: 1,
      err: `Error: cannot make session directories in ${missing}: no such directory\n`,
    });
    expect(await run(["--no-auth", "-p", "0", "-t", file])).toEqual({
      code: 1,
      err: `Error: cannot make session directories in ${file}: not a directory\n`,
    });
  });

  it("--version to a standard output that cannot be written (/dev/full): one line and exit 1", () => {
    const full = openSync("/dev/full", "w");
    try {
      const r = spawnSync(process.execPath, xcpufsArgs("--version"), {
        stdio: ["ignore", full, "pipe"],
        encoding: "utf8",
        timeout: 20_000,
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(
        "xcpufs: cannot write standard output (ENOSPC: no space left on device, write)\n",
      );
    } finally {
      closeSync(full);
    }
  });

  it("takes a relative -t against its working directory and runs programs staged there", async () => {
    // Relative paths as an operator may type them, resolved against the directory xcpufs starts
    // in (the package directory here; node_modules keeps the scratch files out of the sources).
    const work = mkdtempSync(join(PKG, "node_modules", ".xcpufs-cli-rel-"));
    onExit.push(() => rmSync(work, { recursive: true, force: true }));
    mkdirSync(join(work, "sessions"));
    const rel = relative(PKG, work);
    const { child, address, stderr } = await startCli([
      "--no-auth",
      "-t",
      join(rel, "sessions"),
      "--state-dir",
      join(rel, "st"),
    ]);
    // as root, an unauthenticated server is everybody's root: said once at start
    if (process.getuid?.() === 0)
      await until(() =>
        stderr().includes("xcpufs: warning: --no-auth as root: any local user who can connect"),
      );
    const fs = await anon(address);
    const job = await openJob(fs);
    const f = await fs.create(`${job.sid}/fs/hello.sh`, 0o755, OWRITE);
    await f.write(0, "#!/bin/sh\necho staged $1\n");
    await f.clunk();
    await write(fs, `${job.sid}/argv`, "hello.sh arg");
    await job.ctl.write(0, "exec hello.sh\n");
    expect((await readAll(job.stdout)).toString()).toBe("staged arg\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    expect(sessionDirsIn(join(work, "sessions"))).toHaveLength(1);
    await job.close();
    await fs.close();
    child.kill("SIGTERM");
    expect(await exited(child)).toBe(0);
  }, 120_000);

  it.each(["SIGTERM", "SIGHUP"] as const)(
    "on %s wipes every session, leaves no orphan, exits 0",
    async (signal) => {
      const work = mkdtempSync(join(tmp, "term-"));
      const { child, address } = await startCli([
        "--no-auth",
        "-t",
        work,
        "--state-dir",
        join(work, "state"),
      ]);
      const marker = `term-${signal}-${process.pid}`;
      const fs = await anon(address);
      const groups: number[] = [];
      for (let i = 0; i < 3; i++) {
        const job = await openJob(fs);
        await write(fs, `${job.sid}/argv`, `sh -c 'sleep 300 & sleep 300 & wait' ${marker}`);
        await job.ctl.write(0, "type persistent\nexec /bin/sh\n");
        groups.push(Number((await fs.readFile(`${job.sid}/ctl`)).toString()));
      }
      // each session's shell and its two sleeps
      await until(() => groups.every((g) => liveInGroup(g).length === 3));
      // three session directories
      await until(() => sessionDirsIn(work).length === 3);
      child.kill(signal);
      expect(await exited(child)).toBe(0);
      await fs.close().catch(() => {});
      // the sleeps run in the sessions' process groups: all gone, and so are the directories
      await until(() => groups.every((g) => liveInGroup(g).length === 0), 30_000).catch(() => {});
      expect(groups.flatMap(liveInGroup)).toEqual([]);
      expect(sessionDirsIn(work)).toEqual([]);
    },
    120_000,
  );

  it("streams 256 MiB to a slow reader with bounded server memory", async () => {
    const work = mkdtempSync(join(tmp, "big-"));
    const { child, address } = await startCli(["--no-auth", "-t", work, "--state-dir", join(work, "state")]);
    const pid = child.pid as number;
    const fs: Fsys = await anon(address);
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "head -c 268435456 /dev/zero");
    await job.ctl.write(0, "exec /usr/bin/head\n");
    await new Promise((r) => setTimeout(r, 500)); // nobody reads: the program must block, not be buffered
    const start = rssKiB(pid);
    let max = start;
    let total = 0;
    let reads = 0;
    for (;;) {
      const b = await job.stdout.read(BigInt(total), 32768);
      if (b.length === 0) break;
      total += b.length;
      if (++reads % 512 === 0) {
        max = Math.max(max, rssKiB(pid));
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    expect(total).toBe(268435456);
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
    await fs.close();
    // 256 MiB went through; the server grew by far less than that
    expect(max - start).toBeLessThan(64 * 1024);
    child.kill("SIGTERM");
    expect(await exited(child)).toBe(0);
  }, 300_000);

  it("keeps the user pool across a restart", async () => {
    const work = mkdtempSync(join(tmp, "state-"));
    const admin = rsaKey();
    const keyFile = join(work, "admin_key.pub");
    writeFileSync(keyFile, `${admin.line}\n`);
    const args = [
      "--listen",
      "127.0.0.1",
      "-a",
      keyFile,
      "-s",
      "-t",
      work,
      "--state-dir",
      join(work, "state"),
    ];
    const a = await startCli(args);
    const fs = await login(a.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    await cmd(fs, "ctl", "group-add crew 700\nuser-add ann 701 crew ''\n");
    const pw = (await fs.readFile("pwent")).toString();
    await fs.close();
    a.child.kill("SIGTERM");
    expect(await exited(a.child)).toBe(0);
    expect(existsSync(join(work, "state", "users.json"))).toBe(true);
    const b = await startCli(args);
    const fs2 = await login(b.address, { uname: "ann", uid: 701 });
    const fs3 = await login(b.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    expect((await fs3.readFile("pwent")).toString()).toBe(pw);
    expect(pw).toContain("ann:701:700:crew\n");
    await fs2.close();
    await fs3.close();
    b.child.kill("SIGTERM");
    expect(await exited(b.child)).toBe(0);
  }, 120_000);
});
