// Writes the Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then the
// samples of each family together. Label values and help text are escaped as the format requires.

export const PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type MetricType = "gauge" | "counter" | "histogram" | "untyped";
export type Labels = Readonly<Record<string, string>>;

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

function formatLabels(labels: Labels | undefined): string {
  if (!labels) return "";
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  const parts: string[] = [];
  for (const k of keys) {
    if (!LABEL_RE.test(k) || k.startsWith("__")) throw new Error(`bad label name "${k}"`);
    parts.push(`${k}="${escapeLabelValue(labels[k]!)}"`);
  }
  return `{${parts.join(",")}}`;
}

/** Builds one exposition document. Families must be written one after another. */
export class Exposition {
  private readonly out: string[] = [];
  private readonly names = new Set<string>();
  private current: { name: string; type: MetricType } | undefined;

  /** Starts a metric family. */
  family(name: string, type: MetricType, help: string): this {
    if (!NAME_RE.test(name)) throw new Error(`bad metric name "${name}"`);
    if (this.names.has(name)) throw new Error(`metric family "${name}" written twice`);
    this.names.add(name);
    this.current = { name, type };
    this.out.push(`# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`);
    return this;
  }

  /** Adds a sample to the current family; `suffix` is `_bucket`, `_sum` or `_count` for histograms. */
  sample(labels: Labels | undefined, value: number, suffix = ""): this {
    const fam = this.current;
    if (!fam) throw new Error("sample before family");
    if (suffix && fam.type !== "histogram") throw new Error(`suffix ${suffix} on a ${fam.type}`);
    this.out.push(`${fam.name}${suffix}${formatLabels(labels)} ${formatValue(value)}\n`);
    return this;
  }

  /** Writes a whole histogram series from cumulative bucket counts. */
  histogram(
    labels: Labels | undefined,
    bounds: readonly number[],
    counts: readonly number[],
    sum: number,
  ): this {
    let cumulative = 0;
    for (let i = 0; i < bounds.length; i++) {
      cumulative += counts[i] ?? 0;
      this.sample({ ...labels, le: formatValue(bounds[i]!) }, cumulative, "_bucket");
    }
    cumulative += counts[bounds.length] ?? 0;
    this.sample({ ...labels, le: "+Inf" }, cumulative, "_bucket");
    this.sample(labels, sum, "_sum");
    this.sample(labels, cumulative, "_count");
    return this;
  }

  toString(): string {
    return this.out.join("");
  }
}

/** A fixed-bucket histogram (counts per bucket, last slot is +Inf). */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Array(bounds.length + 1).fill(0);
  }
  observe(v: number): void {
    this.sum += v;
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]!) i++;
    this.counts[i]!++;
  }
}
