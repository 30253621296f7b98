//! `[monitor]`: probes, alert rules, notifications, SLOs, the status page and disk actions
//! (see docs/monitoring.md). Absent = no monitoring; the embedded devnet default enables it.
//!
//! Every field has a default, so an empty `[monitor]` table monitors every chain with the
//! default rule set and serves the status page on `127.0.0.1:9546`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::SecretUrl;
use crate::content::SecretSource;

/// The `[monitor]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// How often rules are evaluated (and keel's metrics sampled for them). Default `10s`.
    #[serde(with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// Load the built-in rule set (docs/monitoring.md lists it). Default `true`.
    pub default_rules: bool,
    /// Names of built-in rules to leave out. Default none.
    pub disable_rules: Vec<String>,
    /// How long alert history, resolved incidents and uptime are kept. Default `90d`.
    #[serde(with = "humantime_serde")]
    pub history_retention: Duration,
    /// The public status page listener.
    pub status: StatusPageConfig,
    /// Probes of every chain's upstreams.
    pub chain_probe: ChainProbeConfig,
    /// Synthetic transaction probes (`[[monitor.synthetic_tx]]`).
    pub synthetic_tx: Vec<SyntheticTxConfig>,
    /// HTTP(S) endpoint checks (`[[monitor.http]]`).
    pub http: Vec<HttpProbeConfig>,
    /// TCP and TLS checks (`[[monitor.tcp]]`).
    pub tcp: Vec<TcpProbeConfig>,
    /// Host checks: disk, CPU, memory, open files. `host.enabled = false` disables them.
    pub host: HostProbeConfig,
    /// Operator rules (`[[monitor.rules]]`), added to the built-in ones.
    pub rules: Vec<RuleConfig>,
    /// Where alerts go (`[[monitor.routes]]`), first matching route first.
    pub routes: Vec<RouteConfig>,
    /// Notification receivers (`[[monitor.receivers]]`).
    pub receivers: Vec<ReceiverConfig>,
    /// Inhibition rules. Default: a `critical` alert mutes `warning` and `info` alerts with the
    /// same `chain`, `upstream`, `probe` and `path` labels.
    pub inhibit: Vec<InhibitConfig>,
    /// Maintenance windows (`[[monitor.maintenance]]`): matching alerts notify nobody.
    pub maintenance: Vec<MaintenanceConfig>,
    /// Service level objectives of every chain's gateway endpoint.
    pub slo: SloConfig,
    /// Notification delivery: queue, retries, limits.
    pub notify: NotifyConfig,
    /// Disk watermark actions (`[[monitor.disk_actions]]`).
    pub disk_actions: Vec<DiskActionConfig>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            evaluation_interval: Duration::from_secs(10),
            default_rules: true,
            disable_rules: Vec::new(),
            history_retention: Duration::from_secs(90 * 86_400),
            status: StatusPageConfig::default(),
            chain_probe: ChainProbeConfig::default(),
            synthetic_tx: Vec::new(),
            http: Vec::new(),
            tcp: Vec::new(),
            host: HostProbeConfig::default(),
            rules: Vec::new(),
            routes: Vec::new(),
            receivers: Vec::new(),
            inhibit: vec![InhibitConfig::default()],
            maintenance: Vec::new(),
            slo: SloConfig::default(),
            notify: NotifyConfig::default(),
            disk_actions: Vec::new(),
        }
    }
}

/// `[monitor.status]`: the status page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPageConfig {
    /// Address of the status page (`/`, `/status.json`). `"off"` disables it. Default
    /// `127.0.0.1:9546`. Read-only; incidents are posted through the admin listener.
    #[serde(deserialize_with = "de_listen")]
    pub listen: Option<SocketAddr>,
    /// Page title. Default `"Status"`.
    pub title: String,
    /// Most connections served at once; more wait in the kernel's backlog. Default 256.
    pub max_connections: usize,
    /// Deadline for answering one request. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for StatusPageConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9546))),
            title: "Status".to_owned(),
            max_connections: 256,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// `[monitor.chain_probe]`: the monitor's own calls to every upstream (`eth_syncing`,
/// `net_peerCount`, the block at the quorum head), besides what head tracking already knows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainProbeConfig {
    /// Between two probes of an upstream. Default `15s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Deadline of one probe call. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest answer read from an upstream, in bytes. Default 1 MiB.
    pub max_response_bytes: usize,
}

impl Default for ChainProbeConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 20,
        }
    }
}

/// `[[monitor.synthetic_tx]]`: a self-transfer sent through the gateway on a schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticTxConfig {
    /// Chain name (as served by the gateway).
    pub chain: String,
    /// The sending account's private key (hex), from a file or an environment variable.
    pub key: SecretSource,
    /// Between two transactions. Default `1m`.
    #[serde(default = "d_60s", with = "humantime_serde")]
    pub interval: Duration,
    /// Blocks after which a transaction not included is a failure. Default 5.
    #[serde(default = "d_5u64")]
    pub max_blocks: u64,
    /// Deadline of one JSON-RPC call to the gateway. Default `10s`.
    #[serde(default = "d_10s", with = "humantime_serde")]
    pub timeout: Duration,
    /// Gateway URL to send through. Default: this node's gateway, `/rpc/<chain>`.
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// Gas price in wei. Default: the chain's `eth_gasPrice` × 2.
    #[serde(default)]
    pub gas_price: Option<u64>,
}

/// `[[monitor.http]]`: an HTTP(S) endpoint check with Gatus-style conditions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeConfig {
    /// Probe name (the `probe` label; a status page component).
    pub name: String,
    /// The URL (secret parts never logged).
    pub url: SecretUrl,
    /// `GET`, `HEAD` or `POST`. Default `GET`.
    #[serde(default = "d_get")]
    pub method: String,
    /// Request body (for `POST`).
    #[serde(default)]
    pub body: Option<String>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Conditions that must all hold, e.g. `"[STATUS] == 200"`, `"[RESPONSE_TIME] < 500"`,
    /// `"[BODY].status == UP"`, `"[BODY] contains ok"`. Default `["[STATUS] == 200"]`.
    #[serde(default = "d_status_ok")]
    pub conditions: Vec<String>,
    /// Between two checks. Default `30s`.
    #[serde(default = "d_30s", with = "humantime_serde")]
    pub interval: Duration,
    /// Deadline of one check. Default `10s`.
    #[serde(default = "d_10s", with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest body read, in bytes. Default 1 MiB.
    #[serde(default = "d_1mib")]
    pub max_body_bytes: usize,
    /// Show on the status page. Default `true`.
    #[serde(default = "d_true")]
    pub public: bool,
}

/// `[[monitor.tcp]]`: a TCP connect check, optionally a TLS handshake with certificate expiry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbeConfig {
    /// Probe name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Do a TLS handshake and report the certificate's expiry. Default `false`.
    #[serde(default)]
    pub tls: bool,
    /// Name the certificate must be valid for. Default: the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM file of extra CA certificates trusted for the handshake.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Between two checks. Default `30s`.
    #[serde(default = "d_30s", with = "humantime_serde")]
    pub interval: Duration,
    /// Deadline of one check. Default `10s`.
    #[serde(default = "d_10s", with = "humantime_serde")]
    pub timeout: Duration,
    /// Show on the status page. Default `true`.
    #[serde(default = "d_true")]
    pub public: bool,
}

/// `[monitor.host]`: the machine keel runs on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostProbeConfig {
    /// Default `true`.
    pub enabled: bool,
    /// Between two samples. Default `15s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Filesystems watched, by a path on them. Default: the data directory.
    pub disk_paths: Vec<PathBuf>,
    /// Window of the linear fit that predicts when a disk is full. Default `6h`.
    #[serde(with = "humantime_serde")]
    pub fill_window: Duration,
    /// The content store's size limit in bytes, to alert before it is reached. Default none.
    pub content_max_bytes: Option<u64>,
}

impl Default for HostProbeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(15),
            disk_paths: Vec::new(),
            fill_window: Duration::from_secs(6 * 3600),
            content_max_bytes: None,
        }
    }
}

/// Alert severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs attention during working hours.
    Warning,
    /// Pages someone.
    Critical,
}

impl Severity {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// `[[monitor.rules]]`: one alert rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Alert name (`alertname` label). A name of a built-in rule replaces it.
    pub name: String,
    /// Condition, in the PromQL subset of docs/monitoring.md, e.g.
    /// `keel_upstream_lag_blocks > 10`. One alert per series (or group) for which it holds.
    pub expr: String,
    /// The condition must hold this long before the alert fires. Default `0s`.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Duration,
    /// Consecutive evaluations the condition must hold before firing. Default 1.
    #[serde(default = "d_1u32")]
    pub fire_after: u32,
    /// Consecutive evaluations it must not hold before resolving. Default 1.
    #[serde(default = "d_1u32")]
    pub resolve_after: u32,
    /// `info`, `warning` or `critical`. Default `warning`.
    #[serde(default = "d_warning")]
    pub severity: Severity,
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// One-line summary; `{{ $labels.name }}` and `{{ $value }}` are replaced.
    #[serde(default)]
    pub summary: String,
    /// What it means and what to do.
    #[serde(default)]
    pub description: String,
    /// Runbook URL.
    #[serde(default)]
    pub runbook: Option<String>,
}

/// `[[monitor.routes]]`: which receivers get which alerts, grouping and escalation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Label matchers (`severity = "critical"`, `chain = "=~main|base"`); empty = every alert.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Receivers notified.
    pub receivers: Vec<String>,
    /// Alerts with equal values of these labels are notified together. Default
    /// `["alertname", "chain"]`.
    #[serde(default = "d_group_by")]
    pub group_by: Vec<String>,
    /// Wait before the first notification of a new group (to batch alerts). Default `10s`.
    #[serde(default = "d_10s", with = "humantime_serde")]
    pub group_wait: Duration,
    /// Re-notify a group with unacknowledged firing alerts this often. Default `4h`.
    #[serde(default = "d_4h", with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// When an alert stays firing and unacknowledged this long, notify `escalate_to` too.
    /// Default: no escalation.
    #[serde(default, with = "humantime_serde")]
    pub escalate_after: Option<Duration>,
    /// Receivers of escalations.
    #[serde(default)]
    pub escalate_to: Vec<String>,
    /// Keep matching later routes after this one. Default `false`.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

/// Kind of receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// Generic JSON webhook (Alertmanager's webhook format).
    Webhook,
    /// Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    PagerDuty,
    /// Opsgenie Alert API.
    Opsgenie,
    /// Email over SMTP.
    Email,
    /// Alertmanager API v2 (`POST /api/v2/alerts`).
    Alertmanager,
}

/// `[[monitor.receivers]]`: one notification target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Name used by routes, logs and metrics.
    pub name: String,
    /// `webhook`, `slack`, `pagerduty`, `opsgenie`, `email` or `alertmanager`.
    pub kind: ReceiverKind,
    /// Endpoint. Required for webhook, slack and alertmanager (its base URL); defaults to the
    /// public API for pagerduty and opsgenie. Secret parts (Slack's token) are never logged.
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// PagerDuty routing key (integration key).
    #[serde(default)]
    pub routing_key: Option<SecretSource>,
    /// Opsgenie API key (`GenieKey`).
    #[serde(default)]
    pub api_key: Option<SecretSource>,
    /// Email settings.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Only alerts of at least this severity. Default `info` (all).
    #[serde(default = "d_info")]
    pub min_severity: Severity,
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP then STARTTLS (required).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on loopback.
    None,
}

/// `[monitor.receivers.smtp]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host name.
    pub host: String,
    /// Port. Default 587.
    #[serde(default = "d_587")]
    pub port: u16,
    /// `starttls`, `tls` or `none`. Default `starttls`.
    #[serde(default = "d_starttls")]
    pub security: SmtpSecurity,
    /// User name for AUTH.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for AUTH.
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

/// `[[monitor.inhibit]]`: while a source alert fires, matching target alerts notify nobody.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    /// Matchers of the muting alert.
    pub source_match: BTreeMap<String, String>,
    /// Matchers of the muted alerts.
    pub target_match: BTreeMap<String, String>,
    /// Labels that must be equal in both (absent counts as equal).
    #[serde(default)]
    pub equal: Vec<String>,
}

impl Default for InhibitConfig {
    fn default() -> Self {
        Self {
            source_match: BTreeMap::from([("severity".to_owned(), "critical".to_owned())]),
            target_match: BTreeMap::from([("severity".to_owned(), "=~warning|info".to_owned())]),
            equal: ["chain", "upstream", "probe", "path"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// `[[monitor.maintenance]]`: a planned window during which matching alerts notify nobody.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Shown on the status page.
    pub name: String,
    /// Start, RFC 3339 (`2026-01-31T22:00:00Z`).
    pub start: String,
    /// End, RFC 3339.
    pub end: String,
    /// Label matchers; empty = every alert.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
}

/// `[monitor.slo]`: availability and latency objectives, applied to every chain's gateway
/// endpoint, computed from the gateway's own request outcomes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    /// Default `true`.
    pub enabled: bool,
    /// Fraction of requests that must not fail (outcomes `no_upstream`, `deadline`,
    /// `failed`). Default `0.999`.
    pub availability: f64,
    /// Latency threshold: a histogram bucket bound of `keel_rpc_request_duration_seconds`.
    /// Default `500ms`.
    #[serde(with = "humantime_serde")]
    pub latency_threshold: Duration,
    /// Fraction of requests that must be faster than the threshold. Default `0.99`.
    pub latency_target: f64,
    /// The SLO window (error budget period). Default `30d`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            availability: 0.999,
            latency_threshold: Duration::from_millis(500),
            latency_target: 0.99,
            window: Duration::from_secs(30 * 86_400),
        }
    }
}

/// `[monitor.notify]`: delivery of notifications.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Notifications queued per receiver (latest state per alert group). Default 256.
    pub queue_len: usize,
    /// First retry delay; doubles per attempt. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest retry delay. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Give up a notification after this long. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Deadline of one delivery attempt. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest response read from a receiver, in bytes. Default 64 KiB.
    pub max_response_bytes: usize,
    /// Alertmanager: re-send firing alerts this often. Default `1m`.
    #[serde(with = "humantime_serde")]
    pub alertmanager_resend: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            queue_len: 256,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            give_up_after: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
            max_response_bytes: 64 << 10,
            alertmanager_resend: Duration::from_secs(60),
        }
    }
}

/// What a disk action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskAction {
    /// Garbage-collect the content store.
    ContentGc,
    /// Run `command`.
    Command,
}

/// `[[monitor.disk_actions]]`: when a filesystem's use crosses a watermark, act.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskActionConfig {
    /// A path on the filesystem. Default: the data directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Used fraction (0..1) at or above which the action runs. Default `0.9`.
    #[serde(default = "d_watermark")]
    pub watermark: f64,
    /// `content-gc` or `command`.
    pub action: DiskAction,
    /// Program and arguments for `command` (no shell).
    #[serde(default)]
    pub command: Vec<String>,
    /// Least time between two runs. Default `1h`.
    #[serde(default = "d_1h", with = "humantime_serde")]
    pub cooldown: Duration,
    /// Deadline of one run. Default `10m`.
    #[serde(default = "d_10m", with = "humantime_serde")]
    pub timeout: Duration,
}

/// The rules of `[monitor]` that parsing alone cannot check (expressions, HTTP conditions and
/// secrets are checked by keel-monitor at `check-config` and start).
pub(crate) fn validate(
    c: &crate::Config,
    m: &MonitorConfig,
) -> Result<(), crate::validate::Violation> {
    use crate::validate::{
        Seg::{Index, Key},
        Violation, positive,
    };
    let at = |k: &'static str| vec![Key("monitor"), Key(k)];
    positive(m.evaluation_interval, at("evaluation_interval"))?;
    positive(m.history_retention, at("history_retention"))?;
    positive(
        m.chain_probe.interval,
        vec![Key("monitor"), Key("chain_probe"), Key("interval")],
    )?;
    positive(
        m.chain_probe.timeout,
        vec![Key("monitor"), Key("chain_probe"), Key("timeout")],
    )?;
    positive(
        m.host.interval,
        vec![Key("monitor"), Key("host"), Key("interval")],
    )?;
    positive(
        m.status.request_timeout,
        vec![Key("monitor"), Key("status"), Key("request_timeout")],
    )?;
    if m.status.max_connections == 0 {
        return Err(Violation::new(
            vec![Key("monitor"), Key("status"), Key("max_connections")],
            "must be at least 1",
            "the default is 256",
        ));
    }
    if let Some(l) = m.status.listen
        && l.port() != 0
        && (l == c.admin.listen || l == c.gateway.listen)
    {
        return Err(Violation::new(
            vec![Key("monitor"), Key("status"), Key("listen")],
            format!("{l} is also the admin or gateway address"),
            "give the status page its own port, or \"off\"",
        ));
    }
    for (key, v) in [
        ("availability", m.slo.availability),
        ("latency_target", m.slo.latency_target),
    ] {
        if !(v > 0.0 && v < 1.0) {
            return Err(Violation::new(
                vec![Key("monitor"), Key("slo"), Key(key)],
                format!("{v} is not a fraction in (0, 1)"),
                "e.g. 0.999",
            ));
        }
    }
    const BUCKETS: [f64; 14] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let t = m.slo.latency_threshold.as_secs_f64();
    if !BUCKETS.iter().any(|b| (b - t).abs() < 1e-9) {
        return Err(Violation::new(
            vec![Key("monitor"), Key("slo"), Key("latency_threshold")],
            format!("{t} s is not a bucket bound of keel_rpc_request_duration_seconds"),
            "use one of 0.5ms, 1ms, 2.5ms, 5ms, 10ms, 25ms, 50ms, 100ms, 250ms, 500ms, 1s, 2.5s, 5s, 10s",
        ));
    }
    positive(
        m.slo.window,
        vec![Key("monitor"), Key("slo"), Key("window")],
    )?;
    if m.notify.queue_len == 0 {
        return Err(Violation::new(
            vec![Key("monitor"), Key("notify"), Key("queue_len")],
            "must be at least 1",
            "the default is 256",
        ));
    }
    for (k, d) in [
        ("initial_backoff", m.notify.initial_backoff),
        ("max_backoff", m.notify.max_backoff),
        ("timeout", m.notify.timeout),
        ("alertmanager_resend", m.notify.alertmanager_resend),
    ] {
        positive(d, vec![Key("monitor"), Key("notify"), Key(k)])?;
    }
    let mut names = std::collections::HashSet::new();
    for (i, r) in m.receivers.iter().enumerate() {
        if r.name.is_empty() || !names.insert(r.name.as_str()) {
            return Err(Violation::new(
                vec![Key("monitor"), Key("receivers"), Index(i), Key("name")],
                format!("receiver name `{}` is empty or used twice", r.name),
                "give every receiver its own name",
            ));
        }
    }
    for (i, r) in m.routes.iter().enumerate() {
        if r.receivers.is_empty() {
            return Err(Violation::new(
                vec![Key("monitor"), Key("routes"), Index(i), Key("receivers")],
                "a route needs at least one receiver",
                "name receivers of [[monitor.receivers]]",
            ));
        }
        for n in r.receivers.iter().chain(&r.escalate_to) {
            if !names.contains(n.as_str()) {
                return Err(Violation::new(
                    vec![Key("monitor"), Key("routes"), Index(i), Key("receivers")],
                    format!("receiver `{n}` is not defined"),
                    "add it as a [[monitor.receivers]] or fix the name",
                ));
            }
        }
        if r.escalate_after.is_some() && r.escalate_to.is_empty() {
            return Err(Violation::new(
                vec![Key("monitor"), Key("routes"), Index(i), Key("escalate_to")],
                "escalate_after is set but escalate_to is empty",
                "name the receivers of escalations",
            ));
        }
        positive(
            r.group_wait,
            vec![Key("monitor"), Key("routes"), Index(i), Key("group_wait")],
        )?;
        positive(
            r.repeat_interval,
            vec![
                Key("monitor"),
                Key("routes"),
                Index(i),
                Key("repeat_interval"),
            ],
        )?;
    }
    let mut rules = std::collections::HashSet::new();
    for (i, r) in m.rules.iter().enumerate() {
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || !rules.insert(r.name.as_str())
        {
            return Err(Violation::new(
                vec![Key("monitor"), Key("rules"), Index(i), Key("name")],
                format!(
                    "rule name `{}` is empty, has characters other than letters, digits and _, or is used twice",
                    r.name
                ),
                "use names like UpstreamDown",
            ));
        }
    }
    let chain_names: Vec<&str> = c
        .chains
        .iter()
        .map(|x| x.name.as_str())
        .chain(c.devnet.as_ref().map(|d| d.name.as_str()))
        .collect();
    for (i, s) in m.synthetic_tx.iter().enumerate() {
        if !chain_names.contains(&s.chain.as_str()) {
            return Err(Violation::new(
                vec![Key("monitor"), Key("synthetic_tx"), Index(i), Key("chain")],
                format!("`{}` is not a chain of this node", s.chain),
                "name a [[chains]] entry or the devnet",
            ));
        }
        positive(
            s.interval,
            vec![
                Key("monitor"),
                Key("synthetic_tx"),
                Index(i),
                Key("interval"),
            ],
        )?;
    }
    let mut probes = std::collections::HashSet::new();
    for (i, p) in m.http.iter().enumerate() {
        if !probes.insert(p.name.as_str()) {
            return Err(Violation::new(
                vec![Key("monitor"), Key("http"), Index(i), Key("name")],
                format!("probe name `{}` is used twice", p.name),
                "give every probe its own name",
            ));
        }
        positive(
            p.interval,
            vec![Key("monitor"), Key("http"), Index(i), Key("interval")],
        )?;
        positive(
            p.timeout,
            vec![Key("monitor"), Key("http"), Index(i), Key("timeout")],
        )?;
    }
    for (i, p) in m.tcp.iter().enumerate() {
        if !probes.insert(p.name.as_str()) {
            return Err(Violation::new(
                vec![Key("monitor"), Key("tcp"), Index(i), Key("name")],
                format!("probe name `{}` is used twice", p.name),
                "give every probe its own name",
            ));
        }
        if !p.address.contains(':') {
            return Err(Violation::new(
                vec![Key("monitor"), Key("tcp"), Index(i), Key("address")],
                format!("`{}` has no port", p.address),
                "write host:port",
            ));
        }
        positive(
            p.interval,
            vec![Key("monitor"), Key("tcp"), Index(i), Key("interval")],
        )?;
        positive(
            p.timeout,
            vec![Key("monitor"), Key("tcp"), Index(i), Key("timeout")],
        )?;
    }
    for (i, w) in m.maintenance.iter().enumerate() {
        let parse = |t: &str| humantime::parse_rfc3339_weak(t).ok();
        match (parse(&w.start), parse(&w.end)) {
            (Some(a), Some(b)) if a < b => {}
            _ => {
                return Err(Violation::new(
                    vec![Key("monitor"), Key("maintenance"), Index(i), Key("start")],
                    format!(
                        "`{}` .. `{}` is not a window of RFC 3339 times",
                        w.start, w.end
                    ),
                    "write e.g. start = \"2026-01-31T22:00:00Z\", end = \"2026-01-31T23:00:00Z\"",
                ));
            }
        }
    }
    for (i, a) in m.disk_actions.iter().enumerate() {
        if !(a.watermark > 0.0 && a.watermark <= 1.0) {
            return Err(Violation::new(
                vec![
                    Key("monitor"),
                    Key("disk_actions"),
                    Index(i),
                    Key("watermark"),
                ],
                format!("{} is not a fraction in (0, 1]", a.watermark),
                "e.g. 0.9",
            ));
        }
        if a.action == DiskAction::Command && a.command.is_empty() {
            return Err(Violation::new(
                vec![
                    Key("monitor"),
                    Key("disk_actions"),
                    Index(i),
                    Key("command"),
                ],
                "action = \"command\" needs a command",
                "command = [\"/usr/local/bin/prune\", \"--old\"]",
            ));
        }
        positive(
            a.cooldown,
            vec![
                Key("monitor"),
                Key("disk_actions"),
                Index(i),
                Key("cooldown"),
            ],
        )?;
        positive(
            a.timeout,
            vec![
                Key("monitor"),
                Key("disk_actions"),
                Index(i),
                Key("timeout"),
            ],
        )?;
    }
    Ok(())
}

fn d_60s() -> Duration {
    Duration::from_secs(60)
}
fn d_30s() -> Duration {
    Duration::from_secs(30)
}
fn d_10s() -> Duration {
    Duration::from_secs(10)
}
fn d_1h() -> Duration {
    Duration::from_secs(3600)
}
fn d_4h() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn d_10m() -> Duration {
    Duration::from_secs(600)
}
fn d_5u64() -> u64 {
    5
}
fn d_1u32() -> u32 {
    1
}
fn d_587() -> u16 {
    587
}
fn d_1mib() -> usize {
    1 << 20
}
fn d_true() -> bool {
    true
}
fn d_get() -> String {
    "GET".to_owned()
}
fn d_status_ok() -> Vec<String> {
    vec!["[STATUS] == 200".to_owned()]
}
fn d_warning() -> Severity {
    Severity::Warning
}
fn d_info() -> Severity {
    Severity::Info
}
fn d_starttls() -> SmtpSecurity {
    SmtpSecurity::Starttls
}
fn d_watermark() -> f64 {
    0.9
}
fn d_group_by() -> Vec<String> {
    vec!["alertname".to_owned(), "chain".to_owned()]
}

fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s == "off" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`{s}` is not host:port or \"off\": {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<crate::Config, crate::ConfigError> {
        let text = format!("[devnet]\n[monitor]\n{extra}");
        crate::Config::from_toml(&text, "keel.toml", &[])
    }

    #[test]
    fn semantic_errors_name_the_line_and_key() {
        assert!(load("").is_ok());
        let e = load("[[monitor.routes]]\nreceivers = [\"pager\"]\n")
            .expect_err("unknown receiver")
            .to_string();
        assert!(
            e.starts_with("keel.toml:4:")
                && e.contains("`monitor.routes.0.receivers`")
                && e.contains("pager"),
            "{e}"
        );
        let e = load("[monitor.slo]\nlatency_threshold = \"300ms\"\n")
            .expect_err("not a bucket")
            .to_string();
        assert!(
            e.contains("monitor.slo.latency_threshold") && e.contains("bucket"),
            "{e}"
        );
        let e = load("[[monitor.synthetic_tx]]\nchain = \"nope\"\nkey = { env = \"K\" }\n")
            .expect_err("chain")
            .to_string();
        assert!(
            e.contains("`monitor.synthetic_tx.0.chain`") && e.contains("nope"),
            "{e}"
        );
        let e = load("[[monitor.maintenance]]\nname = \"m\"\nstart = \"2026-01-02T00:00:00Z\"\nend = \"2026-01-01T00:00:00Z\"\n").expect_err("window").to_string();
        assert!(e.contains("monitor.maintenance.0.start"), "{e}");
        let e = load("[[monitor.disk_actions]]\naction = \"command\"\n")
            .expect_err("command")
            .to_string();
        assert!(e.contains("needs a command"), "{e}");
        let e = load("[monitor.status]\nlisten = \"127.0.0.1:9545\"\n")
            .expect_err("admin port")
            .to_string();
        assert!(e.contains("monitor.status.listen"), "{e}");
        let e = load("wat = 1\n").expect_err("unknown key").to_string();
        assert!(e.starts_with("keel.toml:3:") && e.contains("wat"), "{e}");
    }

    #[test]
    fn empty_table_gives_defaults() {
        let c: MonitorConfig = toml::from_str("").expect("parse");
        assert_eq!(c, MonitorConfig::default());
        assert_eq!(c.inhibit.len(), 1);
        let c: MonitorConfig = toml::from_str(
            "[status]\nlisten = \"off\"\n[[rules]]\nname = \"X\"\nexpr = \"up == 0\"\nfor = \"1m\"\nseverity = \"critical\"\n",
        )
        .expect("parse");
        assert_eq!(c.status.listen, None);
        assert_eq!(c.rules[0].for_, Duration::from_secs(60));
        assert_eq!(c.rules[0].fire_after, 1);
        assert!(toml::from_str::<MonitorConfig>("nope = 1").is_err());
    }
}
