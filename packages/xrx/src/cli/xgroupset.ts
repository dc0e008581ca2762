// xgroupset: add, delete and flush groups in the user pool of nodes (root ctl group-add,
// group-del, group-flush).
import { quoteArgs } from "../quote.js";
import { localGroups, poolHelp, poolNodes, runPoolCommand, sendLines } from "./admin.js";
import { type CliIo, UsageError } from "./args.js";

export const XGROUPSET_USAGE = [
  "usage: xgroupset add    [-A adminkey] {-a | nodeset} {-u | gname gid}",
  "       xgroupset delete [-A adminkey] {-a | nodeset} {-u | gname}",
  "       xgroupset flush  [-A adminkey] {-a | nodeset}",
  "       (every form also takes [-d] [-k key | --no-key] [-t secs] [-p statport] [--statfs src])",
].join("\n");

const HELP = `${XGROUPSET_USAGE}

Manage the groups of the user pool of xcpufs nodes: every node gets the command over its own
connection, as the admin identity. Groups must exist before users name them (xuserset).

  add           add group gname with numeric gid
  delete        delete group gname
  flush         remove every user and group except xcpu-admin
  -u            add: every group of this machine's /etc/group (name and gid);
                delete: every such group the node has
${poolHelp("xgroupset", "every node accepted the command")}`;

const COMMANDS: Record<string, { ctl: string; args: number }> = {
  add: { ctl: "group-add", args: 2 },
  delete: { ctl: "group-del", args: 1 },
  flush: { ctl: "group-flush", args: 0 },
};

export function main(argv: readonly string[], io: CliIo): Promise<number> {
  return runPoolCommand(
    "xgroupset",
    { usage: XGROUPSET_USAGE, help: HELP, missing: "missing command (add, delete, flush)" },
    argv,
    io,
    async (v, word, args) => {
      const cmd = COMMANDS[word];
      if (!cmd) throw new UsageError(`unknown command "${word}"`);
      if (v.u && word === "flush") throw new UsageError("flush takes no -u");
      const { nodes, rest } = await poolNodes(v, args, v.u ? 0 : cmd.args, io);
      if (v.u) {
        const groups = localGroups();
        const lines =
          word === "add"
            ? groups.map((g) => quoteArgs([cmd.ctl, g.name, String(g.gid)]))
            : groups.map((g) => ({ name: g.name, line: quoteArgs([cmd.ctl, g.name]) }));
        const bad = await sendLines("xgroupset", nodes, v, io, lines, word === "add" ? undefined : "grent");
        return bad > 0 ? 1 : 0;
      }
      if (word === "add" && !/^\d+$/.test(rest[1]!))
        throw new UsageError(`bad gid "${rest[1]}": expected a number`);
      const bad = await sendLines("xgroupset", nodes, v, io, [quoteArgs([cmd.ctl, ...rest])]);
      return bad > 0 ? 1 : 0;
    },
  );
}
