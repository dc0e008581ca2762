// Token quoting and tokenising of XCPU text buffers (argv, env, ctl lines, procs cmdlines).

/** Raised when a buffer cannot be split into tokens (an unterminated quote). */
export class QuoteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QuoteError";
  }
}

const NEEDS_QUOTES = /[ \t\n']/;

/**
 * Quote one token so that {@link tokenize} gives it back unchanged.
 * Tokens containing a space, tab, newline or single quote are wrapped in single quotes with inner
 * quotes doubled. Unlike the original, a newline also triggers quoting and an empty string is
 * written as `''`, so empty tokens survive a round trip.
 */
export function quote(token: string): string {
  if (token === "") return "''";
  if (!NEEDS_QUOTES.test(token)) return token;
  return `'${token.replaceAll("'", "''")}'`;
}

/** Quote every token and join them with single spaces. */
export function quoteAll(tokens: readonly string[]): string {
  return tokens.map(quote).join(" ");
}

function isSep(c: string | undefined): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\r";
}

/**
 * Split a buffer into tokens. Separators are space, tab and newline (a carriage return is treated as
 * a separator too). A token starting with `'` runs to the next lone `'`; `''` inside stands for one
 * quote; the character after the closing quote starts a new token. Other tokens end at a separator
 * and may contain quotes literally. An unterminated quote throws {@link QuoteError}.
 */
export function tokenize(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && isSep(text[i])) i++;
    if (i >= n) break;
    if (text[i] === "'") {
      i++;
      let tok = "";
      for (;;) {
        if (i >= n) throw new QuoteError("unterminated quoted token");
        const c = text[i] as string;
        if (c === "'") {
          if (text[i + 1] === "'") {
            tok += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        tok += c;
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

/** Render one environment entry (`NAME=value`) the way the root `env` file lists it. */
export function envLine(name: string, value: string): string {
  return `${quote(`${name}=${value}`)}\n`;
}
