import { describe, expect, it } from "vitest";
import { FsError } from "../errors.js";
import { CtlTable, parseFields, quoteField } from "./ctl.js";

describe("parseFields (Plan 9 tokenize quoting)", () => {
  it.each([
    ["clone 2 tcp!a!6667", ["clone", "2", "tcp!a!6667"]],
    ["  spaced\tout \r\n", ["spaced", "out"]],
    ["say 'hello world'", ["say", "hello world"]],
    ["say 'it''s'", ["say", "it's"]],
    ["a'b c'd", ["ab cd"]],
    ["''", [""]],
    ["x '' y", ["x", "", "y"]],
    ["", []],
  ])("%j → %j", (line, fields) => {
    expect(parseFields(line)).toEqual(fields);
  });

  it("refuses an unterminated quote", () => {
    expect(() => parseFields("say 'oops")).toThrow("unbalanced quote");
  });

  it("round-trips with quoteField", () => {
    for (const f of ["plain", "with space", "it's", "", "a'b c", "tab\there"]) {
      expect(parseFields(`cmd ${quoteField(f)}`)).toEqual(["cmd", f]);
    }
  });
});

describe("CtlTable", () => {
  const seen: string[][] = [];
  const t = new CtlTable<null>([
    { cmd: "kill", run: () => void seen.push(["kill"]) },
    { cmd: "clone", minArgs: 2, usage: "clone N addrlist", run: (a) => void seen.push(a) },
    { cmd: "env", minArgs: 0, maxArgs: Number.POSITIVE_INFINITY, run: (a) => void seen.push(a) },
    { cmd: "sig", minArgs: 1, maxArgs: 2, run: (a) => void seen.push(a) },
  ]);

  it("runs the matching command with its arguments", async () => {
    await t.exec("clone 4 'n1 n2'", null);
    await t.exec("kill", null);
    await t.exec("env A=1 B=2 C=3", null);
    expect(seen).toEqual([["4", "n1 n2"], ["kill"], ["A=1", "B=2", "C=3"]]);
  });

  it("reports unknown commands, bad argument counts and empty lines", async () => {
    await expect(t.exec("frob x", null)).rejects.toThrow("unknown command 'frob'");
    await expect(t.exec("clone 4", null)).rejects.toThrow("usage: clone N addrlist");
    await expect(t.exec("kill now", null)).rejects.toThrow("usage: kill");
    await expect(t.exec("sig", null)).rejects.toThrow("usage: sig arg1 [arg2]");
    await expect(t.exec("   ", null)).rejects.toBeInstanceOf(FsError);
  });

  it("refuses duplicate command names", () => {
    expect(
      () =>
        new CtlTable([
          { cmd: "a", run() {} },
          { cmd: "a", run() {} },
        ]),
    ).toThrow("duplicate");
  });
});
