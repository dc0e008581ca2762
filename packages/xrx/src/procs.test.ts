import { describe, expect, it } from "vitest";
import { jobMainProcesses, parseProcs } from "./procs.js";

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
});
