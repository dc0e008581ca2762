// Passthrough operations called directly (no socket): conversions, user permission checks,
// wstat atomicity, special files, setattr time semantics, readdir cookies, locks.

import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  Dialect,
  DMAPPEND,
  DMDEVICE,
  DMDIR,
  DMLINK,
  DMNAMEDPIPE,
  DMSETGID,
  DMSETUID,
  DMSOCKET,
  DMSYMLINK,
  GETATTR,
  OEXEC,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
  QTAPPEND,
  QTDIR,
  QTFILE,
  QTSYMLINK,
  SETATTR,
} from "../../src/codec/constants.js";
import { FsError, toFsError } from "../../src/errors.js";
import { LockTable } from "../../src/server/passthrough-open.js";
import {
  dmToUnixPerm,
  IdNames,
  majorOf,
  minorOf,
  QidMapper,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
  unixToDmMode,
} from "../../src/server/passthrough-stat.js";
import { attach, ctx, readAll, setattr, tempDir, walk } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
beforeEach(() => {
  tmp = tempDir("pt-ops-");
});
afterEach(() => tmp.cleanup());

async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    // Node errors are answered the way the server does it (errors.ts toFsError).
    if (e instanceof FsError) return e.errno;
    const code = (e as { code?: string }).code;
    if (code === undefined) throw e;
    return toFsError(e).errno;
  }
  throw new Error("expected an error");
}

const NOID = 0xffffffff;

describe("conversions", () => {
  it("maps Unix modes to 9P modes per dialect", () => {
    expect(unixToDmMode(S_IFDIR | 0o755, false)).toBe((DMDIR | 0o755) >>> 0);
    expect(unixToDmMode(S_IFREG | 0o4755, false)).toBe(0o755);
    expect(unixToDmMode(S_IFREG | 0o4755, true)).toBe((DMSETUID | 0o755) >>> 0);
    expect(unixToDmMode(S_IFLNK | 0o777, true)).toBe((DMSYMLINK | 0o777) >>> 0);
    expect(unixToDmMode(S_IFLNK | 0o777, false)).toBe(0o777);
    expect(unixToDmMode(S_IFCHR | 0o666, true)).toBe((DMDEVICE | 0o666) >>> 0);
    expect(unixToDmMode(S_IFIFO | 0o644, true)).toBe((DMNAMEDPIPE | 0o644) >>> 0);
    expect(unixToDmMode(S_IFSOCK | 0o755, true)).toBe((DMSOCKET | 0o755) >>> 0);
    expect(dmToUnixPerm((DMSETUID | DMDIR | 0o750) >>> 0, true)).toBe(0o4750);
    expect(dmToUnixPerm((DMSETUID | 0o750) >>> 0, false)).toBe(0o750);
  });

  it("splits device numbers", () => {
    // makedev(8, 1) and a large one, glibc encoding
    expect([majorOf(0x801n), minorOf(0x801n)]).toEqual([8, 1]);
    // major 0x12345 (low 12 bits at 8, rest at 32), minor 0x6789a (low 8 bits at 0, rest at 12)
    const big = (0x345n << 8n) | 0x9an | ((0x6789an & ~0xffn) << 12n) | ((0x12345n & ~0xfffn) << 32n);
    expect(minorOf(big)).toBe(0x6789a);
    expect(majorOf(big)).toBe(0x12345);
  });

  it("qid paths: inode on the root device, tagged on others", () => {
    const q = new QidMapper(5n);
    expect(q.path(5n, 1234n)).toBe(1234n);
    expect(q.path(9n, 1234n)).toBe((1n << 56n) ^ 1234n);
    expect(q.path(9n, 1234n)).not.toBe(q.path(5n, 1234n));
  });

  it("names from passwd/group with numeric fallback, re-read on change", () => {
    const pw = path.join(tmp.dir, "passwd");
    const gr = path.join(tmp.dir, "group");
    fs.writeFileSync(
      pw,
      "root:x:0:0::/root:/bin/sh\nglenda:x:1000:100::/usr/glenda:/bin/rc\n# comment\nbad line\n",
    );
    fs.writeFileSync(gr, "root:x:0:\nusers:x:100:\nsys:x:3:glenda,other\n");
    const ids = new IdNames(pw, gr, 0);
    expect(ids.userName(1000)).toBe("glenda");
    expect(ids.userName(4242)).toBe("4242");
    expect(ids.groupName(100)).toBe("users");
    expect(ids.uidOf("glenda")).toBe(1000);
    expect(ids.uidOf("77")).toBe(77);
    expect(ids.uidOf("nobody-here")).toBeUndefined();
    expect(ids.gidOf("sys")).toBe(3);
    expect([...ids.groupsOf(1000)].sort()).toEqual([100, 3]);
    fs.writeFileSync(pw, "root:x:0:0::/root:/bin/sh\nglenda:x:1001:100::/usr/glenda:/bin/rc\n");
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(pw, later, later);
    expect(ids.uidOf("glenda")).toBe(1001);
  });
});

describe("9P2000 / 9P2000.u operations", () => {
  it("stat of the root is '/', qid matches, .u fields present", async () => {
    const c = ctx(Dialect.P2000u);
    const r = await attach(tmp.dir, c);
    const st = await r.stat(c);
    expect(st.name).toBe("/");
    expect(st.qid.type).toBe(QTDIR);
    expect(st.qid.path).toBe(BigInt(fs.statSync(tmp.dir).ino));
    expect(st.length).toBe(0n);
    expect(st.n_uid).toBe(fs.statSync(tmp.dir).uid);
    expect(st.uid).toBe("root");
    expect(st.extension).toBe("");
    const plain = await attach(tmp.dir, ctx(Dialect.P2000));
    expect((await plain.stat(ctx(Dialect.P2000))).n_uid).toBeUndefined();
  });

  it("qid version changes when the file changes", async () => {
    const c = ctx(Dialect.P2000u);
    fs.writeFileSync(path.join(tmp.dir, "f"), "a");
    const r = await attach(tmp.dir, c);
    const f = await walk(r, "f", c);
    const v1 = (await f.stat(c)).qid.version;
    const io = await f.open!(OWRITE, c);
    await io.write!(1n, Buffer.from("bcd"), c);
    await io.clunk?.(c);
    expect((await f.stat(c)).qid.version).not.toBe(v1);
  });

  it("create applies the directory's permission mask (O6) and ignores the umask", async () => {
    const c = ctx(Dialect.P2000u);
    fs.mkdirSync(path.join(tmp.dir, "d"));
    fs.chmodSync(path.join(tmp.dir, "d"), 0o750);
    const r = await attach(tmp.dir, c);
    const d = await walk(r, "d", c);
    const made = await d.create!({ name: "f", perm: 0o666, mode: OWRITE, extension: "" }, c);
    await made.file.clunk?.(c);
    expect(fs.statSync(path.join(tmp.dir, "d", "f")).mode & 0o777).toBe(0o640);
    const dir = await d.create!({ name: "sd", perm: (DMDIR | 0o777) >>> 0, mode: OREAD, extension: "" }, c);
    expect(dir.node.qid.type).toBe(QTDIR);
    expect(fs.statSync(path.join(tmp.dir, "d", "sd")).mode & 0o777).toBe(0o750);
    // DMAPPEND cannot be kept by a Unix file: the qid says so (no QTAPPEND).
    const ap = await d.create!(
      { name: "log", perm: (DMAPPEND | 0o644) >>> 0, mode: OWRITE, extension: "" },
      c,
    );
    expect(ap.node.qid.type & QTAPPEND).toBe(0);
    expect((await ap.node.stat(c)).mode & DMAPPEND).toBe(0);
    await ap.file.clunk?.(c);
  });

  for (const syncIo of [true, false]) {
    it(`exactMode: create keeps the requested bits, not the directory's mask (syncIo ${syncIo})`, async () => {
      const c = ctx(Dialect.P2000u);
      fs.mkdirSync(path.join(tmp.dir, "d"));
      fs.chmodSync(path.join(tmp.dir, "d"), 0o700);
      const r = await attach(tmp.dir, c, { exactMode: true, syncIo });
      const d = await walk(r, "d", c);
      const made = await d.create!({ name: "f", perm: 0o755, mode: OWRITE, extension: "" }, c);
      expect((await made.node.stat(c)).mode & 0o777).toBe(0o755);
      expect(await made.file.write!(0n, Buffer.from("abc"), c)).toBe(3);
      await made.file.clunk?.(c);
      expect(fs.statSync(path.join(tmp.dir, "d", "f")).mode & 0o777).toBe(0o755);
      expect(fs.readFileSync(path.join(tmp.dir, "d", "f"), "utf8")).toBe("abc");
      await d.create!({ name: "sd", perm: (DMDIR | 0o775) >>> 0, mode: OREAD, extension: "" }, c);
      expect(fs.statSync(path.join(tmp.dir, "d", "sd")).mode & 0o777).toBe(0o775);
      await d.create!({ name: "p", perm: (DMNAMEDPIPE | 0o644) >>> 0, mode: OREAD, extension: "" }, c);
      expect(fs.statSync(path.join(tmp.dir, "d", "p")).mode & 0o777).toBe(0o644);
      // Without the option the 9P mask applies (O6).
      const plain = await walk(await attach(tmp.dir, c, { syncIo }), "d", c);
      const masked = await plain.create!({ name: "g", perm: 0o755, mode: OWRITE, extension: "" }, c);
      await masked.file.clunk?.(c);
      expect(fs.statSync(path.join(tmp.dir, "d", "g")).mode & 0o777).toBe(0o711);
      // An existing name is EEXIST and leaves the file alone.
      expect(await errnoOf(d.create!({ name: "f", perm: 0o600, mode: OWRITE, extension: "" }, c))).toBe(17);
      expect(fs.readFileSync(path.join(tmp.dir, "d", "f"), "utf8")).toBe("abc");
    });
  }

  it("OTRUNC truncates; ORCLOSE needs a removable file; the root cannot be removed", async () => {
    const c = ctx(Dialect.P2000);
    fs.writeFileSync(path.join(tmp.dir, "f"), "0123456789");
    const r = await attach(tmp.dir, c);
    const f = await walk(r, "f", c);
    const io = await f.open!(OWRITE | OTRUNC, c);
    expect(fs.statSync(path.join(tmp.dir, "f")).size).toBe(0);
    await io.clunk?.(c);
    expect(await errnoOf(r.open!(OREAD | ORCLOSE, c))).toBe(13);
    expect(await errnoOf(r.remove!(c))).toBe(16);
  });

  it(".u special files: symlink, FIFO, hard link, socket", async () => {
    const c = ctx(Dialect.P2000u);
    fs.chmodSync(tmp.dir, 0o777);
    fs.writeFileSync(path.join(tmp.dir, "target"), "data");
    const r = await attach(tmp.dir, c);
    const s = await r.create!(
      { name: "sl", perm: (DMSYMLINK | 0o777) >>> 0, mode: OREAD, extension: "target" },
      c,
    );
    expect(s.node.qid.type).toBe(QTSYMLINK);
    expect(s.file.read).toBeUndefined();
    expect(fs.readlinkSync(path.join(tmp.dir, "sl"))).toBe("target");
    const p = await r.create!(
      { name: "fifo", perm: (DMNAMEDPIPE | 0o640) >>> 0, mode: OREAD, extension: "" },
      c,
    );
    expect(fs.statSync(path.join(tmp.dir, "fifo")).isFIFO()).toBe(true);
    expect(fs.statSync(path.join(tmp.dir, "fifo")).mode & 0o777).toBe(0o640);
    expect((await p.node.stat(c)).mode & DMNAMEDPIPE).toBeTruthy();
    const target = await walk(r, "target", c);
    const h = await r.create!(
      { name: "hard", perm: (DMLINK | 0o644) >>> 0, mode: OREAD, extension: "1\n", linkTarget: target },
      c,
    );
    expect(fs.statSync(path.join(tmp.dir, "hard")).ino).toBe(fs.statSync(path.join(tmp.dir, "target")).ino);
    expect((await readAll(h.file, c)).toString()).toBe("data");
    await h.file.clunk?.(c);
    // Spec 6: DMSOCKET with an empty extension makes a socket file (Linux's mknod of S_IFSOCK,
    // sent when a program binds a Unix socket to a name on a 9P2000.u mount).
    const so = await r.create!(
      { name: "sock", perm: (DMSOCKET | 0o640) >>> 0, mode: OREAD, extension: "" },
      c,
    );
    expect(fs.lstatSync(path.join(tmp.dir, "sock")).isSocket()).toBe(true);
    expect(fs.lstatSync(path.join(tmp.dir, "sock")).mode & 0o777).toBe(0o640);
    const sost = await so.node.stat(c);
    expect(sost.mode & DMSOCKET).toBeTruthy();
    expect(sost.extension).toBe("");
    expect(so.file.read).toBeUndefined();
    expect(
      await errnoOf(
        r.create!({ name: "sock", perm: (DMSOCKET | 0o640) >>> 0, mode: OREAD, extension: "" }, c),
      ),
    ).toBe(17);
    expect(
      await errnoOf(
        r.create!({ name: "dev", perm: (DMDEVICE | 0o644) >>> 0, mode: OREAD, extension: "x 1" }, c),
      ),
    ).toBe(22);
  });

  it("wstat is atomic: one bad field changes nothing", async () => {
    const c = ctx(Dialect.P2000u);
    fs.writeFileSync(path.join(tmp.dir, "f"), "0123456789");
    fs.chmodSync(path.join(tmp.dir, "f"), 0o644);
    const r = await attach(tmp.dir, c);
    const f = await walk(r, "f", c);
    // rename + truncate + chmod, with an owner change (never allowed) → nothing happens
    expect(await errnoOf(f.wstat!({ name: "g", length: 2n, mode: 0o600, uid: "nobody-at-all" }, c))).toBe(1);
    // ... with an unknown group
    expect(await errnoOf(f.wstat!({ name: "g", length: 2n, gid: "no-such-group-xyz" }, c))).toBe(22);
    // ... with a DMDIR flip
    expect(await errnoOf(f.wstat!({ name: "g", length: 2n, mode: (DMDIR | 0o755) >>> 0 }, c))).toBe(22);
    // ... onto an existing name
    fs.writeFileSync(path.join(tmp.dir, "taken"), "");
    expect(await errnoOf(f.wstat!({ name: "taken", length: 2n }, c))).toBe(17);
    expect(fs.readFileSync(path.join(tmp.dir, "f"), "utf8")).toBe("0123456789");
    expect(fs.statSync(path.join(tmp.dir, "f")).mode & 0o777).toBe(0o644);
    // all valid → all applied
    await f.wstat!({ name: "g", length: 2n, mode: 0o600, mtime: 12345, gid: "0", uid: "root" }, c);
    expect(fs.readFileSync(path.join(tmp.dir, "g"), "utf8")).toBe("01");
    const st = fs.statSync(path.join(tmp.dir, "g"));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.mtimeMs).toBe(12345000);
    expect((await f.stat(c)).name).toBe("g");
    // directories: length 0 only
    fs.mkdirSync(path.join(tmp.dir, "d"));
    const d = await walk(r, "d", c);
    await d.wstat!({ length: 0n }, c);
    expect(await errnoOf(d.wstat!({ length: 5n }, c))).toBe(21);
  });
});

const asRoot = process.getuid?.() === 0;
if (!asRoot) console.warn("skipping user permission tests: they need a server running as root");

describe("permissions for the attached user", () => {
  // The server runs as root in these tests; "user" mode checks the 9P user (nobody = 65534).
  const nobody = () => ctx(Dialect.P2000u, "nobody", 65534);

  it.skipIf(!asRoot)("every requested bit is required", async () => {
    fs.chmodSync(tmp.dir, 0o755);
    fs.writeFileSync(path.join(tmp.dir, "ro"), "x");
    fs.chmodSync(path.join(tmp.dir, "ro"), 0o644);
    fs.writeFileSync(path.join(tmp.dir, "wo"), "x");
    fs.chmodSync(path.join(tmp.dir, "wo"), 0o622);
    fs.writeFileSync(path.join(tmp.dir, "noexec"), "x");
    fs.chmodSync(path.join(tmp.dir, "noexec"), 0o644);
    const c = nobody();
    const r = await attach(tmp.dir, c, { permissions: "user" });
    const ro = await walk(r, "ro", c);
    await (await ro.open!(OREAD, c)).clunk?.(c);
    expect(await errnoOf(ro.open!(ORDWR, c))).toBe(13);
    expect(await errnoOf(ro.open!(OWRITE, c))).toBe(13);
    expect(await errnoOf(ro.open!(OREAD | OTRUNC, c))).toBe(13);
    expect(await errnoOf(ro.lopen!(2, c))).toBe(13);
    const wo = await walk(r, "wo", c);
    await (await wo.open!(OWRITE, c)).clunk?.(c);
    expect(await errnoOf(wo.open!(ORDWR, c))).toBe(13);
    const ne = await walk(r, "noexec", c);
    expect(await errnoOf(ne.open!(OEXEC, c))).toBe(13);
    // root may do all of it, but execute still needs an x bit
    const rc = ctx(Dialect.P2000u, "root", 0);
    const rne = await walk(await attach(tmp.dir, rc, { permissions: "user" }), "noexec", rc);
    expect(await errnoOf(rne.open!(OEXEC, rc))).toBe(13);
    await (await rne.open!(ORDWR, rc)).clunk?.(rc);
  });

  it.skipIf(!asRoot)(
    "create, remove and walk need the directory's bits; files made are owned by the user",
    async () => {
      fs.chmodSync(tmp.dir, 0o755);
      fs.mkdirSync(path.join(tmp.dir, "closed"));
      fs.chmodSync(path.join(tmp.dir, "closed"), 0o755);
      fs.mkdirSync(path.join(tmp.dir, "open"));
      fs.chmodSync(path.join(tmp.dir, "open"), 0o777);
      fs.mkdirSync(path.join(tmp.dir, "nosearch"));
      fs.chmodSync(path.join(tmp.dir, "nosearch"), 0o700);
      fs.writeFileSync(path.join(tmp.dir, "closed", "f"), "");
      const c = nobody();
      const r = await attach(tmp.dir, c, { permissions: "user" });
      const closed = await walk(r, "closed", c);
      expect(await errnoOf(closed.create!({ name: "x", perm: 0o644, mode: OWRITE, extension: "" }, c))).toBe(
        13,
      );
      expect(await errnoOf(closed.mkdir!("x", 0o755, NOID, c))).toBe(13);
      expect(await errnoOf((await walk(closed, "f", c)).remove!(c))).toBe(13);
      expect(await errnoOf((await walk(r, "nosearch", c)).walk1!("anything", c))).toBe(13);
      const open = await walk(r, "open", c);
      const made = await open.lcreate!("mine", 0o102, 0o644, NOID, c);
      await made.file.clunk?.(c);
      expect(fs.statSync(path.join(tmp.dir, "open", "mine")).uid).toBe(65534);
      // chmod of someone else's file: EPERM
      expect(
        await errnoOf(
          (await walk(closed, "f", c)).setattr!(setattr({ valid: SETATTR.MODE, mode: 0o777 }), c),
        ),
      ).toBe(1);
      // devices need root
      expect(await errnoOf(open.mknod!("dev", S_IFCHR | 0o644, 1, 3, NOID, c))).toBe(1);
    },
  );

  it.skipIf(!asRoot)("set-user/group-ID bits survive giving a new file to its user", async () => {
    // chown clears set-ID bits of a file even when root does it: the mode must be set after it.
    // The directory's group is nobody's own (65534), so set-group-ID is the user's to give.
    fs.chmodSync(tmp.dir, 0o777);
    fs.chownSync(tmp.dir, 0, 65534);
    const c = nobody();
    const r = await attach(tmp.dir, c, { permissions: "user" });
    const u = await r.create!(
      { name: "suid-u", perm: (DMSETUID | 0o755) >>> 0, mode: OWRITE, extension: "" },
      c,
    );
    await u.file.clunk?.(c);
    const cl = ctx(Dialect.P2000L, "nobody", 65534);
    const rl = await attach(tmp.dir, cl, { permissions: "user" });
    const l = await rl.lcreate!("suid-l", 0o102, 0o6755, NOID, cl);
    await l.file.clunk?.(cl);
    for (const [name, mode] of [
      ["suid-u", 0o4755],
      ["suid-l", 0o6755],
    ] as const) {
      const st = fs.statSync(path.join(tmp.dir, name));
      expect({ name, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid }).toEqual({
        name,
        mode,
        uid: 65534,
        gid: 65534,
      });
    }
  });

  it.skipIf(!asRoot)(
    "hard links only to a user's own files or plain files they may read and write",
    async () => {
      fs.chmodSync(tmp.dir, 0o777);
      const w = (name: string, mode: number, uid = 0) => {
        fs.writeFileSync(path.join(tmp.dir, name), "x");
        fs.chownSync(path.join(tmp.dir, name), uid, 0);
        fs.chmodSync(path.join(tmp.dir, name), mode);
      };
      w("secret", 0o600);
      w("shared", 0o666);
      w("suid-prog", 0o4777);
      w("own", 0o600, 65534);
      const cl = ctx(Dialect.P2000L, "nobody", 65534);
      const r = await attach(tmp.dir, cl, { permissions: "user" });
      expect(await errnoOf(r.link!(await walk(r, "secret", cl), "l-secret", cl))).toBe(1);
      expect(await errnoOf(r.link!(await walk(r, "suid-prog", cl), "l-suid", cl))).toBe(1);
      await r.link!(await walk(r, "shared", cl), "l-shared", cl);
      await r.link!(await walk(r, "own", cl), "l-own", cl);
      expect(
        fs
          .readdirSync(tmp.dir)
          .filter((n) => n.startsWith("l-"))
          .sort(),
      ).toEqual(["l-own", "l-shared"]);
      // the same through 9P2000.u's DMLINK create
      const cu = nobody();
      const ru = await attach(tmp.dir, cu, { permissions: "user" });
      const secret = await walk(ru, "secret", cu);
      expect(
        await errnoOf(
          ru.create!(
            {
              name: "u-secret",
              perm: (DMLINK | 0o644) >>> 0,
              mode: OREAD,
              extension: "1\n",
              linkTarget: secret,
            },
            cu,
          ),
        ),
      ).toBe(1);
      // root may link anything
      const root = ctx(Dialect.P2000L, "root", 0);
      const rr = await attach(tmp.dir, root, { permissions: "user" });
      await rr.link!(await walk(rr, "secret", root), "l-root", root);
    },
  );

  it.skipIf(!asRoot)("in a sticky directory only the owners and root remove or rename an entry", async () => {
    const sticky = path.join(tmp.dir, "tmp");
    fs.mkdirSync(sticky);
    fs.chmodSync(sticky, 0o1777);
    fs.chmodSync(tmp.dir, 0o755);
    for (const [name, uid] of [
      ["theirs-1", 1000],
      ["theirs-2", 1000],
      ["theirs-3", 1000],
      ["theirs-4", 1000],
      ["mine-1", 65534],
      ["mine-2", 65534],
    ] as const) {
      fs.writeFileSync(path.join(sticky, name), name);
      fs.chownSync(path.join(sticky, name), uid, uid);
    }
    const cl = ctx(Dialect.P2000L, "nobody", 65534);
    const dl = await walk(await attach(tmp.dir, cl, { permissions: "user" }), "tmp", cl);
    expect(await errnoOf(dl.unlinkat!("theirs-1", 0, cl))).toBe(1);
    expect(await errnoOf(dl.renameat!("theirs-2", dl, "stolen", cl))).toBe(1);
    expect(await errnoOf((await walk(dl, "theirs-3", cl)).rename!(dl, "stolen", cl))).toBe(1);
    // a rename onto somebody else's entry would remove it
    expect(await errnoOf(dl.renameat!("mine-1", dl, "theirs-4", cl))).toBe(1);
    const cu = nobody();
    const du = await walk(await attach(tmp.dir, cu, { permissions: "user" }), "tmp", cu);
    expect(await errnoOf((await walk(du, "theirs-1", cu)).remove!(cu))).toBe(1);
    expect(await errnoOf((await walk(du, "theirs-2", cu)).wstat!({ name: "stolen" }, cu))).toBe(1);
    // their own entries, and anything for root
    await dl.renameat!("mine-1", dl, "mine-1b", cl);
    await (await walk(du, "mine-2", cu)).remove!(cu);
    const root = ctx(Dialect.P2000L, "root", 0);
    await (await walk(await attach(tmp.dir, root, { permissions: "user" }), "tmp", root)).unlinkat!(
      "theirs-4",
      0,
      root,
    );
    expect(fs.readdirSync(sticky).sort()).toEqual(["mine-1b", "theirs-1", "theirs-2", "theirs-3"]);
  });

  it.skipIf(!asRoot)("a user cannot give set-group-ID or a group they are not in", async () => {
    // The directory belongs to group root, which nobody is not in.
    fs.chmodSync(tmp.dir, 0o777);
    // A set-group-ID directory of group root: a file made there by nobody is of group root.
    fs.mkdirSync(path.join(tmp.dir, "sg"));
    fs.chmodSync(path.join(tmp.dir, "sg"), 0o2777);
    const cl = ctx(Dialect.P2000L, "nobody", 65534);
    const rl = await attach(tmp.dir, cl, { permissions: "user" });
    await (await (await walk(rl, "sg", cl)).lcreate!("sgid-l", 0o102, 0o2755, 0, cl)).file.clunk?.(cl);
    const cu = nobody();
    const ru = await attach(tmp.dir, cu, { permissions: "user" });
    const sgidU = await ru.create!(
      { name: "sgid-u", perm: (DMSETGID | 0o755) >>> 0, mode: OWRITE, extension: "" },
      cu,
    );
    await sgidU.file.clunk?.(cu);
    expect((fs.statSync(path.join(tmp.dir, "sgid-u")).mode & 0o7777).toString(8)).toBe("755");
    // chmod of their own file to set-group-ID: the bit is dropped, like the kernel does
    await (await walk(rl, "sg/sgid-l", cl)).setattr!(setattr({ valid: SETATTR.MODE, mode: 0o2750 }), cl);
    await (await walk(ru, "sgid-u", cu)).wstat!({ mode: (DMSETGID | 0o700) >>> 0 }, cu);
    // asking for group root at creation, which nobody is not in, gives nobody's own group.
    fs.mkdirSync(path.join(tmp.dir, "mine"), 0o777);
    fs.chownSync(path.join(tmp.dir, "mine"), 65534, 65534);
    const mine = await walk(rl, "mine", cl);
    await (await mine.lcreate!("asked-root", 0o102, 0o644, 0, cl)).file.clunk?.(cl);
    await mine.mkdir!("dir-asked-root", 0o755, 0, cl);
    const of = (...p: string[]) => {
      const st = fs.statSync(path.join(tmp.dir, ...p));
      return [(st.mode & 0o7777).toString(8), st.gid];
    };
    expect([
      of("sg", "sgid-l"),
      of("sgid-u"),
      of("mine", "asked-root"),
      of("mine", "dir-asked-root"),
    ]).toEqual([
      ["750", 0],
      ["700", 0],
      ["644", 65534],
      ["755", 65534],
    ]);
    // a user unknown on this host: the file stays root's, so no set-ID bit at all
    const stranger = ctx(Dialect.P2000u, "no-such-user-here");
    const rs = await attach(tmp.dir, stranger, { permissions: "user" });
    const made = await rs.create!(
      { name: "strangers", perm: (DMSETUID | DMSETGID | 0o755) >>> 0, mode: OWRITE, extension: "" },
      stranger,
    );
    await made.file.clunk?.(stranger);
    const st = fs.statSync(path.join(tmp.dir, "strangers"));
    expect([st.uid, (st.mode & 0o7777).toString(8)]).toEqual([0, "755"]);
    // root may do all of it
    const root = ctx(Dialect.P2000L, "root", 0);
    const rr = await attach(tmp.dir, root, { permissions: "user" });
    await (await rr.lcreate!("root-sgid", 0o102, 0o2755, 65534, root)).file.clunk?.(root);
    expect(of("root-sgid")).toEqual(["2755", 65534]);
  });
});

describe("9P2000.L operations", () => {
  it("getattr: BASIC fields, nanosecond times, qid.path = inode", async () => {
    const c = ctx(Dialect.P2000L);
    fs.writeFileSync(path.join(tmp.dir, "f"), "12345");
    const r = await attach(tmp.dir, c);
    const f = await walk(r, "f", c);
    const a = await f.getattr!(GETATTR.BASIC, c);
    const st = fs.statSync(path.join(tmp.dir, "f"), { bigint: true });
    expect(a.valid).toBe(GETATTR.BASIC);
    expect(a.qid.path).toBe(st.ino);
    expect(a.qid.type).toBe(QTFILE);
    expect(a.mode).toBe(Number(st.mode));
    expect(a.size).toBe(5n);
    expect(a.nlink).toBe(1n);
    expect(a.mtime_sec * 1_000_000_000n + a.mtime_nsec).toBe(st.mtimeNs);
    expect(a.blksize).toBe(st.blksize);
  });

  it("setattr: explicit times with nanoseconds, 'now' without _SET, size, mode", async () => {
    const c = ctx(Dialect.P2000L);
    fs.writeFileSync(path.join(tmp.dir, "f"), "0123456789");
    const r = await attach(tmp.dir, c);
    const f = await walk(r, "f", c);
    await f.setattr!(
      setattr({
        valid: SETATTR.ATIME | SETATTR.ATIME_SET | SETATTR.MTIME | SETATTR.MTIME_SET,
        atime_sec: 1000n,
        atime_nsec: 500_000_000n,
        mtime_sec: 2000n,
        mtime_nsec: 250_000_000n,
      }),
      c,
    );
    let st = fs.statSync(path.join(tmp.dir, "f"));
    expect(st.atimeMs).toBe(1_000_500);
    expect(st.mtimeMs).toBe(2_000_250);
    // mtime "now", atime untouched
    await f.setattr!(setattr({ valid: SETATTR.MTIME }), c);
    st = fs.statSync(path.join(tmp.dir, "f"));
    expect(Math.abs(st.mtimeMs - Date.now())).toBeLessThan(60_000); // "now", not the 2000 s set before
    expect(st.atimeMs).toBe(1_000_500);
    await f.setattr!(setattr({ valid: SETATTR.SIZE | SETATTR.MODE, size: 3n, mode: 0o600 }), c);
    st = fs.statSync(path.join(tmp.dir, "f"));
    expect(st.size).toBe(3);
    expect(st.mode & 0o7777).toBe(0o600);
    // nothing requested: success, nothing changes
    await f.setattr!(setattr({ valid: 0 }), c);
    // size on a directory
    expect(await errnoOf(r.setattr!(setattr({ valid: SETATTR.SIZE }), c))).toBe(21);
  });

  it("lopen: O_DIRECTORY, directories read-only, O_APPEND, O_TRUNC", async () => {
    const c = ctx(Dialect.P2000L);
    fs.writeFileSync(path.join(tmp.dir, "f"), "abc");
    const r = await attach(tmp.dir, c);
    const f = await walk(r, "f", c);
    expect(await errnoOf(f.lopen!(0o200000, c))).toBe(20);
    expect(await errnoOf(r.lopen!(1, c))).toBe(21);
    expect(await errnoOf(r.lopen!(3, c))).toBe(22);
    const ap = await f.lopen!(1 | 0o2000, c);
    await ap.write!(0n, Buffer.from("def"), c);
    await ap.clunk?.(c);
    expect(fs.readFileSync(path.join(tmp.dir, "f"), "utf8")).toBe("abcdef");
    const tr = await f.lopen!(1 | 0o1000, c);
    await tr.clunk?.(c);
    expect(fs.readFileSync(path.join(tmp.dir, "f"), "utf8")).toBe("");
  });

  it("lcreate without O_EXCL opens an existing file; mode is exact", async () => {
    const c = ctx(Dialect.P2000L);
    fs.writeFileSync(path.join(tmp.dir, "f"), "keep");
    const r = await attach(tmp.dir, c);
    const d = await walk(r, ".", c);
    const e = await d.lcreate!("f", 0o102, 0o600, NOID, c);
    expect((await readAll(e.file, c)).toString()).toBe("keep");
    await e.file.clunk?.(c);
    expect(await errnoOf(d.lcreate!("f", 0o302, 0o600, NOID, c))).toBe(17);
    const n = await d.lcreate!("n", 0o102, 0o751, NOID, c);
    await n.file.clunk?.(c);
    expect(fs.statSync(path.join(tmp.dir, "n")).mode & 0o7777).toBe(0o751);
  });

  it("readdir cookies: '.', '..', every member once, resumable from any cookie", async () => {
    const c = ctx(Dialect.P2000L);
    for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(tmp.dir, `f${i}`), "");
    fs.mkdirSync(path.join(tmp.dir, "sub"));
    const r = await attach(tmp.dir, c);
    const io = await r.lopen!(0, c);
    const all = await io.readdir!(0n, 1 << 20, c);
    expect(all.length).toBe(33);
    expect(all[0]!.name).toBe(".");
    expect(all[0]!.qid.path).toBe(r.qid.path);
    expect(all[1]!.name).toBe("..");
    expect(all.find((e) => e.name === "sub")!.type).toBe(4);
    expect(all.find((e) => e.name === "f0")!.type).toBe(8);
    // small counts: one entry at a time, continuing from the last cookie
    const names: string[] = [];
    let off = 0n;
    for (;;) {
      const batch = await io.readdir!(off, 30, c);
      if (batch.length === 0) break;
      expect(batch.length).toBe(1);
      names.push(batch[0]!.name);
      off = batch[0]!.offset;
    }
    expect(names).toEqual(all.map((e) => e.name));
    const tail = await io.readdir!(all[10]!.offset, 1 << 20, c);
    expect(tail.map((e) => e.name)).toEqual(all.slice(11).map((e) => e.name));
    expect(await io.readdir!(1000n, 1 << 20, c)).toEqual([]);
    // A count too small for the next entry still yields it (the server turns that into an error).
    expect((await io.readdir!(0n, 10, c)).map((e) => e.name)).toEqual(["."]);
    // `..` of a subdirectory is its parent
    const sub = await walk(r, "sub", c);
    const sio = await sub.lopen!(0, c);
    const se = await sio.readdir!(0n, 4096, c);
    expect(se.map((e) => e.name)).toEqual([".", ".."]);
    expect(se[1]!.qid.path).toBe(r.qid.path);
    await sio.clunk?.(c);
    await io.clunk?.(c);
  });

  it("unlinkat and rename errors follow Linux", async () => {
    const c = ctx(Dialect.P2000L);
    fs.mkdirSync(path.join(tmp.dir, "d"));
    fs.writeFileSync(path.join(tmp.dir, "d", "x"), "");
    fs.writeFileSync(path.join(tmp.dir, "f"), "");
    const r = await attach(tmp.dir, c);
    expect(await errnoOf(r.unlinkat!("d", 0x200, c))).toBe(39);
    expect(await errnoOf(r.unlinkat!("f", 0x200, c))).toBe(20);
    expect(await errnoOf(r.unlinkat!("..", 0, c))).toBe(22);
    const d = await walk(r, "d", c);
    expect(await errnoOf(d.rename!(d, "inside", c))).toBe(22); // into itself
    expect(await errnoOf(r.link!(d, "dirlink", c))).toBe(1);
    expect(await errnoOf(r.readlink!(c))).toBe(22);
  });

  it("read-only: every change is EROFS", async () => {
    const c = ctx(Dialect.P2000L);
    fs.writeFileSync(path.join(tmp.dir, "f"), "x");
    const r = await attach(tmp.dir, c, { readOnly: true });
    const f = await walk(r, "f", c);
    const calls: Promise<unknown>[] = [
      f.lopen!(1, c),
      f.lopen!(0o1000, c),
      f.setattr!(setattr({ valid: SETATTR.SIZE }), c),
      r.lcreate!("n", 0o102, 0o644, NOID, c),
      r.mkdir!("n", 0o755, NOID, c),
      r.symlink!("n", "f", NOID, c),
      r.mknod!("n", S_IFIFO | 0o644, 0, 0, NOID, c),
      r.link!(f, "n", c),
      f.rename!(r, "n", c),
      r.renameat!("f", r, "n", c),
      r.unlinkat!("f", 0, c),
      f.remove!(c),
      f.open!(OWRITE, c),
      f.open!(OREAD | ORCLOSE, c),
      f.wstat!({ mode: 0o600 }, c),
      r.create!({ name: "n", perm: 0o644, mode: OREAD, extension: "" }, c),
    ];
    for (const p of calls) expect(await errnoOf(p)).toBe(30);
    await (await f.lopen!(0, c)).clunk?.(c);
    expect(fs.readdirSync(tmp.dir)).toEqual(["f"]);
  });
});

describe("directories made in a set-group-ID directory", () => {
  it("keep set-group-ID, as a local mkdir does (Tmkdir and Tcreate of a directory)", async () => {
    fs.mkdirSync(path.join(tmp.dir, "shared"));
    fs.chmodSync(path.join(tmp.dir, "shared"), 0o2775);
    fs.mkdirSync(path.join(tmp.dir, "shared", "local"), 0o755);
    const cl = ctx(Dialect.P2000L);
    await (await walk(await attach(tmp.dir, cl), "shared", cl)).mkdir!("dotl", 0o755, NOID, cl);
    const cu = ctx(Dialect.P2000u);
    const su = await walk(await attach(tmp.dir, cu), "shared", cu);
    await su.create!({ name: "dotu", perm: (DMDIR | 0o755) >>> 0, mode: OREAD, extension: "" }, cu);
    fs.mkdirSync(path.join(tmp.dir, "plain"), 0o755);
    const plain = await walk(await attach(tmp.dir, cl), "plain", cl);
    await plain.mkdir!("sub", 0o750, NOID, cl);
    const mode = (...p: string[]) => (fs.statSync(path.join(tmp.dir, ...p)).mode & 0o7777).toString(8);
    expect([
      mode("shared", "local"),
      mode("shared", "dotl"),
      mode("shared", "dotu"),
      mode("plain", "sub"),
    ]).toEqual(["2755", "2755", "2755", "750"]);
  });
});

describe("special files and odd offsets", () => {
  it("a FIFO read waits for data without holding a thread, and an abort ends it", async () => {
    const c = ctx(Dialect.P2000L);
    const r = await attach(tmp.dir, c);
    await r.mknod!("p", S_IFIFO | 0o600, 0, 0, NOID, c);
    const fifo = await walk(r, "p", c);
    const rd = await fifo.lopen!(0, c);
    const wr = await fifo.lopen!(1, c);
    const ac = new AbortController();
    const waiting = rd.read!(0n, 100, { ...c, signal: ac.signal });
    // Meanwhile other file system work proceeds.
    fs.writeFileSync(path.join(tmp.dir, "other"), "x");
    expect((await walk(r, "other", c)).qid.type).toBe(QTFILE);
    setTimeout(() => ac.abort(), 50);
    expect(await errnoOf(waiting)).toBe(4);
    expect(await wr.write!(0n, Buffer.from("ping"), c)).toBe(4);
    expect(Buffer.from(await rd.read!(0n, 100, c)).toString()).toBe("ping");
    await wr.clunk?.(c);
    await rd.clunk?.(c);
    // Writing with no reader fails cleanly (ENXIO) instead of blocking.
    expect(await errnoOf(fifo.lopen!(1, c).then(() => undefined))).toBe(6);
  });

  it("offsets past 2^53 read as end of file and refuse writes", async () => {
    const c = ctx(Dialect.P2000u);
    fs.writeFileSync(path.join(tmp.dir, "f"), "data");
    const r = await attach(tmp.dir, c);
    const io = await (await walk(r, "f", c)).open!(ORDWR, c);
    expect((await io.read!(2n ** 63n - 1n, 100, c)).length).toBe(0);
    expect((await io.read!(2n ** 40n, 100, c)).length).toBe(0);
    expect(await errnoOf(io.write!(2n ** 60n, Buffer.from("x"), c))).toBe(27);
    await io.clunk?.(c);
    // I/O after clunk is refused, not run on a recycled descriptor.
    expect(await errnoOf(io.read!(0n, 10, c))).toBe(9);
  });
});

describe("locks", () => {
  it("conflicts between owners, splitting, release on clunk", () => {
    const t = new LockTable();
    const h1 = {};
    const h2 = {};
    const req = (locktype: number, start: bigint, length: bigint) => ({
      locktype,
      flags: 0,
      start,
      length,
      proc_id: 1,
      client_id: "c",
    });
    expect(t.lock(1n, "a", h1, req(1, 0n, 100n))).toBe(0);
    expect(t.lock(1n, "b", h2, req(0, 50n, 10n))).toBe(1);
    expect(t.lock(1n, "b", h2, req(0, 100n, 10n))).toBe(0);
    expect(t.lock(1n, "a", h1, req(2, 40n, 20n))).toBe(0); // unlock the middle
    expect(t.lock(1n, "b", h2, req(1, 45n, 10n))).toBe(0);
    expect(t.getlock(1n, "b", req(1, 0n, 0n)).locktype).toBe(1);
    expect(t.getlock(1n, "b", req(1, 60n, 20n))).toMatchObject({ locktype: 1, start: 60n, length: 40n });
    t.release(h1);
    expect(t.getlock(1n, "b", req(1, 0n, 0n)).locktype).toBe(2);
    expect(t.lock(1n, "a", h1, req(7, 0n, 0n))).toBe(2);
  });
});

describe("process permission mode", () => {
  it("OEXEC still needs an execute bit; other checks are left to the OS", async () => {
    const c = ctx(Dialect.P2000, "nobody-at-all");
    fs.writeFileSync(path.join(tmp.dir, "script"), "#!/bin/sh\n");
    fs.chmodSync(path.join(tmp.dir, "script"), 0o644);
    const r = await attach(tmp.dir, c, { permissions: "process" });
    const f = await walk(r, "script", c);
    expect(await errnoOf(f.open!(OEXEC, c))).toBe(13);
    fs.chmodSync(path.join(tmp.dir, "script"), 0o744);
    await (await f.open!(OEXEC, c)).clunk?.(c);
    // An unknown user may write a 0644 file: the server process (root here, or its owner) can.
    await (await f.open!(ORDWR, c)).clunk?.(c);
  });
});

describe("names that are not UTF-8", () => {
  it("are left out of listings (9P strings are UTF-8)", async () => {
    const bad = Buffer.concat([Buffer.from(tmp.dir), Buffer.from("/bad-\xff\xfe-name", "latin1")]);
    fs.writeFileSync(bad, "x");
    fs.writeFileSync(path.join(tmp.dir, "good-ünïcödé"), "y");
    for (const d of [Dialect.P2000u, Dialect.P2000L]) {
      const c = ctx(d);
      const r = await attach(tmp.dir, c);
      const io = await r.open!(OREAD, c);
      const names =
        d === Dialect.P2000L
          ? (await io.readdir!(0n, 1 << 16, c)).map((e) => e.name)
          : (await io.list!(c)).map((s) => s.name);
      expect(names.filter((n) => n !== "." && n !== "..")).toEqual(["good-ünïcödé"]);
      await io.clunk?.(c);
    }
  });
});

describe("the export root", () => {
  it("ready() rejects for a missing root, and a root created later is served", async () => {
    const { passthrough } = await import("../../src/server/passthrough.js");
    const later = path.join(tmp.dir, "later");
    const be = passthrough(later);
    await expect(be.ready()).rejects.toThrow(/ENOENT|no such file/);
    fs.mkdirSync(later);
    fs.writeFileSync(path.join(later, "f"), "x");
    await be.ready();
    expect(be.rootPath).toBe(fs.realpathSync(later));
    const c = ctx(Dialect.P2000L);
    const r = await be.attach({ ...c.user }, c);
    expect((await walk(r, "f", c)).qid.type).toBe(QTFILE);
  });
});

describe("device files", () => {
  it.skipIf(!asRoot)(
    "root may make a character device (.u DMDEVICE and .L mknod); stat shows it",
    async () => {
      const cu = ctx(Dialect.P2000u, "root", 0);
      const r = await attach(tmp.dir, cu, { permissions: "user" });
      const made = await r.create!(
        { name: "null1", perm: (DMDEVICE | 0o666) >>> 0, mode: OREAD, extension: "c 1 3" },
        cu,
      );
      const st = await made.node.stat(cu);
      expect(st.mode & DMDEVICE).toBeTruthy();
      expect(st.extension).toBe("c 1 3");
      expect(fs.statSync(path.join(tmp.dir, "null1")).isCharacterDevice()).toBe(true);
      const cl = ctx(Dialect.P2000L, "root", 0);
      const rl = await attach(tmp.dir, cl, { permissions: "user" });
      const n2 = await rl.mknod!("null2", S_IFCHR | 0o600, 1, 3, NOID, cl);
      const a = await n2.getattr!(GETATTR.BASIC, cl);
      expect(a.mode & 0o170000).toBe(S_IFCHR);
      expect([majorOf(a.rdev), minorOf(a.rdev)]).toEqual([1, 3]);
      // Reading a device goes through the non-blocking stream path: /dev/null reads as EOF.
      const io = await n2.lopen!(0, cl);
      expect((await io.read!(0n, 10, cl)).length).toBe(0);
      await io.clunk?.(cl);
    },
  );
});
