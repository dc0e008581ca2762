// Facts about every referenced file, gathered once: size, SHA-256 and (for kernels) the decoded
// header. Hashes are computed in 1 MiB chunks, so a large initrd is never held in memory.
import { createHash, type Hash } from "node:crypto";
import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { BootcfgError } from "./errors.js";
import { type Inspection, inspectBuffer } from "./inspect.js";

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
