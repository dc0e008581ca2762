// Helpers that keep qid types and mode bits consistent (qid.type is the mode's top byte).

import { QTDIR } from "./constants.js";
import type { Qid } from "./types.js";

/** The qid type implied by a 9P mode: its top byte (DMDIR → QTDIR, DMAPPEND → QTAPPEND, ...). */
export function qidTypeOf(mode: number): number {
  return (mode >>> 24) & 0xff;
}

/** True for a directory qid (QTDIR set). */
export function qidIsDir(qid: Qid): boolean {
  return (qid.type & QTDIR) !== 0;
}

/** True when the qid type equals the top byte of the mode, as servers must keep them. */
export function modeQidConsistent(mode: number, qid: Qid): boolean {
  return qid.type === qidTypeOf(mode);
}
