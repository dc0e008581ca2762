// The auth hook: a challenge-response run over the AuthFid, as xcpufs does with RSA signatures.

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, mount } from "../../src/client/index.js";
import { Dialect, QTAUTH } from "../../src/codec/index.js";
import { Ename, FsError, RemoteError } from "../../src/errors.js";
import { type AuthFile, Server, SynthDir, staticFile, treeBackend } from "../../src/server/index.js";

const SECRET = "s3cret";

/** Reads give a 16-byte challenge; the one write must be HMAC-SHA256(secret, challenge). */
function challengeFile(): AuthFile {
  const challenge = randomBytes(16);
  let ok = false;
  return {
    qid: { type: QTAUTH, version: 0, path: 1n << 60n },
    async read(offset, count) {
      return challenge.subarray(Number(offset), Number(offset) + count);
    },
    async write(_offset, data) {
      const want = createHmac("sha256", SECRET).update(challenge).digest();
      ok = data.length === want.length && timingSafeEqual(Buffer.from(data), want);
      return data.length;
    },
    authenticated: () => ok,
  };
}

async function respond(
  afid: { read(n: number): Promise<Buffer>; write(d: Uint8Array): Promise<number> },
  secret: string,
) {
  const challenge = await afid.read(64);
  expect(challenge.length).toBe(16);
  expect((await afid.read(64)).length).toBe(0); // the running offset moved past it
  await afid.write(createHmac("sha256", secret).update(challenge).digest());
}

describe("authentication over an AuthFid", () => {
  let secured: Server;
  let open: Server;
  let securedAddr: string;
  let openAddr: string;

  beforeAll(async () => {
    const root = new SynthDir("/", { mode: 0o555 });
    root.add(staticFile("motd", "welcome\n"));
    const tree = treeBackend(root, { dialects: [Dialect.P2000, Dialect.P2000u, Dialect.P2000L] });
    secured = new Server({
      backend: {
        ...tree,
        auth: async () => challengeFile(),
        attach: async (req, ctx) => {
          if (!req.auth) throw new FsError(Ename.AuthFailed);
          return tree.attach(req, ctx);
        },
      },
    });
    const a = await secured.listen("tcp!127.0.0.1!0");
    securedAddr = `tcp!127.0.0.1!${a.network === "tcp" ? a.port : 0}`;
    open = new Server({ backend: tree });
    const b = await open.listen("tcp!127.0.0.1!0");
    openAddr = `tcp!127.0.0.1!${b.network === "tcp" ? b.port : 0}`;
  });

  afterAll(async () => {
    await secured.close(0);
    await open.close(0);
  });

  for (const version of [Dialect.P2000u, Dialect.P2000L]) {
    it(`runs the protocol and attaches with the afid (${version})`, async () => {
      const c = await Client.connect(securedAddr, { version });
      try {
        const afid = await c.auth("glenda", "", { n_uname: 1000 });
        expect(afid).not.toBeNull();
        expect((afid?.aqid.type ?? 0) & QTAUTH).toBe(QTAUTH);
        if (!afid) return;
        await respond(afid, SECRET);
        const root = await c.attach("glenda", "", { afid, n_uname: 1000 });
        const f = await root.walk("motd");
        await f.open(0);
        expect((await f.read(0, 100)).toString()).toBe("welcome\n");
        await afid.clunk();
      } finally {
        c.destroy();
      }
    });
  }

  it("a wrong response makes the attach fail", async () => {
    const c = await Client.connect(securedAddr);
    try {
      const afid = await c.auth("glenda", "");
      if (!afid) throw new Error("expected an afid");
      await respond(afid, "wrong");
      const err = await c.attach("glenda", "", { afid }).catch((e) => e);
      expect(err).toBeInstanceOf(RemoteError);
      const noAfid = await c.attach("glenda", "").catch((e) => e);
      expect((noAfid as RemoteError).ename).toBe("authentication failed");
    } finally {
      c.destroy();
    }
  });

  it("mount() runs an authenticate callback", async () => {
    const fs = await mount(securedAddr, { uname: "glenda", authenticate: (afid) => respond(afid, SECRET) });
    expect((await fs.readFile("motd")).toString()).toBe("welcome\n");
    await fs.close();
  });

  it("authThen sends the challenge read with the Tauth and the protocol goes on from there", async () => {
    const lines: string[] = [];
    const c = await Client.connect(securedAddr, { trace: (l) => lines.push(l) });
    try {
      const { afid, value } = await c.authThen("glenda", "", (a) => a.read(64), { n_uname: 1000 });
      if (!afid) throw new Error("expected an afid");
      expect((afid.aqid.type & QTAUTH) === QTAUTH).toBe(true);
      const challenge = await value;
      expect(challenge.length).toBe(16);
      // Tauth and Tread left before Rauth came.
      expect(lines.slice(2, 4).map((l) => l.split(" ")[1])).toEqual(["Tauth", "Tread"]);
      await afid.write(createHmac("sha256", SECRET).update(challenge).digest());
      const root = await c.attach("glenda", "", { afid, n_uname: 1000 });
      expect((await (await root.walk("motd")).stat()).name).toBe("motd");
      await afid.clunk();
    } finally {
      c.destroy();
    }
  });

  for (const version of [Dialect.P2000u, Dialect.P2000L]) {
    it(`authThen with an attach: refused without the protocol, and null with its error handled where no auth is needed (${version})`, async () => {
      const s = await Client.connect(securedAddr, { version });
      const o = await Client.connect(openAddr, { version });
      try {
        const refused = await s.authThen("glenda", "", (a) => s.attach("glenda", "", { afid: a }));
        expect(refused.afid).not.toBeNull();
        // (.L carries only an errno: "permission denied")
        expect(await refused.value.catch((e) => e)).toBeInstanceOf(RemoteError);
        await refused.afid?.clunk();
        // The open server refuses Tauth; the attach that named the afid failed (or was taken):
        // either way nothing is left unhandled and a plain attach works.
        const none = await o.authThen("glenda", "", (a) => o.attach("glenda", "", { afid: a }));
        expect(none.afid).toBeNull();
        const root = await none.value.catch(() => o.attach("glenda", ""));
        expect((await (await root.walk("motd")).stat()).name).toBe("motd");
      } finally {
        s.destroy();
        o.destroy();
      }
    });
  }

  for (const version of [Dialect.P2000, Dialect.P2000u, Dialect.P2000L]) {
    it(`auth() resolves null when the server needs none (${version})`, async () => {
      const c = await Client.connect(openAddr, { version });
      try {
        expect(await c.auth("glenda", "")).toBeNull();
        await c.attach("glenda", "");
      } finally {
        c.destroy();
      }
    });
  }
});
