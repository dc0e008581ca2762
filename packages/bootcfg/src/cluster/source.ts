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
    const msgs = doc.errors.map((e) => {
      const line = e.linePos?.[0]?.line ?? (e.pos ? lc.linePos(e.pos[0]).line : 0);
      return `${file}:${line}: ${e.message.split("\n")[0]}`;
    });
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

export function readSource(path: string): SourceDoc {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new BootcfgError("EIO", `${path}: ${(err as Error).message}`, { cause: err });
  }
  return parseSource(text, path);
}
