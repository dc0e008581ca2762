// Who a 9P user is on this host, and Unix-style permission checks for the passthrough backend.
//
// In "user" mode (the default when the server runs as root) every request is checked against the
// file's owner/group/other bits for the attached user, who must be named by n_uname or by a user
// name in /etc/passwd; unknown users get the "other" bits. A check passes only when EVERY
// requested bit is granted. uid 0 passes everything except execute on a file without any x bit.
// In "process" mode no check is made here: the operating system checks the server process.

import type { BigIntStats } from "node:fs";
import { NONUNAME } from "../codec/constants.js";
import { Ename, Errno, FsError } from "../errors.js";
import type { Identity } from "./backend.js";
import type { IdNames } from "./passthrough-stat.js";
import { S_IFDIR, S_IFMT, S_IFREG } from "./passthrough-stat.js";

export const R_OK = 4;
const S_ISUID = 0o4000;
const S_ISVTX = 0o1000;
const S_ISGID = 0o2000;
export const W_OK = 2;
export const X_OK = 1;

/** A resolved user: uid (undefined when unknown on this host) and group set. */
export interface Who {
  readonly uid: number | undefined;
  readonly gids: ReadonlySet<number>;
}

export type PermissionMode = "user" | "process";

/**
 * The set-ID bits a write or truncation by an unprivileged process clears (Linux
 * file_remove_privs): set-user-ID, and set-group-ID when the group may execute.
 */
export function setIdBits(mode: number): number {
  return (mode & S_ISUID) | ((mode & (S_ISGID | 0o010)) === (S_ISGID | 0o010) ? S_ISGID : 0);
}

export class Access {
  private readonly cache = new Map<string, { who: Who; at: number }>();

  constructor(
    readonly mode: PermissionMode,
    private readonly ids: IdNames,
    /** Every attached user acts as this uid (diod's -S); undefined: as who they say they are. */
    private readonly squashUid?: number,
  ) {}

  /** The host user behind a 9P identity (cached briefly). */
  who(user: Identity): Who {
    const key = `${user.n_uname}\0${user.uname}`;
    const now = Date.now();
    const hit = this.cache.get(key);
    if (hit && now - hit.at < 2000) return hit.who;
    const uid = this.squashUid ?? (user.n_uname !== NONUNAME ? user.n_uname : this.ids.uidOf(user.uname));
    const who: Who = { uid, gids: uid === undefined ? new Set() : this.ids.groupsOf(uid) };
    if (this.cache.size > 1000) this.cache.clear();
    this.cache.set(key, { who, at: now });
    return who;
  }

  /** Does `user` get every bit of `want` (R_OK|W_OK|X_OK) on a file with stat `st`? */
  permits(st: BigIntStats, user: Identity, want: number): boolean {
    if (this.mode === "process" || want === 0) return true;
    const who = this.who(user);
    const mode = Number(st.mode);
    if (who.uid === 0) {
      // root: everything, but executing a plain file still needs some execute bit
      if (want & X_OK && (mode & S_IFMT) !== S_IFDIR && (mode & 0o111) === 0) return false;
      return true;
    }
    let bits: number;
    if (who.uid !== undefined && BigInt(who.uid) === st.uid) bits = (mode >> 6) & 7;
    else if (who.gids.has(Number(st.gid))) bits = (mode >> 3) & 7;
    else bits = mode & 7;
    return (bits & want) === want;
  }

  /** Throws "permission denied" (EACCES) unless permits(). */
  check(st: BigIntStats, user: Identity, want: number): void {
    if (!this.permits(st, user, want)) throw new FsError(Ename.Perm, Errno.EACCES);
  }

  /** Is `user` the file's owner (or root)? Always true in process mode (the OS decides). */
  isOwner(st: BigIntStats, user: Identity): boolean {
    if (this.mode === "process") return true;
    const { uid } = this.who(user);
    return uid === 0 || (uid !== undefined && BigInt(uid) === st.uid);
  }

  /**
   * Must a write or truncation made for `user` clear the file's set-ID bits (setIdBits)? For
   * anyone but root, as the kernel does for a process without CAP_FSETID. A root server writes
   * with that capability, so it must do it itself; in process mode the OS does.
   */
  dropsSetId(user: Identity): boolean {
    return this.mode !== "process" && !this.isRoot(user);
  }

  /** Is `user` root? (In process mode: is the server process root.) */
  isRoot(user: Identity): boolean {
    if (this.mode === "process") return process.getuid?.() === 0;
    return this.who(user).uid === 0;
  }

  /** May `user` give a file the group `gid`? Root always; an owner only for its own groups. */
  mayChgrp(st: BigIntStats, user: Identity, gid: number): boolean {
    if (this.mode === "process") return true;
    const who = this.who(user);
    if (who.uid === 0) return true;
    return who.uid !== undefined && BigInt(who.uid) === st.uid && who.gids.has(gid);
  }

  /**
   * Throws "operation not permitted" (EPERM) unless `user` may remove or rename away an entry
   * owned by `entryUid` from the directory with stat `dirSt`: always, unless the directory is
   * sticky (mode 1000, like /tmp); then only root, the entry's owner or the directory's owner.
   */
  checkUnlink(dirSt: BigIntStats, entryUid: bigint, user: Identity): void {
    if (this.mode === "process" || !(Number(dirSt.mode) & S_ISVTX)) return;
    const { uid } = this.who(user);
    if (uid === 0 || (uid !== undefined && (BigInt(uid) === entryUid || BigInt(uid) === dirSt.uid))) return;
    throw new FsError("operation not permitted", Errno.EPERM);
  }

  /**
   * May `user` make a hard link to the file with stat `st`? As Linux's protected_hardlinks: root,
   * the file's owner, or a user who may read and write a plain file that is not set-user-ID or
   * set-group-ID-executable (else a link in a directory the user controls could keep a privileged
   * program, or another user's file, alive and reachable).
   */
  mayHardLink(st: BigIntStats, user: Identity): boolean {
    if (this.mode === "process" || this.isOwner(st, user)) return true;
    const mode = Number(st.mode);
    if ((mode & S_IFMT) !== S_IFREG) return false;
    if (mode & S_ISUID || (mode & (S_ISGID | 0o010)) === (S_ISGID | 0o010)) return false;
    return this.permits(st, user, R_OK | W_OK);
  }

  /**
   * May a new file made for `user` get the group `requested` (9P2000.L sends one)? Root, or a
   * member of it, as chgrp would allow. Always in process mode (the OS decides).
   */
  mayUseGroup(requested: number, user: Identity): boolean {
    if (this.mode === "process") return true;
    const who = this.who(user);
    return who.uid === 0 || who.gids.has(requested);
  }

  /**
   * The group a new file made for `user` gets when the client names none: the user's primary group,
   * as for a local process (undefined in process mode or for a user unknown here).
   */
  primaryGroup(user: Identity): number | undefined {
    if (this.mode === "process") return undefined;
    const { uid } = this.who(user);
    return uid === undefined ? undefined : this.ids.primaryGroupOf(uid);
  }

  /**
   * The mode `user` may give a file whose group is `gid` (anything but a directory): set-group-ID
   * only if the user is root or in that group, set-user-ID only if the file is theirs. The kernel
   * does the same for a process without CAP_FSETID; a root server doing the chmod for a user must
   * do it itself, or a user could make a program that runs with a group, or as an owner, that is
   * not theirs.
   */
  allowedMode(mode: number, gid: number, user: Identity, isDir: boolean): number {
    if (this.mode === "process" || isDir || !(mode & (S_ISUID | S_ISGID))) return mode;
    const who = this.who(user);
    if (who.uid === 0) return mode;
    let allowed = mode;
    // A user unknown on this host cannot own the file (it stays the server's): no set-user-ID.
    if (who.uid === undefined) allowed &= ~S_ISUID;
    if (!who.gids.has(gid)) allowed &= ~S_ISGID;
    return allowed;
  }

  /**
   * The owner new files should get, when the server runs as root in user mode and the user is
   * known on this host; undefined means "leave it to the OS" (the server process's uid).
   */
  ownerForNew(user: Identity): number | undefined {
    if (this.mode === "process" || process.getuid?.() !== 0) return undefined;
    return this.who(user).uid;
  }
}
