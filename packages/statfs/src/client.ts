// Reading a statfs server: the `state` table (original format) and the richer `/json` document.
// Works against our statfs and the original one (which only has `state`).

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { type Fsys, mount } from "@clustermatic/ninep/client";
import { OREAD } from "@clustermatic/ninep/codec";
import { RemoteError } from "@clustermatic/ninep/errors";
import type { NodeView } from "./monitor.js";
import { type ParsedRow, parseTable } from "./table.js";

/** Default place of a mounted statfs (the original tools read it first). */
export const MOUNTED_STATE = "/mnt/statfs/state";

export interface StatfsClientOptions {
  /** Timeout for connect and each request, ms. Default 5000. */
  timeoutMs?: number;
  /** One line per 9P message. */
  trace?: (line: string) => void;
  /**
   * Largest `state` or `json` document accepted, bytes (default 64 MiB: the table of 100,000 nodes
   * is about 8 MiB). A server whose file never ends is refused instead of filling memory.
   */
  maxBytes?: number;
}

/** Default limit on a document read from statfs. */
export const MAX_DOCUMENT_BYTES = 64 << 20;

export class StatfsUnreachableError extends Error {
  readonly code = "ESTATFS_UNREACHABLE";
}

function me(): { uname: string; uid: number } {
  try {
    const u = userInfo();
    return { uname: u.username, uid: u.uid };
  } catch {
    return { uname: "nobody", uid: 65534 };
  }
}

/** The server sent more than a statfs document can hold. */
export class StatfsTooLargeError extends Error {
  readonly code = "ESTATFS_TOO_LARGE";
}

async function readWhole(fs: Fsys, path: string, timeoutMs: number, maxBytes: number): Promise<Buffer> {
  const fid = await fs.open(path, OREAD, { timeoutMs });
  try {
    const parts: Buffer[] = [];
    let off = 0;
    for (;;) {
      const b = await fid.read(off, fid.iounit, { timeoutMs });
      if (b.length === 0) break;
      if (off + b.length > maxBytes)
        throw new StatfsTooLargeError(
          `${path} is larger than ${maxBytes} bytes (a statfs document never is; is this a statfs server?)`,
        );
      parts.push(Buffer.from(b));
      off += b.length;
    }
    return Buffer.concat(parts);
  } finally {
    await fid.clunk();
  }
}

/** A connection to a statfs server. */
export class StatfsClient {
  private constructor(
    private readonly fs: Fsys,
    readonly address: string,
    private readonly timeoutMs: number,
    private readonly maxBytes: number,
  ) {}

  static async connect(address: string, opts: StatfsClientOptions = {}): Promise<StatfsClient> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const { uname, uid } = me();
    try {
      const fs = await mount(address, {
        uname,
        n_uname: uid,
        defaultPort: 20003,
        connectTimeoutMs: timeoutMs,
        timeoutMs,
        msize: 65536 + 24,
        trace: opts.trace,
      });
      return new StatfsClient(fs, address, timeoutMs, opts.maxBytes ?? MAX_DOCUMENT_BYTES);
    } catch (err) {
      throw new StatfsUnreachableError(`cannot reach statfs at ${address}: ${(err as Error).message}`);
    }
  }

  /** The raw `state` table. */
  async stateText(): Promise<string> {
    return (await readWhole(this.fs, "state", this.timeoutMs, this.maxBytes)).toString("utf8");
  }

  async state(): Promise<ParsedRow[]> {
    return parseTable(await this.stateText());
  }

  /** Every node with details, or null when the server has no `/json` (an original statfs). */
  async nodes(): Promise<NodeView[] | null> {
    try {
      const doc = JSON.parse(
        (await readWhole(this.fs, "json", this.timeoutMs, this.maxBytes)).toString("utf8"),
      ) as {
        nodes: NodeView[];
      };
      return doc.nodes;
    } catch (err) {
      if (err instanceof RemoteError) return null;
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.fs.close();
  }
}

/** Reads the table from a mounted statfs file, if there is one. */
export async function readMountedState(path = MOUNTED_STATE): Promise<string | null> {
  if (!existsSync(path)) return null;
  try {
    return await readFile(path, "utf8");
  } catch {
    return null;
  }
}
