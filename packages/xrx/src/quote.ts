// Token quoting for the xcpufs text files (argv, env, ctl, procs), shared with xcpufs through
// @clustermatic/ninep/quote: a token that contains a separator or a quote is wrapped in single
// quotes with inner quotes doubled. Unlike the original, an empty token is written as '' and a
// newline forces quoting, so every argument survives the trip. Also the XCPUENV and env-file
// encodings.

import { envLine, QuoteError, quoteAll } from "@clustermatic/ninep/quote";

export { QuoteError, quote, tokenize } from "@clustermatic/ninep/quote";

/** Joins tokens with single spaces, each quoted as needed. */
export const quoteArgs: (tokens: readonly string[]) => string = quoteAll;

/** Raised for text that cannot be tokenised (the same class as QuoteError). */
export const TokenizeError = QuoteError;
export type TokenizeError = QuoteError;

/**
 * Converts XCPUENV text into env-file text: the two characters `\n` become a newline, a
 * backslash followed by any other character drops both (the original's rule).
 */
export function decodeXcpuEnv(value: string): string {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === "\\") {
      if (value[i + 1] === "n") out += "\n";
      i++;
      continue;
    }
    out += c;
  }
  return out;
}

/** Encodes NAME=value pairs as env-file text, one quoted entry per line. */
export function encodeEnv(entries: Iterable<[string, string]> | Record<string, string>): string {
  const list =
    Symbol.iterator in entries ? [...(entries as Iterable<[string, string]>)] : Object.entries(entries);
  return list.map(([k, v]) => envLine(k, v)).join("");
}
