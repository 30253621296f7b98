#!/usr/bin/env bash
# Verified reads benchmark: eth_getBalance through keel with `x-keel-verify: none | quorum |
# proof`, against (A) three fixture upstreams with distinct latencies and (B) three anvil nodes,
# same run, same machine. Reports latency, keel's CPU per request and upstream calls per request.
#
#   bench/verify/run.sh [seconds] [connections]     (default 10 s per measurement, 4 connections)
#
# Needs: wrk (Debian package, installed here when missing), anvil (./scripts/install-tools), a
# Rust toolchain. Prints one line per measurement and markdown tables for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
CONNS=${2:-4}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
./scripts/install-tools
cargo build --release --quiet -p keel -p keel-testkit --bins
BIN=${CARGO_TARGET_DIR:-target}/release
ANVIL=.tools/node_modules/.bin/anvil
TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

rpc() { # url method params
  curl -sf -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}" "$1"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { # admin-port series: sum of the samples whose line starts with it
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v s="$2" 'index($0, s) == 1 {t += $NF} END {printf "%d", t}'
}

# keel_up NAME ADMIN_PORT GATEWAY_PORT URL...: starts keel in front of URLs (upstreams a, b, c).
keel_up() {
  local name=$1 admin=$2 gw=$3; shift 3
  local conf="$WORK/$name.toml" i=0 names=(a b c)
  printf '[gateway]\nlisten = "127.0.0.1:%s"\n[admin]\nlisten = "127.0.0.1:%s"\n[log]\nlevel = "warn"\n' "$gw" "$admin" > "$conf"
  printf '[[chains]]\nname = "bench"\nchain_id = %s\n' "$CHAIN_ID" >> "$conf"
  for u in "$@"; do
    printf '[[chains.upstreams]]\nname = "%s"\nurl = "%s"\n' "${names[$i]}" "$u" >> "$conf"
    i=$((i + 1))
  done
  "$BIN/keel" up --config "$conf" --data-dir "$WORK/$name-data" >/dev/null 2>"$WORK/$name.log" &
  KEEL_PID=$!; pids+=($KEEL_PID)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { echo "keel did not become ready"; cat "$WORK/$name.log"; exit 1; }
  # Every upstream healthy, so that fan-outs reach all three.
  for _ in $(seq 100); do
    [ "$(curl -sf "http://127.0.0.1:$admin/status" | grep -o '"state":"healthy"' | wc -l)" = "$#" ] && break
    sleep 0.1
  done
}

# measure LABEL URL MODE EXPECT ADMIN_PORT [BLOCKS]: one wrk run; prints the RESULT line with keel's CPU
# per request (µs) and upstream calls per request.
measure() {
  local label=$1 url=$2 mode=$3 expect=$4 admin=${5:-} blocks=${6:-latest}
  local t0=0 c0=0 v0=0
  if [ -n "$admin" ]; then
    t0=$(cpu_ticks "$KEEL_PID")
    c0=$(metric "$admin" keel_rpc_verify_extra_calls_total)
    v0=$(metric "$admin" keel_rpc_verified_requests_total)
  fi
  local line
  line=$(ADDR=$ADDR MODE=$mode EXPECT=$expect BLOCKS=$blocks wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 5s -s bench/verify/balance.lua "$url" | grep '^RESULT')
  if [ -n "$admin" ]; then
    local t1 c1 v1 n
    t1=$(cpu_ticks "$KEEL_PID")
    c1=$(metric "$admin" keel_rpc_verify_extra_calls_total)
    v1=$(metric "$admin" keel_rpc_verified_requests_total)
    n=$(echo "$line" | sed 's/.*requests=\([0-9]*\).*/\1/')
    line="$line $(awk -v t=$((t1 - t0)) -v n="$n" -v tick="$TICK" -v c=$((c1 - c0)) -v v=$((v1 - v0)) \
      'BEGIN { printf "cpu_us_per_req=%.0f upstream_calls_per_req=%.2f", t * 1e6 / tick / n, (v > 0 ? 1 + c / v : 1) }')"
  fi
  echo "$line" | sed "s/^RESULT/$label/"
}

echo "# A. fixture upstreams answering after 2, 4 and 8 ms (recorded anvil proof), $CONNS connections, ${SECS}s each"
echo "#    proof-cold asks for a new block every request, so no state root is reused"
CHAIN_ID=1
ADDR=0x00000000000000000000000000000000c0ffee01
PROOF=crates/keel-verify/tests/fixtures/contract_proof.json
for p in 2 4 8; do
  "$BIN/fixture-upstream" "127.0.0.1:1930$p" 1 --delay-ms "$p" --proof "$PROOF" 2>/dev/null & pids+=($!)
done
keel_up fixture 19311 19310 http://127.0.0.1:19302 http://127.0.0.1:19304 http://127.0.0.1:19308
{
  for p in 2 4 8; do measure "direct-${p}ms" "http://127.0.0.1:1930$p/" "" ""; done
  measure none http://127.0.0.1:19310/ none none 19311
  measure quorum http://127.0.0.1:19310/ quorum quorum:2/3 19311
  measure proof http://127.0.0.1:19310/ proof proof: 19311
  measure proof-cold http://127.0.0.1:19310/ proof proof: 19311 each
} | tee "$WORK/fixture.txt"
kill "$KEEL_PID"

echo "# B. three anvil nodes with identical state (block 1), $CONNS connections, ${SECS}s each"
CHAIN_ID=31337
ADDR=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
urls=()
for p in 19321 19322 19323; do
  "$ANVIL" --port "$p" --timestamp 1700000000 --no-mining --silent & pids+=($!)
  urls+=("http://127.0.0.1:$p")
done
for u in "${urls[@]}"; do
  for _ in $(seq 100); do rpc "$u" eth_chainId '[]' >/dev/null 2>&1 && break; sleep 0.1; done
  # The genesis header of anvil has the empty state root: prove against block 1, mined alike.
  rpc "$u" evm_setNextBlockTimestamp '[4000000000]' >/dev/null
  rpc "$u" evm_mine '[]' >/dev/null
done
keel_up anvil 19331 19330 "${urls[@]}"
{
  measure direct-anvil "${urls[0]}/" "" ""
  measure none http://127.0.0.1:19330/ none none 19331
  measure quorum http://127.0.0.1:19330/ quorum quorum:2/3 19331
  measure proof http://127.0.0.1:19330/ proof proof:0x1 19331
} | tee "$WORK/anvil.txt"

field() { grep "^$2 " "$1" | sed "s/.* $3=\([0-9.]*\).*/\1/"; }
table() { # file direct-label modes
  local f=$1 base=$2
  echo "| mode | p50 ms | p90 ms | p99 ms | added p50 ms | keel CPU µs/req | upstream calls/req | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  for m in $3; do
    awk -v m="$m" -v p50="$(field "$f" "$m" p50_ms)" -v p90="$(field "$f" "$m" p90_ms)" -v p99="$(field "$f" "$m" p99_ms)" \
      -v d="$(field "$f" "$base" p50_ms)" -v cpu="$(field "$f" "$m" cpu_us_per_req)" -v calls="$(field "$f" "$m" upstream_calls_per_req)" \
      -v err="$(($(field "$f" "$m" errors) + $(field "$f" "$m" bad)))" \
      'BEGIN { printf "| %s | %.2f | %.2f | %.2f | %+.2f | %s | %s | %s |\n", m, p50, p90, p99, p50 - d, cpu, calls, err }'
  done
}
echo
echo "A. fixture upstreams (added p50 is against the fastest upstream, direct-2ms)"
table "$WORK/fixture.txt" direct-2ms "none quorum proof proof-cold"
q=$(field "$WORK/fixture.txt" quorum p50_ms); second=$(field "$WORK/fixture.txt" direct-4ms p50_ms)
echo "quorum 2-of-3 p50 / second-fastest upstream p50 (direct-4ms): $(awk -v q="$q" -v s="$second" 'BEGIN { printf "%.2f", q / s }') (target <= 1.2)"
for m in proof proof-cold; do
  echo "$m CPU added over none: $(awk -v p="$(field "$WORK/fixture.txt" $m cpu_us_per_req)" -v n="$(field "$WORK/fixture.txt" none cpu_us_per_req)" 'BEGIN { printf "%.0f", p - n }') µs per request (target < 200)"
done
echo
echo "B. anvil (added p50 is against direct-anvil)"
table "$WORK/anvil.txt" direct-anvil "none quorum proof"
