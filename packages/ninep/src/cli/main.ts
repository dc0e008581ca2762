// The `ninep` command: serve a directory over 9P, and small client verbs (ls, cat, write, stat,
// rm, mkdir) for poking at any 9P server.

import { userInfo } from "node:os";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { argsMistake } from "../args.js";
import { mount } from "../client/index.js";
import { Dialect, DMDEVICE, DMDIR, DMNAMEDPIPE, DMSOCKET, DMSYMLINK } from "../codec/index.js";
import type { Stat } from "../codec/types.js";
import { NinepError } from "../errors.js";
import { PACKAGE_VERSION } from "../version.js";

/** What main() talks to; tests pass their own. */
export interface CliIO {
  stdout: Pick<Writable, "write"> & Partial<Writable>;
  stderr: Pick<Writable, "write">;
  stdin: Readable;
  env: Record<string, string | undefined>;
  /** Stops `serve` (the binary wires SIGINT/SIGTERM to it). */
  signal?: AbortSignal;
}

/**
 * Thrown to end the command with an exit status. `help` (a usage error, status 2) names the help
 * that explains the mistake: the message ends with "(see ninep VERB --help)".
 */
export class ExitError extends Error {
  readonly status: number;
  readonly help: string | undefined;
  constructor(status: number, message: string, help?: string) {
    super(message);
    this.status = status;
    this.help = help;
  }
}

/** The user a client verb attaches as without --uname: $USER, else the effective user's name. */
export function defaultUname(env: Record<string, string | undefined>): string {
  if (env.USER) return env.USER;
  try {
    return userInfo().username;
  } catch {
    return "nobody"; // a uid with no passwd entry
  }
}

const CLIENT_OPTIONS = {
  version: { type: "string" },
  msize: { type: "string" },
  uname: { type: "string" },
  aname: { type: "string" },
  trace: { type: "boolean" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const CLIENT_FLAGS = `Options:
  --version V    9P2000, 9P2000.u (default) or 9P2000.L
  --msize N      largest message to offer (default 65560)
  --uname U      user name to attach as (default $USER; unset or empty: the name of the
                 user running ninep, from the password database; nobody if it has none)
  --aname A      tree to attach (default "")
  --timeout MS   time limit for connecting and for each request (default: 10 s to
                 connect, none per request)
  --trace        print every 9P message to stderr
ADDR is tcp!host!port, host:port, [::1]:port, unix!/path or /path (port 564 by default).`;

interface Verb {
  usage: string;
  summary: string;
  extra?: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>;
  positionals: number;
  run(ctx: VerbContext): Promise<number>;
}

interface VerbContext {
  io: CliIO;
  positionals: string[];
  values: Record<string, string | boolean | string[] | undefined>;
}

const VERBS: Record<string, Verb> = {
  serve: {
    usage:
      "ninep serve DIR --listen ADDR [--listen ADDR...] [--ro] [--trace] [--dialects LIST] [--msize N] [--squash USER] [--max-fids N] [--handshake-timeout SEC]",
    summary: "export the directory DIR over 9P",
    extra: {
      listen: { type: "string", multiple: true },
      ro: { type: "boolean" },
      trace: { type: "boolean" },
      dialects: { type: "string" },
      msize: { type: "string" },
      squash: { type: "string" },
      "max-fids": { type: "string" },
      "handshake-timeout": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    positionals: 1,
    run: serve,
  },
  ls: {
    usage: "ninep ls ADDR PATH [-l] [options]",
    summary: "list a directory (or show one file); -l for mode, owner, size and time",
    extra: { long: { type: "boolean", short: "l" } },
    positionals: 2,
    run: (c) =>
      withFs(c, "ls", async (fs, path) => {
        const st = await fs.stat(path);
        const entries = st.mode & DMDIR ? await fs.readdir(path) : [st];
        entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        for (const e of entries) {
          const suffix = e.mode & DMDIR ? "/" : "";
          c.io.stdout.write(c.values.long ? `${longLine(e)}\n` : `${e.name}${suffix}\n`);
        }
      }),
  },
  cat: {
    usage: "ninep cat ADDR PATH [options]",
    summary: "copy a file to standard output",
    positionals: 2,
    run: (c) =>
      withFs(c, "cat", async (fs, path) => {
        // A directory reads as stat records in 9P2000 and .u (and fails in .L): refused alike.
        const st = await fs.stat(path);
        if (st.mode & DMDIR) throw new ExitError(1, `ninep cat ${c.positionals[0]} ${path}: is a directory`);
        for await (const chunk of fs.createReadStream(path)) {
          if (c.io.stdout.write(chunk) === false && c.io.stdout.once) {
            await new Promise<void>((r) => c.io.stdout.once?.("drain", () => r()));
          }
        }
      }),
  },
  write: {
    usage: "ninep write ADDR PATH [options] < data",
    summary: "write standard input to a file (created, or truncated if it exists)",
    positionals: 2,
    run: (c) => withFs(c, "write", (fs, path) => pipeline(c.io.stdin, fs.createWriteStream(path))),
  },
  stat: {
    usage: "ninep stat ADDR PATH [options]",
    summary: "show a file's stat entry",
    positionals: 2,
    run: (c) =>
      withFs(c, "stat", async (fs, path) => {
        const st = await fs.stat(path);
        const q = st.qid;
        const lines: Array<[string, string]> = [
          ["name", st.name],
          ["qid", `path ${q.path} vers ${q.version} type 0x${q.type.toString(16).padStart(2, "0")}`],
          ["mode", `${modeString(st.mode)} (0x${(st.mode >>> 0).toString(16).padStart(8, "0")})`],
          ["length", String(st.length)],
          ["atime", isoTime(st.atime)],
          ["mtime", isoTime(st.mtime)],
          ["uid", st.uid],
          ["gid", st.gid],
          ["muid", st.muid],
        ];
        if (st.extension) lines.push(["extension", st.extension]);
        for (const [k, v] of lines) c.io.stdout.write(`${k.padEnd(10)}${v}\n`);
      }),
  },
  rm: {
    usage: "ninep rm ADDR PATH [options]",
    summary: "remove a file or an empty directory",
    positionals: 2,
    run: (c) => withFs(c, "rm", (fs, path) => fs.remove(path)),
  },
  mkdir: {
    usage: "ninep mkdir ADDR PATH [options]",
    summary: "make a directory (mode 0755)",
    positionals: 2,
    run: (c) => withFs(c, "mkdir", (fs, path) => fs.mkdir(path, 0o755)),
  },
};

function mainUsage(): string {
  const lines = ["usage: ninep VERB ...", "", "Verbs:"];
  for (const [name, v] of Object.entries(VERBS)) lines.push(`  ${name.padEnd(7)}${v.summary}`);
  lines.push("", "Run 'ninep VERB --help' for a verb's options; 'ninep --version' (-V) prints the version.");
  return lines.join("\n");
}

function verbUsage(name: string): string {
  const v = VERBS[name] as Verb;
  if (name === "serve") {
    return `usage: ${v.usage}
Export DIR over 9P2000, 9P2000.u and 9P2000.L until interrupted.
  --listen ADDR   where to listen (repeatable): tcp!host!port, host:port, unix!/path
  --ro            refuse every change (read-only export)
  --dialects L    comma-separated subset of 9P2000,9P2000.u,9P2000.L (default all)
  --msize N       largest msize to agree to (default 1048600)
  --squash USER   every client acts as USER (name or uid), whoever it says it is (when run as
                  root; without it an attach's uid is taken on trust)
  --max-fids N    fids one connection may hold (default ${SERVE_MAX_FIDS}; a Linux mount with
                  cache=loose keeps a few per cached file)
  --handshake-timeout SEC
                  close a connection that has not attached within SEC seconds (default 30;
                  0: never, for a VM whose forwarded connection opens long before it mounts)
  --trace         print every 9P message to stderr`;
  }
  return `usage: ${v.usage}\n${v.summary}\n${CLIENT_FLAGS}`;
}

/** Runs the CLI; resolves with the exit status (0 ok, 1 failure, 2 usage error). */
export async function main(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    // no verb at all: the verbs are the answer, on stderr as for every usage error
    (name === undefined ? io.stderr : io.stdout).write(`${mainUsage()}\n`);
    return name === undefined ? 2 : 0;
  }
  // Only before a verb: after one, --version is the 9P version to speak.
  if (name === "--version" || name === "-V") {
    io.stdout.write(`ninep ${PACKAGE_VERSION}\n`);
    return 0;
  }
  const verb = VERBS[name];
  if (!verb) {
    const what = name.startsWith("-") ? `unknown option ${name}` : `unknown verb "${name}"`;
    io.stderr.write(`ninep: ${what} (see ninep --help)\n`);
    return 2;
  }
  try {
    let parsed: ReturnType<typeof parseArgs>;
    try {
      parsed = parseArgs({
        args: rest,
        options: name === "serve" ? verb.extra : { ...CLIENT_OPTIONS, ...verb.extra },
        allowPositionals: true,
        strict: true,
      });
    } catch (err) {
      throw new ExitError(2, `ninep ${name}: ${argsMistake(err)}`, name);
    }
    if (parsed.values.help) {
      io.stdout.write(`${verbUsage(name)}\n`);
      return 0;
    }
    const got = parsed.positionals.length;
    if (got !== verb.positionals) {
      const names = verb.positionals === 1 ? ["DIR"] : ["ADDR", "PATH"];
      const what =
        got > verb.positionals
          ? `unexpected argument "${parsed.positionals[verb.positionals]}": ${name} takes ${names.join(" and ")}`
          : `missing ${names.slice(got).join(" and ")}`;
      throw new ExitError(2, `ninep ${name}: ${what}`, name);
    }
    return await verb.run({
      io,
      positionals: parsed.positionals,
      values: parsed.values as VerbContext["values"],
    });
  } catch (err) {
    if (err instanceof ExitError) {
      io.stderr.write(`${err.message}${err.help ? ` (see ninep ${err.help} --help)` : ""}\n`);
      return err.status;
    }
    io.stderr.write(`ninep ${name}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

function parseNumber(
  text: string | undefined,
  flag: string,
  verb: string,
  range?: [number, number],
): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text))
    throw new ExitError(2, `ninep ${verb}: --${flag} wants a number, got "${text}"`, verb);
  const n = Number(text);
  if (range && (n < range[0] || n > range[1])) {
    throw new ExitError(
      2,
      `ninep ${verb}: --${flag} wants a number from ${range[0]} to ${range[1]}, got ${text}`,
      verb,
    );
  }
  return n;
}

/** The msize 9P can carry (32 bits) and the least that holds a header and some data. */
const MSIZE_RANGE: [number, number] = [256, 0xffffffff];

function parseDialect(text: string | undefined, verb: string): Dialect | undefined {
  if (text === undefined) return undefined;
  const all = Object.values(Dialect) as string[];
  // Accept Linux's lower-case spellings too (9p2000.L, 9p2000.u).
  const hit = all.find((d) => d.toLowerCase() === text.toLowerCase());
  if (!hit)
    throw new ExitError(2, `ninep ${verb}: unknown 9P version "${text}" (use ${all.join(", ")})`, verb);
  return hit as Dialect;
}

async function withFs(
  c: VerbContext,
  verb: string,
  body: (fs: Awaited<ReturnType<typeof mount>>, path: string) => Promise<unknown>,
): Promise<number> {
  const [addr, path] = c.positionals as [string, string];
  const v = c.values;
  const version = parseDialect(v.version as string | undefined, verb);
  const msize = parseNumber(v.msize as string | undefined, "msize", verb, MSIZE_RANGE);
  const timeoutMs = parseNumber(v.timeout as string | undefined, "timeout", verb);
  const trace = v.trace ? (line: string) => c.io.stderr.write(`${line}\n`) : undefined;
  let fs: Awaited<ReturnType<typeof mount>> | undefined;
  try {
    fs = await mount(addr, {
      version,
      msize,
      timeoutMs,
      // A --timeout bounds the connection and version negotiation too, not only the requests.
      ...(timeoutMs !== undefined ? { connectTimeoutMs: timeoutMs } : {}),
      trace,
      uname: (v.uname as string | undefined) ?? defaultUname(c.io.env),
      aname: (v.aname as string | undefined) ?? "",
    });
    await body(fs, path);
    return 0;
  } catch (err) {
    if (err instanceof ExitError) throw err;
    const msg =
      err instanceof NinepError || (err as { code?: string })?.code === "E9P_ADDRESS"
        ? (err as Error).message
        : String(err);
    throw new ExitError(1, `ninep ${verb} ${addr} ${path}: ${msg}`);
  } finally {
    await fs?.close().catch(() => {});
  }
}

function modeString(mode: number): string {
  const kind =
    mode & DMDIR
      ? "d"
      : mode & DMSYMLINK
        ? "L"
        : mode & DMNAMEDPIPE
          ? "p"
          : mode & DMSOCKET
            ? "s"
            : mode & DMDEVICE
              ? "D"
              : mode & 0x40000000
                ? "a"
                : mode & 0x20000000
                  ? "l"
                  : "-";
  let s = "";
  for (const shift of [6, 3, 0]) {
    const bits = (mode >>> shift) & 7;
    s += `${bits & 4 ? "r" : "-"}${bits & 2 ? "w" : "-"}${bits & 1 ? "x" : "-"}`;
  }
  return `${kind}${s}`;
}

/** Seconds since 1970 as ISO 8601; a time past what a Date holds (±275,000 years) as its number. */
function isoTime(sec: number): string {
  const d = new Date(sec * 1000);
  return Number.isNaN(d.getTime()) ? `${sec} s since 1970` : d.toISOString();
}

function longLine(e: Stat): string {
  const iso = isoTime(e.mtime);
  const when = iso.includes("T") ? iso.replace("T", " ").slice(0, 16) : String(e.mtime);
  return `${modeString(e.mode)} ${e.uid.padEnd(8)} ${e.gid.padEnd(8)} ${String(e.length).padStart(10)} ${when} ${e.name}${e.mode & DMDIR ? "/" : ""}`;
}

/**
 * Fids per connection for `serve`: a kernel mount with cache=loose or mmap keeps a few per cached
 * file, so the library's default (meant for synthetic trees) would run out on a few thousand files.
 */
const SERVE_MAX_FIDS = 65536;

async function serve(c: VerbContext): Promise<number> {
  const v = c.values;
  const [dir] = c.positionals as [string];
  const listens = (v.listen as string[] | undefined) ?? [];
  if (listens.length === 0) throw new ExitError(2, "ninep serve: --listen ADDR is required", "serve");
  const dialects = ((v.dialects as string | undefined)?.split(",") ?? undefined)?.map((d) => {
    const hit = parseDialect(d.trim(), "serve");
    return hit as Dialect;
  });
  const maxMsize = parseNumber(v.msize as string | undefined, "msize", "serve", MSIZE_RANGE);
  const maxFids = parseNumber(v["max-fids"] as string | undefined, "max-fids", "serve", [16, 1 << 24]);
  const handshake = parseNumber(
    v["handshake-timeout"] as string | undefined,
    "handshake-timeout",
    "serve",
    [0, 86_400],
  );
  const { Server, passthrough } = await import("../server/index.js");
  const { IdNames } = await import("../server/passthrough-stat.js");
  // --squash: a uid, or a user name of /etc/passwd.
  const squashUid = v.squash === undefined ? undefined : new IdNames().uidOf(v.squash as string);
  if (v.squash !== undefined && squashUid === undefined)
    throw new ExitError(2, `ninep serve: --squash: no user "${v.squash}" in /etc/passwd`, "serve");
  const backend = passthrough(dir, {
    readOnly: Boolean(v.ro),
    dialects,
    ...(squashUid !== undefined ? { squashUid } : {}),
  });
  try {
    await backend.ready();
  } catch (err) {
    throw new ExitError(1, `ninep serve: cannot export ${dir}: ${(err as Error).message}`);
  }
  const trace = v.trace ? (line: string) => c.io.stderr.write(`${line}\n`) : undefined;
  const server = new Server({
    backend,
    dialects,
    maxMsize,
    trace,
    maxFidsPerConnection: maxFids ?? SERVE_MAX_FIDS,
    ...(handshake !== undefined ? { handshakeTimeoutMs: handshake * 1000 } : {}),
  });
  try {
    for (const l of listens) {
      let addr: Awaited<ReturnType<typeof server.listen>>;
      try {
        addr = await server.listen(l);
      } catch (err) {
        throw new ExitError(1, `ninep serve: ${(err as Error).message}`);
      }
      const shown = addr.network === "unix" ? `unix!${addr.path}` : `tcp!${addr.host}!${addr.port}`;
      c.io.stdout.write(`serving ${dir} on ${shown}${v.ro ? " (read-only)" : ""}\n`);
    }
    await new Promise<void>((resolve) => {
      if (!c.io.signal) return; // runs until the process is killed
      if (c.io.signal.aborted) return resolve();
      c.io.signal.addEventListener("abort", () => resolve(), { once: true });
    });
  } finally {
    await server.close();
  }
  return 0;
}
