// A strict parser for the Prometheus text exposition format 0.0.4, for tests. It follows the
// format's grammar character by character (no regular expression over whole lines) and rejects
// what Prometheus' own parser rejects: bad names, bad escapes, TYPE after samples, a family split
// in two, duplicate series, histogram buckets without `le` or not cumulative, missing final newline.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  timestamp?: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help?: string;
  samples: Sample[];
}

export class PromParseError extends Error {}

const isNameStart = (c: string) => /[a-zA-Z_:]/.test(c);
const isNameChar = (c: string) => /[a-zA-Z0-9_:]/.test(c);
const isLabelStart = (c: string) => /[a-zA-Z_]/.test(c);
const isLabelChar = (c: string) => /[a-zA-Z0-9_]/.test(c);

function parseFloatStrict(text: string, line: number): number {
  if (text === "NaN") return Number.NaN;
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) {
    throw new PromParseError(`line ${line}: bad value "${text}"`);
  }
  return Number(text);
}

function familyOf(sampleName: string, families: Map<string, Family>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (sampleName.endsWith(suffix)) {
      const base = sampleName.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === "histogram" || f.type === "summary")) return base;
    }
  }
  return sampleName;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  if (text.length > 0 && !text.endsWith("\n"))
    throw new PromParseError("document does not end with a newline");
  const lines = text.split("\n");
  lines.pop();
  let current: string | undefined;
  const closed = new Set<string>();
  const seenSeries = new Set<string>();

  const enter = (name: string, lineNo: number) => {
    if (current === name) return;
    if (closed.has(name)) throw new PromParseError(`line ${lineNo}: family ${name} appears in two places`);
    if (current !== undefined) closed.add(current);
    current = name;
  };
  const getFamily = (name: string): Family => {
    let f = families.get(name);
    if (!f) {
      f = { name, type: "untyped", samples: [] };
      families.set(name, f);
    }
    return f;
  };

  lines.forEach((line, idx) => {
    const lineNo = idx + 1;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) return; // an ordinary comment
      const [, kind, name = "", rest = ""] = m;
      if (!isNameStart(name[0] ?? "") || ![...name].every(isNameChar)) {
        throw new PromParseError(`line ${lineNo}: bad metric name "${name}"`);
      }
      enter(name, lineNo);
      const f = getFamily(name);
      if (kind === "HELP") {
        if (f.help !== undefined) throw new PromParseError(`line ${lineNo}: second HELP for ${name}`);
        let out = "";
        for (let i = 0; i < rest.length; i++) {
          const c = rest[i]!;
          if (c === "\\") {
            const n = rest[++i];
            if (n === "\\") out += "\\";
            else if (n === "n") out += "\n";
            else throw new PromParseError(`line ${lineNo}: bad escape in HELP`);
          } else out += c;
        }
        f.help = out;
      } else {
        const t = rest.trim();
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(t)) {
          throw new PromParseError(`line ${lineNo}: bad TYPE "${t}"`);
        }
        if (f.samples.length > 0)
          throw new PromParseError(`line ${lineNo}: TYPE for ${name} after its samples`);
        if ((f as { typed?: boolean }).typed)
          throw new PromParseError(`line ${lineNo}: second TYPE for ${name}`);
        (f as { typed?: boolean }).typed = true;
        f.type = t as Family["type"];
      }
      return;
    }
    // name
    let i = 0;
    if (!isNameStart(line[0] ?? "")) throw new PromParseError(`line ${lineNo}: bad metric name`);
    while (i < line.length && isNameChar(line[i]!)) i++;
    const name = line.slice(0, i);
    const labels: Record<string, string> = {};
    if (line[i] === "{") {
      i++;
      for (;;) {
        while (line[i] === " ") i++;
        if (line[i] === "}") {
          i++;
          break;
        }
        const ls = i;
        if (!isLabelStart(line[i] ?? "")) throw new PromParseError(`line ${lineNo}: bad label name`);
        while (i < line.length && isLabelChar(line[i]!)) i++;
        const lname = line.slice(ls, i);
        while (line[i] === " ") i++;
        if (line[i] !== "=") throw new PromParseError(`line ${lineNo}: expected = after label ${lname}`);
        i++;
        while (line[i] === " ") i++;
        if (line[i] !== '"') throw new PromParseError(`line ${lineNo}: expected " for label ${lname}`);
        i++;
        let value = "";
        for (;;) {
          const c = line[i];
          if (c === undefined) throw new PromParseError(`line ${lineNo}: unterminated label value`);
          i++;
          if (c === '"') break;
          if (c === "\\") {
            const n = line[i++];
            if (n === "\\") value += "\\";
            else if (n === '"') value += '"';
            else if (n === "n") value += "\n";
            else throw new PromParseError(`line ${lineNo}: bad escape \\${n} in label ${lname}`);
          } else value += c;
        }
        if (lname in labels) throw new PromParseError(`line ${lineNo}: label ${lname} given twice`);
        labels[lname] = value;
        while (line[i] === " ") i++;
        if (line[i] === ",") {
          i++;
          continue;
        }
        if (line[i] === "}") {
          i++;
          break;
        }
        throw new PromParseError(`line ${lineNo}: expected , or } after label ${lname}`);
      }
    }
    if (line[i] !== " " && line[i] !== "\t")
      throw new PromParseError(`line ${lineNo}: expected a space before the value`);
    const fields = line
      .slice(i)
      .trim()
      .split(/[ \t]+/);
    if (fields.length < 1 || fields.length > 2 || fields[0] === "") {
      throw new PromParseError(`line ${lineNo}: expected value [timestamp]`);
    }
    const value = parseFloatStrict(fields[0]!, lineNo);
    let timestamp: number | undefined;
    if (fields[1] !== undefined) {
      if (!/^-?\d+$/.test(fields[1])) throw new PromParseError(`line ${lineNo}: bad timestamp`);
      timestamp = Number(fields[1]);
    }
    const fam = familyOf(name, families);
    enter(fam, lineNo);
    const f = getFamily(fam);
    if (f.type === "histogram") {
      if (name.endsWith("_bucket") && !("le" in labels))
        throw new PromParseError(`line ${lineNo}: bucket without le`);
      if (name === fam)
        throw new PromParseError(`line ${lineNo}: histogram sample without _bucket/_sum/_count`);
    }
    const key = `${name}{${Object.keys(labels)
      .sort()
      .map((k) => `${k}=${JSON.stringify(labels[k])}`)
      .join(",")}}`;
    if (seenSeries.has(key)) throw new PromParseError(`line ${lineNo}: duplicate series ${key}`);
    seenSeries.add(key);
    f.samples.push({ name, labels, value, ...(timestamp !== undefined ? { timestamp } : {}) });
  });

  for (const f of families.values()) {
    if (f.type !== "histogram") continue;
    const groups = new Map<string, { le: number; v: number }[]>();
    const counts = new Map<string, number>();
    for (const s of f.samples) {
      const { le, ...rest } = s.labels;
      const g = JSON.stringify(Object.entries(rest).sort());
      if (s.name.endsWith("_bucket")) {
        const arr = groups.get(g) ?? [];
        arr.push({ le: parseFloatStrict(le!, 0), v: s.value });
        groups.set(g, arr);
      } else if (s.name.endsWith("_count")) counts.set(g, s.value);
    }
    for (const [g, buckets] of groups) {
      for (let k = 1; k < buckets.length; k++) {
        if (!(buckets[k]!.le > buckets[k - 1]!.le))
          throw new PromParseError(`${f.name}: buckets not in le order`);
        if (buckets[k]!.v < buckets[k - 1]!.v) throw new PromParseError(`${f.name}: buckets not cumulative`);
      }
      const last = buckets[buckets.length - 1];
      if (!last || last.le !== Number.POSITIVE_INFINITY)
        throw new PromParseError(`${f.name}: no +Inf bucket`);
      if (counts.get(g) !== last.v)
        throw new PromParseError(`${f.name}: _count differs from the +Inf bucket`);
    }
  }
  return families;
}
