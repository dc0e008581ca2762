// Small byte and hashing helpers shared by the format modules.
import { createHash } from "node:crypto";

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function hex(n: number | bigint, width = 0): string {
  return `0x${n.toString(16).padStart(width, "0")}`;
}

/** Reads a NUL-terminated ASCII string starting at `off` (at most `max` bytes; "" outside `buf`). */
export function cstring(buf: Uint8Array, off: number, max = 4096): string {
  if (!(off >= 0 && off < buf.length)) return "";
  let end = off;
  const limit = Math.min(buf.length, off + max);
  while (end < limit && buf[end] !== 0) end++;
  return Buffer.from(buf.buffer, buf.byteOffset + off, end - off).toString("latin1");
}

export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function startsWith(buf: Uint8Array, magic: readonly number[], at = 0): boolean {
  if (buf.length < at + magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (buf[at + i] !== magic[i]) return false;
  return true;
}

export function align(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Parses sizes such as `512M`, `2G`, `1048576`, `64KiB`. */
export function parseSize(text: string | number): number | undefined {
  if (typeof text === "number") return Number.isFinite(text) && text >= 0 ? text : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(text);
  if (!m) return undefined;
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
