// Globals that tools/build.mjs replaces with constants when it bundles a package (esbuild `define`).
// Code run from source (vitest, tsx) has no such global: test it with `typeof` first.

/**
 * The "version" of the package.json of the package being bundled. A bin inlines the workspace
 * packages it imports, so only a package's own CLI code should read it (through src/version.ts).
 */
declare const __CLUSTERMATIC_VERSION__: string;
