// Cluster file: validation errors with file/line/key, merging with provenance, node ranges.
import { describe, expect, it } from "vitest";
import { jsonSyntaxError } from "../src/cluster/json.js";
import { applyCmdline, Cluster } from "../src/cluster/resolve.js";
import { BootcfgError } from "../src/errors.js";
import { renderShow } from "../src/report.js";

const YAML = `name: demo
defaults:
  cmdline: [console=ttyS0, panic=-1, quiet]
  memory: 1G
profiles:
  base:
    arch: x86_64
    kernel: k/vmlinuz
    initrds: [base.cpio.gz]
  compute:
    include: [base]
    cmdline: [-quiet, loglevel=4]
    overlay:
      /etc/hostname: "{{node}}\\n"
  big:
    include: [compute]
    memory: 8G
nodes:
  - name: n[01-16]
    exclude: n[05,07]
    profiles: [compute]
    ip: 10.0.0.250
    mac: 52:54:00:00:00:fe
    cmdline: ["bootcfg.node={{node}}"]
  - name: n16
    profiles: [big]
    cmdline: [console=ttyS1]
`;

function errorOf(fn: () => unknown): BootcfgError {
  try {
    fn();
  } catch (e) {
    if (e instanceof BootcfgError) return e;
    throw e;
  }
  throw new Error("no error thrown");
}

describe("node ranges", () => {
  const c = Cluster.parse(YAML, "cluster.yaml");
  it("expands with zero padding and exclusions, in file order", () => {
    expect(c.nodes()).toEqual([
      "n01",
      "n02",
      "n03",
      "n04",
      "n06",
      "n08",
      "n09",
      "n10",
      "n11",
      "n12",
      "n13",
      "n14",
      "n15",
      "n16",
    ]);
  });
  it("increments IP and MAC along the range, carrying into the next octet", () => {
    expect(c.resolve("n01").ip).toBe("10.0.0.250");
    expect(c.resolve("n04").ip).toBe("10.0.0.253");
    // Excluded names keep their place: n06 is +5 and n08 +7 with n05 and n07 excluded, so that
    // excluding a node moves no other node's address.
    expect(c.resolve("n06").ip).toBe("10.0.0.255");
    expect(c.resolve("n08").ip).toBe("10.0.1.1");
    expect(c.resolve("n09").ip).toBe("10.0.1.2");
    expect(c.resolve("n08").mac).toBe("52:54:00:00:01:05");
    expect(c.resolve("n02").mac).toBe("52:54:00:00:00:ff");
    expect(c.resolve("n03").mac).toBe("52:54:00:00:01:00");
  });
  it("accepts lists and a map of ranges", () => {
    const m = Cluster.parse(
      "defaults: {kernel: k}\nnodes:\n  'r[1-2]n[1,3]': {}\n  io1: {arch: arm64}\n",
      "c.yaml",
    );
    expect(m.nodes()).toEqual(["r1n1", "r1n3", "r2n1", "r2n3", "io1"]);
    expect(m.resolve("io1").arch).toBe("arm64");
  });
  it("says which nodes exist when one is unknown", () => {
    const e = errorOf(() => c.resolve("n99"));
    expect(e.code).toBe("ENODE");
    expect(e.message).toMatch(/^n99: no such node in cluster\.yaml \(nodes there include n01, n02, n03…\)$/);
  });
});

describe("merging", () => {
  const c = Cluster.parse(YAML, "cluster.yaml");
  it("applies defaults, included profiles, profile, then node entries", () => {
    const n = c.resolve("n16");
    expect(n.profiles).toEqual(["base", "compute", "big"]);
    expect(n.memory).toBe(8 * 1024 ** 3);
    expect(n.cmdline).toEqual(["console=ttyS1", "panic=-1", "loglevel=4", "bootcfg.node=n16"]);
    expect(n.overlay).toEqual({ "/etc/hostname": "n16\n" });
  });
  it("records where each value came from (golden)", () => {
    expect(renderShow(c.resolve("n16"))).toBe(
      `node           n16
profiles       base, compute, big
arch           x86_64              ← cluster.yaml:7 profiles.base.arch
kernel         k/vmlinuz           ← cluster.yaml:8 profiles.base.kernel
initrds        base.cpio.gz        ← cluster.yaml:9 profiles.base.initrds
cmdline        console=ttyS1       ← cluster.yaml:27 nodes.1.cmdline
               panic=-1            ← cluster.yaml:3 defaults.cmdline
               loglevel=4          ← cluster.yaml:12 profiles.compute.cmdline
               bootcfg.node=n16    ← cluster.yaml:24 nodes.0.cmdline
firmware       bios                ← (built-in default)
delivery       kexec               ← (built-in default)
memory         8.0 GiB             ← cluster.yaml:17 profiles.big.memory
ip             10.0.1.9            ← cluster.yaml:22 nodes.0.ip +15
mac            52:54:00:00:01:0d   ← cluster.yaml:23 nodes.0.mac +15
kexec.syscall  kexec_load          ← (built-in default)
kexec.dir      /boot/bootcfg       ← (built-in default)
payload.name   fallback/payload    ← (built-in default)
overlay        /etc/hostname       ← cluster.yaml:14 profiles.compute.overlay./etc/hostname
`,
    );
  });
  it("command lines: replace by key, +append duplicates, -remove", () => {
    const base = applyCmdline([], ["console=tty0", "quiet", "ro"], "a");
    const out = applyCmdline(base, ["console=ttyS0", "+console=tty1", "-quiet", "ro"], "b").map(
      (t) => `${t.token}@${t.origin}`,
    );
    expect(out).toEqual(["console=ttyS0@b", "ro@b", "console=tty1@b"]);
  });
  it("reads the same cluster from JSON", () => {
    const j = Cluster.parse(
      JSON.stringify({
        defaults: { kernel: "k", cmdline: "console=ttyS0 quiet" },
        nodes: [{ name: "n[1-2]", arch: "arm64" }],
      }),
      "cluster.json",
    );
    expect(j.resolve("n2")).toMatchObject({ arch: "arm64", cmdline: ["console=ttyS0", "quiet"] });
  });
});

describe("validation errors name file, line and key", () => {
  const cases: Array<[string, string, RegExp]> = [
    [
      "unknown key with suggestion",
      "profiles:\n  p:\n    arhc: x86_64\nnodes: [{name: n1}]\n",
      /^c\.yaml:3: profiles\.p\.arhc: unknown key \(did you mean "arch"\?\)$/m,
    ],
    [
      "bad enum",
      "defaults:\n  kernel: k\n  arch: sparc\nnodes: [{name: n1}]\n",
      /^c\.yaml:3: defaults\.arch: must be one of x86_64, i386, arm64, riscv64, ppc64le; got "sparc"$/m,
    ],
    [
      "bad size",
      "defaults:\n  memory: lots\nnodes: [{name: n1}]\n",
      /^c\.yaml:2: defaults\.memory: expected a size such as 512M or 2G, got "lots"$/m,
    ],
    [
      "unknown profile",
      "profiles:\n  compute: {}\nnodes:\n  - name: n1\n    profiles: [comptue]\n",
      /^c\.yaml:5: nodes\.0\.profiles\.0: unknown profile "comptue" \(did you mean "compute"\?\)$/m,
    ],
    [
      "bad mac",
      "nodes:\n  - name: n1\n    mac: 52:54:00\n",
      /^c\.yaml:3: nodes\.0\.mac: "52:54:00" is not a MAC address/m,
    ],
    [
      "relative overlay path",
      "defaults:\n  overlay:\n    etc/x: y\nnodes: [{name: n1}]\n",
      /^c\.yaml:3: defaults\.overlay\.etc\/x: overlay paths must be absolute \(write "\/etc\/x"\)$/m,
    ],
    ["no nodes", "defaults: {}\n", /^c\.yaml:1: \(top level\): no "nodes" key/m],
    ["YAML syntax", "nodes:\n  - name: [n1\n", /^c\.yaml:\d+: /m],
    [
      "bad node range",
      "defaults: {kernel: k}\nnodes:\n  - name: n[1-\n",
      /^c\.yaml:3: nodes\.0: syntax error/m,
    ],
    [
      "include cycle",
      "profiles:\n  a: {include: [b]}\n  b: {include: [a]}\ndefaults: {kernel: k}\nnodes: [{name: n1, profiles: [a]}]\n",
      /include cycle/,
    ],
    ["no kernel", "nodes:\n  - name: n1\n", /^c\.yaml:2: n1: no kernel set/m],
  ];
  for (const [name, text, re] of cases)
    it(name, () => {
      const e = errorOf(() => {
        const c = Cluster.parse(text, "c.yaml");
        for (const n of c.nodes()) c.resolve(n);
      });
      expect(e.code).toBe("ECLUSTER");
      expect(e.message).toMatch(re);
    });
  it("reports every problem at once", () => {
    const e = errorOf(() =>
      Cluster.parse("defaults:\n  arch: sparc\n  firmware: efi\nnodes: [{name: n1}]\n", "c.yaml"),
    );
    expect(e.message.split("\n")).toHaveLength(2);
  });
});

describe("JSON cluster files: syntax errors in JSON's terms, with line and column", () => {
  const json = (text: string, file = "c.json") => errorOf(() => Cluster.parse(text, file));
  it("a missing comma, a trailing comma, a comment, a missing colon, an unterminated string", () => {
    const cases: Array<[string, string]> = [
      [
        '{\n  "nodes": [\n    {"name": "n1" "kernel": "k"}\n  ]\n}\n',
        'c.json:3:19: JSON syntax error: expected "," or "}" after a property value, found "\\""',
      ],
      [
        '{\n  "nodes": [\n    {"name": "n1", "kernel": "k",}\n  ]\n}\n',
        'c.json:3:34: JSON syntax error: expected a property name in double quotes after ",", found "}" (JSON allows no comma before it)',
      ],
      [
        '{"nodes": [{"name": "n1", "kernel": "k"},\n]}',
        'c.json:2:1: JSON syntax error: expected a value after ",", found "]" (JSON allows no comma before it)',
      ],
      [
        '{\n  // the nodes\n  "nodes": []\n}',
        "c.json:2:3: JSON syntax error: expected a property name in double quotes after \"{\", found '//' (JSON has no comments)",
      ],
      [
        '{"nodes": [{"name": "n1", "kernel" "k"}]}',
        'c.json:1:36: JSON syntax error: expected ":" after the property name "kernel", found "\\""',
      ],
      [
        '{"nodes": [{"name": \'n1\'}]}',
        'c.json:1:21: JSON syntax error: expected a value after "name":, found "\'n1\'" (JSON strings are in double quotes)',
      ],
      [
        '{"nodes": [{"name": "n1}]}\n',
        "c.json:1:27: JSON syntax error: control character U+000A in a string (write it escaped, \\n; a string cannot span lines)",
      ],
      [
        '{"nodes": [{"name": "n1}]}',
        "c.json:1:21: JSON syntax error: unterminated string: no closing quote before the end of the file",
      ],
      [
        '{"nodes": []} {"x": 1}',
        'c.json:1:15: JSON syntax error: expected the end of the file after the top-level value, found "{"',
      ],
      [
        '{"nodes": [], "memory": 01}',
        'c.json:1:26: JSON syntax error: expected "," or "}" after a property value, found "1"',
      ],
      [
        '{"nodes": [], "arch": x86_64}',
        "c.json:1:23: JSON syntax error: expected a value after \"arch\":, found 'x86_64'",
      ],
      [
        '{"nodes": [{"name": "n\\q"}]}',
        'c.json:1:23: JSON syntax error: bad escape "\\q" in a string (JSON has \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)',
      ],
    ];
    for (const [text, message] of cases) {
      const e = json(text);
      expect(e.code).toBe("ECLUSTER");
      expect(e.message, text).toBe(message);
    }
  });
  it("a file not named .json is JSON when it opens with { or [; a .yaml file keeps the YAML parser's words", () => {
    expect(json('{"nodes": [}', "cluster").message).toBe(
      'cluster:1:12: JSON syntax error: expected a value after "[", found "}"',
    );
    const y = json('{"nodes": [}', "c.yaml").message;
    expect(y).toMatch(/^c\.yaml:1: /);
    expect(y).not.toMatch(/JSON/);
    // valid JSON still reads, with lines for later errors
    expect(json('{\n"defaults": {"arch": "sparc"},\n"nodes": [{"name": "n1"}]\n}').message).toBe(
      'c.json:2: defaults.arch: must be one of x86_64, i386, arm64, riscv64, ppc64le; got "sparc"',
    );
  });
  it("deep nesting is an error, not a stack overflow", () => {
    expect(json("[".repeat(200_000)).message).toBe(
      'c.json:1:200001: JSON syntax error: expected a value after "[", found the end of the file',
    );
  });
  it("agrees with JSON.parse on what is JSON, over thousands of damaged texts", () => {
    const good = JSON.stringify(
      {
        defaults: { cmdline: ["a=1", "b"], memory: "2G", n: -1.5e3, t: true, f: false, z: null },
        nodes: [{ name: "n[1-4]", e: '\\u00e9"' }],
        x: [],
      },
      null,
      1,
    );
    const alphabet = " {}[],:\"\\\n\tabcenrtu0123456789-+.eE/'";
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    let invalid = 0;
    for (let k = 0; k < 5000; k++) {
      const chars = [...good];
      for (let m = 1 + rand(3); m > 0; m--) {
        const at = rand(chars.length);
        const op = rand(3);
        if (op === 0) chars.splice(at, 1);
        else if (op === 1) chars.splice(at, 0, alphabet[rand(alphabet.length)]!);
        else chars[at] = alphabet[rand(alphabet.length)]!;
      }
      const text = chars.join("");
      let parses = true;
      try {
        JSON.parse(text);
      } catch {
        parses = false;
      }
      if (!parses) invalid++;
      expect(jsonSyntaxError(text) === undefined, text).toBe(parses);
    }
    expect(invalid).toBeGreaterThan(1000);
  });
});
