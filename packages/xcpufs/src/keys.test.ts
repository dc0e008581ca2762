import { constants, generateKeyPairSync, privateDecrypt, randomBytes, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  decryptPasskey,
  encryptPasskey,
  parsePublicKey,
  passkeyResponse,
  toOpenSshLine,
  verifyPasskey,
  verifyResponse,
} from "./keys.js";

const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ed = generateKeyPairSync("ed25519");

describe("keys", () => {
  it("parses ssh-rsa lines and verifies SHA-1 PKCS#1 v1.5 signatures", () => {
    const line = toOpenSshLine(rsa.publicKey, "alice@host");
    expect(line).toMatch(/^ssh-rsa AAAAB3NzaC1yc2E/);
    const pub = parsePublicKey(line);
    expect(pub.kind).toBe("rsa");
    const ch = randomBytes(16);
    expect(verifyResponse(pub, ch, sign("sha1", ch, rsa.privateKey))).toBe(true);
    expect(verifyResponse(pub, randomBytes(16), sign("sha1", ch, rsa.privateKey))).toBe(false);
    expect(verifyResponse(pub, ch, Buffer.alloc(20))).toBe(false);
  });
  it("parses ssh-ed25519 lines and PEM keys", () => {
    const pub = parsePublicKey(toOpenSshLine(ed.publicKey));
    expect(pub.kind).toBe("ed25519");
    const ch = randomBytes(16);
    expect(verifyResponse(pub, ch, sign(null, ch, ed.privateKey))).toBe(true);
    const pem = parsePublicKey(rsa.publicKey.export({ type: "spki", format: "pem" }) as string);
    expect(verifyResponse(pem, ch, sign("sha1", ch, rsa.privateKey))).toBe(true);
    const pkcs1 = parsePublicKey(rsa.publicKey.export({ type: "pkcs1", format: "pem" }) as string);
    expect(pkcs1.kind).toBe("rsa");
  });
  it("rejects bad keys with the original messages", () => {
    expect(() => parsePublicKey("ssh-dss AAAA")).toThrow("invalid key type");
    expect(() => parsePublicKey("ssh-rsa !!!")).toThrow("invalid key");
    expect(() => parsePublicKey("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA==")).toThrow("invalid key");
    expect(() => parsePublicKey("-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----")).toThrow(
      "invalid key",
    );
  });
  it("checks passkey answers exactly", () => {
    const ch = Buffer.from([1, 0, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    const pk = "00112233445566778899aabbccddeeff";
    expect(verifyPasskey(ch, pk, passkeyResponse(ch, pk))).toBe(true);
    // The original accepted any 20-byte answer; a zero byte in the challenge must not truncate it.
    expect(verifyPasskey(ch, pk, Buffer.alloc(20))).toBe(false);
    expect(verifyPasskey(ch, pk, passkeyResponse(ch.subarray(0, 1), pk))).toBe(false);
  });
  it("encrypts passkeys that the private key holder can decrypt", () => {
    const pk = "0123456789abcdef0123456789abcdef";
    const enc = encryptPasskey(parsePublicKey(toOpenSshLine(rsa.publicKey)), pk);
    expect(enc.length).toBe(256);
    const raw = privateDecrypt({ key: rsa.privateKey, padding: constants.RSA_NO_PADDING }, enc);
    expect(raw[0]).toBe(0);
    expect(raw[1]).toBe(2);
    expect(raw.subarray(raw.indexOf(0, 2) + 1).toString()).toBe(pk);
    expect(decryptPasskey(rsa.privateKey, enc)).toBe(pk);
  });
  it("encrypts passkeys for Ed25519 users through X25519", () => {
    const pk = "fedcba9876543210fedcba9876543210";
    const enc = encryptPasskey(parsePublicKey(toOpenSshLine(ed.publicKey)), pk);
    expect(enc.length).toBe(80);
    expect(decryptPasskey(ed.privateKey, enc)).toBe(pk);
    // another key cannot open it, and tampering is detected
    expect(() => decryptPasskey(generateKeyPairSync("ed25519").privateKey, enc)).toThrow();
    const bad = Buffer.from(enc);
    bad[40] = (bad[40] ?? 0) ^ 1;
    expect(() => decryptPasskey(ed.privateKey, bad)).toThrow();
  });
});
