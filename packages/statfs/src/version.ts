// This package's version, as `--version` prints it: a constant in built files (tools/build.mjs),
// read from the package.json when the sources run as they are (tests, tsx).
import { readFileSync } from "node:fs";

export const PACKAGE_VERSION: string =
  typeof __CLUSTERMATIC_VERSION__ === "string"
    ? __CLUSTERMATIC_VERSION__
    : (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
        .version;
