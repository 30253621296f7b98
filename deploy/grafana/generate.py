#!/usr/bin/env python3
"""Writes keel's Grafana dashboards (deploy/grafana/*.json). Every query is plain PromQL (no
Grafana-only variables), so the test that runs them against a real Prometheus scraping keel
checks exactly what the panels show. Queries over series that exist only after an event (a
retry, a failure) fall back to 0 with `or ... * 0`, so a panel shows 0 rather than "no data"."""
import json, pathlib

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
REQ = "keel_rpc_requests_total"
BAD = 'outcome=~"no_upstream|deadline|failed"'

def or_zero(expr, base):
    return f"({expr}) or ({base}) * 0"

def panel(i, title, exprs, unit="short", kind="timeseries"):
    targets = [{"refId": chr(65 + n), "expr": e, "legendFormat": lf, "datasource": DS} for n, (e, lf) in enumerate(exprs)]
    return {
        "id": i + 1, "type": kind, "title": title, "datasource": DS, "targets": targets,
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": {},
    }

def dashboard(uid, title, panels):
    return {
        "uid": uid, "title": title, "tags": ["keel"], "schemaVersion": 39, "version": 1,
        "editable": True, "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource", "query": "prometheus"}]},
        "panels": [panel(i, *p) for i, p in enumerate(panels)],
    }

rate_all = f"sum by (chain) (rate({REQ}[5m]))"
boards = {
    "keel-gateway": dashboard("keel-gateway", "keel / gateway", [
        ("Requests per second by outcome", [(f"sum by (chain, outcome) (rate({REQ}[5m]))", "{{chain}} {{outcome}}")], "reqps"),
        ("Error ratio (no answer)", [(f"({or_zero(f'sum by (chain) (rate({REQ}{{{BAD}}}[5m]))', rate_all)}) / sum by (chain) (rate({REQ}{{outcome!=\"rejected\"}}[5m]))", "{{chain}}")], "percentunit"),
        ("Latency p50 / p99", [
            ("histogram_quantile(0.5, sum by (le, chain) (rate(keel_rpc_request_duration_seconds_bucket[5m])))", "p50 {{chain}}"),
            ("histogram_quantile(0.99, sum by (le, chain) (rate(keel_rpc_request_duration_seconds_bucket[5m])))", "p99 {{chain}}")], "s"),
        ("Requests in flight", [("sum by (chain) (keel_rpc_in_flight)", "{{chain}}")]),
        ("Retries and failovers per second", [
            (or_zero("sum by (chain) (rate(keel_rpc_retries_total[5m]))", rate_all), "retries {{chain}}"),
            (or_zero("sum by (chain) (rate(keel_rpc_failovers_total[5m]))", rate_all), "failovers {{chain}}")], "reqps"),
        ("Refused before JSON-RPC (size, batch)", [(or_zero("sum by (chain) (rate(keel_rpc_refused_http_total[5m]))", rate_all), "{{chain}}")], "reqps"),
        ("Requests per second by method", [(f"topk(10, sum by (method) (rate({REQ}[5m])))", "{{method}}")], "reqps"),
    ]),
    "keel-chains": dashboard("keel-chains", "keel / chains and upstreams", [
        ("Chain head", [("keel_chain_head", "{{chain}}")]),
        ("Upstream lag behind the quorum head (blocks)", [("keel_upstream_lag_blocks", "{{chain}}/{{upstream}}")]),
        ("Upstream state (0 healthy, 1 degraded, 2 ejected, 3 unverified, 4 refused)", [("keel_upstream_state", "{{chain}}/{{upstream}}")]),
        ("Upstream latency (EWMA)", [("keel_upstream_latency_seconds", "{{chain}}/{{upstream}}")], "s"),
        ("Upstream error rate (EWMA)", [("keel_upstream_error_rate", "{{chain}}/{{upstream}}")], "percentunit"),
        ("Minority fork (1 = block differs from the quorum's)", [("keel_upstream_forked", "{{chain}}/{{upstream}}")]),
        ("Seconds since the head moved", [("keel_upstream_head_age_seconds", "{{chain}}/{{upstream}}")], "s"),
        ("Peers and syncing", [("keel_upstream_peers", "peers {{upstream}}"), ("keel_upstream_syncing", "syncing {{upstream}}")]),
        ("Head poll failures per second", [(or_zero("sum by (chain, upstream) (rate(keel_head_poll_failures_total[5m]))", "keel_upstream_head"), "{{chain}}/{{upstream}}")]),
        ("In flight and ejections", [("keel_upstream_in_flight", "in flight {{upstream}}"), ("keel_upstream_ejections", "ejections {{upstream}}")]),
    ]),
    "keel-verification": dashboard("keel-verification", "keel / verified reads", [
        ("Verified reads per second by mode and outcome", [("sum by (chain, mode, outcome) (rate(keel_rpc_verified_requests_total[5m]))", "{{chain}} {{mode}} {{outcome}}")], "reqps"),
        ("Extra upstream calls per verified read", [(f"({or_zero('sum by (chain) (rate(keel_rpc_verify_extra_calls_total[5m]))', 'sum by (chain) (rate(keel_rpc_verified_requests_total[5m]))')}) / sum by (chain) (rate(keel_rpc_verified_requests_total[5m]))", "{{chain}}")]),
        ("Disagreements and failed proofs per second", [(or_zero("sum by (chain, upstream) (rate(keel_rpc_verify_disagreements_total[5m]))", "sum by (chain) (rate(keel_rpc_verified_requests_total[5m]))"), "{{chain}} {{upstream}}")]),
        ("State roots by source", [(or_zero("sum by (chain, source) (rate(keel_rpc_verify_roots_total[5m]))", "sum by (chain) (rate(keel_rpc_verified_requests_total[5m]))"), "{{chain}} {{source}}")]),
    ]),
    "keel-content": dashboard("keel-content", "keel / content store", [
        ("Bytes and blocks stored", [("keel_content_bytes_stored", "bytes"), ("keel_content_blocks_stored", "blocks")], "bytes"),
        ("Write throughput", [("rate(keel_content_bytes_written_total[5m])", "bytes/s")], "Bps"),
        ("HTTP requests per second by listener and status", [("sum by (listener, status) (rate(keel_content_http_requests_total[5m]))", "{{listener}} {{status}}")], "reqps"),
        ("Verification failures and GC", [("rate(keel_content_verification_failures_total[5m])", "failures/s"), ("rate(keel_content_gc_removed_blocks_total[5m])", "GC blocks/s")]),
        ("Time to response headers p99", [("histogram_quantile(0.99, sum by (le, listener) (rate(keel_content_http_latency_seconds_bucket[5m])))", "{{listener}}")], "s"),
    ]),
    "keel-monitoring": dashboard("keel-monitoring", "keel / monitoring", [
        ("Alerts by state and severity", [("sum by (state, severity) (keel_monitor_alerts)", "{{state}} {{severity}}")]),
        ("Rule evaluation (seconds per round) and rules", [("keel_monitor_evaluation_seconds", "seconds"), ("keel_monitor_rules", "rules")]),
        ("Notifications per second", [("sum by (receiver, outcome) (rate(keel_monitor_notifications_total[5m])) or vector(0)", "{{receiver}} {{outcome}}")]),
        ("Probes up", [("keel_probe_up", "{{kind}} {{probe}}")]),
        ("SLO error budget remaining", [("keel_slo_error_budget_remaining", "{{chain}} {{slo}}")], "percentunit"),
        ("SLO burn rate (min of long and short window)", [("keel_slo_burn_rate", "{{chain}} {{slo}} {{long}}/{{short}}")]),
        ("Synthetic transactions", [("keel_synthetic_tx_ok", "ok {{chain}}"), ("keel_synthetic_tx_inclusion_seconds", "inclusion s {{chain}}")]),
        ("Disk used and time to full", [("keel_disk_used_ratio", "used {{path}}"), ("clamp_max(keel_disk_time_to_full_seconds, 8640000)", "time to full {{path}}")]),
        ("Host CPU and memory", [("keel_host_cpu_ratio", "cpu"), ("keel_host_memory_ratio", "memory")], "percentunit"),
        ("Open file descriptors", [("keel_process_open_fds / keel_process_max_fds", "share of limit")], "percentunit"),
    ]),
}
here = pathlib.Path(__file__).parent
for name, d in boards.items():
    (here / f"{name}.json").write_text(json.dumps(d, indent=2) + "\n")
