// Turns a commented hex listing into bytes: on each line, the hex before "|" counts, the rest is a comment.

/** `hex\`13 00 00 00 | size 19\`` → "13000000". Lines without "|" are taken whole; blank lines are skipped. */
export function hexOf(listing: string): string {
  let out = "";
  for (const line of listing.split("\n")) {
    const cut = line.indexOf("|");
    const bytes = (cut === -1 ? line : line.slice(0, cut)).replace(/\s+/g, "");
    if (!/^([0-9a-f]{2})*$/.test(bytes)) throw new Error(`bad hex in vector line: ${line}`);
    out += bytes;
  }
  return out;
}
