// Puts statfs together: configuration, the poll engine, the 9P server, the HTTP server, reload,
// and the optional hold file that keeps admin holds across restarts.

import type { KeyObject } from "node:crypto";
import { open, readFile, rename, rm } from "node:fs/promises";
import { type Address, formatAddress, parseAddress } from "@clustermatic/ninep/client";
import { Server } from "@clustermatic/ninep/server";
import { adminUid } from "./auth.js";
import {
  type Config,
  ConfigError,
  type ConfigIssue,
  checkPoll,
  loadConfig,
  type PollSettings,
} from "./config.js";
import { statfsBackend } from "./fs.js";
import { type HttpServer, startHttp } from "./http.js";
import { type Connector, holdReasonProblem, Monitor } from "./monitor.js";
import type { Exposition } from "./prom.js";
import { XcpufsConnector } from "./xcpufs-session.js";

/** Default 9P port of statfs (the original's STAT_PORT). */
export const STATFS_PORT = 20003;
/** Default HTTP listen address. */
export const DEFAULT_HTTP = "127.0.0.1:20080";

export interface StatfsOptions {
  /** Configuration file (statfs.conf, .yaml/.yml or .json). */
  configFile: string;
  /** Admin private key used to log in to nodes and to check ctl writers. */
  adminKey?: KeyObject;
  /** 9P listen addresses (dial strings). Default: tcp!0.0.0.0!20003. */
  listen?: string[];
  /** HTTP listen address `host:port`, or null for none. Default 127.0.0.1:20080. */
  http?: string | null;
  /** Settings from the command line; the file's own poll settings win over these. */
  pollOverrides?: Partial<PollSettings>;
  /** Let unauthenticated 9P clients write ctl files. */
  ctlWithoutAuth?: boolean;
  /** JSON file where admin holds are saved and restored. */
  holdFile?: string;
  /** Replace the xcpufs connector (benchmarks). */
  connector?: Connector;
  /** Diagnostics (one line each). */
  log?: (line: string) => void;
  /**
   * Milliseconds a 9P client may take to send Tversion after connecting (0: no limit); the 9P
   * server's default otherwise.
   */
  handshakeTimeoutMs?: number;
  /** 9P server trace and node client trace. */
  traceServer?: (line: string) => void;
  traceClient?: (node: string, line: string) => void;
}

export interface Statfs {
  monitor: Monitor;
  /** Bound 9P addresses as dial strings. */
  addresses: string[];
  http: HttpServer | undefined;
  /** Re-reads the configuration; on error the old one stays and the error is thrown. */
  reload(): Promise<Config>;
  close(): Promise<void>;
}

function applyOverrides(config: Config, o: Partial<PollSettings> | undefined): Config {
  if (!o) return config;
  const poll = { ...config.poll };
  for (const [k, v] of Object.entries(o) as [keyof PollSettings, never][]) {
    if (v !== undefined && !config.pollSet.has(k)) poll[k] = v;
  }
  // Derived defaults follow an interval given on the command line.
  if (o.intervalMs !== undefined && !config.pollSet.has("intervalMs")) {
    if (o.backoffMaxMs === undefined && !config.pollSet.has("backoffMaxMs"))
      poll.backoffMaxMs = poll.intervalMs;
    if (o.connectTimeoutMs === undefined && !config.pollSet.has("connectTimeoutMs")) {
      poll.connectTimeoutMs = Math.min(poll.connectTimeoutMs, poll.intervalMs);
    }
    if (o.readTimeoutMs === undefined && !config.pollSet.has("readTimeoutMs")) {
      poll.readTimeoutMs = Math.min(poll.readTimeoutMs, poll.intervalMs);
    }
    if (o.backoffInitialMs === undefined && !config.pollSet.has("backoffInitialMs")) {
      poll.backoffInitialMs = Math.min(poll.backoffInitialMs, poll.intervalMs);
    }
  }
  // The file's own settings were checked when it was read; what the overrides changed is checked
  // by the same rules (a timeout longer than the interval is refused here as in the file).
  const issues: ConfigIssue[] = [];
  checkPoll(poll, "command line", issues);
  if (issues.length > 0) throw new ConfigError(issues);
  return { ...config, poll };
}

function splitHostPort(text: string): { host: string; port: number } {
  const a: Address = parseAddress(text, 0);
  if (a.network !== "tcp") throw new Error(`HTTP needs a TCP address, got "${text}"`);
  return { host: a.host, port: a.port };
}

/** Why an HTTP listen failed, for the usual errno codes. */
const LISTEN_ERRORS: Record<string, string> = {
  ENOTFOUND: "no such host (ENOTFOUND)",
  EAI_AGAIN: "the name cannot be resolved now (EAI_AGAIN)",
  EADDRINUSE: "address already in use (EADDRINUSE)",
  EADDRNOTAVAIL: "not an address of this machine (EADDRNOTAVAIL)",
  EACCES: "permission denied (EACCES)",
};

/** Starts statfs. Rejects (and leaves nothing running) when the config, key or a listen fails. */
export async function startStatfs(opts: StatfsOptions): Promise<Statfs> {
  const log = opts.log ?? (() => {});
  let config = applyOverrides(await loadConfig(opts.configFile), opts.pollOverrides);
  const uid = await adminUid();
  const connector: Connector =
    opts.connector ??
    new XcpufsConnector(
      { key: opts.adminKey, uid, trace: opts.traceClient },
      (): boolean => monitor.poll.procs,
    );
  const monitor: Monitor = new Monitor(config, { connector });

  // With a hold file, what a reload does to the holds of nodes it removes or brings back.
  let holdsAcrossReload: { before(next: Config): void; after(): void } | undefined;
  if (opts.holdFile) {
    const holdFile = opts.holdFile;
    // Holds of nodes the configuration does not name now (taken out for a while): kept in the file
    // as they are, and in force again when a reload or a restart brings the node back.
    const kept = new Map<string, string>();
    // The text last written (or read): a change event that leaves the holds as they were (most
    // are status changes) writes nothing.
    let saved: string | undefined;
    try {
      const text = await readFile(holdFile, "utf8");
      const doc = JSON.parse(text) as unknown;
      const holds = (doc as { holds?: unknown } | null)?.holds;
      if (holds === null || typeof holds !== "object" || Array.isArray(holds))
        throw new Error('expected {"holds": {"NODE": "reason", ...}}');
      for (const [name, reason] of Object.entries(holds)) {
        const problem = holdReasonProblem(reason);
        if (problem) log(`hold file ${holdFile}: ${JSON.stringify(name)}: ${problem}; not restored`);
        else if (monitor.node(name)) monitor.setHold(name, reason as string);
        else {
          kept.set(name, reason as string);
          log(
            `hold file ${holdFile}: ${JSON.stringify(name)}: not in the configuration; its hold (${reason}) stays in the file for when it returns`,
          );
        }
      }
    } catch (err) {
      // Serving without the holds and then writing the file would lose them: refuse to start.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT")
        throw new Error(
          `cannot read hold file ${holdFile}: ${(err as Error).message}; not started, so that the file is not overwritten (mend or remove it)`,
        );
    }
    let saving = Promise.resolve();
    const holdsText = () => {
      const holds: Record<string, string> = {};
      for (const n of monitor.nodes()) if (n.hold !== undefined) holds[n.config.name] = n.hold;
      for (const [name, reason] of kept) if (!monitor.node(name)) holds[name] = reason;
      return `${JSON.stringify({ holds }, null, 1)}\n`;
    };
    // What the file holds once read (or restored) is what is in force now: rewriting it would only
    // drop the entries that were refused, which the log names.
    saved = holdsText();
    // One save at a time, in order; each writes the holds in force when it runs.
    const save = (): Promise<void> => {
      const run = saving.then(async () => {
        const text = holdsText();
        if (text === saved) return;
        const tmp = `${holdFile}.tmp`;
        try {
          // On the disk before the rename, so a crash leaves the old file or the new one, whole.
          const fh = await open(tmp, "w", 0o644);
          try {
            await fh.writeFile(text);
            await fh.sync();
          } finally {
            await fh.close();
          }
          await rename(tmp, holdFile);
          saved = text;
        } catch (err) {
          // A full disk: the previous file stays whole; take the partial copy away.
          await rm(tmp, { force: true }).catch(() => {});
          const e = err as NodeJS.ErrnoException;
          const why = `cannot write hold file ${holdFile}: ${e.code ?? e.message}`;
          log(why);
          throw new Error(why);
        }
      });
      saving = run.catch(() => {});
      return run;
    };
    monitor.on("change", () => void save().catch(() => {}));
    monitor.persistHolds = save;
    holdsAcrossReload = {
      before(next) {
        const names = new Set(next.nodes.map((n) => n.name));
        for (const n of monitor.nodes()) {
          if (n.hold === undefined || names.has(n.config.name)) continue;
          kept.set(n.config.name, n.hold);
          log(
            `node ${n.config.name} left the configuration; its hold (${n.hold}) stays in ${holdFile} for when it returns`,
          );
        }
      },
      after() {
        for (const [name, reason] of kept) {
          if (!monitor.node(name)) continue;
          kept.delete(name);
          monitor.setHold(name, reason);
          log(`node ${name} is back in the configuration; its hold (${reason}) is in force again`);
        }
        void save().catch(() => {});
      },
    };
  }

  let lastReloadOk = 1;
  let reloadFailures = 0;
  const extraMetrics = (e: Exposition) => {
    e.family("statfs_config_reloads_total", "counter", "Configuration reloads that took effect.");
    e.sample(undefined, monitor.reloads);
    e.family("statfs_config_reload_failures_total", "counter", "Configuration reloads rejected.");
    e.sample(undefined, reloadFailures);
    e.family("statfs_config_last_reload_successful", "gauge", "1 if the last reload attempt succeeded.");
    e.sample(undefined, lastReloadOk);
  };

  const server = new Server({
    backend: statfsBackend(monitor, { adminKey: opts.adminKey, ctlWithoutAuth: opts.ctlWithoutAuth }),
    name: "statfs",
    trace: opts.traceServer,
    maxMsize: 65536 + 24,
    ...(opts.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: opts.handshakeTimeoutMs } : {}),
  });
  let http: HttpServer | undefined;
  const addresses: string[] = [];
  try {
    for (const a of opts.listen ?? [`tcp!0.0.0.0!${STATFS_PORT}`]) {
      addresses.push(formatAddress(await server.listen(parseAddress(a, STATFS_PORT))));
    }
    const httpAddr = opts.http === undefined ? DEFAULT_HTTP : opts.http;
    if (httpAddr !== null) {
      const where = splitHostPort(httpAddr);
      try {
        http = await startHttp(monitor, { ...where, extraMetrics });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const why = e.code ? (LISTEN_ERRORS[e.code] ?? e.code) : e.message;
        throw new Error(`cannot listen for HTTP on ${httpAddr}: ${why}`, { cause: err });
      }
    }
  } catch (err) {
    await server.close(0);
    await http?.close();
    throw err;
  }
  monitor.start();
  log(
    `serving ${countNodes(config.nodes.length)} on ${addresses.join(", ")}${http ? ` and http://${hostPort(http)}` : ""}, polling every ${config.poll.intervalMs / 1000} s`,
  );

  let reloading: Promise<Config> | undefined;
  const reload = async (): Promise<Config> => {
    // One reload at a time; a SIGHUP during a reload waits for it and reloads again.
    while (reloading) await reloading.catch(() => {});
    reloading = (async () => {
      try {
        const next = applyOverrides(await loadConfig(opts.configFile), opts.pollOverrides);
        // An emptied file (an editor's save caught half-way, a truncation) would drop every node.
        if (next.nodes.length === 0 && config.nodes.length > 0) {
          throw new ConfigError([
            {
              file: opts.configFile,
              line: 0,
              message: `names no node; the ${config.nodes.length} configured stay (restart statfs to run it without nodes)`,
            },
          ]);
        }
        holdsAcrossReload?.before(next);
        monitor.reload(next);
        holdsAcrossReload?.after();
        config = next;
        lastReloadOk = 1;
        log(`reloaded ${opts.configFile}: ${countNodes(next.nodes.length)}`);
        return next;
      } catch (err) {
        lastReloadOk = 0;
        reloadFailures++;
        throw err;
      }
    })();
    try {
      return await reloading;
    } finally {
      reloading = undefined;
    }
  };

  return {
    monitor,
    addresses,
    http,
    reload,
    close: async () => {
      await monitor.stop();
      await http?.close();
      await server.close(500);
    },
  };
}

/** "1 node", "2 nodes". */
function countNodes(n: number): string {
  return `${n} ${n === 1 ? "node" : "nodes"}`;
}

function hostPort(h: HttpServer): string {
  const a = h.address;
  return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
