import { closeSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { basename, resolve } from "node:path";

const O_CLOEXEC = 0o2000000;

/**
 * Closes the descriptors above 2 this process inherited without close-on-exec (a launcher's
 * leftovers: every program the server starts would get them too). Node's own descriptors all have
 * close-on-exec set, but the profiling logs V8 opens before any script runs (`--perf-basic-prof`,
 * `--perf-prof`, `--prof`) do not: those are kept, or V8 would go on writing its log into whatever
 * reuses the number (the fork helper's request pipe). Only for the command: a program that embeds
 * the server owns its descriptors.
 */
export function closeInheritedDescriptors(): number[] {
  let names: string[];
  try {
    names = readdirSync("/proc/self/fd");
  } catch {
    return [];
  }
  const closed: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2) continue;
    try {
      const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "latin1"))?.[1];
      if (flags === undefined || (Number.parseInt(flags, 8) & O_CLOEXEC) !== 0) continue;
      if (isRuntimeLog(readlinkSync(`/proc/self/fd/${fd}`))) continue;
    } catch {
      continue; // the listing's own descriptor, gone by now
    }
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {}
  }
  return closed;
}

/**
 * Whether `path` is a log V8 writes for a profiler: named with this process's id
 * (`/tmp/perf-PID.map`, `jit-PID.dump`, `isolate-0x…-PID-v8.log`) or the `--logfile` given to Node.
 */
export function isRuntimeLog(path: string, pid = process.pid, nodeArgs = runtimeArgs()): boolean {
  if (!path.startsWith("/")) return false; // pipe:[…], socket:[…], anon_inode:…
  if (new RegExp(`(^|\\D)${pid}(\\D|$)`).test(basename(path))) return true;
  const logfile = optionValue(nodeArgs, "--logfile");
  return logfile !== undefined && resolve(logfile) === path;
}

/** Node's own options: those on its command line, then NODE_OPTIONS. */
function runtimeArgs(): string[] {
  return [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/).filter(Boolean)];
}

/** The last value of `--name=V` or `--name V` in args. */
function optionValue(args: string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a.startsWith(`${name}=`)) value = a.slice(name.length + 1);
    else if (a === name && i + 1 < args.length) value = args[++i];
  }
  return value;
}
