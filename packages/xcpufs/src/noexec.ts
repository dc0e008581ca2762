// Files on a file system mounted noexec (a hardened /tmp, a noexec home): programs there fail to
// start with a bare EACCES, and the session directories of a server whose tmpdir is such a mount
// can hold no program. The fork helpers ask the same question in their own code.

import { readFileSync, realpathSync } from "node:fs";

/** Added to a start failure's EACCES when the program is on a noexec mount. */
export const NOEXEC_WHY = " (on a file system mounted noexec)";

/** Whether `path` is on a file system mounted noexec (false when that cannot be told). */
export function onNoexecMount(path: string): boolean {
  try {
    return noexecIn(readFileSync("/proc/self/mountinfo", "latin1"), realpathSync(path));
  } catch {
    return false;
  }
}

/**
 * Whether the resolved path `real` is on a noexec mount by the mount table `mountinfo` (as in
 * /proc/PID/mountinfo): the mount whose point is the longest prefix of the path, the latest of
 * those mounted on one point.
 */
export function noexecIn(mountinfo: string, real: string): boolean {
  let best = -1;
  let noexec = false;
  for (const line of mountinfo.split("\n")) {
    // id parent major:minor root mount-point mount-options ...
    const f = line.split(" ");
    if (f.length < 6) continue;
    const point = unescapeMountField(f[4] as string);
    const inside = point === "/" || real === point || real.startsWith(`${point}/`);
    if (!inside || point.length < best) continue;
    best = point.length;
    noexec = (f[5] as string).split(",").includes("noexec");
  }
  return noexec;
}

/** The kernel writes a space, tab, newline or backslash in a mount point as \ooo (octal). */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}
