// Signal names and numbers as the XCPU ctl files accept them (fixed Linux table).

export const SIGNALS: Readonly<Record<string, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGIOT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCLD: 17,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGPOLL: 29,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
  SIGUNUSED: 31,
};

/**
 * Parse a signal given as a decimal number or a case-sensitive `SIG…` name.
 * Returns undefined for anything else (the caller answers `unsupported signal`).
 * Unlike the original, numbers are range checked (0–64).
 */
export function parseSignal(text: string): number | undefined {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return n <= 64 ? n : undefined;
  }
  return Object.hasOwn(SIGNALS, text) ? SIGNALS[text] : undefined;
}

const BY_NUMBER = new Map<number, string>();
for (const [name, num] of Object.entries(SIGNALS)) if (!BY_NUMBER.has(num)) BY_NUMBER.set(num, name);

/** Signal number for a Node signal name such as "SIGTERM" (Node reports names on exit). */
export function signalNumber(name: string): number {
  const n = SIGNALS[name];
  if (n !== undefined) return n;
  const m = /^SIGRTMIN(?:\+(\d+))?$/.exec(name);
  if (m) return 34 + Number(m[1] ?? 0);
  return 0;
}

/** Raw `wait(2)` status word: exit code × 256, or the signal number. */
export function waitStatus(code: number | null, signal: string | null): number {
  if (signal) return signalNumber(signal);
  return ((code ?? 0) & 0xff) << 8;
}
