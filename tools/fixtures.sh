#!/usr/bin/env bash
# Prepares test fixtures that come from Debian packages rather than from the repository
# (kernels, foreign-architecture binaries). Each package's script caches under .cache/ and is
# skipped when already present. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in packages/*/scripts/fetch-fixtures.sh; do
  [ -f "$script" ] || continue
  echo "-- $script"
  bash "$script"
done
