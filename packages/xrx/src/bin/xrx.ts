import { runAsProcess } from "../cli/args.js";
import { main } from "../cli/xrx.js";

runAsProcess(main);
