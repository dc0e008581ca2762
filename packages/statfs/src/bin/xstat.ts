import { main } from "../cli/xstat.js";

main(process.argv.slice(2)).then((code) => process.exit(code));
