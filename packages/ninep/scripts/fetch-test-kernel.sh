#!/usr/bin/env bash
# Unpacks (does not install) Debian's current amd64 kernel image into a cache directory, for the
# VM-based v9fs mount test (test/passthrough/kernel-mount.test.ts). Idempotent.
# Usage: fetch-test-kernel.sh [DIR]   (default /var/cache/ninep-kernel; the test reads DIR/x,
# or NINEP_TEST_KERNEL_DIR). Needs apt-get (run `apt-get update` first) and dpkg-deb.
set -euo pipefail
dir="${1:-/var/cache/ninep-kernel}"
if compgen -G "$dir/x/boot/vmlinuz-*" >/dev/null; then
  echo "kernel already unpacked in $dir/x"
  exit 0
fi
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
if [ -z "$pkg" ]; then
  echo "cannot find the kernel package behind linux-image-amd64 (run apt-get update)" >&2
  exit 1
fi
mkdir -p "$dir"
cd "$dir"
# apt-get download runs as _apt when it can; a root-owned cache dir makes it fall back to root.
apt-get download "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true
deb=$(ls -1 "$pkg"_*.deb | head -n 1)
rm -rf x.tmp
mkdir x.tmp
dpkg-deb -x "$deb" x.tmp
rm -rf x
mv x.tmp x
rm -f "$deb"
echo "unpacked $pkg into $dir/x"
