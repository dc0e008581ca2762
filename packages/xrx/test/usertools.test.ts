// xuserset, xgroupset and xgetent against real xcpufs nodes with authentication on: a user they
// register runs jobs with its own key; the pool listings, errors per node and usage errors.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BytesFile, Server, SynthDir, treeBackend } from "@clustermatic/ninep/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localGroups, localRsaKey, localUsers } from "../src/cli/admin.js";
import { main as xgetent } from "../src/cli/xgetent.js";
import { main as xgroupset } from "../src/cli/xgroupset.js";
import { main as xps } from "../src/cli/xps.js";
import { main as xrx } from "../src/cli/xrx.js";
import { main as xuserset } from "../src/cli/xuserset.js";
import { PACKAGE_VERSION } from "../src/version.js";
import { cleanupAll, runCli, startCluster, type TestNode, tempDir } from "./harness.js";

const sshKeygen = ["/usr/bin/ssh-keygen", "/bin/ssh-keygen"].some((p) => existsSync(p));
if (!sshKeygen) console.log("user tool tests skipped: ssh-keygen (openssh-client) is not installed");

afterAll(cleanupAll);

let dir: string;
let home: string;
let admin: string;
let rsa: string;
let ed: string;
let stranger: string;
let two: { nodes: TestNode[]; list: string };
const uid = process.getuid!();
let name: string;

beforeAll(async () => {
  if (!sshKeygen) return;
  dir = tempDir("xrx-pool-");
  // An empty home: no default keys of whoever runs the tests take part.
  home = tempDir("xrx-pool-home-");
  const keygen = (file: string, type: string, extra: string[] = []) => {
    execFileSync("ssh-keygen", ["-q", "-t", type, ...extra, "-N", "", "-f", join(dir, file)]);
    return join(dir, file);
  };
  admin = keygen("admin", "rsa", ["-b", "2048", "-m", "PEM"]);
  rsa = keygen("rsa", "rsa", ["-b", "2048"]);
  ed = keygen("ed", "ed25519");
  stranger = keygen("stranger", "ed25519");
  name = execFileSync("id", ["-un"], { encoding: "utf8" }).trim();
  two = await startCluster(2, { noAuth: false, adminKeyFile: `${admin}.pub` });
}, 60_000);

/** Runs a tool with an empty home and a connect timeout generous enough for a loaded machine. */
function run(main: typeof xuserset, argv: string[], env: NodeJS.ProcessEnv = {}) {
  return runCli(main, ["-t", "60", ...argv], { env: { HOME: home, ...env } });
}

function passwd(entries: string[]): string {
  return two.nodes.map((n) => `Password Database From Node: ${n.spec}\n${entries.join("\n")}\n`).join("");
}
function group(entries: string[]): string {
  return two.nodes.map((n) => `Group Database From Node: ${n.spec}\n${entries.join("\n")}\n`).join("");
}

describe.skipIf(!sshKeygen)("xgroupset, xuserset, xgetent", () => {
  it("register a user who then runs jobs with an RSA or an Ed25519 key; groups, listings, flush", async () => {
    const A = ["-A", admin];
    const ok = { code: 0, stdout: "", stderr: "" };
    // Before: only the admin, and the user cannot log in.
    expect(await run(xgetent, [...A, "passwd", two.list])).toEqual({
      ...ok,
      stdout: passwd(["xcpu-admin:65530:65530:xcpu-admin"]),
    });
    const refused = await runCli(xrx, ["-k", rsa, two.list, "id", "-u"]);
    expect(refused.code).toBe(1);

    expect(await run(xgroupset, ["add", ...A, two.list, "xrxusers", "4242"])).toEqual(ok);
    // Options anywhere, as the original's getopt took them.
    expect(await run(xgroupset, ["add", two.list, "extra", "4343", ...A])).toEqual(ok);
    expect(await run(xuserset, ["add", ...A, two.list, name, String(uid), "xrxusers", `${rsa}.pub`])).toEqual(
      ok,
    );
    const asUser = await runCli(xrx, ["-k", rsa, two.list, "id", "-u"]);
    expect(asUser).toEqual({ ...ok, stdout: `${uid}\n${uid}\n` });

    // Memberships.
    expect(await run(xuserset, ["addgroup", ...A, two.list, name, "extra"])).toEqual(ok);
    expect(await run(xgetent, [...A, "passwd", two.list])).toEqual({
      ...ok,
      stdout: passwd([`${name}:${uid}:4242:xrxusers,extra`, "xcpu-admin:65530:65530:xcpu-admin"]),
    });
    expect(await run(xuserset, ["delgroup", two.list, ...A, name, "extra"])).toEqual(ok);
    expect(await run(xgetent, [...A, "passwd", two.list])).toEqual({
      ...ok,
      stdout: passwd([`${name}:${uid}:4242:xrxusers`, "xcpu-admin:65530:65530:xcpu-admin"]),
    });
    // $NODES stands for the node list.
    expect(await run(xgetent, [...A, "group"], { NODES: two.list })).toEqual({
      ...ok,
      stdout: group(["extra:4343", "xrxusers:4242", "xcpu-admin:65530"]),
    });

    // A second add is refused by every node, each named.
    const again = await run(xuserset, ["add", ...A, two.list, name, String(uid), "xrxusers", `${ed}.pub`]);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe("");
    expect(again.stderr.trim().split("\n").sort()).toEqual(
      two.nodes.map((n) => `xuserset: ${n.spec}: ${name}:user exists`).sort(),
    );

    // Delete: the user is gone; registered again with an Ed25519 key, that key works.
    expect(await run(xuserset, ["delete", ...A, two.list, name])).toEqual(ok);
    expect((await runCli(xrx, ["-k", rsa, two.list, "true"])).code).toBe(1);
    expect(await run(xuserset, ["add", ...A, two.list, name, String(uid), "xrxusers", `${ed}.pub`])).toEqual(
      ok,
    );
    expect(await runCli(xrx, ["-k", ed, two.list, "id", "-u"])).toEqual({
      ...ok,
      stdout: `${uid}\n${uid}\n`,
    });
    expect((await runCli(xrx, ["-k", rsa, two.list, "true"])).code).toBe(1);

    // -a with a statfs table: the up nodes under their statfs names.
    const state = join(dir, "state");
    writeFileSync(
      state,
      `alpha\ttcp!127.0.0.1!${two.nodes[0]!.port}\t/Linux/x86_64\tup\t0\n` +
        `beta\ttcp!127.0.0.1!${two.nodes[1]!.port}\t/Linux/x86_64\tdown\t0\n`,
    );
    expect(await run(xgetent, [...A, "group", "-a", "--statfs", state])).toEqual({
      ...ok,
      stdout: "Group Database From Node: alpha\nextra:4343\nxrxusers:4242\nxcpu-admin:65530\n",
    });
    // The original's spelling: -a with -p PORT, a statfs on this machine at that port.
    const statfs = new Server({ backend: treeBackend(statfsTree(readFileSync(state, "latin1"))) });
    const port = ((await statfs.listen("tcp!127.0.0.1!0")) as { port: number }).port;
    try {
      expect(await run(xgetent, [...A, "-p", String(port), "group", "-a"])).toEqual({
        ...ok,
        stdout: "Group Database From Node: alpha\nextra:4343\nxrxusers:4242\nxcpu-admin:65530\n",
      });
      const ps = await run(xps, [...A, "-a", "-p", String(port)]);
      expect(ps.code).toBe(0);
      const rows = ps.stdout.split("\n").filter(Boolean);
      expect(rows[0]).toBe("NODE\tPID\tTTY\tSTAT\tTIME\tJOBID\tCOMMAND");
      expect(rows.length).toBeGreaterThan(1);
      expect(rows.slice(1).every((l) => l.startsWith("alpha\t"))).toBe(true);
    } finally {
      await statfs.close(0);
    }

    // Flushes.
    expect(await run(xuserset, ["flush", ...A, two.list])).toEqual(ok);
    expect((await run(xgetent, [...A, "passwd", two.list])).stdout).toBe(
      passwd(["xcpu-admin:65530:65530:xcpu-admin"]),
    );
    expect(await run(xgroupset, ["delete", ...A, two.list, "extra"])).toEqual(ok);
    expect((await run(xgetent, [...A, "group", two.list])).stdout).toBe(
      group(["xrxusers:4242", "xcpu-admin:65530"]),
    );
    expect(await run(xgroupset, ["flush", ...A, two.list])).toEqual(ok);
    expect((await run(xgetent, [...A, "group", two.list])).stdout).toBe(group(["xcpu-admin:65530"]));
    const missing = await run(xgroupset, ["delete", ...A, two.list, "extra"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`xgroupset: ${two.nodes[0]!.spec}: extra: no such group in userpool`);
  }, 120_000);

  it("-u adds this machine's groups and its accounts that have ~/.ssh/id_rsa.pub; delete -u removes them", async () => {
    const A = ["-A", admin];
    const groups = readFileSync("/etc/group", "utf8")
      .split("\n")
      .filter((l) => l)
      .map((l) => l.split(":"))
      .map((f) => ({ name: f[0]!, gid: f[2]! }));
    const clash =
      new Set(groups.map((g) => g.name)).size !== groups.length ||
      new Set(groups.map((g) => g.gid)).size !== groups.length ||
      groups.some((g) => g.name === "xcpu-admin" || g.gid === "65530");
    const added = await run(xgroupset, ["add", ...A, two.list, "-u"]);
    if (clash) {
      console.log("/etc/group has a repeated name or gid: only the failure of xgroupset add -u is checked");
      expect(added.code).toBe(1);
    } else {
      expect(added).toEqual({ code: 0, stdout: "", stderr: "" });
      expect((await run(xgetent, [...A, "group", two.list])).stdout).toBe(
        group([...groups.map((g) => `${g.name}:${g.gid}`).reverse(), "xcpu-admin:65530"]),
      );
    }
    // The accounts with a readable ~/.ssh/id_rsa.pub and a named primary group (often none).
    const gname = new Map(groups.map((g) => [g.gid, g.name]));
    const users = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .filter((l) => l)
      .map((l) => l.split(":"))
      .flatMap((f) => {
        let key = "";
        try {
          key = readFileSync(join(f[5]!, ".ssh/id_rsa.pub"), "utf8").split("\n")[0]!.trim();
        } catch {}
        const g = gname.get(f[3]!);
        return key && g ? [`${f[0]}:${f[2]}:${f[3]}:${g}`] : [];
      });
    const addedUsers = await run(xuserset, ["add", "-u", ...A, two.list]);
    if (!clash) expect(addedUsers).toEqual({ code: 0, stdout: "", stderr: "" });
    expect((await run(xgetent, [...A, "passwd", two.list])).stdout).toBe(
      passwd([...users.reverse(), "xcpu-admin:65530:65530:xcpu-admin"]),
    );
    // delete -u deletes the local accounts and groups each node has, and only those.
    expect(await run(xuserset, ["delete", ...A, two.list, "-u"])).toEqual({
      code: 0,
      stdout: "",
      stderr: "",
    });
    expect((await run(xgetent, [...A, "passwd", two.list])).stdout).toBe(
      passwd(["xcpu-admin:65530:65530:xcpu-admin"]),
    );
    expect(await run(xgroupset, ["delete", "-u", ...A, two.list])).toEqual({
      code: 0,
      stdout: "",
      stderr: "",
    });
    expect((await run(xgetent, [...A, "group", two.list])).stdout).toBe(group(["xcpu-admin:65530"]));
  }, 120_000);

  it("report a wrong admin key per node and exit 1", async () => {
    for (const [main, argv, prog] of [
      [xgetent, ["-A", stranger, "passwd", two.list], "xgetent"],
      [xgroupset, ["add", "-A", stranger, two.list, "nope", "777"], "xgroupset"],
      [xuserset, ["flush", "-A", stranger, two.list], "xuserset"],
    ] as const) {
      const r = await run(main, [...argv]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      for (const n of two.nodes)
        expect(r.stderr).toMatch(new RegExp(`^${prog}: ${n.spec.replace(/[.!]/g, "\\$&")}: `, "m"));
    }
    // Nothing changed.
    expect((await run(xgetent, ["-A", admin, "group", two.list])).stdout).not.toContain("nope");
  }, 60_000);

  it("exit 2 on usage errors; --help and --version", async () => {
    const bad: Array<[typeof xuserset, string[], RegExp]> = [
      [xuserset, [], /missing command/],
      [xuserset, ["rename", two.list, "x"], /unknown command "rename"/],
      [xuserset, ["add", two.list, "u", "500", "g"], /missing arguments/],
      [xuserset, ["add", two.list, "u", "x500", "g", `${rsa}.pub`], /bad uid "x500"/],
      [xuserset, ["delete", two.list, "u", "v"], /too many arguments/],
      [xuserset, ["flush", "-p"], /option -p needs a value/],
      [xuserset, ["flush", "-a", two.list], /-a takes no node list/],
      [xuserset, ["flush", "-u", two.list], /flush takes no -u/],
      [xuserset, ["add", two.list, "u", "-u"], /too many arguments/],
      [xgroupset, ["flush", two.list, "-u"], /flush takes no -u/],
      [xgroupset, ["add", two.list, "g", "-1"], /bad gid "-1"/],
      [xgroupset, ["delete"], /missing node list/],
      [xgroupset, ["add", "--bogus", two.list, "g", "1"], /bogus/],
      [xgetent, [two.list], /unknown database/],
      [xgetent, ["shadow", two.list], /unknown database "shadow"/],
      [xgetent, ["passwd"], /missing node list/],
      [xgetent, ["passwd", "n["], /not a valid node description/],
    ];
    for (const [main, argv, msg] of bad) {
      const r = await run(main, argv);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).toMatch(/\nusage: x/);
    }
    const noKey = await run(xuserset, [
      "add",
      "-A",
      admin,
      two.list,
      "u",
      "500",
      "g",
      join(dir, "absent.pub"),
    ]);
    expect(noKey).toMatchObject({ code: 1, stderr: expect.stringContaining("absent.pub: no such file") });
    const priv = join(dir, "id_private");
    writeFileSync(
      priv,
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    const privKey = await run(xuserset, ["add", "-A", admin, two.list, "u", "500", "g", priv]);
    expect(privKey).toMatchObject({
      code: 1,
      stderr: expect.stringContaining(`${priv}: a private key; give the public key (such as ${priv}.pub)`),
    });
    for (const [main, prog] of [
      [xuserset, "xuserset"],
      [xgroupset, "xgroupset"],
      [xgetent, "xgetent"],
    ] as const) {
      const h = await run(main, ["--help"]);
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`usage: ${prog}`);
      expect(await run(main, ["-V"])).toEqual({
        code: 0,
        stdout: `${prog} ${PACKAGE_VERSION}\n`,
        stderr: "",
      });
    }
  });
});

describe("the local databases -u reads", () => {
  it("parses passwd and group files and reads the first line of ~/.ssh/id_rsa.pub", () => {
    const d = tempDir("xrx-localdb-");
    const home = join(d, "alice");
    mkdirSync(join(home, ".ssh"), { recursive: true });
    writeFileSync(join(home, ".ssh/id_rsa.pub"), "ssh-rsa AAAAB3Nza alice@head\nsecond line\n");
    writeFileSync(
      join(d, "passwd"),
      `alice:x:1000:100:Alice:${home}:/bin/sh\nbob:x:1001:100::${join(d, "bob")}:/bin/sh\n#junk\nbad:x:x:1::/:/bin/sh\n`,
    );
    writeFileSync(join(d, "group"), "users:x:100:alice\nwheel:x:10:\nbroken:x:\n");
    const users = localUsers(join(d, "passwd"));
    expect(users).toEqual([
      { name: "alice", uid: 1000, gid: 100, home },
      { name: "bob", uid: 1001, gid: 100, home: join(d, "bob") },
    ]);
    expect(users.map(localRsaKey)).toEqual(["ssh-rsa AAAAB3Nza alice@head", undefined]);
    expect(localGroups(join(d, "group"))).toEqual([
      { name: "users", gid: 100 },
      { name: "wheel", gid: 10 },
    ]);
  });
});

/** A statfs's tree as the original serves it: one `state` file, readable by anyone. */
function statfsTree(table: string): SynthDir {
  const root = new SynthDir("/", { uid: "root", gid: "root" });
  root.add(new BytesFile("state", table, { uid: "root", gid: "root", mode: 0o444 }));
  return root;
}
