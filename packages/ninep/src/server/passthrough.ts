// passthrough(root, opts): a Backend that exports a real local directory over 9P2000, 9P2000.u and
// 9P2000.L, read-write or read-only, without ever giving access outside `root`.
// See passthrough-path.ts for the containment rules and README.md ("Passthrough") for behaviour.

import { lstatSync } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { Dialect } from "../codec/constants.js";
import { Errno, FsError } from "../errors.js";
import type { AttachRequest, Backend, Node, RequestContext } from "./backend.js";
import { Access, type PermissionMode } from "./passthrough-access.js";
import { isUnix, PtFile, type PtShared } from "./passthrough-node.js";
import { LockTable } from "./passthrough-open.js";
import { ExportRoot, ROOT_NODE, walkOne } from "./passthrough-path.js";
import { IdNames, QidMapper } from "./passthrough-stat.js";

export interface PassthroughOptions {
  /** Refuse every change with EROFS / "read-only file system". Default false. */
  readOnly?: boolean;
  /**
   * Who is checked against file permissions: "user" = the attached user (n_uname, or the uname
   * looked up in /etc/passwd; unknown users get the "other" bits), "process" = nobody here, the
   * OS checks the server process. Default: "user" when the server runs as root, else "process".
   */
  permissions?: PermissionMode;
  /**
   * 9P2000 (plain) has no symbolic links: follow links whose target stays inside the root during
   * walks and directory reads, so they look like the files they point to. Default true.
   * 9P2000.u and .L clients always see links as links.
   */
  followSymlinks?: boolean;
  /**
   * Reads of regular files, and the lstat (below the root also the realpath check) behind stat,
   * getattr and setattr, run synchronously on the event loop instead of through libuv's thread
   * pool. On a local file system whose data is cached that takes microseconds, where a thread-pool
   * round trip per request costs several wake-ups: it is what makes small requests and bulk reads
   * fast. The walks, opens, creates (with their ownership and mode changes), the fstat after
   * writes and the close at clunk are synchronous too. On a slow or network file system a call
   * that waits would stall every connection: set false there. Data writes always go through the
   * thread pool (a write can wait for the disk when dirty pages are throttled). Default true.
   */
  syncIo?: boolean;
  /**
   * Tcreate gives a new file or directory exactly the permission bits asked for (as open(2) and
   * mkdir(2) without a umask would), instead of masking them with the directory's bits (the 9P
   * rule: a file gets perm & (~0666 | dir's bits), a directory perm & (~0777 | dir's bits)).
   * Default false.
   */
  exactMode?: boolean;
  /**
   * Every attached user acts as this host uid, whoever they say they are (diod's -S, "squash"):
   * permissions are checked, and files made are owned, as that user. Without authentication an
   * attach's uid is otherwise taken on trust (a Linux mount's writeback fid attaches as uid 0).
   * Only meaningful with permissions "user" (a server running as root). Default: none.
   */
  squashUid?: number;
  /** Alternative passwd/group files for names (tests). */
  passwdFile?: string;
  groupFile?: string;
  /** Dialects offered. Default all three. */
  dialects?: readonly Dialect[];
}

export interface PassthroughBackend extends Backend {
  /** Canonical host path of the exported root. */
  readonly rootPath: string;
  readonly readOnly: boolean;
}

/**
 * Exports the directory `root`. The directory is resolved once (realpath) when the first attach
 * arrives; the promise returned by `ready()` rejects early if it does not exist.
 *
 * @example
 * const server = new Server(passthrough("/srv/export", { readOnly: true }));
 */
export function passthrough(
  root: string,
  opts: PassthroughOptions = {},
): PassthroughBackend & {
  ready(): Promise<void>;
} {
  let shared: Promise<PtShared> | undefined;
  let rootPath = root;
  const getShared = () => {
    shared ??= (async () => {
      const syncIo = opts.syncIo ?? true;
      const er = await ExportRoot.open(root, syncIo);
      rootPath = er.real;
      const ids = new IdNames(opts.passwdFile, opts.groupFile);
      const mode: PermissionMode = opts.permissions ?? (process.getuid?.() === 0 ? "user" : "process");
      return {
        root: er,
        qids: new QidMapper(er.st.dev),
        ids,
        access: new Access(mode, ids, opts.squashUid),
        readOnly: opts.readOnly ?? false,
        locks: new LockTable(),
        followLinks9P: opts.followSymlinks ?? true,
        syncIo,
        exactMode: opts.exactMode ?? false,
        held: new Set(),
      };
    })();
    // A root that is missing now may appear later: do not keep the failure.
    shared.catch(() => {
      shared = undefined;
    });
    return shared;
  };

  return {
    dialects: opts.dialects ?? [Dialect.P2000, Dialect.P2000u, Dialect.P2000L],
    get rootPath() {
      return rootPath;
    },
    readOnly: opts.readOnly ?? false,
    async ready() {
      await getShared();
    },
    async attach(req: AttachRequest, ctx: RequestContext): Promise<Node> {
      const sh = await getShared();
      const unix = isUnix(ctx);
      const st = sh.syncIo
        ? lstatSync(sh.root.real, { bigint: true })
        : await fsp.lstat(sh.root.real, { bigint: true });
      let node = new PtFile(sh, ROOT_NODE, st, unix);
      // aname selects a directory inside the export: "" and "/" (and the export's own host path,
      // as diod clients send it) mean the root; other names are walked without following links.
      let aname = req.aname;
      if (aname === sh.root.real || aname === root) aname = "";
      else {
        // A host path below the export (a diod client mounting a subdirectory) is walked from it.
        for (const prefix of new Set([sh.root.real, path.resolve(root)])) {
          if (prefix !== "/" && aname.startsWith(`${prefix}/`)) {
            aname = aname.slice(prefix.length + 1);
            break;
          }
        }
      }
      for (const part of aname.split("/")) {
        if (part === "" || part === ".") continue;
        if (part === "..") throw new FsError("aname may not contain '..'", Errno.EACCES);
        const next = await walkOne(sh.root, node.node, part, false);
        node = await node.child(next);
        if (!node.isDir) throw new FsError("aname is not a directory", Errno.ENOTDIR);
        sh.access.check(node.st, req, 1);
      }
      return node;
    },
  };
}
