// Facts about every referenced file, gathered once: size, SHA-256 and (for kernels) the decoded
// header. Hashes are computed in 1 MiB chunks, so a large initrd is never held in memory.
import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { BootcfgError } from "./errors.js";
import { decodeWithTool } from "./formats/compress.js";
import { splitInitramfs } from "./formats/initramfs.js";
import { type Inspection, inspectBuffer } from "./inspect.js";
import { sha256 } from "./util.js";

export interface FileFacts {
  path: string;
  size: number;
  sha256: string;
}

function ioError(path: string, err: unknown): BootcfgError {
  const e = err as NodeJS.ErrnoException;
  const msg = e.code === "ENOENT" ? "no such file" : e.code === "EISDIR" ? "is a directory" : e.message;
  return new BootcfgError("EIO", `${path}: ${msg}`, { cause: err });
}

/**
 * Where an output goes: a temporary file beside the target, renamed over it once complete, so that
 * a full disk or any other failure leaves the previous file as it was (and no temporary behind).
 * A symbolic link is followed (its target is replaced); a device or FIFO (`-o /dev/stdout`) is
 * written directly (no `tmp`).
 */
function outputPlan(path: string): { target: string; tmp?: string } {
  const st = statSync(path, { throwIfNoEntry: false });
  if (st && !st.isFile()) return { target: path };
  const target = st ? realpathSync(path) : path;
  return { target, tmp: join(dirname(target), `.${basename(target)}.${process.pid}.tmp`) };
}

function outputError(
  path: string,
  err: unknown,
  tmp: string | undefined,
  outcome = "it is left as it was",
): BootcfgError {
  if (tmp) rmSync(tmp, { force: true });
  const e = err as NodeJS.ErrnoException;
  const why = e.code === "ENOSPC" ? "no space left on device" : (e.code ?? e.message);
  return new BootcfgError("EIO", `${path}: cannot write it (${why}); ${outcome}`, { cause: err });
}

/** Names of standard output: such an output is written to descriptor 1 as it is. */
export const STDOUT_NAMES: ReadonlySet<string> = new Set(["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]);
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes all of `data` to standard output's descriptor, waiting while a pipe or socket that Node
 * made non-blocking is full. (Opening /dev/stdout fails with ENXIO when it is a socket, which is
 * what a Node parent's `spawn` gives its child.)
 */
function writeStdout(data: Uint8Array): void {
  for (let off = 0; off < data.length; ) {
    try {
      off += writeSync(1, data, off, Math.min(data.length - off, 1 << 20));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      Atomics.wait(PAUSE, 0, 0, 5);
    }
  }
}

/** Writes an output file whole or not at all (see outputPlan). */
export function writeOutput(path: string, data: string | Uint8Array, mode?: number): void {
  if (STDOUT_NAMES.has(path)) {
    try {
      writeStdout(typeof data === "string" ? Buffer.from(data) : data);
    } catch (err) {
      throw outputError(path, err, undefined, "the output was cut short");
    }
    return;
  }
  let plan: { target: string; tmp?: string } | undefined;
  try {
    plan = outputPlan(path);
    writeFileSync(plan.tmp ?? plan.target, data, mode === undefined ? undefined : { mode });
    if (plan.tmp) renameSync(plan.tmp, plan.target);
  } catch (err) {
    if (err instanceof BootcfgError) {
      // An input that could not be read: the output is left as it was, the input named.
      if (plan?.tmp) rmSync(plan.tmp, { force: true });
      throw err;
    }
    throw outputError(path, err, plan?.tmp);
  }
}

/** Like writeOutput, for data that `write` streams into the file it is given. */
export async function writeOutputWith(path: string, write: (file: string) => Promise<void>): Promise<void> {
  if (STDOUT_NAMES.has(path)) {
    // written whole into a private directory first, then copied to standard output
    const dir = mkdtempSync(join(tmpdir(), "bootcfg-out-"));
    try {
      await write(join(dir, "out"));
      const fd = openSync(join(dir, "out"), "r");
      try {
        const buf = Buffer.alloc(1 << 20);
        for (let n: number; (n = readSync(fd, buf, 0, buf.length, null)) > 0; )
          writeStdout(buf.subarray(0, n));
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      // An input that could not be read is that input's error, not the output's.
      if (err instanceof BootcfgError) throw err;
      throw outputError(path, err, undefined, "the output was cut short");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return;
  }
  let plan: { target: string; tmp?: string } | undefined;
  try {
    plan = outputPlan(path);
    await write(plan.tmp ?? plan.target);
    if (plan.tmp) renameSync(plan.tmp, plan.target);
  } catch (err) {
    if (err instanceof BootcfgError) {
      // An input that could not be read: the output is left as it was, the input named.
      if (plan?.tmp) rmSync(plan.tmp, { force: true });
      throw err;
    }
    throw outputError(path, err, plan?.tmp);
  }
}

/**
 * Outputs that change together (`render`, `pxe`, `ipxe`, `coreboot -o`): each file is staged in a
 * temporary file beside its target and nothing is renamed into place until `commit()`, so a full
 * disk, or a node whose plan fails half-way through, leaves every previous output as it was instead
 * of a mix of old and new files. `abort()` removes the temporary files and the directories the
 * batch created (when they are still empty).
 */
export class OutputBatch {
  private readonly staged = new Map<string, { path: string; tmp: string }>();
  private readonly dirs: string[] = [];

  /** Creates `dir` (and its parents); the ones that did not exist are removed again on abort. */
  mkdir(dir: string): void {
    let first: string | undefined;
    try {
      first = mkdirSync(dir, { recursive: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST" || code === "ENOTDIR")
        throw new BootcfgError(
          "EIO",
          `${dir}: not a directory (${code === "EEXIST" ? "a file of that name exists" : "a part of the path is a file"}); -o names the directory to write into`,
          { cause: err },
        );
      throw err;
    }
    if (first) this.dirs.push(first);
  }

  /** Stages `data` for `path` (a device or FIFO is written at once: there is nothing to keep). */
  write(path: string, data: string | Uint8Array, mode?: number): void {
    let plan: { target: string; tmp?: string } | undefined;
    try {
      plan = outputPlan(path);
      writeFileSync(plan.tmp ?? plan.target, data, mode === undefined ? undefined : { mode });
      if (plan.tmp) this.staged.set(plan.target, { path, tmp: plan.tmp });
    } catch (err) {
      const e = outputError(path, err, plan?.tmp, "no output was changed");
      this.abort();
      throw e;
    }
  }

  /** Renames every staged file into place. */
  commit(): void {
    for (const [target, { path, tmp }] of this.staged) {
      try {
        renameSync(tmp, target);
        this.staged.delete(target);
      } catch (err) {
        this.abort();
        throw outputError(path, err, undefined);
      }
    }
    this.dirs.length = 0;
  }

  /** Drops every staged file and the directories this batch made, if empty. */
  abort(): void {
    for (const { tmp } of this.staged.values()) rmSync(tmp, { force: true });
    this.staged.clear();
    for (const d of this.dirs.reverse()) removeEmptyTree(d);
    this.dirs.length = 0;
  }
}

/** Removes `dir` and its subdirectories if they hold no files. */
function removeEmptyTree(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e);
    if (statSync(p, { throwIfNoEntry: false })?.isDirectory()) removeEmptyTree(p);
  }
  try {
    rmdirSync(dir);
  } catch {}
}

/** Runs `fill` against a new batch; commits if it returns, aborts if it throws. */
export function withOutputs<T>(fill: (batch: OutputBatch) => T): T {
  const batch = new OutputBatch();
  let result: T;
  try {
    result = fill(batch);
  } catch (err) {
    batch.abort();
    throw err;
  }
  batch.commit();
  return result;
}

/** Feeds a file into `hash` in chunks; returns its size. */
export function hashFileInto(path: string, hash: Hash): number {
  let fd: number;
  try {
    fd = openSync(path, "r");
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      throw Object.assign(new Error("not a regular file"), { code: "EISDIR" });
    }
  } catch (err) {
    throw ioError(path, err);
  }
  const buf = Buffer.allocUnsafe(1 << 20);
  let size = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      size += n;
    }
  } finally {
    closeSync(fd);
  }
  return size;
}

export class FileCache {
  private readonly facts = new Map<string, FileFacts>();
  private readonly kernels = new Map<string, Inspection>();
  private readonly initrds = new Map<string, { unverified: string[] } | { error: BootcfgError }>();

  /** Size and hash of a file; throws EIO naming the file when it cannot be read. */
  stat(path: string): FileFacts {
    let f = this.facts.get(path);
    if (!f) {
      const h = createHash("sha256");
      const size = hashFileInto(path, h);
      f = { path, size, sha256: h.digest("hex") };
      this.facts.set(path, f);
    }
    return f;
  }

  /** The whole file (not cached). */
  read(path: string): Buffer {
    try {
      return readFileSync(path);
    } catch (err) {
      throw ioError(path, err);
    }
  }

  /**
   * The whole of a regular file (EIO for anything else, as stat() says it), keeping its size and
   * hash so that a later stat() does not read it again.
   */
  private readRegular(path: string): Buffer {
    let fd: number | undefined;
    let buf: Buffer;
    try {
      fd = openSync(path, "r");
      if (!fstatSync(fd).isFile()) throw Object.assign(new Error("not a regular file"), { code: "EISDIR" });
      buf = readFileSync(fd);
    } catch (err) {
      throw ioError(path, err);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    if (!this.facts.has(path)) this.facts.set(path, { path, size: buf.length, sha256: sha256(buf) });
    return buf;
  }

  /**
   * Whether an initrd is something the kernel can unpack (see splitInitramfs): throws a
   * BootcfgError naming the file, the offset and the problem; returns what could not be verified
   * (a compressed member whose decoder is not installed). Read and decoded once per path; the
   * read also gives stat() its facts.
   */
  initramfs(path: string): { unverified: string[] } {
    let v = this.initrds.get(path);
    if (!v) {
      try {
        const members = splitInitramfs(this.readRegular(path), path, { decode: decodeWithTool });
        v = {
          unverified: members.flatMap((m) =>
            m.unverified
              ? [`${path}: ${m.compression} member at offset ${m.offset} not verified: ${m.unverified}`]
              : [],
          ),
        };
      } catch (err) {
        if (!(err instanceof BootcfgError)) throw err;
        v = { error: err };
      }
      this.initrds.set(path, v);
    }
    if ("error" in v) throw v.error;
    return v;
  }

  /** The decoded kernel header (any format inspect knows); the file's bytes are not kept. */
  inspect(path: string): Inspection {
    let i = this.kernels.get(path);
    if (!i) {
      const parsed: Inspection = { file: path, ...inspectBuffer(this.read(path), path) };
      // keep only small decoded values: ELF note payloads are copied out of the file buffer
      if (parsed.format === "elf")
        parsed.notes = parsed.notes.map((n) => ({ ...n, desc: Uint8Array.from(n.desc) }));
      i = parsed;
      this.kernels.set(path, i);
      this.facts.set(path, { path, size: i.size, sha256: i.sha256 });
    }
    return i;
  }
}
