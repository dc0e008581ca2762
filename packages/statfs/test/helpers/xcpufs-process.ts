// Runs an xcpufs node as its own process (through the package's public main()).
import { main } from "@clustermatic/xcpufs";

main(process.argv.slice(2)).then((code) => process.exit(code));
