// Turns a 9P2000.L Rlerror errno into error text: Plan 9's canonical string when one matches,
// otherwise the Linux errno name.

import { getSystemErrorName } from "node:util";
import { Ename, Errno } from "../errors.js";

const TEXT: Record<number, string> = {
  [Errno.EPERM]: "operation not permitted",
  [Errno.ENOENT]: Ename.NotFound,
  [Errno.EIO]: Ename.Io,
  [Errno.EBADF]: Ename.UnknownFid,
  [Errno.EACCES]: Ename.Perm,
  [Errno.EEXIST]: Ename.Exists,
  [Errno.ENOTDIR]: Ename.NotDir,
  [Errno.EISDIR]: Ename.IsDir,
  [Errno.EINVAL]: "invalid argument",
  [Errno.ENOSPC]: Ename.NoSpace,
  [Errno.EROFS]: Ename.ReadOnly,
  [Errno.ENOTEMPTY]: Ename.NotEmpty,
  [Errno.EOPNOTSUPP]: Ename.NotSupported,
  [Errno.ENOSYS]: "function not implemented",
  [Errno.EINTR]: Ename.Interrupted,
};

/** Text for a Linux errno carried by Rlerror. */
export function lerrorText(ecode: number): string {
  const known = TEXT[ecode];
  if (known) return known;
  try {
    return getSystemErrorName(-ecode);
  } catch {
    return `errno ${ecode}`;
  }
}
