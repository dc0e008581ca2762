import { describe, expect, it } from "vitest";
import { commandColumn, jobMainProcesses, parseProcs, statColumn, timeColumn } from "./procs.js";

const HEADER =
  "(pid (cmdline) state ppid pgrp psid tty tpgid utime stime etime priority nice wchan euid suid fsuid egid sgid fsgid vmsize rssize shsize txtsize datsize xcpusid xcpujid ) ";
const rec = (
  pid: number,
  cmd: string,
  tail = "S 1 1 1 ?? -1 10 0 5230 5 0 0 0 0 0 0 0 0 4096 4096 0 0 0 '' ''",
) => `(${pid} (${cmd}) ${tail} ) `;

describe("parseProcs (the original xcpufs procs format)", () => {
  it("reads header-named fields, quoted arguments and '' fields", () => {
    const text = [
      HEADER,
      rec(1, "/sbin/init"),
      rec(
        4711,
        "/tmp/xcpu-Ab/a.out -n 3 'it''s here'",
        "S 4100 4711 4711 pts/3 -1 10 0 5230 5 0 0 1000 1000 1000 100 100 100 5476352 1048576 856064 4096 135168 3 job7/2",
      ),
      "",
    ].join("\n");
    const p = parseProcs(text);
    expect(p.map((x) => x.pid)).toEqual([1, 4711]);
    expect(p[0]).toMatchObject({ cmdline: ["/sbin/init"], sid: "", jobid: "", tty: "??", state: "S" });
    expect(p[1]).toMatchObject({
      cmdline: ["/tmp/xcpu-Ab/a.out", "-n", "3", "it's here"],
      sid: "3",
      jobid: "job7/2",
      tty: "pts/3",
      ppid: 4100,
      euid: 1000,
      vmsize: 5476352,
    });
  });

  it("keeps every record when arguments hold unquoted parentheses or newlines", () => {
    const text = [
      HEADER,
      rec(10, "sh -c :)"),
      rec(11, "find / ( -name a"),
      rec(12, "printf a\nb"),
      rec(13, "sleep 1", "S 1 1 1 ?? -1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 4 'my job/1'"),
      "",
    ].join("\n");
    const p = parseProcs(text);
    expect(p.map((x) => [x.pid, x.cmdline])).toEqual([
      [10, ["sh", "-c", ":)"]],
      [11, ["find", "/", "(", "-name", "a"]],
      [12, ["printf", "a", "b"]],
      [13, ["sleep", "1"]],
    ]);
    expect(p[3]).toMatchObject({ sid: "4", jobid: "my job/1", state: "S" });
    expect(jobMainProcesses(p, "my job").map((x) => x.pid)).toEqual([13]);
  });

  it("reads quoted tokens that end in doubled quotes, and empty ones", () => {
    const p = parseProcs(
      `${HEADER}\n${rec(5, "x", "S 1 1 1 ?? -1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 '' 'a'''")}\n`,
    );
    expect(p[0]).toMatchObject({ sid: "", jobid: "a'" });
  });

  // A broken or hostile node may send a header of a million names and records as long: reading
  // each record's fields must take one pass over it (it took time quadratic in the field count,
  // minutes for a few megabytes). The limit below is ~20 times what one pass takes on a busy machine.
  it("reads a record of 300000 fields in one pass", { timeout: 30_000 }, () => {
    const n = 300_000;
    const names = Array.from({ length: n }, (_, i) => `f${i}`).join(" ");
    const values = Array.from({ length: n }, (_, i) => String(i)).join(" ");
    const p = parseProcs(`(pid (cmdline) ${names} )\n(1 (x) ${values} )\n`);
    expect(p).toHaveLength(1);
    expect(p[0]!.fields.f0).toBe("0");
    expect(p[0]!.fields[`f${n - 1}`]).toBe(String(n - 1));
  });

  it("gives nothing for the Darwin placeholder or an empty file", () => {
    expect(parseProcs("((Not) (Implemented) (Yet))\n")).toEqual([]);
    expect(parseProcs("")).toEqual([]);
  });

  it("gives the xps columns of the original: STAT letters, TIME M:SS, COMMAND as procs quotes it", () => {
    const p = parseProcs(
      [
        HEADER,
        // 8.4's example record: session leader, no terminal, 10 ms of CPU.
        rec(
          4711,
          "/var/xcpu/xcpu-Ab12Cd/a.out -n 3",
          "S 4100 4711 4711 ?? -1 10 0 5230 5 0 0 1000 1000 1000 100 100 100 5476352 1048576 856064 4096 135168 3 job7/2",
        ),
        // A niced foreground process of a terminal, 65.4 s of CPU, arguments that need quotes.
        rec(
          4800,
          "echo 'it''s here' 'a b' plain",
          "R 4711 4800 4711 pts/1 4800 60000 5400 9000 20 5 0 0 0 0 0 0 0 0 0 0 0 0 '' ''",
        ),
        rec(4900, "sleep 1", "Z 1 1 1 ?? -1 0 0 0 0 -5 0 0 0 0 0 0 0 0 0 0 0 0 '' ''"),
        rec(5000, "x", "W 1 1 1 ?? -1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 '' ''"),
        "",
      ].join("\n"),
    );
    const row = (x: (typeof p)[number]) => [statColumn(x), timeColumn(x), commandColumn(x)];
    expect(p.map(row)).toEqual([
      ["Ss", "0:00", "/var/xcpu/xcpu-Ab12Cd/a.out -n 3"],
      ["RN+", "1:05", "echo 'it''s here' 'a b' plain"],
      ["Z<", "0:00", "sleep 1"],
      ["?", "0:00", "x"],
    ]);
  });
});
