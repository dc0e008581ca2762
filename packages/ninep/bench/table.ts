// A Markdown table printer for benchmark modules (no run() here, so bench/run.ts skips this file).

/** A benchmark result: a title, rows of cells, and notes printed below. */
export interface BenchTable {
  title: string;
  rows: Record<string, string | number>[];
  notes?: string[];
}

/** Prints a table with aligned columns; numeric columns are right-aligned. */
export function printTable(t: BenchTable, out: (line: string) => void = console.log): void {
  out(`\n## ${t.title}\n`);
  const cols = [...new Set(t.rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: string | number | undefined): string =>
    v === undefined ? "" : typeof v === "number" ? formatNumber(v) : v;
  const width = cols.map((c) => Math.max(c.length, ...t.rows.map((r) => cell(r[c]).length)));
  const numeric = cols.map((c) => t.rows.some((r) => typeof r[c] === "number"));
  const line = (cells: string[]): string =>
    `| ${cells.map((s, i) => (numeric[i] ? s.padStart(width[i] ?? 0) : s.padEnd(width[i] ?? 0))).join(" | ")} |`;
  out(line(cols));
  out(`|${width.map((w, i) => (numeric[i] ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`);
  for (const r of t.rows) out(line(cols.map((c) => cell(r[c]))));
  for (const n of t.notes ?? []) out(`\n${n}`);
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) || Math.abs(v) >= 100) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(2);
}
