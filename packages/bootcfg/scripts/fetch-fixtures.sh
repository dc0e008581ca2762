#!/usr/bin/env bash
# Downloads (never installs) the kernels the bootcfg tests boot, into a cache directory that is
# reused between runs:
#   $BOOTCFG_FIXTURES (default: <repo>/.cache/bootcfg)
#     amd64/vmlinuz      Debian cloud kernel (bzImage), from linux-image-cloud-amd64's Depends
#     amd64/VERSION      the package it came from
#     arm64/vmlinuz      Debian cloud arm64 kernel (uncompressed arm64 Image)     [--arm64]
#     arm64/busybox      busybox from busybox-static:arm64                        [--arm64]
# The package name is resolved through apt-cache every run, so a Debian point release that bumps
# the kernel ABI gets a fresh download; an unchanged one is not downloaded again.
# arm64 packages are looked up with a private apt state (lists and cache under the fixture dir),
# so the system's dpkg architectures and apt lists are left as they are.
# Usage: fetch-fixtures.sh [--arm64] [--no-amd64]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
dest=${BOOTCFG_FIXTURES:-$root/.cache/bootcfg}
want_amd64=1 want_arm64=0
for a in "$@"; do
  case $a in
    --arm64) want_arm64=1 ;;
    --no-amd64) want_amd64=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "fetch-fixtures: unknown option $a" >&2; exit 2 ;;
  esac
done
mkdir -p "$dest"

# fetch ARCH DIR APT_ARGS... : resolve kernel package, download + extract when it changed
fetch_kernel() {
  local arch=$1 dir=$dest/$1; shift
  local pkg
  pkg=$(apt-cache "$@" depends "linux-image-cloud-$arch" 2>/dev/null \
        | sed -n "s/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-$arch\).*/\1/p" | head -n1)
  pkg=${pkg%:*}
  if [ -z "$pkg" ]; then
    echo "fetch-fixtures: cannot resolve linux-image-cloud-$arch with apt-cache (run apt-get update?)" >&2
    return 1
  fi
  if [ -f "$dir/vmlinuz" ] && [ "$(cat "$dir/VERSION" 2>/dev/null)" = "$pkg" ]; then
    echo "fetch-fixtures: $arch kernel $pkg cached in $dir"
    return 0
  fi
  echo "fetch-fixtures: downloading $pkg"
  local tmp; tmp=$(mktemp -d "$dest/.dl.XXXXXX"); chmod 755 "$tmp"
  (cd "$tmp" && apt-get "$@" download "$pkg:$arch" >/dev/null)
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  mkdir -p "$dir"
  cp "$tmp"/x/boot/vmlinuz-* "$dir/vmlinuz.new" && mv "$dir/vmlinuz.new" "$dir/vmlinuz"
  echo "$pkg" > "$dir/VERSION"
  rm -rf "$tmp"
  echo "fetch-fixtures: $arch kernel $pkg -> $dir/vmlinuz"
}

if [ "$want_amd64" = 1 ]; then
  fetch_kernel amd64
fi

if [ "$want_arm64" = 1 ]; then
  a=$dest/apt-arm64
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/sources.list.d"
  cat > "$a/sources.list" <<SRC
deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
SRC
  opts=(-o "Dir::Etc::SourceList=$a/sources.list" -o "Dir::Etc::SourceParts=$a/sources.list.d"
        -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache"
        -o "APT::Architecture=arm64" -o "APT::Architectures::=arm64" -o "APT::Sandbox::User=root")
  # refresh the private arm64 index at most once a day
  if [ -z "$(find "$a/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
    # a mirror in the middle of a sync fails one index now and then: try again, then go on
    for i in 1 2 3; do apt-get "${opts[@]}" update >/dev/null && break; sleep $((i * 5)); done
  fi
  fetch_kernel arm64 "${opts[@]}"
  if [ ! -x "$dest/arm64/busybox" ]; then
    tmp=$(mktemp -d "$dest/.dl.XXXXXX"); chmod 755 "$tmp"
    (cd "$tmp" && apt-get "${opts[@]}" download busybox-static:arm64 >/dev/null)
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    cp "$tmp/x/bin/busybox" "$dest/arm64/busybox"
    rm -rf "$tmp"
    echo "fetch-fixtures: arm64 busybox -> $dest/arm64/busybox"
  fi
fi
