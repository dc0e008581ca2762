import { describe, expect, it } from "vitest";
import { AddressError, formatAddress, parseAddress } from "./address.js";

describe("parseAddress", () => {
  const ok: Array<[string, ReturnType<typeof parseAddress>]> = [
    ["tcp!10.0.0.5!564", { network: "tcp", host: "10.0.0.5", port: 564 }],
    ["net!fs!9fs", { network: "tcp", host: "fs", port: 564 }],
    ["tcp!node3", { network: "tcp", host: "node3", port: 564 }],
    ["tcp!fs!exportfs", { network: "tcp", host: "fs", port: 17007 }],
    ["unix!/tmp/ns.glenda/acme", { network: "unix", path: "/tmp/ns.glenda/acme" }],
    ["node1!6667", { network: "tcp", host: "node1", port: 6667 }],
    ["127.0.0.1:5640", { network: "tcp", host: "127.0.0.1", port: 5640 }],
    ["[::1]:564", { network: "tcp", host: "::1", port: 564 }],
    ["[fe80::1]", { network: "tcp", host: "fe80::1", port: 564 }],
    ["::1", { network: "tcp", host: "::1", port: 564 }],
    ["localhost", { network: "tcp", host: "localhost", port: 564 }],
    ["/run/9p.sock", { network: "unix", path: "/run/9p.sock" }],
    ["host:0", { network: "tcp", host: "host", port: 0 }],
    ["tcp![::1]!564", { network: "tcp", host: "::1", port: 564 }],
    ["[fe80::2]!6667", { network: "tcp", host: "fe80::2", port: 6667 }],
    ["::1!6667", { network: "tcp", host: "::1", port: 6667 }],
  ];
  for (const [text, want] of ok) {
    it(`parses ${text}`, () => expect(parseAddress(text)).toEqual(want));
  }

  it("uses the default port given", () => {
    expect(parseAddress("node7", 6667)).toEqual({ network: "tcp", host: "node7", port: 6667 });
    expect(parseAddress("tcp!node7", 20003)).toEqual({ network: "tcp", host: "node7", port: 20003 });
  });

  const bad: Array<[string, RegExp]> = [
    ["", /empty address/],
    ["host:99999", /bad port 99999.*65535/],
    ["host:abc", /bad port "abc"/],
    ["tcp!host!-1", /bad port "-1"/],
    ["tcp!!564", /missing host/],
    [":564", /missing host/],
    ["udp!host!564", /unknown network "udp"/],
    ["tcp!a!b!c", /bad dial string/],
    ["unix!", /missing socket path/],
    ["[::1", /missing "]"/],
    ["[::1]x", /unexpected "x"/],
    ["tcp![node]!564", /bad host "\[node\]"/],
    ["[::1!564", /bad host "\[::1"/],
  ];
  for (const [text, msg] of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      const err = (() => {
        try {
          parseAddress(text);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(AddressError);
      expect((err as Error).message).toMatch(msg);
      expect((err as AddressError).code).toBe("E9P_ADDRESS");
    });
  }

  it("formats dial strings that parse back", () => {
    for (const a of ["tcp!h!1", "unix!/x/y"]) expect(formatAddress(parseAddress(a))).toBe(a);
    expect(formatAddress(parseAddress("[::1]:9"))).toBe("tcp!::1!9");
  });
});
