#!/usr/bin/env bash
# Compiles the in-process sock_diag lookup (src/identity/native/sock-diag.c) with gcc against the
# N-API headers of one Node (the first argument, else `node` on PATH) into
# .cache/native/sock-diag-abi<N>.node, N being that Node's process.versions.modules: each Node
# the project runs on loads the addon built for it (src/identity/native-sock-diag.ts). Optional:
# without a compiler or the headers, identity lookups use the Python helper (or procfs) instead.
# An installed package runs it once at install time (postinstall); failing, it leaves no addon.
set -euo pipefail
cd "$(dirname "$0")/.."

node="${1:-$(command -v node)}"
source=src/identity/native/sock-diag.c
abi="$("$node" -p process.versions.modules)"
out=".cache/native/sock-diag-abi${abi}.node"
[ -f "$out" ] && [ "$out" -nt "$source" ] && exit 0

headers="$(dirname "$(dirname "$(readlink -f "$node")")")/include/node"
if ! command -v gcc >/dev/null || [ ! -f "$headers/node_api.h" ]; then
  echo "setup: no gcc or no Node headers ($headers): identity lookups will use the Python sock_diag helper" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
gcc -O2 -Wall -Wextra -Werror -shared -fPIC -I"$headers" -DNODE_GYP_MODULE_NAME=sock_diag -o "$out.tmp" "$source"
mv "$out.tmp" "$out"
