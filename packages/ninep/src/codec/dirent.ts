// 9P2000.L directory entries (Rreaddir data): qid[13] offset[8] type[1] name[s].

import { asBuffer, Reader } from "./reader.js";
import type { Dirent } from "./types.js";
import { badValue, putQid, putStr, putU8, putU64, strSize } from "./writer.js";

/** Wire size of one directory entry: 24 + name bytes. */
export function direntSize(d: Dirent): number {
  if (d === null || typeof d !== "object") badValue("dirent", d);
  return 13 + 8 + 1 + strSize(d.name, "dirent.name");
}

export function putDirent(b: Buffer, p: number, d: Dirent): number {
  p = putQid(b, p, d.qid, "dirent.qid");
  p = putU64(b, p, d.offset, "dirent.offset");
  p = putU8(b, p, d.type, "dirent.type");
  return putStr(b, p, d.name);
}

/** Encodes one directory entry. */
export function encodeDirent(d: Dirent): Buffer {
  const b = Buffer.allocUnsafe(direntSize(d));
  putDirent(b, 0, d);
  return b;
}

/** Encodes entries back to back, as Rreaddir data. */
export function encodeDirents(ds: readonly Dirent[]): Buffer {
  let n = 0;
  for (const d of ds) n += direntSize(d);
  const b = Buffer.allocUnsafe(n);
  let p = 0;
  for (const d of ds) p = putDirent(b, p, d);
  return b;
}

/** Decodes the entries of Rreaddir data. An entry cut short throws ProtocolError("truncated"). */
export function decodeDirents(data: Uint8Array): Dirent[] {
  const b = asBuffer(data);
  const r = new Reader(b, 0, b.length);
  const out: Dirent[] = [];
  while (r.pos < r.end) {
    out.push({ qid: r.qid(), offset: r.u64(), type: r.u8(), name: r.str() });
  }
  return out;
}
