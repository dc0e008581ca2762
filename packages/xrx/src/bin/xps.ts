import { runAsProcess } from "../cli/args.js";
import { main } from "../cli/xps.js";

runAsProcess(main);
