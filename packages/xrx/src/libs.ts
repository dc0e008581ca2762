// Shared-library discovery: the transitive DT_NEEDED closure of a program, resolved the way the
// dynamic loader would (RPATH, the extra search path, RUNPATH, ld.so.conf, default directories),
// optionally inside an architecture's sysroot. Only libraries of the program's ELF class and
// machine are accepted, so the set found can run where the program runs.
import { readdirSync, readFileSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join } from "node:path";
import { type ElfInfo, isElf, parseElfFile, readFileHead } from "./elf.js";

export interface LibraryOptions {
  /** Root that prefixes every search directory (an architecture's sysroot); "" or "/" for none. */
  sysroot?: string;
  /** Extra directories searched after DT_RPATH (xrx passes $XCPU_LD_LIBRARY_PATH). */
  extraPath?: string[];
  /** Override the ld.so.conf directories (tests); by default read from <sysroot>/etc/ld.so.conf. */
  confDirs?: string[];
}

export interface LibrarySet {
  program: ElfInfo;
  /** Resolved libraries: soname as named by DT_NEEDED → host path (real file, symlinks followed). */
  libraries: Map<string, string>;
  /** The program interpreter's host path (inside the sysroot), when the program has one. */
  interpreter?: string;
}

/** Raised when a needed library cannot be found. */
export class LibraryNotFoundError extends Error {
  constructor(
    readonly library: string,
    readonly neededBy: string,
  ) {
    super(`cannot find ${library} (needed by ${neededBy})`);
    this.name = "LibraryNotFoundError";
  }
}

const DEFAULT_DIRS = ["/lib64", "/lib", "/usr/lib64", "/usr/lib"];

/** Multiarch directory names (Debian layout) for a machine and class. */
function multiarchDirs(info: ElfInfo): string[] {
  const triplets: Record<number, string[]> = {
    62: ["x86_64-linux-gnu"],
    3: ["i386-linux-gnu"],
    183: ["aarch64-linux-gnu"],
    40: ["arm-linux-gnueabihf", "arm-linux-gnueabi"],
    20: ["powerpc-linux-gnu"],
    21: info.littleEndian ? ["powerpc64le-linux-gnu"] : ["powerpc64-linux-gnu"],
    243: ["riscv64-linux-gnu"],
  };
  const t = triplets[info.machine] ?? [];
  return t.flatMap((d) => [`/lib/${d}`, `/usr/lib/${d}`]);
}

/**
 * The ELF identification of a regular file (class, byte order and machine), read from its first
 * bytes; undefined for anything else (not there, not a regular file, not ELF, too short). A FIFO
 * among the search directories does not stop the search.
 */
function peekElfKind(path: string): { bits: 32 | 64; littleEndian: boolean; machine: number } | undefined {
  const head = readFileHead(path, 20);
  if (head === undefined || head.length < 20 || !isElf(head)) return undefined;
  const le = head[5] === 1;
  return {
    bits: head[4] === 1 ? 32 : 64,
    littleEndian: le,
    machine: le ? head.readUInt16LE(18) : head.readUInt16BE(18),
  };
}

function globToRegExp(glob: string): RegExp {
  const esc = glob
    .replace(/[.+^${}()|\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${esc}$`);
}

/** Directories listed in an ld.so.conf file, following `include` lines with globs. */
export function readLdSoConf(file: string, sysroot = "", seen = new Set<string>()): string[] {
  if (seen.has(file)) return [];
  seen.add(file);
  let text: string;
  try {
    text = readFileSync(join(sysroot || "/", file), "utf8");
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const inc = /^include\s+(.+)$/.exec(line);
    if (inc) {
      for (const pattern of inc[1]!.split(/\s+/)) {
        const abs = isAbsolute(pattern) ? pattern : join(dirname(file), pattern);
        const dir = dirname(abs);
        const re = globToRegExp(basename(abs));
        let names: string[] = [];
        try {
          names = readdirSync(join(sysroot || "/", dir)).sort();
        } catch {
          names = [];
        }
        for (const n of names) if (re.test(n)) out.push(...readLdSoConf(join(dir, n), sysroot, seen));
      }
      continue;
    }
    if (line.startsWith("hwcap")) continue;
    out.push(line.split(/[=\s]/)[0]!);
  }
  return out;
}

function expandOrigin(dir: string, origin: string): string {
  return dir.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin);
}

/**
 * Finds the libraries a program needs, transitively.
 * `program` is a host path (already inside the sysroot when one is used).
 */
export function findLibraries(program: string, opts: LibraryOptions = {}): LibrarySet {
  const root = opts.sysroot && opts.sysroot !== "/" ? opts.sysroot : "";
  const prog = parseElfFile(program);
  const confDirs = opts.confDirs ?? readLdSoConf("/etc/ld.so.conf", root);
  const fallback = [...confDirs, ...multiarchDirs(prog), ...DEFAULT_DIRS];
  const libraries = new Map<string, string>();
  const result: LibrarySet = { program: prog, libraries };
  if (prog.interpreter) {
    const ip = join(root || "/", prog.interpreter);
    try {
      result.interpreter = realpathSync(ip);
    } catch {
      // The interpreter is the node's business when it is not in the sysroot.
    }
  }
  const matches = (path: string): boolean => {
    const kind = peekElfKind(path);
    return (
      kind !== undefined &&
      kind.bits === prog.bits &&
      kind.littleEndian === prog.littleEndian &&
      kind.machine === prog.machine
    );
  };
  const queue: Array<{ info: ElfInfo; path: string }> = [{ info: prog, path: program }];
  const done = new Set<string>();
  while (queue.length > 0) {
    const { info, path } = queue.shift()!;
    const origin = dirname(path);
    for (const lib of info.needed) {
      if (libraries.has(lib) || done.has(lib)) continue;
      let found: string | undefined;
      if (lib.includes("/")) {
        const p = isAbsolute(lib) ? join(root || "/", lib) : join(origin, lib);
        if (matches(p)) found = p;
      } else {
        // RPATH applies only when there is no RUNPATH (as in the dynamic loader); the program's
        // RPATH is also searched for its dependencies.
        const rp = info.runpath.length === 0 ? [...info.rpath, ...(info === prog ? [] : prog.rpath)] : [];
        const dirs = [
          ...rp.map((d) => expandOrigin(d, origin)),
          ...(opts.extraPath ?? []),
          ...info.runpath.map((d) => expandOrigin(d, origin)),
          ...fallback,
        ];
        for (const d of dirs) {
          // $ORIGIN-expanded directories already point into the host tree.
          const hostDir = d.startsWith(origin) || (root && d.startsWith(root)) ? d : join(root || "/", d);
          const p = join(hostDir, lib);
          if (matches(p)) {
            found = p;
            break;
          }
        }
      }
      if (!found) throw new LibraryNotFoundError(lib, basename(path));
      done.add(lib);
      const real = realpathSync(found);
      // The interpreter is loaded by the kernel, never through DT_NEEDED lookup on the node.
      if (result.interpreter && real === result.interpreter) continue;
      libraries.set(lib, real);
      queue.push({ info: parseElfFile(real), path: found });
    }
  }
  return result;
}
