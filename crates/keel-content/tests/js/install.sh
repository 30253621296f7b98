#!/bin/sh
# Installs the pinned reference IPFS packages used by keel-content's integration tests.
set -eu
cd "$(dirname "$0")"
if [ ! -f node_modules/.keel-installed ] || [ package-lock.json -nt node_modules/.keel-installed ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
  touch node_modules/.keel-installed
fi
