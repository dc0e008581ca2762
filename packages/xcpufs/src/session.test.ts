import { setMaxListeners } from "node:events";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { liveInGroup, until } from "../test/helpers.js";
import { makeSessionDir, removeTree, Session, type SessionHost, State } from "./session.js";
import type { User } from "./users.js";

const base = mkdtempSync(join(tmpdir(), "xcpufs-session-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
const user: User = { name: "u", uid: process.getuid?.() ?? 0, gid: 0, groups: new Set(), key: undefined };
const host: SessionHost = {
  setpriv: undefined,
  retain: false,
  destroyed: () => {},
  changed: () => {},
  log: { debug: () => {}, warn: () => {} },
};
let next = 0;
async function session(argv: string, env = "PATH=/usr/bin:/bin\n"): Promise<Session> {
  const dir = await makeSessionDir(base, undefined);
  const s = new Session(next++, user, dir, Buffer.from(env), host);
  s.incref();
  s.argv = Buffer.from(argv);
  return s;
}
async function readAll(s: Session, which: "stdout" | "stderr", key: object = {}): Promise<string> {
  let out = "";
  for (;;) {
    const b = await s[which].read(key, 8192);
    if (b.length === 0) return out;
    out += b.toString();
  }
}

describe("Session", () => {
  it("runs a program and reports output and status", async () => {
    const s = await session("echo hello 'big world'");
    await s.exec("/bin/echo", undefined, {}, "127.0.0.1!1");
    expect(s.state).toBe(State.Running);
    expect(await readAll(s, "stdout")).toBe("hello big world\n");
    await s.waitExit();
    expect(s.waitText).toBe("0");
    expect(s.state).toBe(State.Finished);
    expect(s.env.toString()).toContain(`XCPUSID=${s.id}`);
  });
  it("feeds stdin written before the start, then EOF on close", async () => {
    const s = await session("cat");
    await s.stdin.write(Buffer.from("early "));
    await s.exec("/bin/cat", undefined, {}, "x");
    await s.stdin.write(Buffer.from("late\n"));
    s.stdin.close();
    expect(await readAll(s, "stdout")).toBe("early late\n");
    await s.waitExit();
    await expect(s.stdin.write(Buffer.from("x"))).rejects.toThrow("stdin closed");
  });
  it("withdraws a flushed stdin write the pipe has not taken, and keeps the order of the rest", async () => {
    // 1 MiB, more than the pipe (a socket pair with spawn()) and Node's buffer take; cat reads
    // only once the flush is done (a file the test makes then), however slow the machine.
    const go = join(base, `go-${next}`);
    // (At most a minute: no server wipes this session if the test dies first.)
    const wait = `i=0; while [ ! -e ${go} ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done`;
    const s = await session(`sh -c '${wait}; exec cat'`);
    await s.exec("/bin/sh", undefined, {}, "x");
    const chunk = (i: number) => Buffer.alloc(16384, 48 + (i % 64));
    const flush = new AbortController();
    const writes = Array.from({ length: 64 }, (_, i) =>
      s.stdin.write(chunk(i), i === 60 ? flush.signal : undefined),
    );
    flush.abort(new Error("flushed"));
    await expect(writes[60]).rejects.toThrow("flushed");
    writeFileSync(go, "");
    const out = readAll(s, "stdout");
    for (const [i, w] of writes.entries()) if (i !== 60) expect(await w).toBe(16384);
    s.stdin.close();
    const want = Buffer.concat(Array.from({ length: 64 }, (_, i) => (i === 60 ? Buffer.alloc(0) : chunk(i))));
    expect(Buffer.from(await out).equals(want)).toBe(true);
    await s.waitExit();
    expect(s.waitText).toBe("0");
  });
  it("answers a flushed stdin write at once when the program does not read", async () => {
    const s = await session("sleep 30");
    await s.exec("/bin/sleep", undefined, {}, "x");
    const flush = new AbortController();
    // One signal for 64 writes (the server gives each request its own): not a listener leak.
    setMaxListeners(64, flush.signal);
    const writes = Array.from({ length: 64 }, () => s.stdin.write(Buffer.alloc(16384), flush.signal));
    await until(async () => (await Promise.race([writes[0], undefined])) === 16384);
    flush.abort(new Error("flushed"));
    const settled = await Promise.allSettled(writes);
    expect(settled.filter((r) => r.status === "rejected").length).toBeGreaterThan(0);
    s.signal(9);
    await s.waitExit();
  });
  it("reports exit codes and signals as wait statuses", async () => {
    const a = await session("sh -c 'exit 3'");
    await a.exec("/bin/sh", undefined, {}, "x");
    await a.waitExit();
    expect(a.waitText).toBe("768");
    const b = await session("sleep 30");
    await b.exec("/bin/sleep", undefined, {}, "x");
    b.signal(9);
    await b.waitExit();
    expect(b.waitText).toBe("9");
  });
  it("reports a program that cannot be started like a failed execve", async () => {
    const s = await session("nothere");
    await s.exec("nothere", undefined, {}, "x");
    await s.waitExit();
    expect(s.waitText).toBe("512");
    expect(await readAll(s, "stderr")).toContain("nothere");
    expect(await readAll(s, "stdout")).toBe("");
  });
  it("passes env and argv exactly", async () => {
    const s = await session(
      "sh -c 'printf \"%s|\" \"$@\"; printf \"%s\" \"$MSG\"' zero '' 'a b' 'it''s'",
      "'MSG=hello world'\n",
    );
    await s.exec("/bin/sh", undefined, {}, "x");
    expect(await readAll(s, "stdout")).toBe("|a b|it's|hello world");
  });
  it("gives each waiting reader the same data; later readers do not see it", async () => {
    const s = await session("sh -c 'read x; echo $x; read y; echo $y'");
    await s.exec("/bin/sh", undefined, {}, "x");
    const r1 = {};
    const r2 = {};
    const p1 = s.stdout.read(r1, 100);
    const p2 = s.stdout.read(r2, 100);
    await s.stdin.write(Buffer.from("one\n"));
    expect((await p1).toString()).toBe("one\n");
    expect((await p2).toString()).toBe("one\n");
    // a reader that goes away does not swallow the next piece
    const gone = s.stdout.read({ gone: true }, 100);
    s.stdout.cancel({});
    const dead = {};
    const pDead = s.stdout.read(dead, 100);
    s.stdout.cancel(dead);
    expect((await pDead).length).toBe(0);
    void gone;
    const p3 = s.stdout.read(r1, 100);
    await s.stdin.write(Buffer.from("two\n"));
    expect((await p3).toString()).toBe("two\n");
    s.stdin.close();
    await s.waitExit();
  });
  it("blocks a program whose output nobody reads", async () => {
    const s = await session("sh -c 'head -c 4000000 /dev/zero; echo done >&2'");
    await s.exec("/bin/sh", undefined, {}, "x");
    await new Promise((r) => setTimeout(r, 300));
    expect(s.state).toBe(State.Running);
    const n = (await readAll(s, "stdout")).length;
    expect(n).toBe(4000000);
    await s.waitExit();
    expect(await readAll(s, "stderr")).toBe("done\n");
  });
  it("wipe kills the process group and removes the directory", async () => {
    const s = await session("sh -c 'sleep 60 & sleep 60'");
    await s.exec("/bin/sh", undefined, {}, "x");
    const pid = s.pid;
    await new Promise((r) => setTimeout(r, 100));
    s.wipe();
    await s.gone;
    expect(existsSync(s.dir)).toBe(false);
    // The background sleep dies of the group's signal on its own time (it is not our child).
    await until(() => liveInGroup(pid).length === 0);
    await expect(s.exec("/bin/true", undefined, {}, "x")).rejects.toThrow("session wiped");
  });
});

describe("removeTree", () => {
  it("removes an empty or a used directory, files, links and subdirectories, never what a link points to", async () => {
    const outside = mkdtempSync(join(base, "outside-"));
    writeFileSync(join(outside, "keep"), "x");
    for (const used of [false, true]) {
      const empty = mkdtempSync(join(base, "t-"));
      await removeTree(empty, used);
      expect(existsSync(empty)).toBe(false);

      const files = mkdtempSync(join(base, "t-"));
      writeFileSync(join(files, "a"), "a");
      writeFileSync(join(files, "b"), "b");
      symlinkSync(outside, join(files, "link"));
      await removeTree(files, used);
      expect(existsSync(files)).toBe(false);

      // more files than are removed synchronously: the rest goes through fs.rm
      const many = mkdtempSync(join(base, "t-"));
      for (let i = 0; i < 100; i++) writeFileSync(join(many, `f${i}`), "x");
      await removeTree(many, used);
      expect(existsSync(many)).toBe(false);

      const deep = mkdtempSync(join(base, "t-"));
      mkdirSync(join(deep, "sub/subsub"), { recursive: true });
      writeFileSync(join(deep, "sub/subsub/f"), "f");
      writeFileSync(join(deep, "top"), "t");
      await removeTree(deep, used);
      expect(existsSync(deep)).toBe(false);

      // the session directory replaced by a link: the link goes, its target stays
      const link = join(base, `link-${used}`);
      symlinkSync(outside, link);
      await removeTree(link, used);
      expect(existsSync(link)).toBe(false);
      expect(readdirSync(outside)).toEqual(["keep"]);

      await removeTree(join(base, "never-made"), used);

      // nested directories holding links out: the links go, nothing they point to
      const nested = mkdtempSync(join(base, "t-"));
      mkdirSync(join(nested, "a/b"), { recursive: true });
      writeFileSync(join(nested, "a/b/f"), "f");
      symlinkSync(outside, join(nested, "a/out"));
      symlinkSync(outside, join(nested, "a/b/out2"));
      symlinkSync(join(outside, "keep"), join(nested, "a/keep-link"));
      await removeTree(nested, used);
      expect(existsSync(nested)).toBe(false);
      expect(readdirSync(outside)).toEqual(["keep"]);
    }
  });
});

describe("removeTree and a directory swapped for a link while it is being removed", () => {
  it("removes the link, not what it points to", async () => {
    const fsp = createRequire(import.meta.url)("node:fs/promises") as Record<string, unknown>;
    const realReaddir = fsp.readdir as (...a: unknown[]) => Promise<unknown>;
    const outside = mkdtempSync(join(base, "outside-"));
    writeFileSync(join(outside, "keep"), "x");
    const dir = mkdtempSync(join(base, "t-"));
    mkdirSync(join(dir, "a"));
    writeFileSync(join(dir, "a", "keep"), "inside");
    mkdirSync(join(dir, "sub"));
    let swapped = false;
    // Right after the session directory is listed, its program swaps `a` for a link out.
    fsp.readdir = async (...a: unknown[]) => {
      const out = await realReaddir(...a);
      if (!swapped) {
        swapped = true;
        renameSync(join(dir, "a"), join(dir, "sub", "a.old"));
        symlinkSync(outside, join(dir, "a"));
      }
      return out;
    };
    syncBuiltinESMExports();
    try {
      await removeTree(dir, true);
    } finally {
      fsp.readdir = realReaddir;
      syncBuiltinESMExports();
    }
    expect(swapped).toBe(true);
    expect(existsSync(dir)).toBe(false);
    expect(readdirSync(outside)).toEqual(["keep"]);
  });
});
