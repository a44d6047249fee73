#!/usr/bin/env bash
# Makes a fresh checkout ready: npm packages, the compiled CLI, and the pinned `opa` CLI
# (built from the Go module proxy once, then reused from ~/.cache/portcullis).
set -euo pipefail
cd "$(dirname "$0")/.."

OPA_VERSION="${OPA_VERSION:-v1.22.2}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/opa-${OPA_VERSION}"
mkdir -p .cache/bin

if [ ! -x .cache/bin/opa ] || ! .cache/bin/opa version 2>/dev/null | grep -q "^Version: ${OPA_VERSION#v}$"; then
  if [ ! -x "$cache/opa" ]; then
    command -v go >/dev/null || { echo "setup: Go is needed to build opa ${OPA_VERSION}" >&2; exit 1; }
    echo "setup: building opa ${OPA_VERSION} with go install (once; cached in $cache)" >&2
    mkdir -p "$cache"
    CGO_ENABLED=0 GOBIN="$cache" go install "github.com/open-policy-agent/opa@${OPA_VERSION}"
  fi
  cp "$cache/opa" .cache/bin/opa
fi

if [ ! -d node_modules/@open-policy-agent/opa-wasm ] || [ package.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
# The in-process sock_diag lookup for identity (optional; see the script).
bash scripts/build-native.sh
# Sources the build generates (src/generated/; cheap, rewritten only when they change): tests
# import src/ directly.
npm run --silent generate
# The CLI runs from dist/ (one bundled file); rebuild when a source or a build script is newer
# than the last build.
if [ ! -f dist/cli/main.js ] || [ -n "$(find src scripts -newer dist/cli/main.js \( -name '*.ts' -o -name '*.mjs' \) -print -quit)" ]; then
  npm run --silent build
fi
