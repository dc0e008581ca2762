import { execFileSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { MsgType, OREAD } from "../../src/codec/constants.js";
import { Server, SynthDir, treeBackend } from "../../src/server/index.js";
import { RawClient } from "../../src/testing/raw.js";
import { type Fixture, startFixture } from "./fixture.js";

let fx: Fixture;
afterEach(async () => {
  await fx?.close();
});

describe("server smoke", () => {
  it("serves a synthetic file over TCP", async () => {
    fx = await startFixture();
    const c = await RawClient.connect(fx.addr);
    const v = await c.version(8192, "9P2000");
    expect(v.version).toBe("9P2000");
    await c.attach(0);
    expect(await c.walk(0, 1, "hello")).toMatchObject({ type: MsgType.Rwalk });
    expect(await c.call({ type: MsgType.Topen, fid: 1, mode: OREAD })).toMatchObject({ type: MsgType.Ropen });
    const r = await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 100 });
    expect(r.type).toBe(MsgType.Rread);
    if (r.type === MsgType.Rread) expect(Buffer.from(r.data).toString()).toBe("hello, world\n");
    await c.close();
  });
});

describe("dead clients", () => {
  it("a served TCP connection has keepalive probes armed (a vanished host's connection ends)", async () => {
    fx = await startFixture();
    const c = await RawClient.connect(fx.addr);
    await c.version(8192, "9P2000");
    if (fx.addr.network !== "tcp") throw new Error("tcp expected");
    const port = fx.addr.port;
    // The server's end of the connection, as the kernel shows its timers.
    const out = execFileSync("ss", ["-tnoH", "state", "established", `( sport = :${port} )`], {
      encoding: "utf8",
    });
    expect(out).toMatch(/timer:\(keepalive,/);
    await c.close();
  });
});

describe("listening", () => {
  it("a port in use fails listen() with the address and reason, and logs nothing", async () => {
    const logged: string[] = [];
    const log = (...a: unknown[]) => logged.push(a.map(String).join(" "));
    const first = new Server({ backend: treeBackend(new SynthDir("/")) });
    const second = new Server({
      backend: treeBackend(new SynthDir("/")),
      logger: { debug: log, info: () => {}, warn: log, error: log },
    });
    try {
      const a = await first.listen("tcp!127.0.0.1!0");
      if (a.network !== "tcp") throw new Error("tcp");
      const err = await second.listen(`tcp!127.0.0.1!${a.port}`).then(
        () => undefined,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(err?.message).toBe(
        `cannot listen on tcp!127.0.0.1!${a.port}: address already in use (EADDRINUSE)`,
      );
      expect(err?.code).toBe("EADDRINUSE");
      // libuv reports a socket in a missing directory as EACCES: the error names the real cause
      const unix = await second.listen("unix!/nonexistent/dir/s").then(
        () => undefined,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(unix?.message).toBe(
        "cannot listen on unix!/nonexistent/dir/s: no such file or directory (ENOENT): /nonexistent/dir does not exist",
      );
      expect(unix?.code).toBe("ENOENT");
      expect(logged).toEqual([]);
    } finally {
      await second.close();
      await first.close();
    }
  });
});
