// xuserset: add, delete and flush users, and change their groups, in the user pool of nodes
// (root ctl user-add, user-del, user-flush, user-add-group, user-del-group).
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { quoteArgs } from "../quote.js";
import {
  localGroups,
  localRsaKey,
  localUsers,
  poolHelp,
  poolNodes,
  runPoolCommand,
  sendLines,
} from "./admin.js";
import { type CliIo, UsageError } from "./args.js";

export const XUSERSET_USAGE = [
  "usage: xuserset add      [-A adminkey] {-a | nodeset} {-u | user uid group keyfile}",
  "       xuserset delete   [-A adminkey] {-a | nodeset} {-u | user}",
  "       xuserset flush    [-A adminkey] {-a | nodeset}",
  "       xuserset addgroup [-A adminkey] {-a | nodeset} user group",
  "       xuserset delgroup [-A adminkey] {-a | nodeset} user group",
  "       (every form also takes [-d] [-k key | --no-key] [-t secs] [-p statport] [--statfs src])",
].join("\n");

const HELP = `${XUSERSET_USAGE}

Manage the user pool of xcpufs nodes: every node gets the command over its own connection, as
the admin identity. Each node keeps its own pool (xcpufs saves it in its --state-dir).

  add           register user with numeric uid, default group (which must exist: xgroupset)
                and the public key on the first line of keyfile (ssh-rsa or ssh-ed25519)
  delete        remove the user from the pool and from every group
  flush         remove every user except xcpu-admin
  addgroup      make user a member of group; delgroup ends that membership
  -u            add: every account of this machine with a readable ~/.ssh/id_rsa.pub (its
                uid, primary group name and that key); delete: every local account the node has
${poolHelp("xuserset", "every node accepted the command")}`;

/** Sub-command: root ctl command and the names of its arguments. */
const COMMANDS: Record<string, { ctl: string; args: string[] }> = {
  add: { ctl: "user-add", args: ["user", "uid", "group", "keyfile"] },
  delete: { ctl: "user-del", args: ["user"] },
  flush: { ctl: "user-flush", args: [] },
  addgroup: { ctl: "user-add-group", args: ["user", "group"] },
  delgroup: { ctl: "user-del-group", args: ["user", "group"] },
};

/** The first line of a public key file, as user-add sends it. */
function keyLine(file: string, cwd: string): string {
  let text: string;
  try {
    text = readFileSync(resolve(cwd, file), "utf8");
  } catch (err) {
    throw new Error(
      `${file}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`,
    );
  }
  const line = (text.split("\n")[0] ?? "").trim();
  if (!line) throw new Error(`${file}: no key on the first line`);
  // A private key would be refused by the node as "invalid key"; say what was meant instead.
  if (/^-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(line))
    throw new Error(`${file}: a private key; give the public key (such as ${file}.pub)`);
  return line;
}

export function main(argv: readonly string[], io: CliIo): Promise<number> {
  return runPoolCommand(
    "xuserset",
    {
      usage: XUSERSET_USAGE,
      help: HELP,
      missing: "missing command (add, delete, flush, addgroup, delgroup)",
    },
    argv,
    io,
    async (v, word, args) => {
      const cmd = COMMANDS[word];
      if (!cmd) throw new UsageError(`unknown command "${word}"`);
      if (v.u && word !== "add" && word !== "delete") throw new UsageError(`${word} takes no -u`);
      const { nodes, rest } = await poolNodes(v, args, v.u ? 0 : cmd.args.length, io);
      if (v.u) {
        let bad: number;
        if (word === "add") {
          const groups = new Map(localGroups().map((g) => [g.gid, g.name]));
          const lines = localUsers().flatMap((u) => {
            const key = localRsaKey(u);
            const group = groups.get(u.gid);
            return key && group ? [quoteArgs([cmd.ctl, u.name, String(u.uid), group, key])] : [];
          });
          bad = await sendLines("xuserset", nodes, v, io, lines);
        } else {
          const lines = localUsers().map((u) => ({ name: u.name, line: quoteArgs([cmd.ctl, u.name]) }));
          bad = await sendLines("xuserset", nodes, v, io, lines, "pwent");
        }
        return bad > 0 ? 1 : 0;
      }
      if (word === "add") {
        if (!/^\d+$/.test(rest[1]!)) throw new UsageError(`bad uid "${rest[1]}": expected a number`);
        rest[3] = keyLine(rest[3]!, io.cwd);
      }
      const bad = await sendLines("xuserset", nodes, v, io, [quoteArgs([cmd.ctl, ...rest])]);
      return bad > 0 ? 1 : 0;
    },
  );
}
