// The conversation between xrx and xrxd over xrxd's Unix socket: length-prefixed frames (u32 little
// endian length of what follows, one type byte, the payload). xrx opens with START; xrxd answers
// READY (then the run is xrxd's) or REFUSE (xrx runs the job itself). Standard input flows only
// while xrxd asks for it, so a run that never reads it leaves it unread, as xrx itself would.

/** Bumped whenever a frame's meaning changes; xrxd refuses a client of another protocol. */
export const XRXD_PROTOCOL = 1;

/** Environment variable naming xrxd's socket (as SSH_AUTH_SOCK names ssh-agent's). */
export const XRXD_SOCK_ENV = "XRXD_SOCK";

export const Frame = {
  /** client: JSON StartRequest */
  Start: 1,
  /** xrxd: the run is accepted */
  Ready: 2,
  /** xrxd: not accepted (UTF-8 reason); the client runs the job itself */
  Refuse: 3,
  /** client: bytes of its standard input */
  Stdin: 4,
  /** client: end of its standard input */
  StdinEnd: 5,
  /** client: a signal it received (UTF-8 name, e.g. SIGINT) */
  Signal: 6,
  /** client: its standard output is gone (EPIPE) */
  OutputClosed: 7,
  /** xrxd: bytes for the client's standard output */
  Stdout: 8,
  /** xrxd: bytes for the client's standard error */
  Stderr: 9,
  /** xrxd: stop sending standard input for now */
  PauseStdin: 10,
  /** xrxd: send standard input */
  ResumeStdin: 11,
  /** xrxd: the run ended (u32 exit status) */
  Exit: 12,
} as const;
export type FrameType = (typeof Frame)[keyof typeof Frame];

/** What xrx hands to xrxd: everything its own main() would have taken from the process. */
export interface StartRequest {
  protocol: number;
  /** xrx's package version; xrxd runs only its own. */
  version: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** "null": standard input is /dev/null; "stream": it is forwarded on demand. */
  stdin: "null" | "stream";
  tty: { stdin: boolean; stdout: boolean; stderr: boolean };
}

/** Largest frame either side accepts; a bigger length means a confused peer. */
export const MAX_FRAME = 16 * 1024 * 1024;

export function encodeFrame(type: FrameType, payload?: Uint8Array | string): Buffer {
  const body =
    payload === undefined ? undefined : typeof payload === "string" ? Buffer.from(payload) : payload;
  const len = 1 + (body?.length ?? 0);
  const head = Buffer.allocUnsafe(5);
  head.writeUInt32LE(len, 0);
  head[4] = type;
  return body && body.length > 0 ? Buffer.concat([head, body]) : head;
}

export function exitFrame(code: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(code >>> 0, 0);
  return encodeFrame(Frame.Exit, b);
}

/** Splits a byte stream into frames; `onFrame` gets each type and payload. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);
  constructor(private readonly onFrame: (type: number, payload: Buffer) => void) {}

  /** Feeds bytes; throws on a frame length out of bounds (the caller drops the connection). */
  push(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    while (buf.length >= 5) {
      const len = buf.readUInt32LE(0);
      if (len < 1 || len > MAX_FRAME) throw new Error(`bad frame length ${len}`);
      if (buf.length < 4 + len) break;
      const type = buf[4]!;
      const payload = buf.subarray(5, 4 + len);
      buf = buf.subarray(4 + len);
      this.onFrame(type, payload);
    }
    this.pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
  }
}

export function parseStartRequest(payload: Buffer): StartRequest {
  const v = JSON.parse(payload.toString("utf8")) as Partial<StartRequest>;
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === "string");
  if (
    typeof v !== "object" ||
    v === null ||
    typeof v.protocol !== "number" ||
    typeof v.version !== "string" ||
    !strings(v.argv) ||
    typeof v.env !== "object" ||
    v.env === null ||
    !Object.values(v.env).every((s) => typeof s === "string") ||
    typeof v.cwd !== "string" ||
    !v.cwd.startsWith("/") ||
    (v.stdin !== "null" && v.stdin !== "stream") ||
    typeof v.tty !== "object" ||
    v.tty === null
  ) {
    throw new Error("malformed start request");
  }
  return {
    protocol: v.protocol,
    version: v.version,
    argv: v.argv,
    env: v.env,
    cwd: v.cwd,
    stdin: v.stdin,
    tty: { stdin: !!v.tty.stdin, stdout: !!v.tty.stdout, stderr: !!v.tty.stderr },
  };
}
