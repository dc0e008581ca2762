import { describe, expect, it } from "vitest";
import { parseSignal, signalNumber, waitStatus } from "./signals.js";

describe("signals", () => {
  it("parses names and numbers", () => {
    expect(parseSignal("SIGTERM")).toBe(15);
    expect(parseSignal("9")).toBe(9);
    expect(parseSignal("SIGIOT")).toBe(6);
    expect(parseSignal("TERM")).toBeUndefined();
    expect(parseSignal("sigterm")).toBeUndefined();
    expect(parseSignal("99")).toBeUndefined();
    expect(parseSignal("toString")).toBeUndefined();
  });
  it("formats wait statuses like wait(2)", () => {
    expect(waitStatus(0, null)).toBe(0);
    expect(waitStatus(1, null)).toBe(256);
    expect(waitStatus(3, null)).toBe(768);
    expect(waitStatus(null, "SIGKILL")).toBe(9);
    expect(signalNumber("SIGUSR1")).toBe(10);
  });
});
