// What an original XCPU 1.2.3 client sees from the node, checked statement by statement against
// the behavioural specification (shared/spec/xcpu.md, sections 2-8, 11 and 12). Each test names
// the section it checks. Where our server deliberately differs (a fixed [BUG] or a hardening),
// the test pins our behaviour and says so.

import { join } from "node:path";
import { Client, type Fsys } from "@clustermatic/ninep/client";
import { DMDIR, ORCLOSE, ORDWR, OREAD, OTRUNC, OWRITE, QTDIR, QTFILE } from "@clustermatic/ninep/codec";
import type { RemoteError } from "@clustermatic/ninep/errors";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROCS_HEADER, startXcpufs, tokenize, type XcpufsHandle } from "../src/index.js";
import {
  adminAndAlice,
  cmd,
  decryptPasskey,
  login,
  openJob,
  readAll,
  rerror,
  rootCtlError,
  run,
  until,
  untilExecuted,
  write,
} from "./helpers.js";

const EPERM = 1;
const ENOENT = 2;
const EIO = 5;

const node = adminAndAlice("xcpufs-audit-");
const { admin, alice, adminLogin, aliceLogin, tmp } = node;
let h: XcpufsHandle;
let adm: Fsys;
let fs: Fsys;

beforeAll(async () => {
  ({ h, adm, fs } = await node.start({ PATH: "/usr/bin:/bin", MSG: "a b" }));
});
afterAll(() => node.stop({ h, adm, fs }));

describe("2 transport and dialect", () => {
  it("2: Tversion 9P2000.u at msize 32792 is answered 9P2000.u, msize not above the client's", async () => {
    const c = await Client.connect(h.address, { msize: 32792 });
    try {
      expect(c.dialect).toBe("9P2000.u");
      expect(c.msize).toBeLessThanOrEqual(32792);
    } finally {
      await c.close();
    }
  });
  it("2: a client falling back to plain 9P2000 is served", async () => {
    const c = await Client.connect(h.address, { msize: 32792, version: "9P2000" });
    try {
      expect(c.dialect).toBe("9P2000");
    } finally {
      await c.close();
    }
  });
  it("2: open bit 0x80 (append) on a session env is tolerated and appends", async () => {
    const job = await openJob(fs);
    const env = await fs.open(`${job.sid}/env`, OWRITE | 0x80);
    await env.write(0, "'X=1'\n");
    await env.write(0, "'Y=2'\n");
    await env.clunk();
    expect((await fs.readFile(`${job.sid}/env`)).toString()).toBe(
      "PATH=/usr/bin:/bin\n'MSG=a b'\n'X=1'\n'Y=2'\n",
    );
    await job.close();
  });
  it("2: OTRUNC on argv/env empties them; on files without a truncation (stdio, wait, id) it is permission denied", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "echo hi", OWRITE);
    await (await fs.open(`${job.sid}/argv`, OWRITE | OTRUNC)).clunk();
    expect((await fs.readFile(`${job.sid}/argv`)).length).toBe(0);
    await (await fs.open(`${job.sid}/env`, OWRITE | OTRUNC)).clunk();
    expect((await fs.readFile(`${job.sid}/env`)).length).toBe(0);
    for (const name of ["stdio", "wait", "id"]) {
      expect(await rerror(fs.open(`${job.sid}/${name}`, OWRITE | OTRUNC))).toEqual({
        ename: "permission denied",
        errno: EPERM,
      });
    }
    await job.close();
  });
  it("2: permission denied carries errno EPERM and file not found ENOENT, as the original server library", async () => {
    expect(await rerror(fs.open("procs", OWRITE))).toEqual({ ename: "permission denied", errno: EPERM });
    expect(await rerror(fs.walk("nosuchfile"))).toEqual({ ename: "file not found", errno: ENOENT });
  });
  it("9: libxcpu's staging modes: ctl and argv opened OWRITE|OTRUNC, env OWRITE|0x80, and a file under fs/ whose name contains 'env' created with OWRITE|0x80", async () => {
    const job = await openJob(fs);
    const argv = await fs.open(`${job.sid}/argv`, OWRITE | OTRUNC);
    await argv.write(0, "sh libenv.sh");
    await argv.clunk();
    const env = await fs.open(`${job.sid}/env`, OWRITE | 0x80);
    await env.write(0, "'E=1'\n");
    await env.clunk();
    const f = await fs.create(`${job.sid}/fs/libenv.sh`, 0o755, OWRITE | 0x80);
    await f.write(0, 'echo "$E"\n');
    await f.write(10, "exit 2\n");
    await f.clunk();
    const ctl = await fs.open(`${job.sid}/ctl`, OWRITE | OTRUNC);
    expect(await ctl.write(0, "id /1\nexec /bin/sh\n")).toBe(19);
    await ctl.clunk();
    expect((await readAll(job.stdout)).toString()).toBe("1\n");
    expect((await readAll(job.wait)).toString()).toBe("512");
    await job.close();
  });
  it("2: Tflush of a parked read (wait, stdout) is answered; the session goes on", async () => {
    const job = await openJob(fs);
    const ac = new AbortController();
    const w = job.wait.read(0, 64, { signal: ac.signal });
    const o = job.stdout.read(0, 64, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 50));
    ac.abort(new Error("flushed"));
    await expect(w).rejects.toThrow("flushed");
    await expect(o).rejects.toThrow("flushed");
    await write(fs, `${job.sid}/argv`, "echo after");
    await job.ctl.write(0, "exec /bin/echo\n");
    expect((await readAll(job.stdout)).toString()).toBe("after\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
  });
  it("2: a clunk of wait or stdout ends its parked read with no data (C1); the session goes on", async () => {
    const job = await openJob(fs);
    const w = job.wait.read(0, 64);
    const o = job.stdout.read(0, 64);
    await new Promise((r) => setTimeout(r, 50));
    await Promise.all([job.wait.clunk(), job.stdout.clunk()]);
    const late = new Promise((r) => setTimeout(() => r("still parked"), 5000));
    expect(await Promise.race([w.then((b) => b.length), late])).toBe(0);
    expect(await Promise.race([o.then((b) => b.length), late])).toBe(0);
    await write(fs, `${job.sid}/argv`, "echo after");
    await job.ctl.write(0, "exec /bin/echo\n");
    const wait = await fs.open(`${job.sid}/wait`, OREAD);
    expect((await readAll(wait)).toString()).toBe("0");
    await wait.clunk();
    await job.close();
  });
  it("2: a clunk of stdin ends its write parked on a full pipe (C1)", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "exec /bin/sleep\n");
    // Far more than a pipe holds: the write parks until the program reads, which it never does.
    const parked = job.stdin.write(0, Buffer.alloc(1 << 20)).then(
      (n) => `wrote ${n}`,
      (e: Error) => `failed: ${e.message}`,
    );
    await new Promise((r) => setTimeout(r, 100));
    await job.stdin.clunk();
    const late = new Promise((r) => setTimeout(() => r("still parked"), 5000));
    expect(await Promise.race([parked, late])).not.toBe("still parked");
    await job.ctl.write(0, "kill\n");
    expect((await readAll(job.wait)).toString()).toBe("9");
    await job.close();
  });
  it("2: stdin holds at most 16 MiB waiting for a program that does not read; more is EAGAIN", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "exec /bin/sleep\n");
    const chunk = Buffer.alloc(32 * 1024);
    // 20 MiB of writes in flight at once, none of which the program takes beyond its pipe.
    const answers: string[] = [];
    const writes = Array.from({ length: 640 }, () =>
      job.stdin.write(0, chunk).then(
        () => answers.push("written"),
        (e: RemoteError) => answers.push(String(e.errno)),
      ),
    );
    // The refused ones are answered at once; the others stay parked until the kill.
    await until(() => answers.length >= 640 - (16 * 1024 * 1024) / chunk.length, 10_000);
    expect(answers.filter((a) => a === "11").length).toBeGreaterThan(0);
    expect(answers.filter((a) => a !== "11").length).toBeLessThanOrEqual(64); // taken by the pipe before the kill
    await job.ctl.write(0, "kill\n");
    expect((await readAll(job.wait)).toString()).toBe("9");
    await Promise.all(writes);
    await job.close();
  });
  it("2: a NUL ends a ctl command (C clients write fixed-size buffers); the next write starts afresh", async () => {
    const job = await openJob(fs);
    expect(await job.ctl.write(0, "id j/7\0\nexec /bin/true\n")).toBe(23);
    expect(await job.ctl.write(0, "type persistent\n")).toBe(16);
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toMatch(/^j\/7\b/);
    await job.ctl.write(0, "type normal\n");
    await job.close();
  });
  it("8: a NUL byte in argv or env is a format error at exec, not an internal one", async () => {
    for (const [file, text, message] of [
      ["argv", "echo a\0b", "arguments bad format (NUL byte)"],
      ["env", "A=b\0c", "environment bad format (NUL byte)"],
    ] as const) {
      const job = await openJob(fs);
      await write(fs, `${job.sid}/${file}`, text);
      expect((await rerror(job.ctl.write(0, "exec /bin/echo\n"))).ename).toBe(message);
      await job.close();
    }
  });
  it("2: the permission check needs every requested bit (deliberate: the original granted read-write on a read-only file)", async () => {
    expect((await rerror(fs.open("arch", ORDWR))).ename).toBe("permission denied");
  });
});

describe("3 users and authentication", () => {
  it("3.2: an unknown numeric uid gets Rerror 'unknown user' with errno EIO (as in the original trace)", async () => {
    const c = await Client.connect(h.address, { msize: 32792 });
    try {
      expect(await rerror(c.auth("nobody", "", { n_uname: 4242 }))).toEqual({
        ename: "unknown user",
        errno: EIO,
      });
    } finally {
      await c.close();
    }
  });
  it("3.2: with n_uname present the user is found by uid, whatever the name", async () => {
    const f = await login(h.address, { ...aliceLogin, uname: "not-alice" });
    expect((await f.readFile("arch")).length).toBeGreaterThan(0);
    await f.close();
  });
  it("3.3: an attach without an auth fid is 'authentication failed'", async () => {
    const c = await Client.connect(h.address, { msize: 32792 });
    try {
      expect((await rerror(c.attach("alice", "", { n_uname: 5001 }))).ename).toBe("authentication failed");
    } finally {
      await c.close();
    }
  });
  it("3.3: the challenge is 16 bytes; a wrong response is 'authentication failed'", async () => {
    await expect(
      login(h.address, { ...aliceLogin, key: undefined, raw: Buffer.alloc(256, 1) }),
    ).rejects.toThrow("authentication failed");
  });
  it("3.3: a response over 4096 bytes is 'invalid size'", async () => {
    const c = await Client.connect(h.address, { msize: 32792 });
    try {
      const afid = await c.auth("alice", "", { n_uname: 5001 });
      if (!afid) throw new Error("no auth fid");
      expect((await afid.read(64)).length).toBe(16);
      expect((await rerror(afid.write(Buffer.alloc(4097)))).ename).toBe("invalid size");
    } finally {
      await c.close();
    }
  });
  it("3.3: the attach must name the user of the Tauth", async () => {
    const c = await Client.connect(h.address, { msize: 32792 });
    try {
      const afid = await c.auth("xcpu-admin", "", { n_uname: 65530 });
      if (!afid) throw new Error("no auth fid");
      const ch = await afid.read(64);
      const { sign } = await import("node:crypto");
      await afid.write(sign("sha1", ch, admin.privateKey));
      expect((await rerror(c.attach("alice", "", { afid, n_uname: 5001 }))).ename).toBe(
        "authentication failed",
      );
    } finally {
      await c.close();
    }
  });
  it("3.3: the admin key authenticates as any user", async () => {
    const f = await login(h.address, { ...aliceLogin, key: admin.privateKey });
    await f.close();
  });
  it("3.4: every read of passkey mints a new 32-hex-character passkey encrypted for the reader", async () => {
    const a = decryptPasskey(alice.privateKey, await fs.readFile("passkey"));
    const b = decryptPasskey(alice.privateKey, await fs.readFile("passkey"));
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(b).toMatch(/^[0-9a-f]{32}$/);
    expect(a).not.toBe(b);
    // usable once
    const f = await login(h.address, { ...aliceLogin, key: undefined, passkey: a });
    await f.close();
    await expect(login(h.address, { ...aliceLogin, key: undefined, passkey: a })).rejects.toThrow(
      "authentication failed",
    );
  });
  it("3.4: a wrong 20-byte answer is refused while a passkey is outstanding (deliberate: the original accepted any)", async () => {
    await fs.readFile("passkey");
    await expect(
      login(h.address, { ...aliceLogin, key: undefined, raw: Buffer.alloc(20, 7) }),
    ).rejects.toThrow("authentication failed");
  });
});

describe("4.2 root directory", () => {
  const ROOT = [
    ["clone", 0o444],
    ["ctl", 0o660],
    ["arch", 0o444],
    ["env", 0o664],
    ["procs", 0o444],
    ["state", 0o664],
    ["passkey", 0o444],
    ["pwent", 0o440],
    ["grent", 0o440],
  ] as const;
  it("4.2 root: a directory 0555 owned by xcpu-admin", async () => {
    const st = await fs.stat("");
    expect(st.mode).toBe((DMDIR | 0o555) >>> 0);
    expect(st.qid.type).toBe(QTDIR);
    expect(st.uid).toBe("xcpu-admin");
    expect(st.n_uid).toBe(65530);
  });
  it("4.2 root: entries in listing order with their modes, owner and group xcpu-admin, qid type file", async () => {
    const list = await fs.readdir("");
    const names = list.map((s) => s.name);
    // `sysinfo` is an extension after the original's nine files; statfs counts only numeric names.
    expect(names.slice(0, 10)).toEqual([...ROOT.map(([n]) => n), "sysinfo"]);
    for (const [name, mode] of ROOT) {
      const st = list.find((s) => s.name === name);
      expect(st?.mode, name).toBe(mode);
      expect(st?.qid.type, name).toBe(QTFILE);
      expect([st?.uid, st?.gid, st?.n_uid, st?.n_gid], name).toEqual([
        "xcpu-admin",
        "xcpu-admin",
        65530,
        65530,
      ]);
    }
  });
  it("4.2 root: there is no uname file", async () => {
    expect((await rerror(fs.walk("uname"))).ename).toBe("file not found");
  });
  it("4.2 root ctl: not readable (permission denied) even for the admin", async () => {
    const fid = await adm.open("ctl", ORDWR);
    expect(await rerror(fid.read(0, 64))).toEqual({ ename: "permission denied", errno: EPERM });
    await fid.clunk();
  });
  it("4.2 root ctl: a user outside xcpu-admin cannot open it for writing", async () => {
    expect(await rerror(fs.open("ctl", OWRITE))).toEqual({ ename: "permission denied", errno: EPERM });
  });
  it("4.2 arch: /<OS>/<cpu>, without the newline (deliberate: the original's wire capture has none)", async () => {
    const a = (await fs.readFile("arch")).toString();
    expect(a).toMatch(/^\/Linux\/[A-Za-z0-9_]+$/);
    expect((await fs.stat("arch")).length).toBe(BigInt(a.length));
  });
  it("4.2 env: one quoted entry per line; writable by xcpu-admin only; new sessions copy it", async () => {
    expect((await fs.readFile("env")).toString()).toBe("PATH=/usr/bin:/bin\n'MSG=a b'\n");
    expect((await rerror(fs.open("env", OWRITE))).ename).toBe("permission denied");
    const e = await adm.open("env", OWRITE);
    await e.write(BigInt("PATH=/usr/bin:/bin\n'MSG=a b'\n".length), "'EXTRA=1'\n");
    await e.clunk();
    const job = await openJob(fs);
    expect((await fs.readFile(`${job.sid}/env`)).toString()).toBe(
      "PATH=/usr/bin:/bin\n'MSG=a b'\n'EXTRA=1'\n",
    );
    await job.close();
    await write(adm, "env", "PATH=/usr/bin:/bin\n'MSG=a b'\n");
  });
  it("4.2 state: initially empty; free text written by the admin; a truncating open empties it", async () => {
    expect((await fs.readFile("state")).length).toBe(0);
    await write(adm, "state", "maintenance");
    expect((await fs.readFile("state")).toString()).toBe("maintenance");
    await (await adm.open("state", OWRITE | OTRUNC)).clunk();
    expect((await fs.readFile("state")).toString()).toBe("");
  });
  it("4.2 procs: not writable; the header record is exact", async () => {
    expect((await rerror(adm.open("procs", OWRITE))).ename).toBe("permission denied");
    const text = (await fs.readFile("procs")).toString();
    expect(text.startsWith(PROCS_HEADER)).toBe(true);
    expect(PROCS_HEADER).toBe(
      "(pid (cmdline) state ppid pgrp psid tty tpgid utime stime etime priority nice wchan euid suid fsuid egid sgid fsgid vmsize rssize shsize txtsize datsize xcpusid xcpujid ) \n",
    );
  });
  it("4.2 pwent/grent: 0440, not readable by other users", async () => {
    expect((await rerror(fs.open("pwent", OREAD))).ename).toBe("permission denied");
    expect((await rerror(fs.open("grent", OREAD))).ename).toBe("permission denied");
  });
  it("4.2 clone: only the admin may chown/chmod it (deliberate: the original let anybody); chmod keeps permission bits", async () => {
    const cl = await fs.walk("clone");
    expect((await rerror(cl.wstat({ mode: 0o400 }))).ename).toBe("permission denied");
    await cl.clunk();
    const ac = await adm.walk("clone");
    await ac.wstat({ mode: 0o100444 });
    expect((await adm.stat("clone")).mode).toBe(0o444);
    await ac.clunk();
  });
});

describe("4.3 session directory", () => {
  const FILES = [
    ["ctl", 0o660],
    ["exec", 0o660],
    ["argv", 0o660],
    ["env", 0o660],
    ["stdin", 0o660],
    ["stdout", 0o440],
    ["stderr", 0o440],
    ["stdio", 0o660],
    ["wait", 0o440],
    ["id", 0o440],
  ] as const;
  it("4.3 session: N/ is 0555 owned by the opener with its default group; qid path (sid+1)<<24", async () => {
    const job = await openJob(fs);
    const st = await fs.stat(job.sid);
    expect(st.mode).toBe((DMDIR | 0o555) >>> 0);
    expect([st.uid, st.gid, st.n_uid, st.n_gid]).toEqual(["alice", "users", 5001, 5000]);
    expect(st.qid.path).toBe(BigInt(Number(job.sid) + 1) << 24n);
    const root = await fs.readdir("");
    expect(root.find((s) => s.name === job.sid)?.mode).toBe((DMDIR | 0o555) >>> 0);
    await job.close();
  });
  it("4.3 session: entries in listing order with their modes and owner, then fs/ (a directory)", async () => {
    const job = await openJob(fs);
    const list = await fs.readdir(job.sid);
    expect(list.map((s) => s.name)).toEqual([...FILES.map(([n]) => n), "fs"]);
    FILES.forEach(([name, mode], i) => {
      const st = list[i];
      expect(st?.mode, name).toBe(mode);
      expect([st?.uid, st?.gid], name).toEqual(["alice", "users"]);
      expect(st?.qid.type, name).toBe(QTFILE);
      expect(st?.qid.path, name).toBe((BigInt(Number(job.sid) + 1) << 24n) + BigInt(i + 1));
    });
    const fsEntry = list[10];
    expect(fsEntry?.qid.type).toBe(QTDIR);
    // the real directory, mode 0700 as 1.2.3 made it
    expect((fsEntry?.mode ?? 0) & 0o777).toBe(0o700);
    await job.close();
  });
  it("4.3 ctl: reads the pid, -1 before exec and after exit", async () => {
    const job = await openJob(fs);
    const ctl = await fs.open(`${job.sid}/ctl`, ORDWR);
    expect((await ctl.read(0, 64)).toString()).toBe("-1");
    await write(fs, `${job.sid}/argv`, "sleep 30");
    await ctl.write(0, "exec /bin/sleep\n");
    expect((await ctl.read(0, 64)).toString()).toMatch(/^[1-9]\d*$/);
    await ctl.write(0, "signal 9\n");
    expect((await readAll(job.wait)).toString()).toBe("9");
    expect((await ctl.read(0, 64)).toString()).toBe("-1");
    await ctl.clunk();
    await job.close();
  });
  it("4.3 id: /0 at first; `id` sets job and rank, omitted parts unchanged", async () => {
    const job = await openJob(fs);
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("/0");
    await job.ctl.write(0, "id job7/3\n");
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("job7/3");
    await job.ctl.write(0, "id /5\n");
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("job7/5");
    await job.ctl.write(0, "id job8\n");
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("job8/5");
    await job.close();
  });
  it("4.3 stdin: reading it is 'Cannot read'", async () => {
    const job = await openJob(fs);
    const f = await fs.open(`${job.sid}/stdin`, ORDWR);
    expect((await rerror(f.read(0, 10))).ename).toBe("Cannot read");
    await f.clunk();
    await job.close();
  });
  it("4.3 exec: reading before staging is 'No such file or directory'; one writer ever ('Text file busy'); staged file seen as fs/exec and run by a bare `exec`", async () => {
    const job = await openJob(fs);
    expect(await rerror(fs.open(`${job.sid}/exec`, OREAD))).toMatchObject({
      ename: "No such file or directory",
      errno: 2,
    });
    const ex = await fs.open(`${job.sid}/exec`, OWRITE);
    await ex.write(0, "#!/bin/sh\necho staged\n");
    expect((await rerror(fs.open(`${job.sid}/exec`, OWRITE))).ename).toBe("Text file busy");
    await ex.clunk();
    expect((await rerror(fs.open(`${job.sid}/exec`, OWRITE))).ename).toBe("Text file busy");
    expect((await fs.readFile(`${job.sid}/exec`)).toString()).toBe("#!/bin/sh\necho staged\n");
    expect((await fs.readFile(`${job.sid}/fs/exec`)).toString()).toBe("#!/bin/sh\necho staged\n");
    expect((await fs.stat(`${job.sid}/fs/exec`)).mode & 0o777).toBe(0o700);
    await write(fs, `${job.sid}/argv`, "exec");
    await job.ctl.write(0, "exec\n");
    expect((await readAll(job.stdout)).toString()).toBe("staged\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
  });
  it("4.3 exec: an open with remove-on-close is 'Operation not permitted'", async () => {
    const job = await openJob(fs);
    expect((await rerror(fs.open(`${job.sid}/exec`, OWRITE | ORCLOSE))).ename).toBe(
      "Operation not permitted",
    );
    await job.close();
  });
  it("4.3 env: starts as the root env; its stat length is the buffer size; exec appends the injected variables", async () => {
    const job = await openJob(fs);
    const text = "PATH=/usr/bin:/bin\n'MSG=a b'\n";
    expect((await fs.stat(`${job.sid}/env`)).length).toBe(BigInt(text.length));
    await write(fs, `${job.sid}/argv`, "true");
    await job.ctl.write(0, "id j/2\nexec /bin/true\n");
    await readAll(job.wait);
    const env = (await fs.readFile(`${job.sid}/env`)).toString();
    expect(env.startsWith(text)).toBe(true);
    const added = env.slice(text.length);
    expect(added).toMatch(
      new RegExp(
        `^\\nXCPUPATH=\\S+\\nXCPUSID=${job.sid}\\nXCPUID=j/2\\nLD_LIBRARY_PATH=\\S+\\nXCPU_PARENT=127\\.0\\.0\\.1!\\d+$`,
      ),
    );
    await job.close();
  });
  it("4.3 stdout: a read blocks until data; several readers each get a copy; 0 bytes after end of file", async () => {
    const job = await openJob(fs);
    const second = await fs.open(`${job.sid}/stdout`, OREAD);
    await write(fs, `${job.sid}/argv`, "cat");
    const r1 = job.stdout.read(0, 100);
    const r2 = second.read(0, 100);
    await job.ctl.write(0, "exec /bin/cat\n");
    await job.stdin.write(0, "hello\n");
    expect((await r1).toString()).toBe("hello\n");
    expect((await r2).toString()).toBe("hello\n");
    await job.ctl.write(0, "close stdin\n");
    expect((await job.stdout.read(0, 100)).length).toBe(0);
    expect((await job.stdout.read(0, 100)).length).toBe(0);
    // Writing after the close: EPIPE, as the original's write to the closed pipe.
    expect(await rerror(job.stdin.write(0, "late\n"))).toEqual({ ename: "stdin closed", errno: 32 });
    await second.clunk();
    await job.close();
  });
  it("4.3 stdin: data written before exec waits for the program; a stream file reopened later still feeds the same pipe", async () => {
    const job = await openJob(fs);
    await job.stdin.write(0, "early\n");
    await job.stdin.clunk();
    const again = await fs.open(`${job.sid}/stdin`, OWRITE | OTRUNC);
    await again.write(0, "late\n");
    await again.clunk();
    await write(fs, `${job.sid}/argv`, "cat");
    await job.ctl.write(0, "exec /bin/cat\nclose stdin\n");
    expect((await readAll(job.stdout)).toString()).toBe("early\nlate\n");
    await job.ctl.clunk();
    await job.close();
  });
  it("4.3 stdin: writes after the program exited are accepted and dropped (deliberate: the original failed them)", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "true");
    await job.ctl.write(0, "exec /bin/true\n");
    await readAll(job.wait);
    expect(await job.stdin.write(0, "ignored\n")).toBe(8);
    await job.close();
  });
  it("4.3 ctl: a wstat other than a truncation is 'unsupported operation'", async () => {
    const job = await openJob(fs);
    const c = await fs.walk(`${job.sid}/ctl`);
    expect((await rerror(c.wstat({ mode: 0o600 }))).ename).toBe("unsupported operation");
    await c.wstat({ length: 0n });
    await c.clunk();
    await job.close();
  });
  it("4.3 wait: parked until the program ends; the status is offset-sliced", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sh -c 'exit 3'");
    let done = false;
    const p = job.wait.read(0, 64).then((b) => {
      done = true;
      return b;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(done).toBe(false);
    await job.ctl.write(0, "exec /bin/sh\n");
    expect((await p).toString()).toBe("768");
    expect((await job.wait.read(1n, 64)).toString()).toBe("68");
    expect((await job.wait.read(3n, 64)).length).toBe(0);
    await job.close();
  });
  it("4.3 fs: walking .. from fs/ returns to the session directory", async () => {
    const job = await openJob(fs);
    const f = await fs.walk(`${job.sid}/fs/..`);
    const st = await f.stat();
    expect(st.qid.path).toBe(BigInt(Number(job.sid) + 1) << 24n);
    await f.clunk();
    await job.close();
  });
});

describe("4.4 clone and 4.5 owner", () => {
  it("4.4 clone: each open makes a new session, ids increase; the read is the decimal id without newline, offset-sliced", async () => {
    const a = await fs.open("clone", OREAD);
    const b = await fs.open("clone", OREAD);
    const ida = (await a.read(0, 64)).toString();
    const idb = (await b.read(0, 64)).toString();
    expect(ida).toMatch(/^\d+$/);
    expect(Number(idb)).toBeGreaterThan(Number(ida));
    if (ida.length > 1) expect((await a.read(1n, 64)).toString()).toBe(ida.slice(1));
    expect((await a.read(BigInt(ida.length), 64)).length).toBe(0);
    const names = (await fs.readdir("")).map((s) => s.name);
    expect(names).toContain(ida);
    expect(names).toContain(idb);
    await a.clunk();
    await b.clunk();
    // nothing else referenced them: both are gone
    await until(async () => !(await fs.readdir("")).some((s) => s.name === ida || s.name === idb));
  });
  it("4.4 clone: ids start at 0 on a fresh node", async () => {
    const h2 = await startXcpufs({
      port: 0,
      listen: "127.0.0.1",
      adminKey: admin.line,
      sameUser: true,
      tmpdir: tmp,
      stateDir: join(tmp, "ids"),
    });
    const a2 = await login(h2.address, adminLogin);
    const c0 = await a2.open("clone", OREAD);
    const c1 = await a2.open("clone", OREAD);
    expect((await c0.read(0, 64)).toString()).toBe("0");
    expect((await c1.read(0, 64)).toString()).toBe("1");
    await c0.clunk();
    await c1.clunk();
    await a2.close();
    await h2.close();
  });
  it("4.4 clone: a new session has argv empty, id /0, and is Initializing (ctl reads -1)", async () => {
    const job = await openJob(fs);
    expect((await fs.readFile(`${job.sid}/argv`)).length).toBe(0);
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("/0");
    expect((await fs.readFile(`${job.sid}/ctl`)).toString()).toBe("-1");
    await job.close();
  });
  it("4.5 owner: a wstat by numeric uid re-owns the session; an unknown user is 'invalid user'", async () => {
    const job = await openJob(adm);
    const d = await adm.walk(job.sid);
    expect((await rerror(d.wstat({ n_uid: 4242 }))).ename).toBe("invalid user");
    await d.wstat({ n_uid: 5001 });
    const st = await adm.stat(job.sid);
    expect([st.uid, st.gid, st.n_uid]).toEqual(["alice", "users", 5001]);
    expect((await fs.stat(`${job.sid}/ctl`)).uid).toBe("alice");
    await d.clunk();
    await job.close();
  });
  it("4.5 owner: a wstat by name works too (deliberate: the original's name lookup never matched)", async () => {
    const job = await openJob(adm);
    const d = await adm.walk(job.sid);
    await d.wstat({ uid: "alice" });
    expect((await adm.stat(job.sid)).uid).toBe("alice");
    await d.clunk();
    await job.close();
  });
});

describe("5 session life cycle", () => {
  it("5.1: a wiped session refuses exec with 'session wiped'; wipe is idempotent", async () => {
    const job = await openJob(fs);
    await job.ctl.write(0, "wipe\n");
    await job.ctl.write(0, "wipe\n");
    expect((await rerror(job.ctl.write(0, "exec /bin/true\n"))).ename).toBe("session wiped");
    expect((await fs.readdir("")).map((s) => s.name)).not.toContain(job.sid);
    await job.close();
  });
  it("5.1: wipe answers a parked wait read of a session that never ran with 0 bytes", async () => {
    const job = await openJob(fs);
    const p = job.wait.read(0, 64);
    await job.ctl.write(0, "wipe\n");
    expect((await p).length).toBe(0);
    await job.close();
  });
  it("5.2: a persistent session keeps its status after every fid is gone, until wipe", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sh -c 'exit 1'");
    await job.ctl.write(0, "type persistent\nexec /bin/sh\n");
    expect((await readAll(job.wait)).toString()).toBe("256");
    await job.close();
    const f2 = await login(h.address, aliceLogin);
    expect((await f2.readFile(`${job.sid}/wait`)).toString()).toBe("256");
    await cmd(f2, `${job.sid}/ctl`, "wipe\n");
    expect((await f2.readdir("")).map((s) => s.name)).not.toContain(job.sid);
    await f2.close();
  });
  it("5.2: a client's disconnect ends its running normal session (deliberate: the original left the program running unattended)", async () => {
    const f2 = await login(h.address, aliceLogin);
    const job = await openJob(f2);
    await write(f2, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "exec /bin/sleep\n");
    const pid = Number((await f2.readFile(`${job.sid}/ctl`)).toString());
    await f2.close();
    await until(async () => !(await fs.readdir("")).some((s) => s.name === job.sid));
    await until(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
  });
  it("5.2: a persistent session's program outlives its client's disconnect", async () => {
    const f2 = await login(h.address, aliceLogin);
    const job = await openJob(f2);
    await write(f2, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "type persistent\nexec /bin/sleep\n");
    await f2.close();
    expect((await fs.readdir("")).map((s) => s.name)).toContain(job.sid);
    await cmd(fs, `${job.sid}/ctl`, "signal 9\n");
    expect((await fs.readFile(`${job.sid}/wait`)).toString()).toBe("9");
    await cmd(fs, `${job.sid}/ctl`, "wipe\n");
  });
  it("5.2: only open fids hold a session (deliberate difference: a fid that was walked but never opened does not)", async () => {
    const clone = await fs.open("clone", OREAD);
    const sid = (await clone.read(0, 64)).toString();
    const walked = await fs.walk(`${sid}/ctl`);
    await clone.clunk();
    await until(async () => !(await fs.readdir("")).some((s) => s.name === sid));
    await walked.clunk();
  });
  it("5.3: exec with no program and nothing staged is 'executable not found'; a missing program gives wait 512", async () => {
    const job = await openJob(fs);
    expect((await rerror(job.ctl.write(0, "exec\n"))).ename).toBe("executable not found");
    await write(fs, `${job.sid}/argv`, "nothere");
    await job.ctl.write(0, "exec nothere\n");
    expect((await readAll(job.wait)).toString()).toBe("512");
    await job.close();
  });
  it("5.3: a second exec on a running session is refused (deliberate: the original lost the first process)", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "exec /bin/sleep\n");
    expect((await rerror(job.ctl.write(0, "exec /bin/sleep\n"))).ename).toBe("session already running");
    await job.ctl.write(0, "signal SIGKILL\n");
    expect((await readAll(job.wait)).toString()).toBe("9");
    await job.close();
  });
  it("5.3: the program gets exactly argv (argv[0] first token) and the env tokens", async () => {
    const r = await run(fs, "/bin/sh", "sh -c 'echo \"$0|$1|$MSG|$XCPUSID\"' zero 'it''s'");
    expect(r.out).toBe(`zero|it's|a b|${r.sid}\n`);
  });
});

describe("6 root ctl", () => {
  it("6: user and group commands give the original's error strings (errno EIO)", async () => {
    const cases: [string, string][] = [
      ["user-add bob 5002 users\n", "Usage: user-add uname uid groupname key"],
      ["user-add bob x users ''\n", "invalid user id"],
      ["user-add bob 5002 nogroup ''\n", "nogroup:group not found"],
      ["user-add alice 5009 users ''\n", "alice:user exists"],
      ["user-add bob 5001 users ''\n", "5001:user exists"],
      ["user-add bob 5002 users 'ssh-dss AAAA'\n", "invalid key type"],
      ["user-del zed\n", "zed: no such user in userpool"],
      ["user-add-group zed users\n", "zed: no such user in userpool"],
      ["user-add-group alice nogroup\n", "nogroup: no such group in userpool"],
      ["user-del-group alice xcpu-admin\n", "user alice not a member of group xcpu-admin"],
      ["group-add staff\n", "Usage: group-add groupname gid"],
      ["group-add staff x\n", "invalid group id x"],
      ["group-add users 6000\n", "users:group exists"],
      ["group-add staff 5000\n", "5000:group exists"],
      ["group-del nogroup\n", "nogroup: no such group in userpool"],
      ["kill SIGFOO 1234\n", "unsupported signal"],
      ["kill 9 x\n", "invalid pid"],
      ["frobnicate\n", "unknown command"],
    ];
    for (const [line, ename] of cases) {
      expect(await rootCtlError(adm, line), line).toEqual({ ename, errno: EIO });
    }
  });
  it("6: the first failing line discards the rest of the write; earlier lines stay done", async () => {
    expect((await rootCtlError(adm, "group-add g1 7001\nbogus\ngroup-add g2 7002\n")).ename).toBe(
      "unknown command",
    );
    const gr = (await adm.readFile("grent")).toString();
    expect(gr).toContain("g1:7001\n");
    expect(gr).not.toContain("g2:");
    await cmd(adm, "ctl", "group-del g1\n");
  });
  it("6: a partial line waits for the next write on the same fid", async () => {
    const fid = await adm.open("ctl", OWRITE);
    expect(await fid.write(0, "group-add g3 ")).toBe(13);
    expect((await adm.readFile("grent")).toString()).not.toContain("g3:");
    await fid.write(0, "7003\n");
    expect((await adm.readFile("grent")).toString()).toContain("g3:7003\n");
    await fid.write(0, "group-del g3\n");
    await fid.clunk();
  });
  it("6: user-add-group and user-del-group, including the user's default group", async () => {
    await cmd(adm, "ctl", "group-add staff 7010\nuser-add bob 5002 users ''\nuser-add-group bob staff\n");
    expect((await adm.readFile("pwent")).toString()).toContain("bob:5002:5000:users,staff\n");
    await cmd(adm, "ctl", "user-del-group bob staff\nuser-del-group bob users\n");
    expect((await adm.readFile("pwent")).toString()).toContain("bob:5002:5000\n");
    await cmd(adm, "ctl", "user-del bob\ngroup-del staff\n");
    expect((await adm.readFile("pwent")).toString()).not.toContain("bob:");
  });
  it("6: group-del of a group with members is refused (deliberate: the original kept it and reported success)", async () => {
    expect((await rootCtlError(adm, "group-del users\n")).ename).toBe("users:group not empty");
  });
  it("6: kill signals a node process by pid; signal names and numbers", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "exec /bin/sleep\n");
    const pid = (await fs.readFile(`${job.sid}/ctl`)).toString();
    await cmd(adm, "ctl", `kill SIGTERM ${pid}\n`);
    expect((await readAll(job.wait)).toString()).toBe("15");
    expect(await rootCtlError(adm, `kill 9 ${pid}\n`)).toMatchObject({ ename: "No such process", errno: 3 });
    await job.close();
  });
  it("6: user-flush keeps only xcpu-admin; group-flush keeps only the xcpu-admin group", async () => {
    const h2 = await startXcpufs({
      port: 0,
      listen: "127.0.0.1",
      adminKey: admin.line,
      sameUser: true,
      tmpdir: tmp,
      stateDir: join(tmp, "flush"),
    });
    const a2 = await login(h2.address, adminLogin);
    await cmd(a2, "ctl", "group-add g 100\nuser-add u 100 g ''\nuser-flush\n");
    expect((await a2.readFile("pwent")).toString()).toMatch(/^xcpu-admin:65530:65530(:xcpu-admin)?\n$/);
    expect((await a2.readFile("grent")).toString()).toBe("g:100\nxcpu-admin:65530\n");
    await cmd(a2, "ctl", "group-flush\n");
    expect((await a2.readFile("grent")).toString()).toBe("xcpu-admin:65530\n");
    await a2.close();
    await h2.close();
  });
});

describe("7 session ctl", () => {
  it("7.1: errors of the session commands", async () => {
    const job = await openJob(fs);
    const cases: [string, string][] = [
      ["frobnicate\n", "unknown command"],
      ["type bogus\n", "invalid session type"],
      ["close bogus\n", "invalid argument"],
      ["signal SIGFOO\n", "unsupported signal"],
      ["id\n", "argument expected"],
      ["id a/x\n", "syntax error"],
      ["id a/-1\n", "negative id not permitted"],
      ["clone 1\n", "too few arguments"],
      ["clone x 127.0.0.1/0\n", "invalid maxsession format"],
      ["clone 1 nothing\n", "invalid address format"],
      ["redirect stdin\n", "too few arguments"],
      ["redirect stdfoo f\n", "invalid stream"],
      ["exec 'unterminated\n", "invalid format"],
    ];
    for (const [line, ename] of cases) {
      expect(await rerror(job.ctl.write(0, line)), line).toEqual({ ename, errno: EIO });
    }
    await job.close();
  });
  it("7.1: after a failed command the next one works (deliberate: the original kept the failed line)", async () => {
    const job = await openJob(fs);
    await expect(job.ctl.write(0, "bogus\n")).rejects.toThrow("unknown command");
    await job.ctl.write(0, "id x/1\n");
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("x/1");
    await job.close();
  });
  it("7.1: signal without a process succeeds; add and del are accepted", async () => {
    const job = await openJob(fs);
    await job.ctl.write(0, "signal 15\nsignal SIGHUP\nadd x\ndel y\n");
    await job.close();
  });
  it("7.1: lines after a failing one in the same write are not run", async () => {
    const job = await openJob(fs);
    await expect(job.ctl.write(0, "id a/1\nbogus\nid b/2\n")).rejects.toThrow("unknown command");
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("a/1");
    await job.close();
  });
  it("7.1: a partial line is kept for the next write; the reply counts every byte (deliberate: the original subtracted the leftover)", async () => {
    const job = await openJob(fs);
    expect(await job.ctl.write(0, "id q/4\nid r")).toBe(11);
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("q/4");
    await job.ctl.write(0, "/5\n");
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("r/5");
    await job.close();
  });
  it("7.1: close stdin gives the program end of file", async () => {
    const r = await run(fs, "/bin/cat", "cat", { stdin: "" });
    expect(r).toMatchObject({ out: "", status: "0" });
  });
  it("7.1: close stdout: the program's writes to it fail with SIGPIPE", async () => {
    const job = await openJob(fs);
    // The program writes once `close stdout` has been done: it waits for a file the test makes
    // after the ctl write (a fixed sleep could end first on a busy machine, and then the write
    // went into the pipe and the program exited 0).
    await write(
      fs,
      `${job.sid}/argv`,
      "sh -c 'while [ ! -e go ]; do sleep 0.05; done; echo x; echo survived >&2'",
    );
    await job.ctl.write(0, "exec /bin/sh\nclose stdout\n");
    await (await fs.create(`${job.sid}/fs/go`, 0o644, OWRITE)).clunk();
    expect((await readAll(job.stdout)).length).toBe(0);
    expect((await readAll(job.wait)).toString()).toBe("13");
    expect((await readAll(job.stderr)).toString()).toBe("");
    await job.close();
  });
  it("5.3: exec's cwd argument; a directory that does not exist is ignored (the session directory is used)", async () => {
    const a = await run(fs, "/bin/pwd", "pwd", { keep: true });
    const dir = a.out.trim();
    expect(dir.startsWith(tmp)).toBe(true);
    await a.job.close();
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "pwd");
    await job.ctl.write(0, "exec /bin/pwd /nonexistent/dir\n");
    // (the session directory, inside the server's own directory in the tmpdir)
    expect((await readAll(job.stdout)).toString()).toMatch(
      new RegExp(`^${tmp}/xcpufs-[\\w-]+/xcpu-\\w+\\n$`),
    );
    await job.close();
    const job2 = await openJob(fs);
    await write(fs, `${job2.sid}/argv`, "pwd");
    await job2.ctl.write(0, "exec /bin/pwd /\n");
    expect((await readAll(job2.stdout)).toString()).toBe("/\n");
    await job2.close();
  });
  it("7.2: clone copies env, argv and fs/ to another session through a passkey (addr!port/sid/passkey, trailing comma)", async () => {
    const src = await openJob(fs);
    const dst = await openJob(fs);
    await write(fs, `${src.sid}/env`, "'A=1 2'\n");
    await write(fs, `${src.sid}/argv`, "sh script");
    const f = await fs.create(`${src.sid}/fs/script`, 0o750, OWRITE);
    await f.write(0, 'echo "$A"\n');
    await f.clunk();
    const pk = decryptPasskey(alice.privateKey, await fs.readFile("passkey"));
    const addr = `127.0.0.1!${h.port}`;
    await src.ctl.write(0, `clone 1 ${addr}/${dst.sid}/${pk},\n`);
    expect((await fs.readFile(`${dst.sid}/env`)).toString()).toBe("'A=1 2'\n");
    expect((await fs.readFile(`${dst.sid}/argv`)).toString()).toBe("sh script");
    const st = await fs.stat(`${dst.sid}/fs/script`);
    expect(st.mode & 0o777).toBe(0o750);
    await dst.ctl.write(0, "exec /bin/sh\n");
    expect((await readAll(dst.stdout)).toString()).toBe("1 2\n");
    expect((await readAll(dst.wait)).toString()).toBe("0");
    await src.close();
    await dst.close();
  });
  it("7.2: a clone naming its own session as the target is refused before any file is touched", async () => {
    const src = await openJob(fs);
    const data = Buffer.alloc(100_000, 7);
    const f = await fs.create(`${src.sid}/fs/data`, 0o644, OWRITE);
    await f.write(0, data);
    await f.clunk();
    const pk = decryptPasskey(alice.privateKey, await fs.readFile("passkey"));
    const err = await rerror(src.ctl.write(0, `clone 1 127.0.0.1!${h.port}/${src.sid}/${pk},\n`));
    expect(err.ename).toMatch(/cannot write while the session is cloning/);
    expect((await fs.readFile(`${src.sid}/fs/data`)).equals(data)).toBe(true);
    await src.close();
  });
  it("7.1/7.2: the clone write is withheld until the children are done; meanwhile other ctl writes get 'cannot write while the session is cloning'", async () => {
    const { createServer } = await import("node:net");
    const held: import("node:net").Socket[] = [];
    const silent = createServer((sock) => held.push(sock));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as import("node:net").AddressInfo).port;
    try {
      const src = await openJob(fs);
      const other = await fs.open(`${src.sid}/ctl`, OWRITE);
      let settled = false;
      const p = rerror(src.ctl.write(0, `clone 1 127.0.0.1!${port}/0,\n`)).finally(() => {
        settled = true;
      });
      await until(() => held.length > 0);
      expect(settled).toBe(false);
      expect((await rerror(other.write(0, "id a/1\n"))).ename).toBe(
        "cannot write while the session is cloning",
      );
      for (const sock of held) sock.destroy();
      expect((await p).ename).toMatch(new RegExp(`^127\\.0\\.0\\.1!${port}: .+,$`));
      await other.write(0, "id a/1\n");
      await other.clunk();
      await src.close();
    } finally {
      for (const sock of held) sock.destroy();
      silent.close();
    }
  });
  it("7.2: a failing child is reported in the clone write (deliberate: the original dropped child errors)", async () => {
    const src = await openJob(fs);
    const e = await rerror(src.ctl.write(0, `clone 0 127.0.0.1!${h.port}/999999/${"0".repeat(32)},\n`));
    expect(e.ename).toMatch(/^127\.0\.0\.1!\d+: .+,$/);
    await src.close();
  });
});

describe("8 formats", () => {
  it("8.1/8.2: argv tokens with quotes and doubled quotes reach the program", async () => {
    const r = await run(fs, "/usr/bin/printf", "printf '%s|' 'a b' 'it''s' plain");
    expect(r.out).toBe("a b|it's|plain|");
  });
  it("8.3: env entries quoted as a whole", async () => {
    const r = await run(fs, "/bin/sh", "sh -c 'echo \"$V\"'", { env: "'V=x y'\n" });
    expect(r.out).toBe("x y\n");
  });
  it("8.4 procs: a session's main process carries xcpusid and xcpujid; records end with ' ) '", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "id job9/4\nexec /bin/sleep\n");
    const pid = (await fs.readFile(`${job.sid}/ctl`)).toString();
    await untilExecuted(pid, "sleep");
    const text = (await fs.readFile("procs")).toString();
    const lines = text.split("\n").filter((l) => l !== "");
    for (const l of lines) expect(l.endsWith(" ) ")).toBe(true);
    const rec = lines.find((l) => l.startsWith(`(${pid} `));
    expect(rec).toBeDefined();
    expect(rec).toMatch(new RegExp(` ${job.sid} job9/4 \\) $`));
    expect(rec).toMatch(/^\(\d+ \(sleep 30\) [A-Z] /);
    const pids = lines.slice(1).map((l) => Number(/^\((\d+)/.exec(l)?.[1]));
    expect([...pids].sort((a, b) => a - b)).toEqual(pids);
    await job.ctl.write(0, "signal 9\n");
    await readAll(job.wait);
    await job.close();
  });
  it("11.2 xps: every procs record parses the way the original xps parses it (16 KiB line buffer, 25 fields after the command line), even with line breaks and 40 KB of arguments", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, `sh -c 'sleep 30; : "a\nb"' ${"x".repeat(40000)}`);
    await job.ctl.write(0, "id 'j k/1'\nexec /bin/sh\n");
    const pid = (await fs.readFile(`${job.sid}/ctl`)).toString();
    await untilExecuted(pid, "sh");
    // xps reads from increasing offsets until a read returns nothing
    const procs = await fs.open("procs", OREAD);
    const text = (await readAll(procs, 16384)).toString("latin1");
    await procs.clunk();
    const lines = text.split("\n");
    expect(lines.pop()).toBe("");
    expect(lines.shift()).toBe(PROCS_HEADER.slice(0, -1));
    let found = false;
    for (const line of lines) {
      expect(line.length + 1).toBeLessThan(16384);
      const p = line.replace(/[ \t]+$/, "");
      expect(p.startsWith("(") && p.endsWith(")"), p).toBe(true);
      const m = /^\((\d+) \(/.exec(p);
      expect(m, p).not.toBeNull();
      const body = p.slice(0, -1);
      const close = body.lastIndexOf(")");
      const toks = tokenize(body.slice(close + 1));
      expect(toks.length, p).toBe(25);
      for (const i of [1, 2, 3, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]) {
        expect(toks[i], `${p} field ${i}`).toMatch(/^-?\d*$/);
      }
      if (m?.[1] === pid) {
        found = true;
        expect(toks[23]).toBe(job.sid);
        expect(toks[24]).toBe("j k/1");
        expect(body.slice(body.indexOf("(", 1) + 1, close)).toMatch(/^sh -c 'sleep 30; : "a\?b"' x+$/);
      }
    }
    expect(found).toBe(true);
    await job.ctl.write(0, "signal 9\n");
    await readAll(job.wait);
    await job.close();
  });
  it("8.5 wait: raw status: exit c → c×256, signal s → s", async () => {
    expect((await run(fs, "/bin/sh", "sh -c 'exit 1'")).status).toBe("256");
    expect((await run(fs, "/bin/sh", "sh -c 'kill -9 $$'")).status).toBe("9");
    expect((await run(fs, "/bin/true", "true")).status).toBe("0");
  });
  it("8.7 pwent/grent: uname:uid:gid:groups and gname:gid, every entry in one 8 KiB read (deliberate: the original returned one)", async () => {
    const pw = await adm.open("pwent", OREAD);
    const text = (await pw.read(0, 8192)).toString();
    await pw.clunk();
    expect(text).toContain("alice:5001:5000:users\n");
    expect(text).toMatch(/^xcpu-admin:65530:65530(:xcpu-admin)?$/m);
    for (const l of text.split("\n").filter(Boolean))
      expect(l).toMatch(/^[^:]+:\d+:\d+(:[^:,]+(,[^:,]+)*)?$/);
    const gr = (await adm.readFile("grent")).toString();
    expect(gr).toContain("users:5000\n");
    expect(gr).toContain("xcpu-admin:65530\n");
    for (const l of gr.split("\n").filter(Boolean)) expect(l).toMatch(/^[^:]+:\d+$/);
  });
});

describe("12 statfs's view of a node", () => {
  it("12.2: statfs keeps state open and rereads it from offset 0: each read shows the current text", async () => {
    const st = await adm.open("state", OREAD);
    expect((await st.read(0, 128)).toString()).toBe("");
    await write(adm, "state", "down");
    expect((await st.read(0, 128)).toString()).toBe("down");
    await (await adm.open("state", OWRITE | OTRUNC)).clunk();
    expect((await st.read(0, 128)).toString()).toBe("");
    await st.clunk();
  });
  it("12.2: statfs reads arch, state (empty = up) at offset 0, and counts numeric root entries", async () => {
    const job = await openJob(adm);
    const st = await adm.open("state", OREAD);
    expect((await st.read(0, 128)).length).toBe(0);
    await st.clunk();
    const names = (await adm.readdir("")).map((s) => s.name).filter((n) => /^\d+$/.test(n));
    expect(names).toContain(job.sid);
    await job.close();
  });
});
