//! Plumbing shared by the gateway and the Kubo RPC: state, bounded blocking jobs, streaming
//! bodies over bounded channels, query parsing, timeouts, rate limiting, access log, metrics.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use keel_config::content::{AccessLogConfig, ContentConfig, IpRedaction, RateLimitConfig};
use tokio::sync::{Semaphore, mpsc};

use crate::Error;
use crate::metrics::{HttpLabels, Metrics};
use crate::store::{Blockstore, WriteSession};

/// Most blocking store jobs (reads, imports) running at once per listener.
const MAX_JOBS: usize = 64;
/// How often a request waiting for a write session (behind a GC) tries again.
const SESSION_RETRY: Duration = Duration::from_millis(20);
/// Bytes of verified single-block files the gateway keeps in memory.
const CACHE_BYTES: usize = 64 << 20;
/// Largest file the cache holds.
const CACHE_MAX_ENTRY: usize = 2 << 20;

/// A verified single-block file, kept in memory.
#[derive(Debug, Clone)]
pub(crate) struct CachedFile {
    /// The file's bytes (for a raw CID also the block itself).
    pub(crate) data: Bytes,
    /// Content type sniffed from the bytes.
    pub(crate) content_type: String,
}

/// A bounded FIFO cache of small files whose blocks were verified when loaded, so hot content
/// is served without touching disk. Keyed by CID.
#[derive(Debug)]
pub(crate) struct FileCache {
    budget: usize,
    inner: Mutex<(
        HashMap<cid::Cid, CachedFile>,
        std::collections::VecDeque<cid::Cid>,
        usize,
    )>,
}

impl FileCache {
    fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new((HashMap::new(), std::collections::VecDeque::new(), 0)),
        }
    }

    /// The cached file, if its block is still in the store: a GC (in this process or in
    /// another, `keel content gc`) may have removed it since it was cached, and then it is
    /// dropped here. Checking costs one `stat`, not a read and a hash.
    pub(crate) fn get_stored(&self, cid: &cid::Cid, bs: &Blockstore) -> Option<CachedFile> {
        let f = self.inner.lock().ok()?.0.get(cid).cloned()?;
        if bs.has(cid) {
            return Some(f);
        }
        let mut g = self.inner.lock().ok()?;
        let (map, order, used) = &mut *g;
        if let Some(f) = map.remove(cid) {
            *used -= f.data.len();
            order.retain(|c| c != cid);
        }
        None
    }

    pub(crate) fn insert(&self, cid: cid::Cid, file: CachedFile) {
        let size = file.data.len();
        if size > CACHE_MAX_ENTRY {
            return;
        }
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        let (map, order, used) = &mut *g;
        if map.contains_key(&cid) {
            return;
        }
        while *used + size > self.budget {
            let Some(old) = order.pop_front() else {
                break;
            };
            if let Some(f) = map.remove(&old) {
                *used -= f.data.len();
            }
        }
        *used += size;
        order.push_back(cid);
        map.insert(cid, file);
    }
}

/// Chunks buffered between a blocking producer and the HTTP body.
const BODY_CHANNEL: usize = 8;
/// Bytes gathered before a chunk is handed to the body.
const BODY_CHUNK: usize = 256 << 10;

/// State shared by the handlers of one listener.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) bs: Blockstore,
    pub(crate) metrics: Arc<Metrics>,
    jobs: Arc<Semaphore>,
    /// RPC uploads in progress (`ContentConfig::max_concurrent_uploads`).
    pub(crate) uploads: Arc<Semaphore>,
    pub(crate) missing_block_timeout: Duration,
    pub(crate) max_upload: u64,
    /// See `ContentConfig::upload_idle_timeout`.
    pub(crate) upload_idle_timeout: Duration,
    /// See `ContentConfig::upload_min_bytes_per_second`.
    pub(crate) upload_min_rate: u64,
    /// See `ContentConfig::request_timeout`.
    pub(crate) request_timeout: Duration,
    pub(crate) cache: Arc<FileCache>,
    /// Bounds on each directory listing (`max_dir_entries`, `max_dir_shard_blocks`).
    pub(crate) list_limits: crate::unixfs::ListLimits,
}

impl AppState {
    pub(crate) fn new(bs: Blockstore, cfg: &ContentConfig) -> Self {
        Self {
            metrics: bs.metrics().clone(),
            bs,
            jobs: Arc::new(Semaphore::new(MAX_JOBS)),
            uploads: Arc::new(Semaphore::new(cfg.max_concurrent_uploads.max(1))),
            missing_block_timeout: cfg.missing_block_timeout,
            max_upload: cfg.max_upload_bytes,
            upload_idle_timeout: cfg.upload_idle_timeout,
            upload_min_rate: cfg.upload_min_bytes_per_second,
            request_timeout: cfg.request_timeout,
            cache: Arc::new(FileCache::new(CACHE_BYTES)),
            list_limits: crate::unixfs::ListLimits::from_config(cfg),
        }
    }

    /// A write session (see [`WriteSession`]), waited for without holding a thread or a job
    /// slot: while a GC waits for running sessions, those need job slots to finish.
    pub(crate) async fn write_session(&self) -> Result<WriteSession, Error> {
        loop {
            if let Some(s) = self.bs.try_write_session()? {
                return Ok(s);
            }
            tokio::time::sleep(SESSION_RETRY).await;
        }
    }

    /// The pace keeper of one upload body (see [`Pace`]).
    pub(crate) fn pace(&self) -> Pace {
        Pace::new(self.upload_min_rate, self.upload_idle_timeout)
    }

    /// Runs `f` on the blocking pool, at most [`MAX_JOBS`] at once.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&Blockstore) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .jobs
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Task("job pool closed".to_owned()))?;
        let bs = self.bs.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&bs)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    /// A body fed by `f` running on the blocking pool through a bounded channel. The answer
    /// waits for the first chunk: an error (or panic) before it is returned here, so the
    /// caller answers with an error status. One after it aborts the body, so the client sees
    /// a failed transfer (an HTTP/1.1 chunked body without its last chunk, an HTTP/2 reset),
    /// never a clean end of a truncated stream; a panic is caught and treated the same way.
    pub(crate) async fn stream<F>(&self, f: F) -> Result<Body, Error>
    where
        F: FnOnce(&Blockstore, &mut ChannelWriter) -> Result<(), Error> + Send + 'static,
    {
        let permit = self
            .jobs
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Task("job pool closed".to_owned()))?;
        let (tx, mut rx) = mpsc::channel::<Result<Bytes, Error>>(BODY_CHANNEL);
        let bs = self.bs.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut w = ChannelWriter {
                tx,
                buf: Vec::with_capacity(BODY_CHUNK),
            };
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                f(&bs, &mut w).and_then(|()| w.flush().map_err(Error::from))
            }))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(Error::Task(format!("response body job panicked: {what}")))
            });
            if let Err(e) = res {
                tracing::warn!(error = %e, "response body aborted");
                let _ = w.tx.blocking_send(Err(e));
            }
        });
        let first = match rx.recv().await {
            Some(Err(e)) => return Err(e),
            first => first,
        };
        let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let stream = futures::StreamExt::map(
            futures::StreamExt::chain(futures::stream::iter(first), rest),
            |r| r.map_err(|e| std::io::Error::other(e.to_string())),
        );
        Ok(Body::from_stream(stream))
    }
}

/// Keeps one upload body to a minimum pace, so that a client that stalls or trickles cannot
/// hold its write session (and with it garbage collection, and every write queued behind a
/// waiting collection) for ever.
///
/// The client has a time credit, at most `window` (`upload_idle_timeout`): waiting for it
/// spends the credit, and each byte received earns `1 / rate` seconds of it back. A wait that
/// would overdraw the credit abandons the upload. So the client may pause for `window` when it
/// is not behind, and must average at least `rate` bytes per second, falling behind by at most
/// `window` worth of bytes. Only time spent waiting for the client counts: while keel is busy
/// (hashing, writing, waiting for a GC), the client cannot send and its credit is untouched.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: u64,
    window: Duration,
    credit: Duration,
    received: u64,
    waited: Duration,
}

impl Pace {
    pub(crate) fn new(rate: u64, window: Duration) -> Self {
        Self {
            rate,
            window,
            credit: window,
            received: 0,
            waited: Duration::ZERO,
        }
    }

    /// Records a wait of `waited` that brought `bytes`.
    fn record(&mut self, waited: Duration, bytes: u64) {
        self.waited = self.waited.saturating_add(waited);
        self.received = self.received.saturating_add(bytes);
        self.credit = self.credit.saturating_sub(waited);
        let earned = if self.rate == 0 {
            self.window
        } else {
            Duration::try_from_secs_f64(bytes as f64 / self.rate as f64).unwrap_or(Duration::MAX)
        };
        self.credit = self.credit.saturating_add(earned).min(self.window);
    }

    /// Why the upload is abandoned after a wait of `allowed` brought nothing.
    fn too_slow(&self, allowed: Duration) -> Error {
        // A client with (almost) its whole credit left that sends nothing has stalled.
        let reason = if allowed >= self.window.mul_f64(0.9) {
            format!("stalled: nothing received for {:?}", self.window)
        } else {
            format!(
                "too slow: {} bytes in {:.1?} of waiting for the client, under the minimum of {} bytes/s (`upload_min_bytes_per_second`) by more than {:?} worth",
                self.received,
                self.waited.saturating_add(allowed),
                self.rate,
                self.window
            )
        };
        Error::UploadTooSlow { reason }
    }

    /// Awaits one step of reading the body (`bytes` tells how many bytes its output holds),
    /// or abandons the upload when the client is too far behind.
    pub(crate) async fn step<T>(
        &mut self,
        step: impl std::future::Future<Output = T>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> Result<T, Error> {
        let allowed = self.credit;
        let start = Instant::now();
        match tokio::time::timeout(allowed, step).await {
            Ok(out) => {
                self.record(start.elapsed(), bytes(&out));
                Ok(out)
            }
            Err(_) => Err(self.too_slow(allowed)),
        }
    }
}

/// Answers 504 when the inner service takes longer than the deadline to produce headers.
pub(crate) async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::GATEWAY_TIMEOUT, "request timed out\n").into_response(),
    }
}

/// `Write` into a bounded channel of body chunks (blocks when the client is slow).
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= BODY_CHUNK {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(BODY_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// Decodes `%XX` escapes (and `+` as space when `plus` is set).
pub(crate) fn percent_decode(s: &str, plus: bool) -> Result<String, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::InvalidArgument {
                        input: s.chars().take(64).collect(),
                        reason: "bad percent-encoding".to_owned(),
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::InvalidArgument {
        input: s.chars().take(64).collect(),
        reason: "not UTF-8 after percent-decoding".to_owned(),
    })
}

/// A parsed query string; keys may repeat (`arg=a&arg=b`).
#[derive(Debug, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Result<Self, Error> {
        let mut v = Vec::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            v.push((percent_decode(k, true)?, percent_decode(val, true)?));
        }
        Ok(Self(v))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean flag: absent → `default`, present with no value or `true` → true.
    pub(crate) fn flag(&self, key: &str, default: bool) -> Result<bool, Error> {
        match self.get(key) {
            None => Ok(default),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(Error::InvalidArgument {
                input: format!("{key}={other}"),
                reason: "expected true or false".to_owned(),
            }),
        }
    }
}

/// Per-client token buckets. A client is an IPv4 address or an IPv6 /64 (one subscriber's
/// network: a host picks any of its 2^64 addresses at will, so a per-address limit would be
/// no limit at all); IPv4-mapped IPv6 addresses count as their IPv4 address.
///
/// The table holds at most `max_tracked_clients` buckets. When a new client finds it full,
/// buckets that have refilled completely (idle clients) are dropped first, then the least
/// recently seen eighth; a new client always gets a bucket and is always limited, whatever
/// the table holds (a full table never lets requests through unchecked).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    cfg: RateLimitConfig,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// The rate-limit key of a client address (see [`RateLimiter`]).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

impl RateLimiter {
    pub(crate) fn new(cfg: RateLimitConfig) -> Self {
        Self {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`'s client; `false` when the client is over its limit.
    pub(crate) fn check(&self, ip: IpAddr) -> bool {
        let key = client_key(ip);
        let now = Instant::now();
        let rate = f64::from(self.cfg.requests_per_second.max(1));
        let burst = f64::from(self.cfg.burst.max(1));
        let max = self.cfg.max_tracked_clients.max(1);
        // A bucket map cannot be left half-updated: a panic elsewhere does not poison it.
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= max && !map.contains_key(&key) {
            // Forget clients whose bucket has refilled completely: they are idle.
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if map.len() >= max {
                // Every tracked client is active: forget the least recently seen eighth (at
                // least one), so the cost of making room is spread over many new clients.
                let mut seen: Vec<Instant> = map.values().map(|(_, at)| *at).collect();
                let n = (max / 8).clamp(1, seen.len());
                let (_, cutoff, _) = seen.select_nth_unstable(n - 1);
                let cutoff = *cutoff;
                let mut dropped = 0;
                map.retain(|_, (_, at)| {
                    let drop = *at <= cutoff && dropped < n;
                    dropped += usize::from(drop);
                    !drop
                });
            }
        }
        let (tokens, at) = map.entry(key).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub(crate) fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// Middleware state: what to log and limit for one listener.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub(crate) listener: &'static str,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limiter: Option<Arc<RateLimiter>>,
    pub(crate) access_log: Option<AccessLogConfig>,
    /// Deadline for response headers; `None` when the routes apply their own.
    pub(crate) request_timeout: Option<Duration>,
}

fn redact_ip(ip: IpAddr, how: IpRedaction) -> String {
    match (how, ip) {
        (IpRedaction::None, ip) => ip.to_string(),
        (IpRedaction::Full, _) => "-".to_owned(),
        (IpRedaction::Prefix, IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        (IpRedaction::Prefix, IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// Rate limit, timeout, access log and metrics around every request.
pub(crate) async fn edge(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let ip = client_ip(&req);
    let method = req.method().clone();
    let path = match (&edge.access_log, req.uri().query()) {
        (Some(cfg), Some(q)) if !cfg.redact_query => format!("{}?{q}", req.uri().path()),
        _ => req.uri().path().to_owned(),
    };
    let resp = if edge.limiter.as_ref().is_some_and(|l| !l.check(ip)) {
        edge.metrics.rate_limited.inc();
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; retry later\n",
        )
            .into_response();
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        r
    } else {
        match edge.request_timeout {
            Some(limit) => deadline(State(limit), req, next).await,
            None => next.run(req).await,
        }
    };
    let status = resp.status().as_u16();
    let labels = HttpLabels {
        listener: edge.listener,
        status,
    };
    let elapsed = start.elapsed();
    edge.metrics
        .http_latency_seconds
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    edge.metrics.http_requests.get_or_create(&labels).inc();
    if let Some(cfg) = &edge.access_log
        && cfg.enabled
    {
        tracing::info!(
            target: "keel_content::access",
            listener = edge.listener,
            client = %redact_ip(ip, cfg.redact_ip),
            %method,
            path = %path,
            status,
            ms = elapsed.as_millis() as u64,
        );
    }
    let counter = edge.metrics.http_bytes.get_or_create(&labels).clone();
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(CountingBody {
            inner: body,
            counter,
        }),
    )
}

struct CountingBody {
    inner: Body,
    counter: prometheus_client::metrics::counter::Counter,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &p
            && let Some(d) = f.data_ref()
        {
            self.counter.inc_by(d.len() as u64);
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_percent() {
        let q = Query::parse(Some("arg=a%2Fb&arg=c+d&flag&x=false")).expect("parse");
        assert_eq!(q.all("arg"), vec!["a/b", "c d"]);
        assert!(q.flag("flag", false).expect("flag"));
        assert!(!q.flag("x", true).expect("flag"));
        assert!(q.flag("missing", true).expect("flag"));
        assert!(percent_decode("%zz", false).is_err());
    }

    #[test]
    fn rate_limiter_bursts_then_refuses() {
        let l = RateLimiter::new(RateLimitConfig {
            requests_per_second: 1,
            burst: 3,
            max_tracked_clients: 10,
        });
        let ip = IpAddr::from([10, 0, 0, 1]);
        assert!(l.check(ip) && l.check(ip) && l.check(ip));
        assert!(!l.check(ip));
        assert!(l.check(IpAddr::from([10, 0, 0, 2])));
    }

    /// An error or a panic in a streaming job reaches the client as an error: returned before
    /// the first chunk (the handler answers with an error status), an aborted body after it;
    /// never a clean end of a truncated body.
    #[tokio::test]
    async fn stream_errors_and_panics_are_never_a_clean_end() {
        use http_body_util::BodyExt;
        let t = tempfile::tempdir().expect("tmp");
        let bs = Blockstore::open(t.path()).expect("open");
        let st = AppState::new(bs, &ContentConfig::default());
        let big = vec![7u8; BODY_CHUNK + 1];

        let early = st
            .stream(|_, _| Err(Error::Malformed("early".to_owned())))
            .await;
        assert!(matches!(early, Err(Error::Malformed(_))));
        let early_panic = st.stream(|_, _| panic!("boom before any byte")).await;
        match early_panic {
            Err(Error::Task(m)) => assert!(m.contains("boom before any byte"), "{m}"),
            other => panic!(
                "expected the panic as an error, got {:?}",
                other.map(|_| ())
            ),
        }

        let b = big.clone();
        let late = st
            .stream(move |_, w| {
                w.write_all(&b)?;
                Err(Error::Malformed("late".to_owned()))
            })
            .await
            .expect("first chunk went out");
        assert!(
            late.collect().await.is_err(),
            "an error after the first chunk aborts"
        );
        let b = big.clone();
        let late_panic = st
            .stream(move |_, w| {
                w.write_all(&b)?;
                panic!("boom mid-stream")
            })
            .await
            .expect("first chunk went out");
        assert!(
            late_panic.collect().await.is_err(),
            "a panic mid-stream aborts"
        );

        let b = big.clone();
        let ok = st
            .stream(move |_, w| w.write_all(&b).map_err(Error::from))
            .await
            .expect("body");
        assert_eq!(ok.collect().await.expect("complete").to_bytes(), big);
    }

    #[test]
    fn pace_allows_pauses_but_not_trickles() {
        let ms = Duration::from_millis;
        let mut p = Pace::new(1000, ms(1000));
        assert_eq!(
            p.credit,
            ms(1000),
            "a new upload may pause for the whole window"
        );
        // One byte every 100 ms: 99 ms of credit lost per byte, gone after ten.
        for _ in 0..10 {
            p.record(ms(100), 1);
        }
        assert_eq!(p.credit, ms(10));
        let e = p.too_slow(p.credit).to_string();
        assert!(
            e.contains("too slow: 10 bytes in 1.0s") && e.contains("1000 bytes/s"),
            "{e}"
        );
        // A fast stretch refills the credit only up to the window: it banks no trickle time.
        p.record(ms(1), 10_000_000);
        assert_eq!(p.credit, ms(1000));
        assert!(
            p.too_slow(ms(1000))
                .to_string()
                .contains("stalled: nothing received for 1s")
        );
        // Keeping up with the rate keeps the credit.
        let mut p = Pace::new(1000, ms(1000));
        for _ in 0..100 {
            p.record(ms(100), 100);
        }
        assert_eq!(p.credit, ms(1000));
        // Without a minimum rate any byte restores the whole window (an idle timeout only).
        let mut p = Pace::new(0, ms(1000));
        p.record(ms(900), 1);
        assert_eq!(p.credit, ms(1000));
    }

    #[test]
    fn rate_limiter_counts_an_ipv6_slash_64_as_one_client() {
        let l = RateLimiter::new(RateLimitConfig {
            requests_per_second: 1,
            burst: 2,
            max_tracked_clients: 10,
        });
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().expect("ip");
        assert!(l.check(a) && l.check(b));
        assert!(
            !l.check("2001:db8:1:2::77".parse().expect("ip")),
            "same /64"
        );
        assert!(
            l.check("2001:db8:1:3::1".parse().expect("ip")),
            "another /64"
        );
        // An IPv4-mapped address is its IPv4 client.
        assert!(l.check(IpAddr::from([192, 0, 2, 1])) && l.check(IpAddr::from([192, 0, 2, 1])));
        assert!(!l.check("::ffff:192.0.2.1".parse().expect("ip")));
    }

    #[test]
    fn a_full_rate_limiter_table_still_limits_every_client() {
        let l = RateLimiter::new(RateLimitConfig {
            requests_per_second: 1,
            burst: 1,
            max_tracked_clients: 2,
        });
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        assert!(l.check(ip(1)) && l.check(ip(2)));
        // The table is full of active clients; a third is tracked (and limited) all the same.
        for n in 3..50 {
            assert!(l.check(ip(n)), "client {n}'s first request");
            assert!(!l.check(ip(n)), "client {n} got past a full table");
        }
        assert!(l.buckets.lock().expect("map").len() <= 2);
    }

    #[test]
    fn ip_redaction() {
        let ip = IpAddr::from([192, 0, 2, 77]);
        assert_eq!(redact_ip(ip, IpRedaction::Prefix), "192.0.2.0/24");
        assert_eq!(redact_ip(ip, IpRedaction::Full), "-");
    }
}
