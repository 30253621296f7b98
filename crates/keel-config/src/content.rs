//! `[content]`: the IPFS-compatible content store (blockstore, HTTP gateway, Kubo RPC subset).
//!
//! Every field has a default, so an empty `[content]` table enables the store with a loopback
//! gateway on `127.0.0.1:8080` and a loopback Kubo RPC listener on `127.0.0.1:5001`.
//! A listener set to `"off"` is disabled.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The `[content]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentConfig {
    /// Address of the trustless HTTP gateway (`GET/HEAD /ipfs/{cid}[/path]`).
    /// `"off"` disables it. Default `127.0.0.1:8080`.
    #[serde(deserialize_with = "de_listen")]
    pub gateway_listen: Option<SocketAddr>,
    /// Address of the Kubo RPC API subset (`POST /api/v0/…`). It can write to the store, so
    /// keep it on loopback or set `rpc_token`. `"off"` disables it. Default `127.0.0.1:5001`.
    #[serde(deserialize_with = "de_listen")]
    pub rpc_listen: Option<SocketAddr>,
    /// Bearer token required on every Kubo RPC request (`Authorization: Bearer …`).
    /// Read from a file or an environment variable, never written in the config itself.
    /// Unset (the default) = no authentication, which is only safe on loopback.
    pub rpc_token: Option<SecretSource>,
    /// Per-client-IP rate limit on the gateway. Unset (the default) = no limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// How long the gateway waits for a block the node does not have before answering
    /// 504. keel has no network fetch yet, so a missing block answers 404 at once.
    /// Default `5s`.
    #[serde(with = "humantime_serde")]
    pub missing_block_timeout: Duration,
    /// Upper bound on the time to produce the response headers of one gateway or RPC request
    /// (long bodies keep streaming). RPC uploads (`add`, `block/put`, `dag/import`) are
    /// bounded by `upload_min_bytes_per_second` and `upload_idle_timeout` instead, so a large
    /// upload is never cut for taking longer than this. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest request body the Kubo RPC accepts (`add`, `block/put`, `dag/import`), in
    /// bytes. Default 4 GiB.
    pub max_upload_bytes: u64,
    /// How long a Kubo RPC upload may send nothing before it is abandoned (its stored blocks
    /// stay unpinned, for GC), and how far behind `upload_min_bytes_per_second` it may fall.
    /// An upload in progress holds off garbage collection, so a stalled client must not hold
    /// it for ever. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub upload_idle_timeout: Duration,
    /// Slowest average rate, in bytes per second, at which a Kubo RPC upload may send its
    /// body; an upload that falls more than `upload_idle_timeout` behind it is abandoned.
    /// Only time keel spends waiting for the client counts (not time the client waits for
    /// keel's disk). Bounds how long one upload can hold off garbage collection, to
    /// `max_upload_bytes` / this rate. `0` disables it (then only `upload_idle_timeout`
    /// applies). Default 262144 (256 KiB/s, 2 Mbit/s).
    pub upload_min_bytes_per_second: u64,
    /// Most Kubo RPC uploads (`add`, `block/put`, `dag/import`) in progress at once; more
    /// are answered 503. Default 16.
    pub max_concurrent_uploads: usize,
    /// Most entries one directory listing may hold (gateway listing, `ls`, `get`, tar).
    /// A listing past it stops with an error naming the directory and this key. Each entry
    /// costs about 150 bytes while listed. Default 1000000.
    pub max_dir_entries: u64,
    /// Most HAMT shard blocks read to list one sharded directory. Real directories need
    /// about one block per ten entries (a 1000000-entry directory has about 95000).
    /// Default 250000.
    pub max_dir_shard_blocks: u64,
    /// Gateway access log (tracing target `keel_content::access`).
    pub access_log: AccessLogConfig,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            gateway_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            rpc_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5001))),
            rpc_token: None,
            rate_limit: None,
            missing_block_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_upload_bytes: 4 << 30,
            upload_idle_timeout: Duration::from_secs(60),
            upload_min_bytes_per_second: 256 << 10,
            max_concurrent_uploads: 16,
            max_dir_entries: 1_000_000,
            max_dir_shard_blocks: 250_000,
            access_log: AccessLogConfig::default(),
        }
    }
}

/// Per-client-IP token bucket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second allowed for one client IP. Default 100.
    pub requests_per_second: u32,
    /// Requests one client IP may send in a burst above the sustained rate. Default 200.
    pub burst: u32,
    /// Most client IPs tracked at once; beyond it the oldest idle buckets are dropped.
    /// Default 65536.
    pub max_tracked_clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 100,
            burst: 200,
            max_tracked_clients: 65_536,
        }
    }
}

/// What the access log writes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write one log line per gateway request. Default `true`.
    pub enabled: bool,
    /// Replace the client IP with `-` (or keep only its /24 or /48 prefix when
    /// `redact_ip = "prefix"`). One of `"none"`, `"prefix"`, `"full"`. Default `"prefix"`.
    pub redact_ip: IpRedaction,
    /// Drop the query string from logged paths. Default `true`.
    pub redact_query: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            redact_ip: IpRedaction::Prefix,
            redact_query: true,
        }
    }
}

/// How much of a client IP the access log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpRedaction {
    /// Log the full address.
    None,
    /// Log the /24 (IPv4) or /48 (IPv6) network only.
    Prefix,
    /// Log `-`.
    Full,
}

/// Where a secret comes from. Exactly one of `file` or `env`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Path of a file whose content (trailing whitespace trimmed) is the secret.
    pub file: Option<PathBuf>,
    /// Name of an environment variable holding the secret.
    pub env: Option<String>,
}

impl SecretSource {
    /// Reads the secret. Fails when neither or both sources are set, when the file cannot be
    /// read, or when the variable is unset or the secret empty.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match (&self.file, &self.env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?,
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("environment variable {var} (secret) is not set"))?,
            _ => return Err("a secret needs exactly one of `file` or `env`".to_owned()),
        };
        let value = value.trim_end().to_owned();
        if value.is_empty() {
            return Err("the secret is empty".to_owned());
        }
        Ok(Secret(value))
    }
}

/// A secret value; its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests, programmatic configuration).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
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

    #[test]
    fn empty_table_gives_defaults_and_off_disables() {
        let c: ContentConfig = toml::from_str("").expect("parse");
        assert_eq!(c, ContentConfig::default());
        let c: ContentConfig = toml::from_str(
            "gateway_listen = \"off\"\nmissing_block_timeout = \"250ms\"\n[rate_limit]\nburst = 5\n",
        )
        .expect("parse");
        assert_eq!(c.gateway_listen, None);
        assert_eq!(c.missing_block_timeout, Duration::from_millis(250));
        assert_eq!(c.rate_limit.map(|r| r.burst), Some(5));
        let c: ContentConfig =
            toml::from_str("max_dir_entries = 10\nmax_dir_shard_blocks = 3\n").expect("parse");
        assert_eq!((c.max_dir_entries, c.max_dir_shard_blocks), (10, 3));
        assert!(toml::from_str::<ContentConfig>("nope = 1").is_err());
    }

    #[test]
    fn upload_limits_parse_and_zero_uploads_is_refused() {
        let c: ContentConfig =
            toml::from_str("upload_min_bytes_per_second = 0\nmax_concurrent_uploads = 2\n")
                .expect("parse");
        assert_eq!(
            (c.upload_min_bytes_per_second, c.max_concurrent_uploads),
            (0, 2)
        );
        let text = "[gateway]\nlisten = \"127.0.0.1:8545\"\n[admin]\nlisten = \"127.0.0.1:9545\"\n\
                    [[chains]]\nname = \"dev\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n\
                    [content]\nmax_concurrent_uploads = 0\n";
        let e = crate::Config::from_toml(text, "keel.toml", &[])
            .expect_err("zero uploads")
            .to_string();
        assert!(
            e.contains("`content.max_concurrent_uploads`") && e.contains("refuses every upload"),
            "{e}"
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
