// The xrx side of xrxd, loaded by the built xrx before anything else when XRXD_SOCK is set: it hands
// the run to xrxd and relays standard streams, signals and the exit status. It loads nothing of
// xrx itself; that is the point (xrxd's copy is already loaded and compiled). When xrxd cannot be
// reached or declines the run, xrx runs the job itself, with nothing read from its input yet.
import { connect } from "node:net";
import { isatty } from "node:tty";
import { isDevNull } from "../dev-null.js";
import { PACKAGE_VERSION } from "../version.js";
import {
  encodeFrame,
  Frame,
  FrameReader,
  type StartRequest,
  XRXD_PROTOCOL,
  XRXD_SOCK_ENV,
} from "./protocol.js";

const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const;
/** How long xrxd may take to accept a run before xrx runs it itself. */
const ACCEPT_TIMEOUT_MS = 5000;

/** Hands this process's xrx run to xrxd; calls `runHere` instead when xrxd does not take it. */
export function run(runHere: () => void): void {
  const path = process.env[XRXD_SOCK_ENV];
  const stdinKind = inputKind();
  if (!path || stdinKind === undefined) {
    runHere();
    return;
  }

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  const request: StartRequest = {
    protocol: XRXD_PROTOCOL,
    version: PACKAGE_VERSION,
    argv: process.argv.slice(2),
    env,
    cwd: process.cwd(),
    stdin: stdinKind,
    tty: { stdin: isatty(0), stdout: isatty(1), stderr: isatty(2) },
  };

  const sock = connect(path);
  let accepted = false;
  let declined = false;
  let exitCode: number | undefined;
  const decline = () => {
    if (accepted || declined) return;
    declined = true;
    clearTimeout(timer);
    sock.destroy();
    runHere();
  };
  const timer = setTimeout(decline, ACCEPT_TIMEOUT_MS);
  sock.on("connect", () => sock.write(encodeFrame(Frame.Start, JSON.stringify(request))));
  sock.on("error", () => {});

  let stdoutGone = false;
  const send = (frame: Buffer) => {
    if (!sock.destroyed) sock.write(frame);
  };
  // Standard input flows while xrxd asks for it AND the socket takes it. xrxd's PauseStdin comes
  // a round trip late; without the socket's own backpressure a fast input (a file, `cat big |`)
  // would be read on into this process's socket buffer meanwhile, megabytes of it, all of which
  // reach xrxd after it asked to pause (it drops a client that sends it more than it may hold).
  let inputWanted = false;
  let socketFull = false;
  const flowInput = () => {
    if (inputWanted && !socketFull) process.stdin.resume();
    else process.stdin.pause();
  };
  const sendInput = (frame: Buffer) => {
    if (sock.destroyed || sock.write(frame)) return;
    socketFull = true;
    flowInput();
  };
  sock.on("drain", () => {
    socketFull = false;
    flowInput();
  });
  const out = (stream: NodeJS.WriteStream, data: Buffer) => {
    if (!stream.write(data)) {
      sock.pause();
      stream.once("drain", () => sock.resume());
    }
  };
  let inputListening = false;
  let outputError: NodeJS.ErrnoException | undefined;
  const reader = new FrameReader((type, payload) => {
    if (!accepted) {
      if (type === Frame.Ready) {
        accepted = true;
        clearTimeout(timer);
        onAccepted();
      } else decline();
      return;
    }
    switch (type) {
      case Frame.Stdout:
        if (!stdoutGone) out(process.stdout, payload);
        break;
      case Frame.Stderr:
        out(process.stderr, payload);
        break;
      case Frame.ResumeStdin:
        if (!inputListening) {
          inputListening = true;
          process.stdin.on("data", (d: Buffer) => sendInput(encodeFrame(Frame.Stdin, d)));
          process.stdin.once("end", () => send(encodeFrame(Frame.StdinEnd)));
          process.stdin.once("error", () => send(encodeFrame(Frame.StdinEnd)));
        }
        inputWanted = true;
        flowInput();
        break;
      case Frame.PauseStdin:
        inputWanted = false;
        flowInput();
        break;
      case Frame.Exit:
        exitCode = payload.length >= 4 ? payload.readUInt32LE(0) : 1;
        break;
    }
  });
  sock.on("data", (chunk: Buffer) => {
    try {
      reader.push(chunk);
    } catch {
      sock.destroy();
    }
  });
  sock.on("close", () => {
    if (!accepted) {
      decline();
      return;
    }
    if (exitCode === undefined) {
      process.stderr.write(`xrx: lost xrxd (${XRXD_SOCK_ENV}=${path}) during the run\n`);
      exitCode = 1;
    }
    if (outputError) {
      // As without xrxd: a full disk or an I/O error is not a closed pipe.
      process.stderr.write(`xrx: cannot write standard output (${outputError.message}): the job was ended\n`);
      exitCode = 1;
    }
    const code = exitCode;
    process.exitCode = code;
    process.stdout.write("", () => process.exit(code));
  });

  function onAccepted() {
    for (const sig of FORWARDED) process.on(sig, () => send(encodeFrame(Frame.Signal, sig)));
    // EPIPE (`xrx ... | head -1`) or any other failure: nobody gets the output any more.
    process.stdout.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE") outputError ??= e;
      if (stdoutGone) return;
      stdoutGone = true;
      send(encodeFrame(Frame.OutputClosed));
      sock.resume(); // it may wait for a drain that will not come
    });
  }
}

/** "null" for /dev/null, "stream" for anything else readable, undefined when fd 0 is not open. */
function inputKind(): StartRequest["stdin"] | undefined {
  try {
    return isDevNull(0) ? "null" : "stream";
  } catch {
    return undefined;
  }
}
