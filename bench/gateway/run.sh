#!/usr/bin/env bash
# Gateway benchmark: direct fixture vs nginx round-robin vs keel, same machine, same run.
#
#   bench/gateway/run.sh [seconds]        (default 15 s per measurement)
#   ROUNDS=5 bench/gateway/run.sh 15      (default 3 interleaved rounds of each phase)
#   KEEL_BASELINE=/path/to/old/keel bench/gateway/run.sh 15
#                                         also measures that keel binary (row `baseline`), in
#                                         the same run, for before/after comparisons (it must
#                                         accept this script's config)
#   KEEL_BASELINE=target/release/keel BASELINE_WORKERS=2 bench/gateway/run.sh 10
#                                         the same binary with another `[gateway] workers`
#
# Needs: Debian's nginx and wrk, and oha (crates.io, pinned), all installed here when missing;
# a Rust toolchain.
# Upstreams: three `fixture-upstream` processes (crates/keel-testkit) answering from memory.
# Phases: saturation (wrk, 64 connections, closed loop) and fixed rate (oha, 1000 requests per
# second spread evenly over 500 connections, open loop, latency measured from each request's
# scheduled start). Prints one line per measurement, then each target's medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-15}
ROUNDS=${ROUNDS:-3}
OHA_VERSION=1.16.0
command -v nginx >/dev/null && command -v wrk >/dev/null || apt-get install -y -qq nginx-light wrk >/dev/null
oha --version 2>/dev/null | grep -q " $OHA_VERSION" || cargo install --quiet --locked oha --version "$OHA_VERSION"
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
  if [ -n "${BASELINE_WORKERS:-}" ]; then sed -i "s/^\[gateway\]$/[gateway]\nworkers = $BASELINE_WORKERS/" "$WORK/baseline.toml"; fi
  start_keel "$KEEL_BASELINE" "$WORK/baseline.toml" $BASE_ADMIN baseline; BASE_PID=${pids[-1]}
  URL[baseline]="http://127.0.0.1:$BASE/rpc/bench"; TARGETS="direct nginx baseline keel"
fi
sat() { # name round: closed loop, 64 connections, as fast as the target answers (wrk)
  wrk -t2 -c64 -d"${SECS}s" --timeout 5s -s bench/gateway/post.lua "${URL[$1]}" | grep '^RESULT' | sed "s/^RESULT/$1 round=$2/"
}
BODY=$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" bench/gateway/post.lua)
fixed() { # name round: open loop, 1000 requests per second spread evenly over 500 connections (oha)
  oha --no-tui -w -z "${SECS}s" -c 500 -q 1000 --latency-correction -m POST \
    -H 'content-type: application/json' -d "$BODY" --output-format json "${URL[$1]}" > "$WORK/fixed-$1-$2.json"
  python3 - "$1" "$2" "$WORK/fixed-$1-$2.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[3]))
p, s = d["latencyPercentiles"], d["summary"]
ok = d["statusCodeDistribution"].get("200", 0)
errors = sum(d["errorDistribution"].values()) + sum(n for c, n in d["statusCodeDistribution"].items() if c != "200")
print(f"{sys.argv[1]} round={sys.argv[2]} rps={s['requestsPerSec']:.0f} p50_ms={p['p50']*1e3:.3f} "
      f"p95_ms={p['p95']*1e3:.3f} p99_ms={p['p99']*1e3:.3f} errors={errors} requests={ok + errors}")
PY
}
# Rounds interleave the targets, so a burst of other load on this machine hits all of them
# alike; the summary takes each target's median over the rounds.
echo "# saturation: 64 connections (wrk), $ROUNDS interleaved rounds"
for r in $(seq "$ROUNDS"); do for t in $TARGETS; do sat "$t" "$r"; done; done | tee "$WORK/sat.txt"
echo "# fixed rate: 1000 RPS over 500 connections (oha, latency corrected), $ROUNDS interleaved rounds"
for r in $(seq "$ROUNDS"); do for t in $TARGETS; do fixed "$t" "$r"; done; done | tee "$WORK/fixed.txt"
median() { # file target field
  grep "^$2 " "$1" | sed "s/.* $3=\([0-9.]*\).*/\1/" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
added() { # target: per-round p95 minus direct's in the same round, "min max"
  paste <(grep "^$1 " "$WORK/fixed.txt") <(grep "^direct " "$WORK/fixed.txt") |
    sed 's/.*p95_ms=\([0-9.]*\).*p95_ms=\([0-9.]*\).*/\1 \2/' |
    awk 'NR == 1 { lo = hi = $1 - $2 } { d = $1 - $2; if (d < lo) lo = d; if (d > hi) hi = d } END { printf "%.3f %.3f", lo, hi }'
}
echo "# summary (medians over $ROUNDS rounds)"
errors=$(cat "$WORK/sat.txt" "$WORK/fixed.txt" | sed 's/.*errors=\([0-9]*\).*/\1/' | awk '{ s += $1 } END { print s }')
for t in $TARGETS; do
  rps=$(median "$WORK/sat.txt" "$t" rps) p95=$(median "$WORK/fixed.txt" "$t" p95_ms)
  if [ "$t" = direct ]; then
    echo "direct: saturation $rps RPS; fixed-rate p95 $p95 ms"
  else
    read -r lo hi <<<"$(added "$t")"
    awk -v t="$t" -v r="$rps" -v n="$(median "$WORK/sat.txt" nginx rps)" -v p="$p95" \
      -v d="$(median "$WORK/fixed.txt" direct p95_ms)" -v lo="$lo" -v hi="$hi" 'BEGIN {
        printf "%s: saturation %d RPS (%.2fx nginx); fixed-rate p95 %.3f ms, added over direct %.3f ms (rounds: %.3f to %.3f)\n",
          t, r, r / n, p, p - d, lo, hi }'
  fi
done
echo "errors in all measurements: $errors"
echo "keel peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$KEEL_PID/status)"
if [ -n "${KEEL_BASELINE:-}" ]; then
  echo "baseline peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$BASE_PID/status)"
fi
