// The statfs and xstat command lines where they need no cluster: --help and --version.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { OPTIONS, main as statfs } from "../src/cli/statfs.js";
import { XSTAT_OPTIONS, XSTAT_USAGE, main as xstat } from "../src/cli/xstat.js";
import { capture } from "./helpers/io.js";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

describe.each([
  ["statfs", statfs],
  ["xstat", xstat],
] as const)("%s", (name, main) => {
  it("--version and -V print the package's version and exit 0", async () => {
    for (const flag of ["--version", "-V"]) {
      const c = capture();
      expect(await main([flag], c.io)).toBe(0);
      expect(c.out).toBe(`${name} ${version}\n`);
      expect(c.err).toBe("");
    }
  });

  it("--help mentions --version and exits 0", async () => {
    const c = capture();
    expect(await main(["--help"], c.io)).toBe(0);
    expect(c.out).toMatch(new RegExp(`^usage: ${name} `));
    expect(c.out).toContain("-V, --version");
  });
});

// Every option the parser accepts is named in --help and in the README, so an operator reading
// either finds each one, long name and letter.
type Options = Record<string, { type: string; short?: string }>;
const spellings = (options: Options) =>
  Object.entries(options).flatMap(([name, spec]) => [`--${name}`, ...(spec.short ? [`-${spec.short}`] : [])]);
const unnamed = (options: Options, text: string) =>
  spellings(options).filter((s) => !new RegExp(`(?<![\\w-])${s}(?![\\w-])`).test(text));
const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
/** The README's section for a program: from its heading to the next of the same level. */
const section = (name: string) => readme.split(/^## /m).find((s) => s.startsWith(`${name}\n`)) ?? "";

describe.each([
  ["statfs", statfs, OPTIONS],
  ["xstat", xstat, XSTAT_OPTIONS],
] as const)("%s options", (name, main, options) => {
  it("--help names every option of the parser", async () => {
    const c = capture();
    expect(await main(["--help"], c.io)).toBe(0);
    expect(unnamed(options, c.out)).toEqual([]);
  });

  it("the README's section names every option of the parser", () => {
    expect(section(name)).not.toBe("");
    expect(unnamed(options, section(name))).toEqual([]);
  });
});

describe("xstat usage line", () => {
  it("is the README's synopsis, and names the options that take a value or change the output", () => {
    const line = XSTAT_USAGE.split("\n")[0]!;
    expect(section("xstat")).toContain(`\`\`\`\n${line.replace(/^usage: /, "")}\n\`\`\``);
    for (const s of ["-a ADDR", "--json", "-w", "--every DUR", "-t DUR", "-d"])
      expect(line).toContain(`[${s}]`);
  });
});

describe("xstat node filter", () => {
  it("a filter that names no node is a usage error, not an empty table", async () => {
    for (const filter of [",", " , "]) {
      const c = capture();
      expect(await xstat(["-a", "tcp!127.0.0.1!1", filter], c.io)).toBe(2);
      expect(c.err).toMatch(/^xstat: no node named in '.*' \(see xstat --help\)\n$/);
      expect(c.out).toBe("");
    }
  });
});

describe.each([
  ["statfs", statfs],
  ["xstat", xstat],
] as const)("%s usage errors", (name, main) => {
  it("are one line on stderr that names the mistake and the help, exit 2", async () => {
    const cases: Array<[string[], string]> = [
      [["--bogus"], "unknown option --bogus"],
      [["-Z"], "unknown option -Z"],
      [["-a"], "option -a/--addr needs a value"],
      [["--help=yes"], "option -h/--help takes no value"],
    ];
    if (name === "statfs") {
      cases[2] = [["-c"], "option -c/--config needs a value"];
      cases.push([["extra"], 'unexpected argument "extra"']);
    }
    for (const [argv, message] of cases) {
      const c = capture();
      expect({ argv, status: await main(argv, c.io), err: c.err, out: c.out }).toEqual({
        argv,
        status: 2,
        err: `${name}: ${message} (see ${name} --help)\n`,
        out: "",
      });
    }
  });
});
