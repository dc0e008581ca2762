// Command-line mistakes in our words, shared by the tools of the suite.

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
