// Commands that write many files (render, pxe, ipxe, coreboot -o) change all of them or none: a
// node whose plan fails half-way through, or a full disk, leaves the previous output as it was.
import { execFileSync, spawnSync } from "node:child_process";
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { run, tempDir } from "./helpers.js";
import { synthBzImage, synthElf } from "./synth.js";

const t = tempDir();
afterAll(() => t.cleanup());

/** Every file under `dir` with its contents, and every directory. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) {
        out[`${relative(dir, p)}/`] = "";
        walk(p);
      } else out[relative(dir, p)] = readFileSync(p, "latin1");
    }
  };
  walk(dir);
  return out;
}

function cluster(dir: string, cmdline: string): void {
  writeFileSync(
    join(dir, "cluster.yaml"),
    `defaults:\n  cmdline: [console=ttyS0, ${cmdline}]\nprofiles:\n  x86: {arch: x86_64}\nnodes:\n` +
      `  - {name: "n[1-3]", profiles: [x86], kernel: bz, mac: "52:54:00:00:00:01", delivery: pxe}\n` +
      `  - {name: n4, profiles: [x86], kernel: bz4, mac: "52:54:00:00:01:01", delivery: pxe}\n`,
  );
}

describe("multi-file outputs", () => {
  const src = join(t.dir, "src");
  mkdirSync(src);
  writeFileSync(join(src, "bz"), synthBzImage({ xloadflags: 0x7f }));
  writeFileSync(join(src, "bz4"), synthBzImage({ xloadflags: 0x7f }));

  for (const [cmd, extra] of [
    ["render", []],
    ["pxe", ["--by-ip"]],
  ] as const) {
    it(`${cmd}: a node that fails half-way leaves the previous output whole`, async () => {
      const out = join(t.dir, `${cmd}-out`);
      cluster(src, "v=1");
      const first = await run([cmd, "-c", join(src, "cluster.yaml"), "-o", out, ...extra]);
      expect(first.code, first.stderr).toBe(0);
      const before = snapshot(out);
      expect(Object.keys(before).length).toBeGreaterThan(4);

      // n1..n3 would change, then n4's kernel is missing: nothing may change
      cluster(src, "v=2");
      rmSync(join(src, "bz4"));
      try {
        const r = await run([cmd, "-c", join(src, "cluster.yaml"), "-o", out, ...extra]);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/bz4/);
        expect(snapshot(out)).toEqual(before);
      } finally {
        writeFileSync(join(src, "bz4"), synthBzImage({ xloadflags: 0x7f }));
      }
      // and once n4 is back, the new output replaces the old one completely
      const again = await run([cmd, "-c", join(src, "cluster.yaml"), "-o", out, ...extra]);
      expect(again.code, again.stderr).toBe(0);
      const after = snapshot(out);
      expect(Object.keys(after)).toEqual(Object.keys(before));
      expect(Object.values(after).join("")).toContain("v=2");
      expect(Object.values(after).join("")).not.toContain("v=1");
    });
  }

  it("a first render that fails leaves no directories or temporary files behind", async () => {
    cluster(src, "v=3");
    rmSync(join(src, "bz4"));
    try {
      const out = join(t.dir, "fresh", "render");
      const r = await run(["render", "-c", join(src, "cluster.yaml"), "-o", out]);
      expect(r.code).toBe(1);
      expect(readdirSync(t.dir)).not.toContain("fresh");
    } finally {
      writeFileSync(join(src, "bz4"), synthBzImage({ xloadflags: 0x7f }));
    }
  });

  it("render on a full disk: the previous render stays whole, nothing partial", async (ctx) => {
    if (process.getuid?.() !== 0) {
      console.log("full-disk render test skipped: mounting a small tmpfs needs root");
      ctx.skip();
    }
    const small = join(t.dir, "small");
    mkdirSync(small);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", small], { stdio: "pipe" });
    } catch (err) {
      console.log(`full-disk render test skipped: cannot mount a tmpfs (${(err as Error).message})`);
      ctx.skip();
    }
    try {
      cluster(src, "v=4");
      const out = join(small, "render");
      expect((await run(["render", "-c", join(src, "cluster.yaml"), "-o", out])).code).toBe(0);
      const before = snapshot(out);
      // Fill the disk except a few KiB: the first files of the next render fit, the rest do not.
      cpSync(join(src, "bz"), join(small, "filler0"));
      for (let i = 1; ; i++) {
        try {
          writeFileSync(join(small, `filler${i}`), Buffer.alloc(4096, 1));
        } catch {
          rmSync(join(small, `filler${i}`), { force: true });
          rmSync(join(small, `filler${i - 1}`), { force: true });
          break;
        }
      }
      cluster(src, "v=5");
      const r = await run(["render", "-c", join(src, "cluster.yaml"), "-o", out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/cannot write it \(no space left on device\); no output was changed\n$/);
      expect(snapshot(out)).toEqual(before);
    } finally {
      execFileSync("umount", ["-l", small]);
    }
  });
});

describe("names in pxelinux configs and iPXE scripts", () => {
  const d = join(t.dir, "names");
  mkdirSync(join(d, "x86"), { recursive: true });
  mkdirSync(join(d, "old"), { recursive: true });
  writeFileSync(join(d, "x86/vmlinuz"), synthBzImage({ xloadflags: 0x7f }));
  writeFileSync(join(d, "old/vmlinuz"), synthBzImage({ xloadflags: 0x7f, cmdlineSize: 255 }));
  writeFileSync(join(d, "my kernel"), synthBzImage({ xloadflags: 0x7f }));

  it("two different kernels with one base name would be one published file: refused", async () => {
    const file = join(d, "clash.yaml");
    writeFileSync(
      file,
      'nodes:\n  - {name: n1, kernel: x86/vmlinuz, delivery: pxe, mac: "52:54:00:00:00:01"}\n' +
        '  - {name: n2, kernel: old/vmlinuz, delivery: pxe, mac: "52:54:00:00:00:02"}\n' +
        '  - {name: n3, kernel: x86/vmlinuz, delivery: pxe, mac: "52:54:00:00:00:03"}\n',
    );
    const message = `n2: kernel ${join(d, "old/vmlinuz")} and n1's kernel ${join(d, "x86/vmlinuz")} are both published as "vmlinuz": rename one`;
    const c = await run(["check", file]);
    expect(c.code).toBe(1);
    expect(c.stdout.split("\n").filter((l) => l.startsWith("error:"))).toEqual([`error: ${message}`]);
    expect(c.stdout).toMatch(/3 nodes checked: 2 ok, 1 failed/);
    const out = join(d, "pxe");
    expect(await run(["pxe", "-c", file, "-o", out])).toMatchObject({
      code: 1,
      stderr: `bootcfg: ${message}\n`,
    });
    expect(readdirSync(d)).not.toContain("pxe");
    // render writes the same pxelinux configs (one per node directory): refused alike
    expect(await run(["render", "-c", file, "-o", join(d, "render")])).toMatchObject({
      code: 1,
      stderr: `bootcfg: ${message}\n`,
    });
    expect(readdirSync(d)).not.toContain("render");
  });

  it("a file name with white space, and an iPXE baseUrl with white space: refused", async () => {
    const file = join(d, "space.yaml");
    writeFileSync(
      file,
      'nodes:\n  - {name: n1, kernel: "my kernel", delivery: pxe, mac: "52:54:00:00:00:01"}\n' +
        '  - {name: n2, kernel: x86/vmlinuz, delivery: ipxe, mac: "52:54:00:00:00:02", baseUrl: "http://h/a b"}\n',
    );
    const c = await run(["check", file]);
    expect(c.code).toBe(1);
    expect(c.stdout.split("\n").filter((l) => l.startsWith("error:"))).toEqual([
      `error: n1: kernel ${join(d, "my kernel")} is published as "my kernel", which a pxelinux config cannot name (white space or a comma): rename the file`,
      'error: n2: baseUrl "http://h/a b" has white space, which an iPXE script cannot hold',
    ]);
    expect((await run(["ipxe", "-c", file, "-o", join(d, "ipxe")])).code).toBe(1);
    const r = await run(["render", "-c", file, "-o", join(d, "render")]);
    expect(r.code).toBe(1);
    expect(r.stderr.split("\n")).toEqual([
      `bootcfg: n1: kernel ${join(d, "my kernel")} is published as "my kernel", which a pxelinux config cannot name (white space or a comma): rename the file`,
      'n2: baseUrl "http://h/a b" has white space, which an iPXE script cannot hold',
      "",
    ]);
    expect(readdirSync(d)).not.toContain("render");
  });

  it('a node named "." or ".." is refused: render would write outside its directory', async () => {
    const out = join(d, "dots", "render");
    for (const name of ["..", "."]) {
      const file = join(d, "dots.yaml");
      writeFileSync(
        file,
        `nodes:\n  - {name: n1, kernel: x86/vmlinuz}\n  - {name: "${name}", kernel: x86/vmlinuz}\n`,
      );
      const r = await run(["render", "-c", file, "-o", out]);
      expect(r).toMatchObject({
        code: 1,
        stderr: `bootcfg: ${file}:3: nodes.1: "${name}" cannot be a node name (it names a directory, not a node, in render output and in serve's tree)\n`,
      });
    }
    expect(readdirSync(d)).not.toContain("dots");
  });
});

describe("pxe and ipxe without a node of their delivery", () => {
  it("create the output directory and write the index (and boot.ipxe, pxelinux.cfg/default)", async () => {
    const d = join(t.dir, "nodeless");
    mkdirSync(d);
    writeFileSync(join(d, "bz"), synthBzImage());
    writeFileSync(join(d, "cluster.yaml"), "nodes:\n  - {name: n1, kernel: bz}\n");
    for (const cmd of ["ipxe", "pxe"]) {
      const out = join(d, `new-${cmd}`, "sub");
      const r = await run([cmd, "-o", out], d);
      expect(r, cmd).toEqual({ code: 0, stdout: `0 ${cmd} node configs written to ${out}\n`, stderr: "" });
      expect(JSON.parse(readFileSync(join(out, `${cmd}-index.json`), "utf8"))).toEqual({});
    }
    expect(readFileSync(join(d, "new-ipxe/sub/boot.ipxe"), "utf8")).toMatch(/^#!ipxe/);
    expect(readFileSync(join(d, "new-pxe/sub/pxelinux.cfg/default"), "utf8")).toMatch(/DEFAULT local/);
  });
});

describe("-o /dev/stdout", () => {
  const PKG = join(dirname(fileURLToPath(import.meta.url)), "..");
  /**
   * The CLI as a child process, its stdout on a pipe (`bootcfg … | cat`) or, with `socket`, on
   * the socket a Node parent gives (where opening /dev/stdout fails with ENXIO); stdout as bytes.
   */
  function bin(args: string[], socket = false): { status: number | null; stdout: Buffer; stderr: string } {
    const cli = [
      process.execPath,
      "--conditions=@clustermatic/source",
      "--import",
      "tsx",
      join(PKG, "src/bin/bootcfg.ts"),
      ...args,
    ];
    const r = spawnSync(
      socket ? cli[0]! : "bash",
      socket ? cli.slice(1) : ["-o", "pipefail", "-c", '"$@" | cat', "bash", ...cli],
      { cwd: PKG, timeout: 20_000, maxBuffer: 64 << 20 },
    );
    return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
  }

  it("stdout that cannot be written (/dev/full): one line and exit 1, no stack trace", () => {
    const full = openSync("/dev/full", "w");
    try {
      const r = spawnSync(
        process.execPath,
        ["--conditions=@clustermatic/source", "--import", "tsx", join(PKG, "src/bin/bootcfg.ts"), "--help"],
        { cwd: PKG, stdio: ["ignore", full, "pipe"], encoding: "utf8", timeout: 20_000 },
      );
      expect(r.status).toBe(1);
      expect(r.stderr).toBe(
        "bootcfg: cannot write standard output (ENOSPC: no space left on device, write)\n",
      );
    } finally {
      closeSync(full);
    }
  });

  it("stdout holds exactly the artifact; the summary goes to stderr", async () => {
    const elf = synthElf({ loads: [{ paddr: 0x100000, data: Buffer.alloc(4096, 0x90), memsz: 8192 }] });
    const bz = synthBzImage({ payload: gzipSync(elf) });
    bz.writeUInt32LE(Math.ceil((bz.length - 1024) / 16), 0x1f4);
    writeFileSync(join(t.dir, "std.bz"), bz);
    writeFileSync(join(t.dir, "std.elf"), elf);

    const x = bin(["extract-vmlinux", join(t.dir, "std.bz"), "-o", "/dev/stdout"]);
    expect(x.status, x.stderr).toBe(0);
    expect(x.stdout.equals(elf)).toBe(true);
    expect(x.stderr).toBe(
      `/dev/stdout: ${elf.length} bytes, ELF64 x86_64, entry 100000 (from gzip payload)\n`,
    );
    // `-o -` is the same, not a file named "-"
    const dash = bin(["extract-vmlinux", join(t.dir, "std.bz"), "-o", "-"]);
    expect(dash.status, dash.stderr).toBe(0);
    expect(dash.stdout.equals(elf)).toBe(true);
    expect(existsSync(join(PKG, "-"))).toBe(false);

    // payload build, for a bzImage, an ELF, into a new ROM and with --json: the bytes a file gets
    const cases: Array<[string, string[]]> = [
      ["std.bz", ["--cmdline", "console=ttyS0"]],
      ["std.elf", []],
      ["std.elf", ["--create-rom", "64K"]],
      ["std.elf", ["--json"]],
    ];
    for (const [input, extra] of cases) {
      const file = join(t.dir, "std.out");
      expect((await run(["payload", "build", join(t.dir, input), "-o", file, ...extra])).code).toBe(0);
      const p = bin(["payload", "build", join(t.dir, input), "-o", "/dev/stdout", ...extra]);
      expect(p.status, p.stderr).toBe(0);
      expect(p.stdout.equals(readFileSync(file)), `${input} ${extra.join(" ")}`).toBe(true);
      expect(p.stderr).toMatch(
        extra.includes("--json") ? /"selfSize"/ : /^\/dev\/stdout: SELF payload of \d+ bytes/,
      );
    }

    // initrd build --json: the JSON summary is not mixed into the archive
    writeFileSync(join(t.dir, "hello"), "hi\n");
    const file = join(t.dir, "std.cpio.gz");
    expect((await run(["initrd", "build", "--file", `hello=${join(t.dir, "hello")}`, "-o", file])).code).toBe(
      0,
    );
    const i = bin([
      "initrd",
      "build",
      "--file",
      `hello=${join(t.dir, "hello")}`,
      "-o",
      "/dev/stdout",
      "--json",
    ]);
    expect(i.status, i.stderr).toBe(0);
    expect(i.stdout.equals(readFileSync(file))).toBe(true);
    expect(JSON.parse(i.stderr)).toMatchObject({ output: "/dev/stdout" });

    // stdout on a socket: the same bytes (opening /dev/stdout would fail with ENXIO)
    const xs = bin(["extract-vmlinux", join(t.dir, "std.bz"), "-o", "/dev/stdout"], true);
    expect(xs.status, xs.stderr).toBe(0);
    expect(xs.stdout.equals(elf)).toBe(true);
    const is = bin(["initrd", "build", "--file", `hello=${join(t.dir, "hello")}`, "-o", "/dev/stdout"], true);
    expect(is.status, is.stderr).toBe(0);
    expect(is.stdout.equals(readFileSync(file))).toBe(true);
  });
});
