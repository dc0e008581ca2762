// Run by pack-check.sh from the lib directory of the throwaway npm prefix, so that
// "@clustermatic/..." resolves to the installed packages: the libraries as a program importing
// them sees them. Each export entry is its own file; what they share (the error classes above
// all) must be one module for all of them, or a server from one entry does not recognise an
// FsError from another and answers every such error with a made-up name.
import assert from "node:assert/strict";
import * as root from "@clustermatic/ninep";
import { mount } from "@clustermatic/ninep/client";
import { OWRITE } from "@clustermatic/ninep/codec";
import * as errors from "@clustermatic/ninep/errors";
import { KeyError, parsePrivateKey } from "@clustermatic/ninep/keys";
import { CtlTable, Server, SynthDir, treeBackend } from "@clustermatic/ninep/server";
import { startXcpufs } from "@clustermatic/xcpufs";
import { userIdentity, XcpuNode, xcpuNodes } from "@clustermatic/xrx";

for (const [name, a, b] of [
  ["FsError", root.FsError, errors.FsError],
  ["RemoteError", root.RemoteError, errors.RemoteError],
  ["ProtocolError", root.ProtocolError, errors.ProtocolError],
  ["ConnectionError", root.ConnectionError, errors.ConnectionError],
  ["NinepError", root.NinepError, errors.NinepError],
])
  assert.equal(a, b, `${name} of "@clustermatic/ninep" is not the one of ".../errors"`);

// The key reader of ".../keys" refuses what is no key with its own error, naming the file.
assert.throws(
  () => parsePrivateKey("not a key", "bad.key"),
  (e) => e instanceof KeyError && /^bad\.key: /.test(e.message),
);

/** The RemoteError a client of ".../client" gets, checked against the root entry's class. */
async function remoteError(promise) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof root.RemoteError, `not a RemoteError of the root entry: ${err}`);
    return err;
  }
  assert.fail("no error");
}

// A server of ".../server" whose ctl file throws an FsError of ".../errors".
const dir = new SynthDir("/", { mode: 0o555 });
const ctl = new CtlTable([
  {
    cmd: "refuse",
    usage: "refuse",
    run: () => {
      throw new errors.FsError("refused here", 13);
    },
  },
]);
dir.add(ctl.file("ctl", { mode: 0o666 }));
const server = new Server({ backend: treeBackend(dir) });
const address = await server.listen("tcp!127.0.0.1!0");
const fs = await mount(address, { uname: "user" });
const f = await fs.open("ctl", OWRITE);
assert.equal((await remoteError(f.write(0, "refuse\n"))).ename, "refused here");
await fs.close();
await server.close();

// xcpufs as a library: its errors keep their text on the wire; and a program run on it through
// the xrx library, as xrx's README shows.
const node = await startXcpufs({ port: 0, listen: "127.0.0.1", noAuth: true, logLevel: "silent" });
const nfs = await mount(node.address, { uname: "user", n_uname: 4000, authenticate: async () => {} });
assert.equal((await remoteError(nfs.open("ctl", OWRITE))).ename, "permission denied");
await nfs.close();
const [spec] = xcpuNodes(`127.0.0.1!${node.port}`);
const xnode = await XcpuNode.connect(spec, { identity: userIdentity(null) });
const session = await xnode.createSession();
await session.setArgv(["sh", "-c", "echo hi from $XCPUSID"]);
let out = "";
const pumped = session.pump("stdout", (b) => {
  out += b;
});
await session.exec("/bin/sh");
await session.closeStdin();
await session.wait();
await pumped;
xnode.close();
assert.match(out, /^hi from \d+\n$/);
await node.close();
console.log(
  "pack-check: the libraries' entries share one copy of their classes; a job ran through the xrx and xcpufs libraries",
);
