// `ninep serve` options for real mounts: --squash (every client acts as one user),
// --max-fids and --handshake-timeout, against the server started by main().

import { chmod, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { main } from "../../src/cli/main.js";
import { mount } from "../../src/client/index.js";
import { Dialect, OWRITE } from "../../src/codec/index.js";

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

/** Starts `ninep serve DIR ...extra` on a free loopback port; returns its address and the export. */
async function serve(extra: string[]): Promise<{ addr: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "ninep-serve-opts-"));
  const out = new Capture();
  const err = new Capture();
  const stop = new AbortController();
  const serving = main(["serve", dir, "--listen", "tcp!127.0.0.1!0", ...extra], {
    stdout: out,
    stderr: err,
    stdin: Readable.from([]),
    env: {},
    signal: stop.signal,
  });
  stops.push(async () => {
    stop.abort();
    await serving;
    await rm(dir, { recursive: true, force: true });
  });
  for (const end = Date.now() + 20_000; !out.text.includes("serving") && Date.now() < end; )
    await new Promise((r) => setTimeout(r, 10));
  const m = /on (tcp!127\.0\.0\.1!\d+)/.exec(out.text);
  if (!m) throw new Error(`serve did not start: ${out.text} ${err.text}`);
  return { addr: m[1] as string, dir };
}

/** Whether the server closes a connection that never sends a byte within `ms`. */
function closedWithin(addr: string, ms: number): Promise<boolean> {
  const [, host, port] = addr.split("!");
  return new Promise((resolve) => {
    const s = net.connect(Number(port), host as string);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, ms);
    s.on("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
    s.on("error", () => {});
  });
}

const root = process.getuid?.() === 0;

describe("ninep serve options", () => {
  it.skipIf(!root)("--squash: a client that attaches as uid 0 acts as the squashed user", async () => {
    const { addr, dir } = await serve(["--squash", "65534"]);
    await chmod(dir, 0o777);
    await writeFile(join(dir, "roots"), "root's\n", { mode: 0o644 });
    const fs = await mount(addr, { version: Dialect.P2000L, uname: "", n_uname: 0 });
    try {
      const f = await fs.create("made", 0o644, OWRITE);
      await f.clunk();
      expect((await stat(join(dir, "made"))).uid).toBe(65534);
      // root could give it away, or write root's file; the squashed user cannot
      const made = await fs.root.walk(["made"]);
      await expect(made.setattr({ uid: 0 })).rejects.toThrow(/not permitted|permission/i);
      await made.clunk();
      await expect(fs.open("roots", OWRITE)).rejects.toThrow(/permission/i);
    } finally {
      await fs.close();
    }
  });

  it("--max-fids: the connection's fids are capped at N (EMFILE past it)", async () => {
    const { addr } = await serve(["--max-fids", "16"]);
    const fs = await mount(addr, { version: Dialect.P2000L });
    try {
      const held = [];
      let refused: Error | undefined;
      for (let i = 0; i < 20 && !refused; i++) {
        try {
          held.push(await fs.root.walk([]));
        } catch (err) {
          refused = err as Error;
        }
      }
      expect(held.length).toBe(15); // the root fid is the 16th
      expect(refused?.message).toMatch(/EMFILE|too many/i);
    } finally {
      await fs.close();
    }
  });

  it("--handshake-timeout: 1 closes a silent connection, 0 keeps it", async () => {
    expect(await closedWithin((await serve(["--handshake-timeout", "1"])).addr, 10_000)).toBe(true);
    expect(await closedWithin((await serve(["--handshake-timeout", "0"])).addr, 2_500)).toBe(false);
  });

  it("bad values are usage errors", async () => {
    for (const extra of [
      ["--max-fids", "0"],
      ["--handshake-timeout", "x"],
      ["--squash", "no-such-user-here"],
    ]) {
      const err = new Capture();
      const status = await main(["serve", "/tmp", "--listen", "tcp!127.0.0.1!0", ...extra], {
        stdout: new Capture(),
        stderr: err,
        stdin: Readable.from([]),
        env: {},
      });
      expect({ extra, status }).toEqual({ extra, status: 2 });
      expect(err.text).toMatch(/^ninep serve: --/m);
    }
  });
});
