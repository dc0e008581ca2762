// An xcpufs node process that freezes (SIGSTOP: its connections stay open but nothing answers),
// thaws, and is then killed with SIGKILL: statfs follows each change within two poll intervals.

import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Statfs, startStatfs } from "../src/daemon.js";
import { statusOf } from "../src/monitor.js";
import { deadPort, waitFor } from "./helpers/net.js";

const INTERVAL = 1000;
const xcpufsBin = join(import.meta.dirname, "helpers", "xcpufs-process.ts");

describe("a node process that stops answering", () => {
  let dir: string;
  let port: number;
  let child: ReturnType<typeof spawn> | undefined;
  let statfs: Statfs;

  const startNodeProcess = () =>
    spawn(
      process.execPath,
      [
        "--conditions=@clustermatic/source",
        "--import",
        "tsx",
        xcpufsBin,
        "--no-auth",
        "-p",
        String(port),
        "--state-dir",
        join(dir, "st"),
        "-t",
        dir,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-stop-"));
    port = await deadPort();
    child = startNodeProcess();
    const conf = join(dir, "statfs.conf");
    await writeFile(conf, `frozen=tcp!127.0.0.1!${port}\n`);
    statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      pollOverrides: { intervalMs: INTERVAL, connectTimeoutMs: 500, readTimeoutMs: 500 },
    });
  });
  afterAll(async () => {
    await statfs?.close();
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      await new Promise((r) => child!.once("exit", r));
    }
    await rm(dir, { recursive: true, force: true });
  });

  const status = () => statusOf(statfs.monitor.node("frozen")!).toString();

  it("goes down on SIGSTOP, up on SIGCONT, down on SIGKILL", async () => {
    await waitFor(() => status() === "up", 30_000, "the node process to start and answer");

    const stoppedAt = Date.now();
    child!.kill("SIGSTOP");
    await waitFor(() => status().startsWith("down("), 2 * INTERVAL + 1000, "down after SIGSTOP");
    expect(status()).toMatch(/^down\((read_failed|connect_failed)\)$/);
    expect(statfs.monitor.node("frozen")!.since - stoppedAt).toBeLessThanOrEqual(2 * INTERVAL);

    const contAt = Date.now();
    child!.kill("SIGCONT");
    await waitFor(() => status() === "up", 2 * INTERVAL + 1000, "up after SIGCONT");
    expect(statfs.monitor.node("frozen")!.since - contAt).toBeLessThanOrEqual(2 * INTERVAL);

    const killedAt = Date.now();
    child!.kill("SIGKILL");
    await waitFor(() => status().startsWith("down("), 2 * INTERVAL + 1000, "down after SIGKILL");
    expect(statfs.monitor.node("frozen")!.since - killedAt).toBeLessThanOrEqual(2 * INTERVAL);
  });
});
