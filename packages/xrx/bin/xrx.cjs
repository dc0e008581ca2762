#!/bin/sh
":" //; unset NODE_EXTRA_CA_CERTS; exec node "$0" "$@"
// The xrx command: it runs the build, dist/bin/xrx.js (pnpm build makes it).
"use strict";
const built = require("node:path").join(__dirname, "../dist/bin/xrx.js");
if (!require("node:fs").existsSync(built)) {
  process.stderr.write(`xrx: ${built} is missing: build the package first (pnpm build)\n`);
  process.exit(1);
}
require(built);
