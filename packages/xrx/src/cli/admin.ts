// Pieces shared by the user-pool commands (xuserset, xgroupset, xgetent): a sub-command or
// database word before or after the options, `{-a | nodeset}` (or $NODES) in front of a fixed
// number of arguments, and one admin connection per node, all at once, with errors per node.
import { mapLimit } from "../job.js";
import type { NodeSpec } from "../nodes.js";
import { reasonOf, type XcpuNode } from "../xcpu.js";
import { type CliIo, parseCommandLine, UsageError } from "./args.js";
import { connectTool, nodeList, statfsNodes, TOOL_OPTIONS, toolConnection } from "./common.js";

/** TOOL_OPTIONS plus `-a` (every node statfs reports up) and `-p port` (statfs port for -a). */
export const POOL_OPTIONS = {
  ...TOOL_OPTIONS,
  a: { type: "boolean", short: "a" },
  p: { type: "string", short: "p" },
} as const;

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses `[options] word [options] args...`: options may come before and after the first word
 * (`xuserset add -A key ...`, `xgetent -A key passwd ...`). Returns the word (undefined when
 * absent) and the arguments after the second option block.
 */
export function parseWordLine(argv: readonly string[]): {
  values: OptionValues;
  word: string | undefined;
  args: string[];
} {
  const first = parseCommandLine(argv, POOL_OPTIONS);
  const [word, ...rest] = first.positionals;
  if (word === undefined) return { values: first.values, word, args: [] };
  const second = parseCommandLine(rest, POOL_OPTIONS);
  const values: OptionValues = { ...first.values };
  for (const [k, val] of Object.entries(second.values)) if (val !== undefined) values[k] = val;
  return { values, word, args: second.positionals };
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
