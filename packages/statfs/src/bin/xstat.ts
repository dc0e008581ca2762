import { guardStdout } from "@clustermatic/ninep/stdio";
import { main } from "../cli/xstat.js";

const output = guardStdout("xstat");
main(process.argv.slice(2)).then((code) => output.finish(code));
