// Control files, Cmdtab style: split a written line into fields with Plan 9 quoting and run the
// matching entry of a command table, answering bad input with "unknown command" / "usage:" errors.

import { Errno, FsError } from "../errors.js";
import { quote } from "../quote.js";
import type { RequestContext } from "./backend.js";
import { commandFile, type SynthFile, type SynthNodeOptions } from "./tree.js";

/**
 * Splits a line into fields the way Plan 9's tokenize does: fields are separated by blanks
 * (space, tab, CR, LF); single quotes group text containing blanks, and inside quotes '' stands
 * for one quote. Quotes may start or end in the middle of a field: `a'b c'd` is one field `ab cd`.
 * An unterminated quote is an error.
 *
 * @example parseFields("clone 2 'tcp!a b'") // ["clone", "2", "tcp!a b"]
 */
export function parseFields(line: string): string[] {
  const out: string[] = [];
  const n = line.length;
  let i = 0;
  const blank = (c: string) => c === " " || c === "\t" || c === "\r" || c === "\n";
  while (i < n) {
    while (i < n && blank(line[i]!)) i++;
    if (i >= n) break;
    let field = "";
    let quoted = false;
    while (i < n) {
      const c = line[i]!;
      if (quoted) {
        if (c === "'") {
          if (line[i + 1] === "'") {
            field += "'";
            i += 2;
            continue;
          }
          quoted = false;
          i++;
          continue;
        }
        field += c;
        i++;
      } else {
        if (blank(c)) break;
        if (c === "'") quoted = true;
        else field += c;
        i++;
      }
    }
    if (quoted) throw new FsError("unbalanced quote in command", Errno.EINVAL);
    out.push(field);
  }
  return out;
}

/**
 * Quotes a field so parseFields gives it back unchanged (no quotes when not needed). This is the
 * XCPU token quoting of quote.ts: its output starts every quoted field with a quote, which both
 * tokenisers read the same way.
 */
export const quoteField: (s: string) => string = quote;

/** One command of a control file. */
export interface CtlCommand<C = RequestContext> {
  /** The first field, e.g. "clone". */
  cmd: string;
  /** Fewest arguments after the command name (default 0). */
  minArgs?: number;
  /** Most arguments after the command name (default: minArgs; Infinity for any number). */
  maxArgs?: number;
  /** Shown after "usage: " when the argument count is wrong, e.g. "clone N addrlist". */
  usage?: string;
  /** Runs the command; throw FsError to fail the write with that message. */
  run(args: string[], ctx: C, line: string): void | Promise<void>;
}

/**
 * A table of control-file commands.
 *
 * @example
 * const ctl = new CtlTable([
 *   { cmd: "kill", run: () => session.kill() },
 *   { cmd: "clone", minArgs: 2, usage: "clone N addrlist", run: ([n, addrs]) => clone(n, addrs) },
 * ]);
 * dir.add(ctl.file("ctl"));
 */
export class CtlTable<C = RequestContext> {
  readonly #cmds = new Map<string, CtlCommand<C>>();

  constructor(commands: readonly CtlCommand<C>[]) {
    for (const c of commands) {
      if (this.#cmds.has(c.cmd)) throw new Error(`duplicate control command ${c.cmd}`);
      this.#cmds.set(c.cmd, c);
    }
  }

  /** The command names, in table order. */
  get names(): string[] {
    return [...this.#cmds.keys()];
  }

  /**
   * Parses `line` and runs the matching command. Errors: "empty command",
   * "unknown command 'foo'", "usage: clone N addrlist" (all FsError with EINVAL).
   */
  async exec(line: string, ctx: C): Promise<void> {
    const fields = parseFields(line);
    const name = fields[0];
    if (name === undefined) throw new FsError("empty command", Errno.EINVAL);
    const c = this.#cmds.get(name);
    if (!c) throw new FsError(`unknown command ${quoteForError(name)}`, Errno.EINVAL);
    const args = fields.slice(1);
    const min = c.minArgs ?? 0;
    const max = c.maxArgs ?? min;
    if (args.length < min || args.length > max) {
      throw new FsError(`usage: ${c.usage ?? usageOf(c.cmd, min, max)}`, Errno.EINVAL);
    }
    await c.run(args, ctx, line);
  }

  /**
   * A write-only SynthFile whose writes run commands of this table, one per line (the context
   * given to `run` is the request context).
   */
  file(name: string, opts: SynthNodeOptions = {}): SynthFile<undefined> {
    return commandFile(name, (line, ctx) => this.exec(line, ctx as C), opts);
  }
}

function quoteForError(s: string): string {
  const shown = s.length > 40 ? `${s.slice(0, 40)}…` : s;
  return `'${shown.replaceAll("'", "''")}'`;
}

function usageOf(cmd: string, min: number, max: number): string {
  if (max === 0) return cmd;
  if (max === Number.POSITIVE_INFINITY) return `${cmd} ${"arg ".repeat(min)}...`.trim();
  return `${cmd} ${Array.from({ length: max }, (_, i) => (i < min ? `arg${i + 1}` : `[arg${i + 1}]`)).join(" ")}`;
}
