// What the job round trip relies on: pipelined requests, wait answered at the program's exit,
// and one session directory per session, made when clone is opened and gone when the session is.

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Fsys, mount, type Request } from "@clustermatic/ninep/client";
import { MsgType, OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { openJob, readAll, sessionDirsIn, until, write } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "xcpufs-roundtrip-"));
const uid = process.getuid?.() ?? 0;
const isRoot = uid === 0;
let h: XcpufsHandle;
let fs: Fsys;

const connect = (address: string, as = { uname: "tester", n_uname: uid }) =>
  mount(address, { ...as, authenticate: async () => {} });
const dirs = (base: string) => sessionDirsIn(base);

beforeAll(async () => {
  h = await startXcpufs({ port: 0, noAuth: true, tmpdir: tmp, env: { PATH: "/usr/bin:/bin" } });
  fs = await connect(h.address);
});
afterAll(async () => {
  await fs?.close();
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** Send the requests without waiting for replies in between; resolve with every reply. */
async function batch(f: Fsys, reqs: Request[]): Promise<unknown[]> {
  const out = await Promise.allSettled(reqs.map((r) => f.client.rpc(r)));
  const bad = out.find((o) => o.status === "rejected");
  if (bad) throw (bad as PromiseRejectedResult).reason;
  return out.map((o) => (o as PromiseFulfilledResult<unknown>).value);
}

/** A process that exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "latin1");
    return st.slice(st.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

const text = (r: unknown) => Buffer.from((r as { data: Uint8Array }).data).toString();

describe("a pipelining client", () => {
  it("gets the same job as a sequential one: argv, env, output and status", async () => {
    const c = fs.client;
    const root = fs.root.num;
    const [clone, ctl, wait, out, argv, env] = Array.from({ length: 6 }, () => c.fids.alloc()) as number[] &
      [number, number, number, number, number, number];
    const r1 = await batch(fs, [
      { type: MsgType.Twalk, fid: root, newfid: clone, wname: ["clone"] },
      { type: MsgType.Topen, fid: clone, mode: OREAD },
      { type: MsgType.Tread, fid: clone, offset: 0n, count: 32 },
    ]);
    const sid = text(r1[2]);
    // argv in two positional writes that the server may run in either order
    const head = Buffer.from(`sh -c 'echo "$1 $GREETING"' sh `);
    expect(sid).toMatch(/^\d+$/);
    await batch(fs, [
      { type: MsgType.Twalk, fid: root, newfid: ctl, wname: [sid, "ctl"] },
      { type: MsgType.Topen, fid: ctl, mode: OWRITE },
      { type: MsgType.Twalk, fid: root, newfid: wait, wname: [sid, "wait"] },
      { type: MsgType.Topen, fid: wait, mode: OREAD },
      { type: MsgType.Twalk, fid: root, newfid: out, wname: [sid, "stdout"] },
      { type: MsgType.Topen, fid: out, mode: OREAD },
      { type: MsgType.Twalk, fid: root, newfid: argv, wname: [sid, "argv"] },
      { type: MsgType.Topen, fid: argv, mode: OWRITE | OTRUNC },
      { type: MsgType.Twrite, fid: argv, offset: 0n, data: head },
      { type: MsgType.Twrite, fid: argv, offset: BigInt(head.length), data: Buffer.from("'piped job'") },
      { type: MsgType.Tclunk, fid: argv },
      { type: MsgType.Twalk, fid: root, newfid: env, wname: [sid, "env"] },
      { type: MsgType.Topen, fid: env, mode: OWRITE | 0x80 },
      { type: MsgType.Twrite, fid: env, offset: 0n, data: Buffer.from("'GREETING=done well'\n") },
      { type: MsgType.Tclunk, fid: env },
    ]);
    const r3 = await batch(fs, [
      { type: MsgType.Twrite, fid: ctl, offset: 0n, data: Buffer.from("id /1\nexec /bin/sh\n") },
      { type: MsgType.Tclunk, fid: clone },
      { type: MsgType.Tread, fid: out, offset: 0n, count: 8192 },
      { type: MsgType.Tread, fid: wait, offset: 0n, count: 32 },
    ]);
    expect(text(r3[2])).toBe("piped job done well\n");
    expect(text(r3[3])).toBe("0");
    const eof = await batch(fs, [
      { type: MsgType.Tread, fid: out, offset: 0n, count: 8192 },
      { type: MsgType.Tread, fid: wait, offset: 1n, count: 32 },
    ]);
    expect(eof.map(text)).toEqual(["", ""]);
    await batch(
      fs,
      [ctl, wait, out].map((fid) => ({ type: MsgType.Tclunk, fid }) as Request),
    );
    for (const f of [clone, ctl, wait, out, argv, env]) c.fids.free(f);
    await until(() => !h.xcpufs.sessions.has(Number(sid)));
  });
});

describe("wait", () => {
  it("is answered when the program exits, while a child it left keeps stdout open", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, `sh -c 'sleep 30 & echo $!'`);
    await job.ctl.write(0, "exec /bin/sh\n");
    const sleeper = Number((await job.stdout.read(0, 8192)).toString());
    expect(sleeper).toBeGreaterThan(1);
    let stdoutEnded = false;
    const rest = readAll(job.stdout).then((b) => {
      stdoutEnded = true;
      return b.toString();
    });
    expect((await readAll(job.wait)).toString()).toBe("0");
    // the sleep still holds the pipe: no end of file yet
    expect(stdoutEnded).toBe(false);
    expect(alive(sleeper)).toBe(true);
    // wiping the session ends what the program left behind, and the stream with it
    await job.ctl.write(0, "wipe\n");
    expect(await rest).toBe("");
    await job.close();
    await until(() => !alive(sleeper));
  });
});

describe("session directories", () => {
  /** A session that has run /bin/true, still open; its directory and how to end it. */
  async function ranTrue(node: XcpufsHandle, c: Fsys): Promise<{ dir: string; close(): Promise<void> }> {
    const clone = await c.open("clone", OREAD);
    const sid = (await clone.read(0, 32)).toString();
    const ctl = await c.open(`${sid}/ctl`, OWRITE);
    const wait = await c.open(`${sid}/wait`, OREAD);
    await ctl.write(0, "exec /bin/true\n");
    expect((await readAll(wait)).toString()).toBe("0");
    const dir = node.xcpufs.sessions.get(Number(sid))?.dir as string;
    return {
      dir,
      close: async () => {
        for (const f of [clone, ctl, wait]) await f.clunk();
      },
    };
  }

  it("one per session, made by the open of clone, removed with the session or by close()", async () => {
    const base = mkdtempSync(join(tmp, "dirs-"));
    const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: base });
    const c = await connect(node.address);
    try {
      const plain = await c.open("clone", OREAD);
      await plain.read(0, 32);
      expect(dirs(base).length).toBe(1);
      await plain.clunk();
      await until(() => dirs(base).length === 0);
      const first = await ranTrue(node, c);
      const second = await ranTrue(node, c);
      expect(dirs(base).sort()).toEqual([first.dir, second.dir].map((d) => d.slice(base.length + 1)).sort());
      await first.close();
      await until(() => dirs(base).length === 1);
      await second.close();
      await until(() => dirs(base).length === 0);
      await ranTrue(node, c);
    } finally {
      await c.close();
      await node.close();
    }
    expect(dirs(base)).toEqual([]);
  });

  it("with retain, the sessions' directories stay", async () => {
    const base = mkdtempSync(join(tmp, "retain-"));
    const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: base, retain: true });
    const c = await connect(node.address);
    const job = await ranTrue(node, c);
    await job.close();
    await c.close();
    await node.close();
    expect(dirs(base)).toEqual([job.dir.slice(base.length + 1)]);
  });

  it("a directory that cannot be made fails the open of clone", async () => {
    // A missing root is refused at start; one removed later fails each clone.
    const root = mkdtempSync(join(tmp, "gone-"));
    await expect(startXcpufs({ port: 0, noAuth: true, tmpdir: join(root, "missing") })).rejects.toThrow(
      /cannot make session directories in .*missing: no such directory/,
    );
    const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: root });
    rmSync(root, { recursive: true });
    const c = await connect(node.address);
    try {
      await expect(c.open("clone", OREAD)).rejects.toThrow(/^cannot create session directory: ENOENT/);
      await expect(c.open("clone", OREAD)).rejects.toThrow(/^cannot create session directory/);
    } finally {
      await c.close();
      await node.close();
    }
  });

  it.skipIf(!isRoot)("belongs to its user, mode 0700, and is never shared", async () => {
    const base = mkdtempSync(join(tmp, "owners-"));
    const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: base });
    const users = [
      { uname: "ann", n_uname: 4301 },
      { uname: "bob", n_uname: 4302 },
    ];
    const mounts = await Promise.all(users.map((u) => connect(node.address, u)));
    try {
      const seen = new Set<string>();
      for (const i of [0, 1, 1, 0, 1]) {
        const job = await ranTrue(node, mounts[i] as Fsys);
        const st = statSync(job.dir);
        expect([st.uid, st.gid, st.mode & 0o777]).toEqual([users[i]?.n_uname, users[i]?.n_uname, 0o700]);
        expect(readdirSync(job.dir)).toEqual([]);
        expect(seen.has(job.dir)).toBe(false);
        seen.add(job.dir);
        // what this user could leave behind must not reach the next session
        writeFileSync(join(job.dir, "planted"), "x");
        await job.close();
        await until(() => dirs(base).length === 0);
      }
    } finally {
      await Promise.all(mounts.map((m) => m.close()));
      await node.close();
    }
    expect(dirs(base)).toEqual([]);
  });
  if (!isRoot) console.log("skipped: session directory ownership needs root");
});
