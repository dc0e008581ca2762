// Standard output on a full disk: every byte or a failure said, never a silent short file.
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const STDIO = join(dirname(fileURLToPath(import.meta.url)), "stdio.ts");
const root = process.getuid?.() === 0;
const work = mkdtempSync(join(tmpdir(), "ninep-stdio-"));
afterAll(() => {
  spawnSync("umount", [join(work, "small")]);
  rmSync(work, { recursive: true, force: true });
});

/** Runs a script that writes `bytes` bytes to its stdout (fd `out`) through guardStdout. */
function writer(bytes: number, out: number, guarded = true) {
  const script = guarded
    ? `import { guardStdout } from ${JSON.stringify(STDIO)};
       const o = guardStdout("tool");
       process.stdout.write("x".repeat(${bytes}));
       o.finish(0);`
    : `process.stdout.write("x".repeat(${bytes}));`;
  return spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    stdio: ["ignore", out, "pipe"],
    encoding: "utf8",
    timeout: 20_000,
  });
}

describe("guardStdout", () => {
  it("a device that refuses the write (/dev/full): one line on stderr and exit 1, no stack trace", () => {
    const fd = openSync("/dev/full", "w");
    try {
      const r = writer(100, fd);
      expect(r.status).toBe(1);
      expect(r.stderr).toBe("tool: cannot write standard output (ENOSPC: no space left on device, write)\n");
    } finally {
      closeSync(fd);
    }
  });

  it("a file that fits: every byte, exit 0", () => {
    const file = join(work, "fits");
    const fd = openSync(file, "w");
    try {
      const r = writer(300_000, fd);
      expect(r.status, r.stderr).toBe(0);
      expect(statSync(file).size).toBe(300_000);
    } finally {
      closeSync(fd);
    }
  });

  it.skipIf(!root)(
    "a file on a disk with less room than the output: exit 1 and said, not a short file and 0",
    () => {
      const small = join(work, "small");
      mkdirSync(small);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", small]);
      writeFileSync(join(small, "fill"), Buffer.alloc(60 * 1024));
      const file = join(small, "out");
      // Node by itself keeps what the first write took and says nothing
      let fd = openSync(file, "w");
      const plain = writer(50_000, fd, false);
      closeSync(fd);
      expect(plain.status).toBe(0);
      expect(statSync(file).size).toBeLessThan(50_000);
      fd = openSync(file, "w");
      try {
        const r = writer(50_000, fd);
        expect(r.status).toBe(1);
        expect(r.stderr).toBe(
          "tool: cannot write standard output (ENOSPC: no space left on device, write)\n",
        );
      } finally {
        closeSync(fd);
      }
    },
  );
});
