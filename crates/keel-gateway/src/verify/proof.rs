//! Proof mode: account-state reads answered only with values proven by `eth_getProof` against
//! a trusted state root.

use std::{sync::Arc, time::Instant};

use keel_chain::{Need, Upstream};
use keel_config::VerifyMode;
use keel_verify::{
    evidence::{EvidenceRecord, Mode, UpstreamAnswer},
    pin::Pin,
};
use serde_json::value::RawValue;

use super::{
    Check, KnownRoot, body_for, failed, malformed, pin, pins,
    quorum::{self, FanOut, Question},
    unverifiable,
};
use crate::{
    Ctx,
    forward::{self, Outcome, Served},
    jsonrpc::{self, Request, code},
    metrics::RootLabels,
};

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

/// Proof mode; returns what was served, the upstream calls beyond the first, and the mode that
/// answered (quorum when no proof can be had, see [`no_proof_here`]).
pub(super) async fn read(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    check: Check,
    out: &mut Vec<u8>,
) -> (Served, u64, VerifyMode) {
    let invalid = |m: String, out: &mut Vec<u8>| {
        (
            failed(req, code::INVALID_PARAMS, &m, out),
            0,
            VerifyMode::Proof,
        )
    };
    let by_quorum = async |out: &mut Vec<u8>, extra: u64| {
        let (served, more) = quorum::read(ctx, req, check, out).await;
        (served, extra + more, VerifyMode::Quorum)
    };
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
    // The block: the client's explicit number, else the tag pinned.
    let block = match pin(req, &pins(ctx.chain)) {
        Ok(Pin::Pinned(p)) => p.block,
        Ok(Pin::Fixed { block: Some(b) }) => b,
        Ok(Pin::Moving { block }) => {
            let (served, extra) = unverifiable(ctx, req, check, &block, out).await;
            return (served, extra, VerifyMode::Proof);
        }
        // A block hash: not provable here.
        Ok(Pin::Fixed { block: None } | Pin::NoBlock) => return by_quorum(out, 0).await,
        Err(e) => return invalid(e, out),
    };
    let block_hex = format!("{block:#x}");
    // 1. The trusted state root.
    let mut root = match trusted_root(ctx, block, check).await {
        Ok(r) => r,
        Err(e) if e.split => {
            // The upstreams answered for this block but do not share its header.
            no_proof_here(ctx, block, "the upstreams disagree on its state root");
            return by_quorum(out, e.calls).await;
        }
        Err(e) => {
            return (
                failed(req, e.code, &e.message, out),
                e.calls,
                VerifyMode::Proof,
            );
        }
    };
    let mut extra = root.calls;
    if keel_verify::proof::commits_to_no_state(&root.root) {
        no_proof_here(ctx, block, "its header commits to no state");
        return by_quorum(out, extra).await;
    }
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
    // Upstreams that said they do not serve eth_getProof at all.
    let mut unsupported = 0;
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
        let reply = match keel_verify::json::reply(&resp) {
            Ok(r) => r,
            Err(e) => {
                malformed(&up, check, &e);
                last = format!("{}: {e}", up.name());
                continue;
            }
        };
        let Some(result) = reply.result.filter(|_| reply.error.is_none()) else {
            if let Some(err) = reply.error {
                forward::lacks_it(ctx.chain, &up, Need::Block(block), err);
                unsupported += usize::from(method_unsupported(err));
            }
            last = format!(
                "{}: eth_getProof failed: {}",
                up.name(),
                reply.error.map_or("no result", RawValue::get)
            );
            continue;
        };
        up.note_kept_history(block);
        let mut checked = keel_verify::verify_account_proof(&root.root, &address, &keys, result);
        if checked
            .as_ref()
            .is_err_and(keel_verify::VerifyError::is_upstream_fault)
            && root.cached
        {
            // A remembered or observed root may predate a reorg: check against a freshly
            // fetched one before blaming.
            ctx.verifier.forget_root(ctx.chain, block);
            root = match fresh_root(ctx, block, check).await {
                Ok(r) => r,
                Err(e) => {
                    return (
                        failed(req, e.code, &e.message, out),
                        extra + e.calls,
                        VerifyMode::Proof,
                    );
                }
            };
            extra += root.calls;
            checked = keel_verify::verify_account_proof(&root.root, &address, &keys, result);
        }
        let account = match checked {
            Ok(a) => a,
            Err(e) => {
                last = format!("{}: {e}", up.name());
                if e.is_upstream_fault() {
                    proof_evidence(
                        ctx,
                        check,
                        "eth_getProof",
                        &proof_params,
                        block,
                        &root.root,
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
                ctx.verifier.clear(ctx.chain, &up, check);
                jsonrpc::write_answer(out, req.id, "result", result);
                return (
                    Served {
                        outcome: Outcome::Ok,
                        upstream: Some(Arc::clone(&up)),
                        retries: tried.len().saturating_sub(1) as u32,
                        verified: Some(format!("proof:{block_hex}")),
                        fallback: None,
                    },
                    extra.saturating_sub(1),
                    VerifyMode::Proof,
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
                    Ok((raw, bytes)) => {
                        match keel_verify::verify_code(&account.code_hash, &bytes) {
                            Ok(()) => raw,
                            Err(e) => {
                                last = format!("{}: {e}", up.name());
                                if let Ok(r) = RawValue::from_string(format!("\"{raw}\"")) {
                                    let reason = e.to_string();
                                    proof_evidence(
                                        ctx,
                                        check,
                                        "eth_getCode",
                                        &code_params,
                                        block,
                                        &root.root,
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
                    Err(why) => {
                        if let CodeError::Malformed(e) = &why {
                            malformed(&up, check, e);
                        }
                        last = format!("{}: eth_getCode failed: {why}", up.name());
                        continue;
                    }
                }
            }
        };
        ctx.verifier.clear(ctx.chain, &up, check);
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
                fallback: None,
            },
            extra.saturating_sub(1),
            VerifyMode::Proof,
        );
    }
    if unsupported > 0 && unsupported == tried.len() && !root.trusted_source {
        // No upstream serves proofs at all (a dev node such as Hardhat): there is nothing to
        // check against the root the same upstreams agreed on.
        no_proof_here(ctx, block, "no upstream serves eth_getProof");
        return by_quorum(out, extra.saturating_sub(1)).await;
    }
    (
        failed(
            req,
            code::VERIFICATION_FAILED,
            &format!("verification failed: no upstream served a valid proof; last: {last}"),
            out,
        ),
        extra.saturating_sub(1),
        VerifyMode::Proof,
    )
}

/// Logs (at debug: on dev nodes it is every read) that a proof-mode read of `block` is
/// checked by quorum instead, and why.
fn no_proof_here(ctx: &Ctx<'_>, block: u64, why: &str) {
    tracing::debug!(
        chain = ctx.chain.name(),
        block,
        why,
        "no proof can be had for this block: the value is checked by quorum"
    );
}

/// Whether a JSON-RPC error says the method does not exist on that node (-32601, or the
/// wordings of Hardhat "Method eth_getProof is not supported", geth "the method ... does not
/// exist/is not available", and "not implemented").
fn method_unsupported(err: &RawValue) -> bool {
    let Ok(e) = serde_json::from_str::<crate::jsonrpc::ErrorObject>(err.get()) else {
        return false;
    };
    let m = e.message.to_ascii_lowercase();
    e.code == -32601
        || [
            "not supported",
            "unsupported",
            "does not exist",
            "not implemented",
            "method not found",
        ]
        .iter()
        .any(|w| m.contains(w))
}

/// Why no trusted state root could be had.
struct RootError {
    code: i64,
    message: String,
    /// Upstream calls made trying.
    calls: u64,
    /// The upstreams answered for the block but no quorum agreed on its root (no header
    /// source is configured): they do not share the block.
    split: bool,
}

/// A trusted state root.
struct Root {
    root: [u8; 32],
    /// Upstream calls made to get it.
    calls: u64,
    /// It was had without asking for it now (remembered from an earlier request, or observed
    /// by the head tracker): it may predate a reorg, so a proof failing it is re-checked
    /// against a fresh one before anyone is blamed.
    cached: bool,
    /// It came from a source trusted more than the upstreams that serve proofs (a checkpoint
    /// or the header source), not from a quorum of them.
    trusted_source: bool,
}

/// The trusted state root of `block`: a configured checkpoint, one agreed recently (see
/// `Verifier::cached_root`), one the head tracker saw reported (see [`observed_root`]), or a
/// fresh one; the last two are then remembered.
async fn trusted_root(ctx: &Ctx<'_>, block: u64, check: Check) -> Result<Root, RootError> {
    let cfg = &ctx.chain.config().verify;
    // A root had without an upstream call.
    let known = |root, cached, source| {
        count_root(ctx, source);
        Root {
            root,
            calls: 0,
            cached,
            trusted_source: source == "checkpoint" || cfg.header_source.is_some(),
        }
    };
    if let Some(cp) = cfg.checkpoints.iter().find(|c| c.block == block) {
        return keel_verify::proof::parse_hash(&cp.state_root)
            .map(|r| known(r, false, "checkpoint"))
            .map_err(|e| RootError {
                code: code::INTERNAL,
                message: format!("checkpoint {block}: {e}"),
                calls: 0,
                split: false,
            });
    }
    match ctx.verifier.cached_root(ctx.chain, block) {
        Some(KnownRoot::Root(root)) => return Ok(known(root, true, "remembered")),
        Some(KnownRoot::Split) => {
            return Err(RootError {
                code: code::VERIFICATION_FAILED,
                message: format!("state root: the upstreams disagree on block {block:#x}"),
                calls: 0,
                split: true,
            });
        }
        None => {}
    }
    if let Some(root) = observed_root(ctx, block) {
        ctx.verifier
            .cache_root(ctx.chain, block, KnownRoot::Root(root));
        return Ok(known(root, true, "observed"));
    }
    fresh_root(ctx, block, check).await
}

/// Counts a root taken from `source` (see [`RootLabels`]).
fn count_root(ctx: &Ctx<'_>, source: &'static str) {
    ctx.metrics
        .verify_roots
        .get_or_create(&RootLabels {
            chain: ctx.chain.name().to_owned(),
            source,
        })
        .inc();
}

/// The state root of `block` as the head tracker saw it, within one `head_poll_interval`:
/// the same header [`fetch_root`] would ask the same upstreams for, only seen earlier. With a
/// `header_source`, that upstream's report alone; else one a quorum of distinct usable
/// upstreams reported with the same block hash.
fn observed_root(ctx: &Ctx<'_>, block: u64) -> Option<[u8; 32]> {
    let chain = ctx.chain;
    let cfg = &chain.config().verify;
    let max_age = chain.config().head_poll_interval;
    match &cfg.header_source {
        Some(name) => {
            let source = chain.upstreams().iter().find(|u| u.name() == name)?;
            chain.observed_state_root_from(source.index(), block, max_age)
        }
        None => chain.observed_state_root(block, cfg.quorum, max_age),
    }
}

/// A state root fetched now ([`fetch_root`]), then remembered; a split (no quorum of upstreams
/// agreeing on it) is remembered too, as long as a root would be, so that reads of a block the
/// upstreams do not share do not ask for its header (and record the split) every time.
async fn fresh_root(ctx: &Ctx<'_>, block: u64, check: Check) -> Result<Root, RootError> {
    let (root, calls) = match fetch_root(ctx, block, check).await {
        Ok(r) => r,
        Err(e) => {
            if e.split {
                ctx.verifier.cache_root(ctx.chain, block, KnownRoot::Split);
            }
            return Err(e);
        }
    };
    ctx.verifier
        .cache_root(ctx.chain, block, KnownRoot::Root(root));
    count_root(ctx, "fetched");
    Ok(Root {
        root,
        calls,
        cached: false,
        trusted_source: ctx.chain.config().verify.header_source.is_some(),
    })
}

/// The state root of `block` and the upstream calls made to get it: from the configured
/// `header_source` upstream (one call), or the `stateRoot` a quorum of upstreams agree on.
async fn fetch_root(ctx: &Ctx<'_>, block: u64, check: Check) -> Result<([u8; 32], u64), RootError> {
    let cfg = &ctx.chain.config().verify;
    let block_hex = format!("{block:#x}");
    let fail = |code: i64, message: String, calls: u64| RootError {
        code,
        message,
        calls,
        split: false,
    };
    let header_params = RawValue::from_string(format!("[\"{block_hex}\",false]"))
        .map_err(|_| fail(code::INTERNAL, "internal error".to_owned(), 0))?;
    if let Some(name) = &cfg.header_source {
        let source = ctx.chain.upstreams().iter().find(|u| u.name() == name);
        let Some(up) = source.filter(|u| u.head() >= block) else {
            return Err(fail(
                code::NO_HEALTHY_UPSTREAM,
                format!("state root: the header source {name} does not have block {block_hex} yet"),
                0,
            ));
        };
        let body = up
            .call(
                body_for("eth_getBlockByNumber", &header_params),
                ctx.deadline,
            )
            .await
            .map_err(|e| fail(code::NO_HEALTHY_UPSTREAM, format!("state root: {e}"), 1))?;
        return state_root(&body).map(|r| (r, 1)).map_err(|why| {
            if let HeaderError::Malformed(e) = &why {
                malformed(up, check, e);
            }
            fail(
                code::VERIFICATION_FAILED,
                format!("verification failed: the header source {name} gave no state root for block {block_hex}: {why}"),
                1,
            )
        });
    }
    let question = Question {
        method: "eth_getBlockByNumber",
        params: &header_params,
        field: Some("stateRoot"),
        block: Some(block),
        need: Need::Block(block),
        may_fall_back: false,
        check,
    };
    match quorum::fan_out(ctx, &question).await {
        FanOut::Agreed {
            index,
            asked,
            answers,
            ..
        } => state_root(&answers[index].body)
            .map(|r| (r, asked as u64))
            .map_err(|why| {
                fail(
                    code::VERIFICATION_FAILED,
                    format!("verification failed: no state root for block {block_hex}: {why}"),
                    asked as u64,
                )
            }),
        FanOut::Failed {
            code,
            message,
            asked,
            split,
            ..
        } => Err(RootError {
            split,
            ..fail(code, format!("state root: {message}"), asked as u64)
        }),
    }
}

/// Why a header gave no state root.
#[derive(Debug, thiserror::Error)]
enum HeaderError {
    /// Not a reply, or one with repeated keys.
    #[error("{0}")]
    Malformed(keel_verify::VerifyError),
    /// No block, or a block without a valid `stateRoot`.
    #[error("the answer holds no stateRoot")]
    Missing,
}

fn state_root(body: &[u8]) -> Result<[u8; 32], HeaderError> {
    let reply = keel_verify::json::reply(body).map_err(HeaderError::Malformed)?;
    let header = keel_verify::json::parse(reply.result.map_or("null", RawValue::get), "result")
        .map_err(HeaderError::Malformed)?;
    match header.get("stateRoot") {
        Some(keel_verify::json::Node::String(r)) => {
            keel_verify::proof::parse_hash(r).map_err(|_| HeaderError::Missing)
        }
        _ => Err(HeaderError::Missing),
    }
}

/// Why `eth_getCode` gave no code.
#[derive(Debug, thiserror::Error)]
enum CodeError {
    /// The call failed.
    #[error("{0}")]
    Call(keel_chain::CallError),
    /// Not a reply, or one with repeated keys.
    #[error("{0}")]
    Malformed(keel_verify::VerifyError),
    /// An error, or a result that is not hex.
    #[error("no code in the answer")]
    Missing,
}

/// `eth_getCode` from `up`: the result string and its bytes.
async fn fetch_code(
    up: &Upstream,
    params: &RawValue,
    deadline: Instant,
) -> Result<(String, Vec<u8>), CodeError> {
    let resp = up
        .call(body_for("eth_getCode", params), deadline)
        .await
        .map_err(CodeError::Call)?;
    let reply = keel_verify::json::reply(&resp).map_err(CodeError::Malformed)?;
    let s: String = reply
        .result
        .filter(|_| reply.error.is_none())
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .ok_or(CodeError::Missing)?;
    let bytes = s
        .strip_prefix("0x")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(CodeError::Missing)?;
    Ok((s.to_ascii_lowercase(), bytes))
}

#[allow(clippy::too_many_arguments)]
async fn proof_evidence(
    ctx: &Ctx<'_>,
    check: Check,
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
    ctx.verifier.penalise(ctx.chain, up, ctx.metrics, check);
    if check.accountable() {
        ctx.verifier.record(rec).await;
    }
}
