// Call time limits decide after pending I/O: a reply that arrived while our event loop was stalled
// (a long synchronous task, a loaded machine) is taken, not beaten by the call's time limit, which
// ran out during the stall. A scripted peer in this process writes the reply to its socket (it is
// then in the client's receive buffer) and stalls the loop in the same turn, for longer than the
// limit: no timing assumption about another process.

import net from "node:net";
import { describe, expect, it } from "vitest";
import { Client } from "../../src/client/index.js";
import { Dialect, decode, encode, Framer, MsgType } from "../../src/codec/index.js";
import { TimeoutError } from "../../src/errors.js";

/** Blocks this process's event loop for `ms`. */
function stall(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
}

/** A peer that answers version, attach and clunk; `onStat` decides about each Tstat. */
async function peer(
  onStat: (reply: () => void) => void,
): Promise<{ address: string; close(): Promise<void> }> {
  const server = net.createServer((sock) => {
    const framer = new Framer({ maxSize: 1 << 20 });
    sock.on("data", (chunk) => {
      for (const frame of framer.push(chunk)) {
        const m = decode(frame, Dialect.P2000u, { msize: 1 << 20 });
        const reply = (r: Parameters<typeof encode>[0]) => sock.write(encode(r, Dialect.P2000u));
        if (m.type === MsgType.Tversion)
          reply({ type: MsgType.Rversion, tag: m.tag, msize: 8192, version: "9P2000.u" });
        else if (m.type === MsgType.Tattach)
          reply({ type: MsgType.Rattach, tag: m.tag, qid: { type: 0x80, version: 0, path: 1n } });
        else if (m.type === MsgType.Twalk) reply({ type: MsgType.Rwalk, tag: m.tag, wqid: [] });
        else if (m.type === MsgType.Tclunk || m.type === MsgType.Tflush)
          reply({ type: m.type + 1, tag: m.tag } as Parameters<typeof encode>[0]);
        else if (m.type === MsgType.Tstat)
          onStat(() =>
            reply({
              type: MsgType.Rstat,
              tag: m.tag,
              stat: {
                type: 0,
                dev: 0,
                qid: { type: 0x80, version: 0, path: 1n },
                mode: 0o40755 | 0x80000000,
                atime: 0,
                mtime: 0,
                length: 0n,
                name: "/",
                uid: "u",
                gid: "g",
                muid: "u",
                extension: "",
                n_uid: 0,
                n_gid: 0,
                n_muid: 0,
              },
            }),
          );
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe("call time limits and a stalled event loop", () => {
  it("a reply that came in during the stall wins over a limit that ran out during it", async () => {
    const p = await peer((reply) => {
      reply(); // in the client's socket buffer now
      stall(400); // ... while the loop is held for twice the limit
    });
    // The short limit on the stat alone: the handshake is not what this protects.
    const c = await Client.connect(p.address);
    try {
      const root = await c.attach("glenda", "");
      const st = await root.stat({ timeoutMs: 200 });
      expect(st.name).toBe("/");
      expect(c.inFlight).toBe(0);
    } finally {
      c.destroy();
      await p.close();
    }
  });

  it("a call that gets no answer within its limit still times out, and the others go on", async () => {
    const p = await peer(() => {}); // never answers Tstat
    const c = await Client.connect(p.address, { timeoutMs: 60_000 });
    try {
      const root = await c.attach("glenda", "");
      const err = await root.stat({ timeoutMs: 100 }).catch((e) => e);
      expect(err).toBeInstanceOf(TimeoutError);
      expect((err as Error).message).toMatch(/Tstat .* timed out after 100 ms/);
      const f = await root.walk([]);
      await f.clunk();
    } finally {
      c.destroy();
      await p.close();
    }
  });
});
