// One broken or hostile node among real ones: a fake node that speaks enough 9P2000.u to be
// attached and then misbehaves in xcpu-specific ways (a bad session id, a huge arch, a wait
// status that is no number, output that never ends, a session directory that cannot be walked
// to, write counts that lie, silence). The real node's program must still run and report, the
// broken node must end with a clear error of its own in the summary, the job must fail, and
// nothing may hang or escape as an unhandled rejection.

import { EventEmitter } from "node:events";
import net from "node:net";
import { PassThrough } from "node:stream";
import type * as T from "@clustermatic/ninep/codec";
import { Dialect, decode, dontTouchStat, encode, Framer, MsgType, QTDIR } from "@clustermatic/ninep/codec";
import { Server, SynthDir, SynthFile, treeBackend } from "@clustermatic/ninep/server";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { main as xrxMain } from "../src/cli/xrx.js";
import { type JobOptions, type JobResult, runJob } from "../src/job.js";
import { xcpuNodes } from "../src/nodes.js";
import { userIdentity, XcpuNode } from "../src/xcpu.js";
import { cleanupAll, runCli, sessionDirCount, startNode, type TestNode, until } from "./harness.js";

const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);
beforeAll(() => {
  process.on("unhandledRejection", onEscape);
  process.on("uncaughtException", onEscape);
});
afterAll(async () => {
  process.off("unhandledRejection", onEscape);
  process.off("uncaughtException", onEscape);
  await cleanupAll();
});
afterEach(async () => {
  await new Promise((r) => setTimeout(r, 20));
  expect(escaped).toEqual([]);
});

// ---- a fake node ----

const SID = "7";
const SESSION_FILES = ["ctl", "wait", "stdout", "stderr", "stdin", "argv", "env", "fs"];
const dirQid = (path: number): T.Qid => ({ type: QTDIR, version: 0, path: BigInt(path) });
const fileQid = (path: number): T.Qid => ({ type: 0, version: 0, path: BigInt(path) });

/** How the fake node departs from a correct one. Every hook may answer itself (true) or not. */
interface Misbehaviour {
  /** Content of `arch` (default: the real node's). */
  arch?: string;
  /** Content of `clone` (default: the session id). */
  clone?: string;
  /** Content of the session's `wait` once the program "ended" (default "0"). */
  wait?: string;
  /**
   * Output of the program, sent once exec is written. "forever": every read returns data, even
   * after wipe; "never": reads of stdout, stderr and wait are never answered, even after wipe.
   */
  stdout?: string | "forever" | "never";
  /** Reads of `arch` are answered with an Rerror of this text. */
  archError?: string;
  /** Walks into the session directory fail. */
  noSessionDir?: boolean;
  /** Added to the count of every Rwrite. */
  writeExtra?: number;
  /** No answer to anything after the attach. */
  silentAfterAttach?: boolean;
  /** Close the connection after the attach, at the first request. */
  closeAfterAttach?: boolean;
}

interface FakeNode {
  spec: string;
  /** ctl lines written to the session, in order. */
  ctl: string[];
  /** Connections still open. */
  connections(): number;
  close(): Promise<void>;
}

async function startFakeNode(bad: Misbehaviour, realArch: string): Promise<FakeNode> {
  const ctl: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.setNoDelay(true);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
    const framer = new Framer({ maxSize: 1 << 21 });
    const fids = new Map<number, string[]>();
    let attached = false;
    let started = false;
    let wiped = false;
    /** Reads of wait/stdout/stderr parked until the program "ends". */
    const parked: Array<{ m: T.Tread; what: string }> = [];
    const reply = (m: T.RMessage) => {
      if (!sock.destroyed) sock.write(encode(m, Dialect.P2000u));
    };
    const err = (tag: number, ename: string) => reply({ type: MsgType.Rerror, tag, ename, errno: 2 });
    const content = (what: string): string => {
      if (what === "wait") return bad.wait ?? "0";
      if (what === "stdout") return typeof bad.stdout === "string" ? bad.stdout : "";
      return "";
    };
    const answerRead = (m: T.Tread, what: string) => {
      if (what === "stdout" && bad.stdout === "forever") {
        // A little at a time (the test machine is shared), but for ever.
        const data = Buffer.alloc(Math.min(m.count, 4096), 0x79);
        setTimeout(() => reply({ type: MsgType.Rread, tag: m.tag, data }), 2);
        return;
      }
      const text = Buffer.from(wiped && what === "wait" ? "9" : content(what));
      const off = Number(m.offset);
      reply({
        type: MsgType.Rread,
        tag: m.tag,
        data: text.subarray(Math.min(off, text.length), off + m.count),
      });
    };
    const valid = (path: string[]): boolean => {
      if (path.length === 0) return true;
      if (path.length === 1) return ["arch", "clone", "ctl", "procs", SID].includes(path[0]!);
      if (path[0] !== SID || bad.noSessionDir) return false;
      if (path.length === 2) return SESSION_FILES.includes(path[1]!);
      return path[1] === "fs";
    };
    const isDir = (path: string[]) =>
      path.length === 0 || (path.length === 1 && path[0] === SID) || path[1] === "fs";
    const handle = (m: T.TMessage) => {
      if (attached && bad.closeAfterAttach) {
        sock.destroy();
        return;
      }
      if (attached && bad.silentAfterAttach) return;
      switch (m.type) {
        case MsgType.Tversion:
          return reply({
            type: MsgType.Rversion,
            tag: m.tag,
            msize: Math.min(m.msize, 1 << 20),
            version: "9P2000.u",
          });
        case MsgType.Tauth:
          return err(m.tag, "authentication not required");
        case MsgType.Tattach:
          fids.set(m.fid, []);
          attached = true;
          return reply({ type: MsgType.Rattach, tag: m.tag, qid: dirQid(1) });
        case MsgType.Twalk: {
          const from = fids.get(m.fid);
          if (!from) return err(m.tag, "unknown fid");
          const wqid: T.Qid[] = [];
          let path = from;
          for (const name of m.wname) {
            const next = [...path, name];
            if (!valid(next)) break;
            path = next;
            wqid.push(isDir(path) ? dirQid(10 + wqid.length) : fileQid(20 + wqid.length));
          }
          if (wqid.length === 0 && m.wname.length > 0) return err(m.tag, "file not found");
          if (wqid.length === m.wname.length) fids.set(m.newfid, path);
          return reply({ type: MsgType.Rwalk, tag: m.tag, wqid });
        }
        case MsgType.Topen:
          return reply({ type: MsgType.Ropen, tag: m.tag, qid: fileQid(30), iounit: 0 });
        case MsgType.Tcreate: {
          const path = fids.get(m.fid);
          if (path) fids.set(m.fid, [...path, m.name]);
          return reply({ type: MsgType.Rcreate, tag: m.tag, qid: fileQid(31), iounit: 0 });
        }
        case MsgType.Tread: {
          const path = fids.get(m.fid) ?? [];
          const key = path.join("/");
          if (key === "arch" && bad.archError !== undefined) return err(m.tag, bad.archError);
          if (key === "arch" || key === "clone") {
            const text = Buffer.from(key === "arch" ? (bad.arch ?? realArch) : (bad.clone ?? `${SID}\n`));
            const off = Number(m.offset);
            return reply({
              type: MsgType.Rread,
              tag: m.tag,
              data: text.subarray(Math.min(off, text.length), off + m.count),
            });
          }
          const what = path[1] ?? "";
          if (["wait", "stdout", "stderr"].includes(what)) {
            if (started || (what === "stdout" && bad.stdout === "forever")) return answerRead(m, what);
            parked.push({ m, what });
            return;
          }
          return reply({ type: MsgType.Rread, tag: m.tag, data: Buffer.alloc(0) });
        }
        case MsgType.Twrite: {
          const path = fids.get(m.fid) ?? [];
          if (path[1] === "ctl") {
            const lines = Buffer.from(m.data).toString().split("\n").filter(Boolean);
            ctl.push(...lines);
            if (bad.stdout !== "never" && lines.some((l) => l.startsWith("exec") || l === "wipe")) {
              started = true;
              if (lines.includes("wipe")) wiped = true;
              for (const p of parked.splice(0)) answerRead(p.m, p.what);
            }
          }
          return reply({ type: MsgType.Rwrite, tag: m.tag, count: m.data.length + (bad.writeExtra ?? 0) });
        }
        case MsgType.Tstat:
          return reply({
            type: MsgType.Rstat,
            tag: m.tag,
            stat: dontTouchStat({ name: "f", length: 0n, mode: 0o644 }),
          });
        case MsgType.Tclunk:
          fids.delete(m.fid);
          return reply({ type: MsgType.Rclunk, tag: m.tag });
        case MsgType.Tremove:
          fids.delete(m.fid);
          return reply({ type: MsgType.Rremove, tag: m.tag });
        case MsgType.Tflush: {
          const i = parked.findIndex((p) => p.m.tag === m.oldtag);
          if (i >= 0) parked.splice(i, 1);
          return reply({ type: MsgType.Rflush, tag: m.tag });
        }
        default:
          return err(m.tag, "not supported");
      }
    };
    sock.on("data", (chunk) => {
      let frames: Buffer[];
      try {
        frames = framer.push(chunk);
      } catch {
        sock.destroy();
        return;
      }
      for (const f of frames) handle(decode(f, Dialect.P2000u) as T.TMessage);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    spec: `127.0.0.1!${port}`,
    ctl,
    connections: () => sockets.size,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

// ---- running a job on the fake node and a real one ----

interface Run extends JobResult {
  stdout: string;
  stderr: string;
}

async function launch(
  list: string,
  opts: Partial<JobOptions> & { onStarted?: (signals: EventEmitter, stdout: () => string) => void } = {},
): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let errText = "";
  stdout.on("data", (d) => {
    // Keep only the start: a node that sends output forever must not fill the test's memory.
    if (out.length < 1 << 20) out += d;
  });
  stderr.on("data", (d) => (errText += d));
  const signals = new EventEmitter();
  const { onStarted, ...rest } = opts;
  onStarted?.(signals, () => out);
  const result = await runJob({
    nodes: xcpuNodes(list),
    identity: userIdentity(null),
    program: "/bin/sh",
    args: ["-c", "echo real $XCPUID"],
    noLibraries: true,
    stdin: null,
    stdout,
    stderr,
    signals,
    connectTimeoutMs: 5000,
    ...rest,
  });
  return { ...result, stdout: out, stderr: errText };
}

describe("a hostile node next to a real one", () => {
  let real: TestNode;
  let realArch: string;
  beforeAll(async () => {
    real = await startNode();
    const n = await XcpuNode.connect(xcpuNodes(real.spec)[0]!, { identity: userIdentity(null) });
    realArch = await n.arch();
    n.close();
  });

  /**
   * Runs the job on [fake, real]; checks the real node ran and exited 0, the fake one failed
   * with an error matching `error`, the summary names it in a reasonably short line, and the
   * job failed.
   */
  async function expectIsolated(
    bad: Misbehaviour,
    error: RegExp,
    opts: Parameters<typeof launch>[1] = {},
  ): Promise<{ run: Run; fake: FakeNode }> {
    const fake = await startFakeNode(bad, realArch);
    try {
      const run = await launch(`${fake.spec},${real.spec}`, opts);
      const [fo, ro] = run.outcomes;
      expect(ro, "the real node's outcome").toEqual({ node: real.spec, status: { raw: 0, code: 0 } });
      expect(run.stdout).toContain("real /2\n");
      expect(fo?.node).toBe(fake.spec);
      expect(fo?.error, "the hostile node's error").toMatch(error);
      const line = run.stderr.split("\n").find((l) => l.startsWith(`xrx: ${fake.spec}: error: `));
      expect(line, `summary line in ${run.stderr.slice(0, 2000)}`).toBeDefined();
      expect(line!.length).toBeLessThan(600);
      expect(run.exitCode).not.toBe(0);
      await until(() => sessionDirCount(real.tmp) === 0, 20_000, "the real node's session to go");
      await until(() => fake.connections() === 0, 10_000, "xrx to drop its connection to the fake node");
      return { run, fake };
    } finally {
      await fake.close();
    }
  }

  it("clone answers garbage", async () => {
    await expectIsolated({ clone: "x\u001b[2Jy" }, /bad session id/);
  });

  it("clone answers nothing", async () => {
    await expectIsolated({ clone: "" }, /bad session id ""/);
  });

  it("clone answers a huge number", async () => {
    await expectIsolated({ clone: "9".repeat(60) }, /bad session id|not found/);
  });

  it("arch answers a 1 MiB string", async () => {
    await expectIsolated({ arch: `/Linux/${"x".repeat(1 << 20)}` }, /architecture/);
  });

  it("wait answers text that is no status", async () => {
    await expectIsolated({ wait: "banana" }, /bad exit status "banana"/);
  });

  it("wait answers a number no wait status can be", async () => {
    await expectIsolated({ wait: "99999999999999999999999" }, /bad exit status/);
  });

  it("the session directory cannot be walked to", async () => {
    await expectIsolated({ noSessionDir: true }, /not found/);
  });

  it("Rwrite counts more bytes than were written", async () => {
    await expectIsolated({ writeExtra: 1000 }, /Rwrite/);
  });

  it("the node closes the connection after the attach", async () => {
    await expectIsolated({ closeAfterAttach: true }, /connection|closed/);
  });

  it("the node falls silent after the attach: the call time limit ends it", async () => {
    await expectIsolated({ silentAfterAttach: true }, /timed out/, { callTimeoutMs: 1000 });
  });

  it("xrx --call-timeout sets that limit from the command line", async () => {
    const fake = await startFakeNode({ silentAfterAttach: true }, realArch);
    try {
      const r = await runCli(xrxMain, [
        "--no-key",
        "-S",
        "--call-timeout",
        "0.5",
        `${fake.spec},${real.spec}`,
        "/bin/true",
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`xrx: ${fake.spec.replaceAll("!", "\\!")}: error: .*timed out`));
      const bad = await runCli(xrxMain, ["--no-key", "--call-timeout", "soon", real.spec, "/bin/true"]);
      expect(bad.code).toBe(2);
    } finally {
      await fake.close();
    }
  });

  it("an Rerror of 60000 bytes with escape sequences: one short, escaped line", async () => {
    const { run } = await expectIsolated(
      { archError: `\u001b]0;owned\u0007${"e".repeat(60_000)}` },
      /^\\x1b]0;owned\\x07e+…$/,
    );
    expect(run.stderr).not.toContain("\u001b");
  });

  for (const stdout of ["forever", "never"] as const) {
    it(`output that ${stdout === "forever" ? "never ends" : "never comes"}, even after wipe: two interrupts still end the job`, async () => {
      const { run, fake } = await expectIsolated({ stdout }, /did not end .* of wipe/, {
        onStarted: (signals, out) => {
          // Once the real node has reported (and the fake one streams), interrupt twice.
          const ready = () => out().includes("real /2\n") && (stdout === "never" || out().includes("yyyy"));
          void until(ready, 20_000, "output").then(() => {
            signals.emit("SIGINT");
            signals.emit("SIGINT");
          });
        },
      });
      expect(fake.ctl).toContain("signal 2");
      expect(fake.ctl).toContain("wipe");
      expect(run.stderr).toContain("xrx: wiping sessions");
    });
  }
});

describe("a statfs source that never ends (-a)", () => {
  it("is refused past 64 MiB, from a file and from a 9P statfs", async () => {
    const fromFile = await runCli(xrxMain, ["--no-key", "-a", "--statfs", "/dev/zero", "/bin/true"]);
    expect(fromFile.code).toBe(1);
    expect(fromFile.stderr).toContain("/dev/zero is larger than 64 MiB");

    // A statfs whose `state` file reads as a full block forever.
    const line = Buffer.from(`${"n1\t127.0.0.1!1\t/Linux/x86_64\tup\t0\n".repeat(1500)}`);
    const root = new SynthDir("/", { mode: 0o555 });
    root.add(
      new SynthFile("state", {
        mode: 0o444,
        read: (_h, _offset, count) => line.subarray(0, Math.min(count, line.length)),
      }),
    );
    const server = new Server({ backend: treeBackend(root) });
    try {
      const { port } = (await server.listen("tcp!127.0.0.1!0")) as { port: number };
      const fromServer = await runCli(xrxMain, [
        "--no-key",
        "-a",
        "--statfs",
        `127.0.0.1!${port}`,
        "/bin/true",
      ]);
      expect(fromServer.code).toBe(1);
      expect(fromServer.stderr).toContain("its state is larger than 64 MiB");
    } finally {
      await server.close();
    }
  }, 60_000);
});
