// Public keys (OpenSSH ssh-rsa / ssh-ed25519 lines, PEM) and the challenge–response checks.

import {
  constants,
  createHash,
  createPublicKey,
  type KeyObject,
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

/**
 * Encrypt a passkey for its user with RSA PKCS#1 v1.5, block by block (block payload = modulus
 * size − 12 bytes), as the original `passkey` file does. Each block is modulus-size bytes long.
 */
export function encryptPasskey(pub: PublicKey, passkey: string): Buffer {
  if (pub.kind !== "rsa") throw new XcpuError("passkey needs an RSA key");
  const bits = pub.key.asymmetricKeyDetails?.modulusLength ?? 2048;
  const block = Math.ceil(bits / 8) - 12;
  const data = Buffer.from(passkey, "latin1");
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += block) {
    out.push(
      publicEncrypt({ key: pub.key, padding: constants.RSA_PKCS1_PADDING }, data.subarray(i, i + block)),
    );
  }
  return Buffer.concat(out);
}
