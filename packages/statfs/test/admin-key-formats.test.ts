// The admin key formats statfs reads are xrx's: OpenSSH-format private keys (as ssh-keygen writes
// them, Ed25519 and RSA) log statfs in to nodes whose admin key is the matching `.pub`, and a
// passphrase-protected one is refused at start with the file named.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startXcpufs, type XcpufsHandle } from "@clustermatic/xcpufs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xstat } from "../src/cli/xstat.js";
import { type ParsedRow, parseTable } from "../src/table.js";
import { waitFor } from "./helpers/net.js";
import { processScope } from "./helpers/proc.js";

const sshKeygen = ["/usr/bin/ssh-keygen", "/bin/ssh-keygen"].some((p) => existsSync(p));
if (!sshKeygen) console.log("admin key format tests skipped: ssh-keygen (openssh-client) is not installed");

async function table(addr: string): Promise<ParsedRow[] | undefined> {
  let out = "";
  const code = await xstat(["-a", addr, "-t", "10s"], {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: () => {} },
    handleSignals: false,
  });
  return code === 0 ? parseTable(out) : undefined;
}

describe.skipIf(!sshKeygen)("OpenSSH-format admin keys", () => {
  let dir: string;
  let conf: string;
  const scope = processScope();
  const keyFile = (t: string) => join(dir, `${t}_admin`);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "statfs-keys-"));
    const nodes: Record<string, XcpufsHandle> = {};
    for (const [t, bits] of [
      ["ed25519", []],
      ["rsa", ["-b", "2048"]],
    ] as const) {
      execFileSync("ssh-keygen", ["-q", "-t", t, ...bits, "-N", "", "-C", `${t} admin`, "-f", keyFile(t)]);
      expect(readFileSync(keyFile(t), "utf8")).toContain("-----BEGIN OPENSSH PRIVATE KEY-----");
      // A node started as `xcpufs -a FILE.pub` would be.
      nodes[t] = scope.keep(
        await startXcpufs({
          listen: "tcp!127.0.0.1!0",
          adminKeyFile: `${keyFile(t)}.pub`,
          tmpdir: dir,
          env: { PATH: "/usr/bin:/bin" },
        }),
      );
    }
    conf = join(dir, "statfs.conf");
    await writeFile(conf, `ned=${nodes.ed25519!.address}\nnrsa=${nodes.rsa!.address}\n`);
  }, 120_000);
  afterAll(async () => {
    await scope.stop();
    await rm(dir, { recursive: true, force: true });
  });

  // Each key logs in to the node that knows it, and not to the other: the login is the key's.
  for (const [t, up, refused] of [
    ["ed25519", "ned", "nrsa"],
    ["rsa", "nrsa", "ned"],
  ] as const) {
    it(`an ${t} key logs statfs in to its node`, async () => {
      const statfs = scope.spawnStatfs([
        "-f",
        "-c",
        conf,
        "-a",
        keyFile(t),
        "-l",
        "tcp!127.0.0.1!0",
        "--http",
        "off",
      ]);
      await statfs.waitStderr(/serving 2 nodes on tcp!127\.0\.0\.1!\d+/, 60_000);
      const addr = /serving 2 nodes on (tcp!127\.0\.0\.1!\d+)/.exec(statfs.stderr())![1]!;
      let rows: ParsedRow[] | undefined;
      await waitFor(
        async () => {
          rows = await table(addr);
          const status = (name: string) => rows?.find((r) => r.name === name)?.status;
          return status(up) === "up" && status(refused) === "down(connect_failed)";
        },
        20_000,
        `${up} up and ${refused} refused`,
      ).catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(rows)}\n${statfs.stderr()}`);
      });
      expect(rows!.find((r) => r.name === up)!.arch).toMatch(/^\/Linux\//);
      expect(statfs.stderr()).not.toContain("admin key");
      statfs.kill("SIGTERM");
      expect(await statfs.exited).toBe(0);
    }, 120_000);
  }

  it("a passphrase-protected OpenSSH key is refused at start, naming the file", async () => {
    const enc = join(dir, "enc_admin");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "secret", "-f", enc]);
    const statfs = scope.spawnStatfs(["-f", "-c", conf, "-a", enc, "-l", "tcp!127.0.0.1!0", "--http", "off"]);
    expect(await statfs.exited).toBe(1);
    expect(statfs.stderr()).toBe(
      `statfs: admin key ${enc}: passphrase-protected keys are not supported (decrypt it with ssh-keygen -p)\n`,
    );
  }, 120_000);
});
