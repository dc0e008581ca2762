// A synthetic tree and server used by the server tests: every kind of file the rules need.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DMDIR, DMEXCL } from "../../src/codec/constants.js";
import { Ename, FsError } from "../../src/errors.js";
import {
  abortable,
  BytesFile,
  CtlTable,
  generatedFile,
  Server,
  type ServerOptions,
  SynthDir,
  SynthFile,
  staticFile,
  treeBackend,
} from "../../src/server/index.js";
import type { Address } from "../../src/transport/address.js";

export interface Fixture {
  server: Server;
  addr: Address;
  root: SynthDir;
  /** Resolves the pending reads of /block with this text. */
  release(text: string): void;
  /** Number of /block reads currently waiting. */
  blocked(): number;
  /** Resolves the pending reads of /stubborn and opens of /stubbornopen (which ignore their abort signal). */
  finishStubborn(text: string): void;
  /** Number of /stubborn reads and /stubbornopen opens not finished yet. */
  stubborn(): number;
  /** Lines accepted by /ctl. */
  ctlLog: string[];
  /** Clunks seen by /block. */
  clunks: number;
  close(): Promise<void>;
}

export function buildTree(f: {
  ctlLog: string[];
  waiters: Set<(s: string) => void>;
  stubborn?: Set<(s: string) => void>;
  onClunk: () => void;
}): SynthDir {
  const root = new SynthDir("/", { mode: 0o777, uid: "glenda", gid: "glenda" });
  root.add(staticFile("hello", "hello, world\n", { uid: "glenda" }));
  root.add(new BytesFile("data", "0123456789", { mode: 0o666, uid: "glenda" }));
  root.add(new BytesFile("excl", "x", { mode: (DMEXCL | 0o666) >>> 0, uid: "glenda" }));
  root.add(new BytesFile("secret", "s", { mode: 0o600, uid: "glenda" }));
  root.add(new BytesFile("ownedbyother", "o", { mode: 0o644, uid: "bob", gid: "bob" }));
  let gen = 0;
  root.add(generatedFile("counter", () => `generation ${++gen}\n`.repeat(50)));
  const dir = root.add(
    new SynthDir("dir", {
      mode: 0o777,
      uid: "glenda",
      create: (req) => {
        if ((req.perm & DMDIR) !== 0) {
          return new SynthDir(req.name, { mode: req.perm & 0o777, uid: "glenda", create: undefined });
        }
        return new BytesFile(req.name, "", { mode: req.perm & 0o777, uid: "glenda" });
      },
    }),
  );
  for (let i = 0; i < 25; i++) dir.add(staticFile(`entry-${"x".repeat(i % 7)}-${i}`, `content ${i}\n`));
  const sub = dir.add(new SynthDir("sub", { mode: 0o755, uid: "glenda" }));
  sub.add(staticFile("leaf", "leaf\n"));
  root.add(new SynthDir("empty", { mode: 0o555 }));
  root.add(new SynthDir("noexec", { mode: 0o666, uid: "bob" })).add(staticFile("hidden", "h"));
  root.add(
    new SynthFile<undefined>("block", {
      mode: 0o444,
      read: (_h, offset, _count, ctx) => {
        if (offset > 0n) return "";
        return abortable(
          new Promise<string>((resolve) => {
            const w = (s: string) => {
              f.waiters.delete(w);
              resolve(s);
            };
            f.waiters.add(w);
            ctx.signal.addEventListener("abort", () => f.waiters.delete(w), { once: true });
          }),
          ctx.signal,
        );
      },
      clunk: () => f.onClunk(),
    }),
  );
  // A read that ignores its abort signal (a misbehaving handler): used to test flush timeouts. It
  // finishes when the test says so (finishStubborn), not after some time: what the server does
  // before and after that must not depend on how fast the machine is.
  const stubborn = f.stubborn ?? new Set<(s: string) => void>();
  root.add(
    new SynthFile<undefined>("stubborn", {
      mode: 0o444,
      read: () =>
        new Promise<string>((resolve) => {
          const w = (s: string) => {
            stubborn.delete(w);
            resolve(s);
          };
          stubborn.add(w);
        }),
    }),
  );
  // An open that ignores its abort signal: it holds its fid's gate until the test finishes it.
  root.add(
    new SynthFile<undefined>("stubbornopen", {
      mode: 0o444,
      open: () =>
        new Promise<undefined>((resolve) => {
          const w = () => {
            stubborn.delete(w);
            resolve(undefined);
          };
          stubborn.add(w);
        }),
      read: () => "opened",
    }),
  );
  root.add(
    new SynthFile<undefined>("crash", {
      mode: 0o444,
      read: () => {
        throw new TypeError("boom: a bug in a handler");
      },
    }),
  );
  const ctl = new CtlTable([
    { cmd: "ping", run: (_a, _c, line) => void f.ctlLog.push(line) },
    {
      cmd: "echo",
      minArgs: 1,
      maxArgs: Number.POSITIVE_INFINITY,
      usage: "echo text...",
      run: (a) => void f.ctlLog.push(a.join("|")),
    },
    {
      cmd: "fail",
      run: () => {
        throw new FsError(Ename.Perm);
      },
    },
  ]);
  root.add(ctl.file("ctl", { mode: 0o222, uid: "glenda" }));
  return root;
}

export async function startFixture(
  opts: Partial<ServerOptions> = {},
  where: "tcp" | "unix" = "tcp",
): Promise<Fixture> {
  const waiters = new Set<(s: string) => void>();
  const stubborn = new Set<(s: string) => void>();
  const fx = { ctlLog: [] as string[], clunks: 0 };
  const root = buildTree({ ctlLog: fx.ctlLog, waiters, stubborn, onClunk: () => void fx.clunks++ });
  const server = new Server({
    backend: treeBackend(root, { dialects: ["9P2000", "9P2000.u", "9P2000.L"] }),
    ...opts,
  });
  let dir: string | undefined;
  let addr: Address;
  if (where === "unix") {
    dir = mkdtempSync(join(tmpdir(), "ninep-server-"));
    addr = await server.listen(`unix!${join(dir, "9p.sock")}`);
  } else {
    addr = await server.listen("tcp!127.0.0.1!0");
  }
  const fixture: Fixture = {
    server,
    addr,
    root,
    ctlLog: fx.ctlLog,
    get clunks() {
      return fx.clunks;
    },
    release: (text) => {
      for (const w of [...waiters]) w(text);
    },
    blocked: () => waiters.size,
    finishStubborn: (text) => {
      for (const w of [...stubborn]) w(text);
    },
    stubborn: () => stubborn.size,
    close: async () => {
      await server.close(200);
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return fixture;
}
