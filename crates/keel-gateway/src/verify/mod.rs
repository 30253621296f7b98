//! Verified reads: quorum (N of M upstreams agree, [`quorum`]) and proof (`eth_getProof` checked
//! against a trusted state root, [`proof`]). Built on `keel_verify`; see docs/verification.md.
//!
//! Who asked matters. A check the chain's config asks for is the operator's: its findings are
//! evidence, and a minority upstream is penalised and, after `evidence_threshold` in a row,
//! ejected. A check a client asks for with `x-keel-verify` beyond the config ([`choose`]) is
//! the client's: it is allowed only for `client_methods`, and it never penalises, ejects, clears
//! strikes or writes evidence, since a client chooses its questions and could otherwise choose
//! ones that honest upstreams answer differently. Reads of a block that moves (`pending`, an
//! unknown spelling) are never compared across upstreams: refused for a client, served
//! unverified for the config.

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
use keel_verify::{
    BlockPins,
    evidence::{EvidenceLog, EvidenceRecord, Retention},
    pin::Pin,
};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::{
    Ctx,
    forward::{self, Outcome, Served},
    jsonrpc::{self, Request, code},
    metrics::{GatewayMetrics, UpstreamLabels, VerifyLabels},
    policy::{self, Route},
};

/// Shared verification state: the evidence log and per-upstream disagreement streaks.
#[derive(Debug)]
pub(crate) struct Verifier {
    evidence_dir: Option<PathBuf>,
    retention: Retention,
    log: OnceLock<Option<EvidenceLog>>,
    /// (chain, upstream index) → disagreements or failed proofs in a row.
    strikes: Mutex<HashMap<(String, usize), u32>>,
    /// Background tasks reading calls still in flight after a quorum was reached.
    late_calls: Arc<Semaphore>,
    /// State roots agreed recently (or found not to be agreed): (chain, block) → root.
    roots: Mutex<HashMap<(String, u64), CachedRoot>>,
}

/// What the upstreams said about one block's state root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KnownRoot {
    /// A quorum (or the header source, or a checkpoint) gave this root.
    Root([u8; 32]),
    /// The upstreams answered but no quorum agreed on a root: they do not share this block
    /// (independent dev nodes, or a fork with no majority).
    Split,
}

/// A state root agreed for one block.
#[derive(Debug, Clone, Copy)]
struct CachedRoot {
    root: KnownRoot,
    at: Instant,
    /// The block was finalized when the root was agreed: it never changes.
    settled: bool,
}

/// Most state roots kept; past it expired ones are dropped (all of them when none expired).
const MAX_CACHED_ROOTS: usize = 4096;

/// Most background tasks reading late answers at once; beyond it late calls are dropped.
const MAX_LATE_CALLS: usize = 1024;

impl Verifier {
    pub(crate) fn new(evidence_dir: Option<PathBuf>, retention: Retention) -> Self {
        Self {
            evidence_dir,
            retention,
            log: OnceLock::new(),
            strikes: Mutex::new(HashMap::new()),
            late_calls: Arc::new(Semaphore::new(MAX_LATE_CALLS)),
            roots: Mutex::new(HashMap::new()),
        }
    }

    /// The evidence log, opened (and its retention applied) on first use.
    fn log(&self) -> Option<&EvidenceLog> {
        self.log
            .get_or_init(|| {
                let dir = self.evidence_dir.as_deref()?;
                EvidenceLog::open_with(dir, self.retention)
                    .map_err(|e| tracing::error!(error = %e, "cannot open the evidence log"))
                    .ok()
            })
            .as_ref()
    }

    /// Opens the evidence log in the background now (when there is one and a runtime to do
    /// it on), so that records past `max_age` are deleted at start, not only at the next
    /// record.
    pub(crate) fn open_log(self: &Arc<Self>) {
        if self.evidence_dir.is_none() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let this = Arc::clone(self);
        // Errors are logged by `log`; a panic here would surface at the first record.
        drop(tokio::task::spawn_blocking(move || {
            this.log();
        }));
    }

    /// Appends `record` to the evidence log (opened on first use), off the async threads.
    async fn record(self: &Arc<Self>, record: EvidenceRecord) {
        if self.evidence_dir.is_none() {
            return;
        }
        let this = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || match this.log() {
            Some(log) => log.append(record).map(|_| ()).map_err(|e| e.to_string()),
            None => Err("the evidence log is not open".to_owned()),
        })
        .await;
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "evidence record lost"),
            Err(e) => tracing::error!(error = %e, "evidence append task failed"),
        }
    }

    /// What a check found against `up`: for an accountable check a health penalty (after
    /// `evidence_threshold` in a row, ejection); for a client's, a count in
    /// `rpc_verify_client_disagreements_total` only.
    fn penalise(&self, chain: &Chain, up: &Upstream, metrics: &GatewayMetrics, check: Check) {
        if !check.accountable() {
            metrics
                .client_disagreements
                .get_or_create(&UpstreamLabels {
                    chain: chain.name().to_owned(),
                    upstream: up.name().to_owned(),
                })
                .inc();
            return;
        }
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
            self.clear(chain, up, check);
        } else {
            up.health().record_failure(now, false);
        }
    }

    /// The state root agreed for `block` of `chain`, while it is fresh: a finalized block's root
    /// never changes; another's is kept for the chain's `head_poll_interval` (a reorg may
    /// replace the block).
    fn cached_root(&self, chain: &Chain, block: u64) -> Option<KnownRoot> {
        let g = self.roots.lock().unwrap_or_else(|p| p.into_inner());
        let c = g.get(&(chain.name().to_owned(), block))?;
        (c.settled || c.at.elapsed() < chain.config().head_poll_interval).then_some(c.root)
    }

    fn cache_root(&self, chain: &Chain, block: u64, root: KnownRoot) {
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

    /// `up` answered right: its strikes start over (for an accountable check only: a client
    /// must not be able to wipe a liar's record by asking what it answers right).
    fn clear(&self, chain: &Chain, up: &Upstream, check: Check) {
        if !check.accountable() {
            return;
        }
        let mut g = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&(chain.name().to_owned(), up.index()));
    }
}

/// How a read is to be verified, and on whose behalf (see [`choose`]).
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    /// The mode.
    pub(crate) mode: VerifyMode,
    /// The client asked for this check beyond what the config does: nobody is penalised or
    /// recorded for what it finds.
    pub(crate) by_client: bool,
    /// The client asked for a check it may not have: why (a -32602 for this request).
    refused: Option<String>,
}

impl Choice {
    /// Whether the read goes to [`read`] (to be verified, or to be refused).
    pub(crate) fn verifies(&self) -> bool {
        self.mode != VerifyMode::None || self.refused.is_some()
    }

    /// Whether the client asked for a check it may not have (answered -32602 by [`read`],
    /// before any upstream is asked).
    pub(crate) fn is_refused(&self) -> bool {
        self.refused.is_some()
    }
}

/// The mode `mode` really is for `method`: proof applies to account reads only, others are
/// checked by quorum.
fn effective(mode: VerifyMode, method: &str) -> VerifyMode {
    if mode == VerifyMode::Proof && !ACCOUNT_METHODS.contains(&method) {
        VerifyMode::Quorum
    } else {
        mode
    }
}

/// How a read of `method` is verified: as the chain's config says, unless the client's
/// `x-keel-verify` header asks for something else. `none` is always granted. A check the config
/// would make anyway stays the operator's; another one is the client's, granted only for the
/// chain's `client_methods` (never for a [`keel_config::NEVER_VERIFIED`] method).
pub(crate) fn choose(chain: &Chain, method: &str, header: Option<VerifyMode>) -> Choice {
    let cfg = &chain.config().verify;
    let configured = cfg.mode_for(method, chain.upstreams().len());
    let operator = |mode| Choice {
        mode,
        by_client: false,
        refused: None,
    };
    let Some(asked) = header else {
        return operator(configured);
    };
    if asked == VerifyMode::None {
        return operator(VerifyMode::None);
    }
    if effective(asked, method) == effective(configured, method) {
        return operator(configured);
    }
    let refused = if keel_config::never_verified(method) {
        Some(format!(
            "x-keel-verify: {} cannot be used for {method}: its answers legitimately differ between honest upstreams (or it is not a read), so it is never verified",
            asked.as_str()
        ))
    } else if !cfg.client_methods.iter().any(|m| m == method) {
        Some(format!(
            "x-keel-verify: {} is not allowed for {method} on chain {} (not in its [chains.verify] client_methods)",
            asked.as_str(),
            chain.name()
        ))
    } else {
        None
    };
    Choice {
        mode: asked,
        by_client: refused.is_none(),
        refused,
    }
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

/// Serves a read as `choice` says (one for which [`Choice::verifies`]).
pub(crate) async fn read(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    choice: &Choice,
    out: &mut Vec<u8>,
) -> Served {
    if let Some(why) = &choice.refused {
        return failed(req, code::INVALID_PARAMS, why, out);
    }
    let check = Check {
        by_client: choice.by_client,
    };
    let (served, extra, mode) = match effective(choice.mode, &req.method) {
        VerifyMode::Proof => proof::read(ctx, req, check, out).await,
        _ => {
            let (served, extra) = quorum::read(ctx, req, check, out).await;
            (served, extra, VerifyMode::Quorum)
        }
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

/// On whose behalf a read is checked (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(super) struct Check {
    /// The client asked for it: findings penalise nobody and are not recorded.
    pub(super) by_client: bool,
}

impl Check {
    /// Whether what this check finds counts against upstreams (penalties, strikes, evidence).
    pub(super) fn accountable(self) -> bool {
        !self.by_client
    }
}

/// Pins `req`'s block (see [`keel_verify::pin::pin_request`]). `Err` is a client error message.
fn pin(req: &Request<'_>, pins: &BlockPins) -> Result<Pin, String> {
    let empty;
    let params = match req.params {
        Some(p) => p,
        None => {
            empty = RawValue::from_string("[]".to_owned()).map_err(|e| e.to_string())?;
            &*empty
        }
    };
    keel_verify::pin::pin_request(&req.method, params, pins).map_err(|e| e.to_string())
}

/// A read whose block moves (`what`, e.g. `"pending"`), which honest upstreams answer
/// differently: a client's check is refused with -32602; the config's is served unverified
/// (`x-keel-verified: none`), as if the method were not verified.
async fn unverifiable(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    check: Check,
    what: &str,
    out: &mut Vec<u8>,
) -> (Served, u64) {
    if check.by_client {
        let message = format!(
            "x-keel-verify cannot check {} at {what}: answers for a block that moves legitimately differ between honest upstreams; name a block number or hash, or latest, safe or finalized",
            req.method
        );
        return (failed(req, code::INVALID_PARAMS, &message, out), 0);
    }
    let body = Bytes::from(jsonrpc::upstream_body(req));
    let served = match policy::route(ctx.chain, &req.method, req.params) {
        Route::Read {
            need,
            null_may_be_lag,
        } => {
            let plan = forward::Plan {
                need,
                null_may_be_lag,
                beyond_heads: false,
            };
            forward::read(ctx.chain, req, body, plan, ctx.deadline, out).await
        }
        // Writes never reach verification.
        Route::Broadcast { .. } => failed(req, code::INTERNAL, "internal error", out),
    };
    (served, 0)
}

fn body_for(method: &str, params: &RawValue) -> Bytes {
    let r = Request {
        id: None,
        method: method.to_owned(),
        params: Some(params),
    };
    Bytes::from(jsonrpc::upstream_body(&r))
}

/// Why an upstream's body is no answer to compare.
#[derive(Debug)]
enum NoAnswer {
    /// An error saying the node lacks the data ("header not found", "missing trie node",
    /// ...): a pruned or lagging node is not a liar.
    Lacking,
    /// Neither a result nor an error (or not the compared field).
    Empty,
    /// Not a JSON-RPC reply, or one whose keys repeat: parsers disagree on what it holds, so
    /// it is a failed answer from that upstream, never a vote.
    Malformed(keel_verify::VerifyError),
}

/// The canonical bytes an answer is compared by (see [`keel_verify::canonical_answer`]), or
/// why the body is no answer; its call then counts as failed and another upstream is asked.
fn canonical_answer(method: &str, field: Option<&str>, body: &[u8]) -> Result<Vec<u8>, NoAnswer> {
    let reply = keel_verify::json::envelope(body).map_err(NoAnswer::Malformed)?;
    if reply
        .error
        .is_some_and(|e| crate::policy::lacking_message(e).is_some())
    {
        return Err(NoAnswer::Lacking);
    }
    keel_verify::canonical_answer(method, field, reply.result, reply.error)
        .map_err(NoAnswer::Malformed)?
        .ok_or(NoAnswer::Empty)
}

/// A failed answer from `up` that no honest node gives (duplicate keys, not JSON-RPC): a
/// health failure, for an accountable check.
fn malformed(up: &Upstream, check: Check, why: &keel_verify::VerifyError) {
    tracing::warn!(upstream = %up.name(), error = %why, "upstream answer refused");
    if check.accountable() {
        up.health().record_failure(Instant::now(), false);
    }
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
        )
        .ok();
        assert!(a.is_some());
        let b = canonical_answer(
            "eth_getBalance",
            None,
            br#"{"id":1,"result":"0x1","jsonrpc":"2.0"}"#,
        )
        .ok();
        assert_eq!(a, b);
        let e = canonical_answer(
            "eth_getBalance",
            None,
            br#"{"id":1,"error":{"code":1,"message":"0x1"}}"#,
        )
        .ok();
        assert!(e.is_some());
        assert_ne!(a, e);
        assert!(matches!(
            canonical_answer("eth_getBalance", None, b"nope"),
            Err(NoAnswer::Malformed(_))
        ));
        // "I lack it" is no answer at all, neither right nor wrong.
        let lacking = br#"{"id":1,"error":{"code":-32602,"message":"BlockOutOfRangeError: block height is 2 but requested was 1"}}"#;
        assert!(matches!(
            canonical_answer("eth_getBalance", None, lacking),
            Err(NoAnswer::Lacking)
        ));
        assert!(matches!(
            canonical_answer("eth_getBalance", None, br#"{"id":1}"#),
            Err(NoAnswer::Empty)
        ));
    }

    #[test]
    fn an_answer_with_repeated_keys_is_no_vote() {
        for body in [
            &br#"{"id":1,"result":"0x1","result":"0x2"}"#[..],
            br#"{"id":1,"result":{"a":"0x1","a":"0x2"}}"#,
            br#"{"id":1,"id":1,"result":"0x1"}"#,
        ] {
            assert!(
                matches!(
                    canonical_answer("eth_call", None, body),
                    Err(NoAnswer::Malformed(
                        keel_verify::VerifyError::DuplicateKey { .. }
                    ))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
