// Reading `procs` tables: the parser against the table our xcpufs generates from this machine's /proc.

import { readFile } from "node:fs/promises";
import { procsText } from "@clustermatic/xcpufs";
import { describe, expect, it } from "vitest";
import { countJobs, parseSysinfo, splitProcsRecord } from "../src/xcpufs-session.js";

describe("procs", () => {
  it("splits records with quoted, parenthesised command lines", () => {
    expect(splitProcsRecord("(12 (sh -c 'a (b'' c)') R 1 2 3 ?? -1 0 0 9 ) ")).toEqual([
      "12",
      "(sh -c 'a (b'' c)')",
      "R",
      "1",
      "2",
      "3",
      "??",
      "-1",
      "0",
      "0",
      "9",
    ]);
    expect(splitProcsRecord("not a record")).toBeUndefined();
  });

  it("counts this machine's processes and its uptime from the table xcpufs serves", async () => {
    const text = await procsText(new Map([[process.pid, { sid: 7, jid: "job9/1" }]]) as never);
    const c = countJobs(text);
    expect(c.processes).toBeGreaterThan(3);
    expect(c.jobs).toBe(1);
    const uptime = Number((await readFile("/proc/uptime", "utf8")).split(" ")[0]);
    expect(Math.abs(c.uptimeSeconds! - uptime)).toBeLessThan(60);
  });

  it("parses the sysinfo extension", () => {
    expect(parseSysinfo("load 0.5 0.25 0.1\nmemtotal 8000\nmemavail 6000\nuptime 12.5\nncpu 2\n")).toEqual({
      load: [0.5, 0.25, 0.1],
      memTotalBytes: 8000,
      memAvailableBytes: 6000,
      uptimeSeconds: 12.5,
    });
    expect(parseSysinfo("load x y z\n")).toEqual({});
  });
});
