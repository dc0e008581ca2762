import { runAsProcess } from "../cli/args.js";
import { main } from "../cli/xgroupset.js";

runAsProcess(main);
