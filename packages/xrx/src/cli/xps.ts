// xps: list processes on nodes, in the original's columns or as JSON.

import { mapLimit } from "../limit.js";
import type { NodeSpec } from "../nodes.js";
import { commandColumn, type ProcRecord, statColumn, timeColumn } from "../procs.js";
import { PACKAGE_VERSION } from "../version.js";
import { reasonOf } from "../xcpu.js";
import { type CliIo, parseCommandLine, reportError, UsageError } from "./args.js";
import { connectTool, nodeList, statfsNodes, TOOL_OPTIONS, toolConnection } from "./common.js";

export const XPS_USAGE =
  "usage: xps [-dax] [--json] [-A adminkey] [-k key | --no-key] [-t secs] [-J JobId] [-p statport] [--statfs src] host,...";

const HELP = `${XPS_USAGE}

List processes on xcpufs nodes. Columns (tab-separated): NODE PID TTY STAT TIME JOBID COMMAND.

  -a            all nodes statfs reports up (-p PORT: statfs port on localhost; --statfs SRC:
                table file or statfs address)
  -x            only processes that belong to a job (have a job id)
  -J JOB        only processes of job JOB (job ids starting with "JOB/")
  --json        one JSON array of process objects instead of the table
  -A FILE       admin private key (default /etc/xcpu/admin_key when readable)
  -k FILE       user key when not acting as admin
  --no-key      connect without a key
  -t, --timeout SECONDS  connect timeout (default 5)
  -d            print 9P traffic
  -h, --help    this text
  -V, --version print "xps <version>"

Exit status: 0 when every node answered, 1 when one failed (printed as "xps: <node>: <message>"),
2 usage error.
`;

export const OPTIONS = {
  ...TOOL_OPTIONS,
  a: { type: "boolean", short: "a" },
  x: { type: "boolean", short: "x" },
  J: { type: "string", short: "J" },
  p: { type: "string", short: "p" },
  json: { type: "boolean" },
} as const;

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const { values: v, positionals } = parseCommandLine(argv, OPTIONS, { permute: true });
    if (v.help) {
      io.stdout.write(HELP);
      return 0;
    }
    if (v.version) {
      io.stdout.write(`xps ${PACKAGE_VERSION}\n`);
      return 0;
    }
    let nodes: NodeSpec[];
    if (v.a || v.statfs) {
      const src = (v.statfs as string | undefined) ?? (v.p ? `localhost!${v.p}` : undefined);
      if (positionals.length > 0) throw new UsageError("-a takes no node list");
      nodes = await statfsNodes(src);
    } else {
      if (positionals.length !== 1)
        throw new UsageError(positionals.length ? "too many arguments" : "missing node list");
      nodes = nodeList(positionals[0]!);
    }
    const conn = toolConnection(v, v.A as string | undefined, io);
    const job = v.J as string | undefined;
    let failed = 0;
    const results = await mapLimit(nodes, 32, async (spec) => {
      const node = await connectTool(spec, conn);
      try {
        return await node.procs();
      } finally {
        node.close();
      }
    });
    const rows: Array<{ node: string; proc: ProcRecord }> = [];
    results.forEach((r, i) => {
      const name = nodes[i]!.name;
      if (r.status === "rejected") {
        failed++;
        io.stderr.write(`xps: ${name}: ${reasonOf(r.reason)}\n`);
        return;
      }
      for (const p of r.value) {
        if (v.x && !p.jobid) continue;
        if (job !== undefined && !p.jobid.startsWith(job.includes("/") ? job : `${job}/`)) continue;
        rows.push({ node: name, proc: p });
      }
    });
    if (v.json) {
      const out = rows.map(({ node, proc }) => ({
        node,
        pid: proc.pid,
        ppid: proc.ppid,
        tty: proc.tty,
        stat: statColumn(proc),
        state: proc.state,
        time: timeColumn(proc),
        cpuMs: (proc.utime ?? 0) + (proc.stime ?? 0),
        jobid: proc.jobid,
        session: proc.sid,
        uid: proc.euid,
        vmsize: proc.vmsize,
        rssize: proc.rssize,
        command: proc.cmdline,
      }));
      io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else {
      const lines = ["NODE\tPID\tTTY\tSTAT\tTIME\tJOBID\tCOMMAND"];
      for (const { node, proc } of rows) {
        lines.push(
          [
            node,
            proc.pid,
            proc.tty,
            statColumn(proc),
            timeColumn(proc),
            proc.jobid,
            commandColumn(proc),
          ].join("\t"),
        );
      }
      io.stdout.write(`${lines.join("\n")}\n`);
    }
    return failed > 0 ? 1 : 0;
  } catch (e) {
    return reportError(e, "xps", XPS_USAGE, io.stderr);
  }
}
