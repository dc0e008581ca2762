// Runs every benchmark module in this folder that exports run(), one after another.
// `pnpm bench` runs them all; `pnpm bench NAME` runs the modules whose file name contains NAME.

import { readdir } from "node:fs/promises";
import { dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const filter = process.argv[2];
const files = (await readdir(here))
  .filter((f) => f.endsWith(".ts") && f !== "run.ts" && !f.endsWith(".test.ts"))
  .sort();
for (const f of files) {
  if (filter && !f.includes(filter)) continue;
  const mod = (await import(pathToFileURL(`${here}/${f}`).href)) as { run?: () => Promise<void> };
  if (typeof mod.run !== "function") continue;
  console.log(`\n=== ${f}`);
  await mod.run();
}
