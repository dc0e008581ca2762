// What the README promises about two things a user meets early: the errors of the root ctl
// (an unknown command is named as one, whatever follows it) and poll timeouts longer than the
// interval (refused on the command line as in the configuration file).

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount } from "@clustermatic/ninep/client";
import { OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as statfsMain } from "../src/cli/statfs.js";
import { ConfigError } from "../src/config.js";
import { startStatfs } from "../src/daemon.js";
import { capture } from "./helpers/io.js";

let dir: string;
let conf: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "statfs-ctl-timeouts-"));
  conf = join(dir, "statfs.conf");
  await writeFile(conf, "n1=127.0.0.1!1\n");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the root ctl", () => {
  it("names an unknown command as such, with or without a node after it", async () => {
    const statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      ctlWithoutAuth: true,
      pollOverrides: { intervalMs: 10_000, connectTimeoutMs: 5000, readTimeoutMs: 5000 },
    });
    try {
      const fs = await mount(statfs.addresses[0]!, { uname: "someone", timeoutMs: 20_000 });
      try {
        const ctl = await fs.open("ctl", OWRITE);
        const list = "(down NODE [reason], up NODE, state NODE TEXT, poll [NODE])";
        await expect(ctl.write(0, "reboot\n")).rejects.toThrow(`unknown command "reboot" ${list}`);
        await expect(ctl.write(0, "reboot n1\n")).rejects.toThrow(`unknown command "reboot" ${list}`);
        // A known command without its node is a usage error, as before.
        await expect(ctl.write(0, "down\n")).rejects.toThrow("usage: down NODE …");
        await expect(ctl.write(0, "down nosuch\n")).rejects.toThrow('unknown node "nosuch"');
        await ctl.write(0, "down n1 maint\n");
        expect(statfs.monitor.node("n1")?.hold).toBe("maint");
        await ctl.clunk();
      } finally {
        await fs.close();
      }
    } finally {
      await statfs.close();
    }
  });
});

describe("poll timeouts against the interval", () => {
  it("refuses a timeout longer than the interval given on the command line, as the file does", async () => {
    await expect(
      startStatfs({
        configFile: conf,
        listen: ["tcp!127.0.0.1!0"],
        http: null,
        pollOverrides: { intervalMs: 1000, connectTimeoutMs: 10_000 },
      }),
    ).rejects.toThrow(ConfigError);

    const c = capture();
    const status = await statfsMain(
      ["-c", conf, "--no-auth", "--http", "off", "-l", "tcp!127.0.0.1!0", "-i", "1s", "--read-timeout", "3s"],
      c.io,
    );
    expect(status).toBe(1);
    expect(c.err).toBe(
      "statfs: configuration rejected:\ncommand line: poll: connectTimeout and readTimeout must not exceed interval\n",
    );
  });

  it("still cuts the default timeouts to a short interval", async () => {
    const statfs = await startStatfs({
      configFile: conf,
      listen: ["tcp!127.0.0.1!0"],
      http: null,
      pollOverrides: { intervalMs: 500 },
    });
    try {
      expect(statfs.monitor.poll.connectTimeoutMs).toBe(500);
      expect(statfs.monitor.poll.readTimeoutMs).toBe(500);
    } finally {
      await statfs.close();
    }
  });
});
