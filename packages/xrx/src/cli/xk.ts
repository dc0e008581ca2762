// xk: send a signal to processes or jobs on nodes.
import { causeOf, RemoteError } from "@clustermatic/ninep/errors";
import { mapLimit } from "../limit.js";
import type { NodeSpec } from "../nodes.js";
import type { ProcRecord } from "../procs.js";
import { PACKAGE_VERSION } from "../version.js";
import { reasonOf } from "../xcpu.js";
import { type CliIo, parseCommandLine, reportError, UsageError } from "./args.js";
import { connectTool, nodeList, statfsNodes, TOOL_OPTIONS, toolConnection } from "./common.js";

export const XK_USAGE =
  "usage: xk [-dhjm] [-A adminkey] [-k key | --no-key] [-t secs] [--statfs src] sig host:<pid|jid> [host:<pid|jid> ...]";

const HELP = `${XK_USAGE}

Send a signal to processes on xcpufs nodes.

  sig           a number (9) or a name (KILL, SIGKILL)
  host:pid      a process id; every process with that pid on the listed nodes
  host:job/rank every process of that job rank (children inherit the job id)
  host:/job     every process of job "job" (any rank); /N with N numeric is rank N of the empty job
  -m            the id is a job name: match every process whose job part equals it
  -j            accepted, no effect (as in the original)
  nodes may be a node list (n[1-4]:123); without "host:" every node statfs knows is used
  --statfs SRC  where to ask for those nodes: a table file or statfs address
  -A FILE       admin private key (default /etc/xcpu/admin_key when readable; -a FILE is the
                same); as admin the exact pid is signalled (root ctl "kill"), otherwise the
                session's main process
  -k FILE       user key; --no-key to connect without one
  -t, --timeout SECONDS  connect timeout (default 5)
  -d            print 9P traffic
  -h, --help    this text
  -V, --version print "xk <version>"

Exit status: 0 when every target was signalled, 1 when one was skipped, not found or failed,
2 usage.
`;

export const OPTIONS = {
  ...TOOL_OPTIONS,
  j: { type: "boolean", short: "j" },
  m: { type: "boolean", short: "m" },
  a: { type: "string", short: "a" },
} as const;

const NAMES: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  IOT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  PWR: 30,
  SYS: 31,
};

/** Parses a signal given as a number or a name (with or without SIG). */
export function parseSignal(text: string): number {
  if (/^\d+$/.test(text) && Number(text) >= 0 && Number(text) <= 64) return Number(text);
  const n = NAMES[text.toUpperCase().replace(/^SIG/, "")];
  if (n === undefined) throw new UsageError(`bad signal argument ${text}: expected a number or a name`);
  return n;
}

interface Target {
  nodes?: string;
  id: string;
}

/** The node refused the root ctl to this user (it is the admin's). */
function refused(err: unknown): boolean {
  const e = causeOf(err, RemoteError);
  return (
    e !== undefined && (e.errno === 1 || e.errno === 13 || /permission denied|not permitted/i.test(e.ename))
  );
}

function matches(p: ProcRecord, id: string, jobPart: boolean): boolean {
  if (jobPart) return p.jobid.split("/")[0] === id.replace(/\//g, "");
  if (id.includes("/")) {
    // "/name" (non-numeric) names a whole job; "job/rank" and "/N" are exact.
    const m = /^\/(.*[^0-9].*)$/.exec(id);
    if (m) return p.jobid.startsWith(`${m[1]}/`);
    return p.jobid === id;
  }
  return String(p.pid) === id;
}

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const { values: v, positionals } = parseCommandLine(argv, OPTIONS, { permute: true });
    if (v.help) {
      io.stdout.write(HELP);
      return 0;
    }
    if (v.version) {
      io.stdout.write(`xk ${PACKAGE_VERSION}\n`);
      return 0;
    }
    if (positionals.length < 2) throw new UsageError("need a signal and at least one target");
    const sig = parseSignal(positionals[0]!);
    // A target whose id is neither a job id nor a pid is skipped, as by the original (the others
    // are still signalled); it makes the exit status 1.
    let failures = 0;
    const targets: Target[] = positionals.slice(1).flatMap((t) => {
      const i = t.lastIndexOf(":");
      const id = i >= 0 ? t.slice(i + 1) : t;
      if (!id) throw new UsageError(`bad target "${t}"`);
      if (!id.includes("/") && !v.m && !/^\d+$/.test(id)) {
        io.stderr.write(`xk: bad process id: ${id}; skipping\n`);
        failures++;
        return [];
      }
      return [i >= 0 ? { nodes: t.slice(0, i), id } : { id }];
    });
    const conn = toolConnection(v, (v.A ?? v.a) as string | undefined, io);
    // Group ids by node.
    const byNode = new Map<string, { spec: NodeSpec; ids: string[] }>();
    for (const t of targets) {
      const specs = t.nodes ? nodeList(t.nodes) : await statfsNodes(v.statfs as string | undefined, true);
      for (const s of specs) {
        const e = byNode.get(s.name) ?? { spec: s, ids: [] };
        e.ids.push(t.id);
        byNode.set(s.name, e);
      }
    }
    const entries = [...byNode.values()];
    const results = await mapLimit(entries, 32, async ({ spec, ids }) => {
      const node = await connectTool(spec, conn);
      const msgs: string[] = [];
      let bad = 0;
      // Job ids found on this node, and those it does not run (an error only if no node does).
      const foundJobs = new Set<string>();
      const missingJobs: string[] = [];
      try {
        const procs = await node.procs();
        const signalledSessions = new Set<string>();
        for (const id of ids) {
          const hit = procs.filter((p) => matches(p, id, !!v.m));
          const isJob = id.includes("/") || !!v.m;
          if (hit.length === 0) {
            if (isJob) {
              missingJobs.push(id);
              continue;
            }
            msgs.push(`xk: ${spec.name}: no process ${id}`);
            bad++;
            continue;
          }
          if (isJob) foundJobs.add(id);
          for (const p of hit) {
            try {
              await node.kill(sig, p.pid);
            } catch (err) {
              // Not admin (the root ctl refuses): signal the session's main process instead, as the
              // original did when it could not open the root ctl. Any other failure (the process
              // ended since the listing) is this target's: its session's main process is another.
              if (!p.sid || !refused(err)) {
                msgs.push(`xk: ${spec.name}: error killing process ${p.pid}: ${reasonOf(err)}`);
                bad++;
                continue;
              }
              if (signalledSessions.has(p.sid)) continue;
              signalledSessions.add(p.sid);
              try {
                await node.signalSession(p.sid, sig);
              } catch (err2) {
                // Its session is gone since the listing: the process ended on its own meanwhile.
                const ended = /file not found/.test(reasonOf(err2));
                msgs.push(
                  `xk: ${spec.name}: error killing process ${p.pid}: ${ended ? "No such process (its session ended)" : reasonOf(err2)}`,
                );
                bad++;
              }
            }
          }
        }
      } finally {
        node.close();
      }
      return { msgs, bad, foundJobs, missingJobs };
    });
    // A job runs on some of the nodes named: those without it are no error, as long as one has it.
    const jobsFound = new Set<string>();
    for (const r of results)
      if (r.status === "fulfilled") for (const j of r.value.foundJobs) jobsFound.add(j);
    results.forEach((r, i) => {
      if (r.status === "rejected") {
        failures++;
        io.stderr.write(`xk: ${entries[i]!.spec.name}: ${reasonOf(r.reason)}\n`);
      } else {
        failures += r.value.bad;
        for (const m of r.value.msgs) io.stderr.write(`${m}\n`);
        for (const id of r.value.missingJobs) {
          if (jobsFound.has(id)) continue;
          io.stderr.write(`xk: ${entries[i]!.spec.name}: no process ${id}\n`);
          failures++;
        }
      }
    });
    return failures > 0 ? 1 : 0;
  } catch (e) {
    return reportError(e, "xk", XK_USAGE, io.stderr);
  }
}
