import { describe, expect, it } from "vitest";
import { compressNodeList, expandNodeList, NodeListError, parseNodeList, splitNodeName } from "./index.js";

describe("expandNodeList", () => {
  it("expands the original syntax", () => {
    expect(expandNodeList("n[1-10],n13,10.0.0.5!7000")).toHaveLength(12);
    expect(expandNodeList("n[1-3]")).toEqual(["n1", "n2", "n3"]);
  });
  it("keeps zero padding when the low bound has a leading zero", () => {
    expect(expandNodeList("n[01-03]")).toEqual(["n01", "n02", "n03"]);
    expect(expandNodeList("n[08-10]")).toEqual(["n08", "n09", "n10"]);
    expect(expandNodeList("n[001-2]")).toEqual(["n001", "n002"]);
  });
  it("skips empty elements and duplicates", () => {
    expect(expandNodeList("a,,b,a,")).toEqual(["a", "b"]);
  });
  it("keeps each listing of a name with keepDuplicates, still skipping empty elements", () => {
    expect(expandNodeList("a,,b,a,n[1-2],n2", { keepDuplicates: true })).toEqual([
      "a",
      "b",
      "a",
      "n1",
      "n2",
      "n2",
    ]);
    expect(() => expandNodeList("a,a,a", { keepDuplicates: true, maxNodes: 2 })).toThrow(/too many/);
  });
  it("expands letter ranges, lists in brackets and several groups", () => {
    expect(expandNodeList("rack[b-d]")).toEqual(["rackb", "rackc", "rackd"]);
    expect(expandNodeList("n[1-2,7]")).toEqual(["n1", "n2", "n7"]);
    expect(expandNodeList("r[1-2]n[1-2]")).toEqual(["r1n1", "r1n2", "r2n1", "r2n2"]);
    expect(expandNodeList("n[1-2].lab")).toEqual(["n1.lab", "n2.lab"]);
  });
  it("expands a reversed range to nothing, like the original", () => {
    expect(expandNodeList("n[5-3],x")).toEqual(["x"]);
  });
  it("accepts tcp!host!port elements", () => {
    expect(expandNodeList("tcp!n1!7000,n2")).toEqual(["tcp!n1!7000", "n2"]);
  });
  it.each(["n[1-", "n]1[", "n[[1-2]]", "n[x-]", "bad name", "n[a-C]", "a/b"])("rejects %j", (spec) => {
    expect(() => expandNodeList(spec)).toThrow(NodeListError);
  });
  it("names the element in the error", () => {
    expect(() => expandNodeList("ok,bad/one")).toThrow(
      "syntax error: 'bad/one' not a valid node description",
    );
  });
  it("refuses lists that expand beyond the limit", () => {
    expect(() => expandNodeList("n[1-1000000]")).toThrow(/too many/);
    expect(expandNodeList("n[1-5]", { maxNodes: 5 })).toHaveLength(5);
    expect(() => expandNodeList("n[1-6]", { maxNodes: 5 })).toThrow(/too many/);
  });
  it("refuses a huge range without making its names first", () => {
    // Each of these would build 10^11 strings (and run out of memory) before counting them.
    expect(() => expandNodeList("n[1-100000000000]")).toThrow(/too many/);
    expect(() => expandNodeList("n[1-3,5-100000000000]")).toThrow(/too many/);
    expect(() => expandNodeList("r[1-2]n[1-100000000000]")).toThrow(/too many/);
    expect(() => expandNodeList("a,b,n[1-99999]", { maxNodes: 100_000 })).toThrow(/too many/);
    expect(expandNodeList("a,n[1-99999]", { maxNodes: 100_000 })).toHaveLength(100_000);
  });
});

describe("splitNodeName / parseNodeList", () => {
  it("derives addresses with the default port", () => {
    expect(parseNodeList("n[1-2]")).toEqual([
      { name: "n1", host: "n1", port: 6667, address: "tcp!n1!6667" },
      { name: "n2", host: "n2", port: 6667, address: "tcp!n2!6667" },
    ]);
    expect(parseNodeList("n1", { defaultPort: 20003 })[0]?.port).toBe(20003);
  });
  it("understands every port form", () => {
    expect(splitNodeName("h!7").port).toBe(7);
    expect(splitNodeName("tcp!h!8").address).toBe("tcp!h!8");
    expect(splitNodeName("127.0.0.1:9").host).toBe("127.0.0.1");
    expect(splitNodeName("[::1]:10")).toMatchObject({ host: "::1", port: 10 });
  });
  it("takes a bracketed IPv6 address in a list as an address, not a range", () => {
    expect(parseNodeList("[::1]:7000,n[1-2],[fe80::1]").map((n) => n.address)).toEqual([
      "tcp!::1!7000",
      "tcp!n1!6667",
      "tcp!n2!6667",
      "tcp!fe80::1!6667",
    ]);
    expect(() => parseNodeList("[1-2]:7000x")).toThrow(NodeListError);
  });
  it("takes an IPv6 address in brackets in the ! forms", () => {
    expect(parseNodeList("[::1]!7000,tcp![fe80::2]!7001,::1!7002,n[1-2]!7003").map((n) => n.address)).toEqual(
      ["tcp!::1!7000", "tcp!fe80::2!7001", "tcp!::1!7002", "tcp!n1!7003", "tcp!n2!7003"],
    );
    expect(parseNodeList("[::1]!7000")[0]).toMatchObject({ name: "[::1]!7000", host: "::1", port: 7000 });
  });
  it.each(["h!x", "h!70000", "h!0", "a!b!c!d", "[zz]:1", "[::1!7", "[z]!7"])("rejects %j", (name) => {
    expect(() => splitNodeName(name)).toThrow(NodeListError);
  });
});

describe("compressNodeList", () => {
  it("folds numbered runs and keeps the rest", () => {
    expect(compressNodeList(["n01", "n02", "n03", "x", "n05"])).toBe("n[01-03,05],x");
    expect(compressNodeList(["n1", "n2", "n9"])).toBe("n[1-2,9]");
    expect(compressNodeList(["solo"])).toBe("solo");
  });
  it("round-trips through expandNodeList", () => {
    for (const spec of ["n[01-16]", "a[1-3,7],b", "n[1-100]"]) {
      const names = expandNodeList(spec);
      expect(expandNodeList(compressNodeList(names))).toEqual(names);
    }
  });
});
