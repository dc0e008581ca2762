// Files the server (root) opens for a user: the session's `exec` file, which lives in the session
// directory (the user's fs/, where the session's programs run as the user and can put a link), and
// the targets of `redirect`. Neither may hand the user a file they could not open themselves.

import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { OREAD, OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, describe, expect, it } from "vitest";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { cmd, decryptPasskey, login, openJob, readAll, rsaKey, write } from "./helpers.js";

const root = process.getuid?.() === 0;
if (!root) console.log("skipping the exec link tests: not root");
const admin = rsaKey();
const user = rsaKey();
let h: XcpufsHandle | undefined;
let h2: XcpufsHandle | undefined;
const outside = mkdtempSync(join(tmpdir(), "xcpufs-secret-"));
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
    const dir = h.xcpufs.sessions.get(Number(job.sid))?.dir as string;
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
    const dir2 = h.xcpufs.sessions.get(Number(job2.sid))?.dir as string;
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
    const dir3 = h.xcpufs.sessions.get(Number(job3.sid))?.dir as string;
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
    const fsA = await login(h!.address, { uname: "mal", uid: 6201, key: user.privateKey });
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
    const fs = await login(h!.address, { uname: "mal", uid: 6201, key: user.privateKey });
    const job = await openJob(fs);
    const dir = h!.xcpufs.sessions.get(Number(job.sid))?.dir as string;
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
    expect(readdirSync(outside).sort()).toEqual(["secret", "theirs"]);
    await job.close();
    await fs.close();
  });

  it("the helper that sets supplementary groups runs as root without the session's loader variables", async () => {
    const a = await login(h!.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    await cmd(a, "ctl", "group-add extra 6202\nuser-add-group mal extra\n");
    await a.close();
    const fs = await login(h!.address, { uname: "mal", uid: 6201, key: user.privateKey });
    const job = await openJob(fs);
    // A library of the helper's, broken, where the session's LD_LIBRARY_PATH points.
    const lib = await fs.create(`${job.sid}/fs/libcap-ng.so.0`, 0o755, OWRITE);
    await lib.write(0, "not a library");
    await lib.clunk();
    await write(fs, `${job.sid}/argv`, "sh -c 'id -G; echo \"$LD_LIBRARY_PATH\"'");
    await job.ctl.write(0, "exec /bin/sh\n");
    const dir = h!.xcpufs.sessions.get(Number(job.sid))?.dir as string;
    expect((await readAll(job.stdout)).toString()).toBe(`6200 6202\n${dir}\n`);
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
    await fs.close();
  });
});
