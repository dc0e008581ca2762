// The library API directly: sessions by hand, tree spawn that the nodes cannot complete (every
// node must still run), and architecture selection from each node's arch file.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xrx } from "../src/cli/xrx.js";
import { parseElf } from "../src/elf.js";
import { runJob } from "../src/job.js";
import { xcpuNodes } from "../src/nodes.js";
import { planStaging } from "../src/staging.js";
import { DEFAULT_MSIZE, userIdentity, XcpuError, XcpuNode } from "../src/xcpu.js";
import { cleanupAll, ROOT, runCli, startCluster, startNode, type TestNode, tempDir } from "./harness.js";

afterAll(cleanupAll);

let four: { nodes: TestNode[]; list: string };
beforeAll(async () => {
  four = await startCluster(4);
});

describe("message size", () => {
  it("asks for 1 MiB messages and takes what the node offers; large files use them", async () => {
    const big = await startNode({ msize: 1024 * 1024 + 24 });
    const old = await startNode({ msize: 32792 });
    const id = { identity: userIdentity(null) };
    const a = await XcpuNode.connect(xcpuNodes(big.spec)[0]!, id);
    const b = await XcpuNode.connect(xcpuNodes(old.spec)[0]!, id);
    expect(a.client.msize).toBe(DEFAULT_MSIZE);
    expect(b.client.msize).toBe(32792);
    a.close();
    b.close();
    // A 3 MiB program goes to both in messages of their size, and arrives whole.
    const dir = tempDir("xrx-msize-");
    const prog = join(dir, "big.sh");
    writeFileSync(prog, `#!/bin/sh\nwc -c < "$0"\nexit 0\n${"#".repeat(3 * 1024 * 1024)}\n`);
    chmodSync(prog, 0o755);
    const trace: string[] = [];
    const r = await runCli(xrx, ["--no-key", "-d", "-S", `${big.spec},${old.spec}`, prog]);
    trace.push(...r.stderr.split("\n"));
    expect(r.code).toBe(0);
    const size = String(readFileSync(prog).length);
    expect(r.stdout).toBe(`${size}\n${size}\n`);
    const writes = trace
      .filter((l) => /-> Twrite .* data \d+/.test(l))
      .map((l) => Number(/data (\d+)/.exec(l)![1]));
    expect(Math.max(...writes)).toBe(1024 * 1024);
    expect(writes.filter((n) => n === 32768).length).toBeGreaterThanOrEqual(96);
  }, 60_000);
});

describe("sessions through the library", () => {
  it("creates a session, sets argv and env, streams, waits; errors name the node", async () => {
    const spec = xcpuNodes(four.nodes[0]!.spec)[0]!;
    const node = await XcpuNode.connect(spec, { identity: userIdentity(null) });
    expect(await node.arch()).toMatch(/^\/Linux\/\S+$/);
    const s = await node.createSession();
    await s.setArgv(["sh", "-c", 'read x; echo "$x $GREETING $XCPUSID"; echo err >&2; exit 4']);
    await s.appendEnv("'GREETING=hello there'\n");
    let out = "";
    let err = "";
    const pumps = Promise.all([s.pump("stdout", (b) => (out += b)), s.pump("stderr", (b) => (err += b))]);
    await s.exec("/bin/sh");
    await s.writeStdin(Buffer.from("input\n"));
    await s.closeStdin();
    const st = await s.wait();
    await pumps;
    expect(out).toBe(`input hello there ${s.id}\n`);
    expect(err).toBe("err\n");
    expect(st.code).toBe(4);
    await s.release();
    const e = await node.readFile("no-such-file").catch((x) => x);
    expect(e).toBeInstanceOf(XcpuError);
    expect(e.node).toBe(spec.name);
    expect(e.message).toMatch(new RegExp(`^${spec.name.replace(/[.!]/g, "\\$&")}: `));
    node.close();
  });
});

describe("tree spawn that the nodes cannot finish", () => {
  it("verifies every delegated node and copies directly to the ones the tree missed", async () => {
    const d = tempDir("xrx-retry-");
    writeFileSync(join(d, "prog"), '#!/bin/sh\necho "ran $XCPUID"\n');
    chmodSync(join(d, "prog"), 0o755);
    const out = new PassThrough();
    let text = "";
    out.on("data", (b) => (text += b));
    const nodes = xcpuNodes(four.list);
    // Nodes are told to reach nodes 2 and 4 at a port where nothing listens.
    const res = await runJob({
      nodes,
      identity: userIdentity(null),
      program: join(d, "prog"),
      treeWidth: 2,
      stdout: out,
      stderr: new PassThrough(),
      stdin: null,
      peerAddress: (n) => (n === nodes[1] || n === nodes[3] ? "tcp!127.0.0.1!1" : n.address),
      connectTimeoutMs: 10_000,
    });
    expect(res.exitCode).toBe(0);
    expect(text.trim().split("\n").sort()).toEqual(["ran /1", "ran /2", "ran /3", "ran /4"]);
    expect(res.stats.retried).toBe(2);
    expect(res.stats.byTree).toBe(0);
  });
});

describe("architectures", () => {
  it("stages each node the program from its architecture's sysroot (arch newline trimmed)", async () => {
    const x86 = await startNode();
    const other = await startNode({ arch: "/Linux/fakearch" });
    const sysroot = tempDir("xrx-sysroot-");
    mkdirSync(join(sysroot, "Linux/fakearch/bin"), { recursive: true });
    writeFileSync(join(sysroot, "Linux/fakearch/bin/whoarch"), "#!/bin/sh\necho fakearch build\n");
    chmodSync(join(sysroot, "Linux/fakearch/bin/whoarch"), 0o755);
    const local = tempDir("xrx-localbin-");
    writeFileSync(join(local, "whoarch"), "#!/bin/sh\necho native build\n");
    chmodSync(join(local, "whoarch"), 0o755);
    const r = await runCli(xrx, ["--no-key", "-p", `${x86.spec},${other.spec}`, "whoarch"], {
      env: { XCPU_SYSROOT: sysroot, PATH: `${local}:/bin:/usr/bin` },
    });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim().split("\n").sort()).toEqual(
      [`${x86.spec}: native build`, `${other.spec}: fakearch build`].sort(),
    );
    // An architecture without a sysroot fails only its nodes, by name.
    const lost = await startNode({ arch: "/Linux/nosysroot" });
    const r2 = await runCli(xrx, ["--no-key", `${x86.spec},${lost.spec}`, "whoarch"], {
      env: { XCPU_SYSROOT: sysroot, PATH: `${local}:/bin:/usr/bin` },
    });
    expect(r2.code).toBe(1);
    expect(r2.stdout).toBe("native build\n");
    expect(r2.stderr).toContain(
      `${lost.spec}: error: cannot find system root for architecture /Linux/nosysroot`,
    );
  });

  const busybox = [process.env.XRX_ARM64_BUSYBOX, join(ROOT, ".cache/busybox-arm64/root/bin/busybox")].find(
    (p) => p && existsSync(p),
  );
  const qemu = existsSync("/proc/sys/fs/binfmt_misc/qemu-aarch64");

  it("picks the arm64 busybox from the sysroot for an aarch64 node", (ctx) => {
    if (!busybox) {
      console.log(
        "skipped: no arm64 busybox (see README: dpkg-deb -x busybox-static arm64 into .cache/busybox-arm64/root)",
      );
      ctx.skip();
      return;
    }
    const root = tempDir("xrx-arm-");
    mkdirSync(join(root, "Linux/aarch64/bin"), { recursive: true });
    copyFileSync(busybox, join(root, "Linux/aarch64/bin/uname"));
    chmodSync(join(root, "Linux/aarch64/bin/uname"), 0o755);
    const plan = planStaging({
      program: "uname",
      args: ["-m"],
      sysroot: join(root, "Linux/aarch64"),
      path: "/bin:/usr/bin",
    });
    expect(plan.files).toHaveLength(1); // static: no libraries
    expect(parseElf(readFileSync(plan.files[0]!.local)).machine).toBe(183);
  });

  it("one run over an x86_64 node and a qemu-user aarch64 node prints both machines", async (ctx) => {
    if (!busybox || !qemu) {
      console.log(
        `skipped: ${!qemu ? "qemu-aarch64 is not registered in /proc/sys/fs/binfmt_misc (qemu-user-static, binfmt-support)" : "no arm64 busybox"}`,
      );
      ctx.skip();
      return;
    }
    const root = tempDir("xrx-arm-");
    mkdirSync(join(root, "Linux/aarch64/bin"), { recursive: true });
    copyFileSync(busybox, join(root, "Linux/aarch64/bin/busybox"));
    chmodSync(join(root, "Linux/aarch64/bin/busybox"), 0o755);
    copyFileSync(busybox, join(root, "Linux/aarch64/bin/uname"));
    chmodSync(join(root, "Linux/aarch64/bin/uname"), 0o755);
    const x86 = await startNode();
    const arm = await startNode({ arch: "/Linux/aarch64" });
    const nodes = [x86.spec, arm.spec];
    const expected = [`${arm.spec}: aarch64`, `${x86.spec}: x86_64`];
    // A 32-bit ARM node too, the same way, when its busybox and qemu-arm are there.
    const armhf = [process.env.XRX_ARMHF_BUSYBOX, join(ROOT, ".cache/busybox-armhf/root/bin/busybox")].find(
      (p) => p && existsSync(p),
    );
    if (armhf && existsSync("/proc/sys/fs/binfmt_misc/qemu-arm")) {
      mkdirSync(join(root, "Linux/armv7l/bin"), { recursive: true });
      copyFileSync(armhf, join(root, "Linux/armv7l/bin/uname"));
      chmodSync(join(root, "Linux/armv7l/bin/uname"), 0o755);
      const a32 = await startNode({ arch: "/Linux/armv7l" });
      nodes.push(a32.spec);
      expected.push(`${a32.spec}: armv7l`);
    } else {
      console.log("no 32-bit ARM node: busybox-static:armhf or qemu-arm missing");
    }
    const r = await runCli(xrx, ["--no-key", "-p", nodes.join(","), "uname", "-m"], {
      env: { XCPU_SYSROOT: root },
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n").sort()).toEqual(expected.sort());
  });
});
