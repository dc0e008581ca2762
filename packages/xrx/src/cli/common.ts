// Pieces shared by the xrx, xk and xps command lines: identity selection, node lists (with -a and
// $NODES), statfs lookups, error reporting.
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { Client } from "@clustermatic/ninep/client";
import { OREAD } from "@clustermatic/ninep/codec";
import { causeOf, RemoteError } from "@clustermatic/ninep/errors";
import { ADMIN_KEY, defaultKeyFiles, KeyError, loadPrivateKey } from "../keys.js";
import {
  type NodeSpec,
  nodesFromStatfs,
  parseStatfsState,
  STAT_PORT,
  STATFS_STATE_FILE,
  type StatfsRow,
  xcpuNodes,
} from "../nodes.js";
import { adminIdentity, type Identity, readAll, userIdentity, XcpuNode } from "../xcpu.js";
import { type CliIo, secondsOption, UsageError } from "./args.js";

/**
 * The identity a launch uses: `-k file` or the user's default key; with `--no-key` (or when the
 * user has no key at all) none, which works for key-less pool users and --no-auth nodes.
 */
export function launchIdentity(keyFile: string | undefined, env: NodeJS.ProcessEnv, noKey = false): Identity {
  if (noKey) return userIdentity(null);
  if (keyFile) return userIdentity(loadPrivateKey(keyFile));
  const [first, ...others] = defaultKeyFiles(env);
  if (!first) return userIdentity(null);
  const identity = userIdentity(loadPrivateKey(first));
  // The other default keys answer when a node refuses the first (an RSA-only original node).
  const fallbackKeys = others.flatMap((f) => {
    try {
      return [loadPrivateKey(f)];
    } catch {
      return [];
    }
  });
  return fallbackKeys.length > 0 ? { ...identity, fallbackKeys } : identity;
}

/**
 * The identity of the admin tools (xk, xps): `-A file`, else /etc/xcpu/admin_key when readable
 * (as xcpu-admin), else the user's own key. Returns the list to try in order.
 */
export function toolIdentities(
  adminKey: string | undefined,
  env: NodeJS.ProcessEnv,
  keyFile?: string,
): Identity[] {
  const out: Identity[] = [];
  const adminFile = adminKey ?? (readable(ADMIN_KEY) ? ADMIN_KEY : undefined);
  if (adminFile) out.push(adminIdentity(loadPrivateKey(adminFile)));
  try {
    out.push(launchIdentity(keyFile, env));
  } catch (err) {
    // A user key that was looked for (~/.ssh) and is not there is not needed with the admin key;
    // one named with -k that cannot be used is an error, whatever other key there is.
    if (keyFile !== undefined || out.length === 0 || !(err instanceof KeyError)) throw err;
  }
  return out;
}

function readable(file: string): boolean {
  try {
    readFileSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Reads a statfs table from a file path or a statfs address (`host[!port]`). */
export async function readStatfs(source: string | undefined, timeoutMs = 5000): Promise<string> {
  if (source === undefined) {
    if (existsSync(STATFS_STATE_FILE)) return readStateFile(STATFS_STATE_FILE);
    source = `localhost!${STAT_PORT}`;
  }
  // A path, or a plain name of an existing file here (a host name otherwise).
  if (source.startsWith("/") || source.startsWith(".") || isPlainFileName(source))
    return readStateFile(source);
  const client = await Client.connect(
    source.includes("!") || source.includes(":") ? source : `${source}!${STAT_PORT}`,
    {
      defaultPort: STAT_PORT,
      connectTimeoutMs: timeoutMs,
      timeoutMs,
      version: "9P2000.u",
    },
  );
  try {
    const me = userIdentity(null);
    const root = await client.attach(me.user, "", { n_uname: me.uid });
    const f = await root.walk("state");
    await f.open(OREAD);
    const tooLarge = `its state is larger than ${MAX_STATFS_STATE >> 20} MiB`;
    return (await readAll(f, MAX_STATFS_STATE, undefined, tooLarge)).toString("utf8");
  } finally {
    client.destroy();
  }
}

function isPlainFileName(source: string): boolean {
  if (source.includes("!") || source.includes(":")) return false;
  try {
    return statSync(source).isFile();
  } catch {
    return false;
  }
}

/** More than any cluster's state; a statfs (or file) that goes on past it is not one. */
const MAX_STATFS_STATE = 64 * 1024 * 1024;

/** A statfs state file (`/mnt/statfs/state`-style), refused past MAX_STATFS_STATE bytes. */
function readStateFile(path: string): string {
  const fd = openSync(path, "r");
  try {
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      const b = Buffer.allocUnsafe(64 * 1024);
      const n = readSync(fd, b, 0, b.length, null);
      if (n === 0) break;
      parts.push(b.subarray(0, n));
      total += n;
      if (total > MAX_STATFS_STATE) throw new Error(`${path} is larger than ${MAX_STATFS_STATE >> 20} MiB`);
    }
    return Buffer.concat(parts).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** Nodes from -a (statfs, up only). */
export async function statfsNodes(
  source: string | undefined,
  all = false,
  onNotUp?: (rows: StatfsRow[], listed: number) => void,
): Promise<NodeSpec[]> {
  let text: string;
  try {
    text = await readStatfs(source);
  } catch (err) {
    throw new Error(`cannot obtain node list from statfs: ${(err as Error).message}`);
  }
  const rows = parseStatfsState(text);
  if (!all && onNotUp) {
    const notUp = rows.filter((r) => r.status !== "up");
    if (notUp.length > 0) onNotUp(notUp, rows.length);
  }
  return nodesFromStatfs(rows, all);
}

/** `n3 (down(read_failed)), n7 (down(connect_failed))` — at most `max` named, then how many more. */
export function describeNotUp(rows: readonly StatfsRow[], max = 8): string {
  const named = rows.slice(0, max).map((r) => `${r.name} (${r.status})`);
  return rows.length > max ? `${named.join(", ")} and ${rows.length - max} more` : named.join(", ");
}

/**
 * Parses a node list argument, turning syntax errors into usage errors. A list that names no node
 * (`,`, `n[3-1]`) is one too, unless `allowEmpty`. A node listed twice is kept twice only with
 * `keepDuplicates` (xrx: one copy of the program each).
 */
export function nodeList(spec: string, allowEmpty = false, keepDuplicates = false): NodeSpec[] {
  try {
    const nodes = xcpuNodes(spec, { keepDuplicates });
    if (nodes.length === 0 && !allowEmpty) throw new UsageError(`empty node list "${spec}"`);
    return nodes;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message);
  }
}

/** The options xk and xps share for reaching nodes (keys, timeout, statfs, tracing), help and version. */
export const TOOL_OPTIONS = {
  d: { type: "boolean", short: "d" },
  A: { type: "string", short: "A" },
  k: { type: "string", short: "k" },
  "no-key": { type: "boolean" },
  statfs: { type: "string" },
  timeout: { type: "string", short: "t" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

/** How xk and xps connect: the identities to try in order, the connect timeout and 9P tracing. */
export interface ToolConnection {
  identities: Identity[];
  timeoutMs: number;
  trace?: (line: string) => void;
}

/**
 * Reads the {@link TOOL_OPTIONS} values: `adminKey` (-A) and -k choose the identities (with
 * --no-key only a key-less user identity), -t the timeout (default 5 s), -d traces to stderr.
 */
export function toolConnection(
  v: Record<string, string | boolean | string[] | undefined>,
  adminKey: string | undefined,
  io: Pick<CliIo, "env" | "stderr">,
): ToolConnection {
  if (v["no-key"] && (adminKey !== undefined || v.k !== undefined)) {
    throw new UsageError(`--no-key cannot be used with ${adminKey !== undefined ? "-A" : "-k"}`);
  }
  const identities = v["no-key"]
    ? toolIdentities(undefined, io.env)
        .slice(-1)
        .map((i) => ({ ...i, key: null }))
    : toolIdentities(adminKey, io.env, v.k as string | undefined);
  const timeoutMs = secondsOption(v.timeout as string | undefined, "--timeout") ?? 5000;
  const trace = v.d ? (l: string) => io.stderr.write(`${l}\n`) : undefined;
  return { identities, timeoutMs, trace };
}

/**
 * Connects with the first identity that works. Only a node that answered (refused the key, did
 * not know the user) is tried with the next one: one that cannot be reached or never answers
 * fails once, within one timeout.
 */
export async function connectTool(spec: NodeSpec, conn: ToolConnection): Promise<XcpuNode> {
  let last: unknown;
  for (const identity of conn.identities) {
    try {
      return await XcpuNode.connect(spec, { identity, timeoutMs: conn.timeoutMs, trace: conn.trace });
    } catch (err) {
      last = err;
      if (!answeredByNode(err)) break;
    }
  }
  throw last;
}

/** Whether `err` (or an error it wraps) is the node's own answer. */
function answeredByNode(err: unknown): boolean {
  return causeOf(err, RemoteError) !== undefined;
}
