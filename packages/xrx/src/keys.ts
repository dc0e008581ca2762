// Private keys for xcpufs authentication: PEM (PKCS#1 "RSA PRIVATE KEY", PKCS#8) through
// node:crypto, and OpenSSH's own "OPENSSH PRIVATE KEY" container (RSA and Ed25519, unencrypted),
// which node:crypto cannot read, parsed here.
import type { KeyObject } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/**
 * node:crypto, loaded on first use: it costs a command several milliseconds to load, and a launch
 * on nodes without authentication never needs it.
 */
export function crypto(): typeof import("node:crypto") {
  return process.getBuiltinModule("node:crypto");
}

/** Raised for a key file that cannot be used. */
export class KeyError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = "KeyError";
  }
}

export interface PrivateKey {
  /** "rsa" or "ed25519". */
  type: "rsa" | "ed25519";
  key: KeyObject;
  /** Where it was read from (for messages). */
  file: string;
  /** The matching public key as an OpenSSH line (`ssh-rsa AAAA…` / `ssh-ed25519 AAAA…`). */
  publicLine: string;
}

class Reader {
  off = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly file: string,
  ) {}
  u32(): number {
    if (this.off + 4 > this.buf.length) throw new KeyError(this.file, "truncated OpenSSH key");
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  bytes(): Buffer {
    const len = this.u32();
    if (this.off + len > this.buf.length) throw new KeyError(this.file, "truncated OpenSSH key");
    const b = this.buf.subarray(this.off, this.off + len);
    this.off += len;
    return b;
  }
  str(): string {
    return this.bytes().toString("latin1");
  }
}

const b64u = (b: Buffer): string => {
  // mpints may carry a leading zero byte for sign; JWK wants the plain magnitude.
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i).toString("base64url");
};

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

function mpint(b64url: string): Buffer {
  let b = Buffer.from(b64url, "base64url");
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  if (b.length > 0 && (b[0]! & 0x80) !== 0) b = Buffer.concat([Buffer.from([0]), b]);
  return sshString(b);
}

/** The OpenSSH public-key line for a key. */
export function publicKeyLine(key: KeyObject, comment = ""): string {
  const pub = key.type === "private" ? crypto().createPublicKey(key) : key;
  const jwk = pub.export({ format: "jwk" });
  let blob: Buffer;
  let name: string;
  if (pub.asymmetricKeyType === "rsa") {
    name = "ssh-rsa";
    blob = Buffer.concat([sshString(Buffer.from(name)), mpint(jwk.e!), mpint(jwk.n!)]);
  } else if (pub.asymmetricKeyType === "ed25519") {
    name = "ssh-ed25519";
    blob = Buffer.concat([sshString(Buffer.from(name)), sshString(Buffer.from(jwk.x!, "base64url"))]);
  } else {
    throw new Error(`unsupported key type ${pub.asymmetricKeyType}`);
  }
  return `${name} ${blob.toString("base64")}${comment ? ` ${comment}` : ""}`;
}

/** Parses an unencrypted "OPENSSH PRIVATE KEY" container into a KeyObject. */
export function parseOpenSshPrivateKey(text: string, file = "<key>"): KeyObject {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m) throw new KeyError(file, "not an OpenSSH private key");
  const buf = Buffer.from(m[1]!.replace(/\s+/g, ""), "base64");
  const magic = "openssh-key-v1\0";
  if (buf.subarray(0, magic.length).toString("latin1") !== magic) {
    throw new KeyError(file, "bad OpenSSH key magic");
  }
  const r = new Reader(buf.subarray(magic.length), file);
  const cipher = r.str();
  const kdf = r.str();
  r.bytes(); // kdf options
  if (cipher !== "none" || kdf !== "none") {
    throw new KeyError(file, "passphrase-protected keys are not supported (decrypt it with ssh-keygen -p)");
  }
  const nkeys = r.u32();
  if (nkeys !== 1) throw new KeyError(file, `expected one key, found ${nkeys}`);
  r.bytes(); // public key blob
  const priv = new Reader(r.bytes(), file);
  const c1 = priv.u32();
  const c2 = priv.u32();
  if (c1 !== c2) throw new KeyError(file, "corrupt OpenSSH key (check bytes differ)");
  const type = priv.str();
  if (type === "ssh-ed25519") {
    const pub = priv.bytes();
    const both = priv.bytes();
    if (pub.length !== 32 || both.length !== 64) throw new KeyError(file, "bad Ed25519 key length");
    return crypto().createPrivateKey({
      key: {
        kty: "OKP",
        crv: "Ed25519",
        x: pub.toString("base64url"),
        d: both.subarray(0, 32).toString("base64url"),
      },
      format: "jwk",
    });
  }
  if (type === "ssh-rsa") {
    const n = priv.bytes();
    const e = priv.bytes();
    const d = priv.bytes();
    const iqmp = priv.bytes();
    const p = priv.bytes();
    const q = priv.bytes();
    const big = (b: Buffer) => BigInt(`0x${b.toString("hex") || "0"}`);
    const toB64u = (v: bigint) => {
      let h = v.toString(16);
      if (h.length % 2) h = `0${h}`;
      return Buffer.from(h, "hex").toString("base64url");
    };
    const dv = big(d);
    return crypto().createPrivateKey({
      key: {
        kty: "RSA",
        n: b64u(n),
        e: b64u(e),
        d: b64u(d),
        p: b64u(p),
        q: b64u(q),
        dp: toB64u(dv % (big(p) - 1n)),
        dq: toB64u(dv % (big(q) - 1n)),
        qi: b64u(iqmp),
      },
      format: "jwk",
    });
  }
  throw new KeyError(file, `unsupported key type ${type}`);
}

/** Parses a private key from its text (PEM or OpenSSH). */
export function parsePrivateKey(text: string, file = "<key>"): PrivateKey {
  let key: KeyObject;
  if (text.includes("-----BEGIN OPENSSH PRIVATE KEY-----")) {
    key = parseOpenSshPrivateKey(text, file);
  } else if (text.includes("-----BEGIN")) {
    if (/Proc-Type:\s*4,ENCRYPTED/.test(text) || text.includes("ENCRYPTED PRIVATE KEY")) {
      throw new KeyError(file, "passphrase-protected keys are not supported");
    }
    try {
      key = crypto().createPrivateKey({ key: text, format: "pem" });
    } catch (err) {
      throw new KeyError(file, `not a usable private key (${(err as Error).message})`);
    }
  } else {
    throw new KeyError(file, "not a private key (expected PEM or OpenSSH format)");
  }
  const t = key.asymmetricKeyType;
  if (t !== "rsa" && t !== "ed25519") throw new KeyError(file, `unsupported key type ${t}`);
  return { type: t, key, file, publicLine: publicKeyLine(key) };
}

/** Reads and parses a private key file. */
export function loadPrivateKey(file: string): PrivateKey {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new KeyError(
      file,
      `cannot read key: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  return parsePrivateKey(text, file);
}

/** The admin private key the tools use when it is readable. */
export const ADMIN_KEY = "/etc/xcpu/admin_key";

/**
 * Finds the user's default key: $HOME/.ssh/id_ed25519 then id_rsa. Returns undefined when none
 * exists (the caller then tries without a key, which works only for key-less pool users).
 */
export function defaultKeyFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return defaultKeyFiles(env)[0];
}

/**
 * Every default key that exists, in the order they are tried: $HOME/.ssh/id_ed25519, id_rsa.
 * A node that refuses the first is asked again with the next (the original xcpufs knows only
 * RSA keys, and its users are registered with their id_rsa.pub).
 */
export function defaultKeyFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME || homedir();
  return ["id_ed25519", "id_rsa"].map((name) => join(home, ".ssh", name)).filter((p) => existsSync(p));
}

/**
 * RSA PKCS#1 v1.5 decryption done by hand: Node 20 refuses that padding in privateDecrypt, and the
 * xcpufs passkey file is encrypted with it. Each block is decrypted and unpadded separately.
 */
export function rsaPkcs1Decrypt(key: KeyObject, data: Uint8Array): Buffer {
  const jwk = key.export({ format: "jwk" });
  const n = BigInt(`0x${Buffer.from(jwk.n!, "base64url").toString("hex")}`);
  const d = BigInt(`0x${Buffer.from(jwk.d!, "base64url").toString("hex")}`);
  const k = Buffer.from(jwk.n!, "base64url").length;
  if (data.length === 0 || data.length % k !== 0)
    throw new Error("ciphertext length is not a multiple of the key size");
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += k) {
    const c = BigInt(`0x${Buffer.from(data.subarray(off, off + k)).toString("hex")}`);
    if (c >= n) throw new Error("ciphertext out of range");
    let m = 1n;
    let base = c % n;
    let e = d;
    while (e > 0n) {
      if (e & 1n) m = (m * base) % n;
      base = (base * base) % n;
      e >>= 1n;
    }
    const em = Buffer.from(m.toString(16).padStart(k * 2, "0"), "hex");
    if (em[0] !== 0 || em[1] !== 2) throw new Error("decryption error");
    const sep = em.indexOf(0, 2);
    if (sep < 10) throw new Error("decryption error");
    out.push(em.subarray(sep + 1));
  }
  return Buffer.concat(out);
}

/** DER prefix of a PKCS#8 X25519 private key; the 32-byte scalar follows. */
const X25519_PKCS8_PREFIX = "302e020100300506032b656e04220420";

/**
 * Opens a passkey that xcpufs sealed for an Ed25519 user (80 bytes: the node's ephemeral X25519
 * public key, the 32-byte ciphertext, the GCM tag). The user's Ed25519 key is used as the X25519
 * key it maps to (scalar = clamped first half of SHA-512 of the seed); the shared secret goes
 * through HKDF-SHA256 (salt: the ephemeral key, info "xcpufs passkey") to an AES-256-GCM key used
 * with a zero nonce, which is safe because every passkey has a fresh ephemeral key.
 */
export function ed25519PasskeyDecrypt(key: KeyObject, data: Uint8Array): Buffer {
  const c = crypto();
  if (data.length !== 80) throw new Error(`sealed passkey of ${data.length} bytes, expected 80`);
  const seed = key.export({ format: "jwk" }).d;
  if (!seed) throw new Error("not a private key");
  const scalar = c.createHash("sha512").update(Buffer.from(seed, "base64url")).digest().subarray(0, 32);
  scalar[0] = scalar[0]! & 248;
  scalar[31] = (scalar[31]! & 127) | 64;
  const privateKey = c.createPrivateKey({
    key: Buffer.concat([Buffer.from(X25519_PKCS8_PREFIX, "hex"), scalar]),
    format: "der",
    type: "pkcs8",
  });
  const eph = Buffer.from(data.subarray(0, 32));
  const publicKey = c.createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: eph.toString("base64url") },
    format: "jwk",
  });
  const shared = c.diffieHellman({ privateKey, publicKey });
  const aesKey = Buffer.from(c.hkdfSync("sha256", shared, eph, "xcpufs passkey", 32));
  const d = c.createDecipheriv("aes-256-gcm", aesKey, Buffer.alloc(12));
  d.setAuthTag(data.subarray(64, 80));
  return Buffer.concat([d.update(data.subarray(32, 64)), d.final()]);
}
