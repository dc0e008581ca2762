// --arch: a node that reports another architecture runs that architecture's binaries through
// qemu-user-static and binfmt_misc.

import { existsSync, readFileSync } from "node:fs";
import { mount } from "@clustermatic/ninep/client";
import { OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, describe, expect, it } from "vitest";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { openJob, readAll, write } from "./helpers.js";

/** A minimal static aarch64 Linux program: write(1, "hi\n", 3); exit(0). */
export function aarch64Hello(): Buffer {
  const code = [
    0xd2800020, 0x100000e1, 0xd2800062, 0xd2800808, 0xd4000001, 0xd2800000, 0xd2800ba8, 0xd4000001,
  ];
  const text = Buffer.concat([Buffer.from(Uint32Array.from(code).buffer), Buffer.from("hi\n")]);
  const base = 0x400000n;
  const eh = Buffer.alloc(64);
  eh.write("\x7fELF", 0, "latin1");
  eh.set([2, 1, 1, 0], 4); // 64-bit, little endian, version 1, System V
  eh.writeUInt16LE(2, 16); // ET_EXEC
  eh.writeUInt16LE(183, 18); // EM_AARCH64
  eh.writeUInt32LE(1, 20);
  eh.writeBigUInt64LE(base + 64n + 56n, 24); // entry
  eh.writeBigUInt64LE(64n, 32); // phoff
  eh.writeUInt16LE(64, 52); // ehsize
  eh.writeUInt16LE(56, 54); // phentsize
  eh.writeUInt16LE(1, 56); // phnum
  const total = BigInt(64 + 56 + text.length);
  const ph = Buffer.alloc(56);
  ph.writeUInt32LE(1, 0); // PT_LOAD
  ph.writeUInt32LE(5, 4); // R+X
  ph.writeBigUInt64LE(base, 16);
  ph.writeBigUInt64LE(base, 24);
  ph.writeBigUInt64LE(total, 32);
  ph.writeBigUInt64LE(total, 40);
  ph.writeBigUInt64LE(0x1000n, 48);
  return Buffer.concat([eh, ph, text]);
}

const handler = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
const usable =
  process.arch !== "arm64" &&
  (process.getuid?.() === 0 || (existsSync(handler) && readFileSync(handler, "utf8").startsWith("enabled")));

let h: XcpufsHandle | undefined;
afterAll(() => h?.close());

describe.skipIf(!usable)("--arch /Linux/aarch64", () => {
  it("reports the architecture and runs an aarch64 program through qemu", async () => {
    h = await startXcpufs({ port: 0, noAuth: true, arch: "/Linux/aarch64" });
    if (!existsSync(handler) || !readFileSync(handler, "utf8").startsWith("enabled")) {
      console.log("skipping the aarch64 run: no qemu-aarch64 binfmt handler");
      return;
    }
    const fs = await mount(h.address, {
      uname: "a",
      n_uname: process.getuid?.() ?? 0,
      authenticate: async () => {},
    });
    expect((await fs.readFile("arch")).toString()).toBe("/Linux/aarch64");
    const job = await openJob(fs);
    const f = await fs.create(`${job.sid}/fs/hi`, 0o755, OWRITE);
    await f.write(0, aarch64Hello());
    await f.clunk();
    await write(fs, `${job.sid}/argv`, "hi");
    await job.ctl.write(0, "exec hi\n");
    expect((await readAll(job.stdout)).toString()).toBe("hi\n");
    expect((await readAll(job.wait)).toString()).toBe("0");
    await job.close();
    await fs.close();
  });
});
