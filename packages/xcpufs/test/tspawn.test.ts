// Tree spawn: `clone K addr/sid/passkey,…` fans a session out over several xcpufs nodes.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Fsys } from "@clustermatic/ninep/client";
import { DMDIR, OREAD, OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, describe, expect, it } from "vitest";
import { fanout, startXcpufs, type XcpufsHandle } from "../src/index.js";
import {
  cmd,
  decryptPasskey,
  edKey,
  type KeyPair,
  listeningOn,
  login,
  openJob,
  PKG,
  readAll,
  rsaKey,
  stopChild,
  until,
  write,
  xcpufsArgs,
} from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "xcpufs-tspawn-"));
const admin = rsaKey();
const alice = rsaKey();
const handles: XcpufsHandle[] = [];
const children: ChildProcess[] = [];
afterAll(async () => {
  await Promise.all(handles.map((h) => h.close()));
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

describe("fanout rule", () => {
  it("matches the spec examples", () => {
    const ten = Array.from({ length: 10 }, (_, i) => i);
    expect(fanout(ten, 3)).toEqual([
      { target: 0, delegated: [1, 2, 3] },
      { target: 4, delegated: [5, 6, 7] },
      { target: 8, delegated: [9] },
    ]);
    const n91 = fanout(
      Array.from({ length: 91 }, (_, i) => i),
      8,
    );
    expect(n91.map((c) => c.target)).toEqual([0, 12, 24, 36, 48, 60, 72, 84]);
    expect(n91.map((c) => c.delegated.length)).toEqual([11, 11, 11, 11, 11, 11, 11, 6]);
    expect(fanout(ten, 0).every((c) => c.delegated.length === 0)).toBe(true);
    expect(fanout([1, 2], 5)).toEqual([
      { target: 1, delegated: [] },
      { target: 2, delegated: [] },
    ]);
  });
});

interface Node {
  address: string;
  fs: Fsys;
  sid: string;
  job: Awaited<ReturnType<typeof openJob>>;
}

/** The client side of a tree-spawned job: sessions everywhere, files on node 0 only, clone, run. */
async function treeJob(
  addresses: string[],
  who: { uname: string; uid: number; key: KeyPair },
  K: number,
): Promise<void> {
  const nodes: Node[] = [];
  for (const address of addresses) {
    const fs = await login(address, { uname: who.uname, uid: who.uid, key: who.key.privateKey });
    const job = await openJob(fs);
    nodes.push({ address, fs, sid: job.sid, job });
  }
  const [first, ...rest] = nodes as [Node, ...Node[]];
  await write(first.fs, `${first.sid}/env`, "'GREETING=hello tree'\nPATH=/usr/bin:/bin\n");
  await write(first.fs, `${first.sid}/argv`, "prog.sh one 'two words'");
  const prog = await first.fs.create(`${first.sid}/fs/prog.sh`, 0o755, OWRITE);
  await prog.write(
    0,
    '#!/bin/sh\necho "$GREETING $XCPUID $1|$2"; cat sub/deeper/data.txt; wc -c < big.bin\n',
  );
  await prog.clunk();
  await first.fs.mkdir(`${first.sid}/fs/sub`, 0o755);
  await first.fs.mkdir(`${first.sid}/fs/sub/deeper`, 0o700);
  const data = await first.fs.create(`${first.sid}/fs/sub/deeper/data.txt`, 0o644, OWRITE);
  await data.write(0, "nested file\n");
  await data.clunk();
  const big = await first.fs.create(`${first.sid}/fs/big.bin`, 0o600, OWRITE);
  const chunk = Buffer.alloc(32768, 7);
  for (let off = 0; off < 200_000; off += chunk.length)
    await big.write(off, chunk.subarray(0, Math.min(chunk.length, 200_000 - off)));
  await big.clunk();
  // passkeys of every other node, decrypted with the user's key
  const list: string[] = [];
  for (const n of rest) {
    const pk = decryptPasskey(who.key.privateKey, await n.fs.readFile("passkey"));
    list.push(`${n.address}/${n.sid}/${pk}`);
  }
  await first.job.ctl.write(0, `clone ${K} ${list.join(",")},\n`);
  // every session is now identical: argv, env, and the files
  for (const n of nodes) {
    expect((await n.fs.readFile(`${n.sid}/argv`)).toString()).toBe("prog.sh one 'two words'");
    expect((await n.fs.readFile(`${n.sid}/env`)).toString()).toContain("'GREETING=hello tree'\n");
    expect((await n.fs.readFile(`${n.sid}/fs/sub/deeper/data.txt`)).toString()).toBe("nested file\n");
    expect((await n.fs.readFile(`${n.sid}/fs/big.bin`)).length).toBe(200_000);
    const st = await n.fs.stat(`${n.sid}/fs/prog.sh`);
    expect(st.mode & 0o777).toBe(0o755);
    const dst = await n.fs.stat(`${n.sid}/fs/sub/deeper`);
    expect((dst.mode & DMDIR) !== 0 && (dst.mode & 0o777) === 0o700).toBe(true);
  }
  // start everywhere, as the original client does
  await Promise.all(nodes.map((n, i) => n.job.ctl.write(0, `id tj/${i + 1}\nexec prog.sh\n`)));
  const outs = await Promise.all(nodes.map((n) => readAll(n.job.stdout)));
  const waits = await Promise.all(nodes.map((n) => readAll(n.job.wait)));
  outs.forEach((o, i) => {
    expect(o.toString()).toBe(`hello tree tj/${i + 1} one|two words\nnested file\n200000\n`);
    expect(waits[i]?.toString()).toBe("0");
  });
  for (const n of nodes) {
    await n.job.close();
    await n.fs.close();
  }
}

/**
 * A directory for an xcpufs started as a process: `state/` whose user pool already holds alice,
 * and `admin.pub`. Returns `dir`.
 */
function nodeDirWithAlice(dir: string): string {
  mkdirSync(join(dir, "state"), { recursive: true });
  writeFileSync(
    join(dir, "state", "users.json"),
    JSON.stringify({
      version: 1,
      groups: [
        { name: "xcpu-admin", gid: 65530 },
        { name: "users", gid: 6000 },
      ],
      users: [{ name: "alice", uid: 6001, gid: 6000, groups: ["users"], key: alice.line }],
    }),
  );
  writeFileSync(join(dir, "admin.pub"), admin.line);
  return dir;
}

async function addAlice(address: string): Promise<void> {
  const fs = await login(address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
  await cmd(fs, "ctl", `group-add users 6000\nuser-add alice 6001 users '${alice.line}'\n`);
  await fs.close();
}

describe("tree spawn", () => {
  it("clones a session across 8 xcpufs instances on loopback", async () => {
    for (let i = 0; i < 8; i++) {
      const dir = join(tmp, `n${i}`);
      mkdirSync(dir);
      handles.push(
        await startXcpufs({
          port: 0,
          listen: "127.0.0.1",
          adminKey: admin.line,
          sameUser: true,
          tmpdir: dir,
        }),
      );
    }
    for (const h of handles) await addAlice(h.address);
    await treeJob(
      handles.map((h) => h.address),
      { uname: "alice", uid: 6001, key: alice },
      2,
    );
    // the copies used the passkeys once: the nodes' connections are gone and no session remains
    await until(() => handles.every((h) => h.xcpufs.sessions.size === 0), 30_000);
  }, 120_000);

  it("works for an Ed25519 user (passkeys through X25519)", async () => {
    const erin = edKey();
    const three = handles.slice(0, 3);
    for (const h of three) {
      const fs = await login(h.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
      await cmd(fs, "ctl", `user-add erin 6002 users '${erin.line}'\n`);
      await fs.close();
    }
    await treeJob(
      three.map((h) => h.address),
      { uname: "erin", uid: 6002, key: erin },
      1,
    );
  }, 120_000);

  it("reports a child that cannot be reached", async () => {
    const h = handles[0] as XcpufsHandle;
    const fs = await login(h.address, { uname: "alice", uid: 6001, key: alice.privateKey });
    const job = await openJob(fs);
    await expect(
      job.ctl.write(0, "clone 2 127.0.0.1!1/0/00000000000000000000000000000000\n"),
    ).rejects.toThrow(/127\.0\.0\.1!1: .*refused/i);
    await job.close();
    await fs.close();
  });

  it("a child address where another service answers: said to be no 9P server, its greeting not echoed", async () => {
    const h = handles[0] as XcpufsHandle;
    const other = createServer((sock) => sock.end("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"));
    await new Promise<void>((r) => other.listen(0, "127.0.0.1", r));
    const port = (other.address() as AddressInfo).port;
    const fs = await login(h.address, { uname: "alice", uid: 6001, key: alice.privateKey });
    const job = await openJob(fs);
    try {
      const err = await job.ctl
        .write(0, `clone 1 127.0.0.1!${port}/0/00000000000000000000000000000000\n`)
        .then(
          () => undefined,
          (e: Error) => e,
        );
      expect(err?.message).toBe(`127.0.0.1!${port}: not a 9P server (its reply is not a 9P message),`);
    } finally {
      await job.close();
      await fs.close();
      other.close();
    }
  });

  it("nests a child's own failures in its entry, one comma each", async () => {
    const dirs = ["nest-a", "nest-b"].map((d) => join(tmp, d));
    const [a, b] = await Promise.all(
      dirs.map(async (d) => {
        mkdirSync(d);
        const h = await startXcpufs({
          port: 0,
          listen: "127.0.0.1",
          adminKey: admin.line,
          sameUser: true,
          tmpdir: d,
        });
        handles.push(h);
        await addAlice(h.address);
        return h;
      }),
    );
    const fsA = await login(a!.address, { uname: "alice", uid: 6001, key: alice.privateKey });
    const fsB = await login(b!.address, { uname: "alice", uid: 6001, key: alice.privateKey });
    const jobA = await openJob(fsA);
    const jobB = await openJob(fsB);
    const pk = decryptPasskey(alice.privateKey, await fsB.readFile("passkey"));
    // -n 1 over B and a refused address: B is the only direct child and passes the copy on.
    const err = await jobA.ctl
      .write(0, `clone 1 ${b!.address}/${jobB.sid}/${pk},127.0.0.1!1/0/${"0".repeat(32)}\n`)
      .then(
        () => "",
        (e: Error) => e.message,
      );
    expect(err).toMatch(
      new RegExp(`^${b!.address.replace(/[.!]/g, "\\$&")}: 127\\.0\\.0\\.1!1: .*refused.*[^,],$`, "i"),
    );
    await jobA.close();
    await jobB.close();
    await fsA.close();
    await fsB.close();
  });

  it("gives up on a child that stops answering while files are copied to it, within the liveness limit", async () => {
    // The child is another xcpufs process, stopped (SIGSTOP) as its trace shows the copy's first
    // file created: every request of the copy then waits. The relay must give up after
    // XCPUFS_CLONE_ALIVE_MS, not after a request timeout (60 s) plus a flush's and a clunk's.
    const dir = nodeDirWithAlice(join(tmp, "stopped-child"));
    const child = spawn(
      process.execPath,
      xcpufsArgs(
        "-d",
        "--listen",
        "127.0.0.1",
        "-p",
        "0",
        "-s",
        "-a",
        join(dir, "admin.pub"),
        "-t",
        dir,
        "--state-dir",
        join(dir, "state"),
      ),
      { cwd: PKG, stdio: ["ignore", "ignore", "pipe"] },
    );
    children.push(child);
    const { address, stderr } = await listeningOn(child);
    mkdirSync(join(dir, "relay"));
    const relay = await startXcpufs({
      port: 0,
      listen: "127.0.0.1",
      adminKey: admin.line,
      sameUser: true,
      tmpdir: join(dir, "relay"),
    });
    handles.push(relay);
    await addAlice(relay.address);
    const fs = await login(relay.address, { uname: "alice", uid: 6001, key: alice.privateKey });
    const target = await login(address, { uname: "alice", uid: 6001, key: alice.privateKey });
    const job = await openJob(fs);
    const targetJob = await openJob(target);
    const big = await fs.create(`${job.sid}/fs/big.bin`, 0o600, OWRITE);
    const chunk = Buffer.alloc(32768, 1);
    for (let off = 0; off < 1 << 20; off += chunk.length) await big.write(off, chunk);
    await big.clunk();
    const pk = decryptPasskey(alice.privateKey, await target.readFile("passkey"));
    const seen = stderr().length;
    const watch = setInterval(() => {
      if (/Tcreate/.test(stderr().slice(seen)) && child.signalCode === null) {
        child.kill("SIGSTOP");
        clearInterval(watch);
      }
    }, 5);
    const saved = process.env.XCPUFS_CLONE_ALIVE_MS;
    process.env.XCPUFS_CLONE_ALIVE_MS = "2000";
    const started = Date.now();
    try {
      await expect(job.ctl.write(0, `clone 0 ${address}/${targetJob.sid}/${pk}\n`)).rejects.toThrow(
        `${address}: no answer for 2 s during the copy,`,
      );
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      clearInterval(watch);
      if (saved === undefined) delete process.env.XCPUFS_CLONE_ALIVE_MS;
      else process.env.XCPUFS_CLONE_ALIVE_MS = saved;
      child.kill("SIGCONT");
    }
    await job.close();
    await fs.close();
    target.client.destroy();
    await stopChild(child);
  }, 90_000);

  const root = process.getuid?.() === 0;
  let ip = "";
  try {
    ip = execFileSync("sh", ["-c", "command -v ip"], { encoding: "utf8" }).trim();
  } catch {
    ip = "";
  }
  const why = !root ? "not root" : !ip ? "ip (iproute2) missing" : "";
  if (why) console.log(`skipping the network-namespace tree spawn: ${why}`);

  it.skipIf(why !== "")(
    "clones a session across 4 network-namespace hosts",
    async () => {
      const tag = String(process.pid % 10000);
      // A /24 of 198.18.0.0/15 per process: a bridge left by an earlier run that was killed keeps
      // its route, and must not catch this run's traffic.
      const net = `198.18.${(process.pid % 250) + 1}`;
      const br = `xcbr${tag}`;
      const names = [0, 1, 2, 3].map((i) => `xcns${tag}-${i}`);
      const sh = (args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
      const cleanup = () => {
        for (const n of names) {
          try {
            sh(["netns", "del", n]);
          } catch {
            // not there
          }
        }
        try {
          sh(["link", "del", br]);
        } catch {
          // not there
        }
      };
      const nodeProcs: ChildProcess[] = [];
      try {
        cleanup(); // names left by an earlier process with the same tag
        sh(["link", "add", br, "type", "bridge"]);
        sh(["addr", "add", `${net}.254/24`, "dev", br]);
        sh(["link", "set", br, "up"]);
        const addresses: string[] = [];
        for (let i = 0; i < 4; i++) {
          const ns = names[i] as string;
          const host = `xcv${tag}h${i}`;
          sh(["netns", "add", ns]);
          sh(["link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns]);
          sh(["link", "set", host, "master", br]);
          sh(["link", "set", host, "up"]);
          sh(["-n", ns, "addr", "add", `${net}.${i + 1}/24`, "dev", "eth0"]);
          sh(["-n", ns, "link", "set", "eth0", "up"]);
          sh(["-n", ns, "link", "set", "lo", "up"]);
          const dir = nodeDirWithAlice(join(tmp, `ns${i}`));
          const child = spawn(
            "ip",
            [
              "netns",
              "exec",
              ns,
              process.execPath,
              ...xcpufsArgs(
                "--listen",
                `${net}.${i + 1}`,
                "-p",
                "6667",
                "-s",
                "-a",
                join(dir, "admin.pub"),
                "-t",
                dir,
                "--state-dir",
                join(dir, "state"),
              ),
            ],
            { cwd: PKG, stdio: ["ignore", "ignore", "pipe"] },
          );
          nodeProcs.push(child);
          children.push(child);
          addresses.push(`tcp!${net}.${i + 1}!6667`);
        }
        // wait until every node answers
        for (const a of addresses) {
          await until(async () => {
            try {
              const fs = await login(a, { uname: "alice", uid: 6001, key: alice.privateKey });
              await fs.close();
              return true;
            } catch {
              return false;
            }
          }, 90_000);
        }
        await treeJob(addresses, { uname: "alice", uid: 6001, key: alice }, 1);
      } finally {
        for (const c of nodeProcs) c.kill("SIGTERM");
        await Promise.all(
          nodeProcs.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once("exit", r)))),
        );
        cleanup();
      }
      const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
      for (const n of names) expect(left).not.toContain(n);
    },
    240_000,
  );
});
void OREAD;
