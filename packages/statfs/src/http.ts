// The HTTP face of statfs: Prometheus metrics (/metrics), the node list as JSON (/api/nodes,
// /api/nodes/<name>) and a server-sent-events stream of changes (/api/events).

import http from "node:http";
import type { AddressInfo } from "node:net";
import { type Monitor, type NodeView, statusOf, viewOf } from "./monitor.js";
import { Exposition, PROM_CONTENT_TYPE } from "./prom.js";

export interface HttpOptions {
  host: string;
  port: number;
  /** Seconds between SSE keep-alive comments. Default 15. */
  keepAliveSec?: number;
  /**
   * Bytes of events an `/api/events` client may leave unread (beyond what the kernel buffers)
   * before it is disconnected. Default {@link EVENTS_MAX_BUFFERED}.
   */
  eventsMaxBuffered?: number;
  /** Extra gauges from the daemon (reload status…). */
  extraMetrics?: (e: Exposition) => void;
}

/**
 * Default limit on the events an `/api/events` client leaves unread: a client that stopped reading
 * (a stopped process, a stuck proxy) is disconnected instead of having every later event kept for
 * it in statfs's memory. Far above the burst a reader that keeps up sees (a snapshot of 1,000 nodes
 * is about 500 KiB); an EventSource reconnects and starts again from a snapshot.
 */
export const EVENTS_MAX_BUFFERED = 8 << 20;

/** Renders the metrics document for a monitor. */
export function renderMetrics(mon: Monitor, extra?: (e: Exposition) => void): string {
  const e = new Exposition();
  const nodes = mon.nodes();
  const labelKeys = new Set<string>();
  for (const n of nodes) for (const k of Object.keys(n.config.labels)) labelKeys.add(k);
  const keys = [...labelKeys].sort();

  e.family("statfs_nodes_configured", "gauge", "Number of nodes in the configuration.");
  e.sample(undefined, nodes.length);
  let up = 0;
  for (const n of nodes) if (statusOf(n).toString() === "up") up++;
  e.family("statfs_nodes_up", "gauge", "Number of nodes whose status is exactly up.");
  e.sample(undefined, up);

  e.family(
    "statfs_node_info",
    "gauge",
    "Static facts about a node (always 1): address, arch and configured labels.",
  );
  for (const n of nodes) {
    const labels: Record<string, string> = {
      node: n.config.name,
      address: n.config.address,
      arch: n.arch.toString("utf8").replace(/\s+$/, ""),
    };
    for (const k of keys) labels[k] = n.config.labels[k] ?? "";
    e.sample(labels, 1);
  }
  e.family("statfs_node_up", "gauge", "1 when the node's status is exactly up, else 0.");
  for (const n of nodes) e.sample({ node: n.config.name }, statusOf(n).toString() === "up" ? 1 : 0);
  e.family("statfs_node_held", "gauge", "1 when an administrator holds the node down through ctl.");
  for (const n of nodes) e.sample({ node: n.config.name }, n.hold !== undefined ? 1 : 0);
  e.family(
    "statfs_node_sessions",
    "gauge",
    "Session directories on the node at the last poll (the state table's numjobs).",
  );
  for (const n of nodes) e.sample({ node: n.config.name }, n.numjobs);

  const optional: [string, string, (v: NodeView) => number | null][] = [
    ["statfs_node_jobs", "Distinct job ids among the node's processes.", (v) => v.jobs],
    ["statfs_node_processes", "Processes on the node.", (v) => v.processes],
    ["statfs_node_load1", "One-minute load average.", (v) => v.load?.[0] ?? null],
    ["statfs_node_load5", "Five-minute load average.", (v) => v.load?.[1] ?? null],
    ["statfs_node_load15", "Fifteen-minute load average.", (v) => v.load?.[2] ?? null],
    ["statfs_node_memory_total_bytes", "Total memory of the node.", (v) => v.memTotalBytes],
    [
      "statfs_node_memory_available_bytes",
      "Memory available for new work on the node.",
      (v) => v.memAvailableBytes,
    ],
    ["statfs_node_uptime_seconds", "Seconds since the node booted.", (v) => v.uptimeSeconds],
  ];
  const views = nodes.map(viewOf);
  for (const [name, help, get] of optional) {
    e.family(name, "gauge", `${help} Only for nodes that report it.`);
    for (const v of views) {
      const x = get(v);
      if (x !== null && v.up) e.sample({ node: v.name }, x);
    }
  }
  e.family("statfs_node_poll_duration_seconds", "gauge", "Duration of the node's last poll.");
  for (const n of nodes) e.sample({ node: n.config.name }, n.lastPollMs / 1000);
  e.family("statfs_node_polls_total", "counter", "Polls of the node.");
  for (const n of nodes) e.sample({ node: n.config.name }, n.polls);
  e.family(
    "statfs_node_poll_errors_total",
    "counter",
    "Polls of the node that failed (connect, read, timeout).",
  );
  for (const n of nodes) e.sample({ node: n.config.name }, n.pollErrors);
  e.family("statfs_node_status_since_seconds", "gauge", "Unix time of the node's last status change.");
  for (const n of nodes) e.sample({ node: n.config.name }, Math.floor(n.since / 1000));

  e.family("statfs_poll_duration_seconds", "histogram", "Duration of polls over all nodes.");
  e.histogram(undefined, mon.latency.bounds, mon.latency.counts, mon.latency.sum);
  e.family("statfs_poll_queue_wait_seconds", "histogram", "Time a due poll waited for a free slot.");
  e.histogram(undefined, mon.queueWait.bounds, mon.queueWait.counts, mon.queueWait.sum);
  e.family("statfs_polls_in_flight", "gauge", "Polls running now.");
  e.sample(undefined, mon.inFlight);
  e.family(
    "statfs_poll_round_seconds",
    "gauge",
    "Wall time of the last complete round over all nodes (-1 before the first).",
  );
  e.sample(undefined, mon.lastRoundMs < 0 ? -1 : mon.lastRoundMs / 1000);
  e.family("statfs_poll_interval_seconds", "gauge", "Configured poll interval.");
  e.sample(undefined, mon.poll.intervalMs / 1000);
  extra?.(e);
  return e.toString();
}

export interface HttpServer {
  server: http.Server;
  address: AddressInfo;
  close(): Promise<void>;
}

/** Starts the HTTP server; resolves once it listens. */
export async function startHttp(mon: Monitor, opts: HttpOptions): Promise<HttpServer> {
  const clients = new Set<http.ServerResponse>();
  let eventId = 0;
  const maxBuffered = opts.eventsMaxBuffered ?? EVENTS_MAX_BUFFERED;
  const send = (res: http.ServerResponse, event: string, data: unknown) => {
    // A client that does not read would otherwise keep every event in memory here, for good.
    if (res.writableLength > maxBuffered) {
      clients.delete(res);
      res.destroy();
      return;
    }
    res.write(`id: ${++eventId}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const onChange = (v: NodeView) => {
    for (const c of clients) send(c, "node", v);
  };
  const onReload = () => {
    const nodes = mon.nodes().map(viewOf);
    for (const c of clients) send(c, "snapshot", { nodes });
  };
  mon.on("change", onChange);
  mon.on("reload", onReload);

  const server = http.createServer((req, res) => {
    // Whatever a client sends, it gets an answer and statfs keeps running (a bad %-escape in a node
    // name, or a request target that is no URL, used to throw out of this handler and end statfs).
    try {
      handle(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(400, { "content-type": "text/plain" });
      res.end("bad request\n");
    }
  });
  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://statfs");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    const path = url.pathname;
    if (path === "/metrics") {
      const body = renderMetrics(mon, opts.extraMetrics);
      res.writeHead(200, { "content-type": PROM_CONTENT_TYPE, "cache-control": "no-store" }).end(body);
      return;
    }
    if (path === "/api/nodes" || path === "/api/nodes/") {
      let views = mon.nodes().map(viewOf);
      const status = url.searchParams.get("status");
      if (status) views = views.filter((v) => v.status === status);
      json(res, 200, {
        interval: mon.poll.intervalMs / 1000,
        generated: new Date().toISOString(),
        nodes: views,
      });
      return;
    }
    if (path.startsWith("/api/nodes/")) {
      const name = decodeURIComponent(path.slice("/api/nodes/".length));
      const n = mon.node(name);
      if (!n) json(res, 404, { error: `unknown node "${name}"` });
      else json(res, 200, viewOf(n));
      return;
    }
    if (path === "/api/events") {
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        connection: "keep-alive",
        "x-accel-buffering": "no",
      });
      res.write(`retry: 2000\n\n`);
      send(res, "snapshot", { nodes: mon.nodes().map(viewOf) });
      clients.add(res);
      req.on("close", () => clients.delete(res));
      return;
    }
    if (path === "/") {
      res
        .writeHead(200, { "content-type": "text/plain; charset=utf-8" })
        .end(
          "statfs: /metrics (Prometheus), /api/nodes (JSON), /api/nodes/<name>, /api/events (server-sent events)\n",
        );
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  };
  server.keepAliveTimeout = 5000;
  const keepAlive = setInterval(
    () => {
      for (const c of clients) {
        if (c.writableLength > maxBuffered) {
          clients.delete(c);
          c.destroy();
        } else c.write(": keep-alive\n\n");
      }
    },
    (opts.keepAliveSec ?? 15) * 1000,
  );
  keepAlive.unref();

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    server,
    address: server.address() as AddressInfo,
    close: async () => {
      clearInterval(keepAlive);
      mon.off("change", onChange);
      mon.off("reload", onReload);
      for (const c of clients) c.end();
      clients.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function json(res: http.ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  res.end(`${JSON.stringify(body)}\n`);
}
