#!/usr/bin/env node
// The xcpufs command: it runs the build, dist/bin/xcpufs.js (pnpm build makes it).
"use strict";
const built = require("node:path").join(__dirname, "../dist/bin/xcpufs.js");
if (!require("node:fs").existsSync(built)) {
  process.stderr.write(`xcpufs: ${built} is missing: build the package first (pnpm build)\n`);
  process.exit(1);
}
require(built);
