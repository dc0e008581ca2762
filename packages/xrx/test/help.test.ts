// Every option the parsers accept is named in --help: an operator reading the help text can
// find each one (and the README's command lines are checked against the same texts by hand).
import { describe, expect, it } from "vitest";
import { POOL_OPTIONS } from "../src/cli/admin.js";
import { XGETENT_USAGE, main as xgetent } from "../src/cli/xgetent.js";
import { XGROUPSET_USAGE, main as xgroupset } from "../src/cli/xgroupset.js";
import { main as xk, OPTIONS as xkOptions } from "../src/cli/xk.js";
import { main as xps, OPTIONS as xpsOptions } from "../src/cli/xps.js";
import { main as xrx, OPTIONS as xrxOptions } from "../src/cli/xrx.js";
import { main as xrxd, OPTIONS as xrxdOptions } from "../src/cli/xrxd.js";
import { XUSERSET_USAGE, main as xuserset } from "../src/cli/xuserset.js";
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

describe("the user-pool tools' help and usage lines name every option", () => {
  // -u is an argument of add and delete (xgetent parses it with the others and has no use for it).
  const { u: _u, ...common } = POOL_OPTIONS;
  for (const [prog, main, usage] of [
    ["xgetent", xgetent, XGETENT_USAGE],
    ["xuserset", xuserset, XUSERSET_USAGE],
    ["xgroupset", xgroupset, XGROUPSET_USAGE],
  ] as const) {
    it(prog, async () => {
      const r = await runCli(main, ["--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout.startsWith(`${usage}\n`)).toBe(true);
      const named = (text: string, s: string) => new RegExp(`(?<![\\w-])${s}(?![\\w-])`).test(text);
      const options = Object.entries(common as Record<string, { short?: string }>);
      // the help names every spelling; the usage line each option, by its letter when it has one
      const missing = [
        ...options.flatMap(([name, spec]) => spellings(name, spec)).filter((s) => !named(r.stdout, s)),
        ...options
          .filter(([name]) => name !== "help" && name !== "version")
          .map(([name, spec]) => (spec.short ? `-${spec.short}` : `--${name}`))
          .filter((s) => !named(usage, s))
          .map((s) => `${s} (usage)`),
      ];
      expect(missing, `${prog}'s help does not mention these options`).toEqual([]);
    });
  }
});
