import { execFileSync } from "node:child_process";
import { constants, createPublicKey, generateKeyPairSync, publicEncrypt, sign, verify } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encryptPasskey, parsePublicKey, toOpenSshLine } from "@clustermatic/xcpufs";
import { fc, test as fcTest } from "@fast-check/vitest";
import { afterAll, describe, expect, it } from "vitest";
import { parseCommandLine, UsageError } from "../src/cli/args.js";
import { readStatfs } from "../src/cli/common.js";
import {
  ed25519PasskeyDecrypt,
  KeyError,
  loadPrivateKey,
  parsePrivateKey,
  rsaPkcs1Decrypt,
} from "../src/keys.js";
import { nodesFromStatfs, parseStatfsState, xcpuNodes } from "../src/nodes.js";
import { OutputMux } from "../src/output.js";
import { decodeXcpuEnv, encodeEnv, quote, quoteArgs, tokenize } from "../src/quote.js";
import { fanout, sysrootFor, treeWidth } from "../src/staging.js";
import { aggregateExit, decodeWaitStatus, summarize } from "../src/status.js";

const sshKeygen = ["/usr/bin/ssh-keygen", "/bin/ssh-keygen"].some((p) => existsSync(p));
if (!sshKeygen) console.log("key tests skipped: ssh-keygen (openssh-client) is not installed");
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("quoting", () => {
  it("matches the documented examples", () => {
    expect(quoteArgs(["ls", "-l", "/var"])).toBe("ls -l /var");
    expect(quoteArgs(["echo", "it's here"])).toBe("echo 'it''s here'");
    expect(
      encodeEnv([
        ["PATH", "/bin"],
        ["MSG", "hello world"],
      ]),
    ).toBe("PATH=/bin\n'MSG=hello world'\n");
    expect(tokenize("'a'b")).toEqual(["a", "b"]);
    expect(tokenize("  x\t'y\nz' ")).toEqual(["x", "y\nz"]);
    expect(() => tokenize("'open")).toThrow(/unterminated/);
  });
  it("keeps empty arguments and newlines", () => {
    expect(quote("")).toBe("''");
    expect(tokenize(quoteArgs(["a", "", "b\nc"]))).toEqual(["a", "", "b\nc"]);
  });
  fcTest.prop([fc.array(fc.string())])("tokenize(quoteArgs(x)) == x", (tokens) => {
    expect(tokenize(quoteArgs(tokens))).toEqual(tokens);
  });
  it("decodes XCPUENV escapes", () => {
    expect(decodeXcpuEnv("A=1\\nB=2\\x")).toBe("A=1\nB=2");
  });
});

describe("fan-out rule", () => {
  it("10 targets, K=3", () => {
    const r = fanout([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3);
    expect(r).toEqual([
      { child: 0, delegated: [1, 2, 3] },
      { child: 4, delegated: [5, 6, 7] },
      { child: 8, delegated: [9] },
    ]);
  });
  it("91 targets, K=8", () => {
    const t = Array.from({ length: 91 }, (_, i) => i);
    const r = fanout(t, 8);
    expect(r.map((x) => x.child)).toEqual([0, 12, 24, 36, 48, 60, 72, 84]);
    expect(r.at(-1)!.delegated.length).toBe(6);
  });
  fcTest.prop([fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 40 })])(
    "covers every target exactly once with min(K,S) children",
    (s, k) => {
      const t = Array.from({ length: s }, (_, i) => i);
      const r = fanout(t, k);
      const all = r.flatMap((x) => [x.child, ...x.delegated]).sort((a, b) => a - b);
      expect(all).toEqual(t);
      if (k > 0) expect(r.length).toBe(Math.min(k, s));
    },
  );
  it("-n . is about sqrt(N)", () => {
    expect(treeWidth(".", 16)).toBe(4);
    expect(treeWidth("100", 16)).toBe(4);
    expect(treeWidth("0", 16)).toBe(0);
    expect(() => treeWidth("x", 4)).toThrow(/bad -n/);
  });
});

describe("sysroot", () => {
  it("trims the arch newline and falls back to the local tree for the local arch", () => {
    const base = mkdtempSync(join(tmpdir(), "xrx-sysroot-"));
    dirs.push(base);
    execFileSync("mkdir", ["-p", join(base, "Linux/aarch64")]);
    expect(sysrootFor("/Linux/aarch64\n", base, "/Linux/x86_64")).toBe(join(base, "Linux/aarch64"));
    expect(sysrootFor("/Linux/x86_64\n", base, "/Linux/x86_64")).toBe("");
    expect(() => sysrootFor("/Linux/ppc\n", base, "/Linux/x86_64")).toThrow(
      "cannot find system root for architecture /Linux/ppc",
    );
  });
});

describe("command line", () => {
  const spec = {
    p: { type: "boolean", short: "p" },
    L: { type: "boolean", short: "L" },
    n: { type: "string", short: "n" },
    k: { type: "string", short: "k" },
    timeout: { type: "string" },
  } as const;
  it("stops at the first non-option and takes clustered values", () => {
    const r = parseCommandLine(["-pLn8", "-k", "key", "--timeout=2", "n[1-2]", "ls", "-l"], spec);
    expect(r.values).toMatchObject({ p: true, L: true, n: "8", k: "key", timeout: "2" });
    expect(r.positionals).toEqual(["n[1-2]", "ls", "-l"]);
    expect(parseCommandLine(["-n", ".", "--", "-x"], spec).positionals).toEqual(["-x"]);
  });
  it("rejects unknown options as usage errors", () => {
    expect(() => parseCommandLine(["-z", "n1", "ls"], spec)).toThrow(UsageError);
  });
  it("with permute takes options after the positionals too, until --", () => {
    const r = parseCommandLine(["n1", "-p", "n2", "-k", "key", "--timeout", "3", "-n8"], spec, {
      permute: true,
    });
    expect(r.values).toMatchObject({ p: true, k: "key", timeout: "3", n: "8" });
    expect(r.positionals).toEqual(["n1", "n2"]);
    expect(parseCommandLine(["n1", "--", "-p"], spec, { permute: true }).positionals).toEqual(["n1", "-p"]);
    expect(() => parseCommandLine(["n1", "-k"], spec, { permute: true })).toThrow(/-k needs a value/);
    expect(() => parseCommandLine(["n1", "-z"], spec, { permute: true })).toThrow(UsageError);
  });
});

describe("--statfs source", () => {
  it("reads a plain name of a file in the current directory as a table file, not a host", async () => {
    const name = `statfs-state-${process.pid}`;
    writeFileSync(name, "n1\ttcp!127.0.0.1!6667\t/Linux/x86_64\tup\t0\n");
    try {
      expect(await readStatfs(name)).toContain("n1\ttcp!127.0.0.1!6667");
    } finally {
      rmSync(name, { force: true });
    }
  });
});

describe("output multiplexing", () => {
  it("prefixes whole lines and flushes a partial last line at the end", () => {
    const out: string[] = [];
    const sink = { write: (c: string | Uint8Array) => out.push(Buffer.from(c).toString()) };
    const mux = new OutputMux(sink, sink, { prefix: true });
    const a = mux.streams("n1");
    const b = mux.streams("n2");
    a.stdout.write(Buffer.from("hel"));
    b.stdout.write(Buffer.from("x\ny"));
    a.stdout.write(Buffer.from("lo\nwor"));
    a.stdout.end();
    b.stdout.end();
    expect(out).toEqual(["n2: x\n", "n1: hello\n", "n1: wor\n", "n2: y\n"]);
  });
  it("-L adds no byte: a line longer than the limit goes on in pieces, a last partial line stays unterminated", () => {
    const out: string[] = [];
    const sink = { write: (c: string | Uint8Array) => out.push(Buffer.from(c).toString()) };
    const mux = new OutputMux(sink, sink, { lines: true, maxLine: 8 });
    const a = mux.streams("n1");
    const b = mux.streams("n2");
    a.stdout.write(Buffer.from("0123456789"));
    b.stdout.write(Buffer.from("short\nend"));
    a.stdout.write(Buffer.from("abc\nde"));
    a.stdout.end();
    b.stdout.end();
    expect(out).toEqual(["0123456789", "short\n", "abc\n", "de", "end"]);
    expect(out.join("").length).toBe("0123456789abc\nde".length + "short\nend".length);
  });
  it("-p ends each piece of a line longer than the limit as a prefixed line of its own", () => {
    const out: string[] = [];
    const sink = { write: (c: string | Uint8Array) => out.push(Buffer.from(c).toString()) };
    const s = new OutputMux(sink, sink, { prefix: true, maxLine: 8 }).streams("n1");
    s.stdout.write(Buffer.from("0123456789"));
    s.stdout.write(Buffer.from("abc\n"));
    expect(out).toEqual(["n1: 0123456789\n", "n1: abc\n"]);
  });
  it("passes chunks through without -L", () => {
    const out: string[] = [];
    const sink = { write: (c: string | Uint8Array) => out.push(Buffer.from(c).toString()) };
    const s = new OutputMux(sink, sink).streams("n1");
    s.stdout.write(Buffer.from("ab"));
    s.stdout.end();
    expect(out).toEqual(["ab"]);
  });
});

describe("exit status", () => {
  it("decodes wait words and aggregates", () => {
    expect(decodeWaitStatus(256)).toEqual({ raw: 256, code: 1 });
    expect(decodeWaitStatus(9)).toMatchObject({ signal: 9 });
    const ok = (node: string, raw: number) => ({ node, status: decodeWaitStatus(raw) });
    expect(aggregateExit([ok("a", 768), ok("b", 768)])).toBe(3);
    expect(aggregateExit([ok("a", 0), ok("b", 512)])).toBe(2);
    expect(aggregateExit([ok("a", 0), { node: "b", error: "connection lost" }])).toBe(1);
    expect(aggregateExit([ok("a", 0), ok("b", 9)])).toBe(137);
    expect(summarize([ok("a", 0), { node: "b", error: "gone" }])).toEqual([
      "xrx: b: error: gone",
      "xrx: 1 of 2 nodes exited 0",
    ]);
    expect(summarize([ok("a", 0)])).toEqual([]);
    // An error printed as it happened is not repeated for a single node; with more it is gathered.
    expect(summarize([{ node: "b", error: "gone", announced: true }])).toEqual([
      "xrx: 0 of 1 nodes exited 0",
    ]);
    expect(summarize([ok("a", 0), { node: "b", error: "gone", announced: true }])).toEqual([
      "xrx: b: error: gone",
      "xrx: 1 of 2 nodes exited 0",
    ]);
  });
});

describe("statfs table and node lists", () => {
  it("reads rows, including the original's arch with a newline", () => {
    const rows = parseStatfsState(
      "n1\ttcp!10.0.0.1!6667\t/Linux/x86_64\n\tup\t2\nn2\ttcp!10.0.0.2!7000\t/Linux/x86_64\tdown\t0\n",
    );
    expect(rows).toEqual([
      { name: "n1", address: "tcp!10.0.0.1!6667", arch: "/Linux/x86_64", status: "up", jobs: 2 },
      { name: "n2", address: "tcp!10.0.0.2!7000", arch: "/Linux/x86_64", status: "down", jobs: 0 },
    ]);
    expect(nodesFromStatfs(rows).map((n) => [n.name, n.host, n.port])).toEqual([["n1", "10.0.0.1", 6667]]);
    expect(nodesFromStatfs(rows, true)).toHaveLength(2);
  });
  it("expands node lists with the xcpufs port", () => {
    expect(xcpuNodes("n[01-03],h!7000").map((n) => [n.name, n.port])).toEqual([
      ["n01", 6667],
      ["n02", 6667],
      ["n03", 6667],
      ["h!7000", 7000],
    ]);
  });
});

describe("keys", () => {
  const dir = mkdtempSync(join(tmpdir(), "xrx-keys-"));
  dirs.push(dir);
  const challenge = Buffer.from("0123456789abcdef");
  it.skipIf(!sshKeygen)("reads OpenSSH Ed25519 and RSA keys made by ssh-keygen", () => {
    for (const [t, bits] of [
      ["ed25519", []],
      ["rsa", ["-b", "2048"]],
    ] as const) {
      const f = join(dir, `id_${t}`);
      execFileSync("ssh-keygen", ["-q", "-t", t, ...bits, "-N", "", "-C", "c", "-f", f]);
      const k = loadPrivateKey(f);
      expect(k.type).toBe(t);
      const pubLine = readFileSync(`${f}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
      expect(k.publicLine).toBe(pubLine);
      const sig = sign(t === "rsa" ? "sha1" : null, challenge, k.key);
      expect(verify(t === "rsa" ? "sha1" : null, challenge, createPublicKey(k.key), sig)).toBe(true);
    }
  });
  it("reads PEM RSA keys and decrypts PKCS#1 v1.5 passkeys", () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
    const pem = privateKey.export({ type: "pkcs1", format: "pem" }) as string;
    const k = parsePrivateKey(pem, "pem");
    const ct = publicEncrypt(
      { key: createPublicKey(k.key), padding: constants.RSA_PKCS1_PADDING },
      Buffer.from("0123456789abcdef0123456789abcdef"),
    );
    expect(rsaPkcs1Decrypt(k.key, ct).toString()).toBe("0123456789abcdef0123456789abcdef");
  });
  it("opens passkeys xcpufs sealed for an Ed25519 key, and refuses a tampered or foreign one", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const passkey = "0123456789abcdef0123456789abcdef";
    const sealed = encryptPasskey(parsePublicKey(toOpenSshLine(publicKey)), passkey);
    expect(ed25519PasskeyDecrypt(privateKey, sealed).toString()).toBe(passkey);
    const tampered = Buffer.from(sealed);
    tampered[40] = (tampered[40] ?? 0) ^ 1;
    expect(() => ed25519PasskeyDecrypt(privateKey, tampered)).toThrow();
    expect(() => ed25519PasskeyDecrypt(generateKeyPairSync("ed25519").privateKey, sealed)).toThrow();
    expect(() => ed25519PasskeyDecrypt(privateKey, sealed.subarray(0, 79))).toThrow(/expected 80/);
  });
  it.skipIf(!sshKeygen)("refuses encrypted and bogus keys with the file name", () => {
    const f = join(dir, "enc");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "secret", "-f", f]);
    expect(() => loadPrivateKey(f)).toThrow(/passphrase/);
    writeFileSync(join(dir, "junk"), "hello");
    expect(() => loadPrivateKey(join(dir, "junk"))).toThrow(KeyError);
    expect(() => loadPrivateKey(join(dir, "missing"))).toThrow(/missing: cannot read key/);
  });
});
