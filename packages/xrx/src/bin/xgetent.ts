import { processIo } from "../cli/args.js";
import { main } from "../cli/xgetent.js";

main(process.argv.slice(2), processIo()).then(
  (code) => {
    process.exitCode = code;
    process.stdin.pause();
    // Exit once output is flushed, even if stdin is still open.
    process.stdout.write("", () => process.exit(code));
  },
  (err) => {
    process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
