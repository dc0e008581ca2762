// xrx, xps, xk and the user-pool tools against a node that behaves like the ORIGINAL xcpufs 1.2.3 (test/original/):
// msize capped at 32792 (and 8216), iounit 0 on every open/create, the original's root files and
// formats, its session-file semantics, its RSA challenge–response and its quirks. A proxy in front
// of the node checks that no message exceeds the negotiated msize and no read asks for more than
// msize − 24 (the original refuses those with "i/o count too large").
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { Errno, FsError } from "@clustermatic/ninep/errors";
import { BytesFile, Server, SynthDir, SynthFile, treeBackend } from "@clustermatic/ninep/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xgetent } from "../src/cli/xgetent.js";
import { main as xgroupset } from "../src/cli/xgroupset.js";
import { main as xk } from "../src/cli/xk.js";
import { main as xps } from "../src/cli/xps.js";
import { main as xrx } from "../src/cli/xrx.js";
import { main as xuserset } from "../src/cli/xuserset.js";
import { runJob } from "../src/job.js";
import { publicKeyLine } from "../src/keys.js";
import { xcpuNodes } from "../src/nodes.js";
import { parseProcs } from "../src/procs.js";
import { XcpuNode } from "../src/xcpu.js";
import { cleanupAll, onCleanup, runCli, spawnCli, startCluster, tempDir, until } from "./harness.js";
import { OriginalNode } from "./original/node.js";
import { PROCS_HEADER } from "./original/procs.js";
import { OriginalWire } from "./original/wire.js";

afterAll(cleanupAll);

const me = userInfo();

function rsaKeyFiles(dir: string, name: string): { file: string; line: string } {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const file = join(dir, name);
  writeFileSync(file, privateKey.export({ type: "pkcs1", format: "pem" }) as string, { mode: 0o600 });
  return { file, line: publicKeyLine(privateKey) };
}

async function originalNode(opts: Parameters<typeof OriginalNode.start>[0] = {}): Promise<OriginalNode> {
  const n = await OriginalNode.start(opts);
  onCleanup(() => n.close());
  return n;
}

/** `count` original nodes on which this user is registered (group `users`) with the key `keyLine`. */
async function originalNodesWithMe(
  count: number,
  keyLine: string,
  opts: Parameters<typeof OriginalNode.start>[0] = {},
): Promise<OriginalNode[]> {
  const nodes: OriginalNode[] = [];
  for (let i = 0; i < count; i++) {
    const n = await originalNode(opts);
    n.addGroup("users", 100);
    n.addUser(me.username, me.uid, "users", keyLine);
    nodes.push(n);
  }
  return nodes;
}

/** What the original could not have served must never have been sent. */
function expectWireClean(n: { wire: OriginalWire }): void {
  expect(n.wire.violations).toEqual([]);
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("a node like the original xcpufs 1.2.3, with a key-less pool user (--no-key)", () => {
  let node: OriginalNode;
  beforeAll(async () => {
    node = await originalNode();
    node.addGroup("users", 100);
    node.addUser(me.username, me.uid, "users", "");
  });

  it("negotiates msize 32792, gets iounit 0, runs /bin/echo staged with its libraries", async () => {
    const r = await runCli(xrx, ["--no-key", node.spec, "/bin/echo", "hello", "world"]);
    expect(r).toEqual({ code: 0, stdout: "hello world\n", stderr: "" });
    const opened = node.wire.records.filter((x) => x.dir === "s2c" && (x.type === 113 || x.type === 115));
    expect(opened.length).toBeGreaterThan(4);
    expect(node.wire.largest().frame).toBeLessThanOrEqual(32792);
    expect(node.wire.largest().read).toBeLessThanOrEqual(32768);
    expectWireClean(node);
    await until(() => node.sessions.size === 0, 20_000, "session released");
  });

  it("names the program by its base name in argv (/bin/sh → sh, as the original's argv file); -l sends the path as typed", async () => {
    const first = 'tr "\\000" "\\n" < /proc/$$/cmdline | head -n 1';
    const staged = await runCli(xrx, ["--no-key", node.spec, "/bin/sh", "-c", first]);
    expect(staged).toEqual({ code: 0, stdout: "sh\n", stderr: "" });
    const local = await runCli(xrx, ["--no-key", "-l", node.spec, "/bin/sh", "-c", first]);
    expect(local).toEqual({ code: 0, stdout: "/bin/sh\n", stderr: "" });
    expectWireClean(node);
  });

  it("feeds stdin to cat, with -p and with -L", async () => {
    const text = Array.from({ length: 2000 }, (_, i) => `line ${i}`).join("\n");
    const p = await runCli(xrx, ["--no-key", "-p", node.spec, "cat"], { stdin: `${text}\n` });
    expect(p.code).toBe(0);
    expect(p.stdout).toBe(
      text
        .split("\n")
        .map((l) => `${node.spec}: ${l}\n`)
        .join(""),
    );
    const l = await runCli(xrx, ["--no-key", "-L", node.spec, "cat"], { stdin: "a\nb\nno newline" });
    expect(l.code).toBe(0);
    // (Unlike the original, which dropped it, our -L delivers a last line without newline, as is.)
    expect(l.stdout).toBe("a\nb\nno newline");
    expectWireClean(node);
  });

  it("streams 400 KB through stdin and back out of the 256-byte output window unchanged", async () => {
    const data = randomBytes(300_000).toString("base64");
    const r = await runCli(xrx, ["--no-key", node.spec, "cat"], { stdin: data });
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(data.length);
    expect(r.stdout === data).toBe(true);
    expectWireClean(node);
  });

  it("stages a directory tree with -e (directories created in fs/)", async () => {
    const d = tempDir("xrx-orig-edir-");
    mkdirSync(join(d, "app/data/deeper"), { recursive: true });
    writeFileSync(join(d, "app/run.sh"), '#!/bin/sh\ncat data/msg data/deeper/more && echo "args: $*"\n');
    chmodSync(join(d, "app/run.sh"), 0o755);
    writeFileSync(join(d, "app/data/msg"), "from the directory\n");
    writeFileSync(join(d, "app/data/deeper/more"), "and below\n");
    const r = await runCli(xrx, ["--no-key", "-e", "run.sh", node.spec, join(d, "app"), "a", "b"]);
    expect(r).toEqual({ code: 0, stdout: "from the directory\nand below\nargs: a b\n", stderr: "" });
    expectWireClean(node);
  });

  it("reports the exit status 3 (wait reads 768) and keeps stdout and stderr apart", async () => {
    const r = await runCli(xrx, ["--no-key", node.spec, "sh", "-c", "echo out; echo err 1>&2; exit 3"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("out\n");
    expect(r.stderr).toContain("err\n");
    expect(r.stderr).toContain("exit 3");
    expectWireClean(node);
  });

  it("stages a static binary and a script larger than 32 KiB byte for byte (many 32 KiB writes)", async () => {
    const d = tempDir("xrx-orig-big-");
    // A script that hashes itself as the node stores it.
    const payload = Buffer.alloc(300_000);
    for (let i = 0; i < payload.length; i++) payload[i] = 0x61 + ((i * 7919) % 26);
    const script = Buffer.concat([
      Buffer.from('#!/bin/sh\nsha256sum "$0" | cut -d" " -f1\nexit 0\n#'),
      payload,
      Buffer.from("\n"),
    ]);
    writeFileSync(join(d, "big.sh"), script);
    chmodSync(join(d, "big.sh"), 0o755);
    const r = await runCli(xrx, ["--no-key", "-S", node.spec, join(d, "big.sh")]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`${sha(script)}\n`);
    // busybox is static (about 2 MB): it runs from fs/ and hashes its own staged copy.
    const bb = readFileSync("/bin/busybox");
    const b = await runCli(xrx, ["--no-key", node.spec, "/bin/busybox", "sha256sum", "busybox"]);
    expect(b.stderr).toBe("");
    expect(b.stdout).toBe(`${sha(bb)}  busybox\n`);
    const writes = node.wire.records.filter((x) => x.dir === "c2s" && x.type === 118);
    expect(Math.max(...writes.map((w) => w.count ?? 0))).toBe(32768);
    expectWireClean(node);
  });

  it("passes -j, -c and XCPUENV; ranks are 1..N", async () => {
    const dir = tempDir("xrx-orig-cwd-");
    const r = await runCli(
      xrx,
      ["--no-key", "-j", "myjob", "-c", dir, node.spec, "sh", "-c", 'echo "$XCPUID $(pwd) $A $B"'],
      { env: { XCPUENV: "A=1\\n'B=two words'" } },
    );
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`myjob/1 ${dir} 1 two words\n`);
    const j = await runCli(xrx, ["--no-key", node.spec, "sh", "-c", 'echo "[$XCPUID]"'], {
      env: { JOBID: "fromenv" },
    });
    expect(j.stdout).toBe("[fromenv/1]\n");
    expectWireClean(node);
  });

  it("runs a program already on the node with -l (absolute path, local cwd)", async () => {
    const dir = tempDir("xrx-orig-l-");
    const r = await runCli(xrx, ["--no-key", "-l", node.spec, "/bin/sh", "-c", "echo $0 $(pwd)"], {
      cwd: dir,
    });
    expect(r.stdout).toBe(`/bin/sh ${dir}\n`);
    // A missing program: the original forks, execve fails in the child, status is errno × 256.
    const m = await runCli(xrx, ["--no-key", "-l", node.spec, "/nonexistent/prog"]);
    expect(m.code).toBe(2);
    expect(m.stderr).toContain("exit 2");
  });

  it("the library runs the same job and decodes the status", async () => {
    const out = new PassThrough();
    const err = new PassThrough();
    let text = "";
    out.on("data", (d) => (text += d));
    err.resume();
    const res = await runJob({
      nodes: xcpuNodes(node.spec),
      identity: { user: me.username, uid: me.uid, key: null },
      program: "sh",
      args: ["-c", "echo library; exit 3"],
      stdout: out,
      stderr: err,
    });
    expect(text).toBe("library\n");
    expect(res.exitCode).toBe(3);
    expect(res.outcomes[0]!.status).toMatchObject({ raw: 768, code: 3 });
    expectWireClean(node);
  });

  it("refuses a user the pool does not know with the original's 'unknown user'", async () => {
    const stranger = await originalNode();
    const r = await runCli(xrx, ["--no-key", stranger.spec, "/bin/true"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("unknown user");
  });
});

describe("the original's RSA challenge–response", () => {
  let node: OriginalNode;
  let dir: string;
  let user: { file: string; line: string };
  let admin: { file: string; line: string };
  beforeAll(async () => {
    dir = tempDir("xrx-orig-keys-");
    user = rsaKeyFiles(dir, "id_rsa");
    admin = rsaKeyFiles(dir, "admin_key");
    node = await originalNode({ adminKey: admin.line });
    node.addGroup("users", 100);
    node.addUser(me.username, me.uid, "users", user.line);
  });

  it("signs the challenge with -k (RSA, SHA-1, PKCS#1 v1.5)", async () => {
    const r = await runCli(xrx, ["-k", user.file, node.spec, "sh", "-c", "echo signed in"]);
    expect(r).toEqual({ code: 0, stdout: "signed in\n", stderr: "" });
    expectWireClean(node);
  });

  it("fails with a wrong key, and without a key, as 'authentication failed'", async () => {
    const other = rsaKeyFiles(dir, "other");
    const r = await runCli(xrx, ["-k", other.file, node.spec, "/bin/true"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("authentication failed");
    const n = await runCli(xrx, ["--no-key", node.spec, "/bin/true"]);
    expect(n.code).toBe(1);
    expect(n.stderr).toContain("authentication failed");
    expect(n.stderr).not.toContain("no key was used");
    // No -k and no default key: the refusal comes with what to do about it.
    const home = tempDir("xrx-orig-nokey-");
    const none = await runCli(xrx, [node.spec, "/bin/true"], { env: { HOME: home } });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain(`${node.spec}: error: authentication failed`);
    expect(none.stderr).toContain(
      "xrx: no key was used: ~/.ssh/id_ed25519 and ~/.ssh/id_rsa do not exist; give one with -k FILE\n",
    );
  });

  it("uses ~/.ssh/id_rsa by default, also when an id_ed25519 the node cannot know exists", async () => {
    const home = tempDir("xrx-orig-home-");
    mkdirSync(join(home, ".ssh"));
    writeFileSync(join(home, ".ssh/id_rsa"), readFileSync(user.file), { mode: 0o600 });
    const only = await runCli(xrx, [node.spec, "sh", "-c", "echo default key"], { env: { HOME: home } });
    expect(only.stdout).toBe("default key\n");
    const { privateKey } = generateKeyPairSync("ed25519");
    writeFileSync(
      join(home, ".ssh/id_ed25519"),
      privateKey.export({ type: "pkcs8", format: "pem" }) as string,
      {
        mode: 0o600,
      },
    );
    const both = await runCli(xrx, [node.spec, "sh", "-c", "echo still rsa"], { env: { HOME: home } });
    expect(both.stderr).toBe("");
    expect(both.stdout).toBe("still rsa\n");
  });

  it("xps as xcpu-admin (-A) lists the original procs format; xk -A kills a pid (root ctl kill)", async () => {
    const started = spawnCli("xrx", [
      "-k",
      user.file,
      "-j",
      "sleepy",
      node.spec,
      "sh",
      "-c",
      "sleep 600; echo after",
    ]);
    let rows: string[][] = [];
    let header = "";
    await until(
      async () => {
        const r = await runCli(xps, ["-A", admin.file, node.spec]);
        const lines = r.stdout.split("\n");
        header = lines[0] ?? "";
        rows = lines.map((l) => l.split("\t")).filter((f) => f[5] === "sleepy/1");
        // Just after its exec the sleep may still be running (R) before it sleeps (S).
        return rows.some((f) => f[6] === "sleep 600" && /^S/.test(f[3] ?? ""));
      },
      60_000,
      "the job's processes in xps",
    );
    expect(header).toBe("NODE\tPID\tTTY\tSTAT\tTIME\tJOBID\tCOMMAND");
    const sleeper = rows.find((f) => f[6] === "sleep 600")!;
    expect(sleeper[0]).toBe(node.spec);
    expect(sleeper[3]).toMatch(/^S/);
    // COMMAND is the command line as procs quotes it, as the original xps prints it.
    expect(rows.some((f) => f[6] === "sh -c 'sleep 600; echo after'")).toBe(true);
    const j = await runCli(xps, ["-A", admin.file, "-x", "-J", "sleepy", node.spec]);
    expect(j.stdout.split("\n").filter((l) => l.includes("\tsleepy/1\t"))).toHaveLength(2);
    const k = await runCli(xk, ["-A", admin.file, "9", `${node.spec}:${sleeper[1]}`]);
    expect(k).toMatchObject({ code: 0, stderr: "" });
    const done = await started.done;
    expect(done.stdout).toBe("after\n");
    expect(done.code).toBe(0);
    expectWireClean(node);
  }, 150_000);

  it("xk -A by job id kills every process of the job", async () => {
    const started = spawnCli("xrx", ["-k", user.file, "-j", "j3", node.spec, "sh", "-c", "sleep 600; :"]);
    await until(
      async () => (await runCli(xps, ["-A", admin.file, node.spec])).stdout.includes("\tj3/1\tsleep 600"),
      60_000,
      "j3 in xps",
    );
    const k = await runCli(xk, ["-A", admin.file, "KILL", `${node.spec}:j3/1`]);
    expect(k).toMatchObject({ code: 0, stderr: "" });
    const done = await started.done;
    expect(done.code).toBe(137);
    expectWireClean(node);
  }, 150_000);

  it("xk -m JOB kills the processes whose job part is exactly JOB (another job mjx stays); -j is accepted", async () => {
    const mj = spawnCli("xrx", ["-k", user.file, "-j", "mj", node.spec, "sh", "-c", "sleep 600; :"]);
    const mjx = spawnCli("xrx", ["-k", user.file, "-j", "mjx", node.spec, "sh", "-c", "sleep 600; :"]);
    await until(
      async () => {
        const out = (await runCli(xps, ["-A", admin.file, node.spec])).stdout;
        return out.includes("\tmj/1\tsleep 600") && out.includes("\tmjx/1\tsleep 600");
      },
      60_000,
      "mj and mjx in xps",
    );
    const k = await runCli(xk, ["-A", admin.file, "-jm", "KILL", `${node.spec}:mj`]);
    expect(k).toMatchObject({ code: 0, stderr: "" });
    expect((await mj.done).code).toBe(137);
    const left = (await runCli(xps, ["-A", admin.file, "-x", node.spec])).stdout;
    expect(left).toContain("\tmjx/1\t");
    expect(left).not.toContain("\tmj/1\t");
    expect(await runCli(xk, ["-A", admin.file, "-m", "9", `${node.spec}:mjx`])).toMatchObject({ code: 0 });
    expect((await mjx.done).code).toBe(137);
    expectWireClean(node);
  }, 150_000);

  it("xgroupset and xuserset write root ctl lines the original takes; xgetent lists its pwent and grent", async () => {
    const glenda = rsaKeyFiles(dir, "glenda");
    writeFileSync(`${glenda.file}.pub`, `${glenda.line} glenda@host\n`);
    const g = await runCli(xgroupset, ["add", "-A", admin.file, node.spec, "mammals", "4242"]);
    expect(g).toEqual({ code: 0, stdout: "", stderr: "" });
    const u = await runCli(xuserset, [
      "add",
      "-A",
      admin.file,
      node.spec,
      "glenda",
      "5000",
      "mammals",
      `${glenda.file}.pub`,
    ]);
    expect(u).toEqual({ code: 0, stdout: "", stderr: "" });
    const pw = await runCli(xgetent, ["-A", admin.file, "passwd", node.spec]);
    expect(pw.code).toBe(0);
    expect(pw.stdout).toMatch(new RegExp(`^Password Database From Node: ${node.spec}\n`));
    expect(pw.stdout.split("\n")).toContain("glenda:5000:4242:mammals");
    const gr = await runCli(xgetent, ["-A", admin.file, "group", node.spec]);
    expect(gr.stdout).toMatch(new RegExp(`^Group Database From Node: ${node.spec}\n`));
    expect(gr.stdout.split("\n")).toContain("mammals:4242");
    expectWireClean(node);
  });

  it("xk as the user by job id signals the session (the root ctl is xcpu-admin's)", async () => {
    const started = spawnCli("xrx", ["-k", user.file, "-j", "job2", "-l", node.spec, "/bin/sleep", "600"]);
    await until(
      async () => (await runCli(xps, ["-k", user.file, node.spec])).stdout.includes("\tjob2/1\t"),
      60_000,
      "job2 in xps",
    );
    const byJob = await runCli(xk, ["-k", user.file, "15", `${node.spec}:job2/1`]);
    expect(byJob).toMatchObject({ code: 0, stderr: "" });
    const done = await started.done;
    expect(done.code).toBe(128 + 15);
    expect(done.stderr).toContain("killed by signal 15");
    await until(() => node.sessions.size === 0, 20_000, "sessions released");
    expectWireClean(node);
  }, 150_000);
});

describe("xk's way to a session ctl", () => {
  // A node whose root ctl answers every kill with `answer`; procs lists process 4242 of session 1.
  async function killNode(answer: FsError): Promise<{ spec: string; sessionCtl: string[] }> {
    const dir = tempDir("xrx-xk-node-");
    const sessionCtl: string[] = [];
    const own = { uid: "root", gid: "root", mode: 0o666 };
    const root = new SynthDir("/", { uid: "root", gid: "root", mode: 0o555 });
    root.add(
      new BytesFile(
        "procs",
        `${PROCS_HEADER}\n(4242 (sleep 600) S 1 4242 4242 ?? -1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 j/1 ) \n`,
        { ...own, mode: 0o444 },
      ),
    );
    root.add(
      new SynthFile("ctl", {
        ...own,
        write: () => {
          throw answer;
        },
      }),
    );
    const session = root.add(new SynthDir("1", { uid: "root", gid: "root", mode: 0o555 }));
    session.add(
      new SynthFile("ctl", {
        ...own,
        write: (_h, _off, data) => {
          sessionCtl.push(Buffer.from(data).toString());
          return data.length;
        },
      }),
    );
    const server = new Server({ backend: treeBackend(root) });
    const sock = join(dir, "node.sock");
    await server.listen(`unix!${sock}`);
    const wire = await OriginalWire.start(sock, 32792);
    onCleanup(async () => {
      await wire.close();
      await server.close(0);
    });
    return { spec: `127.0.0.1!${wire.port}`, sessionCtl };
  }

  it("signals the session when the root ctl refuses this user, as the original", async () => {
    const n = await killNode(new FsError("permission denied", Errno.EACCES));
    expect(await runCli(xk, ["--no-key", "9", `${n.spec}:4242`])).toEqual({
      code: 0,
      stdout: "",
      stderr: "",
    });
    expect(n.sessionCtl).toEqual(["signal 9\n"]);
  });

  it("does not signal the session's main process when the kill itself failed (the process ended)", async () => {
    const n = await killNode(new FsError("No such process", 3 /* ESRCH */));
    const r = await runCli(xk, ["--no-key", "9", `${n.spec}:4242`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`xk: ${n.spec}: error killing process 4242: No such process\n`);
    expect(n.sessionCtl).toEqual([]);
  });
});

describe("a node that offers msize 8216", () => {
  it("runs, stages and streams within 8192-byte reads and writes", async () => {
    const node = await originalNode({ msize: 8216, arch: "/Linux/x86_64\n" });
    node.addGroup("users", 100);
    node.addUser(me.username, me.uid, "users", "");
    const r = await runCli(xrx, ["--no-key", node.spec, "/bin/busybox", "sh", "-c", "cat; exit 4"], {
      stdin: "x".repeat(100_000),
    });
    expect(r.stdout).toBe("x".repeat(100_000));
    expect(r.code).toBe(4);
    expect(node.wire.largest().frame).toBeLessThanOrEqual(8216);
    expect(node.wire.largest().read).toBeLessThanOrEqual(8192);
    expectWireClean(node);
    // xrx -m asks for less than the node offers.
    const m = await runCli(xrx, ["--no-key", "-m", "4120", node.spec, "/bin/echo", "small"]);
    expect(m.stdout).toBe("small\n");
    expectWireClean(node);
  });
});

describe("procs as the original writes it", () => {
  it("parses header, quoted command lines and '' fields", async () => {
    const node = await originalNode();
    node.addGroup("users", 100);
    node.addUser(me.username, me.uid, "users", "");
    // cat waits on its (open) stdin; its argument needs the original's quoting in procs.
    const started = spawnCli("xrx", [
      "--no-key",
      "-j",
      "q",
      "-l",
      node.spec,
      "/bin/cat",
      "-",
      "it's here",
      "x)",
    ]);
    const conn = await XcpuNode.connect(xcpuNodes(node.spec)[0]!, {
      identity: { user: me.username, uid: me.uid, key: null },
    });
    onCleanup(() => conn.close());
    let raw = "";
    await until(
      async () => {
        raw = (await conn.readFile("procs")).toString();
        return /\(\/bin\/cat - 'it''s here' x\)\) S .* q\/1 \) $/m.test(raw);
      },
      60_000,
      "job q in procs",
    );
    expect(raw.split("\n")[0]).toBe(PROCS_HEADER);
    expect(raw).toMatch(/^\(\d+ \(\/bin\/cat - 'it''s here' x\)\) S (\S+ ){22}0 q\/1 \) $/m);
    // The unquoted ")" ends no record early: every process is read.
    const procs = parseProcs(raw);
    expect(procs).toHaveLength((raw.match(/^\(\d+ \(/gm) ?? []).length);
    const cat = procs.find((p) => p.jobid === "q/1")!;
    expect(cat).toMatchObject({
      cmdline: ["/bin/cat", "-", "it's here", "x)"],
      sid: "0",
      state: "S",
      tty: "??",
    });
    expect(procs.filter((p) => p.jobid === "").length).toBeGreaterThan(0);
    const json = JSON.parse((await runCli(xps, ["--no-key", "--json", "-x", node.spec])).stdout);
    expect(json).toEqual([
      expect.objectContaining({ jobid: "q/1", command: ["/bin/cat", "-", "it's here", "x)"] }),
    ]);
    const k = await runCli(xk, ["--no-key", "9", `${node.spec}:q/1`]);
    expect(k).toMatchObject({ code: 0, stderr: "" });
    expect((await started.done).code).toBe(137);
  }, 150_000);
});

describe("two original nodes", () => {
  let a: OriginalNode;
  let b: OriginalNode;
  let list: string;
  beforeAll(async () => {
    a = await originalNode();
    b = await originalNode({ arch: "/Linux/x86_64\n" });
    for (const n of [a, b]) {
      n.addGroup("users", 100);
      n.addUser(me.username, me.uid, "users", "");
    }
    list = `${a.spec},${b.spec}`;
  });

  it("-p prefixes each node's lines; stdin goes to both; ranks 1 and 2 (arch with and without newline)", async () => {
    const r = await runCli(xrx, ["--no-key", "-p", list, "sh", "-c", 'read x; echo "$x $XCPUID"'], {
      stdin: "hi\n",
    });
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n").filter(Boolean).sort()).toEqual(
      [`${a.spec}: hi /1`, `${b.spec}: hi /2`].sort(),
    );
    expectWireClean(a);
    expectWireClean(b);
  });

  it("-p prefixes stdout and stderr lines separately (the capture's run: echo out, echo err, exit 3)", async () => {
    const r = await runCli(xrx, ["--no-key", "-p", list, "sh", "-c", "echo out; echo err 1>&2; exit 3"]);
    expect(r.code).toBe(3);
    expect(r.stdout.split("\n").filter(Boolean).sort()).toEqual([`${a.spec}: out`, `${b.spec}: out`].sort());
    const errs = r.stderr.split("\n").filter((l) => l.endsWith(": err"));
    expect(errs.sort()).toEqual([`${a.spec}: err`, `${b.spec}: err`].sort());
    expectWireClean(a);
    expectWireClean(b);
  });

  it("-J attaches to a running job; later output and the status reach both runs", async () => {
    const script = "echo started; read x; echo late; exit 5";
    const job = spawnCli("xrx", ["--no-key", "-j", "attachme", list, "sh", "-c", script]);
    let out = "";
    job.child.stdout!.on("data", (d) => (out += d));
    await until(() => (out.match(/started/g) ?? []).length === 2, 60_000, "programs started");
    let ready!: () => void;
    const attachedAll = new Promise<void>((r) => (ready = r));
    const attached = runCli(xrx, ["--no-key", "-v", "-J", "attachme", list], {
      onStderr: (text) => /^xrx: sessions ready at/m.test(text) && ready(),
    });
    await Promise.race([attachedAll, attached]);
    job.child.stdin!.end("go\n");
    const [j, t] = await Promise.all([job.done, attached]);
    expect(j.code).toBe(5);
    expect(t.code).toBe(5);
    expect(t.stdout).toBe("late\nlate\n");
    expectWireClean(a);
    expectWireClean(b);
  }, 150_000);

  it("forwards Ctrl-C as 'signal 2' on the session ctl", async () => {
    const { child, done } = spawnCli("xrx", [
      "--no-key",
      "-p",
      list,
      "sh",
      "-c",
      "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.1; done",
    ]);
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    await until(() => (out.match(/ready/g) ?? []).length === 2, 60_000, "programs ready");
    child.kill("SIGINT");
    const r = await done;
    expect(r.stdout.match(/got INT/g)).toHaveLength(2);
    expect(r.code).toBe(7);
    await until(() => a.sessions.size + b.sessions.size === 0, 20_000, "sessions released");
  }, 150_000);
});

describe("the original's session ctl quirk", () => {
  it("keeps a failed line at the head of the buffer; xrx still reports the error and leaves nothing", async () => {
    const node = await originalNode();
    node.addGroup("users", 100);
    node.addUser(me.username, me.uid, "users", "");
    const conn = await XcpuNode.connect(xcpuNodes(node.spec)[0]!, {
      identity: { user: me.username, uid: me.uid, key: null },
    });
    onCleanup(() => conn.close());
    const s = await conn.createSession();
    await expect(s.ctl("bogus")).rejects.toThrow("unknown command");
    // The next command is glued behind the failed one and fails with it (spec 7.1 [BUG]).
    await expect(s.ctl("type persistent")).rejects.toThrow("unknown command");
    await s.release();
    conn.close();
    await until(() => node.sessions.size === 0, 20_000, "session released");
    // A job id with a slash, which the original would read as job "a" and the bad rank "b/1":
    // refused before any node is contacted.
    const r = await runCli(xrx, ["--no-key", "-j", "a/b", node.spec, "/bin/true"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('bad job id "a/b"');
    // A blank: the original's tokenizer took "a" alone.
    const blank = await runCli(xrx, ["--no-key", "-j", "a b", node.spec, "/bin/true"]);
    expect(blank.code).toBe(2);
    expect(blank.stderr).toContain('bad job id "a b"');
    expect(node.sessions.size).toBe(0);
  });
});

/** xrx -v -n 1 -p over `list` with `key`, each node printing its job/rank. */
function treeRanks(key: string, list: string) {
  return runCli(xrx, ["-v", "-k", key, "-n", "1", "-p", list, "/bin/busybox", "sh", "-c", 'echo "$XCPUID"']);
}

describe("tree spawn with original nodes", () => {
  it("-n 1 over 4 original nodes: none is asked to relay (no sysinfo), each is copied to directly", async () => {
    const dir = tempDir("xrx-orig-tree-");
    const user = rsaKeyFiles(dir, "id_rsa");
    const nodes = await originalNodesWithMe(4, user.line);
    const list = nodes.map((n) => n.spec).join(",");
    const r = await treeRanks(user.file, list);
    // The original as a relay leaves its copies open for writing (the program then fails with
    // "Text file busy") and loops for ever on a directory that holds one: it only receives.
    expect(r.stderr).toContain("staging: 4 direct, 0 by tree spawn, 0 retried directly, 0 clone failures");
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n").filter(Boolean).sort()).toEqual(
      nodes.map((n, i) => `${n.spec}: /${i + 1}`).sort(),
    );
    expect(nodes.map((n) => n.passkeysMinted)).toEqual([0, 0, 0, 0]);
    for (const n of nodes) expectWireClean(n);
  }, 150_000);

  it("-n 1 over our nodes and original ones: the tree is ours, the originals are copied to beside it", async () => {
    const dir = tempDir("xrx-mixed-tree-");
    const user = rsaKeyFiles(dir, "id_rsa");
    const originals = await originalNodesWithMe(2, user.line);
    const ours = await startCluster(2, { noAuth: true });
    const names = [ours.nodes[0]!.spec, originals[0]!.spec, ours.nodes[1]!.spec, originals[1]!.spec];
    const r = await treeRanks(user.file, names.join(","));
    expect(r.stderr).toContain("2 nodes cannot relay a tree spawn");
    expect(r.stderr).toContain("staging: 3 direct, 1 by tree spawn, 0 retried directly, 0 clone failures");
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n").filter(Boolean).sort()).toEqual(
      names.map((n, i) => `${n}: /${i + 1}`).sort(),
    );
    expect(originals.map((n) => n.passkeysMinted)).toEqual([0, 0]);
    for (const n of originals) expectWireClean(n);
  }, 150_000);
});

describe("a clone command longer than one message", () => {
  it("goes to the node's ctl in several writes", async () => {
    const dir = tempDir("xrx-longclone-");
    writeFileSync(join(dir, "hello.sh"), '#!/bin/sh\necho "hello $XCPUID"\n');
    chmodSync(join(dir, "hello.sh"), 0o755);
    // msize 512: 488 bytes per write, less than the clone line for nine targets (~55 bytes each).
    const { nodes, list } = await startCluster(10, { noAuth: true, msize: 512 });
    const r = await runCli(xrx, ["-v", "--no-key", "-n", "1", "-S", list, join(dir, "hello.sh")]);
    expect(r.stderr).toContain("staging: 1 direct, 9 by tree spawn, 0 retried directly, 0 clone failures");
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n").filter(Boolean).sort()).toEqual(
      nodes.map((_, i) => `hello /${i + 1}`).sort(),
    );
  }, 150_000);
});

describe("node lists from an original statfs (msize 8216, arch with its newline in the table)", () => {
  it("xrx -a, xps -a and xk without a node list read the table and reach the nodes that are up", async () => {
    const nodes = await originalNodesWithMe(2, "", { arch: "/Linux/x86_64\n" });
    // 8.10: name, address, arch (with the newline of the node's arch file), status, jobs.
    const table =
      nodes.map((n, i) => `n${i + 1}\ttcp!127.0.0.1!${n.port}\t/Linux/x86_64\n\tup\t0\n`).join("") +
      "n3\ttcp!127.0.0.1!9\tunknown (not read yet)\tdown(connect_failed)\t0\n";
    const statfs = await originalStatfs(table);
    const src = `127.0.0.1!${statfs.port}`;
    const r = await runCli(xrx, ["--no-key", "--statfs", src, "-p", "sh", "-c", 'echo "$XCPUID"']);
    // The node left out is named, with the status the table gives it.
    expect(r.stderr).toBe("xrx: 2 of 3 nodes are up; not running on n3 (down(connect_failed))\n");
    expect(r.stdout.split("\n").filter(Boolean).sort()).toEqual(["n1: /1", "n2: /2"]);
    // A job on both nodes, listed by xps -a and killed by xk with a job id and no node list
    // (xk asks every node statfs knows, the down one too, which it reports).
    const job = spawnCli("xrx", ["--no-key", "--statfs", src, "-j", "sj", "-l", "/bin/cat", "-"]);
    await until(
      async () => {
        const x = await runCli(xps, ["--no-key", "--statfs", src, "-x"]);
        return /^n1\t\d+\t.*\tsj\/1\t\/bin\/cat -$/m.test(x.stdout) && /^n2\t.*\tsj\/2\t/m.test(x.stdout);
      },
      60_000,
      "the job in xps -a",
    );
    const k = await runCli(xk, ["--no-key", "--statfs", src, "9", "/sj"]);
    expect(k.stderr).toMatch(/^xk: n3: /m);
    expect(k.stderr).not.toMatch(/^xk: n[12]: /m);
    expect((await job.done).code).toBe(137);
    expectWireClean(statfs);
    for (const n of nodes) expectWireClean(n);
  }, 150_000);
});

/** A statfs like the original's (npfs): no authentication, msize 8216, one `state` file. */
async function originalStatfs(table: string): Promise<{ port: number; wire: OriginalWire }> {
  const dir = tempDir("xrx-orig-statfs-");
  const root = new SynthDir("/", { uid: "root", gid: "root" });
  root.add(new BytesFile("state", table, { uid: "root", gid: "root", mode: 0o444 }));
  const server = new Server({ backend: treeBackend(root), maxMsize: 8216 });
  const sock = join(dir, "statfs.sock");
  await server.listen(`unix!${sock}`);
  const wire = await OriginalWire.start(sock, 8216);
  onCleanup(async () => {
    await wire.close();
    await server.close(0);
  });
  return { port: wire.port, wire };
}
