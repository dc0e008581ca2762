// What a CLI main() needs from its surroundings, so tests can call it in-process.

export interface CliIo {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown };
  /** Stops a long-running command (the daemon, `xstat --watch`) as SIGTERM would. */
  signal?: AbortSignal;
  /** Install SIGHUP/SIGINT/SIGTERM handlers (default true; tests pass false). */
  handleSignals?: boolean;
  /**
   * statfs is this process (the bin entry): without -f, -d or -D it may detach into the
   * background as the original did. In-process callers leave it unset and stay in the foreground.
   */
  detach?: boolean;
}

export const processIo: CliIo = { stdout: process.stdout, stderr: process.stderr };

/** Exit codes shared by the CLIs. */
export const EXIT_OK = 0;
export const EXIT_FAIL = 1;
export const EXIT_USAGE = 2;
