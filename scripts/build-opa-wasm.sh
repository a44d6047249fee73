#!/usr/bin/env bash
# Builds an `opa` that evaluates the wasm modules inside bundles (`-tags opa_wasm`: pure Go,
# wazero, no cgo), for the bundle interoperability tests; once, cached beside the plain opa.
# Prints its path.
set -euo pipefail
OPA_VERSION="${OPA_VERSION:-v1.22.2}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/opa-wasm-${OPA_VERSION}"
if [ ! -x "$cache/opa" ]; then
  command -v go >/dev/null || { echo "build-opa-wasm: Go is needed to build opa ${OPA_VERSION} with opa_wasm" >&2; exit 1; }
  echo "build-opa-wasm: building opa ${OPA_VERSION} -tags opa_wasm (once; cached in $cache)" >&2
  mkdir -p "$cache"
  (cd /tmp && CGO_ENABLED=0 GOBIN="$cache" go install -tags opa_wasm "github.com/open-policy-agent/opa@${OPA_VERSION}")
fi
echo "$cache/opa"
