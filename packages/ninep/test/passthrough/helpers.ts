// Shared fixtures for the passthrough tests: temp trees and request contexts.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { type Dialect, NONUNAME } from "../../src/codec/constants.js";
import type { Node, OpenFile, RequestContext, SetAttr } from "../../src/server/backend.js";
import { type PassthroughOptions, passthrough } from "../../src/server/passthrough.js";

export function tempDir(prefix = "pt-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function ctx(dialect: Dialect, uname = "root", n_uname = NONUNAME): RequestContext {
  return {
    signal: new AbortController().signal,
    user: { uname, n_uname, aname: "" },
    dialect,
    msize: 65536,
    iounit: 65536 - 24,
    connection: { id: 1, remote: "test" },
  };
}

export async function attach(root: string, c: RequestContext, opts: PassthroughOptions = {}): Promise<Node> {
  const be = passthrough(root, opts);
  return be.attach({ ...c.user }, c);
}

/** Walks a slash-separated path one element at a time. */
export async function walk(node: Node, p: string, c: RequestContext): Promise<Node> {
  let cur = node;
  for (const part of p.split("/")) {
    if (part === "") continue;
    if (!cur.walk1) throw new Error("not walkable");
    cur = await cur.walk1(part, c);
  }
  return cur;
}

export async function readAll(f: OpenFile, c: RequestContext): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let off = 0n;
  for (;;) {
    const b = await f.read!(off, 8192, c);
    if (b.length === 0) break;
    parts.push(b);
    off += BigInt(b.length);
  }
  return Buffer.concat(parts);
}

/** A setattr request that changes nothing (valid 0, every value 0), with `a` laid over it. */
export const setattr = (a: Partial<SetAttr>): SetAttr => ({
  valid: 0,
  mode: 0,
  uid: 0,
  gid: 0,
  size: 0n,
  atime_sec: 0n,
  atime_nsec: 0n,
  mtime_sec: 0n,
  mtime_nsec: 0n,
  ...a,
});
