// The node's user and group pool, managed through the root ctl file and kept in a state file.

import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { XcpuError } from "./errors.js";
import { type PublicKey, parsePublicKey } from "./keys.js";

export const ADMIN_NAME = "xcpu-admin";
export const DEFAULT_ADMIN_ID = 65530;

export interface User {
  name: string;
  uid: number;
  /** gid of the default group. */
  gid: number;
  /** Names of the groups the user belongs to (the default group included). */
  groups: Set<string>;
  /** The user's key; undefined = no key (attach accepted without a response). */
  key: PublicKey | undefined;
  /** True for the admin user when no admin key could be loaded: every response is refused. */
  alwaysFail?: boolean;
  /** Users admitted by `--no-auth` without being in the pool; never persisted. */
  transient?: boolean;
}

/** Same person: name and uid both match (a transient `--no-auth` user may reuse a pool name). */
export function sameUser(a: User, b: User): boolean {
  return a.name === b.name && a.uid === b.uid;
}

export interface Group {
  name: string;
  gid: number;
  members: Set<string>;
}

interface StateFile {
  version: 1;
  users: { name: string; uid: number; gid: number; groups: string[]; key?: string }[];
  groups: { name: string; gid: number }[];
}

const ID_RE = /^\d+$/;

/**
 * The shape and the uniqueness rules of user-add and group-add, for a pool file edited by hand:
 * a file that breaks them is refused (naming the entry) rather than loaded half-way.
 */
function checkStateFile(st: StateFile): void {
  const isId = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= 0xfffffffe;
  const isGroupName = (v: unknown) => typeof v === "string" && v !== "";
  const isUserName = (v: unknown) => typeof v === "string" && /^[^\s:/,]+$/.test(v);
  if (!Array.isArray(st.groups)) throw new Error('"groups" is not a list');
  if (!Array.isArray(st.users)) throw new Error('"users" is not a list');
  const gnames = new Set<string>();
  const gids = new Set<number>();
  st.groups.forEach((g, i) => {
    if (!isGroupName(g?.name) || !isId(g?.gid))
      throw new Error(`groups[${i}]: expected {"name": NAME, "gid": NUMBER}`);
    if (gnames.has(g.name)) throw new Error(`groups[${i}]: ${g.name}:group exists`);
    if (gids.has(g.gid)) throw new Error(`groups[${i}]: ${g.gid}:group exists`);
    gnames.add(g.name);
    gids.add(g.gid);
  });
  const unames = new Set<string>();
  const uids = new Set<number>();
  st.users.forEach((u, i) => {
    const shape =
      isUserName(u?.name) &&
      isId(u?.uid) &&
      isId(u?.gid) &&
      Array.isArray(u?.groups) &&
      u.groups.every((n) => typeof n === "string") &&
      (u.key === undefined || typeof u.key === "string");
    if (!shape) {
      throw new Error(
        `users[${i}]: expected {"name": NAME, "uid": NUMBER, "gid": NUMBER, "groups": [NAME, ...], "key"?: TEXT}`,
      );
    }
    if (unames.has(u.name)) throw new Error(`users[${i}]: ${u.name}:user exists`);
    if (uids.has(u.uid)) throw new Error(`users[${i}]: ${u.uid}:user exists`);
    unames.add(u.name);
    uids.add(u.uid);
  });
}

/** A Map that counts its changes, so that indexes built from it know when to rebuild. */
class CountedMap<V> extends Map<string, V> {
  changes = 0;
  override set(key: string, value: V): this {
    this.changes++;
    return super.set(key, value);
  }
  override delete(key: string): boolean {
    this.changes++;
    return super.delete(key);
  }
  override clear(): void {
    this.changes++;
    super.clear();
  }
}

/** Lookup by a numeric id over a CountedMap: the first entry in map order wins, as a scan would. */
class IdIndex<V> {
  private index = new Map<number, V>();
  private at = -1;
  constructor(
    private readonly map: CountedMap<V>,
    private readonly id: (v: V) => number,
  ) {}
  get(id: number): V | undefined {
    if (this.at !== this.map.changes) {
      this.index = new Map();
      for (const v of this.map.values()) if (!this.index.has(this.id(v))) this.index.set(this.id(v), v);
      this.at = this.map.changes;
    }
    return this.index.get(id);
  }
}

/** The user pool: the admin user and group always exist; changes persist atomically when a state file is set. */
export class UserDb {
  readonly users = new CountedMap<User>();
  readonly groups = new CountedMap<Group>();
  /** By uid and by gid: looked up on every request (ownership and permission checks). */
  private readonly uids = new IdIndex<User>(this.users, (u) => u.uid);
  private readonly gids = new IdIndex<Group>(this.groups, (g) => g.gid);
  readonly adminId: number;
  private readonly file: string | undefined;
  /** Outstanding passkeys per user name (one-shot). */
  private readonly passkeys = new Map<string, Set<string>>();

  constructor(opts: { adminId?: number; adminKey?: PublicKey; stateDir?: string }) {
    this.adminId = opts.adminId ?? DEFAULT_ADMIN_ID;
    this.groups.set(ADMIN_NAME, { name: ADMIN_NAME, gid: this.adminId, members: new Set([ADMIN_NAME]) });
    this.users.set(ADMIN_NAME, {
      name: ADMIN_NAME,
      uid: this.adminId,
      gid: this.adminId,
      groups: new Set([ADMIN_NAME]),
      key: opts.adminKey,
      alwaysFail: opts.adminKey === undefined,
    });
    if (opts.stateDir) {
      try {
        mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why =
          code === "EEXIST" || code === "ENOTDIR" ? "not a directory" : (code ?? (err as Error).message);
        throw new Error(`cannot use state directory ${opts.stateDir}: ${why}`);
      }
      this.file = join(opts.stateDir, "users.json");
      this.load();
    }
  }

  get admin(): User {
    return this.users.get(ADMIN_NAME) as User;
  }

  byName(name: string): User | undefined {
    return this.users.get(name);
  }

  byUid(uid: number): User | undefined {
    return this.uids.get(uid);
  }

  groupByGid(gid: number): Group | undefined {
    return this.gids.get(gid);
  }

  /** True when the user is a member of the group with this gid (default group included). */
  inGroup(user: User, gid: number): boolean {
    if (user.gid === gid) return true;
    for (const name of user.groups) if (this.groups.get(name)?.gid === gid) return true;
    return false;
  }

  /** gids of every group of the user other than the default one. */
  supplementaryGids(user: User): number[] {
    const out: number[] = [];
    for (const name of user.groups) {
      const g = this.groups.get(name);
      if (g && g.gid !== user.gid && !out.includes(g.gid)) out.push(g.gid);
    }
    return out;
  }

  isAdmin(user: User): boolean {
    return user === this.admin;
  }

  /** Run one tokenised root ctl command that concerns users or groups. Returns false if not one. */
  command(tokens: string[]): boolean {
    const undo = this.snapshot();
    try {
      if (!this.apply(tokens)) return false;
      this.save();
    } catch (err) {
      // A change that cannot be saved is not made: memory and the state file stay as they were.
      undo();
      if (err instanceof XcpuError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      throw new XcpuError(`cannot save the user pool: ${code ?? (err as Error).message}; nothing changed`);
    }
    return true;
  }

  /** Puts users, groups, memberships and passkeys back as they are now (same objects). */
  private snapshot(): () => void {
    const users = [...this.users.values()].map((u) => [u, [...u.groups]] as const);
    const groups = [...this.groups.values()].map((g) => [g, [...g.members]] as const);
    const passkeys = [...this.passkeys.entries()].map(([k, v]) => [k, new Set(v)] as const);
    return () => {
      this.users.clear();
      for (const [u, names] of users) {
        u.groups.clear();
        for (const n of names) u.groups.add(n);
        this.users.set(u.name, u);
      }
      this.groups.clear();
      for (const [g, members] of groups) {
        g.members.clear();
        for (const m of members) g.members.add(m);
        this.groups.set(g.name, g);
      }
      this.passkeys.clear();
      for (const [k, v] of passkeys) this.passkeys.set(k, v);
    };
  }

  private apply(tokens: string[]): boolean {
    const [cmd, ...a] = tokens;
    switch (cmd) {
      case "user-add":
        if (a.length !== 4) throw new XcpuError("Usage: user-add uname uid groupname key");
        this.userAdd(a[0] as string, a[1] as string, a[2] as string, a[3] as string);
        break;
      case "user-del":
        this.need(a, 1, "Usage: user-del uname");
        this.userDel(a[0] as string);
        break;
      case "user-flush":
        for (const name of [...this.users.keys()]) if (name !== ADMIN_NAME) this.userDel(name, false);
        break;
      case "user-add-group": {
        this.need(a, 2, "Usage: user-add-group uname gname");
        const [u, g] = this.userGroup(a[0] as string, a[1] as string);
        u.groups.add(g.name);
        g.members.add(u.name);
        break;
      }
      case "user-del-group": {
        this.need(a, 2, "Usage: user-del-group uname gname");
        const [u, g] = this.userGroup(a[0] as string, a[1] as string);
        if (!u.groups.has(g.name)) throw new XcpuError(`user ${u.name} not a member of group ${g.name}`);
        u.groups.delete(g.name);
        g.members.delete(u.name);
        break;
      }
      case "group-add": {
        if (a.length !== 2) throw new XcpuError("Usage: group-add groupname gid");
        const [name, gidText] = a as [string, string];
        if (!ID_RE.test(gidText) || Number(gidText) > 0xfffffffe)
          throw new XcpuError(`invalid group id ${gidText}`);
        const gid = Number(gidText);
        if (this.groups.has(name)) throw new XcpuError(`${name}:group exists`);
        if (this.groupByGid(gid)) throw new XcpuError(`${gid}:group exists`);
        this.groups.set(name, { name, gid, members: new Set() });
        break;
      }
      case "group-del": {
        this.need(a, 1, "Usage: group-del groupname");
        const g = this.groups.get(a[0] as string);
        if (!g) throw new XcpuError(`${a[0]}: no such group in userpool`);
        if (g.name === ADMIN_NAME) throw new XcpuError(`${g.name}: cannot delete the admin group`);
        const others = [...g.members].filter((m) => m !== ADMIN_NAME);
        if (others.length > 0) throw new XcpuError(`${g.name}:group not empty`);
        this.admin.groups.delete(g.name);
        this.groups.delete(g.name);
        break;
      }
      case "group-flush":
        for (const name of [...this.users.keys()]) if (name !== ADMIN_NAME) this.userDel(name, false);
        for (const name of [...this.groups.keys()]) if (name !== ADMIN_NAME) this.groups.delete(name);
        for (const g of [...this.admin.groups]) if (!this.groups.has(g)) this.admin.groups.delete(g);
        break;
      default:
        return false;
    }
    return true;
  }

  private need(a: string[], n: number, usage: string): void {
    if (a.length !== n) throw new XcpuError(usage);
  }

  private userGroup(uname: string, gname: string): [User, Group] {
    const u = this.users.get(uname);
    if (!u) throw new XcpuError(`${uname}: no such user in userpool`);
    const g = this.groups.get(gname);
    if (!g) throw new XcpuError(`${gname}: no such group in userpool`);
    return [u, g];
  }

  private userAdd(name: string, uidText: string, gname: string, keyText: string): void {
    if (!ID_RE.test(uidText) || Number(uidText) > 0xfffffffe) throw new XcpuError("invalid user id");
    if (!/^[^\s:/,]+$/.test(name)) throw new XcpuError("invalid user name");
    const uid = Number(uidText);
    const g = this.groups.get(gname);
    if (!g) throw new XcpuError(`${gname}:group not found`);
    if (this.users.has(name)) throw new XcpuError(`${name}:user exists`);
    if (this.byUid(uid)) throw new XcpuError(`${uid}:user exists`);
    const key = keyText === "" ? undefined : parsePublicKey(keyText);
    // A user without a key logs in without proof; as uid 0 that would be anyone, as root.
    if (!key && uid === 0) throw new XcpuError(`${name}: a user with uid 0 needs a key`);
    this.users.set(name, { name, uid, gid: g.gid, groups: new Set([g.name]), key });
    g.members.add(name);
  }

  private userDel(name: string, check = true): void {
    const u = this.users.get(name);
    if (!u) throw new XcpuError(`${name}: no such user in userpool`);
    if (check && name === ADMIN_NAME) throw new XcpuError(`${name}: cannot delete the admin user`);
    for (const g of this.groups.values()) g.members.delete(name);
    this.users.delete(name);
    this.passkeys.delete(name);
  }

  /**
   * `pwent`: `uname:uid:gid[:g1,g2]` per user, the most recently added first, as the original's
   * pool lists them (xgetent prints them in this order).
   */
  pwent(): string {
    if (this.users.size === 0) throw new XcpuError("userpool empty: no users");
    let s = "";
    for (const u of [...this.users.values()].reverse()) {
      s += `${u.name}:${u.uid}:${u.gid}`;
      if (u.groups.size > 0) s += `:${[...u.groups].join(",")}`;
      s += "\n";
    }
    return s;
  }

  /** `grent`: `gname:gid` per group, the most recently added first (as `pwent`). */
  grent(): string {
    if (this.groups.size === 0) throw new XcpuError("userpool empty: no groups");
    let s = "";
    for (const g of [...this.groups.values()].reverse()) s += `${g.name}:${g.gid}\n`;
    return s;
  }

  /** Mint a one-shot passkey for a user: 32 lowercase hex characters. */
  mintPasskey(user: User): string {
    const pk = randomBytes(16).toString("hex");
    let set = this.passkeys.get(user.name);
    if (!set) {
      set = new Set();
      this.passkeys.set(user.name, set);
    }
    // Bound the number of outstanding passkeys per user so that repeated reads cannot grow memory.
    if (set.size >= 4096) set.delete(set.values().next().value as string);
    set.add(pk);
    return pk;
  }

  /** Find and consume the outstanding passkey of `user` that `match` accepts. */
  consumePasskey(user: User, match: (pk: string) => boolean): boolean {
    const set = this.passkeys.get(user.name);
    if (!set) return false;
    for (const pk of set) {
      if (match(pk)) {
        set.delete(pk);
        return true;
      }
    }
    return false;
  }

  private load(): void {
    if (!this.file) return;
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw new Error(`${this.file}: cannot read the user pool file: ${(err as Error).message}`);
    }
    try {
      this.loadText(text);
    } catch (err) {
      // The file is named: "Unexpected token" or "not iterable" alone sends nobody to it.
      const msg = (err as Error).message;
      throw new Error(msg.startsWith(this.file) ? msg : `${this.file}: broken user pool file: ${msg}`);
    }
  }

  private loadText(text: string): void {
    const st = JSON.parse(text) as StateFile;
    if (st?.version !== 1) throw new Error(`${this.file}: unknown state file version`);
    checkStateFile(st);
    for (const g of st.groups) {
      if (g.name === ADMIN_NAME) continue;
      this.groups.set(g.name, { name: g.name, gid: g.gid, members: new Set() });
    }
    for (const u of st.users) {
      const groups = new Set(u.groups.filter((n) => this.groups.has(n)));
      if (u.name === ADMIN_NAME) {
        for (const n of groups) this.admin.groups.add(n);
      } else {
        this.users.set(u.name, {
          name: u.name,
          uid: u.uid,
          gid: u.gid,
          groups,
          key: u.key ? parsePublicKey(u.key) : undefined,
        });
      }
      for (const n of groups) this.groups.get(n)?.members.add(u.name);
    }
  }

  /** Write the pool to the state file: a temporary file, fsync, then rename over the old one. */
  save(): void {
    if (!this.file) return;
    const st: StateFile = {
      version: 1,
      groups: [...this.groups.values()].map((g) => ({ name: g.name, gid: g.gid })),
      users: [...this.users.values()]
        .filter((u) => !u.transient)
        .map((u) => ({
          name: u.name,
          uid: u.uid,
          gid: u.gid,
          groups: [...u.groups],
          ...(u.key && u.name !== ADMIN_NAME ? { key: u.key.text } : {}),
        })),
    };
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fd = openSync(tmp, "w", 0o600);
    try {
      try {
        const data = Buffer.from(`${JSON.stringify(st, null, 1)}\n`);
        for (let off = 0; off < data.length; ) off += writeSync(fd, data, off);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.file);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
  }
}

/**
 * `-u`: add the node's Unix groups, and every Unix user with a readable `~/.ssh/id_rsa.pub` (or
 * `id_ed25519.pub`), with their uid, primary group and group memberships. Entries that clash with
 * the pool (same name or id) are skipped. Returns the names of the users added.
 */
export function importUnixUsers(
  db: UserDb,
  files: { passwd?: string; group?: string } = {},
  log?: { warn(o: object, msg?: string): void },
): string[] {
  const lines = (p: string) => {
    try {
      return readFileSync(p, "utf8")
        .split("\n")
        .filter((l) => l && !l.startsWith("#"));
    } catch {
      return [];
    }
  };
  const tryCmd = (tokens: string[]) => {
    try {
      db.command(tokens);
      return true;
    } catch (err) {
      log?.warn({ err: (err as Error).message, cmd: tokens[0], name: tokens[1] }, "unix import: skipped");
      return false;
    }
  };
  const groups = lines(files.group ?? "/etc/group").map((l) => l.split(":"));
  for (const g of groups) {
    if (g[0] && g[2] && /^\d+$/.test(g[2]) && !db.groups.has(g[0]) && !db.groupByGid(Number(g[2]))) {
      tryCmd(["group-add", g[0], g[2]]);
    }
  }
  const added: string[] = [];
  for (const l of lines(files.passwd ?? "/etc/passwd")) {
    const [name, , uid, gid, , home] = l.split(":");
    if (!name || !uid || !gid || !home || db.users.has(name) || db.byUid(Number(uid))) continue;
    const group = db.groupByGid(Number(gid));
    if (!group) continue;
    let key: string | undefined;
    for (const f of ["id_rsa.pub", "id_ed25519.pub"]) {
      try {
        key = readFileSync(join(home, ".ssh", f), "utf8").split("\n")[0];
        break;
      } catch {
        // next
      }
    }
    if (!key) continue;
    if (tryCmd(["user-add", name, uid, group.name, key])) added.push(name);
  }
  for (const g of groups) {
    for (const member of (g[3] ?? "").split(",").filter(Boolean)) {
      const u = db.users.get(member);
      if (u && g[0] && db.groups.has(g[0]) && !u.groups.has(g[0])) tryCmd(["user-add-group", member, g[0]]);
    }
  }
  return added;
}
