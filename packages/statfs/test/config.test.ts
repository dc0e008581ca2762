import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, expandPattern, loadConfig, parseConfig, parseDuration } from "../src/config.js";

function issues(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.line}|${i.key ?? ""}|${i.message}`);
    throw err;
  }
  throw new Error("no error");
}

describe("statfs.conf (original format)", () => {
  it("reads name=address lines with comments and blank lines", () => {
    const c = parseConfig(
      "# cluster\n\n  x1=tcp!10.0.0.1!6667   \nx2=10.0.0.2 # second\n\t\nx3=10.0.0.3!7000\r\n",
      "/etc/xcpu/statfs.conf",
    );
    expect(c.format).toBe("statfs.conf");
    expect(c.nodes.map((n) => [n.name, n.address, n.host, n.port])).toEqual([
      ["x1", "tcp!10.0.0.1!6667", "10.0.0.1", 6667],
      ["x2", "10.0.0.2", "10.0.0.2", 6667],
      ["x3", "10.0.0.3!7000", "10.0.0.3", 7000],
    ]);
    expect(c.nodes[0]!.origin).toBe("/etc/xcpu/statfs.conf:3");
    expect(c.poll.intervalMs).toBe(5000);
  });

  it("reports every bad line with file and line number", () => {
    const text =
      "ok=127.0.0.1\nnoequals\nx1 =10.0.0.1\nbadport=10.0.0.1!99999\nok=127.0.0.2\n=1.2.3.4\nx2= 10.0.0.2\n";
    expect(() => parseConfig(text, "s.conf")).toThrow(/^s\.conf:2: invalid format: noequals/);
    expect(issues(() => parseConfig(text, "s.conf"))).toEqual([
      "2||invalid format: noequals (expected name=address)",
      '3||bad node name "x1 ": no spaces, tabs, "/", "#" or "=" (spaces around "=" are not allowed)',
      '4||invalid port format in "10.0.0.1!99999"',
      '5||duplicate node name "ok" (first at line 1)',
      '6||empty node name (spaces around "=" are not allowed)',
      '7||bad address " 10.0.0.2" (spaces around "=" are not allowed)',
    ]);
  });
  it("shows a bad line's control characters escaped and a long one cut short", () => {
    const text = `n1=127.0.0.1\n\x1b]0;pwned\x07\x1b[31mRED\n${"a".repeat(5000)}\n`;
    const err = (() => {
      try {
        parseConfig(text, "s.conf");
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message.split("\n")).toEqual([
      "s.conf:2: invalid format: \\x1b]0;pwned\\x07\\x1b[31mRED (expected name=address)",
      `s.conf:3: invalid format: ${"a".repeat(300 - "invalid format: ".length)}… (5040 characters)`,
    ]);
  });
});

describe("YAML/JSON configuration", () => {
  it("expands ranges, address patterns and labels", () => {
    const c = parseConfig(
      [
        "poll:",
        "  interval: 2s",
        "  connectTimeout: 500ms",
        "  concurrency: 32",
        "  backoff: { initial: 250ms, max: 2s }",
        "defaults:",
        "  port: 7000",
        "  labels: { site: lab }",
        "nodes:",
        "  - name: n[01-03]",
        "    address: tcp!10.0.1.{n+10}!6667",
        '    labels: { rack: "r{n}", group: compute }',
        "  - head",
        "  - name: io[1-2]",
        "    address: 10.0.2.{n}",
        "",
      ].join("\n"),
      "cluster.yaml",
    );
    expect(c.format).toBe("yaml");
    expect(c.poll).toMatchObject({
      intervalMs: 2000,
      connectTimeoutMs: 500,
      readTimeoutMs: 2000,
      concurrency: 32,
      backoffInitialMs: 250,
      backoffMaxMs: 2000,
    });
    expect(c.nodes.map((n) => [n.name, n.address, n.host, n.port])).toEqual([
      ["n01", "tcp!10.0.1.11!6667", "10.0.1.11", 6667],
      ["n02", "tcp!10.0.1.12!6667", "10.0.1.12", 6667],
      ["n03", "tcp!10.0.1.13!6667", "10.0.1.13", 6667],
      ["head", "tcp!head!7000", "head", 7000],
      ["io1", "10.0.2.1", "10.0.2.1", 7000],
      ["io2", "10.0.2.2", "10.0.2.2", 7000],
    ]);
    expect(c.nodes[0]!.labels).toEqual({ site: "lab", rack: "r1", group: "compute" });
    expect(c.nodes[3]!.labels).toEqual({ site: "lab" });
    expect(c.nodes[0]!.origin).toBe("cluster.yaml:10");
  });

  it("reads JSON with the same schema", () => {
    const c = parseConfig(
      '{\n "nodes": [ {"name": "c[1-2]", "address": "127.0.0.1!{n+9000}"} ]\n}\n',
      "c.json",
    );
    expect(c.format).toBe("json");
    expect(c.nodes.map((n) => n.port)).toEqual([9001, 9002]);
  });

  it("names file, line and key for every error", () => {
    const text = [
      "poll:",
      "  interval: soon",
      "  concurency: 3",
      "nodes:",
      "  - name: n[01-02]",
      "    adress: x",
      "  - name: n02",
      "  - name: m[1-2]",
      "    address: 10.0.0.{z}",
      "  - name: bad[",
      "  - name: q1",
      "    labels: { node: x }",
      "extra: 1",
      "",
    ].join("\n");
    expect(issues(() => parseConfig(text, "c.yaml"))).toEqual(
      [
        '2|poll.interval|expected a duration like 5s, 500ms or a number of seconds, got "soon"',
        "3|poll.concurency|unknown key (known: interval, connectTimeout, readTimeout, concurrency, backoff, procs)",
        "6|nodes[0].adress|unknown key (known: name, address, labels)",
        '7|nodes[1].name|duplicate node name "n02" (first at c.yaml:5)',
        "9|nodes[2].address|unknown placeholder {z} (use {name}, {num}, {n}, {n+K})",
        "10|nodes[3].name|syntax error: 'bad[' not a valid node description (unmatched [)",
        "12|nodes[4].labels.node|bad label name (letters, digits, _; not node/address/arch/status)",
        "13|extra|unknown key (known: nodes, poll, defaults)",
      ].sort((a, b) => Number(a.split("|")[0]) - Number(b.split("|")[0])),
    );
  });

  it("rejects YAML syntax errors and duplicate keys with a line", () => {
    expect(issues(() => parseConfig("nodes:\n  - a\n nodes: [b]\n", "x.yml"))[0]).toMatch(/^3\|/);
    expect(issues(() => parseConfig("nodes: [a]\nnodes: [b]\n", "x.yml"))[0]).toMatch(
      /^2\|\|.*[Mm]ap keys must be unique/,
    );
    expect(issues(() => parseConfig('{ "nodes": [ }', "x.json")).length).toBeGreaterThan(0);
    expect(issues(() => parseConfig("- a\n", "x.yaml"))).toEqual([
      "1||expected a mapping with a `nodes` list",
    ]);
    expect(issues(() => parseConfig("poll: {}\n", "x.yaml"))).toEqual([
      "0|nodes|missing: list the nodes to poll",
    ]);
  });

  it("refuses a huge range at once (its names are not made first)", () => {
    expect(issues(() => parseConfig('nodes: [{name: "n[1-100000000000]"}]\n', "c.yaml"))).toEqual([
      "1|nodes[0].name|syntax error: 'n[1-100000000000]' not a valid node description (expands to too many nodes)",
    ]);
  });

  it("checks poll settings against each other", () => {
    expect(
      issues(() => parseConfig("poll: { interval: 1s, readTimeout: 3s }\nnodes: [a]\n", "p.yaml")),
    ).toEqual(["0|poll|connectTimeout and readTimeout must not exceed interval"]);
  });
});

describe("helpers", () => {
  it("parses durations", () => {
    expect(parseDuration(5)).toBe(5000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("2m")).toBe(120000);
    expect(() => parseDuration("-1s")).toThrow(/duration/);
    // No timer waits longer than 2^31 - 1 ms; 1e308 s (a YAML number) is Infinity ms.
    expect(parseDuration("596h")).toBe(596 * 3_600_000);
    for (const v of [1e308, "597h", "99999999999999s", 2 ** 31])
      expect(() => parseDuration(v)).toThrow(/24 days/);
    expect(issues(() => parseConfig("poll: { interval: 1e308 }\nnodes: [a]\n", "p.yaml"))[0]).toMatch(
      /24 days/,
    );
  });
  it("expands address patterns", () => {
    expect(expandPattern("10.0.{n}.{n+100}:{num}", "rack2n007")).toBe("10.0.7.107:007");
    expect(expandPattern("{name}.cluster", "n1")).toBe("n1.cluster");
    expect(() => expandPattern("{n}", "head")).toThrow(/needs a number/);
  });
});

describe("loadConfig", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  it("refuses unresolvable host names like the original", async () => {
    const f = join(dir, "statfs.conf");
    // A label longer than 63 bytes: the resolver refuses the name without sending a query.
    const unknown = `${"n".repeat(64)}.invalid`;
    await writeFile(f, `a=127.0.0.1\nb=${unknown}!6667\n`);
    await expect(loadConfig(f)).rejects.toThrow(
      `${f}:2: ${unknown}!6667 is not resolvable to a host address`,
    );
    await writeFile(f, "a=127.0.0.1\nb=localhost!6667\n");
    expect((await loadConfig(f)).nodes).toHaveLength(2);
  });
  it("reports a missing file", async () => {
    await expect(loadConfig(join(dir, "nope.conf"))).rejects.toThrow(
      /nope\.conf: cannot read: ENOENT \(no such file or directory\)$/,
    );
  });
});
