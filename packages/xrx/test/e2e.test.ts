// End to end: the xrx CLI (its main(), in this process) against real xcpufs servers on loopback.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { emptyInput } from "../src/cli/args.js";
import { main as xrx } from "../src/cli/xrx.js";
import {
  type ChildNode,
  cleanupAll,
  onCleanup,
  runCli,
  sessionDirCount,
  startChildNode,
  startCluster,
  startNode,
  type TestNode,
  tempDir,
  until,
} from "./harness.js";

afterAll(cleanupAll);

const sessionsLeft = (nodes: TestNode[]) => nodes.reduce((n, x) => n + sessionDirCount(x.tmp), 0);

/** A script that prints its rank, padded to `mib` MiB so that copying it takes a while. */
function paddedScript(dirPrefix: string, mib: number): string {
  const prog = join(tempDir(dirPrefix), "big.sh");
  writeFileSync(prog, `#!/bin/sh\necho "ran $XCPUID"\nexit 0\n${"#".repeat(mib * 1024 * 1024)}\n`);
  chmodSync(prog, 0o755);
  return prog;
}

/** What a node's trace shows of a `clone 1 …` ctl write (its data in hex). */
const CLONE_HEX = Buffer.from("clone 1 ").toString("hex");

/**
 * Stops a child node's process group (SIGSTOP) as soon as its trace on stderr satisfies `when`,
 * and lets it go on (SIGCONT) at clean-up. Returns a function saying whether it was stopped.
 */
function stopOnTrace(node: ChildNode, when: (trace: string) => boolean): () => boolean {
  let trace = "";
  let stopped = false;
  node.child.stderr!.on("data", (chunk) => {
    trace = (trace + String(chunk)).slice(-4096);
    if (!stopped && when(trace)) {
      stopped = true;
      process.kill(-node.child.pid!, "SIGSTOP");
    }
  });
  onCleanup(() => {
    try {
      process.kill(-node.child.pid!, "SIGCONT");
    } catch {}
  });
  return () => stopped;
}

/** xrx's arguments for a -n 1 tree spawn of `prog` over `nodes` with short liveness and call limits. */
function treeArgs(nodes: string[], prog: string, aliveSeconds = "2"): string[] {
  return [
    "--no-key",
    "-v",
    "-S",
    "-n",
    "1",
    "--alive-timeout",
    aliveSeconds,
    "--call-timeout",
    "10",
    "-p",
    nodes.join(","),
    prog,
  ];
}

describe("xrx on 1, 4 and 16 nodes", () => {
  let one: { nodes: TestNode[]; list: string };
  let four: { nodes: TestNode[]; list: string };
  let sixteen: { nodes: TestNode[]; list: string };
  beforeAll(async () => {
    one = await startCluster(1);
    four = await startCluster(4);
    sixteen = await startCluster(16);
  });

  it("runs a dynamically linked program staged with its libraries on 1 node", async () => {
    const r = await runCli(xrx, ["--no-key", one.list, "echo", "hello", "world"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hello world\n");
    expect(r.code).toBe(0);
    await until(() => sessionsLeft(one.nodes) === 0, 20_000, "session cleanup");
  });

  it("runs on 4 and 16 nodes with -p prefixes, one line per node", async () => {
    for (const c of [four, sixteen]) {
      const r = await runCli(xrx, ["--no-key", "-p", c.list, "sh", "-c", "echo $XCPUID"]);
      expect(r.code).toBe(0);
      const lines = r.stdout.trim().split("\n").sort();
      expect(lines).toHaveLength(c.nodes.length);
      const expected = c.nodes.map((n, i) => `${n.spec}: /${i + 1}`).sort();
      expect(lines).toEqual(expected);
    }
  });

  it("runs one copy for each time a node is listed, as the original did, flat and in a tree", async () => {
    const n = one.nodes[0]!.spec;
    for (const tree of [[], ["-n", "1"]]) {
      const r = await runCli(xrx, ["--no-key", "-p", ...tree, `${n},${n},${n}`, "sh", "-c", "echo $XCPUID"]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.trim().split("\n").sort()).toEqual([`${n}: /1`, `${n}: /2`, `${n}: /3`]);
    }
    await until(() => sessionsLeft(one.nodes) === 0, 20_000, "session cleanup");
  });

  it("closes stdin with the exec when xrx's input is known empty (/dev/null): no message of its own", async () => {
    const trace: string[] = [];
    const node = await startNode({ trace: (l) => trace.push(l) });
    const r = await runCli(xrx, ["--no-key", "-S", node.spec, "/bin/cat"], { stdin: emptyInput() });
    expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
    const hex = (t: string) => Buffer.from(t).toString("hex");
    const ctlText = "id /1\nexec cat\nclose stdin\n";
    const writes = trace.filter((l) => / Twrite /.test(l));
    expect(writes.some((l) => l.includes(`data ${ctlText.length} ${hex(ctlText).slice(0, 32)}`))).toBe(true);
    expect(writes.some((l) => l.includes(`data 12 ${hex("close stdin\n")}`))).toBe(false);
  });

  it("sends stdin to every node and closes it at the end", async () => {
    const r = await runCli(xrx, ["--no-key", "-p", four.list, "wc", "-c"], { stdin: "x".repeat(100_000) });
    expect(r.code).toBe(0);
    expect(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(": ")[1]),
    ).toEqual(["100000", "100000", "100000", "100000"]);
  });

  it("-L keeps lines whole when nodes write partial lines concurrently", async () => {
    const script = "for i in 1 2 3 4 5 6 7 8 9 10; do printf 'part-a-'; sleep 0.01; printf 'part-b\\n'; done";
    const r = await runCli(xrx, ["--no-key", "-L", four.list, "sh", "-c", script]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n").filter(Boolean);
    expect(lines).toHaveLength(40);
    for (const l of lines) expect(l).toBe("part-a-part-b");
  });

  it("exits with the program's status when nodes agree, non-zero with a summary when not", async () => {
    const same = await runCli(xrx, ["--no-key", four.list, "sh", "-c", "exit 3"]);
    expect(same.code).toBe(3);
    const mixed = await runCli(xrx, [
      "--no-key",
      four.list,
      "sh",
      "-c",
      'test "$XCPUID" = /2 && exit 5; exit 0',
    ]);
    expect(mixed.code).toBe(5);
    expect(mixed.stderr).toContain(`${four.nodes[1]!.spec}: exit 5`);
    expect(mixed.stderr).toContain("3 of 4 nodes exited 0");
    const sig = await runCli(xrx, ["--no-key", one.list, "sh", "-c", "kill -9 $$"]);
    expect(sig.code).toBe(137);
    expect(sig.stderr).toContain("killed by signal 9");
  });

  it("passes -j, -c and XCPUENV", async () => {
    const dir = tempDir("xrx-cwd-");
    const r = await runCli(
      xrx,
      ["--no-key", "-j", "myjob", "-c", dir, one.list, "sh", "-c", 'echo "$XCPUID $(pwd) $A $B"'],
      {
        env: { XCPUENV: "A=1\\n'B=two words'" },
      },
    );
    expect(r.stdout).toBe(`myjob/1 ${dir} 1 two words\n`);
  });

  it("stages a whole directory with -e", async () => {
    const d = tempDir("xrx-edir-");
    mkdirSync(join(d, "app/data"), { recursive: true });
    writeFileSync(join(d, "app/run.sh"), '#!/bin/sh\ncat "$XCPUPATH/data/msg" && echo "args: $*"\n');
    chmodSync(join(d, "app/run.sh"), 0o755);
    writeFileSync(join(d, "app/data/msg"), "from the directory\n");
    const r = await runCli(xrx, ["--no-key", "-e", "run.sh", four.list, join(d, "app"), "a", "b"]);
    expect(r.code).toBe(0);
    // Without -L chunks of different nodes may interleave between lines: compare the lines.
    expect(r.stdout.split("\n").filter(Boolean).sort()).toEqual([
      ...Array(4).fill("args: a b"),
      ...Array(4).fill("from the directory"),
    ]);
  });

  it("-e with an absolute path runs a program already on the nodes over what was copied, as the original", async () => {
    const d = tempDir("xrx-eabs-");
    mkdirSync(join(d, "app"));
    writeFileSync(join(d, "app/msg"), "copied data\n");
    writeFileSync(join(d, "notes"), "a copied file\n");
    const onDir = await runCli(xrx, ["--no-key", "-e", "/bin/cat", one.list, join(d, "app"), "msg"]);
    expect(onDir).toMatchObject({ code: 0, stdout: "copied data\n", stderr: "" });
    const onFile = await runCli(xrx, ["--no-key", "-e", "/bin/cat", one.list, join(d, "notes"), "notes"]);
    expect(onFile).toMatchObject({ code: 0, stdout: "a copied file\n", stderr: "" });
    // A relative name must be something copied: said here, not by each node.
    const missing = await runCli(xrx, ["--no-key", "-e", "other", one.list, join(d, "notes")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("-e other: the only file copied is notes");
  });

  it("-s and -S: the last one given counts, as in the original", async () => {
    const staged = async (flags: string) => {
      const r = await runCli(xrx, ["--no-key", flags, one.list, "/bin/sh", "-c", 'ls "$XCPUPATH"']);
      expect(r.code).toBe(0);
      return r.stdout.split("\n").filter(Boolean);
    };
    expect(await staged("-sS")).toEqual(["sh"]);
    expect(await staged("-Ss")).toContain("libc.so.6");
    expect(await staged("-Ss")).toContain("sh");
  });

  it("runs a program that is already on the nodes with -l", async () => {
    const r = await runCli(xrx, ["--no-key", "-l", one.list, "/bin/sh", "-c", "echo $0"]);
    expect(r.stdout).toBe("/bin/sh\n");
  });

  it("copies a library the node cannot find by itself, and fails without it under -S", async (ctx) => {
    if (!existsSync("/usr/bin/gcc")) {
      ctx.skip();
      console.log("skipped: gcc is not installed (needed to build a test library)");
      return;
    }
    const d = tempDir("xrx-lib-");
    mkdirSync(join(d, "lib"));
    writeFileSync(join(d, "greet.c"), 'const char *greet(void) { return "hello from a staged library"; }\n');
    writeFileSync(
      join(d, "main.c"),
      "#include <stdio.h>\nconst char *greet(void);\nint main(void) { puts(greet()); return 0; }\n",
    );
    execFileSync("gcc", ["-shared", "-fPIC", "-o", join(d, "lib/libxrxgreet.so"), join(d, "greet.c")]);
    execFileSync("gcc", ["-o", join(d, "greet"), join(d, "main.c"), `-L${join(d, "lib")}`, "-lxrxgreet"]);
    const env = { XCPU_LD_LIBRARY_PATH: join(d, "lib") };
    const r = await runCli(xrx, ["--no-key", four.list, join(d, "greet")], { env });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("hello from a staged library\n".repeat(4));
    const s = await runCli(xrx, ["--no-key", "-S", one.list, join(d, "greet")], { env });
    expect(s.code).not.toBe(0);
    expect(s.stderr).toMatch(/libxrxgreet/);
  });

  it("tree spawn over 16 nodes, 50 times, never loses a node", async () => {
    const d = tempDir("xrx-tree-");
    mkdirSync(join(d, "tree/sub"), { recursive: true });
    writeFileSync(join(d, "tree/sub/payload"), Buffer.alloc(64 * 1024, 7));
    writeFileSync(
      join(d, "tree/run"),
      '#!/bin/sh\ntest "$(wc -c < sub/payload)" -eq 65536 && echo "ok $XCPUID"\n',
    );
    chmodSync(join(d, "tree/run"), 0o755);
    const prog = join(d, "tree");
    let byTree = 0;
    let retried = 0;
    for (let i = 0; i < 50; i++) {
      const width = i % 2 === 0 ? "4" : ".";
      const r = await runCli(xrx, [
        "--no-key",
        "-v",
        "-n",
        width,
        "-e",
        "run",
        "-j",
        `t${i}`,
        sixteen.list,
        prog,
      ]);
      const lines = r.stdout.trim().split("\n").sort();
      const m = /staging: (\d+) direct, (\d+) by tree spawn, (\d+) retried directly/.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      const [direct, tree, again] = [Number(m![1]), Number(m![2]), Number(m![3])];
      // Every node got its files exactly one way: 4 direct children, the rest by tree or by retry.
      expect(direct - again + tree).toBe(16);
      byTree += tree;
      retried += again;
      expect(
        r.stderr
          .split("\n")
          .filter((l) => l && !/^xrx: (sessions ready|planned|staged|all ended) at|^xrx: staging:/.test(l)),
      ).toEqual([]);
      expect(r.code).toBe(0);
      expect(lines).toEqual(Array.from({ length: 16 }, (_, k) => `ok t${i}/${k + 1}`).sort());
    }
    console.log(`tree spawn x50: ${byTree} nodes reached by the tree, ${retried} copied again directly`);
    expect(byTree).toBeGreaterThan(0);
    await until(() => sessionsLeft(sixteen.nodes) === 0, 30_000, "session cleanup");
  }, 600_000); // 800 sessions: about 40 s on an idle machine, several times that under load

  it("reports a node killed mid-run, lets the others finish and leaves nothing behind", async () => {
    const victim = await startChildNode();
    const list = `${four.list},${victim.spec}`;
    // Killed once the program is staged everywhere (-v says when), so mid-run however slow the start.
    let staged!: () => void;
    const stagedSeen = new Promise<void>((r) => (staged = r));
    const run = runCli(xrx, ["--no-key", "-v", "-p", list, "sh", "-c", "sleep 3; echo finished"], {
      onStderr: (text) => /^xrx: staged at/m.test(text) && staged(),
    });
    await Promise.race([stagedSeen, run]);
    victim.kill();
    const r = await run;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`xrx: ${victim.spec}: error`);
    expect(r.stdout.trim().split("\n").sort()).toEqual(four.nodes.map((n) => `${n.spec}: finished`).sort());
    await until(() => sessionsLeft(four.nodes) === 0, 20_000, "session cleanup on live nodes");
  }, 120_000);

  it("gives up on a relay that falls silent during a tree spawn and copies to its subtree directly", async () => {
    const relay = await startChildNode(["-d"]);
    // Large enough that the relay is still copying when it is stopped.
    const prog = paddedScript("xrx-relay-", 40);
    const stopped = stopOnTrace(relay, (t) => t.includes(CLONE_HEX));
    const targets = four.nodes.slice(0, 2).map((n) => n.spec);
    const r = await runCli(xrx, treeArgs([relay.spec, ...targets], prog));
    expect(stopped()).toBe(true);
    expect(r.stderr).toContain(
      `${relay.spec}: clone failed (no answer for 2 s while it passed the tree spawn on); copying directly`,
    );
    expect(r.stdout.trim().split("\n").sort()).toEqual(targets.map((t, i) => `${t}: ran /${i + 2}`).sort());
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${relay.spec}: error: `);
    await until(() => sessionsLeft(four.nodes) === 0, 20_000, "session cleanup on live nodes");
  }, 120_000);

  it("a relay stopped while it writes a file to a node: that file is made again, the program starts", async () => {
    // -D: the relay's trace shows its own requests; it is stopped at its first create on a
    // target, whose file it then holds open for writing (in place, the program could not start).
    const relay = await startChildNode(["-D"]);
    const prog = paddedScript("xrx-relay-open-", 8);
    const stopped = stopOnTrace(relay, (t) => /Tcreate/.test(t));
    const targets = four.nodes.slice(2, 4).map((n) => n.spec);
    const r = await runCli(xrx, treeArgs([relay.spec, ...targets], prog));
    expect(stopped()).toBe(true);
    expect(r.stderr).not.toMatch(/ETXTBSY|Text file busy/);
    expect(r.stdout.trim().split("\n").sort()).toEqual(targets.map((t, i) => `${t}: ran /${i + 2}`).sort());
    expect(r.stderr).toContain(`${relay.spec}: error: `);
    // The stopped relay's connections still hold the targets' sessions: they go with it.
    relay.kill();
    await until(() => sessionsLeft(four.nodes) === 0, 20_000, "session cleanup on live nodes");
  }, 120_000);

  it("a relay deeper in the tree that falls silent is given up on by its parent; its subtree is copied to directly", async () => {
    // Chain (-n 1): xrx → A → B → C, D. B is stopped as the clone for C and D reaches it; A gives
    // up on it (XCPUFS_CLONE_ALIVE_MS, read by the in-process nodes) and answers; xrx copies to C, D.
    const b = await startChildNode(["-d"]);
    const [a, c, d] = [four.nodes[0]!, four.nodes[1]!, four.nodes[2]!];
    const prog = paddedScript("xrx-deep-relay-", 8);
    const stopped = stopOnTrace(b, (t) => t.includes(CLONE_HEX));
    const saved = process.env.XCPUFS_CLONE_ALIVE_MS;
    process.env.XCPUFS_CLONE_ALIVE_MS = "2000";
    try {
      const r = await runCli(xrx, treeArgs([a.spec, b.spec, c.spec, d.spec], prog, "5"));
      expect(stopped()).toBe(true);
      const out = r.stdout.trim().split("\n").sort();
      expect(out).toEqual([`${a.spec}: ran /1`, `${c.spec}: ran /3`, `${d.spec}: ran /4`].sort());
      expect(r.stderr).toContain(`${b.spec}: error: `);
      expect(r.code).not.toBe(0);
    } finally {
      if (saved === undefined) delete process.env.XCPUFS_CLONE_ALIVE_MS;
      else process.env.XCPUFS_CLONE_ALIVE_MS = saved;
    }
    await until(() => sessionsLeft(four.nodes) === 0, 20_000, "session cleanup on live nodes");
  }, 120_000);

  it("gives up on a node that accepts but never answers, after the timeout", async () => {
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const port = (silent.address() as AddressInfo).port;
    try {
      // The timeout holds for the live node too, which answers from this (maybe busy) process:
      // seconds, not one. The message says the timeout is what ended the wait.
      const r = await runCli(xrx, ["--no-key", "-t", "5", `${one.list},127.0.0.1!${port}`, "echo", "alive"]);
      expect(r.stdout).toBe("alive\n");
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `127.0.0.1!${port}: error: no answer from tcp!127.0.0.1!${port} within 5000 ms (connected, but no 9P reply)`,
      );
    } finally {
      silent.close();
    }
  });

  it("fails fast on a dead node without stalling the others", async () => {
    // Fast means without waiting for the timeout: make it far longer than any slow run takes.
    const t0 = Date.now();
    const r = await runCli(xrx, ["--no-key", "-t", "100", `${one.list},127.0.0.1!1`, "echo", "alive"]);
    expect(Date.now() - t0).toBeLessThan(50_000);
    expect(r.stdout).toBe("alive\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/127\.0\.0\.1!1: error: .*(refused|ECONNREFUSED)/);
  });
});

const canMount = process.getuid?.() === 0;
if (!canMount) console.warn("skipping the full-disk test: mounting a small tmpfs needs root");

describe("a node whose disk is full", () => {
  it.skipIf(!canMount)(
    "reports the error for that node, runs on the others, leaves nothing behind and serves the next job",
    async (ctx) => {
      const small = tempDir("xrx-full-");
      try {
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", small], { stdio: "pipe" });
      } catch (err) {
        console.warn(`skipping the full-disk test: cannot mount a tmpfs (${(err as Error).message})`);
        ctx.skip();
      }
      onCleanup(() => {
        execFileSync("umount", ["-l", small]);
      });
      const full = await startNode({ tmpdir: small });
      const roomy = await startCluster(1);
      // A 3 MiB shell script: more than the full node's disk holds.
      const work = tempDir("xrx-full-prog-");
      const prog = join(work, "big.sh");
      writeFileSync(prog, `#!/bin/sh\necho ran\nexit 0\n#${"x".repeat(3 * 1024 * 1024)}\n`);
      chmodSync(prog, 0o755);
      const r = await runCli(xrx, ["--no-key", "-S", "-p", `${full.spec},${roomy.list}`, prog]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`xrx: ${full.spec}: error: no space left on device`);
      expect(r.stdout).toBe(`${roomy.list}: ran\n`);
      await until(() => sessionDirCount(small) === 0, 20_000, "session cleanup on the full node");
      await until(() => sessionsLeft(roomy.nodes) === 0, 20_000, "session cleanup on the other node");
      // The node still works for a job that fits.
      const small2 = join(work, "small.sh");
      writeFileSync(small2, "#!/bin/sh\necho fits\n");
      chmodSync(small2, 0o755);
      const again = await runCli(xrx, ["--no-key", "-S", full.spec, small2]);
      expect({ code: again.code, out: again.stdout, err: again.stderr }).toEqual({
        code: 0,
        out: "fits\n",
        err: "",
      });
    },
  );
});
