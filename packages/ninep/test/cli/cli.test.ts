// The ninep CLI through main(argv, io): real server, captured output, exit statuses.

import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliIO, main } from "../../src/cli/main.js";

class Capture extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    cb();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString();
  }
}

async function run(
  argv: string[],
  stdin = "",
  env: CliIO["env"] = { USER: "root" },
): Promise<{ status: number; out: string; err: string; raw: Buffer }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const io: CliIO = { stdout, stderr, stdin: Readable.from([Buffer.from(stdin)]), env };
  const status = await main(argv, io);
  return { status, out: stdout.text, err: stderr.text, raw: Buffer.concat(stdout.chunks) };
}

describe("ninep CLI", () => {
  let dir: string;
  let addr: string;
  const stop = new AbortController();
  let serving: Promise<number>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "ninep-cli-"));
    await writeFile(join(dir, "hello.txt"), "hello\n");
    execFileSync("mkfifo", ["-m", "644", join(dir, "fifo")]);
    const out = new Capture();
    const err = new Capture();
    serving = main(["serve", dir, "--listen", "tcp!127.0.0.1!0"], {
      stdout: out,
      stderr: err,
      stdin: Readable.from([]),
      env: {},
      signal: stop.signal,
    });
    for (const end = Date.now() + 20_000; !out.text.includes("serving") && Date.now() < end; )
      await new Promise((r) => setTimeout(r, 10));
    const m = /on (tcp!127\.0\.0\.1!\d+)/.exec(out.text);
    if (!m) throw new Error(`serve did not start: ${out.text} ${err.text}`);
    addr = m[1] as string;
  });

  afterAll(async () => {
    stop.abort();
    expect(await serving).toBe(0);
    await rm(dir, { recursive: true, force: true });
  });

  for (const version of ["9P2000", "9P2000.u", "9P2000.L"]) {
    it(`write, cat, ls, stat, mkdir and rm in ${version}`, async () => {
      const v = ["--version", version];
      const w = await run(["write", addr, `/w-${version}.txt`, ...v], "some data\n");
      expect(w.err).toBe("");
      expect(w.status).toBe(0);
      expect(await readFile(join(dir, `w-${version}.txt`), "utf8")).toBe("some data\n");
      const cat = await run(["cat", addr, `/w-${version}.txt`, ...v, "--msize", "4096"]);
      expect(cat).toMatchObject({ status: 0, out: "some data\n" });
      expect((await run(["mkdir", addr, `sub-${version}`, ...v])).status).toBe(0);
      const ls = await run(["ls", addr, "/", ...v]);
      expect(ls.status).toBe(0);
      expect(ls.out.split("\n")).toEqual(
        expect.arrayContaining(["hello.txt", `sub-${version}/`, `w-${version}.txt`]),
      );
      const ll = await run(["ls", "-l", addr, "/hello.txt", ...v]);
      expect(ll.out).toMatch(/^-rw-r--r-- .* 6 .* hello\.txt\n$/);
      if (version !== "9P2000") {
        // 9P2000 has no mode bit for a FIFO (the passthrough shows it as a file there).
        const fifo = await run(["ls", "-l", addr, "/fifo", ...v]);
        expect(fifo.out).toMatch(/^prw-r--r-- .* fifo\n$/);
      }
      const st = await run(["stat", addr, "hello.txt", ...v]);
      expect(st.out).toMatch(/^name +hello\.txt$/m);
      expect(st.out).toMatch(/^length +6$/m);
      expect((await run(["rm", addr, `sub-${version}`, ...v])).status).toBe(0);
      expect((await run(["rm", addr, `w-${version}.txt`, ...v])).status).toBe(0);
    });
  }

  it("cat of a large file streams every byte", async () => {
    const big = Buffer.alloc(300_000, 7);
    big.write("start");
    await writeFile(join(dir, "big"), big);
    const r = await run(["cat", addr, "big", "--msize", "8216"]);
    expect(r.status).toBe(0);
    expect(r.raw.equals(big)).toBe(true);
  });

  it("names the address and the path when a file is missing (exit 1)", async () => {
    const r = await run(["cat", addr, "/nope"]);
    expect(r.status).toBe(1);
    expect(r.err).toBe(`ninep cat ${addr} /nope: file not found\n`);
  });

  it("names the address when the connection is refused (exit 1)", async () => {
    const r = await run(["ls", "127.0.0.1:1", "/"]);
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/^ninep ls 127\.0\.0\.1:1 \/: cannot connect to tcp!127\.0\.0\.1!1: ECONNREFUSED/);
  });

  it("--timeout bounds a server that accepts and never answers Tversion (exit 1)", async () => {
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const started = Date.now();
      const r = await run(["ls", `127.0.0.1:${port}`, "/", "--timeout", "300"]);
      expect(r.status).toBe(1);
      expect(r.err).toMatch(/version negotiation with .* timed out after 300 ms/);
      expect(Date.now() - started).toBeLessThan(8000); // not the 10 s default
    } finally {
      silent.close();
    }
  });

  it("usage errors exit 2 with one line on stderr that names the mistake and the help", async () => {
    const cases: Array<[string[], string]> = [
      [["frob"], 'ninep: unknown verb "frob" (see ninep --help)'],
      [["--bogus"], "ninep: unknown option --bogus (see ninep --help)"],
      [["ls"], "ninep ls: missing ADDR and PATH (see ninep ls --help)"],
      [["cat", addr], "ninep cat: missing PATH (see ninep cat --help)"],
      [
        ["cat", addr, "/x", "/y"],
        'ninep cat: unexpected argument "/y": cat takes ADDR and PATH (see ninep cat --help)',
      ],
      [["cat", addr, "/x", "--bogus"], "ninep cat: unknown option --bogus (see ninep cat --help)"],
      [["ls", addr, "/", "-lz"], "ninep ls: unknown option -z (see ninep ls --help)"],
      [["cat", addr, "/x", "--msize"], "ninep cat: option --msize needs a value (see ninep cat --help)"],
      [["cat", addr, "/x", "--trace=yes"], "ninep cat: option --trace takes no value (see ninep cat --help)"],
      [["ls", addr, "/", "--long=yes"], "ninep ls: option -l/--long takes no value (see ninep ls --help)"],
      [
        ["cat", addr, "/x", "--msize", "big"],
        'ninep cat: --msize wants a number, got "big" (see ninep cat --help)',
      ],
      [
        ["cat", addr, "/x", "--version", "9P1999"],
        'ninep cat: unknown 9P version "9P1999" (use 9P2000, 9P2000.u, 9P2000.L) (see ninep cat --help)',
      ],
      [["serve"], "ninep serve: missing DIR (see ninep serve --help)"],
      [["serve", dir], "ninep serve: --listen ADDR is required (see ninep serve --help)"],
      [["serve", dir, "--bogus"], "ninep serve: unknown option --bogus (see ninep serve --help)"],
    ];
    for (const [argv, message] of cases) {
      const r = await run(argv);
      expect({ argv, status: r.status, err: r.err, out: r.out }).toEqual({
        argv,
        status: 2,
        err: `${message}\n`,
        out: "",
      });
    }
    // No verb at all: the verbs, on stderr.
    const bare = await run([]);
    expect(bare.status).toBe(2);
    expect(bare.err).toMatch(/^usage: ninep VERB/);
    expect((await run(["cat", "host:99999", "/x"])).status).toBe(1);
  });

  it("attaches as the effective user when USER is unset (systemd, cron, env -i)", async () => {
    // A file only its owner may read: attached as nobody (the old default), it was refused.
    await writeFile(join(dir, "owner-only"), "mine\n", { mode: 0o600 });
    const me = userInfo().username;
    for (const env of [{}, { USER: "" }]) {
      const r = await run(["cat", addr, "/owner-only", "--trace"], "", env);
      expect(r.err).toContain(`Tattach tag 0 fid 0 afid 4294967295 uname "${me}"`);
      expect({ status: r.status, out: r.out }).toEqual({ status: 0, out: "mine\n" });
    }
    // $USER, when set, still wins; and --uname over both.
    expect((await run(["cat", addr, "/owner-only", "--trace"], "", { USER: "someone" })).err).toContain(
      'uname "someone"',
    );
    const asNobody = await run(["cat", addr, "/owner-only", "--uname", "nobody", "--trace"], "", {});
    expect(asNobody.err).toContain('uname "nobody"');
    if (process.getuid?.() === 0) expect(asNobody.status).toBe(1); // the server acts as that user
  });

  it("--help prints usage for every verb and exits 0", async () => {
    for (const verb of ["serve", "ls", "cat", "write", "stat", "rm", "mkdir"]) {
      const r = await run([verb, "--help"]);
      expect(r.status).toBe(0);
      expect(r.out).toContain(`usage: ninep ${verb}`);
    }
    expect((await run(["--help"])).status).toBe(0);
  });

  it("--version and -V before a verb print the package's version and exit 0", async () => {
    const { version } = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8"));
    for (const flag of ["--version", "-V"])
      expect(await run([flag])).toMatchObject({ status: 0, out: `ninep ${version}\n`, err: "" });
    expect((await run(["--help"])).out).toContain("--version");
    // After a verb --version still names the 9P version.
    const r = await run(["ls", addr, "/", "--version", "9P2000.L"]);
    expect(r).toMatchObject({ status: 0, out: expect.stringContaining("hello.txt") });
  });

  it("serve --ro refuses writes", async () => {
    const out = new Capture();
    const ac = new AbortController();
    const p = main(["serve", dir, "--ro", "--listen", "127.0.0.1:0"], {
      stdout: out,
      stderr: new Capture(),
      stdin: Readable.from([]),
      env: {},
      signal: ac.signal,
    });
    for (const end = Date.now() + 20_000; !out.text.includes("serving") && Date.now() < end; )
      await new Promise((r) => setTimeout(r, 10));
    const ro = /on (tcp!127\.0\.0\.1!\d+)/.exec(out.text)?.[1] as string;
    expect(out.text).toContain("(read-only)");
    const w = await run(["write", ro, "/x.txt"], "nope");
    expect(w.status).toBe(1);
    expect(w.err).toMatch(/read-only file system|permission denied/);
    expect((await run(["cat", ro, "hello.txt"])).out).toBe("hello\n");
    ac.abort();
    expect(await p).toBe(0);
  });
});
