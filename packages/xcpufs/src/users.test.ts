import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { toOpenSshLine } from "./keys.js";
import { tokenize } from "./quote.js";
import { importUnixUsers, UserDb } from "./users.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const key = toOpenSshLine(generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey, "a@b");
const run = (db: UserDb, line: string) => db.command(tokenize(line));

describe("UserDb", () => {
  it("starts with xcpu-admin", () => {
    const db = new UserDb({});
    expect(db.pwent()).toBe("xcpu-admin:65530:65530:xcpu-admin\n");
    expect(db.grent()).toBe("xcpu-admin:65530\n");
    expect(db.admin.alwaysFail).toBe(true);
  });
  it("lists users and groups the most recently added first, as the original's pool", () => {
    // What xgetent passwd read from an original node after `xuserset add root 0 xcpu-admin`.
    const db = new UserDb({});
    run(db, `user-add root 0 xcpu-admin '${key}'`);
    expect(db.pwent()).toBe("root:0:65530:xcpu-admin\nxcpu-admin:65530:65530:xcpu-admin\n");
    run(db, "group-add mammals 100");
    run(db, "group-add users 101");
    expect(db.grent()).toBe("users:101\nmammals:100\nxcpu-admin:65530\n");
  });
  it("finds users by uid and groups by gid after every kind of change", () => {
    const db = new UserDb({});
    run(db, "group-add mammals 100");
    run(db, `user-add glenda 500 mammals '${key}'`);
    expect(db.byUid(500)?.name).toBe("glenda");
    expect(db.groupByGid(100)?.name).toBe("mammals");
    expect(db.byUid(65530)?.name).toBe("xcpu-admin");
    run(db, "user-del glenda");
    expect(db.byUid(500)).toBeUndefined();
    run(db, "user-add other 500 mammals ''");
    expect(db.byUid(500)?.name).toBe("other");
    // without a key anyone may log in as the user: never as uid 0
    expect(() => run(db, "user-add toor 0 mammals ''")).toThrow("toor: a user with uid 0 needs a key");
    expect(db.byUid(0)).toBeUndefined();
    run(db, "user-del other");
    run(db, "group-del mammals");
    expect(db.groupByGid(100)).toBeUndefined();
    run(db, "group-add reptiles 100");
    expect(db.groupByGid(100)?.name).toBe("reptiles");
    // a change that cannot be saved is undone, lookups included
    expect(() => run(db, "group-add reptiles 101")).toThrow("reptiles:group exists");
    expect(db.groupByGid(101)).toBeUndefined();
    expect(db.groupByGid(100)?.name).toBe("reptiles");
  });
  it("adds and removes users and groups with the original errors", () => {
    const db = new UserDb({});
    expect(() => run(db, `user-add glenda 500 mammals '${key}'`)).toThrow("mammals:group not found");
    run(db, "group-add mammals 100");
    run(db, "group-add users 101");
    expect(() => run(db, "group-add users 102")).toThrow("users:group exists");
    expect(() => run(db, "group-add other 101")).toThrow("101:group exists");
    expect(() => run(db, "group-add x -1")).toThrow("invalid group id -1");
    expect(() => run(db, "group-add x")).toThrow("Usage: group-add groupname gid");
    run(db, `user-add glenda 500 mammals '${key}'`);
    expect(() => run(db, "user-add glenda 501 mammals ''")).toThrow("glenda:user exists");
    expect(() => run(db, "user-add other 500 mammals ''")).toThrow("500:user exists");
    expect(() => run(db, "user-add x 1x mammals ''")).toThrow("invalid user id");
    expect(() => run(db, "user-add x 7 mammals 'ssh-dss AAAA'")).toThrow("invalid key type");
    expect(() => run(db, "user-del")).toThrow("Usage: user-del uname");
    run(db, "user-add-group glenda users");
    expect(db.pwent()).toContain("glenda:500:100:mammals,users\n");
    expect(db.supplementaryGids(db.byUid(500)!)).toEqual([101]);
    expect(() => run(db, "group-del users")).toThrow("users:group not empty");
    expect(() => run(db, "user-del-group glenda nope")).toThrow("nope: no such group in userpool");
    run(db, "user-del-group glenda users");
    expect(() => run(db, "user-del-group glenda users")).toThrow("user glenda not a member of group users");
    run(db, "group-del users");
    expect(() => run(db, "user-del nobody")).toThrow("nobody: no such user in userpool");
    expect(run(db, "frobnicate")).toBe(false);
    run(db, "group-flush");
    expect(db.pwent()).toBe("xcpu-admin:65530:65530:xcpu-admin\n");
  });
  it("persists atomically and reloads", () => {
    const dir = mkdtempSync(join(tmpdir(), "xcpufs-users-"));
    dirs.push(dir);
    const db = new UserDb({ stateDir: dir });
    run(db, "group-add mammals 100");
    run(db, `user-add glenda 500 mammals '${key}'`);
    run(db, "user-add nokey 501 mammals ''");
    const st = JSON.parse(readFileSync(join(dir, "users.json"), "utf8"));
    expect(st.users.map((u: { name: string }) => u.name)).toEqual(["xcpu-admin", "glenda", "nokey"]);
    const again = new UserDb({ stateDir: dir });
    expect(again.pwent()).toBe(db.pwent());
    expect(again.byUid(500)?.key?.kind).toBe("rsa");
    expect(again.byUid(501)?.key).toBeUndefined();
  });
  it("a pool file edited into a broken shape or breaking user-add's rules is refused, naming the entry", () => {
    const dir = mkdtempSync(join(tmpdir(), "xcpufs-users-"));
    dirs.push(dir);
    const file = join(dir, "users.json");
    const user = (name: string, uid: number) => ({ name, uid, gid: 100, groups: ["mammals"] });
    const cases: [object, string][] = [
      [{ version: 1, groups: "x", users: [] }, '"groups" is not a list'],
      [{ version: 1, groups: [], users: {} }, '"users" is not a list'],
      [{ version: 1, groups: [{ name: "g", gid: -1 }], users: [] }, "groups[0]: expected"],
      [
        {
          version: 1,
          groups: [
            { name: "g", gid: 1 },
            { name: "h", gid: 1 },
          ],
          users: [],
        },
        "groups[1]: 1:group exists",
      ],
      [
        { version: 1, groups: [], users: [user("eve", 3000), user("eve2", 3000)] },
        "users[1]: 3000:user exists",
      ],
      [
        { version: 1, groups: [], users: [user("eve", 3000), user("eve", 3001)] },
        "users[1]: eve:user exists",
      ],
      [
        { version: 1, groups: [], users: [{ name: "a b", uid: 1, gid: 1, groups: [] }] },
        "users[0]: expected",
      ],
      [{ version: 1, groups: [], users: [{ name: "a", uid: 1, gid: 1 }] }, "users[0]: expected"],
    ];
    for (const [doc, message] of cases) {
      writeFileSync(file, JSON.stringify(doc));
      expect(() => new UserDb({ stateDir: dir }), message).toThrow(
        `${file}: broken user pool file: ${message}`,
      );
    }
    // not readable at all (here a directory in its place): named too
    rmSync(file);
    mkdirSync(file);
    expect(() => new UserDb({ stateDir: dir })).toThrow(`${file}: cannot read the user pool file: EISDIR`);
  });
  it("a change that cannot be saved is not made (full disk, unwritable state file)", () => {
    const dir = mkdtempSync(join(tmpdir(), "xcpufs-users-"));
    dirs.push(dir);
    const db = new UserDb({ stateDir: dir });
    run(db, "group-add mammals 100");
    run(db, `user-add glenda 500 mammals '${key}'`);
    const before = { pw: db.pwent(), members: [...(db.groups.get("mammals")?.members ?? [])] };
    // The state file's directory full: a 64 KiB tmpfs filled up (needs root to mount).
    let mounted = false;
    if (process.getuid?.() === 0) {
      const full = mkdtempSync(join(tmpdir(), "xcpufs-full-"));
      dirs.push(full);
      try {
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", full], { stdio: "pipe" });
        mounted = true;
      } catch {
        // no mount here: the other case below still runs
      }
      if (mounted) {
        try {
          const fdb = new UserDb({ stateDir: full });
          run(fdb, "group-add mammals 100");
          const fsaved = readFileSync(join(full, "users.json"), "utf8");
          try {
            writeFileSync(join(full, "filler"), Buffer.alloc(128 * 1024));
          } catch {
            // ENOSPC once the tmpfs is full, as wanted
          }
          const pw = fdb.pwent();
          expect(() => run(fdb, `user-add glenda 500 mammals '${key}'`)).toThrow(
            "cannot save the user pool: ENOSPC; nothing changed",
          );
          expect(fdb.pwent()).toBe(pw);
          expect(fdb.byName("glenda")).toBeUndefined();
          expect(readFileSync(join(full, "users.json"), "utf8")).toBe(fsaved);
          expect(readdirSync(full).sort()).toEqual(["filler", "users.json"]);
        } finally {
          execFileSync("umount", ["-l", full]);
        }
      }
    }
    // The state file replaced by a directory: the rename fails.
    rmSync(join(dir, "users.json"));
    mkdirSync(join(dir, "users.json"));
    writeFileSync(join(dir, "users.json", "keep"), "");
    const savedDir = readdirSync(join(dir, "users.json"));
    expect(() => run(db, "user-add other 501 mammals ''")).toThrow(
      /cannot save the user pool: E\w+; nothing changed/,
    );
    expect(() => run(db, "user-del-group glenda mammals")).toThrow(/cannot save the user pool/);
    expect(() => run(db, "user-del glenda")).toThrow(/cannot save the user pool/);
    expect(db.byName("glenda")?.groups.has("mammals")).toBe(true);
    expect([...(db.groups.get("mammals")?.members ?? [])]).toEqual(before.members);
    expect(db.pwent()).toBe(before.pw);
    expect(readdirSync(join(dir, "users.json"))).toEqual(savedDir);
    expect(readdirSync(dir)).toEqual(["users.json"]);
  });
  it("passkeys are one-shot and bound to their user", () => {
    const db = new UserDb({});
    run(db, "group-add g 1");
    run(db, "user-add a 10 g ''");
    run(db, "user-add b 11 g ''");
    const pk = db.mintPasskey(db.byName("a")!);
    expect(pk).toMatch(/^[0-9a-f]{32}$/);
    expect(db.consumePasskey(db.byName("b")!, (p) => p === pk)).toBe(false);
    expect(db.consumePasskey(db.byName("a")!, (p) => p === pk)).toBe(true);
    expect(db.consumePasskey(db.byName("a")!, (p) => p === pk)).toBe(false);
  });
  it("imports Unix groups and the users that have a public key (-u)", () => {
    const dir = mkdtempSync(join(tmpdir(), "xcpufs-unix-"));
    dirs.push(dir);
    mkdirSync(join(dir, "ann", ".ssh"), { recursive: true });
    writeFileSync(join(dir, "ann", ".ssh", "id_rsa.pub"), `${key}\n`);
    mkdirSync(join(dir, "bob"));
    writeFileSync(join(dir, "group"), "staff:x:50:ann\nann:x:1000:\nclash:x:65530:\n");
    writeFileSync(
      join(dir, "passwd"),
      `ann:x:1000:1000:Ann:${join(dir, "ann")}:/bin/sh\nbob:x:1001:1000:Bob:${join(dir, "bob")}:/bin/sh\n`,
    );
    const db = new UserDb({});
    expect(importUnixUsers(db, { passwd: join(dir, "passwd"), group: join(dir, "group") })).toEqual(["ann"]);
    expect(db.pwent()).toContain("ann:1000:1000:ann,staff\n");
    expect(db.grent()).toBe("ann:1000\nstaff:50\nxcpu-admin:65530\n");
    expect(db.byName("bob")).toBeUndefined();
  });
});
