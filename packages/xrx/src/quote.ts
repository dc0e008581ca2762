// Token quoting for the xcpufs text files (argv, env, ctl, procs): a token that contains a
// separator or a quote is wrapped in single quotes with inner quotes doubled. Unlike the
// original, an empty token is written as '' and a newline forces quoting, so every argument
// survives the trip.

/** Quotes one token for argv/env/ctl. */
export function quote(token: string): string {
  if (token === "" || /[\s']/.test(token)) return `'${token.replaceAll("'", "''")}'`;
  return token;
}

/** Joins tokens with single spaces, each quoted as needed. */
export function quoteArgs(tokens: readonly string[]): string {
  return tokens.map(quote).join(" ");
}

/** Raised for text that cannot be tokenised. */
export class TokenizeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TokenizeError";
  }
}

/** Splits text into tokens: separators are space, tab and newline; '...' quotes with '' for '. */
export function tokenize(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  const n = text.length;
  const isSep = (c: string | undefined) => c === " " || c === "\t" || c === "\n" || c === "\r";
  while (i < n) {
    while (i < n && isSep(text[i])) i++;
    if (i >= n) break;
    if (text[i] === "'") {
      let tok = "";
      i++;
      for (;;) {
        if (i >= n) throw new TokenizeError("unterminated quoted token");
        if (text[i] === "'") {
          if (text[i + 1] === "'") {
            tok += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        tok += text[i];
        i++;
      }
      out.push(tok);
    } else {
      const start = i;
      while (i < n && !isSep(text[i])) i++;
      out.push(text.slice(start, i));
    }
  }
  return out;
}

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
  return list.map(([k, v]) => `${quote(`${k}=${v}`)}\n`).join("");
}
