// The local demo cluster: starts four xcpufs nodes on loopback ports (one of them an arm64 node
// when qemu-user-static and binfmt_misc can run an arm64 busybox), runs programs across them with
// the built xrx, prints each node's output, and removes everything it made — also on Ctrl-C.
//
//   pnpm install && pnpm build && pnpm demo
import { spawn } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const XRX = join(ROOT, "packages/xrx/dist/bin/xrx.js");
const XCPUFS = join(ROOT, "packages/xcpufs/dist/bin/xcpufs.js");
const NODES = 4;

const children = new Set();
const dirs = [];
let cleaning;

function say(msg) {
  process.stdout.write(`demo: ${msg}\n`);
}

/** Stops every child (by pid) and removes the temporary tree; safe to call more than once. */
function cleanup() {
  cleaning ??= doCleanup();
  return cleaning;
}

async function doCleanup() {
  const waits = [];
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    waits.push(
      new Promise((resolve) => {
        const t = setTimeout(() => {
          try {
            process.kill(child.pid, "SIGKILL");
          } catch {}
          resolve();
        }, 3000);
        child.once("exit", () => {
          clearTimeout(t);
          resolve();
        });
        try {
          process.kill(child.pid, "SIGTERM");
        } catch {
          clearTimeout(t);
          resolve();
        }
      }),
    );
  }
  await Promise.all(waits);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    say(`${sig}: stopping the nodes and removing temporary files`);
    cleanup().then(() => process.exit(130));
  });
}

/**
 * The port a node started with `-p 0` reports ("xcpufs: listening on tcp!127.0.0.1!PORT" on its
 * stderr); the rest of its stderr is passed through.
 */
function listeningPort(child) {
  return new Promise((resolve, reject) => {
    let buffered = "";
    let port;
    const timer = setTimeout(() => reject(new Error("an xcpufs node did not start within 15 s")), 15_000);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text) => {
      if (port !== undefined) return void process.stderr.write(text);
      buffered += text;
      const m = /^.*listening on tcp!127\.0\.0\.1!(\d+)\n/m.exec(buffered);
      if (!m) return;
      port = Number(m[1]);
      clearTimeout(timer);
      const rest = buffered.replace(m[0], "");
      if (rest) process.stderr.write(rest);
      resolve(port);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      if (port === undefined) reject(new Error(`an xcpufs node exited with ${code}: ${buffered.trim()}`));
    });
  });
}

/**
 * A foreign busybox this machine can run (qemu-user-static registered in binfmt_misc), for one
 * architecture: { path } or { why } it cannot be used.
 */
function foreignBusybox(debArch, qemu) {
  if (!existsSync(join("/proc/sys/fs/binfmt_misc", qemu))) {
    return {
      why: `${qemu} is not registered in binfmt_misc (apt-get install qemu-user-static binfmt-support)`,
    };
  }
  const p = join(ROOT, `.cache/busybox-${debArch}/root/bin/busybox`);
  if (existsSync(p)) return { path: p };
  return {
    why: `no ${debArch} busybox (apps/demo/fetch-busybox.sh ${debArch} fetches Debian's busybox-static:${debArch})`,
  };
}

function run(cmd, args, env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cmd, ...args], { stdio: ["ignore", "inherit", "inherit"], env });
    children.add(child);
    child.on("exit", (code, sig) => {
      children.delete(child);
      resolve(code ?? (sig ? 128 : 1));
    });
  });
}

async function main() {
  for (const [what, file] of [
    ["xrx", XRX],
    ["xcpufs", XCPUFS],
  ]) {
    if (!existsSync(file)) {
      process.stderr.write(`demo: ${what} is not built (${file} missing): run "pnpm build" first\n`);
      return 1;
    }
  }
  const base = mkdtempSync(join(tmpdir(), "clustermatic-demo-"));
  dirs.push(base);
  // Nodes 1 and 2 are this machine; node 4 an arm64 node and node 3 a 32-bit ARM node when
  // qemu-user can run their busybox.
  const archOf = new Map();
  const sysroot = join(base, "sysroot");
  for (const [node, arch, debArch, qemu] of [
    [4, "/Linux/aarch64", "arm64", "qemu-aarch64"],
    [3, "/Linux/armv7l", "armhf", "qemu-arm"],
  ]) {
    const bb = foreignBusybox(debArch, qemu);
    if (!bb.path) {
      say(`node ${node} is x86_64: ${bb.why}`);
      continue;
    }
    const bin = join(sysroot, arch, "bin");
    mkdirSync(bin, { recursive: true });
    copyFileSync(bb.path, join(bin, "busybox"));
    chmodSync(join(bin, "busybox"), 0o755);
    for (const applet of ["uname", "sh", "echo", "cat"]) symlinkSync("busybox", join(bin, applet));
    archOf.set(node, arch);
    say(`node ${node} reports ${arch} and runs the ${debArch} busybox through qemu-user-static`);
  }

  const nodes = [];
  for (let i = 1; i <= NODES; i++) {
    if (cleaning) return 130;
    const dir = join(base, `node${i}`);
    mkdirSync(dir);
    // Port 0: each node takes a free port itself and names it on stderr (no probe-then-bind race).
    const args = ["--no-auth", "--listen", "127.0.0.1", "-p", "0", "-t", dir, "--state-dir", dir];
    args.push("--log-level", "error");
    if (archOf.has(i)) args.push("--arch", archOf.get(i));
    const child = spawn(process.execPath, [XCPUFS, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    children.add(child);
    child.on("exit", () => children.delete(child));
    nodes.push({ child, port: listeningPort(child) });
  }
  const ports = await Promise.all(nodes.map((n) => n.port));
  nodes.forEach((n, i) => {
    n.port = ports[i];
  });
  const list = nodes.map((n) => `127.0.0.1!${n.port}`).join(",");
  say(`${NODES} xcpufs nodes listening: ${list}`);
  const env = { ...process.env, ...(archOf.size > 0 ? { XCPU_SYSROOT: sysroot } : {}) };

  const cmds = [
    ["-p", list, "uname", "-m"],
    ["-p", "-j", "demo", list, "sh", "-c", 'echo "hello from session $XCPUSID, job/rank $XCPUID"'],
  ];
  let status = 0;
  for (const args of cmds) {
    if (cleaning) break;
    say(`xrx --no-key ${args.map((a) => (/[\s$"]/.test(a) ? `'${a}'` : a)).join(" ")}`);
    const code = await run(XRX, ["--no-key", ...args], env);
    say(`xrx exited ${code}`);
    if (code !== 0) status = code;
  }
  return status;
}

main()
  .then(async (code) => {
    if (cleaning) return; // a signal handler is finishing up
    await cleanup();
    const left = dirs.filter((d) => existsSync(d));
    say(
      left.length === 0 ? "stopped the nodes, removed temporary files" : `could not remove ${left.join(" ")}`,
    );
    process.exit(code);
  })
  .catch(async (err) => {
    process.stderr.write(`demo: ${err.message}\n`);
    await cleanup();
    process.exit(1);
  });
