// Node lists: the shared parser from ninep, the xcpufs default port, and the statfs `state`
// table that `-a` reads (from a file such as /mnt/statfs/state, or from a statfs server).
import { type NodeSpec, parseNodeList as parseList } from "@clustermatic/ninep/nodes";

export {
  compressNodeList,
  expandNodeList,
  NodeListError,
  type NodeListOptions,
  type NodeSpec,
  parseNodeList,
  splitNodeName,
} from "@clustermatic/ninep/nodes";

/** xcpufs's port. */
export const XCPU_PORT = 6667;
/** statfs's port. */
export const STAT_PORT = 20003;
/** Where a mounted statfs publishes its table. */
export const STATFS_STATE_FILE = "/mnt/statfs/state";

/**
 * Parses a node list with the xcpufs default port. With `keepDuplicates` a node listed twice is
 * two entries (xrx runs a copy for each, as the original did).
 */
export function xcpuNodes(spec: string, opts: { keepDuplicates?: boolean } = {}): NodeSpec[] {
  return parseList(spec, { defaultPort: XCPU_PORT, keepDuplicates: opts.keepDuplicates });
}

/** One row of the statfs table. */
export interface StatfsRow {
  name: string;
  address: string;
  arch: string;
  status: string;
  jobs: number;
}

/**
 * Parses the statfs `state` table: `name\taddress\tarch\tstatus\tnumjobs` per line. The arch
 * column of the original carried a newline of its own; such split rows are joined back.
 */
export function parseStatfsState(text: string): StatfsRow[] {
  const rows: StatfsRow[] = [];
  let carry: string[] = [];
  for (const line of text.split("\n")) {
    if (line === "" && carry.length === 0) continue;
    const fields = line.split("\t");
    // A continuation line after an arch with a newline starts with a tab: ["", status, jobs].
    const merged =
      carry.length > 0 ? [...carry.slice(0, -1), carry.at(-1)! + fields[0]!, ...fields.slice(1)] : fields;
    if (merged.length < 5) {
      carry = merged;
      continue;
    }
    carry = [];
    const [name, address, arch, status, jobs] = merged;
    rows.push({
      name: name!.trim(),
      address: address!.trim(),
      arch: arch!.trim(),
      status: status!.trim(),
      jobs: Number(jobs!.trim()) || 0,
    });
  }
  return rows;
}

/**
 * The node list for the rows that are `up` (or all rows when `all`): each node is dialled at the
 * row's address, displayed under the row's name.
 */
export function nodesFromStatfs(rows: readonly StatfsRow[], all = false): NodeSpec[] {
  const out: NodeSpec[] = [];
  for (const r of rows) {
    if (!all && r.status !== "up") continue;
    const spec = parseList(r.address.replace(/^tcp!/, ""), { defaultPort: XCPU_PORT })[0];
    if (!spec) continue;
    out.push({ ...spec, name: r.name });
  }
  return out;
}
