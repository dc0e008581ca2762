// An audit of the passthrough served over real sockets, with raw frames: rules of spec/9p.md at the
// export root (remove, rename, `..`, far offsets), and 9P2000.L cases the spec leaves open, where
// the reply must be the one diod gives. When /usr/sbin/diod is installed every .L case is also run
// against a live diod exporting an identical tree, and both must give the expected reply.

import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DMSOCKET, L_O, MsgType, NOFID, QTDIR } from "../../src/codec/constants.js";
import { decodeDirents } from "../../src/codec/index.js";
import { decodeStats, dontTouchStat } from "../../src/codec/stat.js";
import type { Message } from "../../src/codec/types.js";
import { Ename, Errno } from "../../src/errors.js";
import type { SetAttr } from "../../src/server/backend.js";
import { passthrough } from "../../src/server/passthrough.js";
import { Server } from "../../src/server/server.js";
import { RawClient, type Request } from "../../src/testing/raw.js";
import type { Address } from "../../src/transport/address.js";
import { type DiodHandle, diodUnavailable, startDiod } from "../helpers/diod.js";
import { getlock, lock, lopen, walk } from "../helpers/requests.js";
import { setattr, tempDir } from "./helpers.js";

/** The tree both servers export (diod squashes every user to nobody, so it is open to all). */
function seed(dir: string): void {
  fs.chmodSync(dir, 0o777);
  fs.writeFileSync(path.join(dir, "f"), "hello\n");
  fs.chmodSync(path.join(dir, "f"), 0o666);
  fs.mkdirSync(path.join(dir, "d"));
  fs.chmodSync(path.join(dir, "d"), 0o777);
  fs.writeFileSync(path.join(dir, "d", "x"), "x");
  fs.symlinkSync("f", path.join(dir, "lnk"));
  fs.symlinkSync("d", path.join(dir, "dlnk"));
  // Owned by the server's user (root in CI): "nobody" gets the other bits only.
  fs.writeFileSync(path.join(dir, "ro"), "ro");
  fs.chmodSync(path.join(dir, "ro"), 0o644);
  fs.writeFileSync(path.join(dir, "priv"), "p");
  fs.chmodSync(path.join(dir, "priv"), 0o600);
  fs.mkdirSync(path.join(dir, "rodir"));
  fs.writeFileSync(path.join(dir, "rodir", "y"), "y");
  fs.chmodSync(path.join(dir, "rodir"), 0o755);
  fs.mkdirSync(path.join(dir, "sticky"));
  fs.writeFileSync(path.join(dir, "sticky", "z"), "z");
  fs.chmodSync(path.join(dir, "sticky", "z"), 0o666);
  fs.chmodSync(path.join(dir, "sticky"), 0o1777);
}

const missing = diodUnavailable();
if (missing) console.warn(`conformance audit: diod cross-checks skipped: ${missing}`);

let ours: { t: ReturnType<typeof tempDir>; server: Server; addr: Address };
let diod: { t: ReturnType<typeof tempDir>; h: DiodHandle } | undefined;
const clients: RawClient[] = [];

beforeAll(async () => {
  const t = tempDir("pt-audit-");
  seed(t.dir);
  const server = new Server({ backend: passthrough(t.dir) });
  ours = { t, server, addr: await server.listen("tcp!127.0.0.1!0") };
  if (!missing) {
    const td = tempDir("pt-audit-diod-");
    seed(td.dir);
    diod = { t: td, h: await startDiod(td.dir) };
  }
}, 60_000);

afterAll(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await ours?.server.close(100);
  ours?.t.cleanup();
  await diod?.h.stop();
  diod?.t.cleanup();
});

async function connect(address: string | Address, version: string, aname: string): Promise<RawClient> {
  const c = await RawClient.connect(address);
  clients.push(c);
  expect((await c.version(8192 + 24, version)).version).toBe(version);
  const r = await c.call(
    { type: MsgType.Tattach, fid: 0, afid: NOFID, uname: "nobody", aname, n_uname: 65534 },
    10_000,
  );
  expect(r.type).toBe(MsgType.Rattach);
  return c;
}

/** "Rname" for a success, "Rlerror <errno>" / "Rerror <ename>" for an error. */
function outcome(m: Message): string {
  if (m.type === MsgType.Rlerror) return `Rlerror ${m.ecode}`;
  if (m.type === MsgType.Rerror) return `Rerror ${m.ename}`;
  return Object.entries(MsgType).find(([, v]) => v === m.type)?.[0] ?? String(m.type);
}

/** Runs `steps` on a fresh connection; returns the outcome of each. */
async function run(c: RawClient, steps: Request[]): Promise<string[]> {
  const out: string[] = [];
  for (const s of steps) out.push(outcome(await c.call(s, 10_000)));
  return out;
}

/**
 * Runs `steps` on a fresh 9P2000.L connection to our server and (when installed) to diod, and
 * checks that both give `expected`, step by step.
 */
async function likeDiod(steps: Request[], expected: string[]): Promise<void> {
  const c = await connect(ours.addr, "9P2000.L", "");
  expect(await run(c, steps)).toEqual(expected);
  c.destroy();
  if (diod) {
    const d = await connect(diod.h.address, "9P2000.L", diod.t.dir);
    expect(await run(d, steps)).toEqual(expected);
    d.destroy();
  }
}

const E = (errno: number) => `Rlerror ${errno}`;

describe("9P2000.L cases the spec leaves open: the passthrough answers as diod does", () => {
  it("Tlopen with O_NOFOLLOW of a symbolic link is ELOOP (open(2)); without it the target opens", async () => {
    const NOFOLLOW = 0o400000;
    await likeDiod(
      [walk(0, 1, "lnk"), lopen(1, L_O.RDONLY | NOFOLLOW), lopen(1, L_O.RDONLY)],
      ["Rwalk", E(Errno.ELOOP), "Rlopen"],
    );
  });

  it("a directory open for reading can be locked (flock of a directory), and Tgetlock sees no conflict", async () => {
    await likeDiod(
      [walk(0, 1, "d"), lopen(1, L_O.RDONLY), lock(1, 0), getlock(1, 1), lock(1, 2)],
      ["Rwalk", "Rlopen", "Rlock", "Rgetlock", "Rlock"],
    );
  });

  it("Tlock and Tgetlock on a fid that is not open are EBADF", async () => {
    await likeDiod([walk(0, 1, "f"), lock(1, 1), getlock(1, 1)], ["Rwalk", E(Errno.EBADF), E(Errno.EBADF)]);
  });

  it("a lock type or flag Linux does not define, and Tgetlock of UNLCK, are EINVAL", async () => {
    await likeDiod(
      [walk(0, 1, "f"), lopen(1, L_O.RDWR), lock(1, 7), lock(1, 1, 0xff), getlock(1, 7), getlock(1, 2)],
      ["Rwalk", "Rlopen", E(Errno.EINVAL), E(Errno.EINVAL), E(Errno.EINVAL), E(Errno.EINVAL)],
    );
  });

  it("a second Tlopen of an open fid, and Tlcreate on an open directory, are EINVAL", async () => {
    const lcreate: Request = {
      type: MsgType.Tlcreate,
      fid: 2,
      name: "new",
      flags: L_O.RDWR,
      mode: 0o644,
      gid: NOFID,
    };
    await likeDiod(
      [walk(0, 1, "f"), lopen(1, L_O.RDONLY), lopen(1, L_O.RDONLY), walk(0, 2, "d"), lopen(2, 0), lcreate],
      ["Rwalk", "Rlopen", E(Errno.EINVAL), "Rwalk", "Rlopen", E(Errno.EINVAL)],
    );
  });

  it("Treaddir of an open file is EINVAL; Twrite to an open directory is EBADF, Tread of it EISDIR", async () => {
    await likeDiod(
      [
        walk(0, 1, "f"),
        lopen(1, L_O.RDONLY),
        { type: MsgType.Treaddir, fid: 1, offset: 0n, count: 4096 },
        walk(0, 2, "d"),
        lopen(2, L_O.RDONLY),
        { type: MsgType.Twrite, fid: 2, offset: 0n, data: Buffer.from("x") },
        { type: MsgType.Tread, fid: 2, offset: 0n, count: 100 },
      ],
      ["Rwalk", "Rlopen", E(Errno.EINVAL), "Rwalk", "Rlopen", E(Errno.EBADF), E(Errno.EISDIR)],
    );
  });

  it("a symbolic link to a directory, opened through (Tlopen follows links), is read as that directory", async () => {
    // Rlopen names a directory, so the fid is an open directory: Treaddir lists it, Tread is
    // EISDIR and Twrite EBADF, as for the directory itself; opening it for writing is EISDIR.
    const names = async (steps: Request[], address: string | Address, aname: string) => {
      const c = await connect(address, "9P2000.L", aname);
      const out: string[] = [];
      for (const s of steps) {
        const r = await c.call(s, 10_000);
        if (r.type === MsgType.Rlopen) out.push(`Rlopen qt=${r.qid.type}`);
        else if (r.type === MsgType.Rreaddir)
          out.push(
            `Rreaddir ${decodeDirents(r.data)
              .map((e) => e.name)
              .sort()
              .join(",")}`,
          );
        else out.push(outcome(r));
      }
      c.destroy();
      return out;
    };
    const steps: Request[] = [
      walk(0, 1, "dlnk"),
      lopen(1, L_O.WRONLY),
      lopen(1, L_O.RDONLY),
      { type: MsgType.Treaddir, fid: 1, offset: 0n, count: 4096 },
      { type: MsgType.Tread, fid: 1, offset: 0n, count: 100 },
      { type: MsgType.Twrite, fid: 1, offset: 0n, data: Buffer.from("x") },
    ];
    const expected = [
      "Rwalk",
      E(Errno.EISDIR),
      `Rlopen qt=${QTDIR}`,
      "Rreaddir .,..,x",
      E(Errno.EISDIR),
      E(Errno.EBADF),
    ];
    expect(await names(steps, ours.addr, "")).toEqual(expected);
    if (diod) expect(await names(steps, diod.h.address, diod.t.dir)).toEqual(expected);
  });
});

describe("counts beyond msize on 9P2000.L (V7, R4)", () => {
  it("Tread and Treaddir asking for 2^32-1 bytes are clamped to msize - IOHDRSZ, and the listing resumes whole", async () => {
    const big = path.join(ours.t.dir, "many");
    fs.mkdirSync(big);
    const names = Array.from({ length: 400 }, (_, i) => `member-${String(i).padStart(4, "0")}`);
    for (const n of names) fs.writeFileSync(path.join(big, n), "");
    fs.writeFileSync(path.join(ours.t.dir, "large"), Buffer.alloc(20_000, 7));
    try {
      const c = await connect(ours.addr, "9P2000.L", ""); // msize 8192 + 24
      expect((await c.call(walk(0, 1, "large"))).type).toBe(MsgType.Rwalk);
      expect((await c.call(lopen(1, L_O.RDONLY))).type).toBe(MsgType.Rlopen);
      const r = await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 0xffffffff });
      expect(r.type === MsgType.Rread && r.data.length).toBe(8192);
      expect((await c.call(walk(0, 2, "many"))).type).toBe(MsgType.Rwalk);
      expect((await c.call(lopen(2, L_O.RDONLY))).type).toBe(MsgType.Rlopen);
      const seen: string[] = [];
      let offset = 0n;
      let replies = 0;
      for (;;) {
        const d = await c.call({ type: MsgType.Treaddir, fid: 2, offset, count: 0xffffffff });
        if (d.type !== MsgType.Rreaddir) throw new Error(`expected Rreaddir, got ${outcome(d)}`);
        expect(d.data.length).toBeLessThanOrEqual(8192);
        const ents = decodeDirents(d.data);
        if (ents.length === 0) break;
        replies++;
        seen.push(...ents.map((e) => e.name));
        offset = ents.at(-1)!.offset;
      }
      expect(replies).toBeGreaterThan(1);
      expect(seen.filter((n) => n !== "." && n !== "..").sort()).toEqual(names);
      c.destroy();
    } finally {
      fs.rmSync(big, { recursive: true, force: true });
      fs.rmSync(path.join(ours.t.dir, "large"), { force: true });
    }
  });
});

describe("9P2000.u special files (spec 6)", () => {
  it("Tcreate with DMSOCKET and an empty extension makes a socket file, which stats with DMSOCKET", async () => {
    const c = await connect(ours.addr, "9P2000.u", "");
    expect((await c.call(walk(0, 1, "d"))).type).toBe(MsgType.Rwalk);
    const cr = await c.call({
      type: MsgType.Tcreate,
      fid: 1,
      name: "sock",
      perm: (DMSOCKET | 0o600) >>> 0,
      mode: 0,
      extension: "",
    });
    expect(outcome(cr)).toBe("Rcreate");
    expect(fs.lstatSync(path.join(ours.t.dir, "d", "sock")).isSocket()).toBe(true);
    expect((await c.call(walk(0, 2, "d", "sock"))).type).toBe(MsgType.Rwalk);
    const st = await c.stat(2);
    expect(st.mode & DMSOCKET).toBe(DMSOCKET);
    expect(st.extension).toBe("");
    expect(outcome(await c.call({ type: MsgType.Tremove, fid: 2 }))).toBe("Rremove");
    c.destroy();
  });
});

describe("rename as Linux v9fs sends it on 9P2000 and 9P2000.u mounts (S2)", () => {
  for (const version of ["9P2000", "9P2000.u"]) {
    it(`a Twstat of a new name with muid = the attached user renames a file someone else owns (${version})`, async () => {
      // The file belongs to the server's user; the client is attached as nobody, whose name
      // Linux sends as muid. Another muid is still a refused change of muid.
      fs.writeFileSync(path.join(ours.t.dir, `mv-${version}`), "m");
      const c = await connect(ours.addr, version, "");
      expect((await c.call(walk(0, 1, `mv-${version}`))).type).toBe(MsgType.Rwalk);
      const rename = (muid: string): Request => ({
        type: MsgType.Twstat,
        fid: 1,
        stat: dontTouchStat({ name: `moved-${version}`, muid }),
      });
      expect((await c.call(rename("someone-else"))).type).toBe(MsgType.Rerror);
      expect(outcome(await c.call(rename("nobody")))).toBe("Rwstat");
      expect(fs.readdirSync(ours.t.dir)).toContain(`moved-${version}`);
      expect(fs.readdirSync(ours.t.dir)).not.toContain(`mv-${version}`);
      fs.rmSync(path.join(ours.t.dir, `moved-${version}`));
      c.destroy();
    });
  }
});

describe("9P2000.u: a symbolic link opened through", () => {
  it("to a directory is read as that directory (D1): whole stat entries of its members", async () => {
    const c = await connect(ours.addr, "9P2000.u", "");
    expect((await c.call(walk(0, 1, "dlnk"))).type).toBe(MsgType.Rwalk);
    expect(outcome(await c.call({ type: MsgType.Topen, fid: 1, mode: 1 }))).toBe(`Rerror ${Ename.IsDir}`);
    const op = await c.call({ type: MsgType.Topen, fid: 1, mode: 0 });
    expect(op.type === MsgType.Ropen && op.qid.type).toBe(QTDIR);
    const r = await c.call({ type: MsgType.Tread, fid: 1, offset: 0n, count: 4096 });
    if (r.type !== MsgType.Rread) throw new Error(`expected Rread, got ${outcome(r)}`);
    expect(decodeStats(r.data, "9P2000.u").map((st) => st.name)).toEqual(["x"]);
    const w = await c.call({ type: MsgType.Twrite, fid: 1, offset: 0n, data: Buffer.from("x") });
    expect(outcome(w)).toBe(`Rerror ${Ename.IsDir}`);
    c.destroy();
  });
});

const tsetattr = (fid: number, valid: number, a: Partial<SetAttr> = {}): Request => ({
  type: MsgType.Tsetattr,
  fid,
  ...setattr({ valid, ...a }),
});

const runningAsRoot = process.getuid?.() === 0;

describe.skipIf(!runningAsRoot)("permissions of the attached user (nobody), as diod checks them", () => {
  it("opens need every requested bit; creating in a directory needs write permission in it", async () => {
    const d = (fid: number, name: string): Request[] => [
      { type: MsgType.Tlcreate, fid, name, flags: L_O.RDWR, mode: 0o644, gid: NOFID },
      { type: MsgType.Tmkdir, dfid: fid, name, mode: 0o755, gid: NOFID },
      { type: MsgType.Tsymlink, fid, name, symtgt: "x", gid: NOFID },
      { type: MsgType.Tmknod, dfid: fid, name, mode: 0o010644, major: 0, minor: 0, gid: NOFID },
    ];
    await likeDiod(
      [
        walk(0, 1, "ro"),
        lopen(1, L_O.WRONLY),
        lopen(1, L_O.RDONLY | L_O.TRUNC),
        walk(0, 2, "priv"),
        lopen(2, L_O.RDONLY),
        walk(0, 3, "rodir"),
        ...d(3, "n"),
      ],
      [
        "Rwalk",
        E(Errno.EACCES),
        E(Errno.EACCES),
        "Rwalk",
        E(Errno.EACCES),
        "Rwalk",
        ...Array(4).fill(E(Errno.EACCES)),
      ],
    );
  });

  it("remove and rename need write permission in the parent; a sticky directory protects others' files", async () => {
    await likeDiod(
      [
        walk(0, 1, "rodir", "y"),
        { type: MsgType.Trename, fid: 1, dfid: 0, name: "moved" },
        { type: MsgType.Tremove, fid: 1 },
        walk(0, 2, "sticky", "z"),
        { type: MsgType.Tremove, fid: 2 },
      ],
      ["Rwalk", E(Errno.EACCES), E(Errno.EACCES), "Rwalk", E(Errno.EPERM)],
    );
  });

  it("setattr: mode, owner and group only by the owner (EPERM), size needs write (EACCES), explicit times the owner", async () => {
    await likeDiod(
      [
        walk(0, 1, "ro"),
        tsetattr(1, 0x1, { mode: 0o666 }),
        tsetattr(1, 0x2, { uid: 65534 }),
        tsetattr(1, 0x4, { gid: 65534 }),
        tsetattr(1, 0x8, { size: 1n }),
        tsetattr(1, 0x30),
        tsetattr(1, 0x30 | 0x180, { atime_sec: 5n, mtime_sec: 5n }),
        { type: MsgType.Tgetattr, fid: 1, request_mask: 0x200n },
      ],
      [
        "Rwalk",
        E(Errno.EPERM),
        E(Errno.EPERM),
        E(Errno.EPERM),
        E(Errno.EACCES),
        E(Errno.EACCES),
        E(Errno.EPERM),
        "Rgetattr",
      ],
    );
  });
});

describe("the export root and far offsets (every dialect)", () => {
  for (const version of ["9P2000", "9P2000.u", "9P2000.L"]) {
    it(`C2/W7/S2/R2 over ${version}: the root cannot be removed or renamed, '..' stays at it, far reads give 0 bytes (.L: EINVAL from 2^63)`, async () => {
      const c = await connect(ours.addr, version, "");
      const dotL = version === "9P2000.L";
      // C2: the removal fails and the fid is clunked; the directory is still exported.
      expect((await c.call(walk(0, 1))).type).toBe(MsgType.Rwalk);
      const rm = await c.call({ type: MsgType.Tremove, fid: 1 });
      expect(rm.type).toBe(dotL ? MsgType.Rlerror : MsgType.Rerror);
      const clunk = await c.call({ type: MsgType.Tclunk, fid: 1 });
      expect(outcome(clunk)).toBe(dotL ? E(Errno.EBADF) : `Rerror ${Ename.UnknownFid}`);
      expect(fs.existsSync(path.join(ours.t.dir, "f"))).toBe(true);
      // W7: sixteen '..' from the root are the root sixteen times (xcpufs 1.2.3 crashed here).
      const w = await c.call(walk(0, 2, ...Array<string>(16).fill("..")));
      const root = await c.call(
        dotL ? { type: MsgType.Tgetattr, fid: 0, request_mask: 0x7ffn } : { type: MsgType.Tstat, fid: 0 },
      );
      const rootQid =
        root.type === MsgType.Rgetattr ? root.qid : root.type === MsgType.Rstat ? root.stat.qid : undefined;
      expect(w.type === MsgType.Rwalk && w.wqid).toEqual(Array(16).fill(rootQid));
      if (!dotL) {
        // S1/S2: the root stats as "/" and cannot be renamed.
        expect((await c.stat(2)).name).toBe("/");
        const ws = await c.call({ type: MsgType.Twstat, fid: 2, stat: dontTouchStat({ name: "gone" }) });
        expect(ws.type).toBe(MsgType.Rerror);
        expect((await c.stat(0)).name).toBe("/");
      } else {
        expect(outcome(await c.call({ type: MsgType.Trename, fid: 2, dfid: 0, name: "gone" }))).toBe(
          E(Errno.EBUSY),
        );
      }
      expect(fs.existsSync(ours.t.dir)).toBe(true);
      // R2: offsets at or past the end, however far, read as end of file. On 9P2000.L an offset
      // is a Linux loff_t: from 2^63 on it is negative and pread(2) (and diod) answer EINVAL.
      expect((await c.call(walk(0, 3, "f"))).type).toBe(MsgType.Rwalk);
      const op = await c.call(dotL ? lopen(3, L_O.RDONLY) : { type: MsgType.Topen, fid: 3, mode: 0 });
      expect(op.type).toBe(dotL ? MsgType.Rlopen : MsgType.Ropen);
      for (const offset of [6n, (1n << 63n) - 1n, 1n << 63n, 0xffffffffffffffffn]) {
        const r = await c.call({ type: MsgType.Tread, fid: 3, offset, count: 100 });
        if (dotL && offset >= 1n << 63n) expect(outcome(r)).toBe(E(Errno.EINVAL));
        else expect(r.type === MsgType.Rread && r.data.length).toBe(0);
      }
      c.destroy();
    });
  }
});
