#!/usr/bin/env bash
# Prepares test fixtures that come from Debian packages rather than from the repository: kernels
# for the QEMU boot tests and foreign-architecture busybox for the mixed-architecture runs.
# Nothing is installed; packages are downloaded and unpacked into caches. Safe to run again.
# Needs root (apt-get download, dpkg --add-architecture) and an `apt-get update` beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "fixtures: not root, skipping (tests that need them say so)"
  exit 0
fi
bash packages/bootcfg/scripts/fetch-fixtures.sh --arm64
bash packages/ninep/scripts/fetch-test-kernel.sh
sh apps/demo/fetch-busybox.sh arm64 armhf
