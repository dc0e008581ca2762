import { main } from "../cli.js";
import { closeInheritedDescriptors } from "../inherited-fds.js";

closeInheritedDescriptors();
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
