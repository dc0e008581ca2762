// The private-key reader shared by xrx and statfs: PEM and OpenSSH keys (RSA, Ed25519) give a key
// that signs for the public half they came with; passphrase-protected, damaged or foreign input
// gives a KeyError naming the file, never another exception.

import { execFileSync } from "node:child_process";
import { generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { KeyError, parseOpenSshPrivateKey, parsePrivateKey, publicKeyLine } from "../../src/keys/index.js";

const sshKeygen = ["/usr/bin/ssh-keygen", "/bin/ssh-keygen"].some((p) => existsSync(p));
if (!sshKeygen) console.log("ssh-keygen cases skipped: ssh-keygen (openssh-client) is not installed");

// --- An OpenSSH "openssh-key-v1" container written here, field by field -------------------------

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const str = (b: Buffer | string) => {
  const v = typeof b === "string" ? Buffer.from(b) : b;
  return Buffer.concat([u32(v.length), v]);
};
/** An mpint from a JWK field: a zero byte first when the top bit is set. */
const mpint = (b64url: string) => {
  const v = Buffer.from(b64url, "base64url");
  return str(v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
};

interface Parts {
  pub: Buffer;
  priv: Buffer;
}

function ed25519Parts(key: KeyObject): Parts {
  const jwk = key.export({ format: "jwk" });
  const x = Buffer.from(jwk.x!, "base64url");
  const d = Buffer.from(jwk.d!, "base64url");
  return {
    pub: Buffer.concat([str("ssh-ed25519"), str(x)]),
    priv: Buffer.concat([str("ssh-ed25519"), str(x), str(Buffer.concat([d, x]))]),
  };
}

function rsaParts(key: KeyObject): Parts {
  const j = key.export({ format: "jwk" });
  return {
    pub: Buffer.concat([str("ssh-rsa"), mpint(j.e!), mpint(j.n!)]),
    priv: Buffer.concat([
      str("ssh-rsa"),
      mpint(j.n!),
      mpint(j.e!),
      mpint(j.d!),
      mpint(j.qi!),
      mpint(j.p!),
      mpint(j.q!),
    ]),
  };
}

interface ContainerOptions {
  cipher?: string;
  kdf?: string;
  nkeys?: number;
  checks?: [number, number];
}

/** The binary container (before base64) for one key. */
function containerBlob(parts: Parts, o: ContainerOptions = {}): Buffer {
  const [c1, c2] = o.checks ?? [0x12345678, 0x12345678];
  let section = Buffer.concat([u32(c1), u32(c2), parts.priv, str("comment")]);
  const pad: number[] = [];
  for (let i = 1; (section.length + pad.length) % 8 !== 0; i++) pad.push(i);
  section = Buffer.concat([section, Buffer.from(pad)]);
  return Buffer.concat([
    Buffer.from("openssh-key-v1\0", "latin1"),
    str(o.cipher ?? "none"),
    str(o.kdf ?? "none"),
    str(o.kdf && o.kdf !== "none" ? Buffer.concat([str(Buffer.alloc(16)), u32(16)]) : Buffer.alloc(0)),
    u32(o.nkeys ?? 1),
    str(parts.pub),
    str(section),
  ]);
}

function armor(blob: Buffer): string {
  const b64 = blob.toString("base64").replace(/.{1,70}/g, "$&\n");
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`;
}

/** Runs f; "ok", or the KeyError's reason. Any other exception fails the test. */
function outcome(f: () => unknown): string {
  try {
    f();
    return "ok";
  } catch (err) {
    if (err instanceof KeyError) return err.reason;
    throw err;
  }
}

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ed = generateKeyPairSync("ed25519");

function expectSignsFor(key: KeyObject, publicKey: KeyObject): void {
  const data = Buffer.from("a challenge of sixteen");
  const alg = key.asymmetricKeyType === "ed25519" ? null : "sha1";
  expect(verify(alg, data, publicKey, sign(alg, data, key))).toBe(true);
}

describe("OpenSSH private keys", () => {
  it("reads Ed25519 and RSA keys to keys that sign for their public halves", () => {
    const e = parsePrivateKey(armor(containerBlob(ed25519Parts(ed.privateKey))), "ed");
    expect(e.type).toBe("ed25519");
    expectSignsFor(e.key, ed.publicKey);
    expect(e.publicLine).toBe(publicKeyLine(ed.publicKey));
    const r = parsePrivateKey(armor(containerBlob(rsaParts(rsa.privateKey))), "rsa");
    expect(r.type).toBe("rsa");
    expectSignsFor(r.key, rsa.publicKey);
    expect(r.publicLine).toBe(publicKeyLine(rsa.publicKey));
    // Every JWK field of the RSA key survives, the CRT ones computed from d, p and q included.
    expect(r.key.export({ format: "jwk" })).toEqual(rsa.privateKey.export({ format: "jwk" }));
  });

  it.skipIf(!sshKeygen)("reads keys made by ssh-keygen, and their public lines match its .pub", () => {
    const dir = mkdtempSync(join(tmpdir(), "ninep-keys-"));
    try {
      for (const [t, bits] of [
        ["ed25519", []],
        ["rsa", ["-b", "2048"]],
      ] as const) {
        const f = join(dir, t);
        execFileSync("ssh-keygen", ["-q", "-t", t, ...bits, "-N", "", "-C", "c", "-f", f]);
        const text = readFileSync(f, "utf8");
        expect(text).toContain("BEGIN OPENSSH PRIVATE KEY");
        const k = parsePrivateKey(text, f);
        expect(k.type).toBe(t);
        expect(`${k.publicLine} c\n`).toBe(readFileSync(`${f}.pub`, "utf8"));
      }
      const enc = join(dir, "enc");
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "secret", "-f", enc]);
      expect(() => parsePrivateKey(readFileSync(enc, "utf8"), enc)).toThrow(
        `${enc}: passphrase-protected keys are not supported (decrypt it with ssh-keygen -p)`,
      );
      const ec = join(dir, "ec");
      execFileSync("ssh-keygen", ["-q", "-t", "ecdsa", "-N", "", "-f", ec]);
      expect(() => parsePrivateKey(readFileSync(ec, "utf8"), ec)).toThrow(
        `${ec}: unsupported key type ecdsa-sha2-nistp256`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses encrypted, multi-key and inconsistent containers with the file name", () => {
    const parts = ed25519Parts(ed.privateKey);
    const cases: [ContainerOptions, string][] = [
      [
        { cipher: "aes256-ctr", kdf: "bcrypt" },
        "passphrase-protected keys are not supported (decrypt it with ssh-keygen -p)",
      ],
      [{ nkeys: 2 }, "expected one key, found 2"],
      [{ checks: [1, 2] }, "corrupt OpenSSH key (check bytes differ)"],
    ];
    for (const [o, reason] of cases) {
      let err: unknown;
      try {
        parseOpenSshPrivateKey(armor(containerBlob(parts, o)), "/etc/xcpu/admin_key");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(KeyError);
      expect((err as KeyError).message).toBe(`/etc/xcpu/admin_key: ${reason}`);
      expect((err as KeyError).file).toBe("/etc/xcpu/admin_key");
      expect((err as KeyError).code).toBe("E9P_KEY");
    }
  });

  it("refuses RSA primes a key cannot have", () => {
    const j = rsa.privateKey.export({ format: "jwk" });
    const one = Buffer.from([1]).toString("base64url");
    const priv = Buffer.concat([
      str("ssh-rsa"),
      mpint(j.n!),
      mpint(j.e!),
      mpint(j.d!),
      mpint(j.qi!),
      mpint(one),
      mpint(j.q!),
    ]);
    expect(
      outcome(() => parsePrivateKey(armor(containerBlob({ pub: rsaParts(rsa.privateKey).pub, priv })), "k")),
    ).toBe("corrupt OpenSSH key (bad RSA primes)");
  });

  it("refuses every truncation of a key with a KeyError", () => {
    for (const parts of [ed25519Parts(ed.privateKey), rsaParts(rsa.privateKey)]) {
      const blob = containerBlob(parts);
      const reasons = new Set<string>();
      // The padding after the comment is not read: cuts within it still give the key.
      for (let len = 0; len < blob.length - 8; len++) {
        const r = outcome(() => parsePrivateKey(armor(blob.subarray(0, len)), "k"));
        expect(r, `cut at ${len}`).not.toBe("ok");
        reasons.add(r);
      }
      expect([...reasons].sort()).toEqual(["bad OpenSSH key magic", "truncated OpenSSH key"]);
    }
  });

  test.prop([fc.uint8Array({ maxLength: 600 })], { numRuns: 300 })(
    "any bytes in the armour give a KeyError or a key, never another exception",
    (bytes) => {
      const magic = Buffer.from("openssh-key-v1\0", "latin1");
      for (const blob of [Buffer.from(bytes), Buffer.concat([magic, bytes])]) {
        const r = outcome(() => parsePrivateKey(armor(blob), "k"));
        expect(r).not.toBe("ok");
      }
    },
  );

  test.prop(
    [
      fc.boolean(),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
    ],
    { numRuns: 200 },
  )("damaged bytes in a valid key give a KeyError or a key, never another exception", (useRsa, flips) => {
    const blob = Buffer.from(containerBlob(useRsa ? rsaParts(rsa.privateKey) : ed25519Parts(ed.privateKey)));
    for (const [at, x] of flips) blob[at % blob.length] = blob[at % blob.length]! ^ x;
    outcome(() => parsePrivateKey(armor(blob), "k"));
  });

  it("refuses text that is not a key, and armour without its end line", () => {
    expect(outcome(() => parsePrivateKey("hello", "k"))).toBe(
      "not a private key (expected PEM or OpenSSH format)",
    );
    expect(outcome(() => parsePrivateKey("", "k"))).toBe(
      "not a private key (expected PEM or OpenSSH format)",
    );
    const cut = armor(containerBlob(ed25519Parts(ed.privateKey))).replace(
      "-----END OPENSSH PRIVATE KEY-----\n",
      "",
    );
    expect(outcome(() => parsePrivateKey(cut, "k"))).toBe("not an OpenSSH private key");
    expect(outcome(() => parseOpenSshPrivateKey("-----BEGIN RSA PRIVATE KEY-----", "k"))).toBe(
      "not an OpenSSH private key",
    );
  });
});

describe("PEM private keys", () => {
  it("reads PKCS#1 and PKCS#8 RSA and PKCS#8 Ed25519 keys", () => {
    const pems: [string, KeyObject, "rsa" | "ed25519"][] = [
      [rsa.privateKey.export({ type: "pkcs1", format: "pem" }) as string, rsa.publicKey, "rsa"],
      [rsa.privateKey.export({ type: "pkcs8", format: "pem" }) as string, rsa.publicKey, "rsa"],
      [ed.privateKey.export({ type: "pkcs8", format: "pem" }) as string, ed.publicKey, "ed25519"],
    ];
    for (const [pem, pub, type] of pems) {
      const k = parsePrivateKey(pem, "pem");
      expect(k).toMatchObject({ type, file: "pem", publicLine: publicKeyLine(pub) });
      expectSignsFor(k.key, pub);
    }
  });

  it("refuses encrypted, damaged, public and other keys with the file name", () => {
    const enc = rsa.privateKey.export({
      type: "pkcs8",
      format: "pem",
      cipher: "aes-256-cbc",
      passphrase: "secret",
    }) as string;
    expect(outcome(() => parsePrivateKey(enc, "k"))).toBe("passphrase-protected keys are not supported");
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    }) as string;
    expect(outcome(() => parsePrivateKey(ec, "k"))).toBe("unsupported key type ec");
    const pub = rsa.publicKey.export({ type: "spki", format: "pem" }) as string;
    expect(outcome(() => parsePrivateKey(pub, "k"))).toMatch(/^not a usable private key \(/);
    expect(
      outcome(() => parsePrivateKey("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "k")),
    ).toMatch(/^not a usable private key \(/);
  });
});
