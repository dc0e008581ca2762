// Token quoting and tokenising of XCPU text buffers (argv, env, ctl lines, procs cmdlines), the
// format of the xcpu spec section 8.1. Control files parsed with Plan 9 rules (server/ctl.ts
// parseFields) accept the same quoted output.

/** Raised when a buffer cannot be split into tokens (an unterminated quote). */
export class QuoteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QuoteError";
  }
}

const NEEDS_QUOTES = /[\s']/;

/**
 * Quotes one token so that {@link tokenize} gives it back unchanged. A token containing white
 * space or a single quote is wrapped in single quotes with inner quotes doubled. Unlike the
 * original, a newline also triggers quoting and an empty string is written as `''`, so empty
 * tokens survive a round trip.
 *
 * @example quote("it's here") // "'it''s here'"
 */
export function quote(token: string): string {
  if (token !== "" && !NEEDS_QUOTES.test(token)) return token;
  return `'${token.replaceAll("'", "''")}'`;
}

/** Quotes every token and joins them with single spaces. */
export function quoteAll(tokens: readonly string[]): string {
  return tokens.map(quote).join(" ");
}

/**
 * True for the token separators of {@link tokenize}: space, tab and newline, as libstrutil's. A
 * carriage return is part of a token there: an original client does not quote an argument that
 * holds one, and it must reach the program whole.
 */
export function isSeparator(c: string | undefined): boolean {
  return c === " " || c === "\t" || c === "\n";
}

/**
 * Reads the quoted token whose opening `'` is at `text[start]`: it runs to the next lone `'`, and
 * `''` inside stands for one quote. Returns the token and the index just past the closing quote,
 * or undefined when the quote is never closed.
 */
export function readQuoted(text: string, start: number): { token: string; end: number } | undefined {
  const n = text.length;
  let i = start + 1;
  let token = "";
  while (i < n) {
    const c = text[i] as string;
    if (c === "'") {
      if (text[i + 1] !== "'") return { token, end: i + 1 };
      token += "'";
      i += 2;
      continue;
    }
    token += c;
    i++;
  }
  return undefined;
}

/**
 * Splits a buffer into tokens. Separators are space, tab and newline (a carriage return is not
 * one). A token starting with `'` is read by {@link readQuoted}; the character after
 * the closing quote starts a new token. Other tokens end at a separator and may contain quotes
 * literally. An unterminated quote throws {@link QuoteError}.
 *
 * @example tokenize("echo 'it''s here'") // ["echo", "it's here"]
 */
export function tokenize(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && isSeparator(text[i])) i++;
    if (i >= n) break;
    if (text[i] === "'") {
      const q = readQuoted(text, i);
      if (!q) throw new QuoteError("unterminated quoted token");
      out.push(q.token);
      i = q.end;
    } else {
      const start = i;
      while (i < n && !isSeparator(text[i])) i++;
      out.push(text.slice(start, i));
    }
  }
  return out;
}

/** One entry of an XCPU `env` file: `NAME=value` quoted as a single token, then a newline. */
export function envLine(name: string, value: string): string {
  return `${quote(`${name}=${value}`)}\n`;
}
