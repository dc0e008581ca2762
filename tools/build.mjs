#!/usr/bin/env node
// Builds the package in the current directory: one ESM file per `exports` entry and per `bin`,
// bundled by esbuild from the TypeScript sources, then declarations from tsc.
// Library entries keep every bare import external (workspace packages resolve to their own dist);
// bins inline workspace packages so an installed CLI is one runnable file plus its npm deps.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import * as esbuild from "esbuild";

const require = createRequire(join(process.cwd(), "package.json"));
const pkg = JSON.parse(readFileSync("package.json", "utf8"));
const SOURCE = "@clustermatic/source";
rmSync("dist", { recursive: true, force: true });

const libEntries = [];
for (const [key, value] of Object.entries(pkg.exports ?? {})) {
  if (typeof value !== "object" || !value[SOURCE]) continue;
  libEntries.push({ in: value[SOURCE], out: value.default.replace(/^\.\/dist\//, "").replace(/\.js$/, "") });
  void key;
}
// Every bundle, library or bin, gets the package's version as a constant (declared for TypeScript in
// tools/build-defines.d.ts; src/version.ts of each package falls back to package.json from source).
const define = { __CLUSTERMATIC_VERSION__: JSON.stringify(pkg.version) };
const shared = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  logLevel: "warning",
  define,
};
if (libEntries.length) {
  // Code shared by several entries goes into chunks, so that every entry sees the same module:
  // bundled apart, each entry had its own copy of the error classes, and an FsError from
  // "@clustermatic/ninep/errors" was not an FsError to the server from "@clustermatic/ninep/server".
  await esbuild.build({
    ...shared,
    entryPoints: libEntries,
    outdir: "dist",
    packages: "external",
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
  });
}

const workspaceDeps = Object.keys({ ...pkg.dependencies }).filter((d) => d.startsWith("@clustermatic/"));
/** Command name → the path its `bin` entry names. */
const bins = new Map(
  Object.entries(typeof pkg.bin === "string" ? { [pkg.name.split("/").pop()]: pkg.bin } : (pkg.bin ?? {})),
);
const keepExternal = {
  name: "external-npm-deps",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (workspaceDeps.some((d) => args.path === d || args.path.startsWith(`${d}/`))) return undefined;
      return { path: args.path, external: true };
    });
  },
};
// Each bin is a CommonJS bundle (dist/bin/<name>.cjs) started by a small shim at the bin path
// that compiles it through a per-user V8 code cache (tools/bin-launcher.cjs). dist/bin gets its own
// package.json so that the shims load as CommonJS: Node's ESM loader costs ~10 ms per start.
const launcher = readFileSync(new URL("./bin-launcher.cjs", import.meta.url), "utf8");
if (bins.size) {
  mkdirSync("dist/bin", { recursive: true });
  writeFileSync("dist/bin/package.json", `${JSON.stringify({ type: "commonjs" })}\n`);
}
// Commands that hand their run to a resident process when an environment variable names it: the
// client module is bundled on its own (dist/bin/<name>-handoff.cjs) so the shim can try it before
// loading the command's bundle.
const HANDOFFS = { xrx: { env: "XRXD_SOCK", source: "src/xrxd/client.ts" } };
for (const [name, binPath] of bins) {
  const src = `src/bin/${name}.ts`;
  if (!existsSync(src)) throw new Error(`bin source ${src} missing for ${name}`);
  const out = `dist/bin/${name}.js`;
  const bundle = `dist/bin/${name}.cjs`;
  await bundleCjs(src, bundle);
  const hash = createHash("sha256").update(readFileSync(bundle)).digest("hex").slice(0, 16);
  const handOff = HANDOFFS[name];
  const handOffFile = handOff ? `${name}-handoff.cjs` : "";
  if (handOff) await bundleCjs(handOff.source, join(dirname(out), handOffFile));
  const shim = launcher
    .replace(/^(\/\/.*\n)+/, "")
    .replaceAll("__HANDOFF__", handOffFile)
    .replaceAll("__HANDOFF_ENV__", handOff?.env ?? "")
    .replaceAll("__BUNDLE__", basename(bundle))
    .replaceAll("__NAME__", name)
    .replaceAll("__HASH__", hash);
  writeFileSync(
    out,
    `${interpreterLine(name)}// ${name}: starts ${basename(bundle)} through a V8 code cache (CLUSTERMATIC_COMPILE_CACHE=0 turns it off).\n${shim}`,
  );
  chmodSync(out, 0o755);
  installedBin(name, binPath);
}

/**
 * The file a `bin` entry names (bin/<name>.cjs, committed): it runs dist/bin/<name>.js. It exists
 * before anything is built, so that `pnpm install` in a fresh checkout can link the commands of
 * workspace packages (a `bin` naming a file under dist/ got a "Failed to create bin" warning per
 * command and dependent). Written here when missing or different, so a new command gets one.
 */
function installedBin(name, path) {
  if (path !== `./bin/${name}.cjs`) throw new Error(`the bin ${name} must be ./bin/${name}.cjs, not ${path}`);
  const text = `${interpreterLine(name)}// The ${name} command: it runs the build, dist/bin/${name}.js (pnpm build makes it).
"use strict";
const built = require("node:path").join(__dirname, "../dist/bin/${name}.js");
if (!require("node:fs").existsSync(built)) {
  process.stderr.write(\`${name}: \${built} is missing: build the package first (pnpm build)\\n\`);
  process.exit(1);
}
require(built);
`;
  const file = `bin/${name}.cjs`;
  if (existsSync(file) && readFileSync(file, "utf8") === text) return;
  mkdirSync("bin", { recursive: true });
  writeFileSync(file, text);
  chmodSync(file, 0o755);
  console.log(`wrote ${file}`);
}

/** One CommonJS bundle of a bin's entry (workspace packages inlined), made pure ASCII. */
async function bundleCjs(entry, outfile) {
  await esbuild.build({
    ...shared,
    format: "cjs",
    entryPoints: [entry],
    outfile,
    conditions: [SOURCE],
    plugins: [keepExternal],
    // The one import.meta in a bin is src/version.ts's package.json fallback, which the define
    // above leaves unreachable; esbuild would still warn that CommonJS has no import.meta.
    logOverride: { "empty-import-meta": "silent" },
  });
  asciiOnly(outfile);
}

/**
 * Makes a bundle pure ASCII. V8 keeps a script with any other character as UTF-16 (a full decode
 * at every start, slower lazy compiles); esbuild already escapes strings, regular expressions and
 * identifiers, so what is left are characters in comments, where an escape is as good.
 */
function asciiOnly(file) {
  const text = readFileSync(file, "utf8");
  if (!/[^\x00-\x7f]/.test(text)) return;
  const ascii = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  writeFileSync(file, ascii);
}

/**
 * The first lines of a bin. Node 20 reads and parses the file named by NODE_EXTRA_CA_CERTS at every
 * start, before any script runs (~50-90 ms for a distribution's CA bundle on a small machine), and
 * no command of the suite makes TLS connections; so the bin is a file that both sh and Node read:
 * sh drops the variable and hands the same file to node, which skips the "#!" line and reads the
 * sh line as a string and a comment. xcpufs keeps its environment: it hands it to the programs it
 * runs (the root `env` file), so it is started by node directly.
 */
function interpreterLine(name) {
  if (name === "xcpufs") return "#!/usr/bin/env node\n";
  return '#!/bin/sh\n":" //; unset NODE_EXTRA_CA_CERTS; exec node "$0" "$@"\n';
}

if (existsSync("tsconfig.build.json")) {
  const tsc = require.resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { stdio: "inherit" });
}
