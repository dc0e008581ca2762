// The original's libstrutil quoting and tokenising (spec 8.1), written from the spec, not shared
// with our own quote module: the emulated node must read what a client writes the way the
// original does.

/** quotestrdup: quote only when the token has a space, a tab or a quote; "" stays "". */
export function quoteOriginal(s: string): string {
  if (!/[ \t']/.test(s)) return s;
  return `'${s.replace(/'/g, "''")}'`;
}

/** tokenize: separators space, tab, newline; 'quoted' tokens with '' for a quote. */
export function tokenizeOriginal(text: string): string[] {
  const out: string[] = [];
  const sep = (c: string | undefined) => c === " " || c === "\t" || c === "\n";
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && sep(text[i])) i++;
    if (i >= n) break;
    if (text[i] === "'") {
      let tok = "";
      i++;
      for (;;) {
        if (i >= n) throw new Error("unterminated quote");
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
      while (i < n && !sep(text[i])) i++;
      out.push(text.slice(start, i));
    }
  }
  return out;
}
