// Starts a real diod (9P2000.L server) exporting a temp directory on 127.0.0.1, for interop tests.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import net from "node:net";

export const DIOD = process.env.DIOD_PATH ?? "/usr/sbin/diod";

/** Why diod tests cannot run here, or undefined when they can. */
export function diodUnavailable(): string | undefined {
  if (!existsSync(DIOD)) return `diod not found at ${DIOD} (apt-get install diod)`;
  return undefined;
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/**
 * Whether process `pid` listens on 127.0.0.1:`port`. A port found free a moment earlier may have
 * been taken by another program since: connecting to it would not tell whose server answers.
 */
function listensOn(pid: number, port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const line of readFileSync("/proc/net/tcp", "latin1").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === "0A") inodes.add(f[9] ?? "");
  }
  if (inodes.size === 0) return false;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1]!)) return true;
    }
  } catch {
    // the process is gone
  }
  return false;
}

export interface DiodHandle {
  port: number;
  address: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Runs `diod -f -n -S -l 127.0.0.1:PORT -e DIR` and waits until it accepts connections. With
 * `squash: false` (no -S; needs root) every attach acts as the user its n_uname names.
 */
export async function startDiod(dir: string, opts: { squash?: boolean } = {}): Promise<DiodHandle> {
  const squash = opts.squash === false ? [] : ["-S"];
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(
      DIOD,
      ["-f", "-n", ...squash, "-c", "/dev/null", "-l", `127.0.0.1:${port}`, "-e", dir],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    child.stderr?.on("data", (d) => {
      stderr += d;
    });
    let exited = false;
    child.once("exit", () => {
      exited = true;
    });
    const deadline = Date.now() + 20_000;
    while (!exited && Date.now() < deadline) {
      if (child.pid !== undefined && listensOn(child.pid, port)) {
        const stop = () =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGTERM");
          });
        return { port, address: `tcp!127.0.0.1!${port}`, child, stop };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!exited) child.kill("SIGKILL");
    if (attempt >= 2) throw new Error(`diod did not start: ${stderr.trim()}`);
  }
}
