#!/usr/bin/env bash
# Runs the benchmarks (bench/*.bench.mjs), or only those whose name contains $1.
set -euo pipefail
cd "$(dirname "$0")/.."
filter="${1:-}"
for file in bench/*.bench.mjs; do
  [ -e "$file" ] || continue
  case "$(basename "$file")" in *"$filter"*) ;; *) continue ;; esac
  echo "== $(basename "$file" .bench.mjs)"
  node "$file"
done
