// The error type whose message travels to the client as the Rerror text.

/** An error answered to the client with exactly this message (the original's wording). */
export class XcpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "XcpuError";
  }
}
