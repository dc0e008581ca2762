// xk, xps, xrx -J, signal forwarding, authentication with real keys, and the CLI's error paths.
import { execFileSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startStatfs } from "@clustermatic/statfs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xk } from "../src/cli/xk.js";
import { main as xps } from "../src/cli/xps.js";
import { main as xrx } from "../src/cli/xrx.js";
import { loadPrivateKey } from "../src/keys.js";
import { xcpuNodes } from "../src/nodes.js";
import { adminIdentity, XcpuNode } from "../src/xcpu.js";
import {
  cleanupAll,
  onCleanup,
  runCli,
  sessionDirCount,
  spawnCli,
  startCluster,
  startNode,
  type TestNode,
  tempDir,
  until,
} from "./harness.js";

const sshKeygen = ["/usr/bin/ssh-keygen", "/bin/ssh-keygen"].some((p) => existsSync(p));
if (!sshKeygen) console.log("key tests skipped: ssh-keygen (openssh-client) is not installed");

afterAll(cleanupAll);

let four: { nodes: TestNode[]; list: string };
beforeAll(async () => {
  four = await startCluster(4);
});

describe("jobs: -J attach, xps, xk", () => {
  it("lists a running job with xps, attaches with -J, kills it with xk", async () => {
    const signals = new EventEmitter();
    const job = runCli(
      xrx,
      ["--no-key", "-j", "pjob", four.list, "sh", "-c", "echo started; exec sleep 30"],
      {
        signals,
      },
    );
    // xps sees the job's main processes (and their children) on every node.
    let table = "";
    await until(
      async () => {
        const r = await runCli(xps, ["--no-key", "-x", four.list]);
        table = r.stdout;
        // The shells exec sleep after echo: until then a node lists its job as sh.
        return (
          table.split("\n").filter((l) => /\tpjob\/\d+\t/.test(l) && l.endsWith("\tsleep 30")).length >= 4
        );
      },
      30_000,
      "job visible in xps",
    );
    const lines = table.trim().split("\n");
    expect(lines[0]).toBe("NODE\tPID\tTTY\tSTAT\tTIME\tJOBID\tCOMMAND");
    const sleepers = lines.filter((l) => l.endsWith("\tsleep 30"));
    expect(sleepers).toHaveLength(4);
    for (const l of sleepers) expect(l.split("\t")).toHaveLength(7);
    // Options after the node list too, as the original's getopt took them.
    const json = JSON.parse((await runCli(xps, ["--no-key", four.list, "--json", "-J", "pjob"])).stdout);
    expect(json.filter((p: { command: string[] }) => p.command[0] === "sleep")).toHaveLength(4);

    // -J attaches to the running job and waits for its end. The kill comes once it has attached to
    // every node (-v says when), however long that takes.
    let ready!: () => void;
    const attachedAll = new Promise<void>((r) => (ready = r));
    const attached = runCli(xrx, ["--no-key", "-v", "-J", "pjob", four.list], {
      onStderr: (text) => /^xrx: sessions ready at/m.test(text) && ready(),
    });
    await Promise.race([attachedAll, attached]);
    // xk the main processes (the shells): both xrx runs see them die of SIGTERM.
    const k = await runCli(xk, ["--no-key", "TERM", `${four.list}:/pjob`]);
    expect(k.stderr).toBe("");
    expect(k.code).toBe(0);
    const [a, j] = await Promise.all([attached, job]);
    expect(j.stdout).toBe("started\n".repeat(4));
    expect(j.code).toBe(143);
    expect(a.code).toBe(143);
    expect(a.stderr).toContain("killed by signal 15");
  }, 120_000);

  it("-J follows every copy of a job that runs twice on one node", async () => {
    const flag = join(tempDir("xrx-twice-"), "go");
    const a = four.nodes[0]!.spec;
    const job = runCli(xrx, [
      "--no-key",
      "-j",
      "twicejob",
      `${a},${a}`,
      "sh",
      "-c",
      `while [ ! -e ${flag} ]; do sleep 0.1; done; echo copy $XCPUID`,
    ]);
    await until(
      async () =>
        (await runCli(xps, ["--no-key", "-J", "twicejob", a])).stdout
          .split("\n")
          .filter((l) => l.includes("\ttwicejob/")).length >= 2,
      30_000,
      "both copies in xps",
    );
    let ready!: () => void;
    const attachedAll = new Promise<void>((r) => (ready = r));
    const attached = runCli(xrx, ["--no-key", "-v", "-J", "twicejob", a], {
      onStderr: (text) => /^xrx: sessions ready at/m.test(text) && ready(),
    });
    await Promise.race([attachedAll, attached]);
    writeFileSync(flag, "");
    const [j, at] = await Promise.all([job, attached]);
    expect(j.code).toBe(0);
    expect(at.code).toBe(0);
    expect(at.stdout.split("\n").filter(Boolean).sort()).toEqual(j.stdout.split("\n").filter(Boolean).sort());
    expect(at.stdout.split("\n").filter(Boolean)).toHaveLength(2);
  }, 60_000);

  it("keeps one line per process when an argument holds newlines or tabs", async () => {
    const job = runCli(xrx, [
      "--no-key",
      "-j",
      "nljob",
      four.nodes[0]!.spec,
      "sh",
      "-c",
      "sleep 30 </dev/null >/dev/null 2>&1; :",
      "two\nlines\tand a tab\u0001",
    ]);
    let lines: string[] = [];
    await until(
      async () => {
        const r = await runCli(xps, ["--no-key", "-J", "nljob", four.nodes[0]!.spec]);
        lines = r.stdout.trim().split("\n");
        return lines.some((l) => l.includes("two"));
      },
      30_000,
      "nljob in xps",
    );
    for (const l of lines) expect(l.split("\t")).toHaveLength(7);
    // The node sends a line break inside a command line as "?" (the original xps reads procs line
    // by line); COMMAND keeps the node's quoting, as the original xps, and shows the other control
    // characters escaped.
    expect(lines.find((l) => l.includes("two"))).toMatch(
      /\tsh -c 'sleep 30 <\/dev\/null >\/dev\/null 2>&1; :' 'two\?lines\\tand a tab\\x01'$/,
    );
    await runCli(xk, ["--no-key", "KILL", `${four.nodes[0]!.spec}:/nljob`]);
    expect((await job).code).toBe(137);
  }, 60_000);

  it("xk of a job over more nodes than run it: no error for the others; a job found nowhere is one", async () => {
    const [a, b] = [four.nodes[0]!.spec, four.nodes[1]!.spec];
    const job = runCli(xrx, ["--no-key", "-j", "fewjob", a, "sleep", "30"]);
    await until(
      async () => (await runCli(xps, ["--no-key", "-J", "fewjob", a])).stdout.includes("fewjob/"),
      30_000,
      "fewjob",
    );
    expect(await runCli(xk, ["--no-key", "KILL", `${a},${b}:/fewjob`])).toEqual({
      code: 0,
      stdout: "",
      stderr: "",
    });
    expect((await job).code).toBe(137);
    const none = await runCli(xk, ["--no-key", "KILL", `${a},${b}:/nosuchjob`]);
    expect(none.code).toBe(1);
    expect(none.stderr.split("\n").filter(Boolean).sort()).toEqual(
      [`xk: ${a}: no process /nosuchjob`, `xk: ${b}: no process /nosuchjob`].sort(),
    );
  }, 60_000);

  it("xk by pid, and errors for missing targets and bad signals", async () => {
    const job = runCli(xrx, ["--no-key", "-j", "kjob", four.nodes[0]!.spec, "sleep", "30"]);
    let pid = "";
    await until(
      async () => {
        const r = await runCli(xps, ["--no-key", "-J", "kjob", four.nodes[0]!.spec]);
        pid = r.stdout.split("\n")[1]?.split("\t")[1] ?? "";
        return pid !== "";
      },
      30_000,
      "kjob",
    );
    // A target that is no pid is skipped with the original's message; the others are signalled.
    const killed = await runCli(xk, [
      "--no-key",
      "KILL",
      `${four.nodes[0]!.spec}:abc`,
      `${four.nodes[0]!.spec}:${pid}`,
    ]);
    expect(killed).toEqual({ code: 1, stdout: "", stderr: "xk: bad process id: abc; skipping\n" });
    expect((await job).code).toBe(137);
    const missing = await runCli(xk, ["--no-key", "9", `${four.nodes[0]!.spec}:999999`]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no process 999999");
    expect((await runCli(xk, ["--no-key", "BOGUS", `${four.nodes[0]!.spec}:1`])).code).toBe(2);
  }, 60_000);

  it("-J with no such job fails", async () => {
    const r = await runCli(xrx, ["--no-key", "-J", "nosuchjob", four.list]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no sessions found (job nosuchjob)");
  });
});

describe("signals", () => {
  it("forwards SIGINT to the sessions; the program's death is the exit status", async () => {
    const { child, done } = spawnCli("xrx", [
      "--no-key",
      "-p",
      four.list,
      "sh",
      "-c",
      "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.1; done",
    ]);
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    await until(() => (out.match(/ready/g) ?? []).length === 4, 60_000, "programs ready");
    child.kill("SIGINT");
    const r = await done;
    expect(r.stdout.match(/got INT/g)).toHaveLength(4);
    expect(r.code).toBe(7);
  }, 120_000);

  it("a second Ctrl-C wipes the sessions", async () => {
    // The program survives interrupts and says when one reached it: the second Ctrl-C is sent only
    // once the first has been forwarded everywhere (two signals sent close together can merge).
    const { child, done } = spawnCli("xrx", [
      "--no-key",
      four.list,
      "sh",
      "-c",
      "trap 'echo got INT' INT; echo ready; while :; do sleep 0.1; done",
    ]);
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    await until(() => (out.match(/ready/g) ?? []).length === 4, 60_000, "programs ready");
    child.kill("SIGINT");
    await until(() => (out.match(/got INT/g) ?? []).length === 4, 30_000, "first interrupt forwarded");
    child.kill("SIGINT");
    const r = await done;
    expect(r.stderr).toContain("wiping sessions");
    expect(r.code).not.toBe(0);
  }, 120_000);
});

describe("output closed", () => {
  it("ends the job when xrx's stdout goes away (xrx … | head -1)", async () => {
    const { child, done } = spawnCli("xrx", [
      "--no-key",
      four.list,
      "sh",
      "-c",
      "while :; do echo y; sleep 0.05; done",
    ]);
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
    child.stdout!.destroy();
    const r = await done;
    expect(r.code).toBe(141);
    await until(() => four.nodes.every((n) => sessionDirCount(n.tmp) === 0), 30_000, "sessions removed");
  }, 120_000);
});

describe("output closed while attached (-J)", () => {
  it("a viewer whose output goes away stops watching; the job it watched goes on", async () => {
    const flag = join(tempDir("xrx-viewer-"), "go");
    const job = runCli(xrx, [
      "--no-key",
      "-j",
      "viewedjob",
      four.list,
      "sh",
      "-c",
      `while [ ! -e ${flag} ]; do echo y; sleep 0.05; done; echo done`,
    ]);
    await until(
      async () =>
        (await runCli(xps, ["--no-key", "-J", "viewedjob", four.list])).stdout
          .split("\n")
          .filter((l) => l.includes("\tviewedjob/")).length >= 4,
      30_000,
      "job in xps",
    );
    const { child, done } = spawnCli("xrx", ["--no-key", "-J", "viewedjob", four.list]);
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
    child.stdout!.destroy();
    expect((await done).code).toBe(141);
    writeFileSync(flag, "");
    const j = await job;
    expect(j.code).toBe(0);
    expect(j.stdout.split("\n").filter((l) => l === "done")).toHaveLength(4);
  }, 120_000);
});

describe("authentication", () => {
  it.skipIf(!sshKeygen)(
    "a node that never answers costs xk and xps one -t, not one per identity tried (-A and -k)",
    async () => {
      const dir = tempDir("xrx-silent-");
      for (const name of ["admin", "user"]) {
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, name)]);
      }
      const { createServer } = await import("node:net");
      const held: import("node:net").Socket[] = [];
      const silent = createServer((sock) => held.push(sock));
      await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
      onCleanup(async () => {
        for (const s of held) s.destroy();
        await new Promise((r) => silent.close(r));
      });
      const port = (silent.address() as import("node:net").AddressInfo).port;
      const keys = ["-A", join(dir, "admin"), "-k", join(dir, "user"), "-t", "1"];
      for (const [tool, args] of [
        [xk, [...keys, "TERM", `127.0.0.1!${port}:/job`]],
        [xps, [...keys, `127.0.0.1!${port}`]],
      ] as const) {
        const started = Date.now();
        const r = await runCli(tool, [...args]);
        const took = Date.now() - started;
        expect(r.code).toBe(1);
        expect(r.stderr).toContain("within 1000 ms");
        expect(took).toBeLessThan(1900); // not 2 s: the user key is not tried after a silent node
      }
    },
    30_000,
  );
  it.skipIf(!sshKeygen)(
    "a -k key that cannot be used is an error even when there is an admin key (xps, xk)",
    async () => {
      const dir = tempDir("xrx-badk-");
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "admin")]);
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "secret", "-f", join(dir, "locked")]);
      for (const [tool, args] of [
        [xps, ["127.0.0.1!1"]],
        [xk, ["TERM", "127.0.0.1!1:/job"]],
      ] as const) {
        for (const [key, why] of [
          ["locked", /locked: passphrase-protected keys are not supported/],
          ["missing", /missing: cannot read key/],
        ] as const) {
          const r = await runCli(tool, ["-A", join(dir, "admin"), "-k", join(dir, key), ...args]);
          expect(r.code, `${key} ${args.join(" ")}`).toBe(1);
          expect(r.stderr).toMatch(why);
        }
      }
    },
    30_000,
  );
  it.skipIf(!sshKeygen)(
    "authenticates with RSA PEM and Ed25519 OpenSSH keys; a wrong key is refused",
    async () => {
      const dir = tempDir("xrx-auth-");
      const keygen = (name: string, type: string, format: string[] = []) => {
        execFileSync("ssh-keygen", [
          "-q",
          "-t",
          type,
          ...(type === "rsa" ? ["-b", "2048"] : []),
          ...format,
          "-N",
          "",
          "-f",
          join(dir, name),
        ]);
        return join(dir, name);
      };
      const admin = keygen("admin", "rsa", ["-m", "PEM"]);
      const user = keygen("user", "ed25519");
      const stranger = keygen("stranger", "ed25519");
      const node = await startNode({ noAuth: false, adminKeyFile: `${admin}.pub` });
      const uid = process.getuid!();
      const adm = await XcpuNode.connect(xcpuNodes(node.spec)[0]!, {
        identity: adminIdentity(loadPrivateKey(admin)),
      });
      const name = execFileSync("id", ["-un"], { encoding: "utf8" }).trim();
      await adm.rootCtl("group-add xrxusers 4242");
      await adm.rootCtl(`user-add ${name} ${uid} xrxusers '${readFileSync(`${user}.pub`, "utf8").trim()}'`);
      adm.close();
      expect(readFileSync(admin, "utf8")).toContain("BEGIN RSA PRIVATE KEY");
      const ok = await runCli(xrx, ["-k", user, node.spec, "echo", "authenticated"]);
      expect(ok.stdout).toBe("authenticated\n");
      expect(ok.code).toBe(0);
      const bad = await runCli(xrx, ["-k", stranger, node.spec, "echo", "no"]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain(`${node.spec}: error: authentication failed`);
      const junk = await runCli(xrx, ["-k", join(dir, "user.pub"), node.spec, "echo", "no"]);
      expect(junk.code).toBe(1);
      expect(junk.stderr).toMatch(/user\.pub: not a private key/);

      // Tree spawn as an Ed25519 user: the passkey comes sealed for the key (X25519, AES-GCM).
      const node2 = await startNode({ noAuth: false, adminKeyFile: `${admin}.pub` });
      const adm2 = await XcpuNode.connect(xcpuNodes(node2.spec)[0]!, {
        identity: adminIdentity(loadPrivateKey(admin)),
      });
      await adm2.rootCtl("group-add xrxusers 4242");
      await adm2.rootCtl(`user-add ${name} ${uid} xrxusers '${readFileSync(`${user}.pub`, "utf8").trim()}'`);
      adm2.close();
      const both = `${node.spec},${node2.spec}`;
      const tree = await runCli(xrx, ["-k", user, "-v", "-n", "1", both, "echo", "tree"]);
      expect(tree.stdout).toBe("tree\ntree\n");
      expect(tree.stderr).toContain(
        "staging: 1 direct, 1 by tree spawn, 0 retried directly, 0 clone failures",
      );
      expect(tree.stderr).not.toContain("unavailable");
      expect(tree.code).toBe(0);

      // xk -A: the admin key signals any process through the root ctl.
      const job = runCli(xrx, ["-k", user, "-j", "adm", both, "sleep", "30"]);
      await until(
        async () => {
          const r = await runCli(xps, ["-A", admin, "-J", "adm", both]);
          return r.stdout.trim().split("\n").length === 3;
        },
        30_000,
        "adm job",
      );
      const k = await runCli(xk, ["-A", admin, "KILL", `${both}:/adm`]);
      expect(k.stderr).toBe("");
      expect(k.code).toBe(0);
      expect((await job).code).toBe(137);
    },
    120_000,
  );
});

describe("node sources and options", () => {
  it("-a/--statfs takes the up nodes of a statfs table; NODES names the nodes", async () => {
    const dir = tempDir("xrx-statfs-");
    const [a, b, c] = four.nodes;
    const table = [
      `alpha\ttcp!127.0.0.1!${a!.port}\t/Linux/x86_64\n\tup\t0`,
      `beta\ttcp!127.0.0.1!${b!.port}\t/Linux/x86_64\tdown\t0`,
      `gamma\ttcp!127.0.0.1!${c!.port}\t/Linux/x86_64\tup\t1`,
    ].join("\n");
    writeFileSync(join(dir, "state"), `${table}\n`);
    const r = await runCli(xrx, ["--no-key", "-p", "--statfs", join(dir, "state"), "echo", "up"]);
    expect(r.stdout.trim().split("\n").sort()).toEqual(["alpha: up", "gamma: up"]);
    // The node left out is named, with what statfs says of it.
    expect(r.stderr).toBe("xrx: 2 of 3 nodes are up; not running on beta (down)\n");
    const n = await runCli(xrx, ["--no-key", "echo", "from", "NODES"], {
      env: { NODES: `${a!.spec},${b!.spec}` },
    });
    expect(n.stdout).toBe("from NODES\n".repeat(2));
  });
  it("-a --statfs ADDRESS asks a running statfs which nodes are up", async () => {
    const dir = tempDir("xrx-statfs-srv-");
    const [a, b] = four.nodes;
    const conf = join(dir, "cluster.yaml");
    writeFileSync(
      conf,
      [
        "nodes:",
        `  - { name: alpha, address: "tcp!127.0.0.1!${a!.port}" }`,
        `  - { name: beta, address: "tcp!127.0.0.1!${b!.port}" }`,
        `  - { name: gone, address: "tcp!127.0.0.1!1" }`,
        "",
      ].join("\n"),
    );
    const statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      // Live nodes must not miss a poll while this process is busy: timeouts of seconds. Each
      // node is polled at once when statfs starts, so nothing waits for the interval.
      pollOverrides: { intervalMs: 10_000, connectTimeoutMs: 5000, readTimeoutMs: 5000 },
    });
    onCleanup(() => statfs.close());
    const addr = statfs.addresses[0]!;
    await until(
      async () => {
        const r = await runCli(xrx, ["--no-key", "-a", "--statfs", addr, "true"]);
        return (
          r.code === 0 &&
          r.stderr === "xrx: 2 of 3 nodes are up; not running on gone (down(connect_failed))\n"
        );
      },
      30_000,
      "statfs to see the nodes up",
    );
    const r = await runCli(xrx, ["--no-key", "-p", "-a", "--statfs", addr, "echo", "up"]);
    expect(r.stdout.trim().split("\n").sort()).toEqual(["alpha: up", "beta: up"]);
    // xps -a lists the processes of the same up nodes, under their statfs names.
    const ps = await runCli(xps, ["--no-key", "-a", "--statfs", addr]);
    expect(ps.code).toBe(0);
    const names = new Set(
      ps.stdout
        .trim()
        .split("\n")
        .slice(1)
        .map((l) => l.split("\t")[0]),
    );
    expect([...names].sort()).toEqual(["alpha", "beta"]);
  }, 60_000);

  it("-m sets the message size; a TTY gets a progress line", async () => {
    const r = await runCli(xrx, ["--no-key", "-m", "4096", four.list, "wc", "-c"], {
      stdin: "y".repeat(50_000),
    });
    expect(r.stdout).toBe("50000\n".repeat(4));
    const tty = await runCli(xrx, ["--no-key", four.list, "true"], { ttyStderr: true });
    expect(tty.stderr).toMatch(/\r\x1b\[Kxrx: staging \d+\/4 nodes/);
    expect(tty.stderr.endsWith("\r\x1b[K")).toBe(true);
    // With tree spawn the total is what this process sends (the first level), and it is reached.
    for (const args of [[], ["-n", "2"]]) {
      const t = await runCli(xrx, ["--no-key", ...args, four.list, "/bin/true"], { ttyStderr: true });
      expect(t.code).toBe(0);
      const last = [...t.stderr.matchAll(/staging 4\/4 nodes, (\S+ \S+) of (\S+ \S+)/g)].at(-1);
      expect(last, t.stderr).toBeDefined();
      expect(last![1]).toBe(last![2]);
    }
  });
});

describe("command line", () => {
  it("--help", async () => {
    for (const m of [xrx, xk, xps]) {
      const r = await runCli(m, ["--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^usage: x(rx|k|ps)/);
    }
  });
  it("--version and -V print the package's version and exit 0", async () => {
    const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    for (const [m, name] of [
      [xrx, "xrx"],
      [xk, "xk"],
      [xps, "xps"],
    ] as const) {
      for (const flag of ["--version", "-V"]) {
        const r = await runCli(m, [flag]);
        expect(r, `${name} ${flag}`).toMatchObject({ code: 0, stdout: `${name} ${version}\n`, stderr: "" });
      }
      expect((await runCli(m, ["--help"])).stdout).toContain("-V, --version");
    }
  });
  it("usage errors exit 2", async () => {
    for (const [m, argv] of [
      [xrx, []],
      [xrx, ["n1"]],
      [xrx, ["-Z", "n1", "true"]],
      [xrx, ["-l", "-e", "x", "n1", "d"]],
      [xrx, ["n[1-", "true"]],
      [xrx, ["-n", "x", "n1", "true"]],
      [xrx, ["-n"]],
      [xrx, ["-n", "-3", "n1", "true"]],
      [xrx, ["-m", "4294967296", "n1", "true"]],
      [xrx, ["--no-key", "-k", "key", "n1", "true"]],
      [xrx, ["-j", "a/b", "n1", "true"]],
      [xk, ["9"]],
      [xk, ["--no-key", "-A", "admin_key", "9", "n1:1"]],
      [xps, []],
      [xps, ["--no-key", "-k", "key", "n1"]],
      // refused before statfs is asked (nobody listens there)
      [xps, ["-a", "n1", "--statfs", "127.0.0.1!1"]],
    ] as const) {
      const r = await runCli(m, [...argv]);
      expect(r.code, argv.join(" ")).toBe(2);
      expect(r.stderr).toMatch(/usage:/);
    }
  });
  it("an unknown option is named in the words of the suite's other tools, then the usage", async () => {
    for (const [m, name] of [
      [xrx, "xrx"],
      [xk, "xk"],
      [xps, "xps"],
    ] as const) {
      const r = await runCli(m, ["--bogus", "n1"]);
      expect(r.code, name).toBe(2);
      expect(r.stderr, name).toMatch(new RegExp(`^${name}: unknown option --bogus\nusage: ${name} `));
      const v = await runCli(m, ["--version=3"]);
      expect(v.stderr, name).toMatch(new RegExp(`^${name}: option -V/--version takes no value\n`));
    }
  });
  it("a node list that names no node gets the original's zero-nodes error, status 1", async () => {
    for (const [argv, env] of [
      [["n[3-1]", "true"], {}],
      [[",,", "true"], {}],
      [["true"], { NODES: "n[9-2]" }],
    ] as const) {
      const r = await runCli(xrx, ["--no-key", ...argv], { env: { ...env } });
      expect(r.code, argv.join(" ")).toBe(1);
      expect(r.stderr).toMatch(
        /^Error: attempt to execute command to zero nodes \(the node list "[^"]+" names none\)\n$/,
      );
    }
  });
  it("an unknown or refusing node is reported by name, with the original's words", async () => {
    // A label longer than 63 bytes: the resolver refuses the name without sending a query.
    const unknown = `${"n".repeat(64)}.invalid`;
    const r = await runCli(xrx, ["--no-key", "-t", "2", unknown, "true"]);
    expect(r.code).toBe(1);
    // With the original's words, which scripts look for.
    expect(r.stderr).toContain(`${unknown}: error: `);
    expect(r.stderr).toContain(`(cannot resolve name: ${unknown})\n`);
    const x = await runCli(xps, ["--no-key", "127.0.0.1!1"]);
    expect(x.code).toBe(1);
    expect(x.stderr).toBe(
      "xps: 127.0.0.1!1: cannot connect to tcp!127.0.0.1!1: ECONNREFUSED (Connection refused:127.0.0.1)\n",
    );
  });
  it("a -l program missing on the node: its error and status come back", async () => {
    const r = await runCli(xrx, ["--no-key", "-l", four.nodes[0]!.spec, "/no/such/program"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("/no/such/program");
    expect(r.stderr).toContain(`xrx: ${four.nodes[0]!.spec}: exit 2`);
  });
  it("a program that is not on PATH", async () => {
    const r = await runCli(xrx, ["--no-key", four.list, "no-such-program-xyz"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('bad command name: no file "no-such-program-xyz" in $PATH');
  });
  it("runs as a real process through the bin entry", async () => {
    const { done } = spawnCli("xrx", ["--no-key", "-p", four.nodes[0]!.spec, "cat"], {
      stdin: "via stdin\n",
    });
    const r = await done;
    expect(r.stdout).toBe(`${four.nodes[0]!.spec}: via stdin\n`);
    expect(r.code).toBe(0);
  }, 120_000);
});
