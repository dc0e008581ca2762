// What goes to a node: program lookup on PATH (inside an architecture's sysroot), the set of
// files copied into a session's fs/ (program, its libraries, or a whole directory), the remote
// command and its argv. Pure local work: no network.
import { accessSync, constants, existsSync, lstatSync, readdirSync, realpathSync, statSync } from "node:fs";
import { machine, type } from "node:os";
import { basename, isAbsolute, join, resolve } from "node:path";
import { isElf, readFileHead } from "./elf.js";
import { findLibraries } from "./libs.js";

/** Raised for a launch that cannot be prepared; the message is what the user sees. */
export class StagingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StagingError";
  }
}

/** One file to copy: host path → path relative to the session's fs/. */
export interface StageFile {
  local: string;
  remote: string;
  mode: number;
  size: number;
}

export interface StagePlan {
  /** Directories to create under fs/, parents first. */
  dirs: Array<{ remote: string; mode: number }>;
  files: StageFile[];
  /** Program name given to `exec` (relative → inside the session directory, absolute → node path). */
  command: string;
  /** argv tokens; argv[0] is the staged file's base name, or the program as typed for -l. */
  argv: string[];
  /** Total bytes to copy per node. */
  bytes: number;
}

/** The local architecture in the node `arch` file's form, e.g. `/Linux/x86_64`. */
export function localArch(): string {
  const m = machine();
  return `/${type()}/${m.startsWith("Power") ? "powerpc" : m}`;
}

/** Normalises an `arch` file's content: trims whitespace and the trailing newline. */
export function normaliseArch(arch: string): string {
  return arch.trim();
}

/**
 * The host directory that stands for the node's root for one architecture: `$XCPU_SYSROOT/<arch>`
 * when it exists, "" (the local tree) when the architecture is the local one, else an error.
 */
export function sysrootFor(arch: string, sysrootBase: string | undefined, local = localArch()): string {
  const a = normaliseArch(arch);
  if (sysrootBase) {
    const dir = join(sysrootBase, a);
    if (existsSync(dir) && statSync(dir).isDirectory()) return dir;
  }
  if (a === local) return "";
  throw new StagingError(`cannot find system root for architecture ${a}`);
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds the program to stage. A name with a `/` is used as is (relative to cwd, never prefixed);
 * a directory of that name in cwd is taken as is; otherwise $PATH is searched inside `sysroot`.
 * Returns the host path.
 */
export function lookupProgram(
  name: string,
  opts: { path?: string; sysroot?: string; cwd?: string } = {},
): string {
  const cwd = opts.cwd ?? process.cwd();
  if (name.includes("/")) {
    const p = resolve(cwd, name);
    if (!existsSync(p)) throw new StagingError(`bad command name: no file "${name}"`);
    return p;
  }
  const local = resolve(cwd, name);
  if (existsSync(local) && statSync(local).isDirectory()) return local;
  const root = opts.sysroot ?? "";
  for (const dir of (opts.path ?? process.env.PATH ?? "").split(":")) {
    if (!dir) continue;
    const p = join(root || "/", isAbsolute(dir) ? dir : resolve(cwd, dir), name);
    if (isExecutableFile(p)) return p;
  }
  throw new StagingError(`bad command name: no file "${name}" in $PATH`);
}

export interface PlanOptions {
  /** The program as typed. */
  program: string;
  args: string[];
  /**
   * -e: what the node executes instead of the copied program's own name: a file inside the copied
   * directory, or an absolute path of a program already on the node (the copy is then its data).
   */
  execName?: string;
  /** -S: do not copy shared libraries. */
  noLibraries?: boolean;
  /** Architecture root ("" = local tree). */
  sysroot?: string;
  /** $PATH for the lookup. */
  path?: string;
  /** $XCPU_LD_LIBRARY_PATH split on ':'. */
  extraLibPath?: string[];
  cwd?: string;
}

function isElfFile(path: string): boolean {
  const head = readFileHead(path, 4);
  return head !== undefined && isElf(head);
}

/** A file name's bytes for a message: printable ASCII as is, anything else as \xNN. */
function escapeBytes(raw: Buffer): string {
  let out = "";
  for (const b of raw)
    out += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
  return out;
}

/** Builds the staging plan for one architecture. */
export function planStaging(opts: PlanOptions): StagePlan {
  const host = lookupProgram(opts.program, { path: opts.path, sysroot: opts.sysroot, cwd: opts.cwd });
  const plan: StagePlan = { dirs: [], files: [], command: "", argv: [], bytes: 0 };
  const add = (local: string, remote: string) => {
    const st = statSync(local);
    if (plan.files.some((f) => f.remote === remote)) return;
    plan.files.push({ local, remote, mode: st.mode & 0o7777, size: st.size });
    plan.bytes += st.size;
  };
  const addLibraries = (exe: string) => {
    if (opts.noLibraries || !isElfFile(exe)) return;
    const set = findLibraries(exe, { sysroot: opts.sysroot, extraPath: opts.extraLibPath });
    for (const [name, path] of set.libraries) add(path, name);
  };
  const st = statSync(host);
  if (st.isDirectory()) {
    const walk = (dir: string, rel: string, seen: Set<string>) => {
      const real = realpathSync(dir);
      if (seen.has(real)) return; // symlink loop
      seen.add(real);
      const raws = readdirSync(dir, { encoding: "buffer" });
      for (const raw of raws) {
        // 9P names are UTF-8: a name that is not cannot be created on a node (nor even be
        // named here: as a string it would stand for another file).
        if (!Buffer.from(raw.toString("utf8")).equals(raw))
          throw new StagingError(
            `cannot stage ${join(dir, escapeBytes(raw))}: the file name is not valid UTF-8`,
          );
      }
      for (const name of raws.map((raw) => raw.toString("utf8")).sort()) {
        const local = join(dir, name);
        const remote = rel ? `${rel}/${name}` : name;
        let s: ReturnType<typeof statSync>;
        try {
          s = statSync(local); // follows symlinks, as the original
        } catch (err) {
          let link = false;
          try {
            link = lstatSync(local).isSymbolicLink();
          } catch {}
          throw new StagingError(
            `cannot stage ${local}: ${link ? "broken symbolic link" : (err as Error).message}`,
          );
        }
        if (s.isDirectory()) {
          plan.dirs.push({ remote, mode: s.mode & 0o7777 });
          walk(local, remote, new Set(seen));
        } else if (s.isFile()) {
          add(local, remote);
        }
      }
    };
    walk(host, "", new Set());
    const exe = opts.execName ?? basename(host);
    if (!isAbsolute(exe)) {
      const exeLocal = join(host, exe);
      if (!existsSync(exeLocal)) throw new StagingError(`no file "${exe}" in directory ${opts.program}`);
      addLibraries(exeLocal);
    }
    plan.command = exe;
    plan.argv = [exe, ...opts.args];
  } else if (st.isFile()) {
    add(host, basename(host));
    addLibraries(host);
    // argv[0] is the name the node runs, the base name (the original sends `cat` for /bin/cat).
    const exe = opts.execName ?? basename(host);
    if (!isAbsolute(exe) && exe !== basename(host) && exe !== `./${basename(host)}`)
      throw new StagingError(`-e ${exe}: the only file copied is ${basename(host)}`);
    plan.command = exe;
    plan.argv = [exe, ...opts.args];
  } else {
    throw new StagingError(`cannot stage ${opts.program}: not a regular file or directory`);
  }
  return plan;
}

/** The plan for -l: nothing copied, the program path is used as is on the node. */
export function planLocal(program: string, args: string[]): StagePlan {
  return { dirs: [], files: [], command: program, argv: [program, ...args], bytes: 0 };
}

/**
 * The tree-spawn fan-out rule: splits `targets` under a limit `k` into direct children, each
 * with the list of targets it must clone to.
 */
export function fanout<T>(targets: readonly T[], k: number): Array<{ child: T; delegated: T[] }> {
  const s = targets.length;
  if (k <= 0 || s === 0) return targets.map((child) => ({ child, delegated: [] }));
  const direct = Math.min(k, s);
  const m = Math.ceil(s / direct);
  const g = m > 1 ? Math.ceil((s - direct) / (m - 1)) : 0;
  const cut = s - direct + g;
  const out: Array<{ child: T; delegated: T[] }> = [];
  for (let i = 0; i < cut; i += m) {
    const group = targets.slice(i, Math.min(i + m, cut));
    out.push({ child: group[0]!, delegated: group.slice(1) });
  }
  for (let i = cut; i < s; i++) out.push({ child: targets[i]!, delegated: [] });
  return out;
}

/** `-n .` and over-large values: about √N direct children. */
export function treeWidth(spec: string | undefined, nodes: number): number {
  if (spec === undefined || spec === "" || spec === "0") return 0;
  if (spec === ".") return Math.ceil(Math.sqrt(nodes));
  const n = Number(spec);
  if (!Number.isInteger(n) || n < 0) throw new StagingError(`bad -n value "${spec}": expected a number or .`);
  return n > nodes ? Math.ceil(Math.sqrt(nodes)) : n;
}
