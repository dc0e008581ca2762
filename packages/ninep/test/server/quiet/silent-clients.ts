// Run as a child process by timeouts-quiet.test.ts, with "silent" or "idle": a server and one
// client and nothing else in the process, so that no unrelated event (not even another
// connection's timer) wakes the event loop. The "silent" client never sends Tversion (the server
// has a 300 ms handshake limit); the "idle" one goes quiet after it (a 300 ms idle limit). Prints
// the milliseconds after which the server closed the connection.
import * as net from "node:net";
import { encode, MsgType, NOTAG } from "../../../src/codec/index.js";
import { Server } from "../../../src/server/server.js";
import { SynthDir, treeBackend } from "../../../src/server/tree.js";

const mode = process.argv[2];
const server = new Server({
  backend: treeBackend(new SynthDir("/")),
  handshakeTimeoutMs: mode === "silent" ? 300 : 0,
  idleTimeoutMs: mode === "idle" ? 300 : 0,
});
const addr = await server.listen("tcp!127.0.0.1!0");
if (addr.network !== "tcp") throw new Error("tcp expected");
const t0 = Date.now();
const sock = net.connect(addr.port, "127.0.0.1", () => {
  if (mode === "idle")
    sock.write(encode({ type: MsgType.Tversion, tag: NOTAG, msize: 8192, version: "9P2000" }, "9P2000"));
});
sock.on("error", () => {});
// Reading (and dropping the Rversion): a paused socket never sees the server's end.
sock.resume();
const after = await new Promise<number>((resolve) => sock.on("close", () => resolve(Date.now() - t0)));
process.stdout.write(`${after}\n`);
await server.close(0);
