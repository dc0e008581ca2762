// Private keys as the suite's tools read them (xcpufs authentication): PEM (PKCS#1
// "RSA PRIVATE KEY", PKCS#8) through node:crypto, and OpenSSH's own "OPENSSH PRIVATE KEY"
// container (RSA and Ed25519, unencrypted). Text in, KeyObject out: reading the file is the
// caller's, so are its messages for a file that cannot be read.
import type { KeyObject } from "node:crypto";
import { KeyError, parseOpenSshPrivateKey, publicKeyLine } from "./openssh.js";

export { KeyError, parseOpenSshPrivateKey, publicKeyLine } from "./openssh.js";

export interface PrivateKey {
  /** "rsa" or "ed25519". */
  type: "rsa" | "ed25519";
  key: KeyObject;
  /** Where it was read from (for messages). */
  file: string;
  /** The matching public key as an OpenSSH line (`ssh-rsa AAAA…` / `ssh-ed25519 AAAA…`). */
  publicLine: string;
}

/**
 * Parses a private key from its text: PEM (RSA or Ed25519) or OpenSSH (RSA or Ed25519,
 * unencrypted). Anything else, a passphrase-protected key included, is a KeyError naming `file`.
 */
export function parsePrivateKey(text: string, file = "<key>"): PrivateKey {
  let key: KeyObject;
  if (text.includes("-----BEGIN OPENSSH PRIVATE KEY-----")) {
    key = parseOpenSshPrivateKey(text, file);
  } else if (text.includes("-----BEGIN")) {
    if (/Proc-Type:\s*4,ENCRYPTED/.test(text) || text.includes("ENCRYPTED PRIVATE KEY")) {
      throw new KeyError(file, "passphrase-protected keys are not supported");
    }
    try {
      key = process.getBuiltinModule("node:crypto").createPrivateKey({ key: text, format: "pem" });
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
