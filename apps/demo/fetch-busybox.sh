#!/bin/sh
# Fetches Debian's static busybox for foreign architectures into .cache/busybox-<arch>/root, for
# the demo's and xrx's mixed-architecture runs (run as root; needs qemu-user-static and
# binfmt-support installed to run them). Usage: apps/demo/fetch-busybox.sh [arm64 armhf ...]
set -eu
# A mirror in the middle of a sync fails `apt-get update` for one index now and then: try again,
# then go on with what was fetched (the download below fails loudly if the package is unknown).
apt_update() {
  for i in 1 2 3; do apt-get update -qq && return 0; echo "apt-get update failed (try $i of 3)" >&2; sleep $((i * 5)); done
}
root=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -gt 0 ] || set -- arm64 armhf
for arch in "$@"; do
  dir="$root/.cache/busybox-$arch"
  if [ -x "$dir/root/bin/busybox" ]; then echo "busybox-$arch: already there"; continue; fi
  mkdir -p "$dir"
  (
    flock 9
    dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch"; apt_update || true; }
    cd "$dir" && apt-get download -qq "busybox-static:$arch"
  ) 9>/tmp/apt.flock
  dpkg-deb -x "$dir"/busybox-static_*_"$arch".deb "$dir/root"
  echo "busybox-$arch: $dir/root/bin/busybox"
done
