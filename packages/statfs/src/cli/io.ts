// What a CLI main() needs from its surroundings, so tests can call it in-process.

export interface CliIo {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown };
  /** Stops a long-running command (the daemon, `xstat --watch`) as SIGTERM would. */
  signal?: AbortSignal;
  /** Install SIGHUP/SIGINT/SIGTERM handlers (default true; tests pass false). */
  handleSignals?: boolean;
  /**
   * statfs is this process (the bin entry): without -f, -d or -D it may detach into the
   * background as the original did. In-process callers leave it unset and stay in the foreground.
   */
  detach?: boolean;
}

export const processIo: CliIo = { stdout: process.stdout, stderr: process.stderr };

/**
 * What an error of Node's parseArgs says, in our words: its own text suggests a `--` whose quote
 * it never closes and runs over several lines.
 */
export function argsMistake(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  let m = /^Unknown option '([^']*)'/.exec(text);
  if (m) return `unknown option ${m[1]}`;
  m = /^Option '(?:(-[^-]), )?(\S+?)(?: <value>)?' argument missing/.exec(text);
  if (m) return `option ${m[1] ? `${m[1]}/` : ""}${m[2]} needs a value`;
  m = /^Option '(?:(-[^-]), )?(\S+?)' does not take an argument/.exec(text);
  if (m) return `option ${m[1] ? `${m[1]}/` : ""}${m[2]} takes no value`;
  m = /^Option '(\S+?)' argument is ambiguous/.exec(text);
  if (m) return `option ${m[1]} needs a value (one starting with "-" is written ${m[1]}=VALUE)`;
  m = /^Unexpected argument '([^']*)'/.exec(text);
  if (m) return `unexpected argument "${m[1]}"`;
  return text.split("\n")[0] as string;
}

/** Exit codes shared by the CLIs. */
export const EXIT_OK = 0;
export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;
