// The console runner behind `bootcfg qemu --run` and the boot tests, on plain shell children.
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { qemuArgs, runUntil } from "../src/qemu.js";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("runUntil", () => {
  it("resolves on the marker line and kills the child by its pid", async () => {
    const r = await runUntil(["sh", "-c", "echo $$; echo 'MARK here'; exec sleep 30"], /^MARK/, 10_000);
    expect(r).toMatchObject({ ok: true, reason: "marker", match: "MARK here" });
    const pid = Number(r.lines[0]);
    expect(pid).toBeGreaterThan(1);
    for (const end = Date.now() + 10_000; alive(pid) && Date.now() < end; )
      await new Promise((res) => setTimeout(res, 20));
    expect(alive(pid)).toBe(false);
  });
  it("times out, killing the child", async () => {
    // Long enough for the shell to start and print on a busy machine; far shorter than the sleep.
    const r = await runUntil(["sh", "-c", "echo start; exec sleep 30"], /never/, 3000);
    expect(r).toMatchObject({ ok: false, reason: "timeout", lines: ["start"] });
  });
  it("reports an exit before the marker with the exit code", async () => {
    const r = await runUntil(["sh", "-c", "echo partial; exit 3"], /never/, 60_000);
    expect(r).toMatchObject({ ok: false, reason: "exit", exitCode: 3 });
  });
  it("reads a -serial stdio console from a file of its own, apart from stderr, and removes it", async () => {
    // A stand-in for QEMU: writes the console to the file named by `-serial file:PATH`, half a
    // line, then a warning on stderr, then the rest. Through one pipe the warning split the line.
    const script = [
      'f=$(printf %s "$2" | sed "s/^file://"); echo "$f"',
      'printf "BIOS-e" >> "$f"; sleep 0.1',
      'echo "qemu: warning: something" >&2; sleep 0.1',
      'printf "820: usable\\nMARK\\n" >> "$f"; exec sleep 30',
    ].join("; ");
    const r = await runUntil(["sh", "-c", script, "sh", "-serial", "stdio"], /^MARK/, 30_000);
    expect(r).toMatchObject({ ok: true, reason: "marker" });
    const [file, ...rest] = r.lines;
    expect(file).toMatch(/bootcfg-serial-.*\/console$/);
    // The warning comes whole, if it came before the marker was seen: pipe and file are read
    // apart, so a stalled loop may see the marker first.
    const serialLines = rest.filter((l) => l !== "qemu: warning: something");
    expect(serialLines.sort()).toEqual(["BIOS-e820: usable", "MARK"]);
    expect(rest.length - serialLines.length).toBeLessThanOrEqual(1);
    expect(existsSync(file!)).toBe(false);
  });
  it("rejects when the program does not exist", async () => {
    await expect(runUntil(["/nonexistent/qemu"], /x/, 60_000)).rejects.toThrow(/\/nonexistent\/qemu/);
  });
});

describe("qemuArgs", () => {
  it("never configures a network or a display, picks the emulator by arch", () => {
    const x = qemuArgs({ arch: "x86_64", kernel: "k", initrd: "i", append: "console=ttyS0" });
    expect(x.join(" ")).toBe(
      "qemu-system-x86_64 -machine q35 -accel tcg -m 512 -smp 1 -display none -no-reboot -nic none -serial stdio -kernel k -initrd i -append console=ttyS0",
    );
    expect(qemuArgs({ arch: "arm64" }).slice(0, 5)).toEqual([
      "qemu-system-aarch64",
      "-machine",
      "virt",
      "-cpu",
      "cortex-a57",
    ]);
  });
});
