// The original statfs `state` table: one line per configured node, in configuration order,
//   <name> TAB <address> TAB <arch> TAB <status> TAB <numjobs> NL
// `arch` and `status` are what the node's own `arch` and `state` files held, copied byte for byte
// (cut at a NUL byte and at 63 bytes, like the original's 64-byte buffers), except that a TAB
// becomes a space. A node whose `arch` ends in a newline therefore puts that newline inside the
// line: the original tools read the table by splitting on tabs and only end a record at the
// newline after `numjobs`, so they cope with it. A tab, though, would shift the fields, and a node
// writing `up\t0\nghost\taddr\tarch\tup` into its `state` would add a node of its choosing that
// `xrx -a` then trusts; so tabs never pass.

/** Bytes kept of a node's `arch` and `state` (the original stores them in 64-byte C strings). */
export const FIELD_MAX = 63;

/** The arch column before a node's `arch` file has been read. */
export const ARCH_UNKNOWN = Buffer.from("unknown (not read yet)");

export interface TableRow {
  name: string;
  address: string;
  /** Raw `arch` bytes (or ARCH_UNKNOWN). */
  arch: Uint8Array;
  /** Raw status bytes: `up`, `down(...)`, or the node's own state text. */
  status: Uint8Array;
  numjobs: number;
}

/** Applies the original's C-string limits to bytes read from a node, and turns tabs into spaces. */
export function clampField(bytes: Uint8Array): Buffer {
  let end = bytes.indexOf(0);
  if (end < 0) end = bytes.length;
  const out = Buffer.from(bytes.subarray(0, Math.min(end, FIELD_MAX)));
  for (let i = out.indexOf(0x09); i >= 0; i = out.indexOf(0x09, i + 1)) out[i] = 0x20;
  return out;
}

const TAB = Buffer.from("\t");
const NL = Buffer.from("\n");

/** Formats one line of the table. */
export function formatRow(row: TableRow): Buffer {
  return Buffer.concat([
    Buffer.from(row.name),
    TAB,
    Buffer.from(row.address),
    TAB,
    row.arch,
    TAB,
    row.status,
    TAB,
    Buffer.from(String(row.numjobs)),
    NL,
  ]);
}

/** Formats the whole table. */
export function formatTable(rows: Iterable<TableRow>): Buffer {
  const parts: Buffer[] = [];
  for (const r of rows) parts.push(formatRow(r));
  return Buffer.concat(parts);
}

/** One record as a client reads it back from the table. */
export interface ParsedRow {
  name: string;
  address: string;
  arch: string;
  status: string;
  numjobs: number;
}

/** The table text could not be parsed; the message names the missing field like the original tools. */
export class TableFormatError extends Error {
  readonly code = "ESTATFS_TABLE";
}

/**
 * Parses a table the way the original client library does: four tabs separate five fields and a
 * record ends at the first newline after the fourth tab (so `arch` and `status` may hold newlines).
 */
export function parseTable(text: string): ParsedRow[] {
  const rows: ParsedRow[] = [];
  let pos = 0;
  const fields = ["address", "architecture", "status", "numjobs"];
  while (pos < text.length) {
    const parts: string[] = [];
    for (let f = 0; f < 4; f++) {
      const tab = text.indexOf("\t", pos);
      if (tab < 0) throw new TableFormatError(`Bad format in statfs: ${fields[f]}`);
      parts.push(text.slice(pos, tab));
      pos = tab + 1;
    }
    const nl = text.indexOf("\n", pos);
    const end = nl < 0 ? text.length : nl;
    const jobsText = text.slice(pos, end);
    pos = nl < 0 ? text.length : nl + 1;
    const numjobs = Number.parseInt(jobsText, 10);
    rows.push({
      name: parts[0]!,
      address: parts[1]!,
      arch: parts[2]!,
      status: parts[3]!,
      numjobs: Number.isFinite(numjobs) ? numjobs : 0,
    });
  }
  return rows;
}

/** Formats parsed records back into table text (what the original xstat prints). */
export function formatParsed(rows: readonly ParsedRow[]): string {
  return rows.map((r) => `${r.name}\t${r.address}\t${r.arch}\t${r.status}\t${r.numjobs}\n`).join("");
}
