// Whether a descriptor is /dev/null: an xrx whose input is /dev/null closes each program's stdin
// with its exec instead of feeding it. Kept apart so the xrxd hand-off module can use it alone.
import { fstatSync, statSync } from "node:fs";

/** True when `fd` is /dev/null; throws (EBADF) when `fd` is not open. */
export function isDevNull(fd: number): boolean {
  const st = fstatSync(fd);
  return st.isCharacterDevice() && st.rdev === statSync("/dev/null").rdev;
}
