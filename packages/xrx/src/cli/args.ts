// Command-line parsing in the original tools' POSIX style: options first, parsing stops at the
// first non-option (so `xrx n1 ls -l` passes `-l` to ls), short options may be clustered (`-pL`),
// values may be attached (`-n8`) or separate (`-n 8`). Long options are parsed by node:util.
import { basename } from "node:path";
import { Readable } from "node:stream";
import { parseArgs } from "node:util";
import { argsMistake } from "@clustermatic/ninep/args";
import { guardStdout } from "@clustermatic/ninep/stdio";
import { isDevNull } from "../dev-null.js";

/** A usage error: the CLI prints it with the usage line and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * What a CLI main() does with an error it caught: a {@link UsageError} is printed as
 * `<prog>: <message>` followed by the usage line (exit 2), anything else as `Error: <message>`
 * (exit 1). Returns the exit status.
 */
export function reportError(
  e: unknown,
  prog: string,
  usage: string,
  stderr: { write(s: string): unknown },
): number {
  if (e instanceof UsageError) {
    stderr.write(`${prog}: ${e.message}\n${usage}\n`);
    return 2;
  }
  stderr.write(`Error: ${(e as Error).message}\n`);
  return 1;
}

export type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>;

/**
 * Splits argv into the option part and the rest at the first non-option (or after `--`), then
 * parses the option part strictly. Returns the parsed values and the positionals. With `permute`
 * options may also follow the positionals (`xps n1 -x`), as the original's getopt took them; only
 * `--` ends the options then. xrx does not permute: what follows its program is the program's.
 */
export function parseCommandLine(
  argv: readonly string[],
  options: OptionSpec,
  opts: { permute?: boolean } = {},
): {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  /** The options given, by their spec keys, in the order given (repeats included). */
  order: string[];
} {
  const takesValue = new Set<string>();
  const longTakesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type === "string") {
      longTakesValue.add(name);
      if (o.short) takesValue.add(o.short);
    }
  }
  const optionPart: string[] = [];
  const skipped: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      i++;
      break;
    }
    if (a.startsWith("--")) {
      optionPart.push(a);
      const name = a.slice(2).split("=")[0]!;
      if (longTakesValue.has(name) && !a.includes("=") && i + 1 < argv.length) optionPart.push(argv[++i]!);
      continue;
    }
    // A negative number is an argument (a gid of -1 gets "bad gid", not "unknown option").
    if (a.startsWith("-") && a.length > 1 && !/^-\d+$/.test(a)) {
      optionPart.push(a);
      // A cluster: a value-taking letter consumes the rest, or the next argument.
      for (let j = 1; j < a.length; j++) {
        if (takesValue.has(a[j]!)) {
          if (j === a.length - 1 && i + 1 < argv.length) optionPart.push(argv[++i]!);
          break;
        }
      }
      continue;
    }
    if (!opts.permute) break;
    skipped.push(a);
  }
  const rest = [...skipped, ...argv.slice(i)];
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...optionPart],
      options,
      strict: true,
      allowPositionals: false,
      tokens: true,
    });
  } catch (err) {
    throw new UsageError(usageText(err));
  }
  return {
    values: parsed.values as Record<string, string | boolean | string[] | undefined>,
    positionals: rest,
    order: (parsed.tokens ?? []).flatMap((t) => (t.kind === "option" ? [t.name] : [])),
  };
}

/** parseArgs' complaint in the words of a command line (it names options by their spec keys). */
function usageText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const missing = /^Option '(?:(-\w), )?(--[\w-]+) <value>' argument missing/.exec(message);
  if (missing) return `option ${missing[1] ?? missing[2]} needs a value`;
  const dashed = /^Option '(-\w|--[\w-]+)' argument is ambiguous/.exec(message);
  if (dashed) {
    const name = dashed[1]!;
    const attached = name.startsWith("--") ? `${name}=VALUE` : `${name}VALUE`;
    return `option ${name} needs a value (the next argument starts with "-"; attach it: ${attached})`;
  }
  return argsMistake(err);
}

/** The I/O a CLI main() works with; the bin files pass the process's own. */
export interface CliIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Where signals come from (process by default); tests pass an EventEmitter. */
  signals?: NodeJS.EventEmitter;
}

/** The process's own I/O. */
export function processIo(): CliIo {
  let stdin: CliIo["stdin"] | undefined;
  return {
    // Made on first use: xps and xk never read it, and xrx started from a script with its input
    // on /dev/null gets an empty stream instead of Node's file reader (a few ms of start-up).
    get stdin() {
      stdin ??= devNullInput(0) ? emptyInput() : process.stdin;
      return stdin;
    },
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    signals: process,
  };
}

/**
 * Runs a CLI main() as this process (the bin files): its status becomes the exit status, and the
 * process exits once its output is flushed, whatever stdin or leftover handles still hold.
 */
export function runAsProcess(main: (argv: readonly string[], io: CliIo) => Promise<number>): void {
  // Output that could not be written (a full disk, an I/O error; not a reader that went away) is
  // a failure: the listing or the output is lost, and said so once everything is flushed.
  const output = guardStdout(basename(process.argv[1] ?? "xrx").replace(/\.(c?js|ts)$/, ""));
  main(process.argv.slice(2), processIo()).then(
    (code) => output.finish(code),
    (err) => {
      process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}

const EMPTY_INPUT = Symbol("empty input");

/** An input known to be empty (/dev/null): a program given it may have its stdin closed at once. */
export function emptyInput(): Readable {
  return Object.assign(Readable.from([]), { [EMPTY_INPUT]: true });
}

export function isEmptyInput(s: NodeJS.ReadableStream): boolean {
  return (s as { [EMPTY_INPUT]?: boolean })[EMPTY_INPUT] === true;
}

/** Parses a positive integer option. */
export function intOption(
  value: string | undefined,
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`bad ${name} value "${value}": expected an integer ${range}`);
  }
  return Number(value);
}

/** Parses a duration in seconds (fractions allowed) into milliseconds. */
export function secondsOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || value.trim() === "") {
    throw new UsageError(`bad ${name} value "${value}": expected seconds > 0`);
  }
  return Math.round(n * 1000);
}

/** Input known to be /dev/null (a descriptor that is not open is not). */
function devNullInput(fd: number): boolean {
  try {
    return isDevNull(fd);
  } catch {
    return false;
  }
}
