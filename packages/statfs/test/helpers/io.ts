// An in-memory io for the CLI main() functions: collects what they write to stdout and stderr.

export function capture() {
  let out = "";
  let err = "";
  return {
    io: {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: (s: string) => (err += s) },
      handleSignals: false,
    },
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}
