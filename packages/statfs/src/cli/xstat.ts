// xstat: prints the cluster status table from statfs.

import { parseArgs } from "node:util";
import { argsMistake } from "@clustermatic/ninep/args";
import { expandNodeList } from "@clustermatic/ninep/nodes";
import { MOUNTED_STATE, readMountedState, StatfsClient } from "../client.js";
import { parseDuration } from "../config.js";
import type { NodeView } from "../monitor.js";
import { formatParsed, type ParsedRow, parseTable } from "../table.js";
import { PACKAGE_VERSION } from "../version.js";
import { type CliIo, EXIT_FAIL, EXIT_OK, EXIT_USAGE, processIo } from "./io.js";

export const XSTAT_USAGE = `usage: xstat [-a ADDR] [--json] [-w] [--every DUR] [-t DUR] [-d] [filter...]

Prints the status of the cluster's nodes from statfs, one line per node:
name, address, arch, status, session count (tab-separated, as the original xstat).

options:
  -a, --addr ADDR       statfs address (default: ${MOUNTED_STATE} if mounted, else
                        tcp!localhost!20003; a bare host uses port 20003)
  -s, --server ADDR     the same as -a
      --json            print JSON (with load, memory, uptime when statfs has them)
  -w, --watch           redraw whenever the status changes (Ctrl-C stops)
      --every DUR       how often --watch asks statfs (default 1s)
  -t, --timeout DUR     give up on statfs after this long (default 5s)
  -d, --debug           print the 9P messages on stderr
  -h, --help            show this help
  -V, --version         print "xstat <version>"

filters (a node must match all given kinds; several of one kind are alternatives):
  NODELIST              node names, ranges allowed: n[01-16],head
  status=TEXT           e.g. status=up
  arch=TEXT             e.g. arch=/Linux/x86_64

exit status: 0 ok, 1 statfs unreachable or unreadable, or none of the named nodes is in its
table (names it lacks are listed on stderr), 2 usage error
`;

/** The options of the xstat command line (the help test holds XSTAT_USAGE to them). */
export const XSTAT_OPTIONS = {
  addr: { type: "string", short: "a" },
  server: { type: "string", short: "s" },
  json: { type: "boolean" },
  watch: { type: "boolean", short: "w" },
  every: { type: "string" },
  timeout: { type: "string", short: "t" },
  debug: { type: "boolean", short: "d" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

interface Filters {
  names?: Set<string>;
  status?: Set<string>;
  arch?: Set<string>;
}

function parseFilters(args: string[]): Filters {
  const f: Filters = {};
  for (const a of args) {
    const eq = a.indexOf("=");
    if (eq > 0 && /^(status|arch)$/.test(a.slice(0, eq))) {
      const key = a.slice(0, eq) as "status" | "arch";
      (f[key] ??= new Set()).add(a.slice(eq + 1));
      continue;
    }
    const names = expandNodeList(a);
    if (names.length === 0) throw new Error(`no node named in '${a}'`);
    f.names ??= new Set();
    for (const n of names) f.names.add(n);
  }
  return f;
}

function keep(f: Filters, name: string, status: string, arch: string): boolean {
  if (f.names && !f.names.has(name)) return false;
  if (f.status && !f.status.has(status)) return false;
  if (f.arch && !f.arch.has(arch.replace(/\s+$/, ""))) return false;
  return true;
}

function rowsToJson(rows: ParsedRow[]): Partial<NodeView>[] {
  return rows.map((r) => ({
    name: r.name,
    address: r.address,
    arch: r.arch.replace(/\s+$/, ""),
    status: r.status,
    up: r.status === "up",
    numjobs: r.numjobs,
  }));
}

/** The original xstat's words for a statfs it could not read (scripts look for them). */
const NO_LIST = "could not obtain node list from statfs";

interface Snapshot {
  text: string;
  /** Names the filters asked for that the table does not have. */
  missing: string[];
}

export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  function parse(args: string[]) {
    return parseArgs({ args, strict: true, allowPositionals: true, options: XSTAT_OPTIONS });
  }
  const usage = (msg: string) => {
    io.stderr.write(`xstat: ${msg} (see xstat --help)\n`);
    return EXIT_USAGE;
  };
  try {
    parsed = parse(argv);
  } catch (err) {
    return usage(argsMistake(err));
  }
  const v = parsed.values;
  if (v.help) {
    io.stdout.write(XSTAT_USAGE);
    return EXIT_OK;
  }
  if (v.version) {
    io.stdout.write(`xstat ${PACKAGE_VERSION}\n`);
    return EXIT_OK;
  }
  if (v.addr && v.server) return usage("give the statfs address once");
  let filters: Filters;
  let everyMs = 1000;
  let timeoutMs = 5000;
  try {
    filters = parseFilters(parsed.positionals);
    if (v.every) everyMs = parseDuration(v.every);
    if (v.timeout) timeoutMs = parseDuration(v.timeout);
    if (everyMs <= 0 || timeoutMs <= 0) throw new Error("durations must be greater than zero");
  } catch (err) {
    return usage((err as Error).message);
  }
  const explicit = v.addr ?? v.server;
  const address = explicit ?? "tcp!localhost!20003";

  let client: StatfsClient | undefined;
  const snapshot = async (): Promise<Snapshot> => {
    if (!explicit && !client) {
      const mounted = await readMountedState();
      if (mounted !== null) return render(parseTable(mounted), null);
    }
    client ??= await StatfsClient.connect(address, {
      timeoutMs,
      trace: v.debug ? (line) => io.stderr.write(`${line}\n`) : undefined,
    });
    try {
      const rows = await client.state();
      const nodes = v.json ? await client.nodes() : null;
      return render(rows, nodes);
    } catch (err) {
      const c = client;
      client = undefined;
      await c.close().catch(() => {});
      throw new Error(`cannot read statfs at ${address}: ${(err as Error).message}`);
    }
  };
  const render = (rows: ParsedRow[], nodes: NodeView[] | null): Snapshot => {
    const kept = rows.filter((r) => keep(filters, r.name, r.status, r.arch));
    const inTable = new Set(rows.map((r) => r.name));
    const missing = [...(filters.names ?? [])].filter((n) => !inTable.has(n));
    if (!v.json) return { text: formatParsed(kept), missing };
    const names = new Set(kept.map((r) => r.name));
    const out = nodes ? nodes.filter((n) => names.has(n.name)) : rowsToJson(kept);
    return { text: v.watch ? `${JSON.stringify(out)}\n` : `${JSON.stringify(out, null, 2)}\n`, missing };
  };

  if (!v.watch) {
    try {
      const s = await snapshot();
      io.stdout.write(s.text);
      if (s.missing.length === 0) return EXIT_OK;
      // Named nodes statfs does not know: said, and a failure when none of the names is known.
      io.stderr.write(`xstat: not in the statfs table: ${s.missing.join(", ")}\n`);
      return s.missing.length === filters.names?.size ? EXIT_FAIL : EXIT_OK;
    } catch (err) {
      io.stderr.write(`xstat: ${NO_LIST}: ${(err as Error).message}\n`);
      return EXIT_FAIL;
    } finally {
      await client?.close().catch(() => {});
    }
  }

  // --watch: ask every `every` ms, print when something changed. The first failure to reach
  // statfs is fatal (nothing to show); later outages are reported and retried.
  const tty = io.stdout.isTTY === true && !v.json;
  let last: string | undefined;
  let failing = false;
  try {
    last = (await snapshot()).text;
  } catch (err) {
    io.stderr.write(`xstat: ${NO_LIST}: ${(err as Error).message}\n`);
    return EXIT_FAIL;
  }
  const draw = (text: string, note = "") => {
    if (tty) io.stdout.write(`\x1b[H\x1b[2J${new Date().toISOString()}  statfs ${address}${note}\n\n${text}`);
    else io.stdout.write(v.json ? text : `${text}\n`);
  };
  draw(last);
  return new Promise<number>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      if (io.handleSignals !== false) {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
      }
      io.signal?.removeEventListener("abort", stop);
      void (client?.close().catch(() => {}) ?? Promise.resolve()).then(() => resolve(EXIT_OK));
    };
    const tick = async () => {
      try {
        const s = await snapshot();
        if (stopped) return;
        if (s.text !== last || failing) draw(s.text, failing ? "  (reconnected)" : "");
        last = s.text;
        failing = false;
      } catch (err) {
        if (stopped) return;
        if (!failing) {
          if (tty) draw(last ?? "", `  UNREACHABLE: ${(err as Error).message}`);
          else io.stderr.write(`xstat: ${(err as Error).message} (retrying)\n`);
        }
        failing = true;
      }
      if (!stopped) timer = setTimeout(tick, everyMs);
    };
    if (io.handleSignals !== false) {
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    }
    io.signal?.addEventListener("abort", stop);
    if (io.signal?.aborted) stop();
    else timer = setTimeout(tick, everyMs);
  });
}
