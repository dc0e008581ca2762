import { runAsProcess } from "../cli/args.js";
import { main } from "../cli/xrxd.js";

runAsProcess(main);
