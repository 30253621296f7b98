#!/usr/bin/env bash
# Gateway throughput for a cached 1 MiB and a 4 KiB file: keel vs nginx serving the same bytes
# from disk, same run, same machine. Needs nginx (Debian nginx-light) and wrk.
#   DURATION=10s CONNS=32 bench/content/gateway.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/keel-gw-bench.XXXXXX)
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
trap 'kill $(cat "$WORK"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
mkdir -p "$WORK/www" "$WORK/nginx/logs"
head -c 1048576 /dev/urandom > "$WORK/www/1mib.bin"
head -c 4096 /dev/urandom > "$WORK/www/4kib.bin"

cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:18080;
    root $WORK/www;
    location / { add_header Cache-Control "public, max-age=29030400, immutable"; }
  }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"

[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build -q --release -p keel-content --example serve)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/serve
"$BIN" "$WORK/store" 127.0.0.1:18081 "$WORK/www/1mib.bin" "$WORK/www/4kib.bin" > "$WORK/cids" &
echo $! > "$WORK/keel.pid"
for _ in $(seq 100); do [ "$(wc -l < "$WORK/cids")" -ge 2 ] && break; sleep 0.1; done
CID_1M=$(awk 'NR==1{print $1}' "$WORK/cids")
CID_4K=$(awk 'NR==2{print $1}' "$WORK/cids")
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:18081/ipfs/$CID_4K" && break; sleep 0.1; done
cmp <(curl -s "http://127.0.0.1:18081/ipfs/$CID_1M") "$WORK/www/1mib.bin"
cmp <(curl -s "http://127.0.0.1:18080/1mib.bin") "$WORK/www/1mib.bin"

printf '%-28s %12s %12s\n' "what" "req/s" "MB/s"
run() { # label url
  local out rps bytes
  out=$(wrk -t2 -c"$CONNS" -d"$DURATION" "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
  bytes=$(awk '/Transfer\/sec/ {v=$2; u=substr(v, length(v)-1); n=v+0; if (u=="GB") n*=1024; if (u=="KB") n/=1024; print n}' <<< "$out")
  printf '%-28s %12.0f %12.1f\n' "$1" "$rps" "$bytes"
}
run "nginx 4 KiB"  "http://127.0.0.1:18080/4kib.bin"
run "keel  4 KiB"  "http://127.0.0.1:18081/ipfs/$CID_4K"
run "nginx 1 MiB"  "http://127.0.0.1:18080/1mib.bin"
run "keel  1 MiB"  "http://127.0.0.1:18081/ipfs/$CID_1M"
