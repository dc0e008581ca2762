import { describe, expect, it } from "vitest";
import { ARCH_UNKNOWN, clampField, formatParsed, formatTable, parseTable } from "../src/table.js";

describe("state table", () => {
  it("reproduces the original statfs answer captured on the wire", () => {
    // Rread of /state from the original statfs polling two original xcpufs nodes (84 bytes).
    const captured =
      "n1\ttcp!127.0.0.1!42135\t/Linux/x86_64\tup\t0\nn2\ttcp!127.0.0.1!45111\t/Linux/x86_64\tup\t0\n";
    const table = formatTable([
      {
        name: "n1",
        address: "tcp!127.0.0.1!42135",
        arch: Buffer.from("/Linux/x86_64"),
        status: Buffer.from("up"),
        numjobs: 0,
      },
      {
        name: "n2",
        address: "tcp!127.0.0.1!45111",
        arch: Buffer.from("/Linux/x86_64"),
        status: Buffer.from("up"),
        numjobs: 0,
      },
    ]);
    expect(table.length).toBe(84);
    expect(table.toString("latin1")).toBe(captured);
  });

  it("keeps a node's arch newline inside the line, and the original parser copes", () => {
    const table = formatTable([
      {
        name: "a",
        address: "10.0.0.1",
        arch: Buffer.from("/Linux/x86_64\n"),
        status: Buffer.from("up"),
        numjobs: 3,
      },
      {
        name: "b",
        address: "10.0.0.2",
        arch: ARCH_UNKNOWN,
        status: Buffer.from("down(connect_failed)"),
        numjobs: 0,
      },
    ]);
    expect(table.toString()).toBe(
      "a\t10.0.0.1\t/Linux/x86_64\n\tup\t3\nb\t10.0.0.2\tunknown (not read yet)\tdown(connect_failed)\t0\n",
    );
    const rows = parseTable(table.toString());
    expect(rows.map((r) => [r.name, r.arch, r.status, r.numjobs])).toEqual([
      ["a", "/Linux/x86_64\n", "up", 3],
      ["b", "unknown (not read yet)", "down(connect_failed)", 0],
    ]);
    expect(formatParsed(rows)).toBe(table.toString());
  });

  it("cuts node text at NUL and 63 bytes like the original C strings", () => {
    expect(clampField(Buffer.from("maint\0junk")).toString()).toBe("maint");
    expect(clampField(Buffer.alloc(100, 0x61)).length).toBe(63);
  });

  it("names the missing field of a broken table", () => {
    expect(() => parseTable("n1\taddr\n")).toThrow("Bad format in statfs: architecture");
    expect(() => parseTable("n1")).toThrow("Bad format in statfs: address");
    expect(parseTable("")).toEqual([]);
  });
});
