// initramfs building: a directory tree plus explicit entries (device nodes need no privilege),
// written as newc and optionally gzip-compressed, reproducibly (fixed mtime, uid, gid, order).
import { createWriteStream, lstatSync, readdirSync, readlinkSync } from "node:fs";
import { join, posix } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip, gzipSync, constants as zc } from "node:zlib";
import type { ResolvedNode } from "./cluster/resolve.js";
import { BootcfgError } from "./errors.js";
import { writeOutputWith } from "./files.js";
import { type CpioEntry, CpioWriter, writeCpio } from "./formats/cpio.js";

export interface TreeOptions {
  /** Keep files' own mtimes (default: every entry gets `mtime`, 0 unless set). */
  keepMtime?: boolean;
  mtime?: number;
  /** Keep files' uid/gid (default: 0:0). */
  keepOwner?: boolean;
}

/** Parses `dev/console:c:5:1[:0600]` (c = char, b = block, p = fifo) into an entry. */
export function parseDeviceSpec(spec: string): CpioEntry {
  const m = /^([^:]+):([cbp])(?::(\d+):(\d+))?(?::([0-7]{3,4}))?$/.exec(spec);
  if (!m || (m[2] !== "p" && m[3] === undefined))
    throw new BootcfgError(
      "EUSAGE",
      `bad device "${spec}": write PATH:c:MAJOR:MINOR[:MODE], PATH:b:MAJOR:MINOR or PATH:p`,
    );
  // Linux's initramfs unpacker makes the device number with MKDEV: 12 bits of major, 20 of minor
  // (a larger number, or one past newc's 32-bit fields, would name another device)
  const number = (text: string | undefined, what: string, max: number): number => {
    const n = Number(text ?? 0);
    if (n > max)
      throw new BootcfgError(
        "EUSAGE",
        `bad device "${spec}": ${what} ${text} is larger than ${max}, the largest Linux device ${what}`,
      );
    return n;
  };
  return {
    name: m[1]!.replace(/^\/+/, ""),
    type: m[2] === "c" ? "char" : m[2] === "b" ? "block" : "fifo",
    perm: m[5] ? Number.parseInt(m[5], 8) : 0o600,
    rdevMajor: number(m[3], "major", 0xfff),
    rdevMinor: number(m[4], "minor", 0xfffff),
  };
}

/** Entries for every parent directory of `path` not yet in `seen`. */
function parents(path: string, seen: Set<string>): CpioEntry[] {
  const out: CpioEntry[] = [];
  const parts = path.split("/").slice(0, -1);
  for (let i = 1; i <= parts.length; i++) {
    const d = parts.slice(0, i).join("/");
    if (d && !seen.has(d)) {
      seen.add(d);
      out.push({ name: d, type: "dir", perm: 0o755 });
    }
  }
  return out;
}

/**
 * Walks a directory tree in sorted order (parents first) and yields cpio entries; file data is
 * read when the entry is produced, so memory stays bounded by the largest file.
 */
export function* walkTree(root: string, opts: TreeOptions = {}, prefix = ""): Generator<CpioEntry> {
  const links = new Map<string, number>();
  // first pass: count hard links inside the tree
  const countLinks = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      if (st.isDirectory()) countLinks(p);
      else if (st.isFile() && st.nlink > 1)
        links.set(`${st.dev}:${st.ino}`, (links.get(`${st.dev}:${st.ino}`) ?? 0) + 1);
    }
  };
  countLinks(root);
  const meta = (st: ReturnType<typeof lstatSync>) => ({
    perm: Number(st!.mode) & 0o7777,
    ...(opts.keepMtime
      ? { mtime: Math.floor(Number(st!.mtimeMs) / 1000) }
      : opts.mtime !== undefined
        ? { mtime: opts.mtime }
        : {}),
    ...(opts.keepOwner ? { uid: Number(st!.uid), gid: Number(st!.gid) } : {}),
  });
  function* walk(dir: string, rel: string): Generator<CpioEntry> {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      const m = meta(st);
      if (st.isDirectory()) {
        yield { name: r, type: "dir", ...m };
        yield* walk(p, r);
      } else if (st.isSymbolicLink())
        yield { name: r, type: "symlink", ...m, perm: 0o777, data: readlinkSync(p) };
      else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const e: CpioEntry = { name: r, type: "file", ...m, source: p };
        if (links.has(key)) e.linkGroup = key;
        yield e;
      } else if (st.isCharacterDevice() || st.isBlockDevice())
        yield {
          name: r,
          type: st.isCharacterDevice() ? "char" : "block",
          ...m,
          rdevMajor: Math.floor(st.rdev / 256) & 0xfff,
          rdevMinor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00),
        };
      else if (st.isFIFO()) yield { name: r, type: "fifo", ...m };
      else if (st.isSocket()) yield { name: r, type: "socket", ...m };
    }
  }
  yield* walk(root, prefix);
}

export interface InitramfsSpec {
  /** Directory trees copied to the archive root, in order. */
  trees?: string[];
  /** Extra entries (device nodes, generated files) appended after the trees. */
  entries?: CpioEntry[];
  tree?: TreeOptions;
}

function* specEntries(spec: InitramfsSpec): Generator<CpioEntry> {
  const seen = new Set<string>();
  for (const t of spec.trees ?? []) {
    for (const e of walkTree(t, spec.tree)) {
      seen.add(e.name);
      yield e;
    }
  }
  for (const e of spec.entries ?? []) {
    // As in the overlay: "dev/../x" is "x", and "../../etc/x" cannot climb above the archive root
    // (no "..", "." or empty components reach the archive, where `cpio -i` would follow them).
    const name = posix.normalize(`/${e.name}`).replace(/^\/+/, "").replace(/\/+$/, "");
    if (name === "")
      throw new BootcfgError("EUSAGE", `"${e.name}": names the archive root, not a file in it`);
    for (const p of parents(name, seen)) yield p;
    seen.add(name);
    yield { ...e, name };
  }
}

/** Writes an initramfs to `out` (gzip unless `compress` is false). Returns the bytes written. */
export async function writeInitramfs(
  spec: InitramfsSpec,
  out: string,
  opts: { compress?: boolean; level?: number } = {},
): Promise<{ cpioBytes: number }> {
  const w = new CpioWriter({ mtime: spec.tree?.mtime ?? 0 });
  // hard links need their counts before the first entry (entries hold paths, not data)
  const all = [...specEntries(spec)];
  const counts = new Map<string, number>();
  for (const e of all) if (e.linkGroup) counts.set(e.linkGroup, (counts.get(e.linkGroup) ?? 0) + 1);
  for (const [g, n] of counts) w.declareLinks(g, n);
  function* chunks(): Generator<Uint8Array> {
    for (const e of all) {
      try {
        w.entry(e);
      } catch (err) {
        // A file it could not read (permissions, gone since the listing): named as an input.
        const code = (err as NodeJS.ErrnoException).code;
        if (e.source === undefined || !code) throw err;
        throw new BootcfgError("EIO", `${e.source}: cannot read it (${code}); nothing was written`, {
          cause: err,
        });
      }
      yield* w.drain();
    }
    yield* w.end();
  }
  await writeOutputWith(out, async (file) => {
    const source = Readable.from(chunks(), { objectMode: false });
    const sink = createWriteStream(file);
    if (opts.compress === false) await pipeline(source, sink);
    else
      await pipeline(
        source,
        createGzip({ level: opts.level ?? 6, memLevel: 9, strategy: zc.Z_DEFAULT_STRATEGY }),
        sink,
      );
  });
  return { cpioBytes: w.size };
}

/** Builds an initramfs in memory. */
export function buildInitramfs(
  spec: InitramfsSpec,
  opts: { compress?: boolean; level?: number } = {},
): Buffer {
  const all = [...specEntries(spec)];
  const cpio = writeCpio(all, { mtime: spec.tree?.mtime ?? 0 });
  return opts.compress === false ? cpio : gzipSync(cpio, { level: opts.level ?? 6 });
}

/** What `/etc/bootcfg/node.json` holds inside every node's overlay. */
export function nodeIdentity(node: ResolvedNode): Record<string, unknown> {
  return {
    node: node.name,
    arch: node.arch,
    ...(node.ip ? { ip: node.ip } : {}),
    ...(node.mac ? { mac: node.mac } : {}),
    profiles: node.profiles,
    cmdline: node.cmdline.join(" "),
  };
}

/**
 * The per-node overlay: an uncompressed newc archive with `/etc/bootcfg/node.json` and the
 * node's overlay files (templates already rendered), to append after the shared base initrd.
 */
export function buildOverlay(node: ResolvedNode): Buffer {
  const seen = new Set<string>();
  const entries: CpioEntry[] = [];
  const files: Array<[string, string]> = [
    ["/etc/bootcfg/node.json", `${JSON.stringify(nodeIdentity(node), null, 2)}\n`],
    ...Object.entries(node.overlay).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  ];
  for (const [path, content] of files) {
    const name = posix.normalize(path).replace(/^\/+/, "");
    entries.push(...parents(name, seen));
    seen.add(name);
    entries.push({ name, type: "file", perm: 0o644, data: content });
  }
  return writeCpio(entries);
}
