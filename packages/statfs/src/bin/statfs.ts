import { main } from "../cli/statfs.js";

main(process.argv.slice(2)).then((code) => process.exit(code));
