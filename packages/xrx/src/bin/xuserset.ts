import { runAsProcess } from "../cli/args.js";
import { main } from "../cli/xuserset.js";

runAsProcess(main);
