#!/usr/bin/env bash
# Monitor benchmarks: rule evaluation (10,000 rules over 100,000 series per 10 s round) and
# 1,000 HTTP probes per 30 s interval. Usage: bench/monitor/run.sh [EVAL_ROUNDS] [HTTP_INTERVALS]
# Results and the machine they ran on: docs/benchmarks.md, "Monitor".
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p keel-monitor --bench monitor
bin=$(ls -t "${CARGO_TARGET_DIR:-target}"/release/deps/monitor-* | grep -v '\.d$' | head -1)
"$bin" eval "${1:-60}"
"$bin" http "${2:-2}"
