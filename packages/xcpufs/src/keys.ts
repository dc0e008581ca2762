// Public keys (OpenSSH ssh-rsa / ssh-ed25519 lines, PEM) and the challenge–response checks.

import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  timingSafeEqual,
  verify,
} from "node:crypto";
import { XcpuError } from "./errors.js";

export type KeyKind = "rsa" | "ed25519";

/** A parsed public key. `text` is what was given (kept to persist and list it). */
export interface PublicKey {
  kind: KeyKind;
  key: KeyObject;
  text: string;
}

/** Length of the challenge the server writes on an auth fid. */
export const CHALLENGE_SIZE = 16;
/** Largest response accepted on an auth fid. */
export const MAX_RESPONSE = 4096;

function sshString(buf: Buffer, off: number): [Buffer, number] {
  if (off + 4 > buf.length) throw new XcpuError("invalid key");
  const len = buf.readUInt32BE(off);
  const end = off + 4 + len;
  if (end > buf.length) throw new XcpuError("invalid key");
  return [buf.subarray(off + 4, end), end];
}

function b64url(b: Buffer): string {
  return b.toString("base64url");
}

function stripMpint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/**
 * Parse a public key: an OpenSSH one-line key (`ssh-rsa AAAA… [comment]` or
 * `ssh-ed25519 AAAA… [comment]`) or a PEM public key (or PEM private key, whose public half is
 * used). Errors: `invalid key type`, `invalid key`.
 */
export function parsePublicKey(input: string): PublicKey {
  const text = input.trim();
  if (text.startsWith("-----BEGIN")) {
    let key: KeyObject;
    try {
      key = createPublicKey(text);
    } catch {
      throw new XcpuError("invalid key");
    }
    const t = key.asymmetricKeyType;
    if (t !== "rsa" && t !== "ed25519") throw new XcpuError("invalid key type");
    return { kind: t, key, text };
  }
  const parts = text.split(/\s+/);
  const type = parts[0] ?? "";
  const body = parts[1];
  if (type !== "ssh-rsa" && type !== "ssh-ed25519") throw new XcpuError("invalid key type");
  if (!body || !/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new XcpuError("invalid key");
  const blob = Buffer.from(body, "base64");
  const [name, o1] = sshString(blob, 0);
  if (name.toString("latin1") !== type) throw new XcpuError("invalid key");
  try {
    if (type === "ssh-rsa") {
      const [e, o2] = sshString(blob, o1);
      const [n] = sshString(blob, o2);
      const key = createPublicKey({
        key: { kty: "RSA", e: b64url(stripMpint(e)), n: b64url(stripMpint(n)) },
        format: "jwk",
      });
      return { kind: "rsa", key, text };
    }
    const [pk] = sshString(blob, o1);
    if (pk.length !== 32) throw new XcpuError("invalid key");
    const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64url(pk) }, format: "jwk" });
    return { kind: "ed25519", key, text };
  } catch (err) {
    if (err instanceof XcpuError) throw err;
    throw new XcpuError("invalid key");
  }
}

/** Render a Node public key as an OpenSSH one-line public key (for tests and tools). */
export function toOpenSshLine(key: KeyObject, comment = ""): string {
  const jwk = key.export({ format: "jwk" });
  const str = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const mpint = (b: Buffer) => ((b[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
  let type: string;
  let blob: Buffer;
  if (jwk.kty === "RSA" && jwk.e && jwk.n) {
    type = "ssh-rsa";
    blob = Buffer.concat([
      str(Buffer.from(type)),
      str(mpint(Buffer.from(jwk.e, "base64url"))),
      str(mpint(Buffer.from(jwk.n, "base64url"))),
    ]);
  } else if (jwk.kty === "OKP" && jwk.crv === "Ed25519" && jwk.x) {
    type = "ssh-ed25519";
    blob = Buffer.concat([str(Buffer.from(type)), str(Buffer.from(jwk.x, "base64url"))]);
  } else {
    throw new XcpuError("invalid key type");
  }
  return `${type} ${blob.toString("base64")}${comment ? ` ${comment}` : ""}`;
}

/**
 * Check a response to a challenge under a public key: RSA PKCS#1 v1.5 over SHA-1(challenge), or an
 * Ed25519 signature over the challenge bytes themselves.
 */
export function verifyResponse(pub: PublicKey, challenge: Buffer, response: Buffer): boolean {
  try {
    if (pub.kind === "rsa") {
      return verify("sha1", challenge, { key: pub.key, padding: constants.RSA_PKCS1_PADDING }, response);
    }
    return verify(null, challenge, pub.key, response);
  } catch {
    return false;
  }
}

/** The answer a passkey holder writes: SHA-1(challenge ‖ passkey text), 20 bytes. */
export function passkeyResponse(challenge: Buffer, passkey: string): Buffer {
  return createHash("sha1").update(challenge).update(passkey, "latin1").digest();
}

/** Constant-time check of a passkey answer. */
export function verifyPasskey(challenge: Buffer, passkey: string, response: Buffer): boolean {
  const want = passkeyResponse(challenge, passkey);
  return response.length === want.length && timingSafeEqual(want, response);
}

const P25519 = (1n << 255n) - 19n;

function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  let x = b % m;
  let k = e;
  while (k > 0n) {
    if (k & 1n) r = (r * x) % m;
    x = (x * x) % m;
    k >>= 1n;
  }
  return r;
}

function leToBig(b: Buffer): bigint {
  return BigInt(`0x${Buffer.from(b).reverse().toString("hex") || "0"}`);
}

function bigToLe(n: bigint): Buffer {
  return Buffer.from(n.toString(16).padStart(64, "0"), "hex").reverse();
}

/** The X25519 public key of an Ed25519 public key (the birational map u = (1 + y) / (1 − y)). */
export function ed25519ToX25519(pub: KeyObject): KeyObject {
  const x = pub.export({ format: "jwk" }).x;
  if (!x) throw new XcpuError("invalid key");
  const raw = Buffer.from(x, "base64url");
  raw[31] = (raw[31] ?? 0) & 0x7f;
  const y = leToBig(raw) % P25519;
  const u = ((1n + y) * modPow((1n - y + P25519) % P25519, P25519 - 2n, P25519)) % P25519;
  return createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: bigToLe(u).toString("base64url") },
    format: "jwk",
  });
}

const PASSKEY_INFO = "xcpufs passkey";

/**
 * Encrypt a passkey for its user.
 * - RSA: RSAES-PKCS1-v1_5 block by block (payload ≤ modulus size − 12 bytes per block), as the
 *   original `passkey` file does; each block is modulus-size bytes long.
 * - Ed25519 (extension): ephemeral X25519 agreement with the user's key mapped to X25519,
 *   HKDF-SHA256 (salt = ephemeral public key, info "xcpufs passkey") → AES-256-GCM with a zero
 *   nonce. Output: ephemeral public key (32) ‖ ciphertext (32) ‖ tag (16) = 80 bytes.
 */
export function encryptPasskey(pub: PublicKey, passkey: string): Buffer {
  const data = Buffer.from(passkey, "latin1");
  if (pub.kind === "ed25519") {
    const eph = generateKeyPairSync("x25519");
    const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: ed25519ToX25519(pub.key) });
    const ephRaw = Buffer.from(eph.publicKey.export({ format: "jwk" }).x as string, "base64url");
    const key = Buffer.from(hkdfSync("sha256", shared, ephRaw, PASSKEY_INFO, 32));
    const c = createCipheriv("aes-256-gcm", key, Buffer.alloc(12));
    const ct = Buffer.concat([c.update(data), c.final()]);
    return Buffer.concat([ephRaw, ct, c.getAuthTag()]);
  }
  const bits = pub.key.asymmetricKeyDetails?.modulusLength ?? 2048;
  const block = Math.ceil(bits / 8) - 12;
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += block) {
    out.push(
      publicEncrypt({ key: pub.key, padding: constants.RSA_PKCS1_PADDING }, data.subarray(i, i + block)),
    );
  }
  return Buffer.concat(out);
}

/**
 * The client side: decrypt what the `passkey` file returned, with the user's private key (RSA or
 * Ed25519). RSA blocks are unpadded by hand because Node refuses PKCS#1 v1.5 private decryption.
 */
export function decryptPasskey(privateKey: KeyObject, data: Buffer): string {
  if (privateKey.asymmetricKeyType === "ed25519") {
    if (data.length !== 80) throw new XcpuError("invalid passkey data");
    const d = privateKey.export({ format: "jwk" }).d;
    if (!d) throw new XcpuError("invalid key");
    const scalar = createHash("sha512").update(Buffer.from(d, "base64url")).digest().subarray(0, 32);
    scalar[0] = (scalar[0] ?? 0) & 248;
    scalar[31] = ((scalar[31] ?? 0) & 127) | 64;
    const xpriv = createPrivateKey({
      key: Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), scalar]),
      format: "der",
      type: "pkcs8",
    });
    const ephRaw = data.subarray(0, 32);
    const ephPub = createPublicKey({
      key: { kty: "OKP", crv: "X25519", x: ephRaw.toString("base64url") },
      format: "jwk",
    });
    const shared = diffieHellman({ privateKey: xpriv, publicKey: ephPub });
    const key = Buffer.from(hkdfSync("sha256", shared, ephRaw, PASSKEY_INFO, 32));
    const dc = createDecipheriv("aes-256-gcm", key, Buffer.alloc(12));
    dc.setAuthTag(data.subarray(64, 80));
    return Buffer.concat([dc.update(data.subarray(32, 64)), dc.final()]).toString("latin1");
  }
  const k = (privateKey.asymmetricKeyDetails?.modulusLength ?? 2048) / 8;
  let out = "";
  for (let i = 0; i < data.length; i += k) {
    const raw = privateDecrypt(
      { key: privateKey, padding: constants.RSA_NO_PADDING },
      data.subarray(i, i + k),
    );
    const sep = raw.indexOf(0, 2);
    if (raw[0] !== 0 || raw[1] !== 2 || sep < 10) throw new XcpuError("invalid passkey data");
    out += raw.subarray(sep + 1).toString("latin1");
  }
  return out;
}
