// xgetent: print the user or group database of the user pool of nodes (root pwent, grent).
import { onEveryNode, poolHelp, poolNodes, runPoolCommand } from "./admin.js";
import { type CliIo, UsageError } from "./args.js";

export const XGETENT_USAGE =
  "usage: xgetent [-d] [-A adminkey] [-k key | --no-key] [-t secs] [-p statport] [--statfs src] <passwd|group> {-a | nodeset}";

const HELP = `${XGETENT_USAGE}

Print the users (passwd: name:uid:gid[:groups]) or groups (group: name:gid) of the user pool of
xcpufs nodes, most recently added first, under a heading per node:
"Password Database From Node: <node>" or "Group Database From Node: <node>".

${poolHelp("xgetent", "every node answered")}`;

const DATABASES: Record<string, { file: string; title: string }> = {
  passwd: { file: "pwent", title: "Password Database From Node" },
  group: { file: "grent", title: "Group Database From Node" },
};

export function main(argv: readonly string[], io: CliIo): Promise<number> {
  return runPoolCommand(
    "xgetent",
    { usage: XGETENT_USAGE, help: HELP, missing: "missing database (passwd or group)" },
    argv,
    io,
    async (v, word, args) => {
      const db = DATABASES[word];
      if (!db) throw new UsageError(`unknown database "${word}": expected passwd or group`);
      const { nodes } = await poolNodes(v, args, 0, io);
      const { results, failed } = await onEveryNode("xgetent", nodes, v, io, async (node) =>
        (await node.readFile(db.file)).toString("utf8"),
      );
      let out = "";
      results.forEach((text, i) => {
        if (text === undefined) return;
        out += `${db.title}: ${nodes[i]!.name}\n`;
        for (const entry of text.split(/\s+/)) if (entry) out += `${entry}\n`;
      });
      io.stdout.write(out);
      return failed > 0 ? 1 : 0;
    },
  );
}
