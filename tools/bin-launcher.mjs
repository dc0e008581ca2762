// Start-up shim of a built CLI (written into dist/bin by tools/build.mjs; not run from here).
// It runs the CommonJS bundle beside it through a V8 code cache kept per user, so that a command
// started many times (xrx in a loop, statfs polls, scripts) skips most parsing and compilation.
// The cache is advisory: any problem with it (unwritable, stale, another Node) means a normal start.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";

const bundle = join(dirname(fileURLToPath(import.meta.url)), "__BUNDLE__");
const source = readFileSync(bundle, "utf8");
const cacheDir = process.env.CLUSTERMATIC_COMPILE_CACHE === "0" ? undefined : compileCacheDir();
const cacheFile = cacheDir && join(cacheDir, `__NAME__-__HASH__-${process.version}-${process.arch}.v8`);
let cached;
try {
  if (cacheFile) cached = readFileSync(cacheFile);
} catch {}
const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
  filename: bundle,
  cachedData: cached,
});
if (cacheFile && (!cached || script.cachedDataRejected)) {
  // Taken at exit, the cache also holds the functions this run compiled, not only the top level.
  process.once("exit", () => {
    try {
      mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
      const tmp = `${cacheFile}.${process.pid}`;
      writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
      renameSync(tmp, cacheFile);
      // Caches of earlier builds or other Node versions of this command are dead weight.
      for (const f of readdirSync(cacheDir))
        if (f.startsWith("__NAME__-") && join(cacheDir, f) !== cacheFile && f.endsWith(".v8"))
          rmSync(join(cacheDir, f), { force: true });
    } catch {}
  });
}
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, dirname(bundle));

function compileCacheDir() {
  const explicit = process.env.CLUSTERMATIC_COMPILE_CACHE;
  if (explicit) return explicit;
  const base = process.env.XDG_CACHE_HOME || (homedir() && join(homedir(), ".cache"));
  return base ? join(base, "clustermatic", "v8") : undefined;
}
