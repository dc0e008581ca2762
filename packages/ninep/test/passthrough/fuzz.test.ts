// Random operation sequences with hostile names and arguments against the passthrough backend:
// every failure must be an FsError or a Node system error (what the server maps to an errno),
// never a TypeError or a crash, and nothing outside the exported root may change.

import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Dialect,
  DMDIR,
  DMLINK,
  DMSYMLINK,
  ORCLOSE,
  ORDWR,
  OREAD,
  OTRUNC,
  OWRITE,
} from "../../src/codec/constants.js";
import { FsError } from "../../src/errors.js";
import type { Node, OpenFile } from "../../src/server/backend.js";
import { prng } from "../helpers/prng.js";
import { attach, ctx, tempDir } from "./helpers.js";

const NAMES = [
  "a",
  "b",
  "dir",
  "..",
  ".",
  "",
  "/",
  "a/b",
  "../outside",
  "/etc/passwd",
  "x\0y",
  "lnk",
  "é",
  "n".repeat(300),
];
const TARGETS = ["a", "../outside", "/etc", "/", "dir/../..", "lnk", "", "x\0y"];

let tmp: ReturnType<typeof tempDir>;
let root: string;
let sentinel: string;

function snapshotOutside(): string {
  const entries = fs.readdirSync(tmp.dir).filter((n) => n !== "root");
  return JSON.stringify(
    entries.map((n) => [
      n,
      fs.lstatSync(path.join(tmp.dir, n)).mtimeMs,
      fs.readFileSync(path.join(tmp.dir, n), "utf8"),
    ]),
  );
}

beforeAll(() => {
  tmp = tempDir("pt-fuzz-");
  root = path.join(tmp.dir, "root");
  fs.mkdirSync(root);
  sentinel = path.join(tmp.dir, "outside");
  fs.writeFileSync(sentinel, "must not change");
  fs.symlinkSync("../outside", path.join(root, "lnk"));
});
afterAll(() => tmp.cleanup());

for (const dialect of [Dialect.P2000, Dialect.P2000u, Dialect.P2000L]) {
  describe(`fuzz (${dialect})`, () => {
    it("2000 random operations: only file-system errors, nothing outside the root changes", async () => {
      const before = snapshotOutside();
      const rnd = prng(dialect.length * 7919);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const c = ctx(dialect);
      const r = await attach(root, c);
      const nodes: Node[] = [r];
      const files: OpenFile[] = [];
      const unexpected: string[] = [];
      let okCount = 0;
      const ops: (() => Promise<unknown>)[] = [
        async () => nodes.push(await pick(nodes).walk1!(pick(NAMES), c)),
        () => pick(nodes).stat(c),
        async () =>
          files.push(
            await pick(nodes).open!(pick([OREAD, OWRITE, ORDWR, OREAD | OTRUNC, ORDWR | ORCLOSE, 3]), c),
          ),
        async () => {
          const perm = pick([
            0o644,
            (DMDIR | 0o755) >>> 0,
            (DMSYMLINK | 0o777) >>> 0,
            (DMLINK | 0o644) >>> 0,
          ]);
          const made = await pick(nodes).create!(
            {
              name: pick(NAMES),
              perm,
              mode: pick([OREAD, ORDWR]),
              extension: pick(TARGETS),
              linkTarget: pick(nodes),
            },
            c,
          );
          nodes.push(made.node);
          files.push(made.file);
        },
        () => pick(nodes).remove!(c),
        () =>
          pick(nodes).wstat!(
            pick([
              { name: pick(NAMES) },
              { length: BigInt(Math.floor(rnd() * 100)) },
              { mode: 0o600 },
              { mtime: 5 },
              { gid: pick(NAMES) },
            ]),
            c,
          ),
        async () => pick(nodes).getattr!(0x3fffn, c),
        () =>
          pick(nodes).setattr!(
            {
              valid: Math.floor(rnd() * 0x200),
              mode: 0o640,
              uid: 0,
              gid: 0,
              size: BigInt(Math.floor(rnd() * 50)),
              atime_sec: 1n,
              atime_nsec: 2n,
              mtime_sec: 3n,
              mtime_nsec: 4n,
            },
            c,
          ),
        async () => files.push(await pick(nodes).lopen!(Math.floor(rnd() * 0o4000000), c)),
        async () => {
          const made = await pick(nodes).lcreate!(
            pick(NAMES),
            Math.floor(rnd() * 0o4000),
            0o644,
            0xffffffff,
            c,
          );
          nodes.push(made.node);
          files.push(made.file);
        },
        async () => nodes.push(await pick(nodes).mkdir!(pick(NAMES), 0o755, 0xffffffff, c)),
        async () => nodes.push(await pick(nodes).symlink!(pick(NAMES), pick(TARGETS), 0xffffffff, c)),
        () => pick(nodes).link!(pick(nodes), pick(NAMES), c),
        () => pick(nodes).rename!(pick(nodes), pick(NAMES), c),
        () => pick(nodes).renameat!(pick(NAMES), pick(nodes), pick(NAMES), c),
        () => pick(nodes).unlinkat!(pick(NAMES), pick([0, 0x200]), c),
        () => pick(nodes).readlink!(c),
        () => pick(nodes).statfs!(c),
        () => pick(nodes).sync!(c),
        async () => {
          const f = pick(files);
          if (f?.read)
            await f.read(
              BigInt(Math.floor(rnd() * 2 ** 20)) * pick([1n, 2n ** 40n]),
              Math.floor(rnd() * 70000),
              c,
            );
        },
        async () => {
          const f = pick(files);
          if (f?.write)
            await f.write(BigInt(Math.floor(rnd() * 1000)), Buffer.alloc(Math.floor(rnd() * 5000), 1), c);
        },
        async () => {
          const f = pick(files);
          if (f?.readdir) await f.readdir(BigInt(Math.floor(rnd() * 10)), Math.floor(rnd() * 300), c);
          if (f?.list) await f.list(c);
        },
        async () => {
          const i = Math.floor(rnd() * files.length);
          const f = files[i];
          if (f) {
            files.splice(i, 1);
            await f.clunk?.(c);
          }
        },
      ];
      for (let i = 0; i < 2000; i++) {
        const op = pick(ops);
        try {
          await op();
          okCount++;
        } catch (e) {
          const ok = e instanceof FsError || typeof (e as { code?: unknown }).code === "string";
          if (!ok) unexpected.push(`op ${i}: ${(e as Error).stack ?? e}`);
        }
        if (nodes.length > 200) nodes.splice(1, 100);
      }
      for (const f of files) await f.clunk?.(c);
      expect(unexpected).toEqual([]);
      // The sequence did real work (about a third of the operations succeed).
      expect(okCount).toBeGreaterThan(300);
      expect(snapshotOutside()).toBe(before);
      expect(fs.readFileSync(sentinel, "utf8")).toBe("must not change");
    });
  });
}
