//! The built-in rule set. docs/monitoring.md lists every rule with its runbook; the shipped
//! Prometheus rules (`deploy/prometheus/keel.rules.yml`) are generated from this list
//! (`keel monitor rules --prometheus`), so both stay the same.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_config::monitor::{RuleConfig, Severity};

/// One built-in rule: name, severity, expression, for, fire after, resolve after, summary,
/// runbook text (what it means and what to do).
pub struct Builtin {
    /// Alert name.
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Condition.
    pub expr: &'static str,
    /// `for`, seconds.
    pub for_secs: u64,
    /// Consecutive evaluations before firing.
    pub fire_after: u32,
    /// Consecutive evaluations before resolving.
    pub resolve_after: u32,
    /// Summary template.
    pub summary: &'static str,
    /// Runbook text.
    pub runbook: &'static str,
}

use Severity::{Critical, Warning};

/// Every built-in rule.
pub const BUILTIN: &[Builtin] = &[
    Builtin {
        name: "ChainUnavailable",
        severity: Critical,
        expr: "min by (chain) (keel_upstream_state) >= 2",
        for_secs: 30,
        fire_after: 2,
        resolve_after: 2,
        summary: "chain {{ $labels.chain }} has no usable upstream",
        runbook: "Every upstream of the chain is ejected, unverified or refused: the gateway answers -32002 for it. Check `keel status` for each upstream's state and error; check the nodes themselves (process up, port reachable, disk, sync). An upstream refused for a wrong chain id needs its URL fixed.",
    },
    Builtin {
        name: "UpstreamDown",
        severity: Critical,
        expr: "keel_upstream_state == 2",
        for_secs: 30,
        fire_after: 2,
        resolve_after: 2,
        summary: "upstream {{ $labels.upstream }} of {{ $labels.chain }} is ejected (not answering)",
        runbook: "The upstream's circuit breaker is open: its last calls failed (refused, reset, timed out or HTTP 5xx/429). Traffic goes to the other upstreams. Check the node's process, logs and network path; `keel status` shows its error rate and ejection count. It comes back by itself once a probe succeeds.",
    },
    Builtin {
        name: "UpstreamWrongChain",
        severity: Critical,
        expr: "keel_upstream_state == 4",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 1,
        summary: "upstream {{ $labels.upstream }} serves another chain than {{ $labels.chain }}",
        runbook: "eth_chainId returned another chain id: keel never routes to it. Fix the upstream's url (or move it to the right [[chains]]) and restart.",
    },
    Builtin {
        name: "UpstreamLagging",
        severity: Warning,
        expr: "keel_upstream_lag_blocks > 5",
        for_secs: 60,
        fire_after: 3,
        resolve_after: 3,
        summary: "upstream {{ $labels.upstream }} of {{ $labels.chain }} is {{ $value }} blocks behind the quorum head",
        runbook: "Lag is measured against the head that at least two usable upstreams reached, so one node cannot hide its own lag. A lagging node gets no head-sensitive reads. Check its sync status (keel_upstream_syncing), peers (keel_upstream_peers), disk I/O and CPU; a node far behind after a restart catches up by itself.",
    },
    Builtin {
        name: "UpstreamForked",
        severity: Critical,
        expr: "keel_upstream_forked == 1",
        for_secs: 0,
        fire_after: 2,
        resolve_after: 2,
        summary: "upstream {{ $labels.upstream }} of {{ $labels.chain }} is on a minority fork",
        runbook: "Its block at the quorum height has another hash than the one a quorum of upstreams agree on: it follows another chain (a minority fork, a misconfigured network, a node that mines on its own) even if its head keeps moving. Take it out of rotation (or let verified reads outvote it), compare its genesis and fork configuration with the others, resync it.",
    },
    Builtin {
        name: "UpstreamSyncing",
        severity: Warning,
        expr: "keel_upstream_syncing == 1",
        for_secs: 300,
        fire_after: 1,
        resolve_after: 2,
        summary: "upstream {{ $labels.upstream }} of {{ $labels.chain }} reports it is syncing",
        runbook: "eth_syncing has not returned false for 5 minutes. A node still syncing serves stale or missing state. Wait for it if it was just started or restored; else check its peers and disk.",
    },
    Builtin {
        name: "UpstreamNoPeers",
        severity: Warning,
        expr: "keel_upstream_peers == 0",
        for_secs: 300,
        fire_after: 1,
        resolve_after: 2,
        summary: "upstream {{ $labels.upstream }} of {{ $labels.chain }} has no peers",
        runbook: "net_peerCount is 0: the node receives no new blocks and will fall behind. Check its p2p port (firewall, NAT), bootnodes and clock. Local dev nodes (anvil) have no peers: the embedded devnet disables this rule.",
    },
    Builtin {
        name: "UpstreamHeadStalled",
        severity: Warning,
        expr: "keel_upstream_head_age_seconds > 180",
        for_secs: 0,
        fire_after: 2,
        resolve_after: 1,
        summary: "the head of upstream {{ $labels.upstream }} ({{ $labels.chain }}) has not moved for {{ $value }} s",
        runbook: "The node answers but its latest block stays the same. If every upstream of the chain shows it, the chain itself halted (see ChainHeadStalled); else the node stopped importing blocks: check its logs and peers. On chains with blocks slower than 3 minutes, raise the threshold.",
    },
    Builtin {
        name: "ChainHeadStalled",
        severity: Critical,
        expr: "min by (chain) (keel_upstream_head_age_seconds) > 300",
        for_secs: 0,
        fire_after: 2,
        resolve_after: 1,
        summary: "no upstream of {{ $labels.chain }} has seen a new block for {{ $value }} s",
        runbook: "No upstream's head moved for 5 minutes: the chain halted, or every node lost its peers. Check the chain's public status and your nodes' connectivity.",
    },
    Builtin {
        name: "UpstreamErrorRate",
        severity: Warning,
        expr: "keel_upstream_error_rate > 0.2",
        for_secs: 300,
        fire_after: 1,
        resolve_after: 3,
        summary: "upstream {{ $labels.upstream }} of {{ $labels.chain }} fails {{ $value }} of its calls",
        runbook: "More than 20 % of the upstream's calls fail (EWMA). The gateway retries elsewhere, at a latency cost. Check the node's logs, its rate limits (HTTP 429) and its load.",
    },
    Builtin {
        name: "GatewayErrorRate",
        severity: Critical,
        expr: "sum by (chain) (rate(keel_rpc_requests_total{outcome=~\"no_upstream|deadline|failed\"}[5m])) / sum by (chain) (rate(keel_rpc_requests_total{outcome!=\"rejected\"}[5m])) > 0.05",
        for_secs: 300,
        fire_after: 1,
        resolve_after: 2,
        summary: "{{ $value }} of the requests to {{ $labels.chain }} fail",
        runbook: "More than 5 % of client requests got no answer (no healthy upstream, deadline exceeded, every upstream failed) for 5 minutes. Look at the upstream alerts firing at the same time; keel_rpc_retries_total shows how hard the gateway is working around failures.",
    },
    Builtin {
        name: "ErrorBudgetBurnFast",
        severity: Critical,
        expr: "keel_slo_burn_rate{long=\"1h\"} > 14.4",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 2,
        summary: "{{ $labels.chain }} {{ $labels.slo }} SLO burns its error budget {{ $value }}x too fast (1h and 5m)",
        runbook: "At this rate 2 % of the 30-day error budget goes in one hour (SRE workbook, multi-window multi-burn-rate). Find the cause among the other alerts (upstreams, gateway error rate, latency); `keel status` and the gateway dashboard show which upstreams fail.",
    },
    Builtin {
        name: "ErrorBudgetBurnHigh",
        severity: Critical,
        expr: "keel_slo_burn_rate{long=\"6h\"} > 6",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 2,
        summary: "{{ $labels.chain }} {{ $labels.slo }} SLO burns its error budget {{ $value }}x too fast (6h and 30m)",
        runbook: "At this rate 5 % of the 30-day error budget goes in six hours. Same steps as ErrorBudgetBurnFast.",
    },
    Builtin {
        name: "ErrorBudgetBurnSlow",
        severity: Warning,
        expr: "keel_slo_burn_rate{long=\"1d\"} > 3",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 2,
        summary: "{{ $labels.chain }} {{ $labels.slo }} SLO burns its error budget {{ $value }}x too fast (1d and 2h)",
        runbook: "At this rate 10 % of the 30-day error budget goes in a day. Not urgent: plan the fix (a flaky upstream, too few upstreams, a slow method).",
    },
    Builtin {
        name: "ErrorBudgetBurnSlower",
        severity: Warning,
        expr: "keel_slo_burn_rate{long=\"3d\"} > 1",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 2,
        summary: "{{ $labels.chain }} {{ $labels.slo }} SLO burns its error budget faster than it is earned (3d and 6h)",
        runbook: "The budget will be spent before the 30-day window ends. Review the SLO dashboard and the upstreams' error rates.",
    },
    Builtin {
        name: "SyntheticTransactionNotIncluded",
        severity: Critical,
        expr: "keel_synthetic_tx_ok == 0",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 1,
        summary: "a synthetic transaction on {{ $labels.chain }} was refused or not included in time",
        runbook: "The probe's self-transfer, sent through the gateway, was refused or not included within max_blocks. Users' transactions are likely stuck too. Check that the upstreams accept transactions (eth_sendRawTransaction answers), that their mempools propagate them, the account's balance (gas) and nonce, and the gas price.",
    },
    Builtin {
        name: "ProbeFailing",
        severity: Critical,
        expr: "keel_probe_up{kind=~\"http|tcp|tls\"} == 0",
        for_secs: 0,
        fire_after: 2,
        resolve_after: 2,
        summary: "{{ $labels.kind }} probe {{ $labels.probe }} fails",
        runbook: "The endpoint did not answer, or an assertion on its answer failed (see keel's log line for the probe: it names the condition). Check the service behind it; for a bootstrap node, its process and port.",
    },
    Builtin {
        name: "CertificateExpiringSoon",
        severity: Warning,
        expr: "keel_tls_cert_expiry_seconds < 1209600",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 1,
        summary: "the TLS certificate of {{ $labels.probe }} expires in {{ $value }} s",
        runbook: "Less than 14 days left. Renew the certificate (check the ACME client's logs if renewal is automatic).",
    },
    Builtin {
        name: "CertificateExpiring",
        severity: Critical,
        expr: "keel_tls_cert_expiry_seconds < 259200",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 1,
        summary: "the TLS certificate of {{ $labels.probe }} expires in {{ $value }} s",
        runbook: "Less than 3 days left: clients will refuse the endpoint when it expires. Renew now.",
    },
    Builtin {
        name: "DiskFillingUp",
        severity: Warning,
        expr: "keel_disk_time_to_full_seconds < 86400",
        for_secs: 1800,
        fire_after: 1,
        resolve_after: 3,
        summary: "the filesystem of {{ $labels.path }} will be full in {{ $value }} s at the current rate",
        runbook: "A linear fit of the last 6 hours of use predicts a full disk within a day. Find what grows (content store, logs, devnet state); run content GC or configure a [[monitor.disk_actions]] watermark.",
    },
    Builtin {
        name: "DiskAlmostFull",
        severity: Critical,
        expr: "keel_disk_used_ratio > 0.95",
        for_secs: 300,
        fire_after: 1,
        resolve_after: 2,
        summary: "the filesystem of {{ $labels.path }} is {{ $value }} full",
        runbook: "More than 95 % used: writes (blocks, the monitor database, logs) will fail soon. Free space now: content GC, old logs, old devnet state.",
    },
    Builtin {
        name: "HostMemoryHigh",
        severity: Warning,
        expr: "keel_host_memory_ratio > 0.9",
        for_secs: 600,
        fire_after: 1,
        resolve_after: 2,
        summary: "host memory is {{ $value }} used",
        runbook: "Less than 10 % of memory available for 10 minutes: the OOM killer may stop keel or a node. Find the process that grew.",
    },
    Builtin {
        name: "HostCpuHigh",
        severity: Warning,
        expr: "keel_host_cpu_ratio > 0.9",
        for_secs: 900,
        fire_after: 1,
        resolve_after: 2,
        summary: "host CPU is {{ $value }} busy",
        runbook: "CPU above 90 % for 15 minutes: latency grows. Check which process uses it; consider more cores or fewer gateway workers.",
    },
    Builtin {
        name: "FileDescriptorsRunningOut",
        severity: Warning,
        expr: "keel_process_open_fds / keel_process_max_fds > 0.8",
        for_secs: 300,
        fire_after: 1,
        resolve_after: 2,
        summary: "keel uses {{ $value }} of its file descriptor limit",
        runbook: "New connections will fail at the limit. Raise it (LimitNOFILE in the systemd unit, ulimit -n) or find what holds connections open.",
    },
    Builtin {
        name: "ContentStoreNearlyFull",
        severity: Warning,
        expr: "keel_content_size_ratio > 0.9",
        for_secs: 300,
        fire_after: 1,
        resolve_after: 2,
        summary: "the content store is at {{ $value }} of its limit",
        runbook: "More than 90 % of monitor.host.content_max_bytes. Run `keel content gc`, unpin what is no longer needed, or raise the limit.",
    },
    Builtin {
        name: "ContentVerificationFailures",
        severity: Critical,
        expr: "increase(keel_content_verification_failures_total[10m]) > 0",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 1,
        summary: "{{ $value }} content blocks did not match their CID",
        runbook: "Blocks read from disk did not hash to their CID: disk corruption or tampering. keel refuses to serve them. Check the disk (SMART, filesystem errors) and re-fetch the affected content.",
    },
    Builtin {
        name: "NotificationsFailing",
        severity: Warning,
        expr: "increase(keel_monitor_notifications_total{outcome=\"expired\"}[1h]) > 0",
        for_secs: 0,
        fire_after: 1,
        resolve_after: 1,
        summary: "notifications to {{ $labels.receiver }} were given up",
        runbook: "A receiver failed every retry for monitor.notify.give_up_after. Check its URL, credentials and reachability; keel's log names the error.",
    },
];

/// The built-in rules as rule configs, without the disabled ones.
pub fn rules(disabled: &[String]) -> Vec<RuleConfig> {
    BUILTIN
        .iter()
        .filter(|b| !disabled.iter().any(|d| d == b.name))
        .map(|b| RuleConfig {
            name: b.name.to_owned(),
            expr: b.expr.to_owned(),
            for_: Duration::from_secs(b.for_secs),
            fire_after: b.fire_after,
            resolve_after: b.resolve_after,
            severity: b.severity,
            labels: BTreeMap::new(),
            summary: b.summary.to_owned(),
            description: b.runbook.to_owned(),
            runbook: Some(format!(
                "docs/monitoring.md#{}",
                b.name.to_ascii_lowercase()
            )),
        })
        .collect()
}

/// Evaluation interval of the shipped Prometheus rule group (as keel's default).
pub const PROMETHEUS_INTERVAL_SECS: u64 = 10;

fn yaml_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The built-in rules as a Prometheus alerting rule file. Hysteresis maps onto Prometheus:
/// `fire_after` k adds k-1 evaluation intervals to `for`, `resolve_after` j becomes
/// `keep_firing_for` of j-1 intervals (Prometheus 2.42+).
pub fn prometheus_rules() -> String {
    let mut out = String::from(
        "# Generated by `keel alerts rules --prometheus` from crates/keel-monitor/src/default_rules.rs:\n\
         # keel's built-in alert rules, for Prometheus scraping keel's /metrics. Do not edit by hand.\n\
         groups:\n  - name: keel\n",
    );
    out.push_str(&format!(
        "    interval: {PROMETHEUS_INTERVAL_SECS}s\n    rules:\n"
    ));
    for b in BUILTIN {
        let for_secs =
            b.for_secs + u64::from(b.fire_after.saturating_sub(1)) * PROMETHEUS_INTERVAL_SECS;
        out.push_str(&format!(
            "      - alert: {}\n        expr: {}\n",
            b.name,
            yaml_str(b.expr)
        ));
        if for_secs > 0 {
            out.push_str(&format!("        for: {for_secs}s\n"));
        }
        let keep = u64::from(b.resolve_after.saturating_sub(1)) * PROMETHEUS_INTERVAL_SECS;
        if keep > 0 {
            out.push_str(&format!("        keep_firing_for: {keep}s\n"));
        }
        out.push_str(&format!(
            "        labels:\n          severity: {}\n        annotations:\n          summary: {}\n          description: {}\n          runbook_url: {}\n",
            b.severity.as_str(),
            yaml_str(b.summary),
            yaml_str(b.runbook),
            yaml_str(&format!("docs/monitoring.md#{}", b.name.to_ascii_lowercase()))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_builtin_rule_parses_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for b in super::BUILTIN {
            crate::expr::parse(b.expr).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            assert!(names.insert(b.name), "{} twice", b.name);
        }
        assert_eq!(
            super::rules(&["UpstreamNoPeers".into()]).len(),
            super::BUILTIN.len() - 1
        );
    }
}
