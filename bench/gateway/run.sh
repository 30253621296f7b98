#!/usr/bin/env bash
# Gateway benchmark: direct fixture vs nginx round-robin vs keel, same machine, same run.
#
#   bench/gateway/run.sh [seconds]        (default 15 s per measurement)
#   KEEL_BASELINE=/path/to/old/keel bench/gateway/run.sh 15
#                                         also measures that keel binary (row `baseline`), in
#                                         the same run, for before/after comparisons (it must
#                                         accept this script's config)
#
# Needs: Debian's nginx and wrk (installed here when missing), a Rust toolchain.
# Upstreams: three `fixture-upstream` processes (crates/keel-testkit) answering from memory.
# Prints one line per measurement and a markdown table for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-15}
command -v nginx >/dev/null && command -v wrk >/dev/null || apt-get install -y -qq nginx-light wrk >/dev/null
cargo build --release --quiet -p keel -p keel-testkit --bins
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
P1=19001 P2=19002 P3=19003 NGINX=19100 KEEL=19200 ADMIN=19201 BASE=19210 BASE_ADMIN=19211
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; nginx -p "$WORK" -c "$WORK/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

for p in $P1 $P2 $P3; do "$BIN/fixture-upstream" "127.0.0.1:$p" 1 2>/dev/null & pids+=($!); done
mkdir -p "$WORK"/{body,proxy,fastcgi,uwsgi,scgi}
sed -e "s#@DIR@#$WORK#g" -e "s/@P1@/$P1/; s/@P2@/$P2/; s/@P3@/$P3/; s/@NGINX@/$NGINX/" bench/gateway/nginx.conf.in > "$WORK/nginx.conf"
nginx -p "$WORK" -c "$WORK/nginx.conf"
cat > "$WORK/keel.toml" <<TOML
[gateway]
listen = "127.0.0.1:$KEEL"
[admin]
listen = "127.0.0.1:$ADMIN"
[log]
level = "warn"
[[chains]]
name = "bench"
chain_id = 1
# The routing core is measured: account reads are not proven (the fixtures serve no proofs).
[chains.verify]
account = "none"
[[chains.upstreams]]
name = "a"
url = "http://127.0.0.1:$P1"
[[chains.upstreams]]
name = "b"
url = "http://127.0.0.1:$P2"
[[chains.upstreams]]
name = "c"
url = "http://127.0.0.1:$P3"
TOML
start_keel() { # binary config admin_port name
  "$1" up --config "$2" --data-dir "$WORK/data-$4" >/dev/null 2>"$WORK/$4.log" & pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$3/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$3/readyz" >/dev/null || { echo "$4 did not become ready"; cat "$WORK/$4.log"; exit 1; }
}
start_keel "$BIN/keel" "$WORK/keel.toml" $ADMIN keel; KEEL_PID=${pids[-1]}
declare -A URL=([direct]="http://127.0.0.1:$P1/" [nginx]="http://127.0.0.1:$NGINX/" [keel]="http://127.0.0.1:$KEEL/rpc/bench")
TARGETS="direct nginx keel"
if [ -n "${KEEL_BASELINE:-}" ]; then
  sed -e "s/:$KEEL\"/:$BASE\"/; s/:$ADMIN\"/:$BASE_ADMIN\"/" "$WORK/keel.toml" > "$WORK/baseline.toml"
  start_keel "$KEEL_BASELINE" "$WORK/baseline.toml" $BASE_ADMIN baseline; BASE_PID=${pids[-1]}
  URL[baseline]="http://127.0.0.1:$BASE/rpc/bench"; TARGETS="direct nginx baseline keel"
fi
run() { # name connections delay_ms
  DELAY_MS=$3 wrk -t2 -c"$2" -d"${SECS}s" --timeout 5s -s bench/gateway/post.lua "${URL[$1]}" | grep '^RESULT' | sed "s/^RESULT/$1 c=$2 delay=$3/"
}
echo "# saturation, 64 connections"
for t in $TARGETS; do run "$t" 64 0; done | tee "$WORK/sat.txt"
echo "# fixed rate: 500 connections x 1 request / 500 ms = ~1000 RPS"
for t in $TARGETS; do run "$t" 500 500; done | tee "$WORK/fixed.txt"
echo "keel peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$KEEL_PID/status)"
rps() { grep "^$1 " "$WORK/sat.txt" | sed 's/.*rps=\([0-9]*\).*/\1/'; }
ratio() { awk -v k="$(rps "$1")" -v n="$(rps nginx)" 'BEGIN { printf "%.2f", k / n }'; }
if [ -n "${KEEL_BASELINE:-}" ]; then
  echo "baseline peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$BASE_PID/status)"
  echo "baseline/nginx throughput ratio: $(ratio baseline)"
fi
echo "keel/nginx throughput ratio: $(ratio keel)"
