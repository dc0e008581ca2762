// Names for uids and gids from passwd/group files: parsed once per file version for the whole
// process, yet every instance sees a change to the file.
import { mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { IdNames } from "../../src/server/passthrough-stat.js";

const dir = mkdtempSync(join(tmpdir(), "ninep-idnames-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("IdNames", () => {
  const passwd = join(dir, "passwd");
  const group = join(dir, "group");
  writeFileSync(passwd, "root:x:0:0::/root:/bin/sh\nalice:x:1000:100::/home/alice:/bin/sh\n");
  writeFileSync(group, "root:x:0:\nusers:x:100:\nstaff:x:50:alice,bob\n");

  it("maps both ways, with decimal fallbacks", () => {
    const ids = new IdNames(passwd, group);
    expect(ids.userName(1000)).toBe("alice");
    expect(ids.userName(4242)).toBe("4242");
    expect(ids.uidOf("alice")).toBe(1000);
    expect(ids.uidOf("77")).toBe(77);
    expect(ids.uidOf("nobody-here")).toBeUndefined();
    expect(ids.groupName(50)).toBe("staff");
    expect(ids.gidOf("users")).toBe(100);
    expect([...ids.groupsOf(1000)].sort((a, b) => a - b)).toEqual([50, 100]);
  });

  it("a new instance sees a file changed after an earlier instance parsed it", () => {
    const first = new IdNames(passwd, group);
    expect(first.userName(1001)).toBe("1001");
    const quick = new IdNames(passwd, group, 0);
    expect(quick.userName(1000)).toBe("alice");
    // Same size and the same mtime as before would not tell the versions apart; a new inode does.
    const next = join(dir, "passwd.new");
    writeFileSync(next, "root:x:0:0::/root:/bin/sh\ncarol:x:1001:100::/home/carol:/bin/sh\n");
    utimesSync(next, new Date(0), new Date(0));
    renameSync(next, passwd);
    const second = new IdNames(passwd, group);
    expect(second.userName(1001)).toBe("carol");
    expect(second.userName(1000)).toBe("1000");
    // An instance made before the change sees it at its next recheck (here: at once).
    expect(quick.userName(1000)).toBe("1000");
    expect(quick.userName(1001)).toBe("carol");
  });

  it("a missing file gives an empty table, and a file that appears later is read", () => {
    const absent = join(dir, "no-passwd");
    const ids = new IdNames(absent, group, 0);
    expect(ids.userName(0)).toBe("0");
    writeFileSync(absent, "root:x:0:0::/root:/bin/sh\n");
    expect(ids.userName(0)).toBe("root");
    expect(new IdNames(absent, group).userName(0)).toBe("root");
  });
});
