// One-line text form of any message, for traces and error reports (in the style of lib9p's chatty output).

import { TABLE } from "./messages.js";
import type { Message, Qid, Stat } from "./types.js";

const OCTAL = new Set(["perm", "mode"]);
const HEX = new Set(["flags", "valid", "request_mask"]);
const DATA_SHOWN = 16;

function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}

/** "(path vers type)" with the type in hex. */
export function formatQid(q: Qid): string {
  return `(${q.path} ${q.version} ${hex(q.type)})`;
}

/** A stat entry on one line. */
export function formatStat(s: Stat): string {
  let t =
    `${JSON.stringify(s.name)} ${JSON.stringify(s.uid)} ${JSON.stringify(s.gid)} ${JSON.stringify(s.muid)}` +
    ` q ${formatQid(s.qid)} m 0${(s.mode >>> 0).toString(8)} at ${s.atime} mt ${s.mtime} l ${s.length}` +
    ` t ${s.type} d ${s.dev}`;
  if (s.extension !== undefined) t += ` ext ${JSON.stringify(s.extension)}`;
  if (s.n_uid !== undefined) t += ` n_uid ${s.n_uid} n_gid ${s.n_gid} n_muid ${s.n_muid}`;
  return `{${t}}`;
}

/** Length and the first 16 bytes in hex, "…" if there are more. */
export function formatData(d: Uint8Array): string {
  const b = Buffer.from(d.buffer, d.byteOffset, Math.min(d.byteLength, DATA_SHOWN));
  return `${d.byteLength} ${b.toString("hex")}${d.byteLength > DATA_SHOWN ? "…" : ""}`;
}

function value(name: string, v: unknown): string {
  if (typeof v === "number")
    return OCTAL.has(name) ? `0${(v >>> 0).toString(8)}` : HEX.has(name) ? hex(v) : String(v);
  if (typeof v === "bigint") return HEX.has(name) ? hex(v) : v.toString();
  if (typeof v === "string") return JSON.stringify(v);
  if (v instanceof Uint8Array) return formatData(v);
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === "string")) return JSON.stringify(v);
    return `[${v.map((x) => formatQid(x as Qid)).join(" ")}]`;
  }
  if (v !== null && typeof v === "object") {
    if ("muid" in v) return formatStat(v as Stat);
    if ("path" in v) return formatQid(v as Qid);
  }
  return String(v);
}

/**
 * One line per message: name, tag, then the fields in wire order, e.g.
 * `Twalk tag 2 fid 0 newfid 1 wname ["usr","lib"]`. Data shows its length and first 16 bytes in
 * hex, 8-byte numbers are decimal (masks in hex), perm/mode octal, qids `(path vers type)`.
 * Dialect-only fields are shown when present on the object.
 */
export function formatMessage(msg: Message): string {
  const e = TABLE[msg.type];
  if (e === undefined) return `type ${msg.type} tag ${msg.tag}`;
  let s = `${e.name} tag ${msg.tag}`;
  const m = msg as unknown as Record<string, unknown>;
  for (const f of e.fields) {
    const v = m[f];
    if (v === undefined) continue;
    s += ` ${f} ${value(f, v)}`;
  }
  return s;
}
