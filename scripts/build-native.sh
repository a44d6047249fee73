#!/usr/bin/env bash
# Compiles the in-process sock_diag lookup (src/identity/native/sock-diag.c) into
# .cache/native/sock-diag.node with gcc against Node's own N-API headers. Optional: without a
# compiler or the headers, identity lookups use the Python helper (or procfs) instead.
set -euo pipefail
cd "$(dirname "$0")/.."

source=src/identity/native/sock-diag.c
out=.cache/native/sock-diag.node
[ -f "$out" ] && [ "$out" -nt "$source" ] && exit 0

headers="$(dirname "$(dirname "$(command -v node)")")/include/node"
if ! command -v gcc >/dev/null || [ ! -f "$headers/node_api.h" ]; then
  echo "setup: no gcc or no Node headers ($headers): identity lookups will use the Python sock_diag helper" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
gcc -O2 -Wall -Wextra -Werror -shared -fPIC -I"$headers" -DNODE_GYP_MODULE_NAME=sock_diag -o "$out.tmp" "$source"
mv "$out.tmp" "$out"
