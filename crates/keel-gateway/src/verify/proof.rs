//! Proof mode: account-state reads answered only with values proven by `eth_getProof` against
//! a trusted state root.

use std::{sync::Arc, time::Instant};

use keel_chain::{Need, Upstream};
use keel_verify::evidence::{EvidenceRecord, Mode, UpstreamAnswer};
use serde_json::value::RawValue;

use super::{
    body_for, failed, pin, pins,
    quorum::{self, FanOut, Question},
};
use crate::{
    Ctx,
    forward::{self, Outcome, Served},
    jsonrpc::{self, Reply, Request, code},
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

/// Proof mode; returns what was served and the upstream calls beyond the first.
pub(super) async fn read(ctx: &Ctx<'_>, req: &Request<'_>, out: &mut Vec<u8>) -> (Served, u64) {
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
    // The block: the client's explicit number, else the tag pinned.
    let block = match pin(req, &pins(ctx.chain)) {
        Ok(Some(p)) => p.block,
        Ok(None) => match explicit_block(req) {
            Some(b) => b,
            // `earliest`, `pending`, a hash, or a tag no upstream reports: not provable here.
            None => return quorum::read(ctx, req, out).await,
        },
        Err(e) => return invalid(e, out),
    };
    let block_hex = format!("{block:#x}");
    // 1. The trusted state root.
    let mut root = match trusted_root(ctx, block).await {
        Ok(r) => r,
        Err(e) => return (failed(req, e.code, &e.message, out), e.calls),
    };
    let mut extra = root.calls;
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
            if let Some(err) = reply.error {
                forward::lacks_it(ctx.chain, &up, Need::Block(block), err);
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
            root = match fresh_root(ctx, block).await {
                Ok(r) => r,
                Err(e) => return (failed(req, e.code, &e.message, out), extra + e.calls),
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
                ctx.verifier.clear(ctx.chain, &up);
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
                fallback: None,
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

/// Why no trusted state root could be had.
struct RootError {
    code: i64,
    message: String,
    /// Upstream calls made trying.
    calls: u64,
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
}

/// The trusted state root of `block`: a configured checkpoint, one agreed recently (see
/// `Verifier::cached_root`), one the head tracker saw reported (see [`observed_root`]), or a
/// fresh one; the last two are then remembered.
async fn trusted_root(ctx: &Ctx<'_>, block: u64) -> Result<Root, RootError> {
    let cfg = &ctx.chain.config().verify;
    // A root had without an upstream call.
    let known = |root, cached, source| {
        count_root(ctx, source);
        Root {
            root,
            calls: 0,
            cached,
        }
    };
    if let Some(cp) = cfg.checkpoints.iter().find(|c| c.block == block) {
        return keel_verify::proof::parse_hash(&cp.state_root)
            .map(|r| known(r, false, "checkpoint"))
            .map_err(|e| RootError {
                code: code::INTERNAL,
                message: format!("checkpoint {block}: {e}"),
                calls: 0,
            });
    }
    if let Some(root) = ctx.verifier.cached_root(ctx.chain, block) {
        return Ok(known(root, true, "remembered"));
    }
    if let Some(root) = observed_root(ctx, block) {
        ctx.verifier.cache_root(ctx.chain, block, root);
        return Ok(known(root, true, "observed"));
    }
    fresh_root(ctx, block).await
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

/// A state root fetched now ([`fetch_root`]), then remembered.
async fn fresh_root(ctx: &Ctx<'_>, block: u64) -> Result<Root, RootError> {
    let (root, calls) = fetch_root(ctx, block).await?;
    ctx.verifier.cache_root(ctx.chain, block, root);
    count_root(ctx, "fetched");
    Ok(Root {
        root,
        calls,
        cached: false,
    })
}

/// The state root of `block` and the upstream calls made to get it: from the configured
/// `header_source` upstream (one call), or the `stateRoot` a quorum of upstreams agree on.
async fn fetch_root(ctx: &Ctx<'_>, block: u64) -> Result<([u8; 32], u64), RootError> {
    let cfg = &ctx.chain.config().verify;
    let block_hex = format!("{block:#x}");
    let fail = |code: i64, message: String, calls: u64| RootError {
        code,
        message,
        calls,
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
        return state_root(&body).map(|r| (r, 1)).ok_or_else(|| {
            fail(
                code::VERIFICATION_FAILED,
                format!("verification failed: the header source {name} gave no state root for block {block_hex}"),
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
    };
    match quorum::fan_out(ctx, &question).await {
        FanOut::Agreed {
            index,
            asked,
            answers,
            ..
        } => state_root(&answers[index].body)
            .map(|r| (r, asked as u64))
            .ok_or_else(|| {
                fail(
                    code::VERIFICATION_FAILED,
                    format!("verification failed: no state root for block {block_hex}"),
                    asked as u64,
                )
            }),
        FanOut::Failed {
            code,
            message,
            asked,
            ..
        } => Err(fail(code, format!("state root: {message}"), asked as u64)),
    }
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
