import net from "node:net";
import { describe, expect, it } from "vitest";
import * as client from "./client/index.js";
import * as codec from "./codec/index.js";
import * as errors from "./errors.js";
import { connectFailureWords, Ename, Errno, FsError, fsErrorFromCode, toFsError } from "./errors.js";
import * as server from "./server/index.js";

function nodeError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe("Node error codes to FsError", () => {
  it("fsErrorFromCode: canonical enames where they exist, else Node's short text and errno", () => {
    const e = fsErrorFromCode(nodeError("ENOENT", "ENOENT: no such file or directory, open '/x'"), "ENOENT");
    expect([e.ename, e.errno]).toEqual([Ename.NotFound, Errno.ENOENT]);
    const l = fsErrorFromCode(
      nodeError("ELOOP", "ELOOP: too many symbolic links encountered, open '/x'"),
      "ELOOP",
    );
    expect([l.ename, l.errno]).toEqual(["too many symbolic links encountered", Errno.ELOOP]);
    const u = fsErrorFromCode(nodeError("EWEIRD", "something odd"), "EWEIRD");
    expect([u.ename, u.errno]).toEqual(["eweird", Errno.EIO]);
  });
  it("toFsError: passes FsError through, maps known codes, falls back to EIO", () => {
    const fe = new FsError("mine", Errno.EPERM);
    expect(toFsError(fe)).toBe(fe);
    const e = toFsError(nodeError("ELOOP", "ELOOP: x"));
    expect([e.ename, e.errno]).toEqual(["too many levels of symbolic links", Errno.ELOOP]);
    const f = toFsError(new Error("boom"));
    expect([f.ename, f.errno]).toEqual([Ename.Io, Errno.EIO]);
  });
});

/** The error of a real connect to `port` on loopback, `lookup` giving the addresses of a host name. */
function refusedBy(port: number, addresses: { address: string; family: number }[]): Promise<Error> {
  return new Promise((resolve) => {
    const s = net.connect({
      host: "node.test",
      port,
      lookup: (_h, o, cb) =>
        o.all
          ? (cb as (e: null, a: typeof addresses) => void)(null, addresses)
          : cb(null, addresses[0]!.address, addresses[0]!.family),
    });
    s.on("error", resolve);
  });
}

describe("connectFailureWords", () => {
  it("names the address that refused, also for a host name with IPv6 and IPv4 addresses", async () => {
    // A port nobody listens on.
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const one = await refusedBy(port, [{ address: "127.0.0.1", family: 4 }]);
    expect(connectFailureWords(one)).toBe(" (Connection refused:127.0.0.1)");
    // Both loopback addresses refuse: Node reports an AggregateError without an address of its own.
    const both = await refusedBy(port, [
      { address: "::1", family: 6 },
      { address: "127.0.0.1", family: 4 },
    ]);
    expect(connectFailureWords(both)).toBe(" (Connection refused:127.0.0.1)");
  });
  it("gives the C library's text and the address for other connect errors, as the original printed them", () => {
    const at = (code: string, address: string) => Object.assign(new Error(code), { code, address });
    expect(connectFailureWords(at("EHOSTUNREACH", "198.18.0.20"))).toBe(" (No route to host:198.18.0.20)");
    expect(connectFailureWords(at("ETIMEDOUT", "10.0.0.7"))).toBe(" (Connection timed out:10.0.0.7)");
    expect(connectFailureWords(at("ENETUNREACH", "10.0.0.7"))).toBe(" (Network is unreachable:10.0.0.7)");
    // Several addresses: a refusal is named before other failures, IPv4 before IPv6.
    const all = Object.assign(
      new AggregateError([at("EHOSTUNREACH", "::1"), at("ECONNREFUSED", "127.0.0.1")]),
      {
        code: "ECONNREFUSED",
      },
    );
    expect(connectFailureWords(all)).toBe(" (Connection refused:127.0.0.1)");
    const unreachable = new AggregateError([at("ENETUNREACH", "fe80::1"), at("EHOSTUNREACH", "10.1.2.3")]);
    expect(connectFailureWords(unreachable)).toBe(" (No route to host:10.1.2.3)");
  });
  it("names a host that does not resolve, and is empty for other failures", () => {
    const notFound = Object.assign(new Error("getaddrinfo ENOTFOUND n9"), {
      code: "ENOTFOUND",
      hostname: "n9",
    });
    expect(connectFailureWords(notFound)).toBe(" (cannot resolve name: n9)");
    expect(connectFailureWords(Object.assign(new Error("x"), { code: "EPROTO" }))).toBe("");
    expect(connectFailureWords(undefined)).toBe("");
  });
});

describe("where the errors are exported", () => {
  it("each entry exports the errors its users meet, the same classes as ./errors", () => {
    const pairs: [string, unknown, unknown][] = [
      ["client NinepError", client.NinepError, errors.NinepError],
      ["client RemoteError", client.RemoteError, errors.RemoteError],
      ["client ProtocolError", client.ProtocolError, errors.ProtocolError],
      ["client MessageTooLargeError", client.MessageTooLargeError, errors.MessageTooLargeError],
      ["client ConnectionError", client.ConnectionError, errors.ConnectionError],
      ["client TimeoutError", client.TimeoutError, errors.TimeoutError],
      ["client ClosedError", client.ClosedError, errors.ClosedError],
      ["client connectFailureWords", client.connectFailureWords, errors.connectFailureWords],
      ["client causeOf", client.causeOf, errors.causeOf],
      ["server FsError", server.FsError, errors.FsError],
      ["server Ename", server.Ename, errors.Ename],
      ["server Errno", server.Errno, errors.Errno],
      ["server toFsError", server.toFsError, errors.toFsError],
      ["server errnoForEname", server.errnoForEname, errors.errnoForEname],
      ["codec ProtocolError", codec.ProtocolError, errors.ProtocolError],
    ];
    for (const [what, exported, original] of pairs) {
      expect(exported, what).toBeDefined();
      expect(exported, what).toBe(original);
    }
  });
});
