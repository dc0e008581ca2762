// JSON syntax errors in JSON's own terms: cluster files are read by the YAML parser (JSON is
// YAML), whose messages for a JSON mistake speak of flow collections and implicit keys. This
// scanner finds the first place where a text stops being JSON (RFC 8259) and says what JSON
// expects there, with line and column. Iterative, so any nesting depth is fine.

export interface JsonSyntaxError {
  /** 1-based. */
  line: number;
  /** 1-based, in characters. */
  column: number;
  message: string;
}

/** Is this cluster file JSON: a `.json` name, or (not named .yaml/.yml) text opening with { or [. */
export function isJsonSource(file: string, text: string): boolean {
  if (/\.json$/i.test(file)) return true;
  return !/\.ya?ml$/i.test(file) && /^\uFEFF?[ \t\r\n]*[{[]/.test(text);
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const LITERAL = /true|false|null/y;
const WORD = /[^\s,:[\]{}"]{1,24}/y;

/** The first JSON syntax error in `text`, or undefined when the text is one JSON value. */
export function jsonSyntaxError(text: string): JsonSyntaxError | undefined {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const stack: Array<"{" | "["> = [];
  const fail = (message: string, at = i): JsonSyntaxError => {
    const before = text.slice(0, at);
    const line = before.split("\n").length;
    return { line, column: [...before.slice(before.lastIndexOf("\n") + 1)].length + 1, message };
  };
  const found = (at = i): string => {
    if (at >= text.length) return "the end of the file";
    const c = text[at]!;
    WORD.lastIndex = at;
    const w = WORD.exec(text);
    const what = w && w[0].length > 1 && !w[0].includes("'") ? `'${w[0]}'` : JSON.stringify(w?.[0] ?? c);
    const hint =
      c === "/" || c === "#"
        ? " (JSON has no comments)"
        : c === "'"
          ? " (JSON strings are in double quotes)"
          : "";
    return `${what}${hint}`;
  };
  const ws = () => {
    for (;;) {
      const c = text[i];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") i++;
      else return;
    }
  };
  /** Reads a string at text[i] === '"'; returns an error or undefined. */
  const string = (): JsonSyntaxError | undefined => {
    const start = i++;
    for (;;) {
      if (i >= text.length)
        return fail("unterminated string: no closing quote before the end of the file", start);
      const code = text.charCodeAt(i);
      if (code === 0x22) {
        i++;
        return undefined;
      }
      if (code === 0x5c) {
        const e = text[i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6)))
            return fail("expected 4 hex digits after \\u in a string");
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else
          return fail(
            `bad escape "\\${e ?? ""}" in a string (JSON has \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)`,
          );
        continue;
      }
      if (code < 0x20)
        return fail(
          `control character U+${code.toString(16).padStart(4, "0").toUpperCase()} in a string (write it escaped${code === 10 ? ", \\n" : code === 9 ? ", \\t" : ""}; a string cannot span lines)`,
        );
      i++;
    }
  };
  // Three states: a value is due, a property name is due, or a value has just ended.
  let state: "value" | "key" | "after" = "value";
  let after = "at the start of the file";
  for (;;) {
    ws();
    const c = text[i];
    if (state === "value") {
      if (c === "{" || c === "[") {
        i++;
        ws();
        if (text[i] === (c === "{" ? "}" : "]")) i++;
        else {
          stack.push(c);
          after = `after "${c}"`;
          if (c === "{") state = "key";
          continue;
        }
      } else if (c === '"') {
        const e = string();
        if (e) return e;
      } else if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) {
        NUMBER.lastIndex = i;
        const m = NUMBER.exec(text);
        if (!m) return fail(`bad number: expected a digit, found ${found(i + 1)}`, i + 1);
        i += m[0].length;
      } else {
        LITERAL.lastIndex = i;
        const m = LITERAL.exec(text);
        if (!m) {
          const trailing =
            (c === "]" || c === "}") && after === 'after ","' ? " (JSON allows no comma before it)" : "";
          return fail(`expected a value ${after}, found ${found()}${trailing}`);
        }
        i += m[0].length;
      }
      state = "after";
    } else if (state === "key") {
      if (c !== '"') {
        const trailing = c === "}" && after === 'after ","' ? " (JSON allows no comma before it)" : "";
        return fail(`expected a property name in double quotes ${after}, found ${found()}${trailing}`);
      }
      const start = i;
      const e = string();
      if (e) return e;
      const name = text.slice(start, i);
      ws();
      if (text[i] !== ":") return fail(`expected ":" after the property name ${name}, found ${found()}`);
      i++;
      after = `after ${name}:`;
      state = "value";
    } else {
      const top = stack.at(-1);
      if (top === undefined)
        return i < text.length
          ? fail(`expected the end of the file after the top-level value, found ${found()}`)
          : undefined;
      const close = top === "{" ? "}" : "]";
      if (c === ",") {
        i++;
        after = 'after ","';
        state = top === "{" ? "key" : "value";
      } else if (c === close) {
        i++;
        stack.pop();
      } else
        return fail(
          `expected "," or "${close}" after ${top === "{" ? "a property value" : "an array element"}, found ${found()}`,
        );
    }
  }
}
