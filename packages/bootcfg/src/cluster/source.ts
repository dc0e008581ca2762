// Reads a YAML or JSON document into plain values while remembering the line of every key, so
// validation errors can say "cluster.yaml:14: profiles.compute.arhc: …".
import { readFileSync } from "node:fs";
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import { BootcfgError } from "../errors.js";
import { isJsonSource, jsonSyntaxError } from "./json.js";

export interface SourceDoc {
  file: string;
  value: unknown;
  /** Dotted path ("profiles.compute.cmdline.2") → 1-based line. */
  lines: Map<string, number>;
  text: string;
}

export function parseSource(text: string, file: string): SourceDoc {
  // A JSON file's syntax errors are told in JSON's terms (the YAML parser's are about YAML).
  if (isJsonSource(file, text)) {
    const e = jsonSyntaxError(text);
    if (e)
      throw new BootcfgError("ECLUSTER", `${file}:${e.line}:${e.column}: JSON syntax error: ${e.message}`);
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    // The first few: a file that is not YAML at all would give one per line.
    const msgs = doc.errors.slice(0, MAX_SYNTAX_ERRORS).map((e) => {
      const line = e.linePos?.[0]?.line ?? (e.pos ? lc.linePos(e.pos[0]).line : 0);
      const text = e.message.split("\n")[0] ?? "";
      return `${file}:${line}: ${text.length > 200 ? `${text.slice(0, 200)}…` : text}`;
    });
    if (doc.errors.length > MAX_SYNTAX_ERRORS)
      msgs.push(`${file}: ${doc.errors.length - MAX_SYNTAX_ERRORS} more syntax errors`);
    throw new BootcfgError("ECLUSTER", msgs.join("\n"));
  }
  const lines = new Map<string, number>();
  const lineOf = (n: Node | null | undefined) => (n?.range ? lc.linePos(n.range[0]).line : 0);
  const walk = (n: unknown, path: string): unknown => {
    if (isMap(n)) {
      const o: Record<string, unknown> = {};
      for (const pair of n.items) {
        const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        const p = path ? `${path}.${k}` : k;
        lines.set(p, lineOf(pair.key as Node));
        o[k] = walk(pair.value, p);
      }
      return o;
    }
    if (isSeq(n)) {
      return n.items.map((item, i) => {
        const p = `${path}.${i}`;
        lines.set(p, lineOf(item as Node));
        return walk(item, p);
      });
    }
    if (isScalar(n)) return n.value;
    return n ?? null;
  };
  const value = walk(doc.contents, "");
  lines.set("", 1);
  return { file, value, lines, text };
}

const MAX_SYNTAX_ERRORS = 5;

export function readSource(path: string): SourceDoc {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new BootcfgError("EIO", `${path}: ${(err as Error).message}`, { cause: err });
  }
  // A kernel or an initrd given where the cluster file goes: said in one line.
  const nul = raw.indexOf(0);
  const text = raw.toString("utf8");
  if (nul >= 0 || !Buffer.from(text, "utf8").equals(raw))
    throw new BootcfgError(
      "ECLUSTER",
      `${path}: not a YAML or JSON cluster file (binary data${nul >= 0 ? ` at byte ${nul}` : ", not UTF-8 text"})`,
    );
  return parseSource(text, path);
}
