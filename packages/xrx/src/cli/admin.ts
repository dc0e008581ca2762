// Pieces shared by the user-pool commands (xuserset, xgroupset, xgetent): a sub-command or
// database word before or after the options, `{-a | nodeset}` (or $NODES) in front of a fixed
// number of arguments, and one admin connection per node, all at once, with errors per node.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { mapLimit } from "../limit.js";
import type { NodeSpec } from "../nodes.js";
import { PACKAGE_VERSION } from "../version.js";
import { reasonOf, type XcpuNode } from "../xcpu.js";
import { type CliIo, parseCommandLine, reportError, UsageError } from "./args.js";
import { connectTool, nodeList, statfsNodes, TOOL_OPTIONS, toolConnection } from "./common.js";

/** TOOL_OPTIONS plus `-a` (every node statfs reports up) and `-p port` (statfs port for -a). */
export const POOL_OPTIONS = {
  ...TOOL_OPTIONS,
  a: { type: "boolean", short: "a" },
  p: { type: "string", short: "p" },
  u: { type: "boolean", short: "u" },
} as const;

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses `[options] word args...` with options anywhere until `--`, as the original's getopt
 * took them (`xuserset add -A key ...`, `xgroupset add nodes g 7 -A key`, `{-a | nodes} -u`).
 * Returns the word (undefined when absent) and the arguments after it.
 */
export function parseWordLine(argv: readonly string[]): {
  values: OptionValues;
  word: string | undefined;
  args: string[];
} {
  const first = parseCommandLine(argv, POOL_OPTIONS);
  const [word, ...rest] = first.positionals;
  if (word === undefined) return { values: first.values, word, args: [] };
  const second = parseCommandLine(rest, POOL_OPTIONS, { permute: true });
  const values: OptionValues = { ...first.values };
  for (const [k, val] of Object.entries(second.values)) if (val !== undefined) values[k] = val;
  return { values, word, args: second.positionals };
}

/**
 * The frame of the three commands: options around the first word, --help, --version, a missing
 * word (`missing` says what it should have been), and errors reported with the usage line.
 * `run` gets the options, the word and the arguments after it; it returns the exit status.
 */
export async function runPoolCommand(
  prog: string,
  text: { usage: string; help: string; missing: string },
  argv: readonly string[],
  io: CliIo,
  run: (v: OptionValues, word: string, args: string[]) => Promise<number>,
): Promise<number> {
  try {
    const { values: v, word, args } = parseWordLine(argv);
    if (v.help) {
      io.stdout.write(text.help);
      return 0;
    }
    if (v.version) {
      io.stdout.write(`${prog} ${PACKAGE_VERSION}\n`);
      return 0;
    }
    if (word === undefined) throw new UsageError(text.missing);
    return await run(v, word, args);
  } catch (e) {
    return reportError(e, prog, text.usage, io.stderr);
  }
}

/**
 * Takes the nodes and the `want` arguments that follow them: with -a (or --statfs) the nodes
 * statfs reports up (-p sets the statfs port), else the first argument as a node list, or
 * $NODES when exactly `want` arguments are given.
 */
export async function poolNodes(
  v: OptionValues,
  args: readonly string[],
  want: number,
  io: Pick<CliIo, "env">,
): Promise<{ nodes: NodeSpec[]; rest: string[] }> {
  if (v.p !== undefined && !/^\d+$/.test(v.p as string)) throw new UsageError(`bad port "${v.p}"`);
  if (v.a || v.statfs) {
    if (args.length !== want)
      throw new UsageError(args.length > want ? "-a takes no node list" : "missing arguments");
    const src = (v.statfs as string | undefined) ?? (v.p ? `localhost!${v.p}` : undefined);
    return { nodes: await statfsNodes(src), rest: [...args] };
  }
  if (args.length === want + 1) return { nodes: nodeList(args[0]!), rest: args.slice(1) };
  if (args.length === want && io.env.NODES) return { nodes: nodeList(io.env.NODES), rest: [...args] };
  if (args.length > want + 1) throw new UsageError("too many arguments");
  throw new UsageError(args.length === 0 ? "missing node list" : "missing arguments");
}

/**
 * Connects to every node at once as the admin identity (-A, /etc/xcpu/admin_key, else the
 * user's own key) and runs `fn` on each. A node that fails is reported on stderr as
 * `<prog>: <node>: <message>`. Returns the results in node order (undefined for failed nodes)
 * and how many failed.
 */
export async function onEveryNode<R>(
  prog: string,
  nodes: readonly NodeSpec[],
  v: OptionValues,
  io: Pick<CliIo, "env" | "stderr">,
  fn: (node: XcpuNode) => Promise<R>,
): Promise<{ results: Array<R | undefined>; failed: number }> {
  const conn = toolConnection(v, v.A as string | undefined, io);
  const settled = await mapLimit(nodes, 32, async (spec) => {
    const node = await connectTool(spec, conn);
    try {
      return await fn(node);
    } finally {
      node.close();
    }
  });
  let failed = 0;
  const results = settled.map((r, i) => {
    if (r.status === "fulfilled") return r.value;
    failed++;
    io.stderr.write(`${prog}: ${nodes[i]!.name}: ${reasonOf(r.reason)}\n`);
    return undefined;
  });
  return { results, failed };
}

/**
 * Sends root ctl lines to every node, in order, one write each, and reports every line a node
 * refuses as `<prog>: <node>: <message>`. With `pick`, a node first lists its pool (`pwent` or
 * `grent`) and gets only the lines whose name (the key) it has. Returns how many lines or nodes
 * failed.
 */
export async function sendLines(
  prog: string,
  nodes: readonly NodeSpec[],
  v: OptionValues,
  io: Pick<CliIo, "env" | "stderr">,
  lines: ReadonlyArray<string | { name: string; line: string }>,
  pick?: "pwent" | "grent",
): Promise<number> {
  const { results, failed } = await onEveryNode(prog, nodes, v, io, async (node) => {
    let todo = lines;
    if (pick) {
      const names = new Set(
        (await node.readFile(pick))
          .toString("utf8")
          .split("\n")
          .map((l) => l.split(":")[0]),
      );
      todo = lines.filter((l) => typeof l === "string" || names.has(l.name));
    }
    const errors: string[] = [];
    for (const l of todo) {
      try {
        await node.rootCtl(typeof l === "string" ? l : l.line);
      } catch (err) {
        errors.push(reasonOf(err));
      }
    }
    return errors;
  });
  let bad = failed;
  results.forEach((errors, i) => {
    for (const e of errors ?? []) io.stderr.write(`${prog}: ${nodes[i]!.name}: ${e}\n`);
    bad += errors?.length ?? 0;
  });
  return bad;
}

/** A local account (/etc/passwd). */
export interface LocalUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** A local group (/etc/group). */
export interface LocalGroup {
  name: string;
  gid: number;
}

/** The local accounts, in file order. */
export function localUsers(file = "/etc/passwd"): LocalUser[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .map((l) => l.split(":"))
    .filter((f) => f.length >= 7 && f[0] && /^\d+$/.test(f[2]!) && /^\d+$/.test(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! }));
}

/** The local groups, in file order. */
export function localGroups(file = "/etc/group"): LocalGroup[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .map((l) => l.split(":"))
    .filter((f) => f.length >= 3 && f[0] && /^\d+$/.test(f[2]!))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]) }));
}

/** The first line of `~/.ssh/id_rsa.pub` of an account, or undefined when unreadable or empty. */
export function localRsaKey(user: LocalUser): string | undefined {
  try {
    return readFileSync(join(user.home, ".ssh/id_rsa.pub"), "utf8").split("\n")[0]!.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The options every user-pool command shares and its exit statuses: the end of its --help. */
export function poolHelp(prog: string, ok: string): string {
  return `  nodeset       n[1-16],n20,host!port ...; $NODES when it is left out
  -a            every node statfs reports up (-p PORT: statfs port; --statfs SRC: table file
                or statfs address)
  -A FILE       admin private key (default /etc/xcpu/admin_key when readable, else your own key)
  -k FILE       your own key, tried after the admin key (default ~/.ssh/id_ed25519 or id_rsa);
                --no-key: connect without a key
  -t, --timeout SECONDS  connect timeout (default 5)
  -d            print 9P traffic
  -h, --help    this text
  -V, --version print "${prog} <version>"

Exit status: 0 when ${ok}, 1 when one failed
(each failure is printed as "${prog}: <node>: <message>"), 2 usage error.
`;
}
