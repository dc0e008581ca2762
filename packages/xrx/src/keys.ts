// Private keys for xcpufs authentication: the key files, the default keys, and opening the
// passkeys nodes seal for a key. The key formats themselves (PEM, and OpenSSH's own
// "OPENSSH PRIVATE KEY" container, RSA and Ed25519, unencrypted) are read by
// @clustermatic/ninep/keys, which statfs shares.
import type { KeyObject } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { KeyError, type PrivateKey, parsePrivateKey } from "@clustermatic/ninep/keys";

export {
  KeyError,
  type PrivateKey,
  parseOpenSshPrivateKey,
  parsePrivateKey,
  publicKeyLine,
} from "@clustermatic/ninep/keys";

/**
 * node:crypto, loaded on first use: it costs a command several milliseconds to load, and a launch
 * on nodes without authentication never needs it.
 */
export function crypto(): typeof import("node:crypto") {
  return process.getBuiltinModule("node:crypto");
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
