#!/usr/bin/env bash
# Checks what an operator gets from npm: packs every package the way it would be published,
# installs the tarballs into a throwaway prefix with npm (their npm dependencies come from the
# registry), runs every installed command with --version, then runs a job through an installed
# xcpufs (loopback, --no-auth) with the installed xrx, and checks that the libraries' export
# entries share their classes (tools/pack-check-lib.mjs). Needs a build (pnpm run build) first.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server=""
xrxd_pid=""
unset XRXD_SOCK XRXD_PID # an xrxd of the caller's own is not what is checked here
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  if [ -n "$xrxd_pid" ]; then kill "$xrxd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "pack-check: $*" >&2; exit 1; }

for dir in "$root"/packages/*/; do
  (cd "$dir" && pnpm pack --pack-destination "$work/tgz" >/dev/null) || fail "cannot pack $dir"
done
npm install -g --prefix "$work/prefix" --no-fund --no-audit "$work"/tgz/*.tgz >/dev/null ||
  fail "npm cannot install the packed tarballs"
bin="$work/prefix/bin"

# The libraries as a program that imports them sees them (from next to their node_modules).
cp "$root/tools/pack-check-lib.mjs" "$work/prefix/lib/pack-check-lib.mjs"
(cd "$work/prefix/lib" && node pack-check-lib.mjs) || fail "the installed libraries do not work together"

commands=0
for dir in "$root"/packages/*/; do
  while read -r name version; do
    [ -n "$name" ] || continue
    [ -x "$bin/$name" ] || fail "$name is not installed as a command"
    got=$("$bin/$name" --version) || fail "$name --version exited non-zero"
    [ "$got" = "$name $version" ] || fail "$name --version printed '$got', not '$name $version'"
    commands=$((commands + 1))
  done < <(node -e '
    const p = require(process.argv[1]);
    const bins = typeof p.bin === "string" ? { [p.name.split("/").pop()]: p.bin } : p.bin ?? {};
    for (const name of Object.keys(bins)) console.log(name, p.version);
  ' "$dir/package.json")
done

mkdir -p "$work/node"
"$bin/xcpufs" -p 0 --listen 127.0.0.1 --no-auth -t "$work/node" --state-dir "$work/node/state" \
  2>"$work/xcpufs.log" &
server=$!
address=""
for _ in $(seq 1 100); do
  address=$(sed -n 's/.*listening on \(tcp![^ ]*\).*/\1/p' "$work/xcpufs.log" | head -n 1)
  [ -n "$address" ] && break
  kill -0 "$server" 2>/dev/null || fail "installed xcpufs exited: $(cat "$work/xcpufs.log")"
  sleep 0.1
done
[ -n "$address" ] || fail "installed xcpufs did not start listening"
hostport=${address#tcp!}
out=$("$bin/xrx" --no-key "$hostport" /bin/echo packed and installed) || fail "installed xrx failed"
[ "$out" = "packed and installed" ] || fail "installed xrx printed '$out'"
# The same run handed to an installed xrxd (the start-up shim's hand-off), then xrxd stopped.
eval "$(XDG_RUNTIME_DIR="$work" "$bin/xrxd" -s)" >/dev/null || fail "installed xrxd did not start"
xrxd_pid=$XRXD_PID
out=$("$bin/xrx" --no-key "$hostport" /bin/echo through xrxd) || fail "installed xrx failed through xrxd"
eval "$("$bin/xrxd" -k -s)" >/dev/null || fail "installed xrxd -k failed"
xrxd_pid=""
[ "$out" = "through xrxd" ] || fail "installed xrx printed '$out' through xrxd"
echo "pack-check: $commands commands installed from the packed tarballs answer --version; xrx ran a job on xcpufs, alone and through xrxd"
