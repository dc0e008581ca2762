#!/bin/sh
":" //; unset NODE_EXTRA_CA_CERTS; exec node "$0" "$@"
// The xstat command: it runs the build, dist/bin/xstat.js (pnpm build makes it).
"use strict";
const built = require("node:path").join(__dirname, "../dist/bin/xstat.js");
if (!require("node:fs").existsSync(built)) {
  process.stderr.write(`xstat: ${built} is missing: build the package first (pnpm build)\n`);
  process.exit(1);
}
require(built);
