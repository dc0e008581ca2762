#!/bin/sh
":" //; unset NODE_EXTRA_CA_CERTS; exec node "$0" "$@"
// The xrxd command: it runs the build, dist/bin/xrxd.js (pnpm build makes it).
"use strict";
const built = require("node:path").join(__dirname, "../dist/bin/xrxd.js");
if (!require("node:fs").existsSync(built)) {
  process.stderr.write(`xrxd: ${built} is missing: build the package first (pnpm build)\n`);
  process.exit(1);
}
require(built);
