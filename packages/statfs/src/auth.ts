// The xcpufs challenge–response ("xauth") as seen by statfs: loading the admin private key (its
// formats read by @clustermatic/ninep/keys, as xrx reads them), signing a node's challenge with it,
// and checking responses when statfs itself asks for one (its `ctl`).
//
// Protocol: the server hands out 16 random bytes on the auth fid; the client answers with an RSA
// PKCS#1 v1.5 signature over SHA-1(challenge) (RSA keys) or an Ed25519 signature over the bytes.

import { createPublicKey, type KeyObject, randomBytes, sign, verify } from "node:crypto";
import { readFile } from "node:fs/promises";
import { parsePrivateKey as parseKey, KeyError as SharedKeyError } from "@clustermatic/ninep/keys";

/** User name and default uid the tools use for the admin identity. */
export const ADMIN_USER = "xcpu-admin";
export const ADMIN_UID_DEFAULT = 65530;

/** An admin key could not be loaded. */
export class KeyError extends Error {
  readonly code = "ESTATFS_KEY";
}

/**
 * Parses a private key: PEM (PKCS#1 `RSA PRIVATE KEY`, PKCS#8; RSA or Ed25519) or OpenSSH
 * (`OPENSSH PRIVATE KEY`, RSA or Ed25519, unencrypted), as xrx reads them
 * (@clustermatic/ninep/keys). Anything else is a KeyError `WHERE: reason`.
 */
export function parsePrivateKey(text: string | Buffer, where = "key"): KeyObject {
  try {
    return parseKey(text.toString(), where).key;
  } catch (err) {
    if (err instanceof SharedKeyError) throw new KeyError(`${where}: ${err.reason}`);
    throw err;
  }
}

export async function loadPrivateKey(path: string): Promise<KeyObject> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new KeyError(`cannot read admin key ${path}: ${e.code ?? e.message}`);
  }
  return parsePrivateKey(text, `admin key ${path}`);
}

/** Answers a challenge with `key`. */
export function signChallenge(challenge: Uint8Array, key: KeyObject): Buffer {
  if (key.asymmetricKeyType === "ed25519") return sign(null, challenge, key);
  return sign("sha1", challenge, key);
}

/** Checks a response against the public half of `key`. Never throws. */
export function verifyResponse(challenge: Uint8Array, response: Uint8Array, key: KeyObject): boolean {
  try {
    const pub = key.type === "private" ? createPublicKey(key) : key;
    if (pub.asymmetricKeyType === "ed25519") return verify(null, challenge, pub, response);
    return verify("sha1", challenge, pub, response);
  } catch {
    return false;
  }
}

export function newChallenge(): Buffer {
  return randomBytes(16);
}

/** The admin uid: the local `xcpu-admin` account if there is one, else 65530. */
export async function adminUid(passwdFile = "/etc/passwd"): Promise<number> {
  try {
    const text = await readFile(passwdFile, "utf8");
    for (const line of text.split("\n")) {
      const f = line.split(":");
      if (f[0] === ADMIN_USER && f[2] && /^\d+$/.test(f[2])) return Number(f[2]);
    }
  } catch {
    // No passwd file: use the default.
  }
  return ADMIN_UID_DEFAULT;
}
