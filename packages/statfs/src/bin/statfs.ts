import { exitWhenWritten, processIo } from "../cli/io.js";
import { main } from "../cli/statfs.js";

main(process.argv.slice(2), { ...processIo, detach: true }).then(exitWhenWritten);
