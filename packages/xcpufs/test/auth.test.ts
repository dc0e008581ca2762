// Authentication and access control over real sockets.

import { spawn } from "node:child_process";
import { randomBytes, sign } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MsgType, OREAD, OWRITE } from "@clustermatic/ninep/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startXcpufs, type XcpufsHandle } from "../src/index.js";
import { cmd, decryptPasskey, edKey, login, rsaKey, run } from "./helpers.js";

const admin = rsaKey();
const alice = rsaKey();
const bob = rsaKey();
const carol = edKey();
const adminLogin = { uname: "xcpu-admin", uid: 65530, key: admin.privateKey };
let h: XcpufsHandle;

beforeAll(async () => {
  h = await startXcpufs({ port: 0, listen: "127.0.0.1", adminKey: admin.line, sameUser: true });
  const fs = await login(h.address, adminLogin);
  await cmd(
    fs,
    "ctl",
    `group-add users 5000\nuser-add alice 5001 users '${alice.line}'\nuser-add bob 5002 users '${bob.line}'\n` +
      `user-add carol 5003 users '${carol.line}'\nuser-add dave 5004 users ''\n`,
  );
  await fs.close();
});
afterAll(() => h?.close());

describe("authentication", () => {
  it("accepts a user's RSA signature and runs a job", async () => {
    const fs = await login(h.address, { uname: "alice", uid: 5001, key: alice.privateKey });
    const r = await run(fs, "/bin/echo", "echo hi");
    expect(r.out).toBe("hi\n");
    await fs.close();
  });
  it("accepts an Ed25519 signature", async () => {
    const fs = await login(h.address, { uname: "carol", uid: 5003, key: carol.privateKey });
    expect((await fs.readFile("arch")).toString()).toMatch(/^\/Linux\/[^\n]+$/);
    await fs.close();
  });
  it("gives every auth fid its own challenge, the same on every read of it", async () => {
    const { Client } = await import("@clustermatic/ninep/client");
    const c = await Client.connect(h.address, { msize: 8192 });
    try {
      const seen = new Set<string>();
      // more than one refill of the server's pool of random bytes
      for (let i = 0; i < 150; i++) {
        const afid = await c.auth("alice", "", { n_uname: 5001 });
        if (!afid) throw new Error("no auth fid");
        const a = Buffer.from(await afid.read(64));
        expect(a.length).toBe(16);
        expect(a.equals(Buffer.alloc(16))).toBe(false);
        // read again from the start
        const again = await c.rpc({ type: MsgType.Tread, fid: afid.num, offset: 0n, count: 64 });
        expect(Buffer.from(again.data).toString("hex")).toBe(a.toString("hex"));
        seen.add(a.toString("hex"));
        await afid.clunk();
      }
      expect(seen.size).toBe(150);
    } finally {
      await c.close();
    }
  });
  it("refuses a signature of another auth fid's challenge", async () => {
    const { Client } = await import("@clustermatic/ninep/client");
    const c = await Client.connect(h.address, { msize: 8192 });
    try {
      const first = await c.auth("alice", "", { n_uname: 5001 });
      const second = await c.auth("alice", "", { n_uname: 5001 });
      if (!first || !second) throw new Error("no auth fid");
      const ch = Buffer.from(await first.read(64));
      await second.read(64);
      await second.write(sign("sha1", ch, alice.privateKey));
      await expect(c.attach("alice", "", { afid: second, n_uname: 5001 })).rejects.toThrow(
        "authentication failed",
      );
      await first.write(sign("sha1", ch, alice.privateKey));
      const root = await c.attach("alice", "", { afid: first, n_uname: 5001 });
      await root.clunk();
    } finally {
      await c.close();
    }
  });
  it("refuses a wrong key, a garbage response and no response", async () => {
    await expect(login(h.address, { uname: "alice", uid: 5001, key: bob.privateKey })).rejects.toThrow(
      "authentication failed",
    );
    await expect(login(h.address, { uname: "alice", uid: 5001, raw: randomBytes(20) })).rejects.toThrow(
      "authentication failed",
    );
    await expect(login(h.address, { uname: "alice", uid: 5001 })).rejects.toThrow("authentication failed");
  });
  it("refuses an unknown uid and an attach without auth", async () => {
    await expect(login(h.address, { uname: "alice", uid: 4242, key: alice.privateKey })).rejects.toThrow(
      "unknown user",
    );
    const { mount } = await import("@clustermatic/ninep/client");
    await expect(mount(h.address, { uname: "alice", n_uname: 5001 })).rejects.toThrow(
      "authentication failed",
    );
  });
  it("lets the admin key act as any user, and a keyless user in without a response", async () => {
    const fs = await login(h.address, { uname: "bob", uid: 5002, key: admin.privateKey });
    const st = await fs.stat("clone");
    expect(st.uid).toBe("xcpu-admin");
    const r = await run(fs, "/bin/echo", "echo as bob");
    expect(r.out).toBe("as bob\n");
    await fs.close();
    const d = await login(h.address, { uname: "dave", uid: 5004 });
    await d.close();
  });
  it("a keyless user with uid 0 found in a saved pool file logs in only with the admin key", async () => {
    const dir = mkdtempSync(join(tmpdir(), "xcpufs-keyless0-"));
    try {
      writeFileSync(
        join(dir, "users.json"),
        JSON.stringify({
          version: 1,
          groups: [{ name: "users", gid: 5000 }],
          users: [
            { name: "r00t", uid: 0, gid: 5000, groups: ["users"], key: "" },
            { name: "dave", uid: 5004, gid: 5000, groups: ["users"], key: "" },
          ],
        }),
      );
      const h2 = await startXcpufs({
        port: 0,
        listen: "127.0.0.1",
        adminKey: admin.line,
        sameUser: true,
        stateDir: dir,
      });
      try {
        await expect(login(h2.address, { uname: "r00t", uid: 0 })).rejects.toThrow(/authentication failed/);
        await (await login(h2.address, { uname: "dave", uid: 5004 })).close();
        await (await login(h2.address, { uname: "r00t", uid: 0, key: admin.privateKey })).close();
      } finally {
        await h2.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("passkeys are one-shot and encrypted for their user", async () => {
    const fs = await login(h.address, { uname: "alice", uid: 5001, key: alice.privateKey });
    const enc = await fs.readFile("passkey");
    expect(enc.length).toBe(256);
    const pk = decryptPasskey(alice.privateKey, enc);
    expect(pk).toMatch(/^[0-9a-f]{32}$/);
    await fs.close();
    // bob cannot use alice's passkey
    await expect(login(h.address, { uname: "bob", uid: 5002, passkey: pk })).rejects.toThrow(
      "authentication failed",
    );
    const once = await login(h.address, { uname: "alice", uid: 5001, passkey: pk });
    await once.close();
    await expect(login(h.address, { uname: "alice", uid: 5001, passkey: pk })).rejects.toThrow(
      "authentication failed",
    );
    // any 20-byte answer was accepted by the original while a passkey was outstanding
    const fs2 = await login(h.address, { uname: "alice", uid: 5001, key: alice.privateKey });
    await fs2.readFile("passkey");
    await fs2.close();
    await expect(login(h.address, { uname: "alice", uid: 5001, raw: Buffer.alloc(20, 7) })).rejects.toThrow(
      "authentication failed",
    );
    // Ed25519 users get theirs encrypted through X25519 (80 bytes)
    const c = await login(h.address, { uname: "carol", uid: 5003, key: carol.privateKey });
    const edEnc = await c.readFile("passkey");
    expect(edEnc.length).toBe(80);
    const edPk = decryptPasskey(carol.privateKey, edEnc);
    expect(edPk).toMatch(/^[0-9a-f]{32}$/);
    await c.close();
    const c2 = await login(h.address, { uname: "carol", uid: 5003, passkey: edPk });
    await c2.close();
  });
  it("keeps users out of each other's sessions", async () => {
    const a = await login(h.address, { uname: "alice", uid: 5001, key: alice.privateKey });
    const b = await login(h.address, { uname: "bob", uid: 5002, key: bob.privateKey });
    const clone = await a.open("clone", OREAD);
    const sid = (await clone.read(0, 64)).toString();
    const ctl = await a.open(`${sid}/ctl`, OWRITE);
    await clone.clunk();
    // bob is in alice's default group, yet may not read, write, signal, wipe or re-own her session
    // (the walk into the session stops at the directory: Rwalk with one qid of two)
    for (const f of ["ctl", "stdout", "wait", "env", "argv", "id", "fs"]) {
      await expect(b.open(`${sid}/${f}`, OREAD)).rejects.toThrow(/walked 1 of 2/);
    }
    await expect(b.open(`${sid}/ctl`, OWRITE)).rejects.toThrow(/walked 1 of 2/);
    const bdir = await b.walk(sid);
    await expect(bdir.walk("ctl")).rejects.toThrow("permission denied");
    await bdir.clunk();
    const dir = await b.walk(sid);
    await expect(dir.wstat({ uid: "bob" })).rejects.toThrow("permission denied");
    await dir.clunk();
    // a user may not take over the clone file or root ctl
    await expect(b.open("ctl", OWRITE)).rejects.toThrow("permission denied");
    const cl = await b.walk("clone");
    await expect(cl.wstat({ mode: 0o400 })).rejects.toThrow("permission denied");
    await cl.clunk();
    // every requested bit is needed: read-write open of a read-only file fails
    await expect(a.open(`${sid}/stdout`, 2)).rejects.toThrow("permission denied");
    await expect(a.open("arch", 2)).rejects.toThrow("permission denied");
    await ctl.clunk();
    await a.close();
    await b.close();
  });
  it("root ctl kill: admin only, never init or the server itself", async () => {
    const victim = spawn("/bin/sleep", ["30"]);
    const gone = new Promise((r) => victim.once("exit", (_c, sig) => r(sig)));
    const fs = await login(h.address, adminLogin);
    const ctl = await fs.open("ctl", OWRITE);
    await expect(ctl.write(0, `kill SIGFOO ${victim.pid}\n`)).rejects.toThrow("unsupported signal");
    await expect(ctl.write(0, "kill 9 1\n")).rejects.toThrow("invalid pid");
    await expect(ctl.write(0, `kill 9 ${process.pid}\n`)).rejects.toThrow("invalid pid");
    await expect(ctl.write(0, "kill 9\n")).rejects.toThrow("Usage: kill signal pid");
    await ctl.write(0, `kill SIGUSR1 ${victim.pid}\n`);
    expect(await gone).toBe("SIGUSR1");
    await ctl.clunk();
    await fs.close();
  });
  it("takes the public half of a private admin key file given to -a, with a warning", async () => {
    const dir = mkdtempSync(join(tmpdir(), "xcpufs-adminpriv-"));
    const file = join(dir, "admin_key");
    writeFileSync(file, admin.privateKey.export({ type: "pkcs1", format: "pem" }));
    const warnings: string[] = [];
    const note = (obj: unknown, msg?: string) => warnings.push(`${msg} ${JSON.stringify(obj)}`);
    const node = await startXcpufs({
      port: 0,
      listen: "127.0.0.1",
      adminKeyFile: file,
      sameUser: true,
      tmpdir: dir,
      logger: { debug() {}, info() {}, warn: note, error: note },
    });
    try {
      expect(warnings.join("\n")).toContain("the admin key file holds a private key");
      const fs = await login(node.address, adminLogin);
      expect((await fs.stat("clone")).uid).toBe("xcpu-admin");
      await fs.close();
    } finally {
      await node.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it("refuses --no-auth on non-loopback addresses", async () => {
    await expect(startXcpufs({ port: 0, listen: "0.0.0.0", noAuth: true })).rejects.toThrow("loopback");
  });
});
