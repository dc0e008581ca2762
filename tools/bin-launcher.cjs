// Start-up shim of a built CLI (written into dist/bin by tools/build.mjs; not run from here).
// It runs the CommonJS bundle beside it through a V8 code cache kept per user, so that a command
// started many times (xrx in a loop, scripts, tree spawn) skips most parsing and compilation.
// It is CommonJS (dist/bin has its own package.json) because loading Node's ESM machinery for the
// entry point alone costs more than the whole shim. The cache is advisory: any problem with it
// (unwritable, stale, another Node or V8 flags) means a normal start.
"use strict";
const {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} = require("node:fs");
const { homedir } = require("node:os");
const { join } = require("node:path");
const { Script } = require("node:vm");

// A command may hand its whole run to a resident process of its own (xrx to xrxd): the client
// module named here is loaded first, when its environment variable is set, and starts the bundle
// only if the resident process does not take the run.
const handOff = "__HANDOFF__";
if (handOff && process.env["__HANDOFF_ENV__"]) require(join(__dirname, handOff)).run(runBundle);
else runBundle();

function runBundle() {
  const bundle = join(__dirname, "__BUNDLE__");
  const source = readFileSync(bundle, "utf8");
  const cacheDir = compileCacheDir();
  const cacheFile = cacheDir && join(cacheDir, `__NAME__-__HASH__-${process.version}-${process.arch}.v8`);
  let cached;
  try {
    // Compiled code is only taken from a file that this user alone could have written: a cache under
    // somebody else's HOME (sudo keeping HOME, say) could hold anything.
    if (cacheFile && ownedPrivately(cacheDir) && ownedPrivately(cacheFile)) cached = readFileSync(cacheFile);
  } catch {}
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: bundle,
    cachedData: cached,
  });
  if (cacheFile && (!cached || script.cachedDataRejected)) {
    // Taken at exit, the cache also holds the functions this run compiled, not only the top level.
    // So it is not taken from a run that only printed help or a version or refused its arguments
    // (often a command's first run): it would lack the functions real work compiles, for good.
    const brief = process.argv
      .slice(2)
      .some((a) => a === "--help" || a === "-h" || a === "--version" || a === "-V");
    process.once("exit", (code) => {
      if (brief || code === 2) return;
      try {
        mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
        if (!ownedPrivately(cacheDir)) return;
        const tmp = `${cacheFile}.${process.pid}`;
        writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
        renameSync(tmp, cacheFile);
        // Caches of earlier builds or other Node versions of this command are dead weight.
        for (const f of readdirSync(cacheDir)) {
          const path = join(cacheDir, f);
          if (f.startsWith("__NAME__-") && f.endsWith(".v8") && path !== cacheFile)
            rmSync(path, { force: true });
        }
      } catch {}
    });
  }
  const bundleModule = { exports: {} };
  script.runInThisContext()(bundleModule.exports, require, bundleModule, bundle, __dirname);
}

function ownedPrivately(path) {
  const st = statSync(path);
  return st.uid === (process.geteuid?.() ?? st.uid) && (st.mode & 0o022) === 0;
}

function compileCacheDir() {
  const setting = process.env.CLUSTERMATIC_COMPILE_CACHE;
  if (setting === "0") return undefined;
  if (setting) return setting;
  const base = process.env.XDG_CACHE_HOME || (homedir() && join(homedir(), ".cache"));
  return base ? join(base, "clustermatic", "v8") : undefined;
}
