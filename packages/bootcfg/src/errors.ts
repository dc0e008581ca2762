// One error type for everything bootcfg reports to a user, with a stable code to match on.

/** Stable error codes (documented in README.md). */
export type BootcfgErrorCode =
  | "EUSAGE" // bad command line: exit 2
  | "EFORMAT" // a file is not in the format expected, or is damaged
  | "EUNKNOWN" // a file is in no format bootcfg recognises
  | "ECLUSTER" // the cluster file is invalid (file:line: key: problem)
  | "ENODE" // a node name is not in the cluster file
  | "ECHECK" // a compatibility check failed
  | "EIO" // a referenced file could not be read or written
  | "ETOOL"; // an external program failed (tests and `qemu --run` only)

export class BootcfgError extends Error {
  readonly code: BootcfgErrorCode;
  constructor(code: BootcfgErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BootcfgError";
    this.code = code;
  }
}

/** A format error: `what` names the file or structure, `message` says what is wrong. */
export function formatError(what: string, message: string): BootcfgError {
  return new BootcfgError("EFORMAT", `${what}: ${message}`);
}
