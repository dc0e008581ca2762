// /api/events and a client that stops reading (a stopped process, a stuck proxy): statfs
// disconnects it once too much is left unread, instead of keeping every later event for it in
// memory; a client that reads keeps its stream.

import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../src/config.js";
import { type HttpServer, startHttp } from "../src/http.js";
import { Monitor } from "../src/monitor.js";
import { XcpufsConnector } from "../src/xcpufs-session.js";
import { deadPort, waitFor } from "./helpers/net.js";

const LIMIT = 256 << 10;

describe("the event stream", () => {
  let mon: Monitor;
  let server: HttpServer;

  beforeAll(async () => {
    // The monitor is not started: the events here are hold changes.
    const config = parseConfig(`n1=127.0.0.1!${await deadPort()}\n`, "statfs.conf");
    mon = new Monitor(config, { connector: new XcpufsConnector() });
    server = await startHttp(mon, { host: "127.0.0.1", port: 0, eventsMaxBuffered: LIMIT });
  });
  afterAll(async () => {
    await server?.close();
    await mon?.stop();
  });

  it("drops a client that stopped reading, and keeps one that reads", async () => {
    const port = server.address.port;
    // A client that reads the response head and then nothing more.
    const stuck = net.connect(port, "127.0.0.1");
    let stuckClosed = false;
    stuck.on("close", () => (stuckClosed = true));
    stuck.on("error", () => {});
    stuck.write("GET /api/events HTTP/1.1\r\nHost: statfs\r\n\r\n");
    await new Promise<void>((resolve) => stuck.once("data", () => resolve()));
    stuck.pause();

    // A client that reads everything.
    let received = 0;
    let readerEnded = false;
    const reader = http.get({ host: "127.0.0.1", port, path: "/api/events" }, (res) => {
      res.on("data", (d: Buffer) => (received += d.length));
      res.on("close", () => (readerEnded = true));
    });
    reader.on("error", () => {});
    await waitFor(() => received > 0, 20_000, "the reader's snapshot");

    const connections = () =>
      new Promise<number>((resolve, reject) =>
        server.server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
      );
    expect(await connections()).toBe(2);

    // Events, a burst at a time, until statfs has let the stuck client go (the client, which does
    // not read, sees that only once it reads again), or far more than the kernel's socket buffers
    // and the limit have been sent.
    let sent = 0;
    let toggle = false;
    while ((await connections()) === 2 && sent < 64 << 20) {
      for (let i = 0; i < 50; i++) {
        toggle = !toggle;
        mon.setHold("n1", toggle ? `maintenance-window-${sent}` : undefined);
        sent += 400;
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
      // Follow the reader: it must keep up, not be dropped.
      while (sent - received > LIMIT / 4 && !readerEnded) await new Promise((r) => setTimeout(r, 5));
    }
    stuck.resume();
    await waitFor(() => stuckClosed, 20_000, "the stuck client disconnected");
    expect(readerEnded).toBe(false);
    expect(await connections()).toBe(1);
    const before = received;
    mon.setHold("n1", "last");
    await waitFor(() => received > before, 20_000, "the reader's next event");
    reader.destroy();
    stuck.destroy();
  }, 120_000);
});
