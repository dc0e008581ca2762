// The `bootcfg` command: main(argv, io) so tests run it in-process; src/bin/bootcfg.ts calls it.
import { existsSync, fstatSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { argsMistake } from "@clustermatic/ninep/args";
import { checkCluster } from "./check.js";
import { Cluster } from "./cluster/resolve.js";
import { cbfstoolCommandLine, corebootConfig, payloadBuildCommandLine } from "./coreboot.js";
import { BootcfgError } from "./errors.js";
import { FileCache, STDOUT_NAMES, withOutputs, writeOutput } from "./files.js";
import { writeBeoboot } from "./formats/beoboot.js";
import { extractVmlinux, isBzImage } from "./formats/bzimage.js";
import { CBFS_TYPE_SELF, cbfsAddFile, createCbfs, elfToSelf } from "./formats/cbfs.js";
import { decodeWithTool } from "./formats/compress.js";
import type { CpioEntry } from "./formats/cpio.js";
import { isElf, parseElf } from "./formats/elf.js";
import { splitInitramfs } from "./formats/initramfs.js";
import { bzImageToSelf, type LinuxPayload } from "./formats/self-linux.js";
import { uimageProblem, writeUImage } from "./formats/uimage.js";
import { buildOverlay, parseDeviceSpec, writeInitramfs } from "./initrd.js";
import { inspectFile } from "./inspect.js";
import {
  combinedInitrd,
  diffManifests,
  manifest,
  PlanCache,
  planNode,
  renderKexecSh,
  renderPlanJson,
  renderXbootfs,
  TOOL,
} from "./plan.js";
import {
  publishedNameProblems,
  publishedNames,
  pxeIpName,
  pxeMacName,
  renderIpxe,
  renderIpxeDispatch,
  renderPxelinux,
} from "./pxe.js";
import { consoleFor, qemuArgs, runUntil } from "./qemu.js";
import { renderInspection, renderShow, toJson } from "./report.js";
import { formatBytes, hex, parseSize } from "./util.js";
import { PACKAGE_VERSION } from "./version.js";

export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Working directory for relative paths (default process.cwd()). */
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** For `serve`: resolves when the server should stop (default: SIGINT/SIGTERM). */
  until?: Promise<void>;
  /** For `serve`: called with the bound address once listening. */
  onListen?(address: string): void;
}

const USAGE = `usage: bootcfg [-c FILE] COMMAND [options]

Describe, check, build and hand over the boot artifacts of every node of a cluster.

Image files:
  inspect FILE [--json]                     decode a kernel, initrd, CBFS, uImage, beoboot file
  extract-vmlinux BZIMAGE -o OUT            decompress the ELF vmlinux inside a bzImage
  initrd build -o OUT [--tree DIR]... [--dev PATH:c:MAJ:MIN[:MODE]]... [--file DEST=SRC]...
                      [--no-gzip] [--level 0-9] [--keep-mtime] [--mtime SECONDS] [--json]
                                            write a reproducible newc initramfs (gzip unless --no-gzip;
                                            every mtime 0 unless --mtime, tree files' own with --keep-mtime)
  payload build KERNEL -o OUT [--cmdline S] [--initrd FILE [--initrd-addr ADDR]]
                      [--rom ROM | --create-rom SIZE] [--name NAME] [--json]
                                            coreboot SELF payload from an x86 bzImage (with our own
                                            trampoline, cmdline and initrd) or an ELF; optionally into a CBFS
  uimage KERNEL -o OUT --arch ARCH --load ADDR [--entry ADDR] [--name NAME]
                                            wrap a kernel in a legacy U-Boot header

Cluster file (-c FILE, $BOOTCFG_CLUSTER, or ./cluster.yaml|cluster.yml|cluster.json):
  nodes [--json]                            list nodes
  show NODE [--json]                        merged settings of a node and where each came from
  check [CLUSTERFILE] [--node LIST] [--json]  prove every node's kernel, initrds, cmdline and delivery fit
  initrd overlay NODE -o OUT                the node's overlay archive (uncompressed newc)
  initrd combine NODE -o OUT                base initrds + overlay, as the node receives them
  kexec-plan NODE [--format json|sh|xbootfs|beoboot] [-o OUT]
  coreboot NODE [--format kconfig|payload|cbfstool|config.lb|json] [-o DIR] [--rom ROM] [--linuxboot]
                                            payload: the recommended \`bootcfg payload build\` command (x86)
  pxe -o DIR [--by-ip]                      pxelinux.cfg/01-<mac> (and hex-IP) files for pxe nodes
  ipxe -o DIR                               ipxe/<mac>.ipxe per ipxe node, and boot.ipxe
  qemu NODE [--run] [--marker RE] [--timeout SEC] [--accel tcg|kvm|auto] [--memory SIZE] [--initrd-out FILE]
                      [--json]
  manifest (NODE | --all) [--json]          inputs by hash, tool, profile chain
  render -o DIR                             every node's plan, manifest, overlay and loader files
  diff OLD NEW [--json]                     which nodes boot differently (cluster files or manifest sets)
  serve CLUSTERFILE --listen ADDR           export each node's kernel/initrd/cmdline/kexec.sh/manifest.json over 9P

  --version, -V                             print "bootcfg <version>"

Exit status: 0 ok, 1 failure (check failed, bad file), 2 usage error. Run "bootcfg COMMAND --help" for details.
`;

class UsageError extends BootcfgError {
  constructor(message: string) {
    super("EUSAGE", message);
  }
}

/** A command line the option parser refused; main() adds where the command's help is. */
class OptionError extends UsageError {}

type Opts = NonNullable<ParseArgsConfig["options"]>;
const common: Opts = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
  cluster: { type: "string", short: "c" },
  output: { type: "string", short: "o" },
};

function parse(args: string[], options: Opts, dirOutput = false) {
  try {
    const a = parseArgs({ args, options: { ...common, ...options }, allowPositionals: true, strict: true });
    // `-o -` is standard output, as for most tools (not a file named "-"); a directory cannot be
    if (a.values.output === "-") {
      if (dirOutput) throw new UsageError("-o -: -o names a directory here, not standard output");
      a.values.output = "/dev/stdout";
    }
    return a;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new OptionError(argsMistake(err));
  }
}

/**
 * `bootcfg -c FILE COMMAND …` as well as `bootcfg COMMAND -c FILE …`: a cluster file given before
 * the command is moved after it, where every command's options are parsed.
 */
function clusterFirst(argv: string[]): string[] {
  const args = [...argv];
  const moved: string[] = [];
  for (;;) {
    const first = args[0];
    if ((first === "-c" || first === "--cluster") && args.length >= 2)
      moved.push("--cluster", ...args.splice(0, 2).slice(1));
    else if (first?.startsWith("--cluster=")) moved.push(args.shift() as string);
    else if (first?.startsWith("-c") && first.length > 2)
      moved.push("--cluster", (args.shift() as string).slice(2));
    else break;
  }
  const [cmd, ...rest] = args;
  return cmd === undefined ? [] : [cmd, ...moved, ...rest];
}

export async function main(argv: string[], io: Io): Promise<number> {
  const cwd = io.cwd ?? process.cwd();
  const env = io.env ?? process.env;
  const abs = (p: string) => resolve(cwd, p);
  const [cmd, ...rest] = clusterFirst(argv);
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    // no command at all is a usage error: the commands are the answer, on stderr
    if (cmd) io.stdout(USAGE);
    else io.stderr(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === "--version" || cmd === "-V") {
    io.stdout(`bootcfg ${PACKAGE_VERSION}\n`);
    return 0;
  }
  const loadCluster = (explicit?: string): Cluster => {
    const file =
      explicit ??
      env.BOOTCFG_CLUSTER ??
      ["cluster.yaml", "cluster.yml", "cluster.json"].map((f) => join(cwd, f)).find((f) => existsSync(f));
    if (!file)
      throw new UsageError(
        "no cluster file: pass -c FILE, set BOOTCFG_CLUSTER, or create ./cluster.yaml (or cluster.yml, cluster.json)",
      );
    return Cluster.load(abs(file));
  };
  const out = (text: string, file?: string) => {
    if (file) writeOutput(abs(file), text);
    else io.stdout(text);
  };
  // what a command says about a file it wrote: on stderr when that file is our standard output
  // (`-o /dev/stdout`), whose bytes must be the artifact alone
  const report = (output: string) => (isStdout(abs(output)) ? io.stderr : io.stdout);
  // more arguments than a command takes are a mistake (a second file would be silently ignored)
  const atMost = (positionals: string[], n: number, takes: string) => {
    if (positionals.length > n)
      throw new UsageError(`${cmd}: unexpected argument "${positionals[n]}" (${cmd} takes ${takes})`);
  };
  const need = (v: unknown, what: string): string => {
    if (typeof v !== "string" || v === "") throw new UsageError(`${cmd}: ${what} is required`);
    return v;
  };
  const helpFor = (what: string) => {
    const lines = USAGE.split("\n");
    const at = lines.findIndex((l) => l.startsWith(`  ${what}`));
    const block =
      at < 0
        ? []
        : [
            lines[at]!,
            ...lines.slice(at + 1).filter((_, i, a) => a.slice(0, i + 1).every((l) => /^ {20,}/.test(l))),
          ];
    io.stdout(
      `usage: bootcfg${block.join("\n").replace(/^ /, "")}\n\nExit status: 0 ok, 1 failure, 2 usage error. See "bootcfg --help" for all commands.\n`,
    );
    return 0;
  };

  try {
    switch (cmd) {
      case "inspect": {
        const a = parse(rest, {});
        if (a.values.help) return helpFor("inspect");
        atMost(a.positionals, 1, "one FILE");
        const file = need(a.positionals[0], "FILE");
        const info = inspectFile(abs(file));
        out(a.values.json ? `${toJson(info)}\n` : renderInspection(info));
        // what was found is printed; a kernel its loader would refuse is still a damaged file
        const problem = info.format === "uimage" ? uimageProblem(info, info.size) : undefined;
        if (problem) {
          io.stderr(`bootcfg: ${abs(file)}: ${problem}\n`);
          return 1;
        }
        return 0;
      }
      case "extract-vmlinux": {
        const a = parse(rest, {});
        if (a.values.help) return helpFor("extract-vmlinux");
        atMost(a.positionals, 1, "one BZIMAGE");
        const file = abs(need(a.positionals[0], "BZIMAGE"));
        const output = need(a.values.output, "-o OUT");
        const buf = readInput(file);
        const { elf, info } = extractVmlinux(buf, file);
        const e = parseElf(elf, "extracted vmlinux");
        writeOutput(abs(output), elf);
        const summary = {
          output: abs(output),
          size: elf.length,
          compression: info.payload.compression,
          machine: e.machineName,
          entry: e.entry,
          pvhEntry: e.pvhEntry,
        };
        report(output)(
          a.values.json
            ? `${toJson(summary)}\n`
            : `${output}: ${elf.length} bytes, ELF${e.class} ${e.machineName}, entry ${e.entry.toString(16)} (from ${info.payload.compression} payload)\n`,
        );
        return 0;
      }
      case "initrd":
        return await initrdCmd(rest);
      case "payload": {
        const [sub, ...r] = rest;
        if (sub === "--help" || sub === "-h") return helpFor("payload build");
        const a = parse(r, {
          rom: { type: "string" },
          "create-rom": { type: "string" },
          name: { type: "string" },
          cmdline: { type: "string" },
          initrd: { type: "string" },
          "initrd-addr": { type: "string" },
        });
        if (a.values.help || sub !== "build")
          return sub === "build" || a.values.help
            ? helpFor("payload build")
            : usage(`payload: unknown subcommand ${sub ?? "(none)"}; use "payload build"`);
        atMost(a.positionals, 1, "one KERNEL");
        const kernelPath = abs(need(a.positionals[0], "KERNEL"));
        const output = need(a.values.output, "-o OUT");
        if (a.values.rom && a.values["create-rom"])
          throw new UsageError("payload build: give --rom or --create-rom, not both");
        const input = readInput(kernelPath);
        const cmdline = a.values.cmdline as string | undefined;
        const initrdPath = a.values.initrd ? abs(a.values.initrd as string) : undefined;
        let initrdAddress: number | undefined;
        if (a.values["initrd-addr"] !== undefined) {
          initrdAddress = Number(a.values["initrd-addr"]);
          if (!initrdPath || !Number.isSafeInteger(initrdAddress) || initrdAddress < 0)
            throw new UsageError("--initrd-addr takes an address (0x8000000) and needs --initrd");
        }
        let self: Buffer;
        let linux: LinuxPayload | undefined;
        if (isBzImage(input)) {
          linux = bzImageToSelf(
            input,
            {
              ...(cmdline !== undefined ? { cmdline } : {}),
              ...(initrdPath ? { initrd: readInitramfs(initrdPath) } : {}),
              ...(initrdAddress !== undefined ? { initrdAddress } : {}),
            },
            kernelPath,
          );
          self = linux.self;
        } else {
          if (!isElf(input))
            throw new BootcfgError(
              "EFORMAT",
              `${kernelPath}: neither an x86 bzImage (no 0xAA55 boot flag and "HdrS" header) nor an ELF`,
            );
          if (cmdline !== undefined || initrdPath)
            throw new UsageError(
              "payload build: --cmdline and --initrd need a bzImage; an ELF payload is loaded as it is",
            );
          self = elfToSelf(input, {}, kernelPath);
        }
        const name = (a.values.name as string | undefined) ?? "fallback/payload";
        const inRom = Boolean(a.values.rom || a.values["create-rom"]);
        if (inRom) {
          let rom: Buffer;
          if (a.values.rom) rom = readInput(abs(a.values.rom as string));
          else {
            const size = parseSize(a.values["create-rom"] as string);
            if (!size)
              throw new UsageError(`--create-rom: "${a.values["create-rom"]}" is not a size (write 1M, 32M)`);
            if (size > 0xffffffff)
              throw new UsageError(
                `--create-rom ${a.values["create-rom"]}: a CBFS image is below 4 GiB (its sizes are 32-bit fields)`,
              );
            rom = createCbfs(size);
          }
          writeOutput(abs(output), cbfsAddFile(rom, name, CBFS_TYPE_SELF, self));
        } else writeOutput(abs(output), self);
        const say = report(output);
        if (a.values.json)
          say(
            `${toJson({
              output: abs(output),
              selfSize: self.length,
              kind: linux ? "bzImage" : "elf",
              ...(inRom ? { name } : {}),
              ...(linux
                ? {
                    protocol: linux.protocol,
                    entry: linux.entry,
                    kernelLoad: linux.kernelLoad,
                    cmdline: linux.cmdline,
                    initrd: linux.initrd ?? null,
                    minMemory: linux.minMemory,
                    segments: linux.ranges,
                  }
                : {}),
            })}\n`,
          );
        else {
          const where = inRom ? ` as ${name}` : "";
          say(`${output}: SELF payload of ${self.length} bytes${where}\n`);
          if (linux) {
            for (const g of linux.ranges)
              say(
                `  ${g.type.padEnd(4)} ${g.name.padEnd(12)} load ${hex(g.start, 8)}  length ${g.len}/${g.memLen}\n`,
              );
            say(
              `  entry ${hex(linux.entry, 8)} (trampoline); needs RAM up to ${hex(linux.minMemory)} (${formatBytes(linux.minMemory)})\n`,
            );
          }
        }
        return 0;
      }
      case "uimage": {
        const a = parse(rest, {
          arch: { type: "string" },
          load: { type: "string" },
          entry: { type: "string" },
          name: { type: "string" },
        });
        if (a.values.help) return helpFor("uimage");
        atMost(a.positionals, 1, "one KERNEL");
        const k = abs(need(a.positionals[0], "KERNEL"));
        const arch = need(a.values.arch, "--arch") as "arm64";
        if (!["arm", "arm64", "riscv", "x86_64", "i386", "ppc"].includes(arch))
          throw new UsageError(`--arch ${arch}: use arm, arm64, riscv, x86_64, i386 or ppc`);
        const load = Number(need(a.values.load, "--load ADDR"));
        const entry = a.values.entry ? Number(a.values.entry) : load;
        if (!Number.isInteger(load) || !Number.isInteger(entry))
          throw new UsageError("--load/--entry must be numbers (0x80080000)");
        const img = writeUImage(readInput(k), {
          arch,
          load,
          entry,
          name: (a.values.name as string | undefined) ?? "Linux",
        });
        writeOutput(abs(need(a.values.output, "-o OUT")), img);
        return 0;
      }
      case "nodes": {
        const a = parse(rest, {});
        if (a.values.help) return helpFor("nodes");
        atMost(a.positionals, 0, "no arguments");
        const c = loadCluster(a.values.cluster as string | undefined);
        out(a.values.json ? `${toJson(c.nodes())}\n` : `${c.nodes().join("\n")}\n`);
        return 0;
      }
      case "show": {
        const a = parse(rest, {});
        if (a.values.help) return helpFor("show");
        atMost(a.positionals, 1, "one NODE");
        const c = loadCluster(a.values.cluster as string | undefined);
        const n = c.resolve(need(a.positionals[0], "NODE"));
        out(a.values.json ? `${toJson(n)}\n` : renderShow(n));
        return 0;
      }
      case "check": {
        const a = parse(rest, { node: { type: "string" } });
        if (a.values.help) return helpFor("check");
        atMost(a.positionals, 1, "at most one CLUSTERFILE");
        const c = loadCluster(
          (a.positionals[0] as string | undefined) ?? (a.values.cluster as string | undefined),
        );
        let only: string[] | undefined;
        if (a.values.node) {
          const { expandNodeList } = await import("@clustermatic/ninep/nodes");
          only = expandNodeList(a.values.node as string);
          for (const n of only)
            if (!c.has(n)) throw new BootcfgError("ENODE", `${n}: no such node in ${c.file}`);
        }
        const r = checkCluster(c, new FileCache(), only);
        if (a.values.json) out(`${toJson(r)}\n`);
        else {
          for (const n of r.nodes) {
            for (const w of n.warnings) io.stdout(`warning: ${w}\n`);
            for (const e of n.errors) io.stdout(`error: ${e}\n`);
          }
          const bad = r.nodes.filter((n) => !n.ok).length;
          io.stdout(`${r.nodes.length} nodes checked: ${r.nodes.length - bad} ok, ${bad} failed\n`);
        }
        return r.ok ? 0 : 1;
      }
      case "kexec-plan": {
        const a = parse(rest, { format: { type: "string" }, baseport: { type: "string" } });
        if (a.values.help) return helpFor("kexec-plan");
        atMost(a.positionals, 1, "one NODE");
        const c = loadCluster(a.values.cluster as string | undefined);
        const files = new FileCache();
        const p = planNode(c, c.resolve(need(a.positionals[0], "NODE")), new PlanCache(files));
        const fmt = (a.values.format as string | undefined) ?? (a.values.json ? "json" : "sh");
        if (fmt === "json") out(`${toJson(renderPlanJson(c, p))}\n`, a.values.output as string | undefined);
        else if (fmt === "sh") out(renderKexecSh(p), a.values.output as string | undefined);
        else if (fmt === "xbootfs") {
          const idx = c.nodes().indexOf(p.node.name);
          const given = a.values.baseport as string | undefined;
          const base = given !== undefined ? Number(given) : 20002 + 2 * idx;
          // xbootfs serves the kernel on BASEPORT and the initrd on BASEPORT+1
          if (given !== undefined && !(Number.isInteger(base) && base >= 1 && base <= 65534))
            throw new UsageError(
              `--baseport ${given}: expected a port from 1 to 65534 (the initrd uses the next one)`,
            );
          if (base > 65534)
            throw new BootcfgError(
              "ECHECK",
              `${p.node.name}: the default BASEPORT for node number ${idx + 1} would be ${base}, past the last port; give --baseport`,
            );
          out(renderXbootfs(p, base), a.values.output as string | undefined);
        } else if (fmt === "beoboot") {
          if (p.kernelFormat !== "bzImage")
            throw new BootcfgError(
              "ECHECK",
              `${p.node.name}: beoboot images carry a bzImage, not ${p.kernelFormat}`,
            );
          const o = need(a.values.output, "-o OUT (beoboot images are binary)");
          writeOutput(abs(o), writeBeoboot(files.read(p.kernelPath), combinedInitrd(p, files), p.cmdline));
        } else throw new UsageError(`--format ${fmt}: use json, sh, xbootfs or beoboot`);
        return 0;
      }
      case "coreboot": {
        const a = parse(
          rest,
          {
            format: { type: "string" },
            rom: { type: "string" },
            linuxboot: { type: "boolean" },
          },
          true,
        );
        if (a.values.help) return helpFor("coreboot");
        atMost(a.positionals, 1, "one NODE");
        const fmt = (a.values.format as string | undefined) ?? (a.values.json ? "json" : "kconfig");
        if (!["json", "kconfig", "cbfstool", "payload", "config.lb"].includes(fmt))
          throw new UsageError(`--format ${fmt}: use kconfig, payload, cbfstool, config.lb or json`);
        const c = loadCluster(a.values.cluster as string | undefined);
        const files = new FileCache();
        const p = planNode(c, c.resolve(need(a.positionals[0], "NODE")), new PlanCache(files));
        // Without -o nothing is written: the configuration names the initrd as NODE.initrd, which
        // `initrd combine` writes (a fixed name in a shared /tmp could be planted by another user).
        const dir = a.values.output ? abs(a.values.output as string) : undefined;
        const initrdPath = dir ? join(dir, `${p.node.name}.initrd`) : `${p.node.name}.initrd`;
        const initrd = combinedInitrd(p, files);
        if (!dir)
          io.stderr(
            `note: ${initrdPath} is not written without -o DIR; \`bootcfg initrd combine ${p.node.name} -o ${initrdPath}\` writes it\n`,
          );
        // The initrd and the node's .config change together (see OutputBatch).
        const { cfg, payloadLayout } = withOutputs((outputs) => {
          if (dir) {
            outputs.mkdir(dir);
            outputs.write(initrdPath, initrd);
          }
          const cfg = corebootConfig(p, initrdPath, {
            ...(a.values.rom ? { rom: abs(a.values.rom as string) } : {}),
            ...(a.values.linuxboot ? { linuxboot: true } : {}),
          });
          // the payload bootcfg would build: does its fixed layout fit the node?
          let payloadLayout: Record<string, unknown> | undefined;
          if (cfg.payloadBuild && p.kernelFormat === "bzImage") {
            try {
              const l = bzImageToSelf(files.read(p.kernelPath), { cmdline: p.cmdline, initrd }, p.kernelPath);
              payloadLayout = {
                entry: l.entry,
                kernelLoad: l.kernelLoad,
                initrd: l.initrd ?? null,
                minMemory: l.minMemory,
              };
              if (p.node.memory && l.minMemory > p.node.memory)
                cfg.warnings.push(
                  `${p.node.name}: the payload's layout needs RAM up to ${formatBytes(l.minMemory)}, the node has ${formatBytes(p.node.memory)}`,
                );
            } catch (err) {
              if (!(err instanceof BootcfgError)) throw err;
              cfg.warnings.push(`${p.node.name}: \`bootcfg payload build\` would fail: ${err.message}`);
            }
          }
          for (const w of cfg.warnings) io.stderr(`warning: ${w}\n`);
          if (fmt !== "payload" && fmt !== "config.lb")
            for (const w of cfg.cbfstoolWarnings) io.stderr(`warning: ${w}\n`);
          if (dir) outputs.write(join(dir, `${p.node.name}.config`), cfg.kconfig);
          return { cfg, payloadLayout };
        });
        if (fmt === "json")
          io.stdout(
            `${toJson({ ...cfg, initrd: initrdPath, ...(payloadLayout ? { payloadLayout } : {}) })}\n`,
          );
        else if (fmt === "kconfig") io.stdout(cfg.kconfig);
        else if (fmt === "cbfstool") io.stdout(`${cbfstoolCommandLine(cfg)}\n`);
        else if (fmt === "payload") {
          const line = payloadBuildCommandLine(cfg);
          if (!line)
            throw new BootcfgError(
              "ECHECK",
              `${p.node.name}: \`bootcfg payload build\` makes x86 payloads from a bzImage or ELF; this node has ${p.node.arch} ${p.kernelFormat}`,
            );
          io.stdout(`${line}\n`);
        } else io.stdout(cfg.configLb); // config.lb: the format was checked before anything was written
        return 0;
      }
      case "pxe":
      case "ipxe": {
        const a = parse(rest, { "by-ip": { type: "boolean" } }, true);
        if (a.values.help) return helpFor(cmd);
        atMost(a.positionals, 0, "no arguments besides -o DIR");
        const c = loadCluster(a.values.cluster as string | undefined);
        const dir = abs(need(a.values.output, "-o DIR"));
        const published = c
          .nodes()
          .map((n) => c.resolve(n))
          .filter((r) => r.delivery === cmd);
        const problems = publishedNameProblems(published, (p) => c.path(p));
        if (problems.length) throw new BootcfgError("ECHECK", problems.join("\n"));
        const cache = new PlanCache(new FileCache());
        const index: Record<string, string[]> = {};
        // Every node's files or none (see OutputBatch).
        withOutputs((o) => {
          o.mkdir(dir); // also with no node of this delivery: the index and boot.ipxe go there
          for (const r of published) {
            const name = r.name;
            if (!r.mac) throw new BootcfgError("ECHECK", `${name}: delivery "${cmd}" needs a mac address`);
            const p = planNode(c, r, cache);
            const written: string[] = [];
            if (cmd === "pxe") {
              o.mkdir(join(dir, "pxelinux.cfg"));
              const text = renderPxelinux(p);
              const f = `pxelinux.cfg/${pxeMacName(r.mac)}`;
              o.write(join(dir, f), text);
              written.push(f);
              if (a.values["by-ip"] && r.ip) {
                const g = `pxelinux.cfg/${pxeIpName(r.ip)}`;
                o.write(join(dir, g), text);
                written.push(g);
              }
            } else {
              o.mkdir(join(dir, "ipxe"));
              const f = `ipxe/${r.mac.replaceAll(":", "-")}.ipxe`;
              o.write(join(dir, f), renderIpxe(p));
              written.push(f);
            }
            const names = publishedNames(p);
            o.write(join(dir, names.initrds.at(-1)!), p.overlay);
            // iPXE outside x86 takes one initrd: publish the concatenation the script names
            if (cmd === "ipxe" && r.arch !== "x86_64" && r.arch !== "i386") {
              o.write(join(dir, names.combined), combinedInitrd(p, cache.files));
              written.push(names.combined);
            }
            index[name] = written;
          }
          if (cmd === "pxe") {
            o.mkdir(join(dir, "pxelinux.cfg"));
            o.write(
              join(dir, "pxelinux.cfg/default"),
              `# written by ${TOOL}: nodes without their own file boot from disk\nDEFAULT local\nPROMPT 0\nLABEL local\n  LOCALBOOT 0\n`,
            );
          } else {
            o.write(join(dir, "boot.ipxe"), renderIpxeDispatch(published[0]?.baseUrl));
          }
          o.write(join(dir, `${cmd}-index.json`), `${toJson(index)}\n`);
        });
        out(
          a.values.json
            ? `${toJson(index)}\n`
            : `${Object.keys(index).length} ${cmd} node configs written to ${dir}\n`,
        );
        return 0;
      }
      case "qemu": {
        const a = parse(rest, {
          run: { type: "boolean" },
          marker: { type: "string" },
          timeout: { type: "string" },
          accel: { type: "string" },
          "initrd-out": { type: "string" },
          memory: { type: "string" },
        });
        if (a.values.help) return helpFor("qemu");
        atMost(a.positionals, 1, "one NODE");
        // Options first: a bad one must not start (or write the initrd for) a QEMU run.
        const accel = (a.values.accel as string | undefined) ?? "tcg";
        if (!["tcg", "kvm", "auto"].includes(accel))
          throw new UsageError(`--accel ${accel}: use tcg, kvm or auto`);
        const memOpt = a.values.memory as string | undefined;
        const memArg = memOpt === undefined ? undefined : parseSize(memOpt);
        if (memOpt !== undefined && !memArg)
          throw new UsageError(`--memory ${memOpt}: expected a size such as 512M or 2G`);
        const timeoutText = (a.values.timeout as string | undefined) ?? "60";
        const timeout = Number(timeoutText) * 1000;
        if (!(timeout > 0 && Number.isFinite(timeout)))
          throw new UsageError(`--timeout ${timeoutText}: expected a number of seconds greater than 0`);
        let marker: RegExp;
        try {
          marker = new RegExp((a.values.marker as string | undefined) ?? "reboot: Power down");
        } catch (err) {
          throw new UsageError(`--marker: ${(err as Error).message}`);
        }
        const c = loadCluster(a.values.cluster as string | undefined);
        const files = new FileCache();
        const p = planNode(c, c.resolve(need(a.positionals[0], "NODE")), new PlanCache(files));
        // The combined initrd goes where --initrd-out says; for --run without it, into a fresh
        // private directory removed after the run; printing the command writes nothing.
        const given = a.values["initrd-out"] as string | undefined;
        let privateDir: string | undefined;
        let initrdOut: string;
        if (given !== undefined) initrdOut = abs(given);
        else if (a.values.run) {
          privateDir = mkdtempSync(join(tmpdir(), "bootcfg-qemu-"));
          initrdOut = join(privateDir, `${p.node.name}.initrd`);
        } else {
          initrdOut = `${p.node.name}.initrd`;
          io.stderr(
            `note: ${initrdOut} is not written without --initrd-out FILE or --run; \`bootcfg initrd combine ${p.node.name} -o ${initrdOut}\` writes it\n`,
          );
        }
        if (given !== undefined || privateDir) writeOutput(initrdOut, combinedInitrd(p, files));
        const mem = memArg ?? p.node.memory;
        const argv = qemuArgs({
          arch: p.node.arch,
          kernel: p.kernelPath,
          initrd: initrdOut,
          append: p.cmdline,
          memory: mem ? Math.max(64, Math.round(mem / 1024 ** 2)) : 512,
          accel,
        });
        if (!p.cmdline.includes(`console=${consoleFor(p.node.arch)}`))
          io.stderr(
            `warning: ${p.node.name}: command line has no console=${consoleFor(p.node.arch)}; serial output may be empty\n`,
          );
        if (!a.values.run) {
          report(initrdOut)(
            a.values.json
              ? `${toJson(argv)}\n`
              : `${argv.map((s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`)).join(" ")}\n`,
          );
          return 0;
        }
        let r: Awaited<ReturnType<typeof runUntil>>;
        try {
          r = await runUntil(argv, marker, timeout, a.values.json ? undefined : (l) => io.stdout(`${l}\n`));
        } finally {
          if (privateDir) rmSync(privateDir, { recursive: true, force: true });
        }
        if (a.values.json) out(`${toJson({ ok: r.ok, reason: r.reason, ms: r.ms, match: r.match, argv })}\n`);
        else
          io.stderr(
            `bootcfg: ${r.ok ? "marker seen" : r.reason === "timeout" ? "timed out" : "QEMU exited"} after ${(r.ms / 1000).toFixed(1)} s\n`,
          );
        return r.ok ? 0 : 1;
      }
      case "manifest": {
        const a = parse(rest, { all: { type: "boolean" } });
        if (a.values.help) return helpFor("manifest");
        atMost(a.positionals, 1, "one NODE or --all");
        if (a.values.all && a.positionals.length > 0)
          throw new UsageError(`manifest: NODE (${a.positionals[0]}) or --all, not both`);
        const c = loadCluster(a.values.cluster as string | undefined);
        const cache = new PlanCache(new FileCache());
        if (a.values.all) {
          const set = Object.fromEntries(
            c.nodes().map((n) => [n, manifest(c, planNode(c, c.resolve(n), cache))]),
          );
          out(`${toJson({ manifests: set })}\n`, a.values.output as string | undefined);
        } else
          out(
            `${toJson(manifest(c, planNode(c, c.resolve(need(a.positionals[0], "NODE or --all")), cache)))}\n`,
            a.values.output as string | undefined,
          );
        return 0;
      }
      case "render": {
        const a = parse(rest, {}, true);
        if (a.values.help) return helpFor("render");
        atMost(a.positionals, 0, "no arguments besides -o DIR");
        const c = loadCluster(a.values.cluster as string | undefined);
        const dir = abs(need(a.values.output, "-o DIR"));
        const n = renderCluster(c, dir);
        out(`${n} nodes rendered to ${dir}\n`);
        return 0;
      }
      case "diff": {
        const a = parse(rest, {});
        if (a.values.help) return helpFor("diff");
        atMost(a.positionals, 2, "OLD and NEW");
        const oldFile = need(a.positionals[0], "OLD");
        const newFile = need(a.positionals[1], "NEW");
        const changes = diffManifests(manifestSet(abs(oldFile)), manifestSet(abs(newFile)));
        if (a.values.json) out(`${toJson(changes)}\n`);
        else if (changes.length === 0) out("no node boots differently\n");
        else
          out(
            changes
              .map(
                (ch) =>
                  `${ch.change.padEnd(8)} ${ch.node}${ch.fields.length ? `: ${ch.fields.join(", ")}` : ""}`,
              )
              .join("\n") + "\n",
          );
        return changes.length ? 1 : 0;
      }
      case "serve": {
        const a = parse(rest, { listen: { type: "string" }, msize: { type: "string" } });
        if (a.values.help) return helpFor("serve");
        atMost(a.positionals, 1, "one CLUSTERFILE");
        const listen = need(a.values.listen, "--listen ADDR");
        const c = loadCluster(
          (a.positionals[0] as string | undefined) ?? (a.values.cluster as string | undefined),
        );
        const { serveCluster } = await import("./serve.js");
        const srv = await serveCluster(c, listen);
        io.onListen?.(srv.address);
        io.stderr(`bootcfg: serving ${c.nodes().length} nodes of ${c.file} on ${srv.address}\n`);
        await (io.until ??
          new Promise<void>((res) => {
            process.once("SIGINT", () => res());
            process.once("SIGTERM", () => res());
          }));
        await srv.close();
        return 0;
      }
      default:
        return usage(cmd.startsWith("-") ? `unknown option ${cmd}` : `unknown command "${cmd}"`);
    }
  } catch (err) {
    if (err instanceof OptionError) {
      io.stderr(`bootcfg: ${err.message} (see bootcfg ${cmd} --help)\n`);
      return 2;
    }
    if (err instanceof BootcfgError) {
      io.stderr(`bootcfg: ${err.message}\n`);
      return err.code === "EUSAGE" ? 2 : 1;
    }
    if (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === "string") {
      // A system call that failed outside the file helpers (a mkdir on a full disk, say).
      io.stderr(`bootcfg: ${err.message}\n`);
      return 1;
    }
    if (
      err &&
      typeof err === "object" &&
      "code" in err &&
      (err as { code: string }).code === "E9P_NODELIST"
    ) {
      io.stderr(`bootcfg: ${(err as unknown as Error).message}\n`);
      return 2;
    }
    throw err;
  }

  function usage(msg: string): number {
    io.stderr(`bootcfg: ${msg} (see bootcfg --help)\n`);
    return 2;
  }

  async function initrdCmd(args: string[]): Promise<number> {
    const [sub, ...r] = args;
    if (sub === "--help" || sub === "-h") return helpFor("initrd");
    const a = parse(r, {
      tree: { type: "string", multiple: true },
      dev: { type: "string", multiple: true },
      file: { type: "string", multiple: true },
      "no-gzip": { type: "boolean" },
      level: { type: "string" },
      "keep-mtime": { type: "boolean" },
      mtime: { type: "string" },
    });
    if (a.values.help) return helpFor(`initrd ${sub ?? "build"}`);
    if (sub === undefined) throw new UsageError("initrd: give build, overlay or combine");
    if (!["build", "overlay", "combine"].includes(sub))
      throw new UsageError(`initrd: unknown command "${sub}" (build, overlay or combine)`);
    const output = abs(need(a.values.output, "-o OUT"));
    if (sub === "build") {
      atMost(a.positionals, 0, "no arguments besides its options (--tree, --file, --dev)");
      const entries: CpioEntry[] = [];
      for (const d of (a.values.dev as string[] | undefined) ?? []) entries.push(parseDeviceSpec(d));
      for (const f of (a.values.file as string[] | undefined) ?? []) {
        const eq = f.indexOf("=");
        if (eq <= 0) throw new UsageError(`--file ${f}: write DEST=SRC (e.g. bin/busybox=/bin/busybox)`);
        const src = abs(f.slice(eq + 1));
        if (!existsSync(src)) throw new BootcfgError("EIO", `--file ${f}: ${src}: no such file`);
        const st = statSync(src);
        if (st.isDirectory())
          throw new BootcfgError("EIO", `--file ${f}: ${src} is a directory (copy directories with --tree)`);
        // A FIFO or a device would be read for ever, or its contents taken for a file's.
        if (!st.isFile())
          throw new BootcfgError(
            "EIO",
            `--file ${f}: ${src} is not a regular file (make device nodes with --dev)`,
          );
        // The source's permission bits, as --tree keeps them (a script stays executable, a config file does not become so).
        entries.push({ name: f.slice(0, eq), type: "file", perm: st.mode & 0o7777, source: src });
      }
      const trees = ((a.values.tree as string[] | undefined) ?? []).map(abs);
      for (const t of trees)
        if (!existsSync(t)) throw new BootcfgError("EIO", `--tree ${t}: no such directory`);
        else if (!statSync(t).isDirectory()) throw new BootcfgError("EIO", `--tree ${t}: not a directory`);
      if (!trees.length && !entries.length)
        throw new UsageError("initrd build: give at least one --tree, --file or --dev");
      const mtimeText = a.values.mtime as string | undefined;
      if (mtimeText !== undefined && !(/^\d+$/.test(mtimeText) && Number(mtimeText) <= 0xffffffff))
        throw new UsageError(
          `--mtime ${mtimeText}: expected seconds since 1970 from 0 to 4294967295 (newc's 32 bits)`,
        );
      const level = a.values.level ? Number(a.values.level) : undefined;
      if (level !== undefined && !(level >= 0 && level <= 9)) throw new UsageError("--level must be 0..9");
      const r2 = await writeInitramfs(
        {
          trees,
          entries,
          tree: {
            ...(a.values["keep-mtime"] ? { keepMtime: true } : {}),
            ...(a.values.mtime ? { mtime: Number(a.values.mtime) } : {}),
          },
        },
        output,
        { compress: !a.values["no-gzip"], ...(level !== undefined ? { level } : {}) },
      );
      if (a.values.json) report(output)(`${toJson({ output, cpioBytes: r2.cpioBytes })}\n`);
      return 0;
    }
    if (sub === "overlay" || sub === "combine") {
      atMost(a.positionals, 1, "one NODE");
      const c = loadCluster(a.values.cluster as string | undefined);
      const node = c.resolve(need(a.positionals[0], "NODE"));
      if (sub === "overlay") writeOutput(output, buildOverlay(node));
      else {
        const files = new FileCache();
        writeOutput(output, combinedInitrd(planNode(c, node, new PlanCache(files)), files));
      }
      return 0;
    }
    return usage(`initrd: unknown subcommand ${sub ?? "(none)"}; use build, overlay or combine`);
  }
}

/** Reads an input file; what stops it (missing, a directory, past Node's 2 GiB) is one line naming it. */
function readInput(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === "ENOENT"
        ? "no such file"
        : e.code === "EISDIR"
          ? "a directory"
          : e.code === "ERR_FS_FILE_TOO_LARGE"
            ? e.message
            : (e.code ?? e.message);
    throw new BootcfgError("EIO", `${path}: cannot read it (${why})`, { cause: err });
  }
}

/** An initrd's bytes, refused (naming the offset and the problem) when the kernel could not unpack it. */
function readInitramfs(path: string): Buffer {
  const data = readInput(path);
  splitInitramfs(data, path, { decode: decodeWithTool });
  return data;
}

/** Whether `path` is this process's standard output: /dev/stdout, or the file or pipe fd 1 is. */
function isStdout(path: string): boolean {
  if (STDOUT_NAMES.has(path)) return true;
  try {
    const a = statSync(path);
    const b = fstatSync(1);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/** Reads a manifest set: a cluster file (manifests computed now) or `manifest --all` JSON output. */
export function manifestSet(file: string): Record<string, Record<string, unknown>> {
  let text: string;
  try {
    text = readInput(file).toString("utf8");
  } catch (err) {
    if (!(err instanceof BootcfgError)) throw err;
    throw new BootcfgError(
      "EIO",
      `${err.message}; diff compares two cluster files or \`manifest --all\` outputs`,
      { cause: err },
    );
  }
  if (file.endsWith(".json")) {
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch {}
    if (j && typeof j === "object" && "manifests" in j) {
      const m = (j as { manifests: unknown }).manifests;
      const isMap = (v: unknown) => v !== null && typeof v === "object" && !Array.isArray(v);
      if (!isMap(m) || !Object.values(m as object).every(isMap))
        throw new BootcfgError(
          "EFORMAT",
          `${file}: "manifests" is not a map of node → manifest (write it with \`bootcfg manifest --all\`)`,
        );
      return m as Record<string, Record<string, unknown>>;
    }
  }
  const c = Cluster.parse(text, file);
  const cache = new PlanCache(new FileCache());
  return Object.fromEntries(c.nodes().map((n) => [n, manifest(c, planNode(c, c.resolve(n), cache))]));
}

/** Writes every node's plan, manifest, cmdline and overlay under DIR/<node>/. */
export function renderCluster(c: Cluster, dir: string): number {
  // The pxelinux configs and iPXE scripts written here name files as `pxe` and `ipxe` publish them.
  const resolved = c.nodes().map((n) => c.resolve(n));
  const problems = publishedNameProblems(resolved, (p) => c.path(p));
  if (problems.length) throw new BootcfgError("ECHECK", problems.join("\n"));
  const cache = new PlanCache(new FileCache());
  // All nodes or none: a node whose plan fails, or a full disk, leaves the previous render whole.
  return withOutputs((out) => {
    let count = 0;
    for (const r of resolved) {
      const p = planNode(c, r, cache);
      const d = join(dir, r.name);
      out.mkdir(d);
      out.write(join(d, "kexec.sh"), renderKexecSh(p), 0o755);
      out.write(join(d, "plan.json"), `${toJson(renderPlanJson(c, p))}\n`);
      out.write(join(d, "manifest.json"), `${toJson(manifest(c, p))}\n`);
      out.write(join(d, "cmdline"), `${p.cmdline}\n`);
      out.write(join(d, "overlay.cpio"), p.overlay);
      if (p.node.delivery === "pxe") out.write(join(d, "pxelinux.cfg"), renderPxelinux(p));
      if (p.node.delivery === "ipxe") out.write(join(d, "boot.ipxe"), renderIpxe(p));
      count++;
    }
    return count;
  });
}
