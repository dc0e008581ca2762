import { runAsProcess } from "../cli/args.js";
import { main } from "../cli/xk.js";

runAsProcess(main);
