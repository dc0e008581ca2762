// OpenSSH's key formats, which node:crypto does not read: the "OPENSSH PRIVATE KEY" container
// (RSA and Ed25519, unencrypted) and the `ssh-rsa AAAA…` / `ssh-ed25519 AAAA…` public-key line.
// Only node:crypto, loaded on first use.
import type { JsonWebKey, KeyObject } from "node:crypto";

/**
 * node:crypto, loaded on first use: it costs a command several milliseconds to load, and a tool
 * that never reads a key never needs it.
 */
function crypto(): typeof import("node:crypto") {
  return process.getBuiltinModule("node:crypto");
}

/** Raised for a key that cannot be used; the message is `FILE: REASON`. */
export class KeyError extends Error {
  readonly code = "E9P_KEY";
  constructor(
    /** Where the key came from, as the caller named it. */
    readonly file: string,
    /** Why it cannot be used, without the file name. */
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = "KeyError";
  }
}

/** Reads the length-prefixed fields of an OpenSSH key blob, refusing to run past its end. */
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

/** An mpint's magnitude in base64url (JWK): the sign byte and other leading zeros dropped. */
const b64u = (b: Buffer): string => {
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

/** The OpenSSH public-key line for an RSA or Ed25519 key (private or public). */
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

/**
 * Parses an unencrypted "OPENSSH PRIVATE KEY" container (RSA or Ed25519) into a KeyObject.
 * Everything it refuses, damaged bytes included, is a KeyError naming `file`.
 */
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
    return importJwk(file, {
      kty: "OKP",
      crv: "Ed25519",
      x: pub.toString("base64url"),
      d: both.subarray(0, 32).toString("base64url"),
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
    const pv = big(p);
    const qv = big(q);
    // A prime of 0 or 1 (a damaged key) would divide by zero below.
    if (pv < 2n || qv < 2n) throw new KeyError(file, "corrupt OpenSSH key (bad RSA primes)");
    return importJwk(file, {
      kty: "RSA",
      n: b64u(n),
      e: b64u(e),
      d: b64u(d),
      p: b64u(p),
      q: b64u(q),
      dp: toB64u(dv % (pv - 1n)),
      dq: toB64u(dv % (qv - 1n)),
      qi: b64u(iqmp),
    });
  }
  throw new KeyError(file, `unsupported key type ${type}`);
}

function importJwk(file: string, jwk: JsonWebKey): KeyObject {
  try {
    return crypto().createPrivateKey({ key: jwk, format: "jwk" });
  } catch (err) {
    throw new KeyError(file, `corrupt OpenSSH key (${(err as Error).message})`);
  }
}
