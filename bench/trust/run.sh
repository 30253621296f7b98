#!/usr/bin/env bash
# Rerun the keel-trust benchmark. Usage: bench/trust/run.sh [WORKDIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$here/target}/release/keel-trust-bench"
"$bin" gen "$work"
for i in 1 2 3 4 5; do "$bin" verify "$work"; done
"$bin" kdf
