import { guardStdout } from "@clustermatic/ninep/stdio";
import { main } from "../cli.js";
import { closeInheritedDescriptors } from "../inherited-fds.js";

closeInheritedDescriptors();
const output = guardStdout("xcpufs");
main(process.argv.slice(2)).then(
  (code) => output.finish(code),
  (err) => {
    process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
