//! Verified reads: quorum (N of M upstreams agree, [`quorum`]) and proof (`eth_getProof` checked
//! against a trusted state root, [`proof`]). Built on `keel_verify`; see docs/verification.md.

mod proof;
mod quorum;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use bytes::Bytes;
use keel_chain::{BlockTag, Chain, Upstream};
use keel_config::{ACCOUNT_METHODS, VerifyMode};
use keel_verify::{BlockPins, Pinned, evidence::EvidenceLog, evidence::EvidenceRecord};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::{
    Ctx,
    forward::{Outcome, Served},
    jsonrpc::{self, Reply, Request, code},
    metrics::{GatewayMetrics, UpstreamLabels, VerifyLabels},
};

/// Shared verification state: the evidence log and per-upstream disagreement streaks.
#[derive(Debug)]
pub(crate) struct Verifier {
    evidence_dir: Option<PathBuf>,
    log: OnceLock<Option<EvidenceLog>>,
    /// (chain, upstream index) → disagreements or failed proofs in a row.
    strikes: Mutex<HashMap<(String, usize), u32>>,
    /// Background tasks reading calls still in flight after a quorum was reached.
    late_calls: Arc<Semaphore>,
    /// State roots agreed recently: (chain, block) → root.
    roots: Mutex<HashMap<(String, u64), CachedRoot>>,
}

/// A state root agreed for one block.
#[derive(Debug, Clone, Copy)]
struct CachedRoot {
    root: [u8; 32],
    at: Instant,
    /// The block was finalized when the root was agreed: it never changes.
    settled: bool,
}

/// Most state roots kept; past it expired ones are dropped (all of them when none expired).
const MAX_CACHED_ROOTS: usize = 4096;

/// Most background tasks reading late answers at once; beyond it late calls are dropped.
const MAX_LATE_CALLS: usize = 1024;

impl Verifier {
    pub(crate) fn new(evidence_dir: Option<PathBuf>) -> Self {
        Self {
            evidence_dir,
            log: OnceLock::new(),
            strikes: Mutex::new(HashMap::new()),
            late_calls: Arc::new(Semaphore::new(MAX_LATE_CALLS)),
            roots: Mutex::new(HashMap::new()),
        }
    }

    /// Appends `record` to the evidence log (opened on first use), off the async threads.
    async fn record(self: &Arc<Self>, record: EvidenceRecord) {
        if self.evidence_dir.is_none() {
            return;
        }
        let this = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || {
            let log = this.log.get_or_init(|| {
                let dir = this.evidence_dir.as_deref()?;
                EvidenceLog::open(dir)
                    .map_err(|e| tracing::error!(error = %e, "cannot open the evidence log"))
                    .ok()
            });
            match log {
                Some(log) => log.append(record).map(|_| ()).map_err(|e| e.to_string()),
                None => Err("the evidence log is not open".to_owned()),
            }
        })
        .await;
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "evidence record lost"),
            Err(e) => tracing::error!(error = %e, "evidence append task failed"),
        }
    }

    /// A health penalty for `up`; after `threshold` in a row it is ejected.
    fn penalise(&self, chain: &Chain, up: &Upstream, metrics: &GatewayMetrics) {
        metrics
            .disagreements
            .get_or_create(&UpstreamLabels {
                chain: chain.name().to_owned(),
                upstream: up.name().to_owned(),
            })
            .inc();
        let threshold = chain.config().verify.evidence_threshold.max(1);
        let strikes = {
            let mut g = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
            let s = g.entry((chain.name().to_owned(), up.index())).or_insert(0);
            *s += 1;
            *s
        };
        let now = Instant::now();
        if strikes >= threshold {
            // Enough consecutive failures to open the breaker, whatever its state.
            for _ in 0..chain.config().health.failure_threshold.max(1) {
                if up.health().record_failure(now, false) {
                    break;
                }
            }
            tracing::warn!(upstream = %up.name(), strikes, "upstream ejected for wrong answers");
            self.clear(chain, up);
        } else {
            up.health().record_failure(now, false);
        }
    }

    /// The state root agreed for `block` of `chain`, while it is fresh: a finalized block's root
    /// never changes; another's is kept for the chain's `head_poll_interval` (a reorg may
    /// replace the block).
    fn cached_root(&self, chain: &Chain, block: u64) -> Option<[u8; 32]> {
        let g = self.roots.lock().unwrap_or_else(|p| p.into_inner());
        let c = g.get(&(chain.name().to_owned(), block))?;
        (c.settled || c.at.elapsed() < chain.config().head_poll_interval).then_some(c.root)
    }

    fn cache_root(&self, chain: &Chain, block: u64, root: [u8; 32]) {
        let settled = chain
            .agreed_block(BlockTag::Finalized, chain.config().verify.quorum)
            .is_some_and(|f| block <= f);
        let ttl = chain.config().head_poll_interval;
        let mut g = self.roots.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= MAX_CACHED_ROOTS {
            g.retain(|_, c| c.settled || c.at.elapsed() < ttl);
            if g.len() >= MAX_CACHED_ROOTS {
                g.clear();
            }
        }
        let at = Instant::now();
        g.insert(
            (chain.name().to_owned(), block),
            CachedRoot { root, at, settled },
        );
    }

    fn forget_root(&self, chain: &Chain, block: u64) {
        let mut g = self.roots.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&(chain.name().to_owned(), block));
    }

    fn clear(&self, chain: &Chain, up: &Upstream) {
        let mut g = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&(chain.name().to_owned(), up.index()));
    }
}

/// The mode a read of `method` gets: the header's, else the chain's config.
pub(crate) fn mode_for(chain: &Chain, method: &str, header: Option<VerifyMode>) -> VerifyMode {
    header.unwrap_or_else(|| {
        chain
            .config()
            .verify
            .mode_for(method, chain.upstreams().len())
    })
}

/// Parses an `x-keel-verify` header value.
pub(crate) fn parse_mode(v: &str) -> Option<VerifyMode> {
    match v.trim() {
        "none" => Some(VerifyMode::None),
        "quorum" => Some(VerifyMode::Quorum),
        "proof" => Some(VerifyMode::Proof),
        _ => None,
    }
}

/// Serves a read with verification `mode` (not `None`).
pub(crate) async fn read(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    mode: VerifyMode,
    out: &mut Vec<u8>,
) -> Served {
    let mode = if mode == VerifyMode::Proof && !ACCOUNT_METHODS.contains(&req.method.as_str()) {
        VerifyMode::Quorum
    } else {
        mode
    };
    let (served, extra) = match mode {
        VerifyMode::Proof => proof::read(ctx, req, out).await,
        _ => quorum::read(ctx, req, out).await,
    };
    let outcome = match (&served.verified, served.fallback) {
        (Some(_), _) => "verified",
        (None, Some(_)) => "fallback",
        (None, None) => "failed",
    };
    let labels = VerifyLabels {
        chain: ctx.chain.name().to_owned(),
        mode: mode.as_str(),
        outcome,
    };
    ctx.metrics.verified_requests.get_or_create(&labels).inc();
    ctx.metrics
        .verify_extra_calls
        .get_or_create(&labels)
        .inc_by(extra);
    served
}

/// The numbers `latest`, `safe` and `finalized` are pinned to: for each, the highest block that
/// `fanout` usable upstreams have reached, so that enough of them can answer for it.
fn pins(chain: &Chain) -> BlockPins {
    let m = chain.config().verify.fanout.max(1);
    BlockPins {
        latest: chain
            .agreed_block(BlockTag::Latest, m)
            .unwrap_or_else(|| chain.head()),
        safe: chain.agreed_block(BlockTag::Safe, m),
        finalized: chain.agreed_block(BlockTag::Finalized, m),
    }
}

/// Pins `req`'s block tag. `Err` is a client error message.
fn pin(req: &Request<'_>, pins: &BlockPins) -> Result<Option<Pinned>, String> {
    let empty;
    let params = match req.params {
        Some(p) => p,
        None => {
            empty = RawValue::from_string("[]".to_owned()).map_err(|e| e.to_string())?;
            &*empty
        }
    };
    keel_verify::pin_block(&req.method, params, pins).map_err(|e| e.to_string())
}

fn body_for(method: &str, params: &RawValue) -> Bytes {
    let r = Request {
        id: None,
        method: method.to_owned(),
        params: Some(params),
    };
    Bytes::from(jsonrpc::upstream_body(&r))
}

/// The canonical bytes an answer is compared by (see [`keel_verify::canonical_answer`]), or
/// `None` when the body is no answer: not a JSON-RPC reply, or an error saying the node lacks
/// the data ("header not found", "missing trie node", ...). A pruned or lagging node is not a
/// liar: its call counts as failed and another upstream is asked.
fn canonical_answer(method: &str, field: Option<&str>, body: &[u8]) -> Option<Vec<u8>> {
    let reply: Reply<'_> = serde_json::from_slice(body).ok()?;
    if reply
        .error
        .is_some_and(|e| crate::policy::lacking_message(e).is_some())
    {
        return None;
    }
    keel_verify::canonical_answer(method, field, reply.result, reply.error)
}

/// Writes a JSON-RPC error for `req` and says how it ended.
fn failed(req: &Request<'_>, c: i64, message: &str, out: &mut Vec<u8>) -> Served {
    jsonrpc::write_error(out, req.id, c, message);
    let outcome = if c == code::NO_HEALTHY_UPSTREAM {
        Outcome::NoUpstream
    } else if c == code::INVALID_PARAMS {
        Outcome::Rejected
    } else {
        Outcome::Failed
    };
    Served {
        outcome,
        upstream: None,
        retries: 0,
        verified: None,
        fallback: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_parse() {
        assert_eq!(parse_mode("quorum"), Some(VerifyMode::Quorum));
        assert_eq!(parse_mode(" proof "), Some(VerifyMode::Proof));
        assert_eq!(parse_mode("none"), Some(VerifyMode::None));
        assert_eq!(parse_mode("yes"), None);
    }

    #[test]
    fn answers_compare_canonically_and_errors_apart_from_results() {
        let a = canonical_answer(
            "eth_getBalance",
            None,
            br#"{"jsonrpc":"2.0","id":1,"result":"0x01"}"#,
        );
        let b = canonical_answer(
            "eth_getBalance",
            None,
            br#"{"id":1,"result":"0x1","jsonrpc":"2.0"}"#,
        );
        assert_eq!(a, b);
        let e = canonical_answer(
            "eth_getBalance",
            None,
            br#"{"id":1,"error":{"code":1,"message":"0x1"}}"#,
        );
        assert_ne!(a, e);
        assert_eq!(canonical_answer("eth_getBalance", None, b"nope"), None);
        // "I lack it" is no answer at all, neither right nor wrong.
        let lacking = br#"{"id":1,"error":{"code":-32602,"message":"BlockOutOfRangeError: block height is 2 but requested was 1"}}"#;
        assert_eq!(canonical_answer("eth_getBalance", None, lacking), None);
    }
}
