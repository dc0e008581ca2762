// `bootcfg serve`: a read-only 9P file server with one directory per node —
//   /nodes                  node names, one per line
//   /<node>/kernel          the node's kernel file
//   /<node>/initrd          base initrds + overlay, concatenated as the node boots them
//   /<node>/cmdline         the command line
//   /<node>/kexec.sh        the plan a boot kernel runs (expects kernel and initrd in kexec.dir)
//   /<node>/manifest.json   inputs by hash
// the successor of the original suite's xbootfs/xget. Large files are read where they lie, one
// Tread at a time, so memory does not grow with their size.
import { type FileHandle, open } from "node:fs/promises";
import { type Address, formatAddress, parseAddress } from "@clustermatic/ninep/client";
import { Errno, FsError } from "@clustermatic/ninep/errors";
import {
  Server,
  SynthDir,
  SynthFile,
  type SynthNode,
  staticFile,
  treeBackend,
} from "@clustermatic/ninep/server";
import type { Cluster } from "./cluster/resolve.js";
import { BootcfgError } from "./errors.js";
import { FileCache } from "./files.js";
import { manifest, type NodePlan, PlanCache, planNode, renderKexecSh } from "./plan.js";
import { toJson } from "./report.js";

/** A byte range of the served file: a slice of a file on disk, or bytes in memory. */
type Piece = { offset: number; size: number } & ({ path: string } | { bytes: Uint8Array });

/** Pieces of a node's initrd: each file part, its zero padding, then the overlay. */
function initrdPieces(plan: NodePlan): Piece[] {
  const out: Piece[] = [];
  let offset = 0;
  for (const p of plan.initrdParts) {
    if (p.kind === "overlay") out.push({ offset, size: plan.overlay.length, bytes: plan.overlay });
    else out.push({ offset, size: p.size, path: p.path! });
    offset += p.size;
    if (p.pad) {
      out.push({ offset, size: p.pad, bytes: new Uint8Array(p.pad) });
      offset += p.pad;
    }
  }
  return out;
}

/** A read-only file assembled from pieces; opened file handles live as long as the fid. */
function piecedFile(
  name: string,
  pieces: Piece[],
  size: number,
): SynthFile<Map<string, Promise<FileHandle>>> {
  return new SynthFile<Map<string, Promise<FileHandle>>>(name, {
    mode: 0o444,
    length: () => size,
    open: () => new Map(),
    async read(h, offset, count) {
      const start = Number(offset);
      if (start >= size || count === 0) return new Uint8Array(0);
      const end = Math.min(size, start + count);
      const out = Buffer.allocUnsafe(end - start);
      let filled = 0;
      for (const p of pieces) {
        if (p.offset + p.size <= start || p.offset >= end) continue;
        const from = Math.max(start, p.offset);
        const to = Math.min(end, p.offset + p.size);
        if ("bytes" in p) out.set(p.bytes.subarray(from - p.offset, to - p.offset), from - start);
        else {
          // several reads of one fid run at once: share one open per piece
          let pending = h.state.get(p.path);
          if (!pending) {
            pending = open(p.path, "r");
            h.state.set(p.path, pending);
          }
          const fh = await pending;
          let done = 0;
          while (done < to - from) {
            const { bytesRead } = await fh.read(
              out,
              from - start + done,
              to - from - done,
              from - p.offset + done,
            );
            if (bytesRead === 0) throw new FsError(`${p.path} shrank while being served`, Errno.EIO);
            done += bytesRead;
          }
        }
        filled += to - from;
      }
      return out.subarray(0, filled);
    },
    async clunk(h) {
      const all = [...h.state.values()];
      h.state.clear();
      for (const pending of all) await (await pending.catch(() => undefined))?.close();
    },
  });
}

export interface ServeHandle {
  server: Server;
  /** Bound address as a dial string (tcp!127.0.0.1!41234). */
  address: string;
  bound: Address;
  close(): Promise<void>;
}

/** Builds the exported tree for a cluster (node directories are made on first use). */
export function clusterTree(cluster: Cluster): SynthDir {
  const cache = new PlanCache(new FileCache());
  const dirs = new Map<string, SynthDir>();
  const nodeDir = (name: string): SynthDir => {
    let d = dirs.get(name);
    if (d) return d;
    let plan: NodePlan;
    try {
      plan = planNode(cluster, cluster.resolve(name), cache);
    } catch (err) {
      // a node whose files are broken still lists; looking inside says what is wrong
      const msg = err instanceof BootcfgError ? err.message : String(err);
      d = new SynthDir(name, { mode: 0o555 });
      for (const f of ["kernel", "initrd", "cmdline", "kexec.sh", "manifest.json"])
        d.add(
          new SynthFile(f, {
            mode: 0o444,
            open: () => {
              throw new FsError(msg, Errno.EIO);
            },
          }),
        );
      d.add(staticFile("error", `${msg}\n`));
      dirs.set(name, d);
      return d;
    }
    d = new SynthDir(name, { mode: 0o555 });
    d.add(
      piecedFile("kernel", [{ offset: 0, size: plan.kernel.size, path: plan.kernelPath }], plan.kernel.size),
    );
    d.add(piecedFile("initrd", initrdPieces(plan), plan.initrd.size));
    d.add(staticFile("cmdline", `${plan.cmdline}\n`));
    d.add(staticFile("kexec.sh", renderKexecSh(plan), { mode: 0o555 }));
    d.add(staticFile("manifest.json", `${toJson(manifest(cluster, plan))}\n`));
    dirs.set(name, d);
    return d;
  };
  const root = new SynthDir("/", {
    mode: 0o555,
    // listing shows every node; lookups of unknown names get a message pointing to /nodes
    dynamic: () => cluster.nodes().map(nodeDir),
  });
  root.add(staticFile("nodes", `${cluster.nodes().join("\n")}\n`));
  const walk1 = root.walk1.bind(root);
  root.walk1 = async (name, ctx) => {
    if (name !== ".." && name !== "nodes" && !cluster.has(name)) {
      // The client's name, cut to a readable length; the server's file paths stay its own.
      const shown = name.length > 64 ? `${name.slice(0, 64)}…` : name;
      throw new FsError(`${shown}: no such node (read /nodes for the list)`, Errno.ENOENT);
    }
    if (name !== ".." && name !== "nodes") {
      const d = nodeDir(name);
      d.parent ??= root;
      return d as SynthNode;
    }
    return walk1(name, ctx);
  };
  return root;
}

export async function serveCluster(cluster: Cluster, listen: string): Promise<ServeHandle> {
  // 9P2000.L too: a Linux boot kernel's plain `mount -t 9p` asks for it, and without it falls
  // back to 9P2000, where errors are bare strings ("Unknown error 526" for an unknown node).
  const server = new Server({
    backend: treeBackend(clusterTree(cluster), { dialects: ["9P2000", "9P2000.u", "9P2000.L"] }),
    name: "bootcfg",
  });
  let addr: Address;
  try {
    addr = parseAddress(listen);
  } catch (err) {
    if ((err as { code?: unknown }).code !== "E9P_ADDRESS") throw err;
    throw new BootcfgError("EUSAGE", `--listen ${listen}: ${(err as Error).message}`);
  }
  let bound: Address;
  try {
    bound = await server.listen(addr);
  } catch (err) {
    // The server's own words: "cannot listen on ADDR: address already in use (EADDRINUSE)".
    throw new BootcfgError("EIO", (err as Error).message, { cause: err });
  }
  return { server, bound, address: formatAddress(bound), close: () => server.close(1000) };
}
