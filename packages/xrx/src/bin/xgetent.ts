import { runAsProcess } from "../cli/args.js";
import { main } from "../cli/xgetent.js";

runAsProcess(main);
