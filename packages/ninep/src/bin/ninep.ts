// Entry point of the `ninep` binary: wires the process to main() and exits with its status.
import { main } from "../cli/main.js";

const stop = new AbortController();
process.once("SIGINT", () => stop.abort());
process.once("SIGTERM", () => stop.abort());
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
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
