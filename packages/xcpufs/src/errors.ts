// The error type whose message travels to the client as the Rerror text.

/**
 * An error answered to the client with exactly this message (the original's wording) and, in
 * 9P2000.u, `errno` (EIO when not given, as the original answered its own command errors).
 */
export class XcpuError extends Error {
  constructor(
    message: string,
    readonly errno?: number,
  ) {
    super(message);
    this.name = "XcpuError";
  }
}
