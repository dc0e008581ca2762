import { guardStdout } from "@clustermatic/ninep/stdio";
import { main } from "../cli.js";

const output = guardStdout("bootcfg");
main(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
}).then((code) => output.finish(code));
