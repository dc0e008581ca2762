// xrx: run a program on nodes. Keeps the original command line; see README for what changed.
import { resolve } from "node:path";
import { OUTPUT_CLOSED, runJob } from "../job.js";
import { decodeXcpuEnv } from "../quote.js";
import { PACKAGE_VERSION } from "../version.js";
import {
  type CliIo,
  intOption,
  isEmptyInput,
  parseCommandLine,
  reportError,
  secondsOption,
  UsageError,
} from "./args.js";
import { describeNotUp, launchIdentity, nodeList, statfsNodes } from "./common.js";

export const XRX_USAGE =
  "usage: xrx [-dvlsSLp] [-a] [--statfs src] [-e exec] [-n N|.] [-j jobid] [-J jobid] [-c cwd] [-m msize] [-k privkey | --no-key] [-t secs] [--call-timeout secs] [--alive-timeout secs] [--max-connecting N] nodes program [args...]";

const HELP = `${XRX_USAGE}

Run a program on xcpufs nodes: copy it (and its shared libraries) into a fresh session on every
node, start it everywhere, stream stdin/stdout/stderr, and exit with the program's status.

Nodes: n[1-16],n20,host!port ... or $NODES (then the first argument is the program).

Options:
  -a            all nodes statfs reports up (${"/mnt/statfs/state"}, else localhost!20003);
                --statfs SRC takes another table file or statfs address
  -l            the program is already on the nodes (absolute path); nothing is copied
  -s / -S       copy shared libraries (default) / do not
  -e NAME       run NAME: a file inside a directory program (all of it is copied),
                or an absolute path already on the nodes (run on what was copied)
  -n N|.        tree spawn: at most N direct copies from here, nodes copy to the rest
                (. or N above the node count = about sqrt(nodes)); 0 = flat
  -L            line-buffered output; -p prefixes each line with "node: " (implies -L)
  -j JOB        job id (default $JOBID); ranks are 1..N
  -J JOB        attach to the running job JOB's output instead of launching
  -c DIR        working directory on the nodes
  -m MSIZE      9P message size to ask for (default 1048600; a node may offer less)
  -k FILE       private key (RSA PEM or OpenSSH RSA/Ed25519; default ~/.ssh/id_ed25519 or id_rsa)
  --no-key      do not authenticate with a key (key-less users, --no-auth nodes)
  -t, --timeout SECONDS   connect timeout per node (default 5)
  --call-timeout SECONDS  time limit of each control or staging request once connected (default
                          60; output, status and stdin have none)
  --alive-timeout SECONDS while the programs run, each node not yet done is asked every 10 s
                          (a third of a shorter limit) for a stat its xcpufs answers at once; one
                          that gives no answer this long is reported lost and left (default 30;
                          0 = never ask). A quiet program is never mistaken for a lost node
  --max-connecting N      connection attempts in flight (default 32)
  -v            phase timings and how files reached the nodes, on stderr
  -d            print 9P traffic on stderr
  -h, --help    this text
  -V, --version print "xrx <version>"

Environment: NODES, XCPUENV (extra environment, "\\n" separates entries), XCPU_SYSROOT
(<root>/<arch> trees for other architectures), XCPU_LD_LIBRARY_PATH, JOBID, PATH.

Exit status: the program's when every node agrees; otherwise non-zero (the largest non-zero program
code, or 1 when a node failed and no program exited non-zero), with a per-node summary on stderr.
2 = usage error.
`;

export const OPTIONS = {
  d: { type: "boolean", short: "d" },
  v: { type: "boolean", short: "v" },
  l: { type: "boolean", short: "l" },
  s: { type: "boolean", short: "s" },
  S: { type: "boolean", short: "S" },
  a: { type: "boolean", short: "a" },
  statfs: { type: "string" },
  L: { type: "boolean", short: "L" },
  p: { type: "boolean", short: "p" },
  e: { type: "string", short: "e" },
  n: { type: "string", short: "n" },
  j: { type: "string", short: "j" },
  J: { type: "string", short: "J" },
  c: { type: "string", short: "c" },
  m: { type: "string", short: "m" },
  k: { type: "string", short: "k" },
  "no-key": { type: "boolean" },
  timeout: { type: "string", short: "t" },
  "call-timeout": { type: "string" },
  "alive-timeout": { type: "string" },
  "max-connecting": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

/** Runs xrx with `argv` (without the node and script names); resolves with the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const err = (msg: string) => io.stderr.write(`${msg}\n`);
  try {
    const { values: v, positionals, order } = parseCommandLine(argv, OPTIONS);
    if (v.help) {
      io.stdout.write(HELP);
      return 0;
    }
    if (v.version) {
      io.stdout.write(`xrx ${PACKAGE_VERSION}\n`);
      return 0;
    }
    if (v.l && v.e) throw new UsageError("can not have both -l and -e");
    if (v.J && (v.l || v.e)) throw new UsageError("-J attaches to a running job and takes no program");
    const rest = [...positionals];
    let nodes: ReturnType<typeof nodeList>;
    if (v.a || v.statfs) {
      const source = v.statfs as string | undefined;
      // A statfs table file starts with "." or "/"; anything else is a statfs address.
      // The nodes left out are named: a node marked down a moment ago would otherwise just not run.
      nodes = await statfsNodes(
        source?.startsWith(".") ? resolve(io.cwd, source) : source,
        false,
        (notUp, listed) =>
          err(
            `xrx: ${listed - notUp.length} of ${listed} nodes are up; not running on ${describeNotUp(notUp)}`,
          ),
      );
      if (nodes.length === 0) {
        err("Error: attempt to execute command to zero nodes (statfs reports none up)");
        return 1;
      }
    } else {
      const spec = io.env.NODES || rest.shift();
      if (spec === undefined) throw new UsageError("missing node list");
      // A node named twice runs two copies, as the original did. -J names a node once and follows
      // every copy of the job it finds there.
      nodes = nodeList(spec, true, !v.J);
      // A list that expands to nothing (a reversed range, only commas): the original's message.
      if (nodes.length === 0) {
        err(`Error: attempt to execute command to zero nodes (the node list "${spec}" names none)`);
        return 1;
      }
    }
    const attach = v.J as string | undefined;
    const jobId = (v.j as string | undefined) ?? io.env.JOBID ?? "";
    // The node takes `id JOB/RANK` as one word (the original's tokenizer stops at a blank) up to
    // the first slash, in one line.
    if (/[/\s\0]/.test(jobId)) {
      throw new UsageError(
        `bad job id ${JSON.stringify(jobId)}${v.j === undefined ? " (from JOBID)" : ""}: it cannot hold "/", a blank or a line break`,
      );
    }
    const program = rest.shift();
    if (attach === undefined && program === undefined) throw new UsageError("missing program");
    if (attach !== undefined && program !== undefined) throw new UsageError("-J takes no program");
    // 9P carries msize in 32 bits.
    const msize = intOption(v.m as string | undefined, "-m", 256, 0xffffffff);
    const tree = v.n as string | undefined;
    let treeWidth: number | "sqrt" = 0;
    if (tree === ".") treeWidth = "sqrt";
    else if (tree !== undefined) {
      const n = intOption(tree, "-n", 0)!;
      treeWidth = n > nodes.length ? "sqrt" : n;
    }
    const signals = io.signals;
    // Output that cannot be written (a full disk, an I/O error) ends the job as a closed pipe does:
    // nobody would get it. Unlike a closed pipe it is an error worth a message and status 1.
    let outputError: NodeJS.ErrnoException | undefined;
    io.stdout.on?.("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE" && e.code !== "ERR_STREAM_DESTROYED") outputError ??= e;
      signals?.emit(OUTPUT_CLOSED);
    });
    if (v["no-key"] && v.k !== undefined) throw new UsageError("--no-key cannot be used with -k");
    const identity = launchIdentity(localPath(v.k as string | undefined, io.cwd), io.env, !!v["no-key"]);
    const result = await runJob({
      nodes,
      identity,
      program,
      args: rest,
      execName: v.e as string | undefined,
      // -s and -S: the last one given counts, as in the original.
      noLibraries: order.filter((o) => o === "s" || o === "S").pop() === "S",
      localProgram: !!v.l,
      treeWidth,
      jobId,
      cwd: v.c as string | undefined,
      env: io.env.XCPUENV ? decodeXcpuEnv(io.env.XCPUENV) : undefined,
      msize,
      connectTimeoutMs: secondsOption(v.timeout as string | undefined, "--timeout") ?? 5000,
      callTimeoutMs: secondsOption(v["call-timeout"] as string | undefined, "--call-timeout"),
      aliveTimeoutMs: aliveOption(v["alive-timeout"] as string | undefined),
      maxConnecting: intOption(v["max-connecting"] as string | undefined, "--max-connecting", 1),
      lines: !!v.L,
      prefix: !!v.p,
      // Input from /dev/null: each program's stdin is closed with its exec, not fed.
      stdin: attach === undefined && !isEmptyInput(io.stdin) ? io.stdin : null,
      stdout: io.stdout,
      stderr: io.stderr,
      sysrootBase: localPath(io.env.XCPU_SYSROOT, io.cwd),
      path: io.env.PATH,
      extraLibPath: io.env.XCPU_LD_LIBRARY_PATH?.split(":")
        .filter(Boolean)
        .map((d) => resolve(io.cwd, d)),
      localCwd: io.cwd,
      signals: io.signals,
      attach,
      verbose: !!v.v,
      trace: v.d ? (line) => io.stderr.write(`${line}\n`) : undefined,
    });
    if (outputError) {
      io.stderr.write(`xrx: cannot write standard output (${outputError.message}): the job was ended\n`);
      return 1;
    }
    if (!identity.key && !v["no-key"] && result.outcomes.some((o) => o.error === "authentication failed")) {
      io.stderr.write(
        "xrx: no key was used: ~/.ssh/id_ed25519 and ~/.ssh/id_rsa do not exist; give one with -k FILE\n",
      );
    }
    return result.exitCode;
  } catch (e) {
    return reportError(e, "xrx", XRX_USAGE, io.stderr);
  }
}

/** --alive-timeout: seconds, or 0 for no liveness questions. */
function aliveOption(value: string | undefined): number | undefined {
  if (value !== undefined && /^(0+(\.0*)?|\.0+)$/.test(value)) return 0;
  try {
    return secondsOption(value, "--alive-timeout");
  } catch {
    throw new UsageError(`bad --alive-timeout value "${value}": expected seconds > 0, or 0 for no checks`);
  }
}

/**
 * A local file named on the command line or in the environment, against the caller's working
 * directory (io.cwd: under xrxd, the process's own is not the caller's).
 */
function localPath(p: string | undefined, cwd: string): string | undefined {
  return p === undefined || p === "" ? p : resolve(cwd, p);
}
