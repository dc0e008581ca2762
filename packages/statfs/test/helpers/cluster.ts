// Real xcpufs nodes on loopback for the tests, all sharing one admin key.

import { generateKeyPair, type KeyObject } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startXcpufs, type XcpufsHandle } from "@clustermatic/xcpufs";

export interface AdminKeys {
  privateKey: KeyObject;
  /** PEM files. */
  privateFile: string;
  publicPem: string;
}

export async function makeAdminKey(dir: string, name = "admin_key"): Promise<AdminKeys> {
  // Generated off the event loop: a synchronous 2048-bit key can block it for seconds on a loaded
  // machine, long enough for the in-process nodes and monitors of a test to miss their timeouts.
  const { privateKey, publicKey } = await new Promise<{ privateKey: KeyObject; publicKey: KeyObject }>(
    (resolve, reject) =>
      generateKeyPair("rsa", { modulusLength: 2048 }, (err, publicKey, privateKey) =>
        err ? reject(err) : resolve({ privateKey, publicKey }),
      ),
  );
  const privateFile = join(dir, name);
  await writeFile(privateFile, privateKey.export({ type: "pkcs1", format: "pem" }), { mode: 0o600 });
  const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  await writeFile(`${privateFile}.pub`, publicPem);
  return { privateKey, privateFile, publicPem };
}

export async function startNode(keys: AdminKeys, tmpdir: string, port = 0): Promise<XcpufsHandle> {
  return startXcpufs({
    listen: `tcp!127.0.0.1!${port}`,
    adminKey: keys.publicPem,
    tmpdir,
    env: { PATH: "/usr/bin:/bin" },
  });
}
