// A semantic fuzzer for xcpufs: well-formed but random 9P requests (walks into sessions and
// their fs/, opens in every mode, ctl commands in and out of order, argv/env/stdin writes, creates
// of every kind, wstats, flushes) and some malformed frames, from several connections at once,
// against a real xcpufs child process. The server must stay up and answer a fresh client, and a
// decoy directory outside every session must be untouched. Seeds are fixed: a failure replays.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MsgType } from "@clustermatic/ninep/codec";
import { RawClient } from "@clustermatic/ninep/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { xcpufsArgs } from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "xcpufs-fuzz-"));
const decoy = join(work, "decoy");
let srv: ChildProcess;
let addr = "";
let log = "";
let exited: string | undefined;

let s = 1;
const rnd = () => {
  s = (s + 0x6d2b79f5) >>> 0;
  let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

beforeAll(async () => {
  mkdirSync(decoy);
  writeFileSync(join(decoy, "keep"), "keep me\n");
  mkdirSync(join(work, "tmp"));
  mkdirSync(join(work, "state"));
  srv = spawn(
    process.execPath,
    xcpufsArgs(
      "--no-auth",
      "-p",
      "0",
      "--listen",
      "127.0.0.1",
      "-t",
      join(work, "tmp"),
      "--state-dir",
      join(work, "state"),
      "--log-level",
      "error",
    ),
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  srv.stdout?.on("data", (d) => (log += d));
  srv.stderr?.on("data", (d) => (log += d));
  srv.on("exit", (code, sig) => (exited = `exit ${code} ${sig}`));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setInterval(() => {
      const m = /!127\.0\.0\.1!(\d+)/.exec(log);
      if (m) {
        clearInterval(t);
        resolve(Number(m[1]));
      }
      if (exited) {
        clearInterval(t);
        reject(new Error(`xcpufs: ${exited}: ${log}`));
      }
    }, 20);
  });
  addr = `tcp!127.0.0.1!${port}`;
}, 60_000);

afterAll(async () => {
  if (srv && srv.exitCode === null) {
    const gone = new Promise((r) => srv.once("exit", r));
    srv.kill("SIGTERM");
    await gone;
  }
  rmSync(work, { recursive: true, force: true });
});

const sessionCmds = [
  "exec /bin/true",
  "exec /bin/echo",
  "exec",
  "exec true",
  "exec /bin/sleep",
  "exec /bin/cat",
  "exec x",
  "exec /bin/true /",
  "exec /bin/true /nonexistent",
  "wipe",
  "kill",
  "signal 15",
  "signal KILL",
  "signal 999",
  "signal",
  "type persistent",
  "type normal",
  "type x",
  "type",
  "close stdin",
  "close stdout",
  "close stderr",
  "close",
  "close x",
  "id 5/3",
  "id /",
  "id -1",
  "id /-2",
  "id",
  "redirect",
  "redirect stdin",
  "clone 1 127.0.0.1!1",
  "clone 0 tcp!127.0.0.1!1",
  "clone x y",
  "clone",
  "'",
  '"',
  "exec '/bin/true",
  "\u0000",
  "add",
  "del",
];
const rootCmds = [
  "user-add fz 4321 fz ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQ",
  "user-del fz",
  "group-add fg 4322",
  "group-del fg",
  "user-add-group fz fg",
  "user-del-group fz fg",
  "user-add",
  "group-add",
  "user-add fz x y z",
  "zz",
  "kil",
  "user-add-key fz x",
  "",
];
const argvs = ["/bin/sleep 0.05", "/bin/echo a 'b c' \"d\"", "'", "\\", "a\nb", "", "x".repeat(9000)];
const symlinkTargets = [decoy, join(decoy, "keep"), "..", "../..", "/", "/tmp", "x", "../../decoy"];

function payload(): Uint8Array {
  switch (int(6)) {
    case 0:
      return Buffer.from(`${pick(sessionCmds)}\n`);
    case 1:
      return Buffer.from(`${pick(rootCmds)}\n`);
    case 2:
      return Buffer.from(pick(argvs));
    case 3:
      return Buffer.from(`${pick(sessionCmds)}\n${pick(sessionCmds)}\n${pick(sessionCmds)}`);
    case 4:
      return Buffer.alloc(int(70000), int(256));
    default: {
      const b = Buffer.alloc(int(64));
      for (let i = 0; i < b.length; i++) b[i] = int(256);
      return b;
    }
  }
}
const offsets = [0n, 1n, 7n, 1000n, 1n << 32n, (1n << 63n) - 1n, (1n << 64n) - 1n];
const counts = [0, 1, 16, 8192, 1 << 20, 0x7fffffff, 0xffffffff];
const modes = [0, 1, 2, 3, 0x10, 0x11, 0x40, 0x41, 0x13, 0x80, 0xff, 4];
const perms = [
  0o644,
  0o755,
  0o777,
  0x80000000 | 0o755,
  0x02000000 | 0o777,
  0x00800000 | 0o644,
  0x04000000,
  0xffffffff,
  0,
];

const rootNames = [
  "clone",
  "ctl",
  "arch",
  "env",
  "procs",
  "state",
  "passkey",
  "pwent",
  "grent",
  "uname",
  "0",
  "1",
  "2",
  "3",
  "..",
  "x",
];
const sessNames = [
  "ctl",
  "exec",
  "argv",
  "env",
  "stdin",
  "stdout",
  "stderr",
  "stdio",
  "wait",
  "id",
  "fs",
  "..",
  ".",
  "zz",
];
const fsNames = ["x", "y", "link", "dir", "..", ".", "true", "a b", "\u00e9", "keep"];

async function connection(ops: number): Promise<void> {
  const c = await RawClient.connect(addr);
  const dialect = rnd() < 0.8 ? "9P2000.u" : "9P2000";
  await c.version(pick([8192, 65536, 1 << 20]), dialect);
  await c.call({
    type: MsgType.Tattach,
    fid: 0,
    afid: 0xffffffff,
    uname: rnd() < 0.8 ? "root" : pick(["nobody", "fz"]),
    aname: "",
    n_uname: 0,
  } as never);
  const live = new Map<number, string[]>([[0, []]]);
  const sids: string[] = [];
  for (let k = 0; k < 2; k++) {
    const cf = 100 + k;
    const w = await c.call({ type: MsgType.Twalk, fid: 0, newfid: cf, wname: ["clone"] });
    if (w.type !== MsgType.Rwalk) break;
    const o = await c.call({ type: MsgType.Topen, fid: cf, mode: 0 });
    if (o.type !== MsgType.Ropen) break;
    const rd = (await c.call({ type: MsgType.Tread, fid: cf, offset: 0n, count: 32 })) as {
      data?: Uint8Array;
    };
    if (!rd.data) break;
    sids.push(Buffer.from(rd.data).toString().trim());
    live.set(cf, ["clone"]);
  }
  if (sids.length === 0) sids.push("0");
  const opened = new Set<number>();
  const sent = new Map<number, Record<string, unknown>>();
  let stop = false;
  const pump = (async () => {
    while (!stop && !c.closed) {
      let m: { type: number; tag: number; wqid?: unknown[] };
      try {
        m = (await c.next(200)) as never;
      } catch {
        continue;
      }
      const req = sent.get(m.tag);
      sent.delete(m.tag);
      if (!req) continue;
      if (
        req.type === MsgType.Twalk &&
        m.type === MsgType.Rwalk &&
        m.wqid!.length === (req.wname as string[]).length
      ) {
        const from = live.get(req.fid as number) ?? [];
        live.set(req.newfid as number, [...from, ...(req.wname as string[])]);
        opened.delete(req.newfid as number);
      } else if ((req.type === MsgType.Topen || req.type === MsgType.Tcreate) && m.type !== MsgType.Rerror) {
        opened.add(req.fid as number);
        if (req.type === MsgType.Tcreate)
          live.set(req.fid as number, [...(live.get(req.fid as number) ?? []), req.name as string]);
      } else if (req.type === MsgType.Tclunk || req.type === MsgType.Tremove) {
        live.delete(req.fid as number);
        opened.delete(req.fid as number);
      }
    }
  })();
  const anyLive = () => pick([...live.keys()]);
  const freeFid = () => (rnd() < 0.1 ? anyLive() : 1 + int(40));
  const nextName = (path: string[]) => {
    if (path.length === 0) return pick(rootNames);
    if (path.length === 1) return pick(sessNames);
    return pick(fsNames);
  };
  for (let i = 0; i < ops && !c.closed; i++) {
    const tag = c.tag();
    let msg: Record<string, unknown>;
    const r = int(100);
    if (r < 20) {
      // walk, open and use a file in one burst
      const nf = 41 + int(20);
      const sid = rnd() < 0.9 ? pick(sids) : String(int(4));
      const file = pick([
        "clone",
        "ctl",
        `${sid}/ctl`,
        `${sid}/ctl`,
        `${sid}/argv`,
        `${sid}/env`,
        `${sid}/stdin`,
        `${sid}/stdout`,
        `${sid}/wait`,
        `${sid}/exec`,
        `${sid}/fs/x`,
        `${sid}/id`,
        "procs",
        "state",
        "passkey",
      ]);
      const last = file.split("/").at(-1)!;
      const writing = ["ctl", "argv", "env", "stdin", "exec", "x"].includes(last) && rnd() < 0.8;
      const mode = writing ? pick([1, 2, 0x11]) : 0;
      const burst: Record<string, unknown>[] = [
        { type: MsgType.Twalk, fid: 0, newfid: nf, wname: file.split("/") },
        { type: MsgType.Topen, fid: nf, mode },
      ];
      if (writing) {
        const data =
          file === "ctl"
            ? `${pick(rootCmds)}\n`
            : last === "ctl"
              ? `${pick(sessionCmds)}\n`
              : last === "argv" || last === "env"
                ? pick(argvs)
                : payload();
        burst.push({ type: MsgType.Twrite, fid: nf, offset: 0n, data: Buffer.from(data) });
      } else burst.push({ type: MsgType.Tread, fid: nf, offset: 0n, count: 8192 });
      if (rnd() < 0.7) burst.push({ type: MsgType.Tclunk, fid: nf });
      for (const b of burst) {
        const t = c.tag();
        try {
          c.send({ ...b, tag: t } as never);
          sent.set(t, b);
        } catch {}
      }
      continue;
    } else if (r < 35) {
      const f = rnd() < 0.5 ? 0 : anyLive();
      const path = [...(live.get(f) ?? [])];
      const n = rnd() < 0.05 ? int(18) : 1 + int(3);
      const wname: string[] = [];
      for (let k = 0; k < n; k++) {
        const nm = nextName(path);
        wname.push(nm);
        if (nm === "..") path.pop();
        else if (nm !== ".") path.push(nm);
      }
      msg = { type: MsgType.Twalk, fid: f, newfid: freeFid(), wname };
    } else if (r < 45) {
      msg = { type: MsgType.Topen, fid: anyLive(), mode: pick(modes) };
    } else if (r < 62) {
      const f = rnd() < 0.9 && opened.size ? pick([...opened]) : anyLive();
      const path = live.get(f) ?? [];
      const last = path.at(-1) ?? "";
      let data: Uint8Array;
      if (last === "ctl" && path.length === 1) data = Buffer.from(`${pick(rootCmds)}\n`);
      else if (last === "ctl")
        data = Buffer.from(
          rnd() < 0.8 ? `${pick(sessionCmds)}\n` : `${pick(sessionCmds)}\n${pick(sessionCmds)}\n`,
        );
      else if (last === "argv" || last === "env") data = Buffer.from(pick(argvs));
      else data = payload();
      msg = { type: MsgType.Twrite, fid: f, offset: rnd() < 0.8 ? 0n : pick(offsets), data };
    } else if (r < 74) {
      const f = rnd() < 0.9 && opened.size ? pick([...opened]) : anyLive();
      msg = { type: MsgType.Tread, fid: f, offset: rnd() < 0.7 ? 0n : pick(offsets), count: pick(counts) };
    } else if (r < 80) {
      msg = {
        type: MsgType.Tcreate,
        fid: anyLive(),
        name: pick(fsNames),
        perm: pick(perms),
        mode: pick(modes),
        extension: pick(["", ...symlinkTargets, "b 1 3", "c 1 3", "p", "4"]),
      };
    } else if (r < 86) {
      msg = {
        type: pick([MsgType.Tclunk, MsgType.Tclunk, MsgType.Tremove]),
        fid: rnd() < 0.95 ? anyLive() : int(0x10000),
      };
    } else if (r < 91) {
      msg = {
        type: MsgType.Twstat,
        fid: anyLive(),
        stat: {
          type: pick([0, 0xffff]),
          dev: pick([0, 0xffffffff]),
          qid: { type: pick([0, 0xff]), version: pick([0, 0xffffffff]), path: pick([0n, (1n << 64n) - 1n]) },
          mode: pick([0xffffffff, 0o600, 0o777, 0x80000000 | 0o700, 0o4755]),
          atime: pick([0xffffffff, 0, 1]),
          mtime: pick([0xffffffff, 0, 1000]),
          length: pick([(1n << 64n) - 1n, 0n, 10n]),
          name: pick(["", "renamed", "..", "a/b", "x", "ctl"]),
          uid: pick(["", "root", "nobody"]),
          gid: pick(["", "root", "nogroup"]),
          muid: "",
          extension: "",
          n_uid: pick([0xffffffff, 0, 65534]),
          n_gid: pick([0xffffffff, 0]),
          n_muid: 0xffffffff,
        },
      };
    } else if (r < 95) {
      msg = { type: MsgType.Tflush, oldtag: pick([...sent.keys(), 0xffff]) };
    } else if (r < 97) {
      const b = Buffer.alloc(7 + int(40));
      for (let k = 0; k < b.length; k++) b[k] = int(256);
      b.writeUInt32LE(b.length, 0);
      if (rnd() < 0.02) c.sendRaw(b);
      continue;
    } else {
      msg = { type: MsgType.Tstat, fid: anyLive() };
    }
    try {
      c.send({ ...msg, tag } as never);
      sent.set(tag, msg);
    } catch {
      // the encoder refused (too many names): fine
    }
    if (i % 4 === 3) await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setTimeout(r, 100));
  stop = true;
  await pump;
  c.stream.destroy();
}

/** A fresh client can still attach and read a file. */
async function probe(): Promise<void> {
  const c = await RawClient.connect(addr);
  await c.version(8192, "9P2000.u");
  await c.call(
    { type: MsgType.Tattach, fid: 0, afid: 0xffffffff, uname: "root", aname: "", n_uname: 0 } as never,
    10_000,
  );
  expect((await c.call({ type: MsgType.Twalk, fid: 0, newfid: 1, wname: ["arch"] }, 10_000)).type).toBe(
    MsgType.Rwalk,
  );
  expect((await c.call({ type: MsgType.Topen, fid: 1, mode: 0 }, 10_000)).type).toBe(MsgType.Ropen);
  expect((await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 100 }, 10_000)).type).toBe(
    MsgType.Rread,
  );
  c.stream.destroy();
}

describe("xcpufs under random requests", () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: 1600 requests over 16 connections, 4 at a time`, async () => {
      s = seed;
      for (let round = 0; round < 4; round++) {
        await Promise.all(Array.from({ length: 4 }, () => connection(100)));
        expect(exited).toBeUndefined();
        await probe();
      }
      expect(readdirSync(decoy)).toEqual(["keep"]);
      expect(readFileSync(join(decoy, "keep"), "utf8")).toBe("keep me\n");
      // Nothing the server logs at this level (errors) and no descriptor left to the collector.
      expect(log).not.toMatch(/garbage collection|Error|FATAL/);
    }, 120_000);
  }
});
