// The fork helpers (src/fork-helper.ts, src/native-helper.ts): real programs started through a real
// perl process and through the C program built here.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount } from "@clustermatic/ninep/client";
import { OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, afterEach, describe, expect, it, onTestFinished } from "vitest";
import { ForkHelper, type HelperChild, type HelperSpawn, signalStarted } from "../src/fork-helper.js";
import { startXcpufs } from "../src/index.js";
import { isRuntimeLog } from "../src/inherited-fds.js";
import { nativeForkHelper } from "../src/native-helper.js";
import { noexecIn, onNoexecMount } from "../src/noexec.js";
import {
  cmd,
  listeningOn,
  liveWithMarker,
  login,
  openJob,
  PKG,
  readAll,
  rsaKey,
  run,
  STARTERS,
  stopChild,
  until,
  untilExecuted,
  xcpufsArgs,
} from "./helpers.js";

const perl = ForkHelper.start();
const native = (await nativeForkHelper()).path;
const isRoot = process.getuid?.() === 0;
const work = mkdtempSync(join(tmpdir(), "xcpufs-forkhelper-"));
const helpers: ForkHelper[] = [];
afterEach(() => {
  for (const h of helpers.splice(0)) h.close();
});
afterAll(() => {
  perl?.close();
  rmSync(work, { recursive: true, force: true });
});

/** The helpers these tests run: the perl script, and the C program where it can be built. */
const KINDS = [
  ...(perl ? [{ kind: "perl", native: undefined }] : []),
  ...(native ? [{ kind: "native", native }] : []),
] as const;

/** Everything a program wrote and how it ended. */
async function outcome(c: HelperChild) {
  const read = (s: NodeJS.ReadableStream) =>
    new Promise<string>((resolve) => {
      let text = "";
      s.on("data", (d) => (text += d));
      s.on("end", () => resolve(text));
      s.on("close", () => resolve(text));
      // read to the end already, by nobody (the test waited on purpose)
      if ((s as NodeJS.ReadableStream & { destroyed?: boolean }).destroyed) resolve(text);
    });
  const [stdout, stderr, [code, signal]] = await Promise.all([
    read(c.stdout),
    read(c.stderr),
    new Promise<[number | null, string | null]>((r) => c.onExit((a, b) => r([a, b]))),
  ]);
  return { stdout, stderr, code, signal };
}

/**
 * Starts `req` with these environment entries exactly as they travel to the helper.
 * ForkHelper.spawn sends each as NAME=value; an entry without "=" (which the helper must drop) can
 * only be sent through its framing, reached here past the class's privacy.
 */
function spawnWithEntries(h: ForkHelper, req: HelperSpawn, entries: string[]): Promise<HelperChild> {
  const inner = h as unknown as {
    nextId: number;
    pending: Map<string, { req: HelperSpawn; resolve(c: HelperChild): void; reject(e: Error): void }>;
    send(fields: string[]): void;
  };
  const id = String(inner.nextId++);
  const fields = ["S", id, "", "", "", req.cwd, "", req.file, req.argv0, String(req.args.length)];
  return new Promise((resolve, reject) => {
    inner.pending.set(id, { req, resolve, reject });
    inner.send([...fields, ...req.args, ...entries]);
  });
}

/** Lines of a /proc/PID/status text whose names match `names`. */
const statusLines = (status: string, names: RegExp) => status.split("\n").filter((l) => names.test(l));

describe.each(KINDS)("fork helper ($kind)", ({ kind, native }) => {
  function helper(): ForkHelper {
    const h = ForkHelper.start(undefined, { native })!;
    expect(h.kind).toBe(kind);
    helpers.push(h);
    return h;
  }

  it("starts a program with exactly the given argv, argv0, environment and directory", async () => {
    const h = helper();
    const c = await h.spawn({
      file: "/bin/sh",
      argv0: "my-sh",
      args: [
        "-c",
        'tr "\\0" "\\n" < /proc/$$/cmdline; printf "%s\\n" "$A" "$(pwd)" $(env | wc -l); echo err >&2; exit 7',
        "one two",
      ],
      cwd: work,
      env: { A: "a b=c", PATH: "/usr/bin:/bin" },
    });
    // sh adds PWD (and perhaps SHLVL, _) to what it was given: at most a few more than 2.
    const r = await outcome(c);
    const [zero, dashC, , one, a, pwd, count] = r.stdout.trim().split("\n");
    expect([zero, dashC, one, a, pwd]).toEqual(["my-sh", "-c", "one two", "a b=c", work]);
    expect(Number(count)).toBeLessThanOrEqual(5);
    expect(r).toMatchObject({ stderr: "err\n", code: 7, signal: null });
  });

  it("feeds standard input and closes it", async () => {
    const c = await helper().spawn({ file: "/bin/cat", argv0: "cat", args: [], cwd: "/", env: {} });
    c.stdin!.end("through the pipe\n");
    expect(await outcome(c)).toMatchObject({ stdout: "through the pipe\n", code: 0 });
  });

  it("reports the exit of a program that ended before anyone listened", async () => {
    const h = helper();
    const c = await h.spawn({ file: "/bin/true", argv0: "true", args: [], cwd: "/", env: {} });
    await new Promise((r) => setTimeout(r, 300));
    expect(await outcome(c)).toMatchObject({ code: 0, signal: null });
  });

  it("reports a signal by name", async () => {
    const c = await helper().spawn({ file: "/bin/sleep", argv0: "sleep", args: ["30"], cwd: "/", env: {} });
    process.kill(c.pid, "SIGTERM");
    expect(await outcome(c)).toMatchObject({ code: null, signal: "SIGTERM" });
  });

  it("puts each program in a process group and session of its own", async () => {
    const c = await helper().spawn({ file: "/bin/sleep", argv0: "sleep", args: ["30"], cwd: "/", env: {} });
    // The start is reported at the fork; the program makes its session before it executes.
    await untilExecuted(c.pid, "sleep");
    const stat = readFileSync(`/proc/${c.pid}/stat`, "utf8");
    const [pgrp, session] = stat
      .slice(stat.lastIndexOf(")") + 2)
      .split(" ")
      .slice(2, 4)
      .map(Number);
    expect([pgrp, session]).toEqual([c.pid, c.pid]);
    process.kill(-c.pid, "SIGKILL");
    expect(await outcome(c)).toMatchObject({ signal: "SIGKILL" });
  });

  it("reports what cannot run as spawn() failures are reported: the errno as status, a line on stderr", async () => {
    const h = helper();
    const notExec = join(work, "plain");
    writeFileSync(notExec, "data");
    chmodSync(notExec, 0o644);
    const denied = await outcome(
      await h.spawn({ file: notExec, argv0: "plain", args: [], cwd: "/", env: {} }),
    );
    expect(denied).toEqual({
      stdout: "",
      stderr: `${notExec}: Permission denied\n`,
      code: 13,
      signal: null,
    });
    const noDir = await outcome(
      await h.spawn({ file: "/bin/true", argv0: "true", args: [], cwd: join(work, "missing"), env: {} }),
    );
    expect(noDir).toMatchObject({ stderr: "/bin/true: No such file or directory\n", code: 2 });
    // and it carries on
    const ok = await h.spawn({ file: "/bin/echo", argv0: "echo", args: ["ok"], cwd: "/", env: {} });
    expect((await outcome(ok)).stdout).toBe("ok\n");
  });

  it.skipIf(!isRoot)("switches to the given uid, gid and supplementary groups", async () => {
    const c = await helper().spawn({
      file: "/bin/sh",
      argv0: "sh",
      args: ["-c", "id -u; id -g; id -G"],
      cwd: "/",
      env: { PATH: "/usr/bin:/bin" },
      uid: 4321,
      gid: 4322,
      groups: [4323, 4324],
    });
    const lines = (await outcome(c)).stdout.trim().split("\n");
    expect(lines[0]).toBe("4321");
    expect(lines[1]).toBe("4322");
    expect(lines[2]!.split(" ").map(Number).sort()).toEqual([4322, 4323, 4324]);
  });

  it.skipIf(!isRoot)("drops every supplementary group when none are given", async () => {
    const c = await helper().spawn({
      file: "/usr/bin/id",
      argv0: "id",
      args: ["-G"],
      cwd: "/",
      env: {},
      uid: 4321,
      gid: 4322,
    });
    expect((await outcome(c)).stdout.trim()).toBe("4322");
  });

  it.skipIf(!isRoot)(
    "enters a named directory with the program's rights, else stays in the first",
    async () => {
      const h = helper();
      const closed = mkdtempSync(join(tmpdir(), "xcpufs-closed-"));
      chmodSync(closed, 0o700);
      try {
        const asUser = { uid: 4321, gid: 4321, env: {}, args: [], argv0: "pwd", file: "/bin/pwd" };
        const refused = await h.spawn({ ...asUser, cwd: "/tmp", userCwd: closed });
        expect((await outcome(refused)).stdout).toBe("/tmp\n");
        const open = await h.spawn({ ...asUser, cwd: "/tmp", userCwd: "/usr" });
        expect((await outcome(open)).stdout).toBe("/usr\n");
        const asRoot = await h.spawn({
          file: "/bin/pwd",
          argv0: "pwd",
          args: [],
          env: {},
          cwd: "/tmp",
          userCwd: closed,
        });
        expect((await outcome(asRoot)).stdout).toBe(`${closed}\n`);
      } finally {
        rmSync(closed, { recursive: true, force: true });
      }
    },
  );

  it("when the helper dies, ends the programs it started, reports them killed, and refuses more", async () => {
    const h = helper();
    const c = await h.spawn({ file: "/bin/sleep", argv0: "sleep", args: ["30"], cwd: "/", env: {} });
    const helperPid = Number(readFileSync(`/proc/${c.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
    process.kill(helperPid, "SIGKILL");
    expect(await outcome(c)).toMatchObject({ signal: "SIGKILL" });
    expect(h.alive).toBe(false);
    await expect(h.spawn({ file: "/bin/true", argv0: "true", args: [], cwd: "/", env: {} })).rejects.toThrow(
      /fork helper/,
    );
  });

  it("starts many programs at once, each whole, while others end around the starts", async () => {
    const h = helper();
    const results = await Promise.all(
      Array.from({ length: 60 }, async (_, i) =>
        outcome(await h.spawn({ file: "/bin/echo", argv0: "echo", args: [`n${i}`], cwd: "/", env: {} })),
      ),
    );
    for (const [i, r] of results.entries())
      expect(r).toMatchObject({ stdout: `n${i}\n`, code: 0, signal: null });
  });

  // Perl runs its SIGCHLD handler between two of its own steps: a signal that arrived just before
  // the helper's select() was only seen at the next request, and with nothing else going on a
  // job's wait never returned (about once in 1,500 starts one after another here). The helper
  // looks for ended programs while any run; shown here with SIGCHLD not listened to at all.
  it("finds every ended program even when no SIGCHLD wakes it", async () => {
    const h = ForkHelper.start(undefined, { childSignals: false, native })!;
    helpers.push(h);
    const start = (file: string, ...args: string[]) =>
      h.spawn({ file, argv0: file, args, cwd: "/", env: {} });
    const ends = (c: HelperChild) => {
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([
        new Promise<[number | null, string | null]>((r) => c.onExit((code, sig) => r([code, sig]))),
        new Promise<string>((r) => {
          // An end the helper misses is never reported: the bound need only be far above the
          // delays of a busy machine.
          timer = setTimeout(() => r(`pid ${c.pid} not reported ended within 20 s`), 20_000);
        }),
      ]).finally(() => clearTimeout(timer));
    };
    for (let i = 0; i < 5; i++) expect(await ends(await start("/bin/true"))).toEqual([0, null]);
    const [a, b] = [await start("/bin/sleep", "0.3"), await start("/bin/sh", "-c", "exit 3")];
    expect(await Promise.all([ends(a), ends(b)])).toEqual([
      [0, null],
      [3, null],
    ]);
  }, 60_000);

  // What follows pins, for both helpers alike, what a program sees of how it was started: the C
  // helper must do what the perl one does (and, where it can tell, what Node's spawn() does).

  it("gives the program exactly the environment entries given; a name given twice keeps its last value", async () => {
    const h = helper();
    const env = { file: "/usr/bin/env", argv0: "env", args: [], cwd: "/", env: {} };
    const raw = await outcome(
      await spawnWithEntries(h, env, ["B=1", "NOEQ", "=x", "A=first", "", "C=", "A=last", "D=e=f", "B=2 3"]),
    );
    expect(raw).toMatchObject({ stderr: "", code: 0, signal: null });
    expect(raw.stdout.split("\n").filter(Boolean).sort()).toEqual(["A=last", "B=2 3", "C=", "D=e=f"]);
    // through ForkHelper.spawn: a name with "=" in it is cut there, an empty name dropped
    const viaSpawn = await h.spawn({ ...env, env: { A: "1", "A=x": "2", "": "none", E: "é" } });
    viaSpawn.stdout.setEncoding("utf8");
    expect((await outcome(viaSpawn)).stdout.split("\n").filter(Boolean).sort()).toEqual(["A=x=2", "E=é"]);
  });

  it("looks a bare program name up in the PATH of the given environment, else in /bin:/usr/bin", async () => {
    const h = helper();
    const bin = join(work, `bin-${kind}`);
    const denied = join(work, `denied-${kind}`);
    mkdirSync(bin);
    mkdirSync(denied);
    writeFileSync(join(bin, "xcpufs-probe"), '#!/bin/sh\necho probe "$0" "$@"\n');
    chmodSync(join(bin, "xcpufs-probe"), 0o755);
    writeFileSync(join(denied, "xcpufs-probe"), "#!/bin/sh\necho not me\n");
    chmodSync(join(denied, "xcpufs-probe"), 0o644);
    const start = async (file: string, env: Record<string, string>) =>
      outcome(await h.spawn({ file, argv0: file, args: file === "env" ? [] : ["a"], cwd: "/", env }));
    // the helper's own PATH (/usr/bin:/bin) does not have it; one not executable is passed over
    expect(await start("xcpufs-probe", { PATH: `/no-such-dir:${denied}:${bin}` })).toEqual({
      stdout: `probe ${bin}/xcpufs-probe a\n`,
      stderr: "",
      code: 0,
      signal: null,
    });
    expect(await start("xcpufs-probe", { PATH: denied })).toEqual({
      stdout: "",
      stderr: "xcpufs-probe: Permission denied\n",
      code: 13,
      signal: null,
    });
    expect(await start("xcpufs-probe", { PATH: "/usr/bin:/bin" })).toEqual({
      stdout: "",
      stderr: "xcpufs-probe: No such file or directory\n",
      code: 2,
      signal: null,
    });
    // no PATH: the C library's default, /bin:/usr/bin
    expect(await start("env", { X: "1" })).toMatchObject({ stdout: "X=1\n", code: 0 });
    expect(await start("xcpufs-probe", {})).toEqual({
      stdout: "",
      stderr: "xcpufs-probe: No such file or directory\n",
      code: 2,
      signal: null,
    });
  });

  it("runs an executable text file without #! through /bin/sh, as execvp does", async () => {
    const file = join(work, `no-magic-${kind}`);
    writeFileSync(file, 'echo "sh runs $0 with $# arguments: $*"\n');
    chmodSync(file, 0o755);
    const r = await outcome(
      await helper().spawn({ file, argv0: "custom", args: ["a", "b c"], cwd: "/", env: {} }),
    );
    expect(r).toEqual({
      stdout: `sh runs ${file} with 2 arguments: a b c\n`,
      stderr: "",
      code: 0,
      signal: null,
    });
  });

  it("names the missing #! interpreter of a script it cannot start", async () => {
    const h = helper();
    for (const [name, head] of [
      ["plain", "#!/x/y\n"],
      ["spaced", "#! /x/y -e\necho\n"],
      ["unended", "#!/x/y"],
    ] as const) {
      const file = join(work, `missing-interpreter-${name}-${kind}`);
      writeFileSync(file, head);
      chmodSync(file, 0o755);
      expect(await outcome(await h.spawn({ file, argv0: name, args: [], cwd: "/", env: {} }))).toEqual({
        stdout: "",
        stderr: `${file}: No such file or directory (interpreter /x/y not found)\n`,
        code: 2,
        signal: null,
      });
    }
  });

  it.skipIf(!isRoot)(
    "says so when a program cannot start because its file system is mounted noexec",
    async () => {
      const h = helper();
      const dir = join(work, `noexec-${kind}`);
      mkdirSync(dir);
      execFileSync("mount", ["-t", "tmpfs", "-o", "noexec,size=4m", "tmpfs", dir]);
      try {
        const file = join(dir, "true");
        copyFileSync("/bin/true", file);
        chmodSync(file, 0o755);
        expect(await outcome(await h.spawn({ file, argv0: "true", args: [], cwd: "/", env: {} }))).toEqual({
          stdout: "",
          stderr: `${file}: Permission denied (on a file system mounted noexec)\n`,
          code: 13,
          signal: null,
        });
      } finally {
        execFileSync("umount", [dir]);
      }
      // An EACCES for another reason (no execute bit) says nothing more.
      const plain = join(work, `not-executable-${kind}`);
      writeFileSync(plain, "#!/bin/sh\n");
      chmodSync(plain, 0o644);
      const r = await outcome(
        await h.spawn({ file: plain, argv0: "x", args: [], cwd: "/", env: {}, uid: 4321, gid: 4321 }),
      );
      expect(r).toMatchObject({ stderr: `${plain}: Permission denied\n`, code: 13 });
    },
  );

  it("passes empty arguments, spaces, newlines and non-ASCII text unchanged, argv0 apart from file", async () => {
    const args = [
      "",
      "a b",
      " lead and trail ",
      "line\nbreak",
      "tab\there",
      "grüße 日本 🙂",
      "",
      "$HOME *",
      "",
    ];
    const script = "cat /proc/$$/cmdline; exit 0";
    const c = await helper().spawn({
      file: "/bin/sh",
      argv0: "not sh ✓",
      args: ["-c", script, ...args],
      cwd: "/",
      env: {},
    });
    c.stdout.setEncoding("utf8");
    expect(await outcome(c)).toEqual({
      stdout: ["not sh ✓", "-c", script, ...args].map((a) => `${a}\0`).join(""),
      stderr: "",
      code: 0,
      signal: null,
    });
  });

  it("passes a large argument list whole; an argument longer than the kernel takes fails with E2BIG", async () => {
    const h = helper();
    const sh = (script: string, args: string[]) =>
      h.spawn({ file: "/bin/sh", argv0: "sh", args: ["-c", script, "sh", ...args], cwd: "/", env: {} });
    const many = Array.from({ length: 10_000 }, (_, i) => `arg ${i}`);
    expect(await outcome(await sh('echo "$#"; printf "%s\\n" "$@"', many))).toEqual({
      stdout: `10000\n${many.join("\n")}\n`,
      stderr: "",
      code: 0,
      signal: null,
    });
    // Linux takes at most 128 KiB (with its NUL) in one argument: 512 KiB in four is the most
    const quarter = (n: number) =>
      Array.from(
        { length: 128 * 1024 - 1 },
        (_, i) => "abcdefghijklmnopqrstuvwxyz0123456789"[(i + n) % 36],
      ).join("");
    const quarters = [0, 1, 2, 3].map(quarter);
    expect(await outcome(await sh('printf "%s|" "$@"', quarters))).toEqual({
      stdout: `${quarters.join("|")}|`,
      stderr: "",
      code: 0,
      signal: null,
    });
    // as spawn() throws E2BIG for it
    expect(await outcome(await sh("exit 0", ["x".repeat(512 * 1024)]))).toEqual({
      stdout: "",
      stderr: "/bin/sh: Argument list too long\n",
      code: 7,
      signal: null,
    });
  });

  it.skipIf(!isRoot)("gives the program exactly the uid, gid and group list asked for", async () => {
    const h = helper();
    const ids = async (who: Pick<HelperSpawn, "uid" | "gid" | "groups">) => {
      const r = await outcome(
        await h.spawn({
          file: "/bin/cat",
          argv0: "cat",
          args: ["/proc/self/status"],
          cwd: "/",
          env: {},
          ...who,
        }),
      );
      expect(r).toMatchObject({ stderr: "", code: 0 });
      return statusLines(r.stdout, /^(Uid|Gid|Groups):/).map((l) => l.split(/\s+/).filter(Boolean).join(" "));
    };
    expect(await ids({ uid: 4321, gid: 4322, groups: [4325, 4323, 4324] })).toEqual([
      "Uid: 4321 4321 4321 4321",
      "Gid: 4322 4322 4322 4322",
      "Groups: 4322 4323 4324 4325",
    ]);
    // none given: the gid alone
    expect(await ids({ uid: 4321, gid: 4322, groups: [] })).toEqual([
      "Uid: 4321 4321 4321 4321",
      "Gid: 4322 4322 4322 4322",
      "Groups: 4322",
    ]);
    // no gid: the uid's number; the gid among the groups: there twice
    expect(await ids({ uid: 4321 })).toEqual([
      "Uid: 4321 4321 4321 4321",
      "Gid: 4321 4321 4321 4321",
      "Groups: 4321",
    ]);
    expect((await ids({ uid: 4321, gid: 4322, groups: [4323, 4322] }))[2]).toBe("Groups: 4322 4322 4323");
    // no uid: ours, groups and all
    const own = statusLines(readFileSync("/proc/self/status", "latin1"), /^(Uid|Gid|Groups):/);
    expect(await ids({})).toEqual(own.map((l) => l.split(/\s+/).filter(Boolean).join(" ")));
  });

  it("stays in the first directory when the one the user named does not exist", async () => {
    const c = await helper().spawn({
      file: "/bin/pwd",
      argv0: "pwd",
      args: [],
      cwd: "/tmp",
      userCwd: join(work, "no-such-dir"),
      env: {},
    });
    expect(await outcome(c)).toEqual({ stdout: "/tmp\n", stderr: "", code: 0, signal: null });
  });

  it("fails a program whose directory is missing or no directory before anything else", async () => {
    const h = helper();
    const notDir = join(work, `not-a-dir-${kind}`);
    writeFileSync(notDir, "");
    const start = async (file: string, cwd: string) =>
      outcome(await h.spawn({ file, argv0: "p", args: [], cwd, env: {}, ...(isRoot ? { uid: 4321 } : {}) }));
    expect(await start("/bin/true", join(work, "missing"))).toEqual({
      stdout: "",
      stderr: "/bin/true: No such file or directory\n",
      code: 2,
      signal: null,
    });
    expect(await start("/no/such/program", notDir)).toEqual({
      stdout: "",
      stderr: "/no/such/program: Not a directory\n",
      code: 20,
      signal: null,
    });
  });

  it("gives each program only descriptors 0, 1 and 2, however many others run", async () => {
    const h = helper();
    const sleep = () => h.spawn({ file: "/bin/sleep", argv0: "sleep", args: ["30"], cwd: "/", env: {} });
    const ls = () => h.spawn({ file: "/bin/ls", argv0: "ls", args: ["/proc/self/fd"], cwd: "/", env: {} });
    // one started among the others (the helper may still hold their pipes), one after them all
    const started = await Promise.all(Array.from({ length: 21 }, (_, i) => (i === 10 ? ls() : sleep())));
    const [among] = started.splice(10, 1);
    const sleepers = started;
    try {
      // 3: the directory ls reads
      expect(await outcome(among!)).toEqual({ stdout: "0\n1\n2\n3\n", stderr: "", code: 0, signal: null });
      expect(await outcome(await ls())).toEqual({
        stdout: "0\n1\n2\n3\n",
        stderr: "",
        code: 0,
        signal: null,
      });
      for (const s of sleepers) {
        // the kernel names the process after the program once it has closed the others' descriptors
        await until(() => readFileSync(`/proc/${s.pid}/comm`, "latin1") === "sleep\n");
        expect(readdirSync(`/proc/${s.pid}/fd`).map(Number).sort()).toEqual([0, 1, 2]);
      }
    } finally {
      for (const s of sleepers) signalStarted(s.pid);
    }
    for (const s of sleepers) expect(await outcome(s)).toMatchObject({ signal: "SIGKILL" });
  });

  it("starts a program with no signal blocked, ignored or pending, as spawn() does", async () => {
    const signals = /^(SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt):/;
    const r = await outcome(
      await helper().spawn({
        file: "/bin/cat",
        argv0: "cat",
        args: ["/proc/self/status"],
        cwd: "/",
        env: {},
      }),
    );
    const lines = statusLines(r.stdout, signals);
    expect(lines).toEqual(
      ["SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"].map((n) => `${n}:\t0000000000000000`),
    );
    const bySpawn = spawnSync("/bin/cat", ["/proc/self/status"], { encoding: "latin1" }).stdout;
    expect(lines).toEqual(statusLines(bySpawn, signals));
  });

  it("refuses an argument with a NUL byte", async () => {
    await expect(
      helper().spawn({ file: "/bin/echo", argv0: "echo", args: ["a\0b"], cwd: "/", env: {} }),
    ).rejects.toThrow(/NUL/);
  });

  it("answers a release once its own pipe ends are closed: then a write to a closed stdout is SIGPIPE", async () => {
    // The helper holds released pipes 300 ms first: the window in which the program's stdout
    // still had a reader after xcpufs closed its own end.
    process.env.XCPUFS_FORK_HELPER_RELEASE_DELAY_MS = "300";
    let h: ForkHelper;
    try {
      h = helper();
    } finally {
      delete process.env.XCPUFS_FORK_HELPER_RELEASE_DELAY_MS;
    }
    const dir = mkdtempSync(join(work, "release-"));
    const c = await h.spawn({
      file: "/bin/sh",
      argv0: "sh",
      args: ["-c", "while [ ! -e go ]; do sleep 0.02; done; echo x; echo survived >&2"],
      cwd: dir,
      env: { PATH: "/usr/bin:/bin" },
    });
    const t0 = Date.now();
    c.stdout.destroy();
    await c.released;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    writeFileSync(join(dir, "go"), "");
    expect(await outcome(c)).toMatchObject({ signal: "SIGPIPE", stderr: "" });
  });
});

/** A connection to a `--no-auth` node as the user running the tests. */
const mountAnon = (address: string) =>
  mount(address, { uname: "tester", n_uname: process.getuid?.() ?? 0, authenticate: async () => {} });

describe.skipIf(!perl)("xcpufs starts programs", () => {
  for (const { label, opts } of STARTERS) {
    it(`answers close stdout only when the program has no reader left: its next write is SIGPIPE (${label})`, async () => {
      // The fork helpers hold released pipe ends 400 ms before closing them (XCPUFS_FORK_HELPER_
      // RELEASE_DELAY_MS): a close answered before the helper let go let the write through.
      process.env.XCPUFS_FORK_HELPER_RELEASE_DELAY_MS = "400";
      const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: work, ...opts }).finally(() => {
        delete process.env.XCPUFS_FORK_HELPER_RELEASE_DELAY_MS;
      });
      const fs = await mountAnon(node.address);
      try {
        const job = await openJob(fs);
        await fs.writeFile(
          `${job.sid}/argv`,
          "sh -c 'while [ ! -e go ]; do sleep 0.02; done; echo x; echo survived >&2'",
        );
        await job.ctl.write(0, "exec /bin/sh\nclose stdout\n");
        await (await fs.create(`${job.sid}/fs/go`, 0o644, OWRITE)).clunk();
        const [status, err] = await Promise.all([readAll(job.wait), readAll(job.stderr)]);
        // spawn() gives socket pairs: a write may fail with ECONNRESET instead (README)
        if (opts.noForkHelper) expect(["13", String(1 << 8)]).toContain(status.toString());
        else expect([status.toString(), err.toString()]).toEqual(["13", ""]);
        await job.close();
      } finally {
        await fs.close();
        await node.close();
      }
    });
  }

  for (const { label, opts } of STARTERS.filter((st) => !st.opts.noForkHelper)) {
    it(`answers exec once the helper has the request; the pid (ctl) and signal wait for the start (${label})`, async () => {
      const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: work, ...opts });
      const fs = await mountAnon(node.address);
      let helper = 0;
      try {
        // The helper: the parent of a program it started (not found by name: after pids wrap
        // around, this file's own helper may have the higher pid).
        const warm = await run(fs, "/bin/sh", "sh -c 'echo $PPID'");
        helper = Number(warm.out.trim());
        expect(readFileSync(`/proc/${helper}/comm`, "utf8")).toBe("xcpufs-fork-hel\n");
        expect(helper).toBeGreaterThan(0);
        // A stopped helper starts nothing: exec is answered all the same.
        process.kill(helper, "SIGSTOP");
        const job = await openJob(fs);
        await fs.writeFile(`${job.sid}/argv`, "sleep 30");
        await job.ctl.write(0, "exec /bin/sleep\n");
        let pid: number | undefined;
        const pidRead = fs.readFile(`${job.sid}/ctl`).then((b) => (pid = Number(b.toString())));
        const signalled = job.ctl.write(0, "signal 15\n");
        await new Promise((r) => setTimeout(r, 300));
        expect(pid).toBeUndefined(); // no pid yet: the read waits for the start
        process.kill(helper, "SIGCONT");
        await pidRead;
        expect(pid).toBeGreaterThan(0);
        await signalled;
        // The signal reached the program it was meant for (not lost for want of a pid).
        expect((await readAll(job.wait)).toString()).toBe("15");
        await job.close();
      } finally {
        if (helper > 0) process.kill(helper, "SIGCONT");
        await fs.close();
        await node.close();
      }
    });
  }

  /** The parent of a program run on a fresh node started with `opts`: its pid and executable. */
  async function parentOfProgram(
    opts: (typeof STARTERS)[number]["opts"],
  ): Promise<{ pid: number; exe: string }> {
    const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: work, ...opts });
    const fs = await mountAnon(node.address);
    try {
      const r = await run(fs, "/bin/sh", "sh -c 'echo $PPID'");
      expect(r.status).toBe("0");
      const pid = Number(r.out.trim());
      return { pid, exe: readlinkSync(`/proc/${pid}/exe`) };
    } finally {
      await fs.close();
      await node.close();
    }
  }

  for (const { label, opts } of STARTERS) {
    it(`reports an argument longer than the kernel takes as a failed execve: E2BIG, status 7 (${label})`, async () => {
      const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: work, ...opts });
      const fs = await mountAnon(node.address);
      try {
        const job = await openJob(fs);
        await fs.writeFile(`${job.sid}/argv`, `sh ${"x".repeat(200 * 1024)}`);
        await job.ctl.write(0, "exec /bin/sh\n");
        const [err, status] = await Promise.all([readAll(job.stderr), readAll(job.wait)]);
        expect([err.toString(), status.toString()]).toEqual([
          "/bin/sh: Argument list too long\n",
          String(7 << 8),
        ]);
        await job.close();
        // The session is done with, not broken: the next job on the node runs.
        expect(await run(fs, "/bin/echo", "echo next")).toMatchObject({ out: "next\n", status: "0" });
      } finally {
        await fs.close();
        await node.close();
      }
    });

    it.skipIf(!isRoot)(
      `in the directory \`exec\` names only when the user may enter it (${label})`,
      async () => {
        const closed = mkdtempSync(join(tmpdir(), "xcpufs-closed-"));
        const admin = rsaKey();
        const node = await startXcpufs({
          port: 0,
          listen: "127.0.0.1",
          tmpdir: work,
          adminKey: admin.line,
          ...opts,
        });
        const a = await login(node.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
        await cmd(
          a,
          "ctl",
          "group-add crew 4300\ngroup-add extra 4302\nuser-add ann 4301 crew ''\nuser-add bo 4303 crew ''\nuser-add-group bo extra\n",
        );
        await a.close();
        // ann: no supplementary groups (spawn() switches identity itself); bo: one (setpriv does)
        for (const [uname, uid] of [
          ["ann", 4301],
          ["bo", 4303],
        ] as const) {
          const fs = await login(node.address, { uname, uid });
          try {
            const inClosed = await run(
              fs,
              `/bin/sh ${closed}`,
              'my-sh -c \'pwd; cat /proc/$$/cmdline | tr "\\0" " "\'',
              {
                keep: true,
              },
            );
            const sessionDir = node.xcpufs.sessions.get(Number(inClosed.sid))?.dir;
            expect(inClosed.out).toBe(`${sessionDir}\nmy-sh -c pwd; cat /proc/$$/cmdline | tr "\\0" " " `);
            await inClosed.job.close();
            expect((await run(fs, "/bin/pwd /usr", "pwd")).out).toBe("/usr\n");
            // a program that cannot start after the directory change is reported as before
            const missing = await run(fs, "/no-such-dir-for-xcpufs/prog /usr", "prog");
            expect(missing.err).toBe("/no-such-dir-for-xcpufs/prog: No such file or directory\n");
            expect(missing.status).toBe("512");
          } finally {
            await fs.close();
          }
        }
        await node.close();
        rmSync(closed, { recursive: true, force: true });
      },
    );
  }

  // The start is answered at the fork, before the program has made its process group: a `kill`
  // or wipe right then must still end it (it is signalled itself until its group exists).
  it("ends a program killed or wiped right after its exec", async () => {
    const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: work });
    const fs = await mountAnon(node.address);
    try {
      for (let i = 0; i < 20; i++) {
        const job = await openJob(fs);
        await cmd(fs, `${job.sid}/argv`, "sleep 30");
        await job.ctl.write(0, "exec /bin/sleep\nkill\n");
        expect((await readAll(job.wait)).toString()).toBe("9");
        await job.close();
      }
      const marker = `xcpufs-wipe-at-start-${process.pid}`;
      for (let i = 0; i < 20; i++) {
        const job = await openJob(fs);
        await cmd(fs, `${job.sid}/argv`, `sh -c 'sleep 30; :' ${marker}`);
        await job.ctl.write(0, "exec /bin/sh\nwipe\n");
        await job.close();
      }
      await until(() => liveWithMarker(marker).length === 0);
    } finally {
      await fs.close();
      await node.close();
    }
  });

  // With the original, an exec was done before the next request was read: a `signal` or `kill`
  // written on another fid while the exec is under way is for the program it starts.
  it("delivers a signal or kill written on another fid while the exec is under way", async () => {
    for (const { opts } of STARTERS) {
      const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: work, ...opts });
      const fs = await mountAnon(node.address);
      try {
        for (const [i, command, status] of [
          [0, "signal 15", "15"],
          [1, "kill", "9"],
          [2, "signal 15", "15"],
          [3, "kill", "9"],
        ] as const) {
          const job = await openJob(fs);
          await cmd(fs, `${job.sid}/argv`, "sleep 30");
          const other = await fs.open(`${job.sid}/ctl`, OWRITE);
          await Promise.all([job.ctl.write(0, "exec /bin/sleep\n"), other.write(0, `${command}\n`)]);
          expect([i, (await readAll(job.wait)).toString()]).toEqual([i, status]);
          await other.clunk();
          await job.close();
        }
      } finally {
        await fs.close();
        await node.close();
      }
    }
  });

  it.each(STARTERS.map((s) => [s.label, s.args]))(
    "gives a program only its standard input, output and error, whatever the server inherited (%s)",
    async (_, extra) => {
      // The server inherits fd 40 without close-on-exec, as a careless launcher leaves one (Node
      // marks low ones close-on-exec itself, not this one).
      const server = [process.execPath, ...xcpufsArgs("-p", "0", "--no-auth", "-t", work, ...extra)];
      const child = spawn("/bin/bash", ["-c", 'exec 40</dev/null; exec "$0" "$@"', ...server], {
        cwd: PKG,
        stdio: ["ignore", "pipe", "pipe"],
      });
      onTestFinished(() => stopChild(child));
      try {
        const fs = await mountAnon((await listeningOn(child)).address);
        const r = await run(fs, "/bin/ls", "ls /proc/self/fd");
        await fs.close();
        // 3: the listing ls itself has open
        expect(r.out.split("\n").filter(Boolean).map(Number)).toEqual([0, 1, 2, 3]);
      } finally {
        await stopChild(child);
      }
    },
  );

  it.each(STARTERS.map((s) => [s.label, s.args]))(
    "runs programs while V8 writes a profiler map (node --perf-basic-prof) (%s)",
    async (label, extra) => {
      // V8 opens /tmp/perf-PID.map without close-on-exec before any script runs. Closed as an
      // inherited descriptor, its number went to the fork helper's request pipe, V8's map lines
      // went to the helper, and every exec hung.
      // --perf-basic-prof also starts V8's code log (isolate-…-v8.log in the working directory,
      // the package here): one file in the test's directory instead.
      const log = ["--no-logfile-per-isolate", `--logfile=${join(work, "v8.log")}`];
      const server = [
        "--perf-basic-prof",
        ...log,
        ...xcpufsArgs("-p", "0", "--no-auth", "-t", work, ...extra),
      ];
      const child = spawn(process.execPath, server, { cwd: PKG, stdio: ["ignore", "pipe", "pipe"] });
      // Also when the test times out (a hung server never reaches the finally below).
      onTestFinished(() => stopChild(child));
      const map = `/tmp/perf-${child.pid}.map`;
      try {
        const fs = await mountAnon((await listeningOn(child)).address);
        for (let i = 0; i < 3; i++) {
          expect(await run(fs, "/bin/echo", `echo job ${i}`)).toMatchObject({
            out: `job ${i}\n`,
            status: "0",
          });
        }
        const r = await run(fs, "/bin/ls", "ls -l /proc/self/fd");
        await fs.close();
        // Through a fork helper a program gets nothing else; spawn() passes the map on.
        if (!label.startsWith("spawn")) expect(r.out).not.toContain("perf-");
        expect(readFileSync(map, "latin1")).toMatch(/ JS:/);
      } finally {
        await stopChild(child);
        rmSync(map, { force: true });
      }
    },
  );

  it.skipIf(!isRoot).each(STARTERS.map((s) => [s.label, s.args]))(
    "warns of a session directory on a noexec mount, and says why a program there cannot start (%s)",
    async (label, extra) => {
      const dir = join(work, `noexec-tmpdir-${label.replace(/\W/g, "-")}`);
      mkdirSync(dir);
      execFileSync("mount", ["-t", "tmpfs", "-o", "noexec,size=4m", "tmpfs", dir]);
      const server = xcpufsArgs(
        "-p",
        "0",
        "--no-auth",
        "-t",
        dir,
        "--state-dir",
        join(work, "state"),
        ...extra,
      );
      const child = spawn(process.execPath, server, { cwd: PKG, stdio: ["ignore", "pipe", "pipe"] });
      // Also when the test times out (a hung server never reaches the finally below).
      onTestFinished(() => stopChild(child));
      try {
        const started = await listeningOn(child);
        expect(started.stderr()).toMatch(
          /the session directory is on a file system mounted noexec: programs copied into sessions cannot run/,
        );
        const fs = await mountAnon(started.address);
        const job = await openJob(fs);
        const f = await fs.create(`${job.sid}/fs/hello.sh`, 0o755, OWRITE);
        await f.write(0, "#!/bin/sh\necho copied\n");
        await f.clunk();
        await job.ctl.write(0, "exec hello.sh\n");
        const [err, status] = await Promise.all([readAll(job.stderr), readAll(job.wait)]);
        expect(err.toString()).toMatch(
          /\/hello\.sh: Permission denied \(on a file system mounted noexec\)\n$/,
        );
        expect(status.toString()).toBe(String(13 << 8)); // the raw status, as wait(2) gives it
        await job.close();
        await fs.close();
      } finally {
        await stopChild(child);
        execFileSync("umount", [dir]);
      }
    },
  );

  it("reads noexec from the mount table: the longest mount point, the latest mount on it", () => {
    const table = [
      "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw",
      "30 22 0:40 / /tmp rw,nosuid,nodev,noexec - tmpfs tmpfs rw",
      "31 30 0:41 / /tmp/jobs rw - tmpfs tmpfs rw",
      "32 22 0:42 / /srv/with\\040space rw,noexec - tmpfs tmpfs rw",
      "33 22 0:43 / /opt rw,noexec - tmpfs tmpfs rw",
      "34 33 0:44 / /opt rw - tmpfs tmpfs rw",
      "",
    ].join("\n");
    expect(noexecIn(table, "/")).toBe(false);
    expect(noexecIn(table, "/etc/passwd")).toBe(false);
    expect(noexecIn(table, "/tmp")).toBe(true);
    expect(noexecIn(table, "/tmp/x/y")).toBe(true);
    expect(noexecIn(table, "/tmpfoo/x")).toBe(false);
    expect(noexecIn(table, "/tmp/jobs/1/prog")).toBe(false);
    expect(noexecIn(table, "/srv/with space/prog")).toBe(true);
    expect(noexecIn(table, "/srv/with\\040space/prog")).toBe(false);
    expect(noexecIn(table, "/opt/prog")).toBe(false);
    expect(onNoexecMount(join(work, "no-such-file"))).toBe(false);
  });

  it("keeps V8's profiler logs open, by their names or --logfile", () => {
    expect(isRuntimeLog("/tmp/perf-4242.map", 4242, [])).toBe(true);
    expect(isRuntimeLog("/srv/jit-4242.dump", 4242, [])).toBe(true);
    expect(isRuntimeLog("/srv/isolate-0x55d1c3a0-4242-v8.log", 4242, [])).toBe(true);
    expect(isRuntimeLog("/tmp/perf-42421.map", 4242, [])).toBe(false);
    expect(isRuntimeLog("/var/log/launcher.log", 4242, [])).toBe(false);
    expect(isRuntimeLog("pipe:[4242]", 4242, [])).toBe(false);
    expect(isRuntimeLog(join(process.cwd(), "v8.log"), 4242, ["--prof", "--logfile=v8.log"])).toBe(true);
    expect(isRuntimeLog("/var/log/prof.log", 4242, ["--logfile", "/var/log/prof.log"])).toBe(true);
  });

  it.skipIf(!native)(
    "through the native fork helper by default, the perl one or spawn() when told so",
    async () => {
      const nativeParent = await parentOfProgram({});
      expect(nativeParent.pid).not.toBe(process.pid);
      expect(nativeParent.exe).toBe(native);
      const perlParent = await parentOfProgram({ forkHelper: "perl" });
      expect(perlParent.pid).not.toBe(process.pid);
      expect(perlParent.exe).toMatch(/\/perl[\d.]*$/);
      expect((await parentOfProgram({ noForkHelper: true })).pid).toBe(process.pid);
    },
  );
});
