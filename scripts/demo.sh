#!/usr/bin/env bash
# The demo: a simulated internet in a namespace of its own and an example agent under
# `portcullis run` (see src/sandbox/demo.ts). Needs root for network namespaces; touches no
# address outside the namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node dist/sandbox/demo.js "$@"
