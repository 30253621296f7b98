//! Verified reads: quorum (N of M upstreams agree) and proof (`eth_getProof` checked against a
//! state root agreed by a quorum). Built on `keel_verify`; see docs/verification.md.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use bytes::Bytes;
use futures::{StreamExt, stream::FuturesUnordered};
use keel_chain::{Chain, Need, Upstream};
use keel_config::VerifyMode;
use keel_verify::{
    BlockPins,
    evidence::{EvidenceLog, EvidenceRecord, Mode, UpstreamAnswer},
};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::{
    forward::{Outcome, Served},
    jsonrpc::{self, Reply, Request, code},
    metrics::{GatewayMetrics, UpstreamLabels, VerifyLabels},
};

/// Methods proof mode checks with `eth_getProof`; others fall back to quorum.
const PROVABLE: &[&str] = &[
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_getCode",
    "eth_getStorageAt",
    "eth_getProof",
];

/// Shared verification state: the evidence log and per-upstream disagreement streaks.
#[derive(Debug)]
pub(crate) struct Verifier {
    evidence_dir: Option<PathBuf>,
    log: OnceLock<Option<EvidenceLog>>,
    /// (chain, upstream index) → disagreements or failed proofs in a row.
    strikes: Mutex<HashMap<(String, usize), u32>>,
    /// Background checks of answers that came after a quorum was reached.
    stragglers: Arc<Semaphore>,
}

/// Most background checks of late answers at once; beyond it late answers are dropped unread.
const MAX_STRAGGLER_CHECKS: usize = 256;

/// One upstream's answer in a fan-out.
struct Answer {
    upstream: Arc<Upstream>,
    body: Bytes,
}

/// What a fan-out produced.
enum FanOut {
    /// `n` agreed: the index of the answer to serve, in `answers`.
    Agreed {
        index: usize,
        agreeing: usize,
        asked: usize,
        answers: Vec<Answer>,
    },
    /// No agreement; the message for the client.
    Failed {
        code: i64,
        message: String,
        asked: usize,
    },
}

impl Verifier {
    pub(crate) fn new(evidence_dir: Option<PathBuf>) -> Self {
        Self {
            evidence_dir,
            log: OnceLock::new(),
            strikes: Mutex::new(HashMap::new()),
            stragglers: Arc::new(Semaphore::new(MAX_STRAGGLER_CHECKS)),
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

    fn clear(&self, chain: &Chain, up: &Upstream) {
        let mut g = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&(chain.name().to_owned(), up.index()));
    }
}

/// The mode a read of `method` gets: the header's, else the chain's config.
pub(crate) fn mode_for(chain: &Chain, method: &str, header: Option<VerifyMode>) -> VerifyMode {
    header.unwrap_or_else(|| chain.config().verify.mode_for(method))
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

/// Context of one verified read.
pub(crate) struct Ctx<'a> {
    pub(crate) chain: &'a Arc<Chain>,
    pub(crate) verifier: &'a Arc<Verifier>,
    pub(crate) metrics: &'a GatewayMetrics,
    pub(crate) deadline: Instant,
}

/// Serves a read with verification `mode` (not `None`).
pub(crate) async fn read(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    mode: VerifyMode,
    out: &mut Vec<u8>,
) -> Served {
    let mode = if mode == VerifyMode::Proof && !PROVABLE.contains(&req.method.as_str()) {
        VerifyMode::Quorum
    } else {
        mode
    };
    let (served, extra) = match mode {
        VerifyMode::Proof => proof_read(ctx, req, out).await,
        _ => quorum_read(ctx, req, out).await,
    };
    let mode_label = mode.as_str();
    let outcome = if served.verified.is_some() {
        "verified"
    } else {
        "failed"
    };
    let chain = ctx.chain.name().to_owned();
    ctx.metrics
        .verified_requests
        .get_or_create(&VerifyLabels {
            chain: chain.clone(),
            mode: mode_label,
            outcome,
        })
        .inc();
    ctx.metrics
        .verify_extra_calls
        .get_or_create(&VerifyLabels {
            chain,
            mode: mode_label,
            outcome,
        })
        .inc_by(extra);
    served
}

/// The block to pin `latest` to: the highest block that `fanout` usable upstreams have, so
/// that enough of them can answer for it.
fn pin_target(chain: &Chain) -> u64 {
    let now = Instant::now();
    let mut heads: Vec<u64> = chain
        .upstreams()
        .iter()
        .filter(|u| u.is_verified() && u.health().is_available(now))
        .map(|u| u.head())
        .collect();
    heads.sort_unstable_by(|a, b| b.cmp(a));
    let m = chain.config().verify.fanout.max(1);
    match heads.get(m.min(heads.len()).saturating_sub(1)) {
        Some(h) => *h,
        None => chain.head(),
    }
}

/// Pins `req`'s block tag. `Err` is a client error message.
fn pin(req: &Request<'_>, block: u64) -> Result<Option<Box<RawValue>>, String> {
    let Some(params) = req.params else {
        let empty = RawValue::from_string("[]".to_owned()).map_err(|e| e.to_string())?;
        return keel_verify::pin_block(&req.method, &empty, &BlockPins::latest(block))
            .map_err(|e| e.to_string());
    };
    keel_verify::pin_block(&req.method, params, &BlockPins::latest(block))
        .map_err(|e| e.to_string())
}

fn body_for(method: &str, params: &RawValue) -> Bytes {
    let r = Request {
        id: None,
        method: method.to_owned(),
        params: Some(params),
    };
    Bytes::from(jsonrpc::upstream_body(&r))
}

/// The canonical bytes an answer is compared by, or `None` when the body is not a JSON-RPC
/// reply (see [`keel_verify::canonical_answer`]).
fn canonical_answer(method: &str, field: Option<&str>, body: &[u8]) -> Option<Vec<u8>> {
    let reply: Reply<'_> = serde_json::from_slice(body).ok()?;
    keel_verify::canonical_answer(method, field, reply.result, reply.error)
}

/// Who to report a wrong answer to, owned so that a background check can use it.
#[derive(Clone)]
struct Reporter {
    chain: Arc<Chain>,
    verifier: Arc<Verifier>,
    metrics: GatewayMetrics,
    method: String,
    params: Box<RawValue>,
    field: Option<&'static str>,
    block: Option<u64>,
}

/// Sends `params` to up to `fanout` distinct upstreams serving `need` at once; returns as soon
/// as `quorum` agree. A transport failure is replaced by another upstream while one remains.
/// Calls still in flight are not waited for: their answers are compared in the background
/// (bounded by [`MAX_STRAGGLER_CHECKS`]), so a slow liar is caught too. Minority upstreams get
/// evidence and a penalty. With `field`, only that field of an object result is compared.
async fn fan_out(
    ctx: &Ctx<'_>,
    method: &str,
    params: &RawValue,
    field: Option<&'static str>,
    block: Option<u64>,
    need: Need,
) -> FanOut {
    let cfg = &ctx.chain.config().verify;
    let n = cfg.quorum.max(1);
    let m = cfg.fanout.max(n);
    let body = body_for(method, params);
    let mut tried: Vec<usize> = Vec::new();
    let mut calls = FuturesUnordered::new();
    let launch = |up: Arc<Upstream>, calls: &mut FuturesUnordered<_>| {
        let body = body.clone();
        let deadline = ctx.deadline;
        calls.push(async move {
            let r = up.call(body, deadline).await;
            (up, r)
        });
    };
    while tried.len() < m {
        let Some(up) = ctx.chain.select(need, &tried) else {
            break;
        };
        tried.push(up.index());
        launch(up, &mut calls);
    }
    if tried.len() < n {
        return FanOut::Failed {
            code: code::NO_HEALTHY_UPSTREAM,
            message: format!(
                "verification needs {n} upstreams of chain {} but only {} can serve this request",
                ctx.chain.name(),
                tried.len()
            ),
            asked: tried.len(),
        };
    }
    let reporter = Reporter {
        chain: Arc::clone(ctx.chain),
        verifier: Arc::clone(ctx.verifier),
        metrics: ctx.metrics.clone(),
        method: method.to_owned(),
        params: params.to_owned(),
        field,
        block,
    };
    let mut answers: Vec<Answer> = Vec::new();
    let mut canon: Vec<(String, Vec<u8>)> = Vec::new();
    let mut failed_names: Vec<String> = Vec::new();
    let mut last = None;
    while let Ok(Some((up, result))) =
        tokio::time::timeout_at(ctx.deadline.into(), calls.next()).await
    {
        let Some((b, c)) = result
            .ok()
            .and_then(|b| canonical_answer(method, field, &b).map(|c| (b, c)))
        else {
            failed_names.push(up.name().to_owned());
            if let Some(next) = ctx.chain.select(need, &tried) {
                tried.push(next.index());
                launch(next, &mut calls);
            }
            continue;
        };
        canon.push((up.name().to_owned(), c));
        answers.push(Answer {
            upstream: up,
            body: b,
        });
        match keel_verify::quorum(&canon, n) {
            keel_verify::Outcome::Agreed {
                index,
                agreeing,
                minority,
            } => {
                let asked = tried.len();
                if !minority.is_empty() {
                    reporter.report(&answers, &agreeing, &minority).await;
                }
                for a in &answers {
                    if agreeing.iter().any(|n| n == a.upstream.name()) {
                        ctx.verifier.clear(ctx.chain, &a.upstream);
                    }
                }
                if !calls.is_empty()
                    && let Ok(permit) = Arc::clone(&ctx.verifier.stragglers).try_acquire_owned()
                {
                    let agreed = Answer {
                        upstream: Arc::clone(&answers[index].upstream),
                        body: answers[index].body.clone(),
                    };
                    let agreed_canon = canon[index].1.clone();
                    let deadline = ctx.deadline;
                    let method = method.to_owned();
                    tokio::spawn(async move {
                        let _permit = permit;
                        while let Ok(Some((up, result))) =
                            tokio::time::timeout_at(deadline.into(), calls.next()).await
                        {
                            let Some((b, c)) = result
                                .ok()
                                .and_then(|b| canonical_answer(&method, field, &b).map(|c| (b, c)))
                            else {
                                continue;
                            };
                            if c == agreed_canon {
                                reporter.verifier.clear(&reporter.chain, &up);
                                continue;
                            }
                            let names = vec![agreed.upstream.name().to_owned()];
                            let minority = vec![up.name().to_owned()];
                            let pair = [
                                Answer {
                                    upstream: Arc::clone(&agreed.upstream),
                                    body: agreed.body.clone(),
                                },
                                Answer {
                                    upstream: up,
                                    body: b,
                                },
                            ];
                            reporter.report(&pair, &names, &minority).await;
                        }
                    });
                }
                return FanOut::Agreed {
                    index,
                    agreeing: agreeing.len(),
                    asked,
                    answers,
                };
            }
            keel_verify::Outcome::NoAgreement { description, .. } => last = Some(description),
        }
    }
    let asked = tried.len();
    let message = match (last, Instant::now() >= ctx.deadline) {
        (_, true) => format!(
            "verification of {method} did not complete before the request deadline ({} of {asked} upstreams answered)",
            answers.len()
        ),
        (Some(d), false) => format!("verification failed: {d}"),
        (None, false) => format!(
            "verification failed: every upstream asked failed ({})",
            failed_names.join(", ")
        ),
    };
    FanOut::Failed {
        code: code::VERIFICATION_FAILED,
        message,
        asked,
    }
}

impl Reporter {
    /// Evidence and penalties for upstreams that disagreed with a quorum.
    async fn report(&self, answers: &[Answer], agreeing: &[String], minority: &[String]) {
        let reason = format!(
            "[{}] disagreed with the quorum [{}]",
            minority.join(", "),
            agreeing.join(", ")
        );
        let mut rec = EvidenceRecord::new(
            self.chain.name(),
            self.method.clone(),
            self.params.clone(),
            Mode::Quorum,
            reason,
        );
        rec.chain_id = Some(self.chain.chain_id());
        rec.block = self.block;
        rec.field = self.field.map(str::to_owned);
        rec.answers = answers.iter().map(upstream_answer).collect();
        rec.majority = agreeing.to_vec();
        rec.minority = minority.to_vec();
        for a in answers {
            if minority.iter().any(|n| n == a.upstream.name()) {
                self.verifier
                    .penalise(&self.chain, &a.upstream, &self.metrics);
            }
        }
        self.verifier.record(rec).await;
    }
}

fn upstream_answer(a: &Answer) -> UpstreamAnswer {
    let (result, error) = match serde_json::from_slice::<Reply<'_>>(&a.body) {
        Ok(r) => (
            r.result.map(RawValue::to_owned),
            r.error.map(RawValue::to_owned),
        ),
        Err(_) => (None, None),
    };
    UpstreamAnswer {
        upstream: a.upstream.name().to_owned(),
        result,
        error,
        digest: None,
    }
}

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
    }
}

/// Quorum mode; returns what was served and the upstream calls beyond the first.
async fn quorum_read(ctx: &Ctx<'_>, req: &Request<'_>, out: &mut Vec<u8>) -> (Served, u64) {
    let block = pin_target(ctx.chain);
    let pinned = match pin(req, block) {
        Ok(p) => p,
        Err(e) => return (failed(req, code::INVALID_PARAMS, &e, out), 0),
    };
    let empty;
    let (params, pinned_block, need) = match &pinned {
        Some(p) => (&**p, Some(block), Need::Block(block)),
        None => {
            empty = RawValue::from_string("[]".to_owned()).ok();
            let p = match (req.params, empty.as_deref()) {
                (Some(p), _) => p,
                (None, Some(e)) => e,
                (None, None) => return (failed(req, code::INTERNAL, "internal error", out), 0),
            };
            (p, None, Need::Head)
        }
    };
    match fan_out(ctx, &req.method, params, None, pinned_block, need).await {
        FanOut::Agreed {
            index,
            agreeing,
            asked,
            answers,
        } => {
            let a = &answers[index];
            let outcome = match serde_json::from_slice::<Reply<'_>>(&a.body) {
                Ok(reply) => crate::forward::write_reply(req, &reply, out),
                Err(_) => Outcome::Failed,
            };
            (
                Served {
                    outcome,
                    upstream: Some(Arc::clone(&a.upstream)),
                    retries: 0,
                    verified: Some(format!("quorum:{agreeing}/{asked}")),
                },
                asked.saturating_sub(1) as u64,
            )
        }
        FanOut::Failed {
            code,
            message,
            asked,
        } => (
            failed(req, code, &message, out),
            asked.saturating_sub(1) as u64,
        ),
    }
}

/// What a provable request asks for.
struct Query {
    address: String,
    slots: Vec<String>,
}

fn query(req: &Request<'_>) -> Result<Query, String> {
    let bad = || format!("{}: the first param must be an address", req.method);
    let list: Vec<&RawValue> = req
        .params
        .map(|p| serde_json::from_str(p.get()))
        .transpose()
        .map_err(|_| bad())?
        .unwrap_or_default();
    let address: String = list
        .first()
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .ok_or_else(bad)?;
    let slots = match req.method.as_str() {
        "eth_getStorageAt" => {
            let s: String = list
                .get(1)
                .and_then(|a| serde_json::from_str(a.get()).ok())
                .ok_or_else(|| "eth_getStorageAt: the second param must be a slot".to_owned())?;
            vec![s]
        }
        "eth_getProof" => list
            .get(1)
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .ok_or_else(|| "eth_getProof: the second param must be a list of slots".to_owned())?,
        _ => Vec::new(),
    };
    Ok(Query { address, slots })
}

/// Proof mode; returns what was served and the upstream calls beyond the first.
async fn proof_read(ctx: &Ctx<'_>, req: &Request<'_>, out: &mut Vec<u8>) -> (Served, u64) {
    let invalid = |m: String, out: &mut Vec<u8>| (failed(req, code::INVALID_PARAMS, &m, out), 0);
    let q = match query(req) {
        Ok(q) => q,
        Err(e) => return invalid(e, out),
    };
    let address = match keel_verify::proof::parse_address(&q.address) {
        Ok(a) => a,
        Err(e) => return invalid(e.to_string(), out),
    };
    let keys: Vec<[u8; 32]> = match q
        .slots
        .iter()
        .map(|s| keel_verify::proof::parse_word(s, "slot"))
        .collect()
    {
        Ok(k) => k,
        Err(e) => return invalid(e.to_string(), out),
    };
    // The block: the client's explicit number, else `latest` pinned.
    let target = pin_target(ctx.chain);
    let block = match pin(req, target) {
        Ok(Some(_)) => target,
        Ok(None) => match explicit_block(req) {
            Some(b) => b,
            None => {
                // `earliest`, `pending`, a hash: not provable here; use quorum.
                let (served, extra) = quorum_read(ctx, req, out).await;
                return (served, extra);
            }
        },
        Err(e) => return invalid(e, out),
    };
    let block_hex = format!("{block:#x}");
    let mut extra: u64 = 0;
    // 1. The state root from a quorum of headers.
    let header_params = match RawValue::from_string(format!("[\"{block_hex}\",false]")) {
        Ok(p) => p,
        Err(_) => return (failed(req, code::INTERNAL, "internal error", out), 0),
    };
    let root = match fan_out(
        ctx,
        "eth_getBlockByNumber",
        &header_params,
        Some("stateRoot"),
        Some(block),
        Need::Block(block),
    )
    .await
    {
        FanOut::Agreed {
            index,
            asked,
            answers,
            ..
        } => {
            extra += asked as u64;
            match state_root(&answers[index].body) {
                Some(r) => r,
                None => {
                    return (
                        failed(
                            req,
                            code::VERIFICATION_FAILED,
                            &format!("verification failed: no state root for block {block_hex}"),
                            out,
                        ),
                        extra,
                    );
                }
            }
        }
        FanOut::Failed {
            code,
            message,
            asked,
        } => {
            return (
                failed(req, code, &format!("state root: {message}"), out),
                asked as u64,
            );
        }
    };
    // 2. eth_getProof from one upstream at a time until one verifies.
    let slots = keys
        .iter()
        .map(|k| format!("\"0x{}\"", hex::encode(k)))
        .collect::<Vec<_>>()
        .join(",");
    let proof_params = match RawValue::from_string(format!(
        "[\"{}\",[{slots}],\"{block_hex}\"]",
        q.address.replace('"', "")
    )) {
        Ok(p) => p,
        Err(e) => return invalid(e.to_string(), out),
    };
    let proof_body = body_for("eth_getProof", &proof_params);
    let mut tried: Vec<usize> = Vec::new();
    let mut last = String::from("no upstream could serve eth_getProof");
    while Instant::now() < ctx.deadline {
        let Some(up) = ctx.chain.select(Need::Block(block), &tried) else {
            break;
        };
        tried.push(up.index());
        extra += 1;
        let resp = match up.call(proof_body.clone(), ctx.deadline).await {
            Ok(r) => r,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let Ok(reply) = serde_json::from_slice::<Reply<'_>>(&resp) else {
            last = format!("{}: not a JSON-RPC answer", up.name());
            continue;
        };
        let Some(result) = reply.result.filter(|_| reply.error.is_none()) else {
            last = format!(
                "{}: eth_getProof failed: {}",
                up.name(),
                reply.error.map_or("no result", RawValue::get)
            );
            continue;
        };
        let checked = keel_verify::verify_account_proof(&root, &address, &keys, result);
        let account = match checked {
            Ok(a) => a,
            Err(e) => {
                last = format!("{}: {e}", up.name());
                if e.is_upstream_fault() {
                    proof_evidence(
                        ctx,
                        "eth_getProof",
                        &proof_params,
                        block,
                        &root,
                        &up,
                        result,
                        &e.to_string(),
                    )
                    .await;
                }
                continue;
            }
        };
        let value = match req.method.as_str() {
            // Every value the answer claims was checked: serve it as it came.
            "eth_getProof" => {
                ctx.verifier.clear(ctx.chain, &up);
                jsonrpc::write_answer(out, req.id, "result", result);
                return (
                    Served {
                        outcome: Outcome::Ok,
                        upstream: Some(Arc::clone(&up)),
                        retries: tried.len().saturating_sub(1) as u32,
                        verified: Some(format!("proof:{block_hex}")),
                    },
                    extra.saturating_sub(1),
                );
            }
            "eth_getBalance" => account.balance_quantity(),
            "eth_getTransactionCount" => account.nonce_quantity(),
            "eth_getStorageAt" => match account.storage.first() {
                Some(s) => s.value_data(),
                None => {
                    last = format!("{}: the proof holds no storage slot", up.name());
                    continue;
                }
            },
            _ => {
                // eth_getCode: fetch the code and check its hash.
                let code_params = match RawValue::from_string(format!(
                    "[\"{}\",\"{block_hex}\"]",
                    q.address.replace('"', "")
                )) {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                extra += 1;
                match fetch_code(&up, &code_params, ctx.deadline).await {
                    Some((raw, bytes)) => {
                        match keel_verify::verify_code(&account.code_hash, &bytes) {
                            Ok(()) => raw,
                            Err(e) => {
                                last = format!("{}: {e}", up.name());
                                if let Ok(r) = RawValue::from_string(format!("\"{raw}\"")) {
                                    let reason = e.to_string();
                                    proof_evidence(
                                        ctx,
                                        "eth_getCode",
                                        &code_params,
                                        block,
                                        &root,
                                        &up,
                                        &r,
                                        &reason,
                                    )
                                    .await;
                                }
                                continue;
                            }
                        }
                    }
                    None => {
                        last = format!("{}: eth_getCode failed", up.name());
                        continue;
                    }
                }
            }
        };
        ctx.verifier.clear(ctx.chain, &up);
        let Ok(raw) = RawValue::from_string(format!("\"{value}\"")) else {
            continue;
        };
        jsonrpc::write_answer(out, req.id, "result", &raw);
        return (
            Served {
                outcome: Outcome::Ok,
                upstream: Some(up),
                retries: tried.len().saturating_sub(1) as u32,
                verified: Some(format!("proof:{block_hex}")),
            },
            extra.saturating_sub(1),
        );
    }
    (
        failed(
            req,
            code::VERIFICATION_FAILED,
            &format!("verification failed: no upstream served a valid proof; last: {last}"),
            out,
        ),
        extra.saturating_sub(1),
    )
}

/// The block number of an explicit (hex number) block param of a provable method.
fn explicit_block(req: &Request<'_>) -> Option<u64> {
    let idx = keel_verify::pin::block_param_index(&req.method)?;
    let list: Vec<&RawValue> = serde_json::from_str(req.params?.get()).ok()?;
    let s: String = serde_json::from_str(list.get(idx)?.get()).ok()?;
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

fn state_root(body: &[u8]) -> Option<[u8; 32]> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Header {
        state_root: String,
    }
    #[derive(serde::Deserialize)]
    struct R {
        result: Option<Header>,
    }
    let r: R = serde_json::from_slice(body).ok()?;
    keel_verify::proof::parse_hash(&r.result?.state_root).ok()
}

/// `eth_getCode` from `up`: the result string and its bytes.
async fn fetch_code(
    up: &Upstream,
    params: &RawValue,
    deadline: Instant,
) -> Option<(String, Vec<u8>)> {
    let resp = up
        .call(body_for("eth_getCode", params), deadline)
        .await
        .ok()?;
    #[derive(serde::Deserialize)]
    struct R {
        result: Option<String>,
    }
    let s = serde_json::from_slice::<R>(&resp).ok()?.result?;
    let bytes = hex::decode(s.strip_prefix("0x")?).ok()?;
    Some((s.to_ascii_lowercase(), bytes))
}

#[allow(clippy::too_many_arguments)]
async fn proof_evidence(
    ctx: &Ctx<'_>,
    method: &str,
    params: &RawValue,
    block: u64,
    root: &[u8; 32],
    up: &Arc<Upstream>,
    result: &RawValue,
    reason: &str,
) {
    let mut rec = EvidenceRecord::new(
        ctx.chain.name(),
        method,
        params.to_owned(),
        Mode::Proof,
        reason,
    );
    rec.chain_id = Some(ctx.chain.chain_id());
    rec.block = Some(block);
    rec.state_root = Some(format!("0x{}", hex::encode(root)));
    rec.answers = vec![UpstreamAnswer {
        upstream: up.name().to_owned(),
        result: Some(result.to_owned()),
        error: None,
        digest: None,
    }];
    rec.minority = vec![up.name().to_owned()];
    ctx.verifier.penalise(ctx.chain, up, ctx.metrics);
    ctx.verifier.record(rec).await;
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
    }
}
