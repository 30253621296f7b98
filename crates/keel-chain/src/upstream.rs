//! One node serving a chain.

use std::{
    sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::{
    Request,
    body::Incoming,
    header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue},
};
use hyper_util::rt::TokioExecutor;
use keel_config::{HealthConfig, SecretUrl, Tier, UpstreamConfig};
use serde::Serialize;

use crate::{
    BlockTag, CallError, ChainError,
    clients::Clients,
    health::{Admission, Health, HealthSnapshot, UpstreamState},
    history::History,
};

const CHAIN_UNKNOWN: u8 = 0;
const CHAIN_OK: u8 = 1;
const CHAIN_WRONG: u8 = 2;

/// One upstream node: pooled HTTP clients, its head and its health.
#[derive(Debug)]
pub struct Upstream {
    name: String,
    /// Index among its chain's upstreams.
    index: usize,
    url: SecretUrl,
    weight: u32,
    tier: Tier,
    timeout: Duration,
    max_in_flight: usize,
    /// Largest answer body read from it.
    max_response_bytes: usize,
    clients: Clients,
    /// Request URI (user info removed; it travels as `authorization` instead).
    uri: hyper::Uri,
    /// `Basic …` from the URL's user info, if any.
    authorization: Option<HeaderValue>,
    in_flight: AtomicUsize,
    head: AtomicU64,
    /// Its `safe` block number + 1 (0: unknown).
    safe: AtomicU64,
    /// Its `finalized` block number + 1 (0: unknown).
    finalized: AtomicU64,
    chain_check: AtomicU8,
    reported_chain_id: AtomicU64,
    health: Health,
    history: History,
}

/// Status of one upstream, as `/status` and `keel status` show it. Never holds the URL's secret.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// Upstream name.
    pub name: String,
    /// Scheme, host and port only.
    pub url: String,
    /// `primary` or `backup`.
    pub tier: Tier,
    /// Configured weight.
    pub weight: u32,
    /// Coarse state.
    pub state: UpstreamState,
    /// Last head seen.
    pub head: u64,
    /// Blocks behind the chain head.
    pub lag: u64,
    /// Its `safe` block, when it reports one.
    pub safe: Option<u64>,
    /// Its `finalized` block, when it reports one.
    pub finalized: Option<u64>,
    /// Calls in flight now.
    pub in_flight: usize,
    /// Routing score (lower is better).
    pub score: f64,
    /// Latency, errors and breaker.
    pub health: HealthSnapshot,
    /// The oldest block it is known to keep, when it has said it lacks older ones (a pruned
    /// node); requests pinned to older blocks go to other upstreams first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_from: Option<u64>,
}

/// Releases an unfinished probe when dropped.
struct ProbeGuard<'a> {
    health: &'a Health,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.health.release_probe(Instant::now());
        }
    }
}

/// RAII slot of the in-flight limit.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstream {
    /// Builds the upstream and its HTTP client (no I/O happens here). `max_response_bytes` is
    /// the chain's default answer limit, used when `cfg` sets none.
    pub fn new(
        chain: &str,
        index: usize,
        cfg: &UpstreamConfig,
        health: HealthConfig,
        max_response_bytes: usize,
    ) -> Result<Self, ChainError> {
        let url = cfg.url.clone().ok_or_else(|| ChainError::NoUrl {
            chain: chain.to_owned(),
            upstream: cfg.name.clone(),
        })?;
        let client_error = |reason: String| ChainError::Client {
            upstream: cfg.name.clone(),
            reason,
        };
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = match &cfg.ca_file {
            Some(file) => crate::tls::with_extra_roots(file).map_err(client_error)?,
            None => {
                use rustls_platform_verifier::BuilderVerifierExt as _;
                rustls::ClientConfig::builder()
                    .with_platform_verifier()
                    .map_err(|e| client_error(format!("TLS setup failed: {e}")))?
                    .with_no_client_auth()
            }
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(cfg.max_in_flight);
        let clients = Clients::new(builder, https);
        let (uri, authorization) = split_credentials(url.expose()).map_err(client_error)?;
        Ok(Self {
            name: cfg.name.clone(),
            index,
            url,
            weight: cfg.weight,
            tier: cfg.tier,
            timeout: cfg.request_timeout,
            max_in_flight: cfg.max_in_flight,
            max_response_bytes: cfg.max_response_bytes.unwrap_or(max_response_bytes),
            clients,
            uri,
            authorization,
            in_flight: AtomicUsize::new(0),
            head: AtomicU64::new(0),
            safe: AtomicU64::new(0),
            finalized: AtomicU64::new(0),
            chain_check: AtomicU8::new(CHAIN_UNKNOWN),
            reported_chain_id: AtomicU64::new(0),
            health: Health::new(health),
            history: History::default(),
        })
    }

    /// Upstream name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Index among its chain's upstreams.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The URL with its secret parts hidden.
    pub fn url(&self) -> &SecretUrl {
        &self.url
    }

    /// Configured weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Configured tier.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Largest answer body read from it, in bytes.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Its health.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Last head seen.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    /// Records that it answered a request pinned to `block` with "I lack it" although its head
    /// is past `block`: it has pruned `block` and everything before. Returns whether that is
    /// news (see the `history` module).
    pub fn note_missing_history(&self, block: u64) -> bool {
        self.history.lacks(block, Instant::now())
    }

    /// Records that it answered a request pinned to `block`: it keeps `block` and after.
    pub fn note_kept_history(&self, block: u64) {
        self.history.has(block);
    }

    /// The oldest block it is known to keep, when it is known to lack older ones (pruned).
    pub fn history_from(&self) -> Option<u64> {
        self.history.known_below(Instant::now())
    }

    /// Whether it is known to lack `block` (pruned), as of `now`.
    pub fn lacks_history(&self, block: u64, now: Instant) -> bool {
        self.history.is_missing(block, now)
    }

    pub(crate) fn set_head(&self, head: u64) {
        self.head.store(head, Ordering::Relaxed);
    }

    /// Its last seen block for `tag`, when it reported one.
    pub fn block_at(&self, tag: BlockTag) -> Option<u64> {
        let stored = |a: &AtomicU64| a.load(Ordering::Relaxed).checked_sub(1);
        match tag {
            BlockTag::Latest => Some(self.head()),
            BlockTag::Safe => stored(&self.safe),
            BlockTag::Finalized => stored(&self.finalized),
        }
    }

    /// Records its `safe` or `finalized` block (`None`: it does not report one).
    pub(crate) fn set_block_at(&self, tag: BlockTag, block: Option<u64>) {
        let v = block.map_or(0, |b| b.saturating_add(1));
        match tag {
            BlockTag::Latest => self.set_head(block.unwrap_or(0)),
            BlockTag::Safe => self.safe.store(v, Ordering::Relaxed),
            BlockTag::Finalized => self.finalized.store(v, Ordering::Relaxed),
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether `eth_chainId` has confirmed the chain.
    pub fn is_verified(&self) -> bool {
        self.chain_check.load(Ordering::Relaxed) == CHAIN_OK
    }

    /// Whether it serves another chain.
    pub fn is_refused(&self) -> bool {
        self.chain_check.load(Ordering::Relaxed) == CHAIN_WRONG
    }

    /// The chain id it reported, if it was checked.
    pub fn reported_chain_id(&self) -> Option<u64> {
        (self.chain_check.load(Ordering::Relaxed) != CHAIN_UNKNOWN)
            .then(|| self.reported_chain_id.load(Ordering::Relaxed))
    }

    /// Records the chain id the upstream reported and whether it is the chain's. The head
    /// tracker calls it; components that verify upstreams otherwise (tests, benchmarks, future
    /// registries) may too.
    pub fn set_chain_check(&self, reported: u64, ok: bool) {
        self.reported_chain_id.store(reported, Ordering::Relaxed);
        self.chain_check
            .store(if ok { CHAIN_OK } else { CHAIN_WRONG }, Ordering::Relaxed);
    }

    /// Routing score: lower is better. Latency grows with load and errors; an upstream with no
    /// samples yet counts as 1 ms. (Weights act in the draw, see [`crate::Chain::select`].)
    pub fn score(&self) -> f64 {
        let ewma_us = self.health.latency_ewma_us();
        let latency_ms = if ewma_us == 0.0 {
            1.0
        } else {
            (ewma_us / 1000.0).max(0.05)
        };
        latency_ms * (1.0 + self.in_flight() as f64) * (1.0 + 10.0 * self.health.error_rate())
    }

    /// Sends one JSON-RPC body and returns the response body.
    ///
    /// The call waits at most until `deadline` (and at most the upstream's own timeout). It
    /// counts toward the in-flight limit and records its outcome in the upstream's health. The
    /// answer is read with a running count and cut off once it passes `max_response_bytes`
    /// ([`CallError::TooLarge`], a failure of this upstream).
    pub async fn call(&self, body: Bytes, deadline: Instant) -> Result<Bytes, CallError> {
        self.call_capped(body, deadline, self.max_response_bytes)
            .await
    }

    /// [`Self::call`] with an answer limit of `limit` bytes, or the upstream's own when that is
    /// smaller (the head tracker's polls expect small answers).
    pub(crate) async fn call_capped(
        &self,
        body: Bytes,
        deadline: Instant,
        limit: usize,
    ) -> Result<Bytes, CallError> {
        let limit = limit.min(self.max_response_bytes);
        let now = Instant::now();
        let admission = self.health.admit(now);
        if admission == Admission::No {
            return Err(CallError::Connect {
                upstream: self.name.clone(),
                reason: "ejected".to_owned(),
            });
        }
        // A probe whose call is dropped before it finishes (the client went away) must not
        // leave the breaker half-open forever: the guard lets the next call probe instead.
        let mut probe = ProbeGuard {
            health: &self.health,
            armed: admission == Admission::Probe,
        };
        let Some(_slot) = self.try_slot() else {
            return Err(CallError::Busy {
                upstream: self.name.clone(),
            });
        };
        let timeout = deadline.saturating_duration_since(now).min(self.timeout);
        let result = self.send(body, timeout, limit).await;
        let done = Instant::now();
        match &result {
            Ok(_) => self.health.record_success(done - now),
            Err(e) if e.counts_against_health() => {
                if self
                    .health
                    .record_failure(done, matches!(e, CallError::Timeout { .. }))
                {
                    tracing::warn!(upstream = %self.name, error = %e, "upstream ejected");
                }
            }
            Err(_) => return result,
        }
        probe.armed = false;
        result
    }

    fn try_slot(&self) -> Option<Slot<'_>> {
        let prev = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(&self.in_flight);
        (prev < self.max_in_flight).then_some(slot)
    }

    async fn send(&self, body: Bytes, timeout: Duration, limit: usize) -> Result<Bytes, CallError> {
        let mut req = Request::post(self.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .map_err(|e| CallError::Invalid {
                upstream: self.name.clone(),
                reason: e.to_string(),
            })?;
        if let Some(auth) = &self.authorization {
            req.headers_mut().insert(AUTHORIZATION, auth.clone());
        }
        let fut = async {
            let resp = self
                .clients
                .get()
                .request(req)
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(CallError::Status {
                    upstream: self.name.clone(),
                    status,
                });
            }
            let declared = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            read_limited(resp.into_body(), declared, limit)
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge => CallError::TooLarge {
                        upstream: self.name.clone(),
                        limit,
                    },
                    ReadError::Broken(e) => CallError::Connect {
                        upstream: self.name.clone(),
                        reason: format!("response body broken ({e})"),
                    },
                })
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout {
                upstream: self.name.clone(),
                after: timeout,
            }),
        }
    }

    fn transport_error(&self, e: &hyper_util::client::legacy::Error) -> CallError {
        // Keep the kind of failure and the innermost cause; never the URL.
        let kind = if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        let mut source = std::error::Error::source(e);
        let mut detail = None;
        while let Some(s) = source {
            detail = Some(s.to_string());
            source = s.source();
        }
        let reason = match detail {
            Some(d) if !d.contains("://") => format!("{kind} ({d})"),
            _ => kind.to_owned(),
        };
        CallError::Connect {
            upstream: self.name.clone(),
            reason,
        }
    }

    /// Status for `/status`; `chain_head` gives the lag.
    pub fn status(&self, chain_head: u64, max_lag: u64) -> UpstreamStatus {
        UpstreamStatus {
            name: self.name.clone(),
            url: self.url.to_string(),
            tier: self.tier,
            weight: self.weight,
            state: self.state(chain_head, max_lag),
            head: self.head(),
            lag: chain_head.saturating_sub(self.head()),
            safe: self.block_at(BlockTag::Safe),
            finalized: self.block_at(BlockTag::Finalized),
            in_flight: self.in_flight(),
            score: self.score(),
            health: self.health.snapshot(),
            history_from: self.history_from(),
        }
    }

    /// Coarse state given the chain head.
    pub fn state(&self, chain_head: u64, max_lag: u64) -> UpstreamState {
        if self.is_refused() {
            UpstreamState::Refused
        } else if !self.is_verified() {
            UpstreamState::Unverified
        } else if self.health.is_ejected() {
            UpstreamState::Ejected
        } else if chain_head.saturating_sub(self.head()) > max_lag || self.health.is_erroring() {
            UpstreamState::Degraded
        } else {
            UpstreamState::Healthy
        }
    }
}

/// Why an answer body could not be read whole.
#[derive(Debug)]
enum ReadError {
    /// It passed the limit (or declared a length past it).
    TooLarge,
    /// The connection broke mid-body.
    Broken(hyper::Error),
}

/// Most bytes reserved up front from a declared `content-length`: a peer declaring a huge
/// length and sending nothing must not make keel allocate it.
const MAX_PREALLOCATION: usize = 1024 * 1024;

/// Reads `body` whole, frame by frame with a running count, stopping as soon as it passes
/// `limit` bytes (or at once when its `content-length`, `declared`, does): the rest is never
/// read, and dropping the body closes the connection. A single-frame body is returned without
/// a copy.
async fn read_limited(
    mut body: Incoming,
    declared: Option<u64>,
    limit: usize,
) -> Result<Bytes, ReadError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Broken)?.into_data() else {
            continue; // trailers
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        if let Some(buf) = rest.as_mut() {
            buf.extend_from_slice(&data);
        } else if let Some(f) = first.take() {
            let hint = declared.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
            let mut buf = BytesMut::with_capacity(hint.min(MAX_PREALLOCATION).max(len));
            buf.extend_from_slice(&f);
            buf.extend_from_slice(&data);
            rest = Some(buf);
        } else {
            first = Some(data);
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// The URI without user info, and the `authorization` header the user info stands for.
fn split_credentials(url: &url::Url) -> Result<(hyper::Uri, Option<HeaderValue>), String> {
    let mut bare = url.clone();
    let auth = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let user = percent_decode(url.username());
        let pass = url.password().map(percent_decode).unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        let mut value = HeaderValue::try_from(format!("Basic {token}"))
            .map_err(|_| "bad credentials".to_owned())?;
        value.set_sensitive(true);
        // Cannot fail for http(s) URLs.
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        Some(value)
    };
    let uri = bare
        .as_str()
        .parse()
        .map_err(|_| "the URL is not a valid HTTP URI".to_owned())?;
    Ok((uri, auth))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_testkit::{Reply, Scripted, eventually};

    fn upstream(name: &str, url: &str, max_response_bytes: usize) -> Upstream {
        let mut cfg = UpstreamConfig::new(name, SecretUrl::parse(url).expect("url"));
        cfg.max_response_bytes = Some(max_response_bytes);
        Upstream::new("t", 0, &cfg, HealthConfig::default(), 1 << 30).expect("upstream")
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    const REQ: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}"#;

    #[tokio::test]
    async fn an_endless_answer_is_cut_off_at_the_limit_and_counts_against_the_upstream() {
        let evil = Scripted::start(None, |_| Reply::Endless).await;
        let up = upstream("evil", &evil.url(), 1 << 20);
        let err = up
            .call(Bytes::from_static(REQ), far())
            .await
            .expect_err("an endless answer cannot be read");
        assert!(
            matches!(&err, CallError::TooLarge { upstream, limit } if upstream == "evil" && *limit == 1 << 20),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("upstream evil") && message.contains("1048576"),
            "{message}"
        );
        assert!(err.is_retryable(), "another upstream may answer it");
        assert_eq!(
            up.health().snapshot().failures,
            1,
            "the upstream is penalised"
        );
        // keel closed the connection: the fixture saw its body dropped and stopped sending.
        assert!(
            eventually(Duration::from_secs(10), async || evil.closed_bodies() == 1).await,
            "the connection was left open"
        );
        assert_eq!(evil.open_bodies(), 0);
        // What was sent is the limit plus what fits in socket buffers, not the endless body.
        let sent = evil.endless_bytes_sent();
        assert!(sent < 64 << 20, "{sent} bytes were sent");
    }

    #[tokio::test]
    async fn a_declared_length_past_the_limit_is_refused_before_reading() {
        let evil = Scripted::start(None, |_| Reply::Declared(1 << 40)).await;
        let up = upstream("liar", &evil.url(), 1 << 20);
        let err = up
            .call(Bytes::from_static(REQ), far())
            .await
            .expect_err("too large");
        assert!(matches!(err, CallError::TooLarge { .. }), "{err:?}");
        assert_eq!(up.health().snapshot().failures, 1);
        assert!(eventually(Duration::from_secs(10), async || evil.closed_bodies() == 1).await);
    }

    #[tokio::test]
    async fn answers_up_to_the_limit_arrive_whole() {
        // Several MiB arrive in many frames; the reassembled answer is byte for byte the same.
        let result = format!("0x{}", "ab".repeat(3 << 20));
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":"{result}"}}"#);
        let len = body.len();
        let served = body.clone();
        let node = Scripted::start(None, move |_| Reply::Body(served.clone())).await;
        let exact = upstream("exact", &node.url(), len);
        let got = exact
            .call(Bytes::from_static(REQ), far())
            .await
            .expect("at the limit");
        assert_eq!(got.as_ref(), body.as_bytes());
        assert_eq!(exact.health().snapshot().failures, 0);
        let short = upstream("short", &node.url(), len - 1);
        let err = short
            .call(Bytes::from_static(REQ), far())
            .await
            .expect_err("one byte past the limit");
        assert!(
            matches!(err, CallError::TooLarge { limit, .. } if limit == len - 1),
            "{err:?}"
        );
        // The head tracker's cap is lower than the upstream's own when asked for.
        let capped = upstream("capped", &node.url(), len);
        let err = capped
            .call_capped(Bytes::from_static(REQ), far(), 1 << 20)
            .await
            .expect_err("past the head poll cap");
        assert!(
            matches!(err, CallError::TooLarge { limit, .. } if limit == 1 << 20),
            "{err:?}"
        );
    }

    #[test]
    fn user_info_becomes_a_basic_authorization_header() {
        let url =
            url::Url::parse("https://us%40er:p%3Ass@node.example:8443/v1/key?x=1").expect("url");
        let (uri, auth) = split_credentials(&url).expect("split");
        assert_eq!(uri.to_string(), "https://node.example:8443/v1/key?x=1");
        let auth = auth.expect("auth");
        assert!(auth.is_sensitive());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.to_str().expect("ascii").trim_start_matches("Basic "))
            .expect("b64");
        assert_eq!(decoded, b"us@er:p:ss");
        let (_, none) = split_credentials(&url::Url::parse("http://127.0.0.1:8545").expect("url"))
            .expect("split");
        assert!(none.is_none());
    }
}
