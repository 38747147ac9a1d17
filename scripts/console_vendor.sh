#!/usr/bin/env bash
# The console's third-party browser code (uPlot, pinned in scripts/console-vendor/package-lock.json), installed
# from npm once into a cache outside the clone keyed by the lock file, and copied into
# src/openmaas/console/static/vendor. The copies are committed so `make serve` needs no npm.
#   scripts/console_vendor.sh           copy the locked package's files in
#   scripts/console_vendor.sh --check   fail if the committed copies differ from the locked package (CI)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lock="$here/console-vendor/package-lock.json"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/openmaas/npm/console-vendor-$(sha256sum "$lock" | cut -c1-16)"
if [ ! -f "$dir/node_modules/uplot/package.json" ]; then
  command -v npm >/dev/null || { echo "npm is required to check the console's vendored files" >&2; exit 1; }
  mkdir -p "$dir"
  cp "$here/console-vendor/package.json" "$lock" "$dir/"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
fi
dest="$here/../src/openmaas/console/static/vendor"
mkdir -p "$dest"
status=0
for file in dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE; do
  source="$dir/node_modules/uplot/$file"
  target="$dest/uplot-$(basename "$file")"
  if [ "${1:-}" = "--check" ]; then
    cmp -s "$source" "$target" || { echo "vendored $target differs from uplot/$file in the lock file" >&2; status=1; }
  else
    cp "$source" "$target"
  fi
done
exit $status
