import { describe, expect, it } from "vitest";
import { Exposition, Histogram } from "../src/prom.js";
import { PromParseError, parsePrometheusText } from "./helpers/prom-parse.js";

describe("Prometheus exposition writer", () => {
  it("writes families the strict parser accepts, escaping labels and help", () => {
    const e = new Exposition();
    e.family("x_up", "gauge", "Help with \\ backslash\nand newline.");
    e.sample({ node: 'n"1\\\n' }, 1).sample({ node: "n2" }, 0);
    e.family("x_total", "counter", "c").sample(undefined, 12);
    const h = new Histogram([0.1, 1]);
    for (const v of [0.05, 0.5, 3, 0.2]) h.observe(v);
    e.family("x_seconds", "histogram", "h").histogram({ kind: "poll" }, h.bounds, h.counts, h.sum);
    e.family("x_weird", "gauge", "w")
      .sample(undefined, Number.NaN)
      .sample({ a: "b" }, Number.POSITIVE_INFINITY);
    const fams = parsePrometheusText(e.toString());
    expect(fams.get("x_up")!.help).toBe("Help with \\ backslash\nand newline.");
    expect(fams.get("x_up")!.samples[0]!.labels.node).toBe('n"1\\\n');
    const hist = fams.get("x_seconds")!;
    expect(hist.type).toBe("histogram");
    expect(
      hist.samples.filter((s) => s.name === "x_seconds_bucket").map((s) => [s.labels.le, s.value]),
    ).toEqual([
      ["0.1", 1],
      ["1", 3],
      ["+Inf", 4],
    ]);
    expect(hist.samples.find((s) => s.name === "x_seconds_count")!.value).toBe(4);
    expect(Number.isNaN(fams.get("x_weird")!.samples[0]!.value)).toBe(true);
  });

  it("refuses bad names and a family written twice", () => {
    const e = new Exposition();
    expect(() => e.family("bad-name", "gauge", "")).toThrow(/bad metric name/);
    e.family("ok", "gauge", "");
    expect(() => e.family("ok", "gauge", "")).toThrow(/twice/);
    expect(() => e.sample({ "bad-label": "x" }, 1)).toThrow(/bad label name/);
  });
});

describe("the strict test parser itself", () => {
  const bad: [string, RegExp][] = [
    ["a 1", /newline/],
    ['a{x="1} 1\n', /unterminated/],
    ['a{x="\\q"} 1\n', /bad escape/],
    ["a one\n", /bad value/],
    ["a 1\na 2\n", /duplicate series/],
    ['a 1\nb 1\na{x="y"} 1\n', /two places/],
    ["a 1\n# TYPE a gauge\n", /after its samples/],
    ["# TYPE h histogram\nh_bucket 1\n", /bucket without le/],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n', /not cumulative/],
    ["1a 1\n", /bad metric name/],
  ];
  for (const [text, re] of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      expect(() => parsePrometheusText(text)).toThrow(PromParseError);
      expect(() => parsePrometheusText(text)).toThrow(re);
    });
  }
});
