// cpio "newc" (070701) archives, the initramfs format: writer and reader.
// Every header is 110 ASCII bytes of 8-digit hex fields; name and data are padded to 4 bytes.
import { readFileSync } from "node:fs";
import { formatError } from "../errors.js";

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;

export type CpioEntryType = "dir" | "file" | "symlink" | "char" | "block" | "fifo" | "socket";

const TYPE_BITS: Record<CpioEntryType, number> = {
  dir: S_IFDIR,
  file: S_IFREG,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
  socket: S_IFSOCK,
};

export interface CpioEntry {
  /** Path inside the archive, without a leading "/" (e.g. "dev/console"). */
  name: string;
  type: CpioEntryType;
  /** Permission bits (0o755); the type bits come from `type`. */
  perm: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  /** File contents, or the symlink target. */
  data?: Uint8Array | string;
  /** A file to read the contents from when the entry is written (instead of `data`). */
  source?: string;
  /** Device numbers for char/block nodes. */
  rdevMajor?: number;
  rdevMinor?: number;
  /** For hard links: entries with the same `linkGroup` share an inode; data is stored once, on the last. */
  linkGroup?: string;
}

export interface CpioWriteOptions {
  /** mtime for entries that do not set one (default 0, for reproducible output). */
  mtime?: number;
  /** First inode number (default 1); inodes are assigned in order. */
  firstInode?: number;
}

const HEX = Buffer.from("0123456789abcdef", "latin1");

/** Writes `n` as 8 lower-case hex digits at `at` (no string allocation: headers are hot). */
function putHex8(out: Buffer, at: number, n: number): void {
  let v = n >>> 0;
  for (let i = 7; i >= 0; i--) {
    out[at + i] = HEX[v & 15]!;
    v >>>= 4;
  }
}

const ZEROS = new Uint8Array(4);

const NEWC_FIELDS = [
  "inode",
  "mode",
  "uid",
  "gid",
  "nlink",
  "mtime",
  "file size",
  "devmajor",
  "devminor",
  "rdevmajor",
  "rdevminor",
  "namesize",
  "check",
];

/** The numeric fields of a newc header besides the mode. */
export interface NewcFields {
  ino: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
}

/**
 * Encodes one newc header + name + padding. `pos` is the archive offset of the header (the
 * padding is relative to the archive start, which is a multiple of 4 for all our writers).
 */
export function newcHeader(name: string, mode: number, f: NewcFields): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  const namesize = nameBytes.length + 1;
  const headLen = 110 + namesize;
  const padded = (headLen + 3) & ~3;
  const out = Buffer.alloc(padded);
  out.write("070701", 0, "latin1");
  const fields = [
    f.ino,
    mode,
    f.uid,
    f.gid,
    f.nlink,
    f.mtime,
    f.size,
    0,
    0,
    f.rdevMajor,
    f.rdevMinor,
    namesize,
    0,
  ];
  for (let i = 0; i < 13; i++) {
    const v = fields[i]!;
    // 8 hex digits: a larger value would be stored cut to its low 32 bits
    if (!(v >= 0 && v <= 0xffffffff && Number.isInteger(v)))
      throw formatError(`cpio entry "${name}"`, `${NEWC_FIELDS[i]} ${v} does not fit newc's 32-bit field`);
    putHex8(out, 6 + i * 8, v);
  }
  nameBytes.copy(out, 110);
  return out;
}

/** Streaming-friendly newc writer: call `entry()` for each entry and `end()` once. */
export class CpioWriter {
  private ino: number;
  private readonly mtime: number;
  private readonly chunks: Uint8Array[] = [];
  private length = 0;
  private readonly linkInodes = new Map<string, { ino: number; remaining: number }>();
  private readonly linkCounts = new Map<string, number>();

  constructor(opts: CpioWriteOptions = {}) {
    this.ino = opts.firstInode ?? 1;
    this.mtime = opts.mtime ?? 0;
  }

  /** Declares how many names a hard-link group will have (needed before its first entry). */
  declareLinks(group: string, count: number): void {
    this.linkCounts.set(group, count);
  }

  entry(e: CpioEntry): void {
    const data =
      typeof e.data === "string"
        ? Buffer.from(e.data, "utf8")
        : (e.data ?? (e.source !== undefined ? readFileSync(e.source) : ZEROS.subarray(0, 0)));
    let ino: number;
    let nlink = e.type === "dir" ? 2 : 1;
    let body = data;
    if (e.linkGroup !== undefined && e.type === "file") {
      let g = this.linkInodes.get(e.linkGroup);
      if (!g) {
        g = { ino: this.ino++, remaining: this.linkCounts.get(e.linkGroup) ?? 1 };
        this.linkInodes.set(e.linkGroup, g);
      }
      ino = g.ino;
      nlink = this.linkCounts.get(e.linkGroup) ?? 1;
      g.remaining--;
      if (g.remaining > 0) body = ZEROS.subarray(0, 0); // data only on the last link
    } else {
      ino = this.ino++;
    }
    const name = e.name.replace(/^\/+/, "") || ".";
    const mode = TYPE_BITS[e.type] | (e.perm & 0o7777);
    this.push(
      newcHeader(name, mode, {
        ino,
        uid: e.uid ?? 0,
        gid: e.gid ?? 0,
        nlink,
        mtime: e.mtime ?? this.mtime,
        size: body.length,
        rdevMajor: e.rdevMajor ?? 0,
        rdevMinor: e.rdevMinor ?? 0,
      }),
    );
    if (body.length) {
      this.push(body);
      const pad = (4 - (body.length & 3)) & 3;
      if (pad) this.push(ZEROS.subarray(0, pad));
    }
  }

  /** Takes the bytes written so far (for streaming to a compressor). */
  drain(): Uint8Array[] {
    return this.chunks.splice(0, this.chunks.length);
  }

  /** Writes the trailer and returns everything not yet drained. */
  end(): Uint8Array[] {
    this.push(
      newcHeader("TRAILER!!!", 0, {
        ino: 0,
        uid: 0,
        gid: 0,
        nlink: 1,
        mtime: 0,
        size: 0,
        rdevMajor: 0,
        rdevMinor: 0,
      }),
    );
    return this.drain();
  }

  get size(): number {
    return this.length;
  }

  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.length += b.length;
  }
}

/** Builds a complete archive in memory. */
export function writeCpio(entries: readonly CpioEntry[], opts: CpioWriteOptions = {}): Buffer {
  const w = new CpioWriter(opts);
  const counts = new Map<string, number>();
  for (const e of entries)
    if (e.linkGroup !== undefined) counts.set(e.linkGroup, (counts.get(e.linkGroup) ?? 0) + 1);
  for (const [g, n] of counts) w.declareLinks(g, n);
  for (const e of entries) w.entry(e);
  return Buffer.concat(w.end());
}

export interface CpioListEntry extends NewcFields {
  name: string;
  mode: number;
  type: CpioEntryType;
  perm: number;
  /** Offset of the data in the (decompressed) archive. */
  dataOffset: number;
  /** Index of the archive in a concatenation (0 for the first). */
  archive: number;
}

function typeOf(mode: number): CpioEntryType {
  for (const [t, bits] of Object.entries(TYPE_BITS)) if ((mode & S_IFMT) === bits) return t as CpioEntryType;
  return "file";
}

/**
 * Lists the entries of one or several concatenated newc archives (NUL padding between them is
 * skipped, as the kernel does). Stops at the end of input or at bytes that are not a newc header
 * (returning where it stopped, so callers can look for a compressed member there). An archive cut
 * short is an error: a header cut in the middle, or entries with no `TRAILER!!!` after them.
 */
export function readCpio(buf: Uint8Array, what = "cpio archive"): { entries: CpioListEntry[]; end: number } {
  const entries: CpioListEntry[] = [];
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  let archive = 0;
  /** Entries read since the last trailer (an archive still open). */
  let open = 0;
  for (;;) {
    while (pos < buf.length && buf[pos] === 0) pos++;
    // The kernel skips NULs between entries and archives one by one, but what follows them must
    // start on a 4-byte boundary ("broken padding" otherwise).
    if (pos < buf.length && pos & 3)
      throw formatError(what, `broken padding: data resumes at offset ${pos}, not on a 4-byte boundary`);
    const magic = text.toString("latin1", pos, Math.min(pos + 6, buf.length));
    const isMagic = magic === "070701" || magic === "070702";
    if (pos + 110 > buf.length) {
      if (pos < buf.length && (isMagic || (open > 0 && "070701".startsWith(magic))))
        throw formatError(what, `truncated header at offset ${pos} (${buf.length - pos} of 110 bytes)`);
      break;
    }
    if (!isMagic) break;
    const field = (i: number) => {
      const s = text.toString("latin1", pos + 6 + i * 8, pos + 14 + i * 8);
      if (!/^[0-9a-fA-F]{8}$/.test(s)) throw formatError(what, `bad hex field at offset ${pos + 6 + i * 8}`);
      return Number.parseInt(s, 16);
    };
    const mode = field(1);
    const size = field(6);
    const namesize = field(11);
    const nameStart = pos + 110;
    if (namesize === 0 || nameStart + namesize > buf.length)
      throw formatError(what, `truncated name at offset ${pos}`);
    const name = text.toString("utf8", nameStart, nameStart + namesize - 1);
    const dataOffset = (nameStart + namesize + 3) & ~3;
    const next = (dataOffset + size + 3) & ~3;
    if (dataOffset + size > buf.length) throw formatError(what, `entry "${name}" data runs past the end`);
    // "crc" archives carry the sum of a regular file's bytes, which the kernel verifies.
    if (magic === "070702" && (mode & S_IFMT) === S_IFREG) {
      let sum = 0;
      for (let i = dataOffset; i < dataOffset + size; i++) sum = (sum + buf[i]!) >>> 0;
      const want = field(12);
      if (sum !== want)
        throw formatError(
          what,
          `entry "${name}" at offset ${pos}: data checksum 0x${sum.toString(16)} differs from the header's 0x${want.toString(16)}`,
        );
    }
    if (name === "TRAILER!!!") {
      pos = next;
      archive++;
      open = 0;
      continue;
    }
    open++;
    entries.push({
      name,
      mode,
      type: typeOf(mode),
      perm: mode & 0o7777,
      ino: field(0),
      uid: field(2),
      gid: field(3),
      nlink: field(4),
      mtime: field(5),
      size,
      rdevMajor: field(9),
      rdevMinor: field(10),
      dataOffset,
      archive,
    });
    pos = next;
  }
  if (open > 0)
    throw formatError(
      what,
      `the archive ends after "${entries.at(-1)!.name}" without its TRAILER!!! entry (truncated?)`,
    );
  return { entries, end: Math.min(pos, buf.length) };
}

export function isCpio(buf: Uint8Array): boolean {
  if (buf.length < 6) return false;
  const m = Buffer.from(buf.subarray(0, 6)).toString("latin1");
  return m === "070701" || m === "070702";
}
