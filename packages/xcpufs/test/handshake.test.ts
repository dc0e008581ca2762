// handshakeTimeoutMs: how long a connection may stay silent before Tversion. A VM's port forward
// (QEMU guestfwd) connects when QEMU starts, long before the guest kernel mounts: 0 lifts the limit.

import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount } from "@clustermatic/ninep/client";
import { afterEach, describe, expect, it } from "vitest";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";

const dirs: string[] = [];
const nodes: XcpufsHandle[] = [];
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((h) => h.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(handshakeTimeoutMs: number): Promise<XcpufsHandle> {
  const tmp = mkdtempSync(join(tmpdir(), "xcpufs-hs-"));
  dirs.push(tmp);
  const h = await startXcpufs({ port: 0, noAuth: true, tmpdir: tmp, handshakeTimeoutMs });
  nodes.push(h);
  return h;
}

describe("handshakeTimeoutMs", () => {
  it("a silent connection is closed once the limit passes", async () => {
    const h = await start(200);
    const sock = net.connect(h.port, "127.0.0.1");
    const closed = await new Promise<boolean>((resolve) => {
      sock.once("close", () => resolve(true));
      sock.once("error", () => {});
    });
    expect(closed).toBe(true);
  });

  it("0: a connection silent for a while still mounts and reads arch", async () => {
    const h = await start(0);
    const sock = net.connect(h.port, "127.0.0.1");
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    await new Promise((r) => setTimeout(r, 400));
    expect(sock.destroyed).toBe(false);
    sock.destroy();
    const fs = await mount(h.address, { uname: "tester", authenticate: async () => {} });
    try {
      expect((await fs.readFile("arch")).toString()).toBe(h.xcpufs.arch.toString());
    } finally {
      await fs.close();
    }
  });

  it("a negative limit is refused", async () => {
    await expect(start(-1)).rejects.toThrow(/handshakeTimeoutMs/);
  });
});
