//! keel's configuration tree.
//!
//! One TOML file describes a node: the gateway and admin listeners (and the limits of every
//! listener, [`listener`]), logging, the chains keel serves and their upstreams, and optionally
//! the embedded devnet. Every struct here is a serde
//! struct with `deny_unknown_fields`; every field has a doc comment (the reference in
//! `docs/config.md` mirrors them) and a default.
//!
//! Loading happens in three steps, each of which can fail with a [`ConfigError`] that names the
//! file, the line and the key and says how to fix it:
//!
//! 1. parse the TOML text into [`Config`] (syntax errors, unknown keys, wrong types);
//! 2. apply `KEEL_…` environment overrides ([`env`]);
//! 3. [`Config::validate`] the semantic rules (unique names, weights, URLs, limits).
//!
//! Secrets (upstream URLs, which usually carry API keys) are held in [`SecretUrl`], whose `Debug`
//! and `Display` never print the secret part.

pub mod content;
mod env;
mod error;
pub mod listener;
pub mod monitor;
mod secret;
mod validate;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use crate::{
    env::{ENV_PREFIX, EnvOverride},
    error::ConfigError,
    listener::{Listener, ListenerConfig, ListenersConfig},
    secret::SecretUrl,
};

/// The whole configuration of one keel node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The JSON-RPC gateway listener and its limits.
    pub gateway: GatewayConfig,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`, `/status`.
    pub admin: AdminConfig,
    /// Log format and level.
    pub log: LogConfig,
    /// The embedded local devnet (anvil nodes supervised by keel). Absent = disabled.
    pub devnet: Option<DevnetConfig>,
    /// The chains this node serves, each with its upstreams.
    pub chains: Vec<ChainConfig>,
    /// The IPFS-compatible content store and its listeners. Absent = disabled.
    pub content: Option<content::ContentConfig>,
    /// Probes, alert rules, notifications, SLOs and the status page. Absent = disabled.
    pub monitor: Option<monitor::MonitorConfig>,
    /// The evidence log of wrong answers found by verified reads: its bounds.
    pub evidence: EvidenceConfig,
    /// Connection limits and browser checks of every listener.
    pub listeners: listener::ListenersConfig,
}

/// `[evidence]`: bounds of the evidence log (`<data-dir>/evidence/`), which holds a record of
/// every wrong answer verified reads found (see docs/verification.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Most bytes the log's files hold together (at least 64 KiB); the oldest records are
    /// deleted to make room. A record is at most an eighth of it (and 1 MiB): larger answers in
    /// it are replaced by their size and hash.
    pub max_bytes: u64,
    /// Records older than this are deleted (at the latest by 9/8 of it, when a record is
    /// appended or keel starts).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// `[gateway]`: the JSON-RPC listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the JSON-RPC gateway listens on (HTTP/1.1 and h2c).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger bodies get HTTP 413.
    pub max_body_bytes: usize,
    /// Largest number of entries in one JSON-RPC batch.
    pub max_batch_len: usize,
    /// Total deadline for one client request, retries included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most client requests processed at once; further ones wait for a slot.
    pub max_concurrent_requests: usize,
    /// Serving threads, each with its own listener socket and upstream connections. Unset:
    /// four per core the process may use.
    pub workers: Option<usize>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8545)),
            max_body_bytes: 5 * 1024 * 1024,
            max_batch_len: 100,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 4096,
            workers: None,
        }
    }
}

/// `[admin]`: the operator's listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz` and `/status`. Keep it on loopback or a
    /// private network: it is not authenticated.
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9545)),
        }
    }
}

/// `[log]`: structured logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `keel_gateway=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
    /// Also write JSON lines to files with this path prefix (`/var/log/keel/keel.log` →
    /// `keel.log.2026-01-31`), rotated and pruned. Unset: stderr only.
    pub file: Option<PathBuf>,
    /// `daily` or `hourly`.
    pub file_rotation: LogRotation,
    /// How long rotated files are kept. Default `90d`.
    #[serde(with = "humantime_serde")]
    pub file_retention: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
            file: None,
            file_rotation: LogRotation::Daily,
            file_retention: Duration::from_secs(90 * 86_400),
        }
    }
}

/// How often the log file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogRotation {
    /// A new file every day (UTC).
    Daily,
    /// A new file every hour.
    Hourly,
}

impl LogRotation {
    /// Files kept to cover `retention` (at least one).
    pub fn files_for(self, retention: Duration) -> usize {
        let period = match self {
            Self::Daily => 86_400,
            Self::Hourly => 3600,
        };
        usize::try_from(retention.as_secs().div_ceil(period))
            .unwrap_or(usize::MAX)
            .max(1)
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[devnet]`: a local chain of anvil nodes run by keel, mined in lockstep.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevnetConfig {
    /// Name of the chain the devnet serves (its gateway path is `/rpc/<name>`).
    pub name: String,
    /// Chain id of the devnet.
    pub chain_id: u64,
    /// Number of anvil nodes (1 to 16); the gateway balances and fails over between them.
    pub nodes: usize,
    /// Interval between blocks; keel mines one block on every node with the same timestamp.
    #[serde(with = "humantime_serde")]
    pub block_time: Duration,
    /// Path of the `anvil` binary; when absent keel looks in `$KEEL_ANVIL`, `./.tools` and `$PATH`.
    pub anvil: Option<PathBuf>,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            name: "devnet".to_owned(),
            chain_id: 31337,
            nodes: 3,
            block_time: Duration::from_secs(1),
            anvil: None,
        }
    }
}

/// `[[chains]]`: one chain and its upstreams.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Name of the chain; served at `POST /rpc/<name>` (and `/rpc/<chain_id>`).
    pub name: String,
    /// EIP-155 chain id; every upstream must report it from `eth_chainId` or it is refused.
    pub chain_id: u64,
    /// How often each upstream's head is polled.
    #[serde(default = "default_head_poll_interval", with = "humantime_serde")]
    pub head_poll_interval: Duration,
    /// An upstream more than this many blocks behind the chain head stops receiving
    /// head-sensitive reads until it catches up.
    #[serde(default = "default_max_lag_blocks")]
    pub max_lag_blocks: u64,
    /// Allow node-control methods (`anvil_`, `evm_`, `hardhat_`) and the `admin_`, `debug_`,
    /// `personal_`, `miner_` namespaces. They are sent to every healthy upstream.
    #[serde(default)]
    pub allow_node_control: bool,
    /// Method allow and deny lists.
    #[serde(default)]
    pub methods: MethodPolicyConfig,
    /// Circuit breaker and health scoring.
    #[serde(default)]
    pub health: HealthConfig,
    /// Verified answers: whether reads are checked against several upstreams or a proof.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// Largest answer body read from an upstream of this chain, in bytes, unless the upstream
    /// sets its own. A larger answer is cut off as soon as it passes the limit, counts as a
    /// failure of that upstream and is asked elsewhere.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// The nodes that serve this chain.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
}

fn default_head_poll_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_max_lag_blocks() -> u64 {
    5
}

/// Default largest upstream answer: 160 MiB, reth's own default cap on the answers it serves
/// (`--rpc.max-response-size`), which real `eth_getLogs` and block-trace answers stay under.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 160 * 1024 * 1024;

fn default_max_response_bytes() -> usize {
    DEFAULT_MAX_RESPONSE_BYTES
}

impl ChainConfig {
    /// A chain with defaults for everything but its name, id and upstreams.
    pub fn new(name: impl Into<String>, chain_id: u64, upstreams: Vec<UpstreamConfig>) -> Self {
        Self {
            name: name.into(),
            chain_id,
            head_poll_interval: default_head_poll_interval(),
            max_lag_blocks: default_max_lag_blocks(),
            allow_node_control: false,
            methods: MethodPolicyConfig::default(),
            health: HealthConfig::default(),
            verify: VerifyConfig::default(),
            max_response_bytes: default_max_response_bytes(),
            upstreams,
        }
    }
}

/// How a read's answer is checked before it is returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// One upstream answers; nothing is checked.
    #[default]
    None,
    /// `quorum` of `fanout` upstreams must return canonically equal answers.
    Quorum,
    /// `eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt` and
    /// `eth_getProof` are checked with an `eth_getProof` Merkle proof against a state root agreed by a quorum;
    /// other methods fall back to quorum.
    Proof,
}

impl VerifyMode {
    /// The mode's name as written in config and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Quorum => "quorum",
            Self::Proof => "proof",
        }
    }
}

/// Methods that read account state, checkable with an `eth_getProof` Merkle proof.
pub const ACCOUNT_METHODS: &[&str] = &[
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_getProof",
];

/// Reads whose answers legitimately differ between honest upstreams (head, fees, peers, sync,
/// mempool, client version, gas estimates) or that are not reads at all (filters,
/// subscriptions, writes, signing). They are never verified: `mode` does not apply to them,
/// `[chains.verify.methods]` may not name them with `quorum` or `proof`, and neither may
/// `client_methods`. An entry ending in `_` is a namespace.
pub const NEVER_VERIFIED: &[&str] = &[
    "eth_blockNumber",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_blobBaseFee",
    "eth_estimateGas",
    "eth_syncing",
    "eth_mining",
    "eth_hashrate",
    "eth_coinbase",
    "eth_accounts",
    "eth_protocolVersion",
    "eth_getWork",
    "eth_submitWork",
    "eth_submitHashrate",
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
    "eth_subscribe",
    "eth_unsubscribe",
    "eth_sendRawTransaction",
    "eth_sendTransaction",
    "eth_sign",
    "eth_signTransaction",
    "eth_signTypedData",
    "web3_clientVersion",
    "net_peerCount",
    "net_listening",
    "txpool_",
    "admin_",
    "miner_",
    "personal_",
    "anvil_",
    "evm_",
    "hardhat_",
    "engine_",
];

/// Whether `method` is never verified (see [`NEVER_VERIFIED`]).
pub fn never_verified(method: &str) -> bool {
    NEVER_VERIFIED.iter().any(|m| match m.strip_suffix('_') {
        Some(_) => method.starts_with(m),
        None => method == *m,
    })
}

/// The default `client_methods`: reads whose answer is fixed once their block is (by number,
/// pinned tag or hash), so that honest upstreams give the same answer.
pub const CLIENT_METHODS: &[&str] = &[
    "eth_chainId",
    "net_version",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_getProof",
    "eth_call",
    "eth_getLogs",
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getBlockReceipts",
    "eth_getBlockTransactionCountByNumber",
    "eth_getBlockTransactionCountByHash",
    "eth_getTransactionByHash",
    "eth_getTransactionByBlockNumberAndIndex",
    "eth_getTransactionByBlockHashAndIndex",
    "eth_getTransactionReceipt",
    "eth_getRawTransactionByHash",
    "eth_getUncleByBlockNumberAndIndex",
    "eth_getUncleByBlockHashAndIndex",
    "eth_getUncleCountByBlockNumber",
    "eth_getUncleCountByBlockHash",
];

/// What happens to answers still in flight once a quorum agreed. Either way the client's
/// answer does not wait for them, and with `hedge_after` upstreams not yet asked never are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LateAnswers {
    /// They are read in the background and thrown away unread, so that their connections go
    /// back to the pool (dropping a call mid-flight would cost a new connection, a TLS
    /// handshake for a remote upstream, per verified request).
    #[default]
    Ignore,
    /// They are read in the background and compared, so a slow liar is caught too.
    Check,
    /// They are dropped at once: their connections are closed (the upstream may notice and stop
    /// working on them; the next requests open new connections).
    Cancel,
}

/// What a quorum read answers when no N upstreams agree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// A JSON-RPC error (-32004) naming the disagreement.
    #[default]
    Error,
    /// The answer of the largest group of agreeing upstreams, when one group is strictly the
    /// largest, marked unverified; else the error.
    Largest,
    /// The first answer received, marked unverified.
    First,
}

/// A trusted state root for one block.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Block number.
    pub block: u64,
    /// The block's state root, `0x` + 64 hex digits.
    pub state_root: String,
}

/// `[chains.verify]`: verified answers (see docs/verification.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Default mode for reads: `none`, `quorum` or `proof`. A request's `x-keel-verify` header
    /// overrides it. Writes are never verified.
    pub mode: VerifyMode,
    /// Mode for account-state reads ([`ACCOUNT_METHODS`]). Unset: `proof` when the chain can
    /// get a trusted state root (at least `quorum` upstreams, or a `header_source`), else `mode`.
    pub account: Option<VerifyMode>,
    /// N: how many upstreams must return the same answer (quorum mode, and the state root's
    /// header in proof mode).
    pub quorum: usize,
    /// M: how many distinct healthy upstreams are asked at most (capped by the usable ones).
    pub fanout: usize,
    /// Unset: all `fanout` upstreams are asked at once. Set: the `quorum` fastest are asked
    /// first, and one more each time an answer fails or disagrees or this long passes without
    /// a quorum (fewer upstream calls, slower when one is slow).
    #[serde(with = "humantime_serde")]
    pub hedge_after: Option<Duration>,
    /// Answers still in flight once a quorum agreed: `ignore`, `check` or `cancel`.
    pub late_answers: LateAnswers,
    /// What a quorum read answers without agreement: `error`, `largest` or `first`.
    pub fallback: Fallback,
    /// Proof mode takes state roots from this upstream (e.g. your own node, or a light client)
    /// instead of a quorum of headers.
    pub header_source: Option<String>,
    /// Trusted state roots; a proof at one of these blocks is checked against it directly.
    pub checkpoints: Vec<Checkpoint>,
    /// Per-method mode, overriding `mode` and `account` (e.g. `eth_gasPrice = "none"`).
    pub methods: std::collections::BTreeMap<String, VerifyMode>,
    /// Disagreements (or failed proofs) in a row after which the minority upstream is ejected;
    /// every disagreement is also a health penalty. Only checks this config asks for count:
    /// one a client asked for with `x-keel-verify` never penalises.
    pub evidence_threshold: u32,
    /// Methods a client may ask to have verified with `x-keel-verify: quorum|proof` beyond
    /// what this config verifies. Default: [`CLIENT_METHODS`], the reads whose answers are
    /// fixed once their block is. A [`NEVER_VERIFIED`] method is refused here.
    pub client_methods: Vec<String>,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            mode: VerifyMode::None,
            account: None,
            quorum: 2,
            fanout: 3,
            hedge_after: None,
            late_answers: LateAnswers::default(),
            fallback: Fallback::default(),
            header_source: None,
            checkpoints: Vec::new(),
            methods: std::collections::BTreeMap::new(),
            evidence_threshold: 3,
            client_methods: CLIENT_METHODS.iter().map(|m| (*m).to_owned()).collect(),
        }
    }
}

impl VerifyConfig {
    /// The configured mode for `method` on a chain with `upstreams` upstreams (`none` for a
    /// [`NEVER_VERIFIED`] method, whatever `mode` says).
    pub fn mode_for(&self, method: &str, upstreams: usize) -> VerifyMode {
        if never_verified(method) {
            return VerifyMode::None;
        }
        if let Some(m) = self.methods.get(method) {
            return *m;
        }
        if ACCOUNT_METHODS.contains(&method) {
            return self.account_mode(upstreams);
        }
        self.mode
    }

    /// The mode of account-state reads on a chain with `upstreams` upstreams.
    pub fn account_mode(&self, upstreams: usize) -> VerifyMode {
        self.account.unwrap_or(
            if upstreams >= self.quorum.max(1) || self.header_source.is_some() {
                VerifyMode::Proof
            } else {
                self.mode
            },
        )
    }
}

/// `[chains.methods]`: which methods clients may call.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodPolicyConfig {
    /// When non-empty, only these methods are served. An entry ending in `*` is a prefix.
    pub allow: Vec<String>,
    /// These methods are refused. An entry ending in `*` is a prefix. Deny wins over allow.
    pub deny: Vec<String>,
}

/// `[chains.health]`: when an upstream is ejected and how it comes back.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Consecutive transport failures (refused connections, timeouts, HTTP 5xx) that open the
    /// circuit breaker and eject the upstream.
    pub failure_threshold: u32,
    /// How long an ejected upstream rests before one probe request may test it (doubles on
    /// every failed probe, up to `max_ejection`).
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    /// Longest rest of an ejected upstream between probes.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Error-rate (0..1, exponentially weighted) above which an upstream counts as degraded.
    pub degraded_error_rate: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            base_ejection: Duration::from_millis(500),
            max_ejection: Duration::from_secs(30),
            degraded_error_rate: 0.2,
        }
    }
}

/// `[[chains.upstreams]]`: one node serving a chain.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name used in logs, metrics, headers and status (the URL is never shown).
    pub name: String,
    /// JSON-RPC endpoint (`http://` or `https://`). It may carry an API key: keel never logs it.
    /// Give either `url` or `url_file`.
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// File holding the endpoint URL (for secrets kept out of the config file).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Relative share of traffic among upstreams of the same tier.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `primary` or `backup`: backups serve only when no primary is healthy.
    #[serde(default)]
    pub tier: Tier,
    /// Deadline of one call to this upstream.
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Deadline for establishing a connection to this upstream.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Most calls in flight to this upstream at once; further calls go elsewhere or wait.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Largest answer body read from this upstream, in bytes. Unset: the chain's
    /// `max_response_bytes`.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// PEM file of CA certificates trusted for this upstream's `https://` endpoint, besides the
    /// system's (a node behind an internal CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_weight() -> u32 {
    1
}

fn default_upstream_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_max_in_flight() -> usize {
    256
}

impl UpstreamConfig {
    /// An upstream with defaults for everything but its name and URL.
    pub fn new(name: impl Into<String>, url: SecretUrl) -> Self {
        Self {
            name: name.into(),
            url: Some(url),
            url_file: None,
            ca_file: None,
            weight: default_weight(),
            tier: Tier::Primary,
            request_timeout: default_upstream_timeout(),
            connect_timeout: default_connect_timeout(),
            max_in_flight: default_max_in_flight(),
            max_response_bytes: None,
        }
    }
}

/// Upstream tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Serves traffic whenever healthy.
    #[default]
    Primary,
    /// Serves only when no primary upstream is healthy.
    Backup,
}

impl Config {
    /// The text of the embedded defaults (`keel up` without `--config`): a devnet of three anvil
    /// nodes behind the gateway.
    pub const EMBEDDED_DEFAULT: &'static str = include_str!("default.toml");

    /// Parses `text` (read from `origin`, used in messages), applies `overrides` and validates.
    pub fn from_toml(
        text: &str,
        origin: &str,
        overrides: &[EnvOverride],
    ) -> Result<Self, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::parse(origin, text, &e))?;
        if !overrides.is_empty() {
            config = env::apply(text, origin, overrides)?;
        }
        config.validate().map_err(|v| v.locate(origin, text))?;
        config.resolve_secrets()?;
        config
            .distinct_upstreams()
            .map_err(|v| v.locate(origin, text))?;
        Ok(config)
    }

    /// Reads and loads the file at `path` with the `KEEL_…` overrides of this process.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: origin.clone(),
            source,
        })?;
        Self::from_toml(&text, &origin, &env::from_process())
    }

    /// The embedded default with the `KEEL_…` overrides of this process.
    pub fn load_default() -> Result<Self, ConfigError> {
        Self::from_toml(
            Self::EMBEDDED_DEFAULT,
            "<embedded defaults>",
            &env::from_process(),
        )
    }

    /// Reads `url_file` secrets into `url`.
    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        for chain in &mut self.chains {
            for up in &mut chain.upstreams {
                if let (None, Some(file)) = (&up.url, &up.url_file) {
                    let text =
                        std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
                            path: file.display().to_string(),
                            source,
                        })?;
                    let url =
                        SecretUrl::parse(text.trim()).map_err(|reason| ConfigError::Invalid {
                            origin: file.display().to_string(),
                            line: None,
                            key: format!("chains.{}.upstreams.{}.url_file", chain.name, up.name),
                            message: reason,
                            fix: "the file must hold one http:// or https:// URL".to_owned(),
                        })?;
                    up.url = Some(url);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
