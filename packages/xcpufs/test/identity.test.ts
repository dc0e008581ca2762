// As root, programs run as the session owner: uid, default gid and supplementary groups.

import { statSync } from "node:fs";
import { OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, describe, expect, it } from "vitest";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { cmd, login, openJob, readAll, rsaKey, STARTERS, write } from "./helpers.js";

const root = process.getuid?.() === 0;
if (!root) console.log("skipping the identity tests: not root");
const admin = rsaKey();
const user = rsaKey();
let h: XcpufsHandle | undefined;
afterAll(() => h?.close());

describe.skipIf(!root)("program identity as root", () => {
  it("runs as the owner with uid, gid and supplementary groups; fs/ belongs to the owner", async () => {
    h = await startXcpufs({ port: 0, listen: "127.0.0.1", adminKey: admin.line });
    const a = await login(h.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
    await cmd(
      a,
      "ctl",
      `group-add crew 6100\ngroup-add extra 6102\nuser-add zed 6101 crew '${user.line}'\nuser-add plain 6103 crew ''\nuser-add-group zed extra\n`,
    );
    await a.close();
    const fs = await login(h.address, { uname: "zed", uid: 6101, key: user.privateKey });
    const job = await openJob(fs);
    const dir = h.xcpufs.sessions.get(Number(job.sid))?.dir as string;
    expect(statSync(dir).uid).toBe(6101);
    const f = await fs.create(`${job.sid}/fs/mine.txt`, 0o600, OWRITE);
    await f.write(0, "private\n");
    await f.clunk();
    expect(statSync(`${dir}/mine.txt`).uid).toBe(6101);
    await write(fs, `${job.sid}/argv`, "sh -c 'id -u; id -g; id -G; cat mine.txt'");
    await job.ctl.write(0, "exec /bin/sh\n");
    const out = (await readAll(job.stdout)).toString().split("\n");
    expect(out.slice(0, 4)).toEqual(["6101", "6100", "6100 6102", "private"]);
    await job.close();
    // a user without supplementary groups: spawned directly, groups cleared
    const p = await login(h.address, { uname: "plain", uid: 6103 });
    const job2 = await openJob(p);
    await write(p, `${job2.sid}/argv`, "sh -c 'id -u; id -G'");
    await job2.ctl.write(0, "exec /bin/sh\n");
    expect((await readAll(job2.stdout)).toString()).toBe("6103\n6100\n");
    await job2.close();
    await p.close();
    await fs.close();
  });
});

describe.skipIf(!root)("a directory named at exec, as root", () => {
  // The spawn() route enters such a directory through a command of the host (perl) that already
  // runs as the user. The session's LD_LIBRARY_PATH names the session directory, where a job may
  // stage libraries of its own: here a broken libc.so.6, which must reach the program only.
  for (const { label, opts } of STARTERS) {
    it(`the loader's variables reach the program, not the command entering the directory (${label})`, async () => {
      const node = await startXcpufs({ port: 0, listen: "127.0.0.1", adminKey: admin.line, ...opts });
      try {
        const a = await login(node.address, { uname: "xcpu-admin", uid: 65530, key: admin.privateKey });
        await cmd(
          a,
          "ctl",
          "group-add crew 6200\ngroup-add extra 6202\nuser-add lib 6201 crew ''\nuser-add-group lib extra\nuser-add solo 6203 crew ''\n",
        );
        await a.close();
        for (const [uname, uid] of [
          ["lib", 6201],
          ["solo", 6203],
        ] as const) {
          const fs = await login(node.address, { uname, uid });
          const job = await openJob(fs);
          const dir = node.xcpufs.sessions.get(Number(job.sid))?.dir as string;
          const lib = await fs.create(`${job.sid}/fs/libc.so.6`, 0o644, OWRITE);
          await lib.write(0, "not a library");
          await lib.clunk();
          await write(fs, `${job.sid}/argv`, "sh -c 'echo $LD_LIBRARY_PATH; pwd'");
          await job.ctl.write(0, "exec /bin/busybox /tmp\n");
          const [out, err, status] = await Promise.all([
            readAll(job.stdout),
            readAll(job.stderr),
            readAll(job.wait),
          ]);
          expect([out.toString(), err.toString(), status.toString()]).toEqual([`${dir}\n/tmp\n`, "", "0"]);
          await job.close();
          await fs.close();
        }
      } finally {
        await node.close();
      }
    });
  }
});
