import { describe, expect, it } from "vitest";
import { QuoteError, quote, quoteAll, tokenize } from "./quote.js";

describe("quote/tokenize", () => {
  it("matches the spec examples", () => {
    expect(quoteAll(["ls", "-l", "/var"])).toBe("ls -l /var");
    expect(quoteAll(["echo", "it's here"])).toBe("echo 'it''s here'");
    expect(`${quote("PATH=/bin")}\n${quote("MSG=hello world")}\n`).toBe("PATH=/bin\n'MSG=hello world'\n");
  });
  it("tokenizes quoted and plain tokens", () => {
    expect(tokenize("  a\t b\n'c d' 'it''s'")).toEqual(["a", "b", "c d", "it's"]);
    expect(tokenize("'a'b")).toEqual(["a", "b"]);
    expect(tokenize("NAME='a b'")).toEqual(["NAME='a", "b'"]);
    expect(tokenize("'x\ny'")).toEqual(["x\ny"]);
  });
  it("round-trips awkward tokens, including empty ones and newlines", () => {
    const toks = ["", "a b", "'", "''", "x\ny", "tab\there", "plain"];
    expect(tokenize(quoteAll(toks))).toEqual(toks);
  });
  it("rejects an unterminated quote", () => {
    expect(() => tokenize("echo 'oops")).toThrow(QuoteError);
  });
});
