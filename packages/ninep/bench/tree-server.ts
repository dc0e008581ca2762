// The server side of bench/requests.ts, run in a child process: a small synthetic tree shaped like
// the xcpufs files a launch touches (a clone file, a session directory with argv, env, ctl and
// wait), served over TCP on 127.0.0.1. Prints "listening on tcp!127.0.0.1!PORT" when ready.
// bench/requests.ts bundles this file with its `../src/` imports taken from the tree under test,
// so the same script measures this build and an older one. No run(): bench/run.ts skips it.
// serveCanned() is the floor to compare with: a bare Node socket server that answers every
// request with a fixed reply of the right type (no protocol work at all).

import net from "node:net";
import { Dialect, DMDIR, MsgType } from "../src/codec/constants.js";
import { Framer } from "../src/codec/framer.js";
import { encodeTagged } from "../src/codec/wire.js";
import { BytesFile, commandFile, generatedFile, Server, SynthDir, treeBackend } from "../src/server/index.js";

export async function serve(): Promise<void> {
  const owner = { uid: "bench", gid: "bench" };
  const root = new SynthDir("/", { mode: 0o555, ...owner });
  let sessions = 0;
  root.add(generatedFile("clone", () => `${sessions++}`, { mode: 0o444, ...owner }));
  const session = root.add(new SynthDir("0", { mode: (DMDIR | 0o755) >>> 0, ...owner }));
  session.add(new BytesFile("argv", "", { mode: 0o666, ...owner }));
  session.add(new BytesFile("env", "", { mode: 0o666, ...owner }));
  let commands = 0;
  session.add(
    commandFile(
      "ctl",
      () => {
        commands++;
      },
      { mode: 0o222, ...owner },
    ),
  );
  session.add(generatedFile("wait", () => `${commands}\n`, { mode: 0o444, ...owner }));
  const server = new Server({ backend: treeBackend(root) });
  const addr = await server.listen("tcp!127.0.0.1!0");
  if (addr.network !== "tcp") throw new Error("expected a TCP address");
  console.log(`listening on tcp!${addr.host}!${addr.port}`);
  process.on("SIGTERM", () => {
    void server.close(100).then(() => process.exit(0));
  });
}

export async function serveCanned(): Promise<void> {
  const qid = { type: 0, version: 0, path: 1n };
  const stat = {
    type: 0,
    dev: 0,
    qid: { type: 0x80, version: 0, path: 1n },
    mode: 0x800001ed,
    atime: 0,
    mtime: 0,
    length: 0n,
    name: "/",
    uid: "bench",
    gid: "bench",
    muid: "bench",
    extension: "",
    n_uid: 1000,
    n_gid: 1000,
    n_muid: 1000,
  };
  const u = Dialect.P2000u;
  const replies = new Map<number, Buffer>([
    [MsgType.Tversion, encodeTagged({ type: MsgType.Rversion, msize: 65560, version: u }, 0, u)],
    [MsgType.Tattach, encodeTagged({ type: MsgType.Rattach, qid }, 0, u)],
    [MsgType.Twalk, encodeTagged({ type: MsgType.Rwalk, wqid: [qid, qid] }, 0, u)],
    [MsgType.Topen, encodeTagged({ type: MsgType.Ropen, qid, iounit: 0 }, 0, u)],
    [MsgType.Tread, encodeTagged({ type: MsgType.Rread, data: Buffer.from("1\n") }, 0, u)],
    [MsgType.Twrite, encodeTagged({ type: MsgType.Rwrite, count: 5 }, 0, u)],
    [MsgType.Tclunk, encodeTagged({ type: MsgType.Rclunk }, 0, u)],
    [MsgType.Tstat, encodeTagged({ type: MsgType.Rstat, stat }, 0, u)],
  ]);
  const srv = net.createServer({ noDelay: true }, (s) => {
    const framer = new Framer({ maxSize: 1 << 20 });
    s.on("error", () => {});
    s.on("data", (chunk: Buffer) => {
      for (const f of framer.push(chunk)) {
        const r = replies.get(f[4] as number);
        if (!r) {
          s.destroy();
          return;
        }
        const out = Buffer.from(r);
        out[5] = f[5] as number;
        out[6] = f[6] as number;
        s.write(out);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  console.log(`listening on tcp!127.0.0.1!${(srv.address() as net.AddressInfo).port}`);
  process.on("SIGTERM", () => process.exit(0));
}
