// Every option the parsers accept is named in --help: an operator reading the help text can
// find each one (and the README's command lines are checked against the same texts by hand).
import { describe, expect, it } from "vitest";
import { main as xk, OPTIONS as xkOptions } from "../src/cli/xk.js";
import { main as xps, OPTIONS as xpsOptions } from "../src/cli/xps.js";
import { main as xrx, OPTIONS as xrxOptions } from "../src/cli/xrx.js";
import { main as xrxd, OPTIONS as xrxdOptions } from "../src/cli/xrxd.js";
import { runCli } from "./harness.js";

/** The spellings of one option that help must show: `--name` for long names, `-x` for a letter. */
function spellings(name: string, spec: { short?: string }): string[] {
  const out: string[] = [];
  if (name.length > 1) out.push(`--${name}`);
  if (spec.short) out.push(`-${spec.short}`);
  return out;
}

describe("--help names every option", () => {
  for (const [prog, main, options] of [
    ["xrx", xrx, xrxOptions],
    ["xk", xk, xkOptions],
    ["xps", xps, xpsOptions],
    ["xrxd", xrxd, xrxdOptions],
  ] as const) {
    it(prog, async () => {
      const r = await runCli(main, ["--help"]);
      expect(r.code).toBe(0);
      const missing = Object.entries(options as Record<string, { short?: string }>)
        .flatMap(([name, spec]) => spellings(name, spec))
        .filter((s) => !new RegExp(`(?<![\\w-])${s}(?![\\w-])`).test(r.stdout));
      expect(missing, `${prog} --help does not mention these options`).toEqual([]);
    });
  }
});
