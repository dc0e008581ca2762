// Running programs through the session files, over real sockets, with real child processes.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Fsys } from "@clustermatic/ninep/client";
import { mount } from "@clustermatic/ninep/client";
import { OREAD, OTRUNC, OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROCS_HEADER, startXcpufs, type XcpufsHandle } from "../src/index.js";
import {
  liveInGroup,
  liveWithMarker,
  openJob,
  readAll,
  run,
  sessionDirsIn,
  until,
  untilExecuted,
  write,
} from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "xcpufs-jobs-"));
let h: XcpufsHandle;
let fs: Fsys;
const uid = process.getuid?.() ?? 0;
const open = (f: Fsys) => f;

beforeAll(async () => {
  h = await startXcpufs({ port: 0, noAuth: true, tmpdir: tmp, env: { PATH: "/usr/bin:/bin" } });
  fs = await mount(h.address, { uname: "tester", n_uname: uid, authenticate: async () => {} });
});
afterAll(async () => {
  await fs?.close();
  await h?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const sessionDirs = () => sessionDirsIn(tmp);

describe("jobs", () => {
  it("echo: output, status, and the session disappears afterwards", async () => {
    const r = await run(fs, "/bin/echo", "echo hello world");
    expect(r).toMatchObject({ out: "hello world\n", err: "", status: "0" });
    await until(() => !h.xcpufs.sessions.has(Number(r.sid)));
    expect((await fs.readdir("/")).map((s) => s.name)).not.toContain(r.sid);
  });
  it("sysinfo: load, memory, uptime", async () => {
    const text = (await fs.readFile("sysinfo")).toString();
    expect(text).toMatch(
      /^load [\d.]+ [\d.]+ [\d.]+\nmemtotal [1-9]\d*\nmemavail \d+\nuptime [\d.]+\nncpu \d+\nsessions \d+\n$/,
    );
  });
  it("env opened with the append bit (OWRITE|0x80, as libxcpu does) appends to the node default", async () => {
    const job = await openJob(fs);
    const before = (await fs.readFile(`${job.sid}/env`)).toString();
    expect(before).toBe("PATH=/usr/bin:/bin\n");
    const env = await fs.open(`${job.sid}/env`, OWRITE | 0x80);
    await env.write(0, "'EXTRA=a b'\n");
    await env.clunk();
    expect((await fs.readFile(`${job.sid}/env`)).toString()).toBe("PATH=/usr/bin:/bin\n'EXTRA=a b'\n");
    await job.close();
  });
  it("cat with stdin", async () => {
    const r = await run(fs, "/bin/cat", "cat", { stdin: "line one\nline two\n" });
    expect(r.out).toBe("line one\nline two\n");
    expect(r.status).toBe("0");
  });
  it("exit codes and signals in wait", async () => {
    expect((await run(fs, "/bin/sh", "sh -c 'exit 3'")).status).toBe("768");
    expect((await run(fs, "/bin/false", "false")).status).toBe("256");
    expect((await run(fs, "/bin/sh", "sh -c 'kill -USR1 $$'")).status).toBe("10");
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "exec /bin/sleep\n");
    await job.ctl.write(0, "signal SIGKILL\n");
    expect((await readAll(job.wait)).toString()).toBe("9");
    await job.close();
    const r = await run(fs, "/nonexistent/prog", "prog");
    expect(r.status).toBe("512");
    expect(r.err).toContain("/nonexistent/prog");
  });
  it("argv and env quoting, injected variables, cwd", async () => {
    const r = await run(
      fs,
      "/bin/sh",
      `sh -c 'printf "[%s]" "$@"; printf "{%s}{%s}{%s}" "$MSG" "$XCPUID" "$(pwd)"' zero 'a b' 'it''s' ''`,
      { env: "'MSG=hello world'\n" },
    );
    expect(r.out).toBe(
      "[a b][it's][]{hello world}{/1}{/tmp}".replace(
        "/tmp",
        join(
          tmp,
          r.out
            .split("{")
            .at(-1)
            ?.slice(tmp.length + 1, -1) ?? "",
        ),
      ),
    );
    expect(r.out).toMatch(new RegExp(`\\{${tmp}/(xcpufs-[^/}]+/)?xcpu-[^}]+\\}$`));
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sh -c 'echo $XCPUSID $XCPUPATH $XCPU_PARENT; pwd'");
    await job.ctl.write(0, "id job7/3\nexec /bin/sh /\n");
    const out = (await readAll(job.stdout)).toString();
    expect(out).toMatch(
      new RegExp(`^${job.sid} ${tmp}/(xcpufs-[^/]+/)?xcpu-\\S+ 127\\.0\\.0\\.1!\\d+\n/\n$`),
    );
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("job7/3");
    expect((await fs.readFile(`${job.sid}/env`)).toString()).toContain("XCPUID=job7/3");
    await job.close();
  });
  it("runs a program copied into fs/ by relative name", async () => {
    const job = await openJob(fs);
    const f = await fs.create(`${job.sid}/fs/hello.sh`, 0o755, OWRITE);
    await f.write(0, "#!/bin/sh\necho copied $1\n");
    await f.clunk();
    await write(fs, `${job.sid}/argv`, "hello.sh arg");
    await job.ctl.write(0, "exec hello.sh\n");
    expect((await readAll(job.stdout)).toString()).toBe("copied arg\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
  });
  it("ctl: errors are clear and leave the buffer usable", async () => {
    const job = await openJob(fs);
    await expect(job.ctl.write(0, "frob\n")).rejects.toThrow("unknown command");
    await expect(job.ctl.write(0, "signal SIGNOPE\n")).rejects.toThrow("unsupported signal");
    await expect(job.ctl.write(0, "type odd\n")).rejects.toThrow("invalid session type");
    await expect(job.ctl.write(0, "close stdfoo\n")).rejects.toThrow("invalid argument");
    await expect(job.ctl.write(0, "id a/-1\n")).rejects.toThrow("negative id not permitted");
    await expect(job.ctl.write(0, "id a/x\n")).rejects.toThrow("syntax error");
    await expect(job.ctl.write(0, "signal\n")).rejects.toThrow("argument expected");
    await expect(job.ctl.write(0, "exec 'unterminated\n")).rejects.toThrow("invalid format");
    await expect(job.ctl.write(0, "clone 2\n")).rejects.toThrow("too few arguments");
    await expect(job.ctl.write(0, "clone x a/1\n")).rejects.toThrow("invalid maxsession format");
    await expect(job.ctl.write(0, "clone 2 nosid\n")).rejects.toThrow("invalid address format");
    // a partial line waits for the rest
    expect(await job.ctl.write(0, "id j")).toBe(4);
    expect(await job.ctl.write(0, "ob/2\n")).toBe(5);
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("job/2");
    expect((await fs.readFile(`${job.sid}/ctl`)).toString()).toBe("-1");
    await job.ctl.write(0, "id /5\nadd x\ndel y\n");
    expect((await fs.readFile(`${job.sid}/id`)).toString()).toBe("job/5");
    await job.ctl.write(0, "wipe\n");
    await expect(job.ctl.write(0, "exec /bin/true\n")).rejects.toThrow("session wiped");
    await job.close();
    // the root ctl belongs to xcpu-admin
    await expect(fs.open("ctl", OWRITE)).rejects.toThrow("permission denied");
  });
  it("session files take a truncation with times (Linux v9fs after open with O_TRUNC), nothing else", async () => {
    const job = await openJob(fs);
    const now = Math.floor(Date.now() / 1000);
    const ctl = await fs.walk(`${job.sid}/ctl`);
    await ctl.wstat({ length: 0n, mtime: now, atime: now });
    await expect(ctl.wstat({ mtime: now })).rejects.toThrow("unsupported operation");
    await expect(ctl.wstat({ length: 0n, mode: 0o600 })).rejects.toThrow("unsupported operation");
    await ctl.clunk();
    const argv = await fs.open(`${job.sid}/argv`, OWRITE);
    await argv.write(0, "prog one two");
    await argv.clunk();
    const again = await fs.walk(`${job.sid}/argv`);
    // growing is bounded as writing is (1 MiB): a wstat must not make the server allocate more
    for (const big of [2n ** 20n + 1n, 2n ** 40n, 2n ** 63n - 1n]) {
      await expect(again.wstat({ length: big })).rejects.toThrow("file too large");
    }
    const past = await fs.open(`${job.sid}/argv`, OWRITE);
    await expect(past.write(2 ** 20 - 2, "xyz")).rejects.toThrow("file too large");
    await past.clunk();
    await again.wstat({ length: 2n ** 20n });
    expect((await fs.stat(`${job.sid}/argv`)).length).toBe(2n ** 20n);
    await again.wstat({ length: 4n, mtime: now });
    await again.clunk();
    expect((await fs.readFile(`${job.sid}/argv`)).toString()).toBe("prog");
    await job.ctl.write(0, "exec /bin/echo\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
    // The root ctl takes it too (nothing to discard); the root env still only from the admin.
    const rootCtl = await fs.walk("ctl");
    await rootCtl.wstat({ length: 0n, mtime: now, atime: now });
    await expect(rootCtl.wstat({ mode: 0o666 })).rejects.toThrow("permission denied");
    await rootCtl.clunk();
    const rootEnv = await fs.walk("env");
    await expect(rootEnv.wstat({ length: 0n, mtime: now })).rejects.toThrow("permission denied");
    await rootEnv.clunk();
    const admin = await mount(h.address, {
      uname: "xcpu-admin",
      n_uname: 65530,
      authenticate: async () => {},
    });
    try {
      for (const name of ["env", "state"]) {
        const f = await admin.walk(name);
        await expect(f.wstat({ length: 2n ** 40n })).rejects.toThrow("file too large");
        await f.clunk();
      }
    } finally {
      await admin.close();
    }
  });
  it("arguments no program could receive are an error, and the session stays usable", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "echo a\0b");
    await expect(job.ctl.write(0, "exec /bin/echo\n")).rejects.toThrow("arguments bad format (NUL byte)");
    await write(fs, `${job.sid}/argv`, "echo fine");
    await job.ctl.write(0, "exec /bin/echo\n");
    expect((await readAll(job.stdout)).toString()).toBe("fine\n");
    await job.close();
  });
  it("a second exec on a running session is refused", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "sleep 30");
    await job.ctl.write(0, "exec /bin/sleep\n");
    await expect(job.ctl.write(0, "exec /bin/sleep\n")).rejects.toThrow("session already running");
    const pid = Number((await fs.readFile(`${job.sid}/ctl`)).toString());
    expect(pid).toBeGreaterThan(0);
    await job.ctl.write(0, "kill\n");
    expect((await readAll(job.wait)).toString()).toBe("9");
    await job.close();
  });
  it("a flushed read of stdout goes away without taking data", async () => {
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, "cat");
    await job.ctl.write(0, "exec /bin/cat\n");
    const ac = new AbortController();
    const flushed = job.stdout.read(0, 100, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 50));
    ac.abort(new Error("flushed"));
    await expect(flushed).rejects.toThrow("flushed");
    await job.stdin.write(0, "after flush\n");
    expect((await job.stdout.read(0, 100)).toString()).toBe("after flush\n");
    await job.ctl.write(0, "close stdin\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
  });
  it("every waiting reader of stdout gets the data", async () => {
    const job = await openJob(fs);
    const second = await fs.open(`${job.sid}/stdout`, OREAD);
    await write(fs, `${job.sid}/argv`, "cat");
    await job.ctl.write(0, "exec /bin/cat\n");
    const p1 = job.stdout.read(0, 100);
    const p2 = second.read(0, 100);
    await new Promise((r) => setTimeout(r, 50));
    await job.stdin.write(0, "shared\n");
    expect((await p1).toString()).toBe("shared\n");
    expect((await p2).toString()).toBe("shared\n");
    await job.ctl.write(0, "close stdin\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    expect((await job.stdout.read(0, 100)).length).toBe(0);
    await second.clunk();
    await job.close();
  });
  it("without authentication, another uid with the same name still cannot touch a session", async () => {
    const job = await openJob(fs);
    const other = await mount(h.address, {
      uname: "tester",
      n_uname: uid + 4242,
      authenticate: async () => {},
    });
    const dir = await other.walk(job.sid);
    await expect(dir.walk("ctl")).rejects.toThrow("permission denied");
    await dir.clunk();
    await other.close();
    await job.close();
  });
  it("persistent sessions outlive their clients until wiped", async () => {
    const other = await mount(h.address, { uname: "tester", n_uname: uid, authenticate: async () => {} });
    const job = await openJob(other);
    await job.ctl.write(0, "type persistent\n");
    await write(other, `${job.sid}/argv`, "sh -c 'echo kept'");
    await job.ctl.write(0, "exec /bin/sh\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    await other.close();
    await new Promise((r) => setTimeout(r, 100));
    const s = h.xcpufs.sessions.get(Number(job.sid));
    expect(s).toBeDefined();
    expect((await fs.readFile(`${job.sid}/wait`)).toString()).toBe("0");
    expect(existsSync(s?.dir ?? "")).toBe(true);
    const ctl = await fs.open(`${job.sid}/ctl`, OWRITE);
    await ctl.write(0, "wipe\n");
    await ctl.clunk();
    await s?.gone;
    expect(existsSync(s?.dir ?? "x")).toBe(false);
    expect(h.xcpufs.sessions.has(Number(job.sid))).toBe(false);
  });
  it("procs lists session processes and their children with session and job ids", async () => {
    const marker = `procs-${process.pid}`;
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, `sh -c 'sleep 30 & exec sleep 31' ${marker}`);
    await job.ctl.write(0, "id pj/4\nexec /bin/sh\n");
    const pid = Number((await fs.readFile(`${job.sid}/ctl`)).toString());
    await until(() => liveInGroup(pid).length >= 2);
    const text = (await fs.readFile("procs")).toString();
    expect(text.startsWith(PROCS_HEADER)).toBe(true);
    const lines = text.split("\n").filter((l) => l.includes(" pj/4 ) "));
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) {
      expect(l).toMatch(
        new RegExp(
          `^\\(\\d+ \\(.*\\) [RSDZT] \\d+ ${pid} ${pid} \\?\\? -?\\d+( \\S+){17} ${job.sid} pj/4 \\) $`,
        ),
      );
    }
    expect(text).toMatch(new RegExp(`\\n\\(${process.pid} \\(.*\\) \\S .* '' '' \\) \\n`));
    await job.close();
    await until(() => liveInGroup(pid).length === 0);
  });
  it("procs holds command lines and job ids as UTF-8, each byte once", async () => {
    const marker = `utf8-${process.pid}`;
    const job = await openJob(fs);
    await write(fs, `${job.sid}/argv`, `sh -c 'sleep 30' ${marker} café`);
    await job.ctl.write(0, "id jöb/2\nexec /bin/sh\n");
    const pid = Number((await fs.readFile(`${job.sid}/ctl`)).toString());
    await untilExecuted(pid, "sh");
    const bytes = await fs.readFile("procs");
    const line = bytes
      .toString("utf8")
      .split("\n")
      .find((l) => l.includes(marker));
    expect(line).toMatch(
      new RegExp(`^\\(${pid} \\(sh -c 'sleep 30' ${marker} café\\) .* ${job.sid} jöb/2 \\) $`),
    );
    // not encoded twice (é is c3 a9, ö is c3 b6)
    expect(bytes.includes(Buffer.from("café jöb", "latin1"))).toBe(false);
    expect(bytes.includes(Buffer.from(`${marker} caf\u00c3\u00a9`, "utf8"))).toBe(false);
    await job.close();
    await until(() => liveInGroup(pid).length === 0);
  });
  it("a client that disconnects mid-run leaves no process and no directory", async () => {
    const marker = `disc-${process.pid}`;
    const c = await mount(h.address, { uname: "tester", n_uname: uid, authenticate: async () => {} });
    const job = await openJob(c);
    await write(c, `${job.sid}/argv`, `sh -c 'sleep 300 & sleep 301; echo' ${marker}`);
    await job.ctl.write(0, "exec /bin/sh\n");
    const pid = Number((await c.readFile(`${job.sid}/ctl`)).toString());
    const dir = h.xcpufs.sessions.get(Number(job.sid))?.dir ?? "";
    await until(() => liveInGroup(pid).length >= 3);
    expect(existsSync(dir)).toBe(true);
    c.client.destroy();
    await until(() => liveInGroup(pid).length === 0 && !existsSync(dir));
    expect(liveWithMarker(marker)).toEqual([]);
    await until(() => !h.xcpufs.sessions.has(Number(job.sid)));
  });
  it("200 concurrent sessions", async () => {
    const conns = await Promise.all(
      Array.from({ length: 8 }, () =>
        mount(h.address, { uname: "tester", n_uname: uid, authenticate: async () => {} }),
      ),
    );
    const before = sessionDirs().length;
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => run(conns[i % 8] as Fsys, "/bin/echo", `echo n${i}`)),
    );
    results.forEach((r, i) => {
      expect(r.out).toBe(`n${i}\n`);
      expect(r.status).toBe("0");
    });
    expect(new Set(results.map((r) => r.sid)).size).toBe(200);
    await Promise.all(conns.map((c) => c.close()));
    await until(() => sessionDirs().length <= before && h.xcpufs.sessions.size === 0, 60_000);
  }, 180_000);
  it("redirect takes stdin from and sends stdout to node-local files", async () => {
    const job = await openJob(fs);
    for (const [name, text] of [
      ["in.txt", "from a file\n"],
      ["out.txt", ""],
    ] as const) {
      const f = await fs.create(`${job.sid}/fs/${name}`, 0o644, OWRITE);
      if (text) await f.write(0, text);
      await f.clunk();
    }
    await expect(job.ctl.write(0, "redirect stdin\n")).rejects.toThrow("too few arguments");
    await expect(job.ctl.write(0, "redirect stdfoo in.txt\n")).rejects.toThrow("invalid stream");
    await expect(job.ctl.write(0, "redirect stdout missing.txt\n")).rejects.toThrow(
      "No such file or directory",
    );
    await job.ctl.write(0, "redirect stdin in.txt\nredirect stdout out.txt\n");
    await write(fs, `${job.sid}/argv`, "cat");
    await job.ctl.write(0, "exec /bin/cat\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    expect((await readAll(job.stdout)).toString()).toBe("");
    expect((await fs.readFile(`${job.sid}/fs/out.txt`)).toString()).toBe("from a file\n");
    await expect(fs.open(`${job.sid}/stdout`, OREAD)).rejects.toThrow("redirected to local file");
    await expect(job.ctl.write(0, "redirect stderr out.txt\n")).rejects.toThrow(
      "session already ran its program (one per session)",
    );
    await expect(job.ctl.write(0, "exec /bin/cat\n")).rejects.toThrow("session already ran its program");
    await job.close();
  });
  it("legacy exec file: stage, run, one writer only", async () => {
    const job = await openJob(fs);
    const ex = await fs.open(`${job.sid}/exec`, OWRITE);
    await expect(fs.open(`${job.sid}/exec`, OWRITE)).rejects.toThrow("Text file busy");
    await ex.write(0, "#!/bin/sh\necho staged\n");
    await ex.clunk();
    expect((await fs.readFile(`${job.sid}/fs/exec`)).toString()).toContain("staged");
    await write(fs, `${job.sid}/argv`, "exec");
    await job.ctl.write(0, "exec\n");
    expect((await readAll(job.stdout)).toString()).toBe("staged\n");
    await job.close();
  });
  it("legacy exec file staged as `cp prog N/exec` through a kernel mount: truncating open, then a wstat of length and times", async () => {
    const job = await openJob(fs);
    const now = Math.floor(Date.now() / 1000);
    const probe = await fs.walk(`${job.sid}/exec`);
    // nothing staged yet: a truncation to 0 has nothing to do, a longer length no file to grow
    await probe.wstat({ length: 0n, mtime: now });
    await expect(probe.wstat({ length: 5n })).rejects.toThrow("No such file or directory");
    const ex = await fs.open(`${job.sid}/exec`, OWRITE | OTRUNC);
    await ex.wstat({ length: 0n, mtime: now, atime: now });
    await ex.write(0, "#!/bin/sh\necho staged\n# a tail cut off below\n");
    await ex.wstat({ length: 22n });
    await expect(ex.wstat({ length: 0n, mode: 0o600 })).rejects.toThrow("unsupported operation");
    await expect(ex.wstat({ length: 2n ** 62n })).rejects.toThrow("file too large");
    await ex.clunk();
    expect((await fs.readFile(`${job.sid}/fs/exec`)).toString()).toBe("#!/bin/sh\necho staged\n");
    await write(fs, `${job.sid}/argv`, "exec");
    await job.ctl.write(0, "exec\n");
    expect((await readAll(job.stdout)).toString()).toBe("staged\n");
    await probe.clunk();
    await job.close();
  });
});
void open;
