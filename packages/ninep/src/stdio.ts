// Standard output of the command-line tools: every byte written, or a failure said once.
import { writeSync } from "node:fs";

type WriteFn = (chunk: Buffer | string, encoding: BufferEncoding, cb: (err?: Error | null) => void) => void;

/**
 * Node writes standard output that is a file or a device (not a pipe, not a terminal) with one
 * writeSync per chunk and ignores a short write: on a disk with 4 KiB left, 12 KiB of output keep
 * 4 KiB and nothing is said. Makes such a stream write every byte or fail with the error (ENOSPC,
 * EIO), as a pipe or a terminal does. Other streams are left as they are.
 */
export function writeFilesFully(stream: NodeJS.WritableStream = process.stdout): void {
  const s = stream as unknown as { fd?: number; _write?: WriteFn; constructor?: { name?: string } };
  const fd = s.fd;
  if (typeof fd !== "number" || s.constructor?.name !== "SyncWriteStream") return;
  s._write = (chunk, encoding, cb) => {
    try {
      const buf = typeof chunk === "string" ? Buffer.from(chunk, encoding) : chunk;
      for (let off = 0; off < buf.length; ) {
        const n = writeSync(fd, buf, off, buf.length - off);
        if (n <= 0) throw Object.assign(new Error("no byte written"), { code: "EIO" });
        off += n;
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  };
}

/**
 * For a tool's bin entry: standard output written fully (writeFilesFully), a failure to write it
 * remembered instead of crashing the process with a stack trace (a reader that went away, EPIPE,
 * is not a failure), and `finish(code)` that exits once stdout and stderr are flushed, with 1 and
 * `PROG: cannot write standard output (…)` on stderr when output was lost and `code` said 0.
 */
export function guardStdout(prog: string): { finish(code: number): void } {
  writeFilesFully(process.stdout);
  let failure: (Error & { code?: string }) | undefined;
  const note = (e: (Error & { code?: string }) | null | undefined) => {
    if (e && e.code !== "EPIPE" && e.code !== "ERR_STREAM_DESTROYED") failure ??= e;
  };
  process.stdout.on("error", note);
  return {
    finish(code: number) {
      let left = 2;
      const done = () => {
        if (--left > 0) return;
        if (failure && code === 0) {
          process.stderr.write(`${prog}: cannot write standard output (${failure.message})\n`);
          code = 1;
        }
        process.exit(code);
      };
      // A failed write never drains: its callback still comes (with the error), so this ends.
      process.stdout.write("", (e?: Error | null) => {
        note(e as Error & { code?: string });
        done();
      });
      process.stderr.write("", done);
    },
  };
}
