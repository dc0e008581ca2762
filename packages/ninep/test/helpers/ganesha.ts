// Starts a real nfs-ganesha serving 9P2000.L, for interop tests: a 9P server written elsewhere,
// with its own reading of the protocol (bare-errno Rerror on .L, O_TRUNC ignored, Tremove of a
// fid walked through several names acting on the wrong file).
//
// ganesha listens on every address of its network namespace and cannot be told otherwise, so it
// runs in a namespace of its own, reached over a veth pair whose two ends have addresses from
// 198.18.251.0-198.18.254.255 (part of the benchmarking range 198.18.0.0/15, apart from the /24s
// other namespace tests take by their pid) that exist only on that link.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";

export const GANESHA = process.env.GANESHA_PATH ?? "/usr/bin/ganesha.nfsd";
const PORT = 5641;

/** The directory holding ganesha's FSAL plugins (libfsalvfs.so), or undefined. */
function pluginDir(): string | undefined {
  for (const lib of ["/usr/lib", "/usr/lib64"]) {
    if (!existsSync(lib)) continue;
    for (const d of [join(lib, "ganesha"), ...readdirSync(lib).map((a) => join(lib, a, "ganesha"))]) {
      if (existsSync(join(d, "libfsalvfs.so"))) return d;
    }
  }
  return undefined;
}

function hasIp(): boolean {
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Why ganesha tests cannot run here, or undefined when they can. */
export function ganeshaUnavailable(): string | undefined {
  if (!existsSync(GANESHA))
    return `ganesha not found at ${GANESHA} (apt-get install nfs-ganesha nfs-ganesha-vfs)`;
  if (!pluginDir()) return "ganesha's VFS plugin is missing (apt-get install nfs-ganesha-vfs)";
  if (process.getuid?.() !== 0) return "not root (ganesha runs in a network namespace of its own)";
  if (!hasIp()) return "ip (iproute2) missing";
  return undefined;
}

export interface GaneshaHandle {
  /** tcp!198.18.N.2!5641 */
  address: string;
  child: ChildProcess;
  /** ganesha's log so far (for a failing test's message). */
  log(): string;
  /** Whether ganesha is still running (it has crashed on some requests). */
  alive(): boolean;
  stop(): Promise<void>;
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/**
 * Runs ganesha exporting `dir` (RW, root not squashed) over 9P only, in namespace `ns`, and waits
 * until it accepts connections. Attach with aname `dir` and an existing user (ganesha crashes when
 * a connection whose attach named an unknown user closes).
 */
export async function startGanesha(dir: string, work: string): Promise<GaneshaHandle> {
  const plugins = pluginDir() as string;
  const tag = String(process.pid % 10000);
  const ns = `ngns${tag}`;
  const hostEnd = `ngv${tag}`;
  const net24 = `198.18.${251 + (process.pid % 4)}`;
  const ip = (args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
  const removeNetwork = () => {
    try {
      ip(["netns", "del", ns]); // takes the veth pair with it
    } catch {
      // not there
    }
    try {
      ip(["link", "del", hostEnd]);
    } catch {
      // not there
    }
  };
  removeNetwork(); // left by an earlier process with the same tag
  ip(["netns", "add", ns]);
  try {
    ip(["link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    ip(["addr", "add", `${net24}.1/30`, "dev", hostEnd]);
    ip(["link", "set", hostEnd, "up"]);
    ip(["-n", ns, "addr", "add", `${net24}.2/30`, "dev", "eth0"]);
    ip(["-n", ns, "link", "set", "eth0", "up"]);
    ip(["-n", ns, "link", "set", "lo", "up"]);
  } catch (err) {
    removeNetwork();
    throw err;
  }

  mkdirSync(join(work, "recovery"), { recursive: true });
  const conf = join(work, "ganesha.conf");
  const logFile = join(work, "ganesha.log");
  writeFileSync(
    conf,
    `NFS_CORE_PARAM {
  Protocols = 9P;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  Plugins_Dir = ${plugins};
}
NFSV4 {
  Graceless = true;
  RecoveryBackend = fs;
  RecoveryRoot = ${join(work, "recovery")};
}
_9P {
  _9P_TCP_Port = ${PORT};
}
EXPORT {
  Export_Id = 1;
  Path = ${dir};
  Pseudo = /export;
  Protocols = 9P;
  Access_Type = RW;
  Squash = No_Root_Squash;
  SecType = sys;
  FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
`,
  );
  // `ip netns exec` execs the program: the child's pid is ganesha's.
  const child = spawn(
    "ip",
    [
      "netns",
      "exec",
      ns,
      GANESHA,
      "-F",
      "-f",
      conf,
      "-L",
      logFile,
      "-p",
      join(work, "ganesha.pid"),
      "-N",
      "NIV_EVENT",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const stop = async () => {
    if (!exited) {
      const gone = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      // It takes a few seconds to leave on SIGTERM; past 15 s it is killed.
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await gone;
      clearTimeout(timer);
    }
    removeNetwork();
  };
  const deadline = Date.now() + 30_000;
  while (!exited && Date.now() < deadline) {
    if (await canConnect(`${net24}.2`, PORT)) {
      return {
        address: `tcp!${net24}.2!${PORT}`,
        child,
        log,
        alive: () => !exited,
        stop,
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`ganesha did not start: ${stderr.trim()}\n${log().slice(-2000)}`);
}
