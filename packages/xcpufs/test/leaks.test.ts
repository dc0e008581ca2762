// What a long-running node must not accumulate job after job: descriptors, processes, directories.

import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Fsys } from "@clustermatic/ninep/client";
import { mount } from "@clustermatic/ninep/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ForkHelper, findPerl, type HelperChild } from "../src/fork-helper.js";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { makeSessionDir, Session, type SessionHost } from "../src/session.js";
import type { User } from "../src/users.js";
import { openJob, readAll, STARTERS, sessionDirsIn, until, write } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "xcpufs-leaks-"));
let h: XcpufsHandle;
let fs: Fsys;
const uid = process.getuid?.() ?? 0;
const TEST_USER: User = { name: "u", uid, gid: process.getgid?.() ?? 0, groups: new Set(), key: undefined };

/** This process's open pipes. */
function pipes(): Set<string> {
  const out = new Set<string>();
  for (const n of readdirSync("/proc/self/fd")) {
    try {
      const l = readlinkSync(`/proc/self/fd/${n}`);
      if (l.startsWith("pipe:")) out.add(`${n} ${l}`);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** One job: `prog` with `argv`, stdin left open (or closed first), to its end; files clunked. */
async function job(prog: string, argv: string, closeStdin: boolean): Promise<string> {
  const j = await openJob(fs);
  await write(fs, `${j.sid}/argv`, argv);
  await j.ctl.write(0, `exec ${prog}\n`);
  if (closeStdin) await j.ctl.write(0, "close stdin\n");
  const [, , status] = await Promise.all([readAll(j.stdout), readAll(j.stderr), readAll(j.wait)]);
  await j.close();
  await until(() => !h.xcpufs.sessions.has(Number(j.sid)));
  return status.toString();
}

beforeAll(async () => {
  h = await startXcpufs({ port: 0, noAuth: true, tmpdir: tmp, env: { PATH: "/usr/bin:/bin" } });
  fs = await mount(h.address, { uname: "tester", n_uname: uid, authenticate: async () => {} });
});
afterAll(async () => {
  await fs?.close();
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(!findPerl())("nothing left behind by jobs (fork helper)", () => {
  // xcpufs opens its own end of each program's stdin pipe from the fork helper; when the program
  // ended before `close stdin` (or the client never sent it), that descriptor stayed open for
  // the life of the server: one pipe per job, until the server ran out of descriptors.
  it("a program that ends with its stdin still open leaves no pipe open in the server", async () => {
    // The fork helper (and its pipes) starts with the first program.
    expect(await job("/bin/true", "true", true)).toBe("0");
    const before = pipes();
    for (let i = 0; i < 8; i++) expect(await job("/bin/true", "true", false)).toBe("0");
    // Ended before the client's `close stdin` came.
    for (let i = 0; i < 4; i++) expect(await job("/bin/sh", "sh -c 'exec 0<&-; exit 0'", false)).toBe("0");
    const left = [...pipes()].filter((p) => !before.has(p));
    expect(left).toEqual([]);
    expect(sessionDirsIn(tmp)).toEqual([]);
  });
});

describe.skipIf(!findPerl())("a program reported ended as soon as started", () => {
  // The helper's report of a start and of the end of a program that ended at once can come in
  // one read: the session then learnt of the end before it had recorded the start, and kept the
  // pid of a process already reaped (a later `kill` or `signal` went to whoever had the pid by
  // then) and the program's stdin pipe. Here the helper's answer is held back until the program
  // has ended, which makes that order certain.
  it("leaves the session with no pid and its stdin pipe closed", async () => {
    const helper = ForkHelper.start()!;
    const children: HelperChild[] = [];
    const late = {
      alive: true,
      async spawn(req: Parameters<ForkHelper["spawn"]>[0]): Promise<HelperChild> {
        const c = await helper.spawn(req);
        await new Promise<void>((r) => c.onExit(() => r()));
        children.push(c);
        return c;
      },
    } as unknown as ForkHelper;
    const host: SessionHost = {
      forkHelper: () => late,
      setpriv: undefined,
      retain: false,
      destroyed: () => {},
      changed: () => {},
      log: { debug: () => {}, warn: () => {} },
    };
    try {
      for (let i = 0; i < 3; i++) {
        const s = new Session(i, TEST_USER, await makeSessionDir(tmp, undefined), Buffer.from(""), host);
        s.incref();
        s.argv = Buffer.from("sh -c 'exit 5'");
        await s.exec("/bin/sh", undefined, {}, "x");
        await s.waitExit();
        expect(s.waitText).toBe(String(5 << 8));
        expect(s.pid).toBe(-1);
        expect(children[i]?.stdin?.destroyed ?? true).toBe(true);
        s.decref();
        await s.gone;
      }
    } finally {
      helper.close();
    }
  });
});

describe("close stdout or stderr before exec", () => {
  // `close stdout` before the program started marked the stream ended, but the program's pipe,
  // attached at the start, was then never read nor closed: once it was full the program stopped
  // for good, and with it the session's `wait`. Its writes now fail, as after a later `close`.
  for (const { label, opts } of STARTERS) {
    it(`the program's writes fail and its wait returns (${label})`, async () => {
      const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: tmp, ...opts });
      const f = await mount(node.address, { uname: "tester", n_uname: uid, authenticate: async () => {} });
      try {
        for (const [stream, redirect] of [
          ["stdout", ""],
          ["stderr", " >&2"],
        ] as const) {
          const j = await openJob(f);
          await write(f, `${j.sid}/argv`, `sh -c 'exec head -c 300000 /dev/zero${redirect}'`);
          await j.ctl.write(0, `close ${stream}\nexec /bin/sh\n`);
          let timer: NodeJS.Timeout | undefined;
          const outcome = await Promise.race([
            Promise.all([readAll(j.stdout), readAll(j.stderr), readAll(j.wait)]).then(([o, e, w]) => ({
              out: o.length,
              err: e.length,
              status: w.toString(),
            })),
            new Promise<string>((r) => {
              timer = setTimeout(
                () => r(`close ${stream}: the program's wait did not return within 20 s`),
                20_000,
              );
            }),
          ]).finally(() => clearTimeout(timer));
          if (!opts.noForkHelper || (typeof outcome === "object" && outcome.status === "13")) {
            // head ends by SIGPIPE (13) at its first write into the closed pipe.
            expect(outcome).toEqual({ out: 0, err: 0, status: "13" });
          } else {
            // spawn()'s stdio are socket pairs: when head had written before the server let go
            // of its end, the kernel fails the next write with ECONNRESET (no SIGPIPE), and head
            // says so and exits 1. The write still fails and wait still returns.
            expect(outcome).toMatchObject({ out: 0, status: String(1 << 8) });
            if (stream === "stdout" && typeof outcome === "object") expect(outcome.err).toBeGreaterThan(0);
          }
          await j.close();
        }
      } finally {
        // The node first: it ends a program still running, and with it the reads still waiting.
        await node.close();
        await f.close();
      }
    }, 60_000);
  }
});

describe("a flushed stdin write", () => {
  // A stdin write the program did not take went on to the program even when flushed, and its
  // Tflush was held until the server gave up on it (a second). Now the write is withdrawn.
  for (const [i, { label, opts }] of STARTERS.entries()) {
    it(`is answered at once and withdrawn while the program does not read (${label})`, async () => {
      const node = await startXcpufs({ port: 0, noAuth: true, tmpdir: tmp, ...opts });
      const f = await mount(node.address, { uname: "tester", n_uname: uid, authenticate: async () => {} });
      // The program reads nothing until the test says so (a fixed sleep could end, on a busy
      // machine, before the writes are flushed, and then every write would be taken).
      const go = join(tmp, `go-${i}`);
      try {
        const j = await openJob(f);
        await write(f, `${j.sid}/argv`, `sh -c 'while [ ! -e ${go} ]; do sleep 0.05; done; exec wc -c'`);
        await j.ctl.write(0, "exec /bin/sh\n");
        const flush = new AbortController();
        const writes = Array.from({ length: 64 }, (_, i) =>
          j.stdin.write(i * 16384, Buffer.alloc(16384), { signal: flush.signal }),
        );
        await writes[0];
        flush.abort();
        const settled = await Promise.allSettled(writes);
        const answered = settled.filter((r) => r.status === "fulfilled").length * 16384;
        expect(answered).toBeLessThan(64 * 16384);
        await j.stdin.clunk();
        await j.ctl.write(0, "close stdin\n");
        writeFileSync(go, "");
        const delivered = Number((await readAll(j.stdout)).toString().trim());
        // What was answered arrived; of the rest, at most what had gone into the pipe already.
        expect(delivered).toBeGreaterThanOrEqual(answered);
        expect(delivered).toBeLessThanOrEqual(answered + 65536 + 16384);
        expect((await readAll(j.wait)).toString()).toBe("0");
        await j.close();
      } finally {
        await node.close();
        await f.close();
      }
    }, 30_000);
  }
});
