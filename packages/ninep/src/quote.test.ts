import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { envLine, QuoteError, quote, quoteAll, readQuoted, tokenize } from "./quote.js";
import { parseFields } from "./server/ctl.js";

describe("quote/tokenize (xcpu 8.1)", () => {
  it("leaves plain tokens alone and quotes the rest", () => {
    expect(quote("ls")).toBe("ls");
    expect(quote("")).toBe("''");
    expect(quote("it's here")).toBe("'it''s here'");
    expect(quote("a\nb")).toBe("'a\nb'");
    expect(quote("a\rb")).toBe("'a\rb'");
  });
  it("reads a quoted token and says where it ends", () => {
    expect(readQuoted("x 'a''b' c", 2)).toEqual({ token: "a'b", end: 8 });
    expect(readQuoted("'open", 0)).toBeUndefined();
  });
  it("writes env entries as one quoted token a line (the spec example)", () => {
    expect(envLine("PATH", "/bin") + envLine("MSG", "hello world")).toBe("PATH=/bin\n'MSG=hello world'\n");
  });
  it("splits on space, tab and newline only: a carriage return is part of its token, as in libstrutil", () => {
    expect(tokenize(" a\tb\nc\r d\re ")).toEqual(["a", "b", "c\r", "d\re"]);
  });
  it("throws QuoteError on an unterminated quote", () => {
    expect(() => tokenize("echo 'oops")).toThrow(QuoteError);
  });
  it("round-trips any token list", () => {
    fc.assert(
      fc.property(fc.array(fc.string()), (tokens) => {
        expect(tokenize(quoteAll(tokens))).toEqual(tokens);
      }),
    );
  });
  it("gives quoted output that Plan 9 field parsing reads back too", () => {
    fc.assert(
      fc.property(fc.array(fc.string(), { minLength: 1 }), (tokens) => {
        expect(parseFields(quoteAll(tokens))).toEqual(tokens);
      }),
    );
  });
});
