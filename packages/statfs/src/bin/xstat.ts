import { exitWhenWritten } from "../cli/io.js";
import { main } from "../cli/xstat.js";

main(process.argv.slice(2)).then(exitWhenWritten);
