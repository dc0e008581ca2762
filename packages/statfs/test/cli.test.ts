// The statfs and xstat command lines where they need no cluster: --help and --version.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { OPTIONS, main as statfs } from "../src/cli/statfs.js";
import { main as xstat } from "../src/cli/xstat.js";
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

// Every option the parser accepts is named in --help, so an operator reading it finds each one.
describe("statfs --help", () => {
  it("names every option of the parser", async () => {
    const c = capture();
    expect(await statfs(["--help"], c.io)).toBe(0);
    const missing = Object.entries(OPTIONS as Record<string, { short?: string }>)
      .flatMap(([name, spec]) => [`--${name}`, ...(spec.short ? [`-${spec.short}`] : [])])
      .filter((s) => !new RegExp(`(?<![\\w-])${s}(?![\\w-])`).test(c.out));
    expect(missing).toEqual([]);
  });
});
