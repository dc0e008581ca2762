// Entry point of the `ninep` binary: wires the process to main() and exits with its status.
import { main } from "../cli/main.js";
import { writeFilesFully } from "../stdio.js";

const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());
writeFilesFully(process.stdout);
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  // A reader that went away (`| head`) wants no more; anything else (a full disk, /dev/full) is
  // the command's failure: said, not waited on (a write that failed never drains).
  if (err.code === "EPIPE") process.exit(0);
  process.stderr.write(`ninep: cannot write standard output (${err.code ?? err.message})\n`);
  process.exit(1);
});
main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  signal: stop.signal,
}).then((status) => {
  // Let pending stdout writes flush instead of calling process.exit().
  process.exitCode = status;
});
