// Files the server (root) opens for a user: the session's `exec` file, which lives in the session
// directory (the user's fs/, where the session's programs run as the user and can put a link), and
// the targets of `redirect`. Neither may hand the user a file they could not open themselves.

import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { OREAD, OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, describe, expect, it } from "vitest";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { cmd, decryptPasskey, login, openJob, readAll, rsaKey, until, write } from "./helpers.js";

const root = process.getuid?.() === 0;
if (!root) console.log("skipping the exec link tests: not root");
const admin = rsaKey();
const user = rsaKey();
const bob = rsaKey();
let h: XcpufsHandle | undefined;
let h2: XcpufsHandle | undefined;
const outside = mkdtempSync(join(tmpdir(), "xcpufs-secret-"));
/** The directory of a session of the first server (`h`). */
const sessionDir = (job: { sid: string }) => h!.xcpufs.sessions.get(Number(job.sid))?.dir as string;
/** A connection to the first server as the pool user "mal" (6201). */
const asMal = () => login(h!.address, { uname: "mal", uid: 6201, key: user.privateKey });
afterAll(async () => {
  await h?.close();
  await h2?.close();
  rmSync(outside, { recursive: true, force: true });
});

describe.skipIf(!root)("the exec file and symbolic links (server as root)", () => {
  it("exec is opened only as a regular file the owner may use, never through a link", async () => {
    const secret = join(outside, "secret");
    writeFileSync(secret, "root only\n");
    chmodSync(secret, 0o600);
    h = await startXcpufs({ port: 0, listen: "127.0.0.1", adminKey: admin.line });
    const a = await login(h.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    await cmd(a, "ctl", `group-add crew 6200\nuser-add mal 6201 crew '${user.line}'\n`);
    await a.close();
    const fs = await login(h.address, { uname: "mal", uid: 6201, key: user.privateKey });
    const job = await openJob(fs);
    const dir = sessionDir(job);
    // The session's own program (running as the user) puts the link in place.
    await write(fs, `${job.sid}/argv`, `sh -c 'ln -s ${secret} exec; echo ready; sleep 30'`);
    await job.ctl.write(0, "exec /bin/sh\n");
    expect((await job.stdout.read(0n, 100)).toString()).toBe("ready\n");
    expect(lstatSync(join(dir, "exec")).isSymbolicLink()).toBe(true);
    await expect(fs.open(`${job.sid}/exec`, OREAD)).rejects.toThrow();
    await expect(fs.open(`${job.sid}/exec`, OWRITE)).rejects.toThrow();
    expect(readFileSync(secret, "utf8")).toBe("root only\n");
    expect(statSync(secret).uid).toBe(0);
    await job.ctl.write(0, "kill\n");
    await job.close();

    // A file of someone else's at exec (here root's, as a hard link would be), and a FIFO: the
    // first is refused without being truncated, the second without waiting for a writer.
    const job2 = await openJob(fs);
    const dir2 = sessionDir(job2);
    writeFileSync(join(dir2, "exec"), "root's\n", { mode: 0o600 });
    await expect(fs.open(`${job2.sid}/exec`, OREAD)).rejects.toThrow(/permission denied/);
    await expect(fs.open(`${job2.sid}/exec`, OWRITE)).rejects.toThrow(/permission denied/);
    expect(readFileSync(join(dir2, "exec"), "utf8")).toBe("root's\n");
    rmSync(join(dir2, "exec"));
    execFileSync("mkfifo", [join(dir2, "exec")]);
    await expect(fs.open(`${job2.sid}/exec`, OREAD)).rejects.toThrow(/not a regular file/);
    await expect(fs.open(`${job2.sid}/exec`, OWRITE)).rejects.toThrow(/not a regular file/);
    await job2.close();

    // The legacy way still works: the owner writes exec, reads it back and runs it.
    const job3 = await openJob(fs);
    const dir3 = sessionDir(job3);
    const script = "#!/bin/sh\necho from exec\n";
    const w = await fs.open(`${job3.sid}/exec`, OWRITE);
    await w.write(0, script);
    await w.clunk();
    expect(statSync(join(dir3, "exec")).uid).toBe(6201);
    const r = await fs.open(`${job3.sid}/exec`, OREAD);
    expect((await r.read(0n, 100)).toString()).toBe(script);
    await r.clunk();
    await job3.ctl.write(0, "exec\n");
    expect((await job3.stdout.read(0n, 100)).toString()).toBe("from exec\n");
    await job3.close();

    // redirect: a file the user may not read or write is refused, one they may is taken
    const job4 = await openJob(fs);
    await expect(job4.ctl.write(0, `redirect stdin ${secret}\n`)).rejects.toThrow(/Permission denied/);
    await expect(job4.ctl.write(0, `redirect stdout ${secret}\n`)).rejects.toThrow(/Permission denied/);
    // a world-readable file in a directory the user cannot enter is refused too (the server
    // opens with root's rights, so every directory on the way is checked for the user)
    const priv = join(outside, "priv");
    mkdirSync(priv, { mode: 0o700 });
    writeFileSync(join(priv, "note"), "behind a closed door\n", { mode: 0o644 });
    await expect(job4.ctl.write(0, `redirect stdin ${join(priv, "note")}\n`)).rejects.toThrow(
      /note: Permission denied/,
    );
    // files the kernel checks against the opener, and devices other than the harmless ones
    for (const [f, why] of [
      ["/proc/self/maps", /under \/proc and \/sys cannot be redirected/],
      ["/proc/kallsyms", /under \/proc and \/sys cannot be redirected/],
      ["/sys/kernel/notes", /under \/proc and \/sys cannot be redirected/],
      ["/dev/kmsg", /of devices only \/dev\/null, zero, full, random and urandom/],
    ] as const) {
      await expect(job4.ctl.write(0, `redirect stdin ${f}\n`), f).rejects.toThrow(why);
    }
    await job4.ctl.write(0, "redirect stdin /dev/null\n");
    chmodSync(outside, 0o711);
    const theirs = join(outside, "theirs");
    writeFileSync(theirs, "");
    chownSync(theirs, 6201, 6200);
    await job4.ctl.write(0, `redirect stdout ${theirs}\n`);
    await write(fs, `${job4.sid}/argv`, "echo redirected");
    await job4.ctl.write(0, "exec /bin/echo\n");
    await (await fs.open(`${job4.sid}/wait`, OREAD)).read(0n, 100);
    expect(readFileSync(theirs, "utf8")).toBe("redirected\n");
    expect(readFileSync(secret, "utf8")).toBe("root only\n");
    await job4.close();
    await fs.close();
  });

  it("tree spawn copies only what lies in the session directory, never through a link out of it", async () => {
    const secret = join(outside, "secret");
    h2 = await startXcpufs({ port: 0, listen: "127.0.0.1", adminKey: admin.line });
    const a = await login(h2.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    await cmd(a, "ctl", `group-add crew 6200\nuser-add mal 6201 crew '${user.line}'\n`);
    await a.close();
    const fsA = await asMal();
    const fsB = await login(h2.address, { uname: "mal", uid: 6201, key: user.privateKey });
    const jobA = await openJob(fsA);
    const jobB = await openJob(fsB);
    // The program leaves links behind: out to a root-only file and directory, to itself, and in.
    await write(
      fsA,
      `${jobA.sid}/argv`,
      `sh -c 'echo mine > own.txt; ln -s ${secret} leak; ln -s ${outside} leakdir; ln -s . loop; ln -s own.txt alias'`,
    );
    await jobA.ctl.write(0, "exec /bin/sh\n");
    expect((await readAll(jobA.wait)).toString()).toBe("0");
    const pk = decryptPasskey(user.privateKey, await fsB.readFile("passkey"));
    await jobA.ctl.write(0, `clone 1 ${h2.address}/${jobB.sid}/${pk}\n`);
    const copied = (await fsB.readdir(`${jobB.sid}/fs`)).map((d) => d.name).sort();
    expect(copied).toEqual(["alias", "own.txt"]);
    expect((await fsB.readFile(`${jobB.sid}/fs/alias`)).toString()).toBe("mine\n");
    await jobA.close();
    await jobB.close();
    await fsA.close();
    await fsB.close();
  }, 60_000);

  it("a session directory cannot be renamed and replaced by a link by its own program", async () => {
    const fs = await asMal();
    const job = await openJob(fs);
    const dir = sessionDir(job);
    expect(statSync(dirname(dir)).uid).toBe(0);
    await write(
      fs,
      `${job.sid}/argv`,
      `sh -c 'cd /; mv "$XCPUPATH" "$XCPUPATH.moved" 2>/dev/null && ln -s ${outside} "$XCPUPATH"; echo $?'`,
    );
    await job.ctl.write(0, "exec /bin/sh\n");
    expect((await readAll(job.stdout)).toString()).not.toBe("0\n");
    const w = await fs.open(`${job.sid}/exec`, OWRITE);
    await w.clunk();
    expect(lstatSync(dir).isDirectory()).toBe(true);
    expect(readdirSync(outside).sort()).toEqual(["priv", "secret", "theirs"]);
    await job.close();
    await fs.close();
  });

  it("redirect cannot be raced: a program swapping a link and a file while redirect is written never gets a file its owner cannot open", async () => {
    const priv = join(outside, "race");
    mkdirSync(priv, { mode: 0o700 });
    writeFileSync(join(priv, "note"), "behind a closed door\n", { mode: 0o644 });
    const fs = await asMal();
    const swapper = await openJob(fs);
    // x: the user's own file, mode 000; l: a link to the file in a directory the user cannot enter
    await write(
      fs,
      `${swapper.sid}/argv`,
      `perl -e 'open(F, ">x"); close F; chmod 0, "x"; symlink "${join(priv, "note")}", "l"; print "ready\\n"; $| = 1; for (1 .. 3000000) { rename "x", "t"; rename "l", "x"; rename "t", "l"; }'`,
    );
    await swapper.ctl.write(0, "exec /usr/bin/perl\n");
    expect((await swapper.stdout.read(0n, 100)).toString()).toBe("ready\n");
    const target = join(sessionDir(swapper), "x");
    const job = await openJob(fs);
    let opened = 0;
    for (let i = 0; i < 300; i++) {
      if (
        await job.ctl.write(0, `redirect stdin ${target}\n`).then(
          () => true,
          () => false,
        )
      )
        opened++;
    }
    await swapper.ctl.write(0, "kill\n");
    await swapper.close();
    await job.close();
    await fs.close();
    expect(opened).toBe(0);
  }, 60_000);

  it("redirect and FIFOs: never a wait in the server; stdin from one refused, output to one with a reader", async () => {
    const fs = await asMal();
    const job = await openJob(fs);
    const dir = sessionDir(job);
    const fifo = join(dir, "ff");
    execFileSync("mkfifo", ["-m", "600", fifo]);
    chownSync(fifo, 6201, 6200);
    // more attempts than the server has I/O threads: an open waiting for the other end would
    // hold them all and stall every user's file operations
    for (let i = 0; i < 6; i++) {
      await expect(job.ctl.write(0, "redirect stdin ff\n")).rejects.toThrow(
        /ff: a FIFO cannot be stdin \(the program may open it itself\)/,
      );
      await expect(job.ctl.write(0, "redirect stdout ff\n")).rejects.toThrow(
        /ff: no process reads this FIFO/,
      );
    }
    const other = await openJob(fs);
    const note = await fs.create(`${other.sid}/fs/note`, 0o644, OWRITE);
    await note.write(0, "still served");
    await note.clunk();
    expect((await fs.readFile(`${other.sid}/fs/note`)).toString()).toBe("still served");
    // with a reader, output goes to the FIFO
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      await job.ctl.write(0, "redirect stdout ff\n");
      await write(fs, `${job.sid}/argv`, "echo through the fifo");
      await job.ctl.write(0, "exec /bin/echo\n");
      expect((await readAll(job.wait)).toString()).toBe("0");
      const buf = Buffer.alloc(100);
      expect(buf.subarray(0, readSync(reader, buf)).toString()).toBe("through the fifo\n");
    } finally {
      closeSync(reader);
    }
    await job.close();
    await other.close();
    await fs.close();
  }, 60_000);

  it("a session given to another user: the old owner's open fids are refused, only the old owner's files change hands, the new owner's limit holds", async () => {
    const other = bob;
    const a = await login(h!.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    await cmd(a, "ctl", `user-add bob 6203 crew '${other.line}'\n`);
    await a.close();
    const fs = await asMal();
    const job = await openJob(fs);
    const dir = sessionDir(job);
    // somebody else's file the user may write, hard-linked into the session by its program
    const shared = join(outside, "shared.txt");
    writeFileSync(shared, "not mal's\n", { mode: 0o666 });
    chmodSync(shared, 0o666);
    await write(fs, `${job.sid}/argv`, `sh -c 'ln ${shared} h && echo mine > own.txt'`);
    await job.ctl.write(0, "exec /bin/sh\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    const argv = await fs.open(`${job.sid}/argv`, OWRITE);
    const own = await fs.open(`${job.sid}/fs/own.txt`, OREAD);
    const fsDir = await fs.walk(`${job.sid}/fs`);
    const d = await fs.walk(job.sid);
    await d.wstat({ uid: "bob" });
    await d.clunk();
    expect(statSync(join(dir, "own.txt")).uid).toBe(6203);
    expect(statSync(dir).uid).toBe(6203);
    expect(statSync(shared).uid).toBe(0); // not taken over through the link
    expect(statSync(join(dir, "h")).uid).toBe(0);
    // fids opened or walked before the change no longer serve the old owner
    for (const [what, p] of [
      ["ctl", job.ctl.write(0, "signal KILL\n")],
      ["argv", argv.write(0, "sh -c 'echo planted'")],
      ["stdout", job.stdout.read(0, 100)],
      ["fs/own.txt", own.read(0n, 100)],
      ["walk in fs/", fsDir.walk("own.txt")],
    ] as const) {
      await expect(p, what).rejects.toThrow(/permission denied/);
    }
    // the new owner finds the session as it was left
    const fb = await login(h!.address, { uname: "bob", uid: 6203, key: other.privateKey });
    expect((await fb.readFile(`${job.sid}/fs/own.txt`)).toString()).toBe("mine\n");
    expect((await fb.readFile(`${job.sid}/argv`)).toString()).toContain("ln ");
    await Promise.all([argv, own, fsDir].map((f) => f.clunk().catch(() => {})));
    await job.close();
    await fb.close();
    await fs.close();
  });

  it("reads the old owner left waiting when a session is given fail; the output stays for the new owner", async () => {
    const a = await login(h!.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    const fs = await asMal();
    const job = await openJob(fs);
    const parked = [job.stdout.read(0n, 100), job.stdout.read(0n, 100), job.wait.read(0n, 100)];
    for (const p of parked) p.catch(() => {});
    const d = await a.walk(job.sid);
    await d.wstat({ uid: "bob" });
    await d.clunk();
    for (const p of parked) await expect(p).rejects.toThrow(/permission denied/);
    const fb = await login(h!.address, { uname: "bob", uid: 6203, key: bob.privateKey });
    const out = await fb.open(`${job.sid}/stdout`, OREAD);
    await write(fb, `${job.sid}/argv`, "echo for bob");
    await cmd(fb, `${job.sid}/ctl`, "exec /bin/echo\n");
    expect((await readAll(out)).toString()).toBe("for bob\n");
    await job.close();
    await fb.close();
    await fs.close();
    await a.close();
  });

  it("a session cannot be given to a user who already holds as many as the limit allows", async () => {
    const other = rsaKey();
    const h3 = await startXcpufs({
      port: 0,
      listen: "127.0.0.1",
      adminKey: admin.line,
      maxSessionsPerUser: 2,
    });
    try {
      const a = await login(h3.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
      await cmd(
        a,
        "ctl",
        `group-add crew 6200\nuser-add mal 6201 crew '${user.line}'\nuser-add bob 6203 crew '${other.line}'\n`,
      );
      await a.close();
      const fs = await login(h3.address, { uname: "mal", uid: 6201, key: user.privateKey });
      const fb = await login(h3.address, { uname: "bob", uid: 6203, key: other.privateKey });
      const jobs = [await openJob(fs), await openJob(fs)];
      const bobs = [await openJob(fb), await openJob(fb)];
      const d = await fs.walk(jobs[0]!.sid);
      await expect(d.wstat({ uid: "bob" })).rejects.toThrow(/too many sessions: bob holds 2/);
      await d.clunk();
      await bobs[0]!.close();
      await bobs[0]!.ctl.clunk().catch(() => {});
      await until(() => h3.xcpufs.sessions.size === 3);
      const d2 = await fs.walk(jobs[0]!.sid);
      await d2.wstat({ uid: "bob" });
      await d2.clunk();
      for (const j of [...jobs, ...bobs]) await j.close();
      await fs.close();
      await fb.close();
    } finally {
      await h3.close();
    }
  });

  it("the helper that sets supplementary groups runs as root without the session's loader variables", async () => {
    const a = await login(h!.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    await cmd(a, "ctl", "group-add extra 6202\nuser-add-group mal extra\n");
    await a.close();
    const fs = await asMal();
    const job = await openJob(fs);
    // A library of the helper's, broken, where the session's LD_LIBRARY_PATH points.
    const lib = await fs.create(`${job.sid}/fs/libcap-ng.so.0`, 0o755, OWRITE);
    await lib.write(0, "not a library");
    await lib.clunk();
    await write(fs, `${job.sid}/argv`, "sh -c 'id -G; echo \"$LD_LIBRARY_PATH\"'");
    await job.ctl.write(0, "exec /bin/sh\n");
    const dir = sessionDir(job);
    expect((await readAll(job.stdout)).toString()).toBe(`6200 6202\n${dir}\n`);
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
    await fs.close();
  });
});
