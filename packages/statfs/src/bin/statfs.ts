import { guardStdout } from "@clustermatic/ninep/stdio";
import { processIo } from "../cli/io.js";
import { main } from "../cli/statfs.js";

const output = guardStdout("statfs");
main(process.argv.slice(2), { ...processIo, detach: true }).then((code) => output.finish(code));
