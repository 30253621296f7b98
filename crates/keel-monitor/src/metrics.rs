//! The monitor's Prometheus metrics; each field's doc is its help text. Probes write them, the
//! node exports them on `/metrics`, and the rules read them back like any other keel metric
//! (so the built-in rules and the shipped Prometheus rules see the same series).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type FGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Labels of a probe.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `chain`, `http`, `tcp`, `tls`, `synthetic_tx`.
    pub kind: &'static str,
    /// Probe name (upstream name for chain probes, chain for synthetic transactions).
    pub probe: String,
}

/// Labels of a chain upstream.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Chain.
    pub chain: String,
    /// Upstream.
    pub upstream: String,
}

/// Labels of a chain.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabels {
    /// Chain.
    pub chain: String,
}

/// Labels of a filesystem.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    /// A path on it.
    pub path: String,
}

/// Labels of alert counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `pending` or `firing`.
    pub state: &'static str,
    /// Severity.
    pub severity: &'static str,
}

/// Labels of notification counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    /// Receiver name.
    pub receiver: String,
}

/// Labels of notification outcomes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Receiver name.
    pub receiver: String,
    /// `sent`, `retried`, `dropped` (superseded or queue full), `expired` (gave up).
    pub outcome: &'static str,
}

/// Labels of SLO series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabels {
    /// Chain.
    pub chain: String,
    /// `availability` or `latency`.
    pub slo: &'static str,
}

/// Labels of burn-rate series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BurnLabels {
    /// Chain.
    pub chain: String,
    /// `availability` or `latency`.
    pub slo: &'static str,
    /// Long window (`1h`, `6h`, `1d`, `3d`).
    pub long: &'static str,
    /// Short window (`5m`, `30m`, `2h`, `6h`).
    pub short: &'static str,
}

/// Labels of disk actions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// A path on the filesystem.
    pub path: String,
    /// `ok` or `failed`.
    pub outcome: &'static str,
}

/// Every monitor metric.
#[derive(Debug, Clone, Default)]
pub struct MonitorMetrics {
    /// 1 when the probe's last check succeeded, else 0.
    pub probe_up: Family<ProbeLabels, Gauge>,
    /// Duration of the probe's last check, seconds.
    pub probe_duration_seconds: Family<ProbeLabels, FGauge>,
    /// Failed checks.
    pub probe_failures: Family<ProbeLabels, Counter>,
    /// 1 when the upstream says it is syncing (`eth_syncing` not false).
    pub upstream_syncing: Family<UpstreamLabels, Gauge>,
    /// Peers of the upstream (`net_peerCount`); -1 when it does not answer the method.
    pub upstream_peers: Family<UpstreamLabels, Gauge>,
    /// 1 when the upstream's block at the quorum height has another hash than a quorum of
    /// upstreams agree on (a minority fork).
    pub upstream_forked: Family<UpstreamLabels, Gauge>,
    /// Seconds since the upstream's head last moved.
    pub upstream_head_age_seconds: Family<UpstreamLabels, FGauge>,
    /// The upstream's error rate (EWMA, 0..1).
    pub upstream_error_rate: Family<UpstreamLabels, FGauge>,
    /// Synthetic transactions sent.
    pub synthetic_tx_sent: Family<ChainLabels, Counter>,
    /// Synthetic transactions included in time.
    pub synthetic_tx_included: Family<ChainLabels, Counter>,
    /// Synthetic transactions that failed (refused, or not included within max_blocks).
    pub synthetic_tx_failed: Family<ChainLabels, Counter>,
    /// 1 when the last synthetic transaction was included in time, 0 when it failed.
    pub synthetic_tx_ok: Family<ChainLabels, Gauge>,
    /// Time from send to inclusion of the last included synthetic transaction, seconds.
    pub synthetic_tx_inclusion_seconds: Family<ChainLabels, FGauge>,
    /// Blocks from send to inclusion of the last included synthetic transaction.
    pub synthetic_tx_inclusion_blocks: Family<ChainLabels, Gauge>,
    /// Seconds until the probe's TLS certificate expires.
    pub tls_cert_expiry_seconds: Family<ProbeLabels, FGauge>,
    /// Used fraction of the filesystem (0..1).
    pub disk_used_ratio: Family<PathLabels, FGauge>,
    /// Free bytes of the filesystem (for unprivileged users).
    pub disk_free_bytes: Family<PathLabels, Gauge>,
    /// Predicted seconds until the filesystem is full (linear fit); +Inf when not filling.
    pub disk_time_to_full_seconds: Family<PathLabels, FGauge>,
    /// Host CPU busy fraction since the last sample (0..1).
    pub host_cpu_ratio: FGauge,
    /// Host memory in use (1 - MemAvailable/MemTotal).
    pub host_memory_ratio: FGauge,
    /// File descriptors keel has open.
    pub process_open_fds: Gauge,
    /// keel's file descriptor limit.
    pub process_max_fds: Gauge,
    /// Content store size as a fraction of monitor.host.content_max_bytes.
    pub content_size_ratio: FGauge,
    /// Alerts by state and severity.
    pub alerts: Family<AlertLabels, Gauge>,
    /// Rule evaluation rounds.
    pub evaluations: Counter,
    /// Duration of the last evaluation round, seconds.
    pub evaluation_seconds: FGauge,
    /// Rules loaded.
    pub rules: Gauge,
    /// Notifications by receiver and outcome.
    pub notifications: Family<OutcomeLabels, Counter>,
    /// Notifications waiting in a receiver's queue.
    pub notify_queue: Family<ReceiverLabels, Gauge>,
    /// SLO objective (target fraction).
    pub slo_objective: Family<SloLabels, FGauge>,
    /// Error budget left over the SLO window (1 = untouched, 0 = spent, negative = overspent).
    pub slo_error_budget_remaining: Family<SloLabels, FGauge>,
    /// Burn rate: the smaller of the long and the short window's (both must exceed a
    /// threshold for the multi-window alert).
    pub slo_burn_rate: Family<BurnLabels, FGauge>,
    /// Disk actions run.
    pub disk_actions: Family<ActionLabels, Counter>,
}

impl MonitorMetrics {
    /// Registers every metric under `registry` (prefix it with `keel` first).
    pub fn register(&self, r: &mut Registry) {
        macro_rules! reg {
            ($name:literal, $help:literal, $field:ident) => {
                r.register($name, $help, self.$field.clone());
            };
        }
        reg!(
            "probe_up",
            "1 when the probe's last check succeeded, else 0",
            probe_up
        );
        reg!(
            "probe_duration_seconds",
            "Duration of the probe's last check",
            probe_duration_seconds
        );
        reg!("probe_failures", "Failed probe checks", probe_failures);
        reg!(
            "upstream_syncing",
            "1 when the upstream says it is syncing",
            upstream_syncing
        );
        reg!(
            "upstream_peers",
            "Peers of the upstream (net_peerCount); -1 when unknown",
            upstream_peers
        );
        reg!(
            "upstream_forked",
            "1 when the upstream's block at the quorum height differs from the quorum's",
            upstream_forked
        );
        reg!(
            "upstream_head_age_seconds",
            "Seconds since the upstream's head last moved",
            upstream_head_age_seconds
        );
        reg!(
            "upstream_error_rate",
            "Error rate of the upstream (EWMA, 0..1)",
            upstream_error_rate
        );
        reg!(
            "synthetic_tx_sent",
            "Synthetic transactions sent",
            synthetic_tx_sent
        );
        reg!(
            "synthetic_tx_included",
            "Synthetic transactions included in time",
            synthetic_tx_included
        );
        reg!(
            "synthetic_tx_failed",
            "Synthetic transactions refused or not included in time",
            synthetic_tx_failed
        );
        reg!(
            "synthetic_tx_ok",
            "1 when the last synthetic transaction was included in time",
            synthetic_tx_ok
        );
        reg!(
            "synthetic_tx_inclusion_seconds",
            "Send-to-inclusion time of the last included synthetic transaction",
            synthetic_tx_inclusion_seconds
        );
        reg!(
            "synthetic_tx_inclusion_blocks",
            "Send-to-inclusion blocks of the last included synthetic transaction",
            synthetic_tx_inclusion_blocks
        );
        reg!(
            "tls_cert_expiry_seconds",
            "Seconds until the probed TLS certificate expires",
            tls_cert_expiry_seconds
        );
        reg!(
            "disk_used_ratio",
            "Used fraction of the filesystem",
            disk_used_ratio
        );
        reg!(
            "disk_free_bytes",
            "Free bytes of the filesystem",
            disk_free_bytes
        );
        reg!(
            "disk_time_to_full_seconds",
            "Predicted seconds until the filesystem is full; +Inf when not filling",
            disk_time_to_full_seconds
        );
        reg!("host_cpu_ratio", "Host CPU busy fraction", host_cpu_ratio);
        reg!(
            "host_memory_ratio",
            "Host memory in use (1 - available/total)",
            host_memory_ratio
        );
        reg!(
            "process_open_fds",
            "File descriptors keel has open",
            process_open_fds
        );
        reg!(
            "process_max_fds",
            "keel's file descriptor limit",
            process_max_fds
        );
        reg!(
            "content_size_ratio",
            "Content store size as a fraction of its configured limit",
            content_size_ratio
        );
        reg!("monitor_alerts", "Alerts by state and severity", alerts);
        reg!("monitor_evaluations", "Rule evaluation rounds", evaluations);
        reg!(
            "monitor_evaluation_seconds",
            "Duration of the last rule evaluation round",
            evaluation_seconds
        );
        reg!("monitor_rules", "Alert rules loaded", rules);
        reg!(
            "monitor_notifications",
            "Notifications by receiver and outcome",
            notifications
        );
        reg!(
            "monitor_notify_queue",
            "Notifications waiting in a receiver's queue",
            notify_queue
        );
        reg!(
            "slo_objective",
            "SLO objective (target fraction of good requests)",
            slo_objective
        );
        reg!(
            "slo_error_budget_remaining",
            "Error budget left over the SLO window (1 untouched, 0 spent)",
            slo_error_budget_remaining
        );
        reg!(
            "slo_burn_rate",
            "Burn rate: the smaller of the long and short window's",
            slo_burn_rate
        );
        reg!(
            "monitor_disk_actions",
            "Disk watermark actions run",
            disk_actions
        );
    }
}
