// Races found by running the built commands thousands of times: what must hold whatever moment a
// signal, a closed output or a slow node picks. Each case pins the moment down so it fails the
// same way every time without the fix.
import { EventEmitter } from "node:events";
import { existsSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../src/cli/args.js";
import { main as xrx } from "../src/cli/xrx.js";
import { main as xrxd } from "../src/cli/xrxd.js";
import { OUTPUT_CLOSED } from "../src/job.js";
import { PACKAGE_VERSION } from "../src/version.js";
import { encodeFrame, Frame, FrameReader, XRXD_PROTOCOL } from "../src/xrxd/protocol.js";
import { serveXrxd } from "../src/xrxd/server.js";
import {
  blockedOnPipe,
  cleanupAll,
  onCleanup,
  pidsWith,
  runCli,
  sessionDirCount,
  startCluster,
  type TestNode,
  tempDir,
  until,
} from "./harness.js";

const sessionCount = (n: TestNode) => sessionDirCount(n.tmp);

afterAll(cleanupAll);

let nodes: TestNode[];
beforeAll(async () => {
  ({ nodes } = await startCluster(3));
});

/**
 * A TCP relay in front of a node that counts the connections open through it. While `held`, what
 * a client sends waits in the relay (the node answers nothing yet): a connect that is slow to
 * finish. `holdWrite` picks 9P writes (by their data) that wait in the relay while the client's
 * later requests go on: a request the node is slow to carry out, as an exec whose fork takes long.
 */
async function relay(target: TestNode, hold = false, holdWrite?: (data: Buffer) => boolean) {
  let held = hold;
  const waiting: Array<() => void> = [];
  const heldWrites: Array<() => void> = [];
  // Writes let through, and the tags the node has answered (with holdWrite).
  const writes: Array<{ tag: number; data: string }> = [];
  const answered = new Set<number>();
  const open = new Set<Socket>();
  let accepted = 0;
  const server = createServer((client) => {
    accepted++;
    open.add(client);
    let upstream: Socket | undefined;
    const pipe = () => {
      if (client.destroyed) return;
      upstream = connect(target.port, "127.0.0.1");
      upstream.on("close", gone);
      upstream.on("error", gone);
      if (!holdWrite) {
        upstream.pipe(client);
        client.pipe(upstream);
        return;
      }
      let replies = Buffer.alloc(0);
      upstream.on("data", (chunk: Buffer) => {
        client.write(chunk);
        replies = Buffer.concat([replies, chunk]);
        while (replies.length >= 4 && replies.length >= replies.readUInt32LE(0)) {
          answered.add(replies.readUInt16LE(5));
          replies = replies.subarray(replies.readUInt32LE(0));
        }
      });
      // 9P messages: size[4] type[1] tag[2] ...; Twrite (118) is fid[4] offset[8] count[4] data.
      let pending = Buffer.alloc(0);
      client.on("data", (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 4 && pending.length >= pending.readUInt32LE(0)) {
          const msg = pending.subarray(0, pending.readUInt32LE(0));
          pending = pending.subarray(msg.length);
          const data = msg[4] === 118 ? msg.subarray(23).toString("latin1") : undefined;
          if (data !== undefined && holdWrite(msg.subarray(23))) heldWrites.push(() => upstream?.write(msg));
          else {
            if (data !== undefined) {
              answered.delete(msg.readUInt16LE(5));
              writes.push({ tag: msg.readUInt16LE(5), data });
            }
            upstream!.write(msg);
          }
        }
      });
    };
    const gone = () => {
      open.delete(client);
      client.destroy();
      upstream?.destroy();
    };
    client.on("close", gone);
    client.on("error", gone);
    if (held) {
      client.pause();
      waiting.push(() => {
        client.resume();
        pipe();
      });
    } else pipe();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  onCleanup(
    () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy();
        server.close(() => r());
      }),
  );
  const port = (server.address() as { port: number }).port;
  return {
    spec: `127.0.0.1!${port}`,
    get open() {
      return open.size;
    },
    get accepted() {
      return accepted;
    },
    release() {
      held = false;
      for (const w of waiting.splice(0)) w();
    },
    get heldWrites() {
      return heldWrites.length;
    },
    releaseWrites() {
      for (const w of heldWrites.splice(0)) w();
    },
    /** Has the node answered a write (let through) whose data matches `re`? */
    answeredWrite(re: RegExp) {
      return writes.some((w) => re.test(w.data) && answered.has(w.tag));
    },
  };
}

describe("a signal while xrx is still connecting", () => {
  it("leaves no connection open, even to nodes that answer only afterwards (xrxd runs on)", async () => {
    // One connection attempt at a time: the first node is slow to answer, the others wait their
    // turn. The Ctrl-C comes while the first is still connecting.
    const slow = await relay(nodes[0]!, true);
    const rest = await Promise.all(nodes.slice(1).map((n) => relay(n)));
    const signals = new EventEmitter();
    const run = runCli(
      xrx,
      ["--no-key", "--max-connecting", "1", [slow, ...rest].map((r) => r.spec).join(","), "/bin/true"],
      { signals },
    );
    await until(() => slow.accepted === 1, 20_000, "the first connection");
    signals.emit("SIGINT");
    const r = await run;
    expect(r.code).toBe(130);
    expect(r.stderr).toContain("interrupted by SIGINT before the program started");
    // The slow node answers now. Its connection, and any made after the interrupt, must not
    // stay open in the process (xrxd's, which runs for hours).
    slow.release();
    await until(() => slow.open === 0, 20_000, "the slow node's connection to close");
    expect(rest.map((x) => x.accepted)).toEqual(rest.map(() => 0));
    expect(rest.map((x) => x.open)).toEqual(rest.map(() => 0));
  });
});

describe("output to a reader that does not keep up", () => {
  it("is read from the nodes only as fast as it is taken: xrx (and xrxd) memory stays bounded", async () => {
    const marker = `xrx-slow-reader-${process.pid}-${Date.now()}`;
    // A standard output that takes nothing until released (a pipe to a reader that is busy).
    let release: (() => void) | undefined;
    const held: Array<() => void> = [];
    const stdout = new Writable({
      highWaterMark: 64 * 1024,
      write(_chunk, _enc, cb) {
        if (release) cb();
        else held.push(cb);
      },
    });
    release = undefined;
    const signals = new EventEmitter();
    const io: CliIo = {
      stdin: new PassThrough().end(),
      stdout,
      stderr: new PassThrough().resume(),
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      cwd: tempDir("xrx-slow-reader-"),
      signals,
    };
    const list = nodes.map((n) => n.spec).join(",");
    // Every node's `yes` writes as fast as it can, for ever.
    const run = xrx(["--no-key", "-l", list, "/usr/bin/yes", marker], io);
    await until(() => pidsWith(marker).length === nodes.length, 20_000, "the programs to start");
    // Either every program ends up asleep on its full pipe (xrx stopped reading: what must
    // happen), or xrx goes on reading into memory. 64 MiB is far more than xrx may hold: one
    // read per node and stream, and the sink's own buffer.
    const limit = 64 * 1024 * 1024;
    let steady = false;
    await until(
      async () => {
        if (stdout.writableLength > limit) return true;
        const before = stdout.writableLength;
        if (!pidsWith(marker).every(blockedOnPipe)) return false;
        await new Promise((r) => setTimeout(r, 300));
        steady = stdout.writableLength === before && pidsWith(marker).every(blockedOnPipe);
        return steady;
      },
      120_000,
      "the programs to block or xrx to buffer",
    );
    expect(stdout.writableLength).toBeLessThan(limit);
    expect(steady).toBe(true);
    release = () => {};
    for (const cb of held.splice(0)) cb();
    signals.emit("SIGTERM");
    expect(await run).toBe(143);
  });
});

describe("a session wiped while its exec is still under way on the node", () => {
  it("is reported like any failed node: no unhandled rejection ends xrx with a stack trace", async () => {
    // The node carries out `exec` asynchronously (a fork under load takes a while) and a wipe
    // meanwhile answers the parked wait at once. Here the exec waits in a relay while the wipe
    // (our output went away) goes through.
    const slow = await relay(nodes[0]!, false, (data) => /(^|\n)exec /.test(data.toString("latin1")));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const signals = new EventEmitter();
      const run = runCli(xrx, ["--no-key", "-l", slow.spec, "/bin/sleep", "30"], {
        signals,
        cwd: tempDir("xrx-exec-wipe-"),
      });
      await until(() => slow.heldWrites === 1, 20_000, "the exec to be sent");
      signals.emit(OUTPUT_CLOSED);
      // The wait's empty answer comes back and is settled before the exec is let through.
      await until(() => sessionCount(nodes[0]!) === 0, 20_000, "the session to be wiped");
      await new Promise((r) => setTimeout(r, 200));
      slow.releaseWrites();
      const r = await run;
      expect(r.code).toBe(141);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("a Ctrl-C while the node is still carrying out the exec", () => {
  it("reaches the program once it runs (the node drops a signal for a program not started yet)", async () => {
    // The exec waits in the relay; the signal goes through and is answered first.
    const slow = await relay(nodes[1]!, false, (data) => /(^|\n)exec /.test(data.toString("latin1")));
    const signals = new EventEmitter();
    const run = runCli(xrx, ["--no-key", "-l", slow.spec, "/bin/sleep", "20"], {
      signals,
      cwd: tempDir("xrx-exec-signal-"),
    });
    await until(() => slow.heldWrites === 1, 20_000, "the exec to be sent");
    signals.emit("SIGINT");
    // A forwarded signal would be answered now; one kept back for the exec is not sent yet.
    await new Promise((r) => setTimeout(r, 500));
    slow.releaseWrites();
    const r = await run;
    expect(r.code).toBe(130);
    expect(r.stderr).toContain(`xrx: ${slow.spec}: killed by signal 2`);
    expect(slow.answeredWrite(/^signal 2/)).toBe(true);
  });
});

describe("a Ctrl-C that reaches xrxd while the run is still finding its nodes (-a)", () => {
  it("ends the run before anything starts, as it ends xrx itself, instead of being dropped", async () => {
    const dir = tempDir("xrxd-early-signal-");
    const table = join(dir, "state");
    writeFileSync(table, `n1\ttcp!127.0.0.1!${nodes[2]!.port}\t/Linux/x86_64\tup\t0\n`);
    const server = await serveXrxd({ socketPath: join(dir, "sock"), main: xrx });
    onCleanup(() => server.close());
    const sock = connect(server.socketPath);
    onCleanup(() => {
      sock.destroy();
    });
    let exit: number | undefined;
    let stderr = "";
    const reader = new FrameReader((type, payload) => {
      if (type === Frame.Exit) exit = payload.readUInt32LE(0);
      if (type === Frame.Stderr) stderr += payload.toString();
    });
    sock.on("data", (d: Buffer) => reader.push(d));
    const closed = new Promise((r) => sock.once("close", r));
    await new Promise((r) => sock.once("connect", r));
    // The start and the signal in one write: xrxd reads the signal while the run reads the table.
    const start = {
      protocol: XRXD_PROTOCOL,
      version: PACKAGE_VERSION,
      argv: ["--no-key", "--statfs", table, "/bin/sleep", "20"],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      cwd: dir,
      stdin: "null",
      tty: { stdin: false, stdout: false, stderr: false },
    };
    sock.write(
      Buffer.concat([encodeFrame(Frame.Start, JSON.stringify(start)), encodeFrame(Frame.Signal, "SIGINT")]),
    );
    await closed;
    expect(exit).toBe(130);
    expect(stderr).toContain("interrupted by SIGINT before the program started");
  });
});

describe("a stop sent as soon as xrxd has printed its lines", () => {
  it("is listened for already: xrxd stops and removes its socket (it died and left the socket)", async () => {
    const sock = join(tempDir("xrxd-early-stop-"), "sock");
    const signals = new EventEmitter();
    let listening: number | undefined;
    const stdout = new Writable({
      write(chunk: Buffer, _enc, cb) {
        // The lines that name xrxd: a supervisor or `xrxd -k` may signal it from now on.
        if (chunk.toString().includes("XRXD_PID=")) {
          listening = signals.listenerCount("SIGTERM");
          setImmediate(() => signals.emit("SIGTERM"));
        }
        cb();
      },
    });
    const io: CliIo = {
      stdin: new PassThrough().end(),
      stdout,
      stderr: new PassThrough().resume(),
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      cwd: dirname(sock),
      signals,
    };
    const code = await xrxd(["-D", "-s", "-a", sock], io);
    expect(listening).toBe(1);
    expect(code).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });
});
