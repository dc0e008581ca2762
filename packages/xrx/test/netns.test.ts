// Four hosts in network namespaces (a /24 of 198.18.0.0/15) on one bridge, each running xcpufs with real
// authentication: xrx reaches them over the bridge, flat and by tree spawn (nodes dial each other
// with passkeys). Needs root and iproute2; skipped with the reason otherwise. Every namespace,
// link and process is removed afterwards.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main as xrx } from "../src/cli/xrx.js";
import { loadPrivateKey } from "../src/keys.js";
import { xcpuNodes } from "../src/nodes.js";
import { adminIdentity, XcpuNode } from "../src/xcpu.js";
import { cleanupAll, onCleanup, ROOT, runCli, tempDir, until } from "./harness.js";

const ipBin = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].find((p) => existsSync(p));
const why =
  process.getuid?.() !== 0
    ? "not root"
    : ipBin === undefined
      ? "iproute2 (ip) is not installed"
      : !existsSync("/usr/bin/ssh-keygen")
        ? "ssh-keygen (openssh-client) is not installed"
        : undefined;
if (why) console.log(`netns tests skipped: ${why}`);

const HOSTS = 4;
const tag = `x${process.pid % 100000}`;
const bridge = `${tag}br`;
const ns = (i: number) => `${tag}n${i}`;
// A /24 of its own inside 198.18.0.0/15 (xcpufs' tests take theirs from 198.18.0.0/16 at the same time).
const net = `198.19.${(process.pid % 250) + 1}`;
const addr = (i: number) => `${net}.${10 + i}`;

function ip(...args: string[]) {
  execFileSync(ipBin!, args, { stdio: ["ignore", "ignore", "pipe"] });
}

describe.skipIf(why !== undefined)("xrx across network namespaces", () => {
  let list = "";
  let userKey = "";
  beforeAll(async () => {
    const removeAll = () => {
      for (let i = 1; i <= HOSTS; i++) {
        try {
          ip("netns", "del", ns(i));
        } catch {}
      }
      try {
        ip("link", "del", bridge);
      } catch {}
    };
    removeAll(); // names left by an earlier process with the same tag
    onCleanup(removeAll);
    ip("link", "add", bridge, "type", "bridge");
    ip("addr", "add", `${net}.1/24`, "dev", bridge);
    ip("link", "set", bridge, "up");
    for (let i = 1; i <= HOSTS; i++) {
      ip("netns", "add", ns(i));
      ip("link", "add", `${tag}v${i}`, "type", "veth", "peer", "name", "eth0", "netns", ns(i));
      ip("link", "set", `${tag}v${i}`, "master", bridge);
      ip("link", "set", `${tag}v${i}`, "up");
      ip("-n", ns(i), "addr", "add", `${addr(i)}/24`, "dev", "eth0");
      ip("-n", ns(i), "link", "set", "eth0", "up");
      ip("-n", ns(i), "link", "set", "lo", "up");
    }
    const dir = tempDir("xrx-netns-");
    execFileSync("ssh-keygen", [
      "-q",
      "-t",
      "rsa",
      "-b",
      "2048",
      "-m",
      "PEM",
      "-N",
      "",
      "-f",
      join(dir, "admin"),
    ]);
    execFileSync("ssh-keygen", ["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", join(dir, "user")]);
    userKey = join(dir, "user");
    const bin = join(ROOT, "packages/xcpufs/src/bin/xcpufs.ts");
    for (let i = 1; i <= HOSTS; i++) {
      const t = tempDir("xrx-nsnode-");
      const child = spawn(
        ipBin!,
        [
          "netns",
          "exec",
          ns(i),
          process.execPath,
          "--conditions=@clustermatic/source",
          "--import",
          "tsx",
          bin,
          "--listen",
          addr(i),
          "-p",
          "6667",
          "-a",
          join(dir, "admin.pub"),
          "-t",
          t,
          "--state-dir",
          t,
          "--log-level",
          "error",
        ],
        { cwd: join(ROOT, "packages/xrx"), stdio: ["ignore", "ignore", "inherit"], detached: true },
      );
      onCleanup(() => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {}
      });
    }
    const admin = adminIdentity(loadPrivateKey(join(dir, "admin")));
    const name = execFileSync("id", ["-un"], { encoding: "utf8" }).trim();
    const pub = readFileSync(`${userKey}.pub`, "utf8").trim();
    for (let i = 1; i <= HOSTS; i++) {
      const spec = xcpuNodes(addr(i))[0]!;
      let node: XcpuNode | undefined;
      await until(
        async () => {
          try {
            node = await XcpuNode.connect(spec, { identity: admin, timeoutMs: 10_000 });
            return true;
          } catch {
            return false;
          }
        },
        // Four node processes start at once (through tsx): slow on a busy machine.
        120_000,
        `xcpufs in ${ns(i)}`,
      );
      await node!.rootCtl("group-add xrxusers 4242");
      await node!.rootCtl(`user-add ${name} ${process.getuid!()} xrxusers '${pub}'`);
      node!.close();
    }
    list = Array.from({ length: HOSTS }, (_, i) => addr(i + 1)).join(",");
  }, 300_000);
  afterAll(cleanupAll);

  it("runs on 4 hosts over the bridge, flat and by tree spawn with passkeys", async () => {
    const flat = await runCli(xrx, ["-k", userKey, "-p", list, "sh", "-c", "echo $XCPU_PARENT"]);
    expect(flat.stderr).toBe("");
    expect(flat.code).toBe(0);
    const lines = flat.stdout.trim().split("\n").sort();
    expect(lines).toHaveLength(HOSTS);
    for (const l of lines)
      expect(l).toMatch(
        new RegExp(`^${net.replaceAll(".", "\\.")}\\.1\\d: ${net.replaceAll(".", "\\.")}\\.1!\\d+$`),
      );
    for (let round = 0; round < 3; round++) {
      const tree = await runCli(xrx, ["-k", userKey, "-n", "1", list, "sh", "-c", "echo $XCPUID"]);
      expect(tree.stderr).toBe("");
      expect(tree.code).toBe(0);
      expect(tree.stdout.trim().split("\n").sort()).toEqual(["/1", "/2", "/3", "/4"]);
    }
  }, 120_000);

  it("says when a host never took the connection (an address on the bridge nobody has)", async () => {
    const ghost = `${net}.99`; // no namespace has it: nothing answers its ARP, no SYN gets through
    const started = Date.now();
    const r = await runCli(xrx, ["-k", userKey, "-t", "1", `${addr(1)},${ghost}`, "echo", "up"]);
    expect(r.stdout).toBe("up\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `${ghost}: error: no answer from tcp!${ghost}!6667 within 1000 ms (no TCP connection made)`,
    );
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);
});
