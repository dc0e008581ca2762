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

describe("ip and mac incremented over a range", () => {
  it("may not pass the last address (they wrapped to 0.0.0.0 and 00:00:00:00:00:00)", async () => {
    const file = join(t.dir, "wrap.yaml");
    writeFileSync(file, 'nodes:\n  - {name: "n[1-3]", kernel: bz, ip: 255.255.255.254}\n');
    let r = await run(["check", file]);
    expect(r).toMatchObject({ code: 1, stdout: "" });
    expect(r.stderr).toBe(
      `bootcfg: ${file}:2: nodes.0.ip: 255.255.255.254 + 2 (for 3 nodes) passes the last IPv4 address\n`,
    );
    // An excluded name keeps its place: n4 is +3 even with n2 excluded; a last name excluded adds nothing.
    writeFileSync(file, 'nodes:\n  - {name: "n[1-4]", exclude: n2, kernel: bz, ip: 255.255.255.253}\n');
    r = await run(["check", file]);
    expect(r.stderr).toBe(
      `bootcfg: ${file}:2: nodes.0.ip: 255.255.255.253 + 3 (for n4, name 4 of 4) passes the last IPv4 address\n`,
    );
    writeFileSync(file, 'nodes:\n  - {name: "n[1-4]", exclude: n4, kernel: bz, ip: 255.255.255.253}\n');
    expect((await run(["nodes", "-c", file])).stdout).toBe("n1\nn2\nn3\n");
    writeFileSync(file, 'nodes:\n  - {name: "n[1-3]", kernel: bz, mac: "ff:ff:ff:ff:ff:fe"}\n');
    r = await run(["show", "n1", "-c", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /nodes\.0\.mac: ff:ff:ff:ff:ff:fe \+ 2 \(for 3 nodes\) passes the last MAC address/,
    );
    // up to the last address is fine, and carries into the next octet
    writeFileSync(
      file,
      'nodes:\n  - {name: "n[1-2]", kernel: bz, ip: 10.0.0.255, mac: "ff:ff:ff:ff:ff:fe"}\n',
    );
    r = await run(["show", "n2", "-c", file, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ip: "10.0.1.0", mac: "ff:ff:ff:ff:ff:ff" });
  });
});
