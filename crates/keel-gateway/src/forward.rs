//! Serving one request: reads with retries and failover, writes broadcast to every upstream.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use keel_chain::{CallError, Chain, Need, Upstream};
use serde_json::value::RawValue;
use sha3::{Digest, Keccak256};

use keel_config::VerifyMode;

use crate::{
    filters,
    jsonrpc::{self, ErrorObject, Reply, Request, code},
    policy::{self, Route},
    verify,
};

/// How one request ended, for metrics and response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A result was returned.
    Ok,
    /// An upstream's JSON-RPC error was returned (a deterministic answer).
    RpcError,
    /// The request was malformed or refused by policy.
    Rejected,
    /// No upstream could take it.
    NoUpstream,
    /// The deadline passed.
    Deadline,
    /// Every upstream tried failed.
    Failed,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RpcError => "rpc_error",
            Self::Rejected => "rejected",
            Self::NoUpstream => "no_upstream",
            Self::Deadline => "deadline",
            Self::Failed => "failed",
        }
    }
}

/// What serving one request produced besides its answer bytes.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) outcome: Outcome,
    /// The upstream whose answer was returned.
    pub(crate) upstream: Option<Arc<Upstream>>,
    /// Upstream attempts beyond the first.
    pub(crate) retries: u32,
    /// How the answer was verified (`quorum:N/M`, `proof:<block>`); `None` when it was not.
    pub(crate) verified: Option<String>,
    /// The chain's no-agreement fallback that picked this unverified answer (`largest`,
    /// `first`).
    pub(crate) fallback: Option<&'static str>,
}

impl Served {
    /// Nothing served by an upstream: `outcome` only.
    pub(crate) fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            upstream: None,
            retries: 0,
            verified: None,
            fallback: None,
        }
    }
}

/// Serves `req` on `chain`, appending its answer to `out` (nothing for a notification, but the
/// call is still made).
pub(crate) async fn serve(
    ctx: &crate::Ctx<'_>,
    req: &Request<'_>,
    verify_header: Option<VerifyMode>,
    out: &mut Vec<u8>,
) -> Served {
    let (chain, deadline) = (ctx.chain, ctx.deadline);
    if let Err(message) = policy::check(chain, &req.method) {
        jsonrpc::write_error(out, req.id, code::METHOD_NOT_FOUND, &message);
        return Served::new(Outcome::Rejected);
    }
    let method = req.method.as_str();
    if filters::CREATE.contains(&method) || filters::USE.contains(&method) {
        // Stateful: never verified (a fan-out would create a filter on every upstream).
        let mut answer = Vec::new();
        let served = if filters::CREATE.contains(&method) {
            let body = Bytes::from(jsonrpc::upstream_body(req));
            filters::create(ctx, req, body, &mut answer).await
        } else {
            filters::call(ctx, req, &mut answer).await
        };
        if req.id.is_some() {
            out.extend_from_slice(&answer);
        }
        return served;
    }
    let choice = verify::choose(chain, &req.method, verify_header);
    let route = policy::route(chain, &req.method, req.params);
    if let Route::Read {
        need: Need::Block(n),
        ..
    } = route
        && !chain.has_block(n)
        && !choice.is_refused()
        && let Some(served) = beyond_heads(ctx, req, choice.mode, out).await
    {
        return served;
    }
    if choice.verifies()
        && let Route::Read { .. } = route
    {
        let mut answer = Vec::new();
        let served = verify::read(ctx, req, &choice, &mut answer).await;
        if req.id.is_some() {
            out.extend_from_slice(&answer);
        }
        return served;
    }
    let body = Bytes::from(jsonrpc::upstream_body(req));
    let mut answer = Vec::new();
    let served = match route {
        Route::Read {
            need,
            null_may_be_lag,
        } => {
            let plan = Plan {
                need,
                null_may_be_lag,
                beyond_heads: false,
            };
            read(chain, req, body, plan, deadline, &mut answer).await
        }
        Route::Broadcast { raw_tx } => {
            broadcast(chain, req, body, raw_tx, deadline, &mut answer).await
        }
    };
    if req.id.is_some() {
        out.extend_from_slice(&answer);
    }
    served
}

/// A read of a block that no usable upstream has reached (`eth_getBlockByNumber("0x7fffffff")`,
/// `eth_getBalance` at a future block, ...): the chain's answer is "not found", in each node's
/// own words — `null` for blocks, transactions and receipts, an error for state ("header not
/// found", anvil's `BlockOutOfRangeError`). So it is asked of the upstreams at the head (the one
/// furthest ahead last, when the others say "not there") and their answer is passed on, never
/// "no upstream has this block yet", which clients read as an outage.
///
/// There is nothing to verify such an answer against; with verification asked for, only a
/// "not there" answer (`null`, an error, or keel's own failure) is served this way, marked
/// unverified. A real result means the block appeared since the last head poll: `None` then,
/// and the read is verified as usual.
async fn beyond_heads(
    ctx: &crate::Ctx<'_>,
    req: &Request<'_>,
    mode: VerifyMode,
    out: &mut Vec<u8>,
) -> Option<Served> {
    let body = Bytes::from(jsonrpc::upstream_body(req));
    let plan = Plan {
        need: Need::Head,
        null_may_be_lag: true,
        beyond_heads: true,
    };
    let mut answer = Vec::new();
    let served = read(ctx.chain, req, body, plan, ctx.deadline, &mut answer).await;
    let found = served.outcome == Outcome::Ok
        && serde_json::from_slice::<Reply<'_>>(&answer)
            .ok()
            .and_then(|r| r.result)
            .is_some_and(|r| r.get() != "null");
    if mode != VerifyMode::None && found {
        return None;
    }
    if req.id.is_some() {
        out.extend_from_slice(&answer);
    }
    Some(served)
}

/// How a read looks for an upstream that has what it asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// What the upstream must have.
    pub(crate) need: Need,
    /// A `null` result may mean "not there yet": ask an upstream with a higher head.
    pub(crate) null_may_be_lag: bool,
    /// The block asked for is beyond every upstream's head: a "lacks it" error, like a `null`,
    /// is asked again only of an upstream further ahead (one no further ahead would say the
    /// same).
    pub(crate) beyond_heads: bool,
}

/// Whether the JSON-RPC error `err` that `up` answered a request needing `need` with means "I
/// lack it" ("header not found", "missing trie node", ...); if so, see [`note_lacking`].
pub(crate) fn lacks_it(chain: &Chain, up: &Upstream, need: Need, err: &RawValue) -> bool {
    let lacks = policy::lacking_message(err).is_some();
    if lacks {
        note_lacking(chain, up, need);
    }
    lacks
}

/// [`lacks_it`] for a whole JSON-RPC response body that is not a usable answer; returns the
/// error's message when it says the node lacks the data.
pub(crate) fn note_if_lacking(
    chain: &Chain,
    up: &Upstream,
    need: Need,
    body: &[u8],
) -> Option<String> {
    let reply = serde_json::from_slice::<Reply<'_>>(body).ok()?;
    let message = policy::lacking_message(reply.error?)?;
    note_lacking(chain, up, need);
    Some(message)
}

/// After `up` said it lacks what a request needing `need` asked for: when that was a block its
/// head is past, it has pruned that block and the ones before, and is asked for them last from
/// now on (see [`Chain::select`]).
fn note_lacking(chain: &Chain, up: &Upstream, need: Need) {
    if let Need::Block(n) = need
        && up.head() >= n
        && up.note_missing_history(n)
    {
        tracing::info!(
            chain = chain.name(),
            upstream = up.name(),
            block = n,
            "upstream lacks this block's state and older ones (pruned); other upstreams are asked for them first"
        );
    }
}

/// An answer held back while a better one may come from another upstream.
struct Held {
    body: Bytes,
    upstream: Arc<Upstream>,
}

/// A read: one upstream at a time, retried elsewhere on transport failures, timeouts and
/// "behind" answers, within `deadline`.
pub(crate) async fn read(
    chain: &Chain,
    req: &Request<'_>,
    body: Bytes,
    plan: Plan,
    deadline: Instant,
    out: &mut Vec<u8>,
) -> Served {
    let Plan {
        need,
        null_may_be_lag,
        beyond_heads,
    } = plan;
    let mut tried: Vec<usize> = Vec::new();
    let mut held: Option<Held> = None;
    let mut last_error: Option<CallError> = None;
    loop {
        if Instant::now() >= deadline {
            break;
        }
        let Some(up) = chain.select(need, &tried) else {
            break;
        };
        tried.push(up.index());
        match up.call(body.clone(), deadline).await {
            Ok(resp) => {
                let Ok(reply) = serde_json::from_slice::<Reply<'_>>(&resp) else {
                    last_error = Some(CallError::Invalid {
                        upstream: up.name().to_owned(),
                        reason: "the body is not a JSON-RPC response".to_owned(),
                    });
                    continue;
                };
                // Another upstream may have what this one lacks. After an error saying so
                // ("header not found", "missing trie node", ...), any untried one may: it can be
                // ahead, or keep more history (archive vs pruned). A null (no receipt yet) can
                // differ only on one further ahead.
                let untried = |ahead: bool| {
                    chain
                        .upstreams()
                        .iter()
                        .any(|u| !tried.contains(&u.index()) && (!ahead || u.head() > up.head()))
                };
                let ask_another = match (reply.error, reply.result) {
                    (Some(err), _) => lacks_it(chain, &up, need, err) && untried(beyond_heads),
                    (None, Some(result)) => {
                        let null = result.get() == "null";
                        if let (Need::Block(n), false) = (need, null) {
                            up.note_kept_history(n);
                        }
                        null_may_be_lag && null && untried(true)
                    }
                    (None, None) => false,
                };
                if ask_another {
                    held = Some(Held {
                        body: resp,
                        upstream: up,
                    });
                    continue;
                }
                let outcome = write_reply(req, &reply, out);
                return Served {
                    outcome,
                    upstream: Some(up),
                    retries: tried.len().saturating_sub(1) as u32,
                    verified: None,
                    fallback: None,
                };
            }
            Err(e) if e.is_retryable() => last_error = Some(e),
            Err(e) => {
                last_error = Some(e);
                break;
            }
        }
    }
    if let Some(h) = held {
        return answer(req, &h.body, h.upstream, tried.len(), out);
    }
    let retries = tried.len().saturating_sub(1) as u32;
    let (outcome, c, message) = if tried.is_empty() && Instant::now() < deadline {
        (
            Outcome::NoUpstream,
            code::NO_HEALTHY_UPSTREAM,
            no_upstream_message(chain, need),
        )
    } else if Instant::now() >= deadline {
        (
            Outcome::Deadline,
            code::DEADLINE_EXCEEDED,
            format!(
                "no upstream of chain {} answered before the request deadline",
                chain.name()
            ),
        )
    } else {
        let detail = last_error.map(|e| e.to_string()).unwrap_or_default();
        (
            Outcome::Failed,
            code::UPSTREAMS_FAILED,
            format!("every upstream tried failed; last: {detail}"),
        )
    };
    jsonrpc::write_error(out, req.id, c, &message);
    Served {
        outcome,
        upstream: None,
        retries,
        verified: None,
        fallback: None,
    }
}

fn no_upstream_message(chain: &Chain, need: Need) -> String {
    match need {
        Need::Block(n) => format!(
            "no healthy upstream of chain {} has block {n} yet",
            chain.name()
        ),
        _ => format!("no healthy upstream for chain {}", chain.name()),
    }
}

/// Writes an upstream's reply under the client's id.
fn answer(
    req: &Request<'_>,
    resp: &[u8],
    up: Arc<Upstream>,
    attempts: usize,
    out: &mut Vec<u8>,
) -> Served {
    let retries = attempts.saturating_sub(1) as u32;
    let outcome = match serde_json::from_slice::<Reply<'_>>(resp) {
        Ok(reply) => write_reply(req, &reply, out),
        Err(_) => {
            jsonrpc::write_error(
                out,
                req.id,
                code::INTERNAL,
                "upstream reply is not JSON-RPC",
            );
            Outcome::Failed
        }
    };
    Served {
        outcome,
        upstream: Some(up),
        retries,
        verified: None,
        fallback: None,
    }
}

/// Writes a parsed reply (its error, or its result, `null` when absent) under the client's id.
pub(crate) fn write_reply(req: &Request<'_>, reply: &Reply<'_>, out: &mut Vec<u8>) -> Outcome {
    if let Some(err) = reply.error {
        jsonrpc::write_answer(out, req.id, "error", err);
        return Outcome::RpcError;
    }
    match reply
        .result
        .or_else(|| serde_json::from_str::<&RawValue>("null").ok())
    {
        Some(r) => jsonrpc::write_answer(out, req.id, "result", r),
        None => jsonrpc::write_error(out, req.id, code::INTERNAL, "empty upstream reply"),
    }
    Outcome::Ok
}

/// Sends a write to every usable upstream at once. The first success answers; the other sends
/// go on in the background so that every node gets the write.
async fn broadcast(
    chain: &Chain,
    req: &Request<'_>,
    body: Bytes,
    raw_tx: bool,
    deadline: Instant,
    out: &mut Vec<u8>,
) -> Served {
    let ups = chain.writable();
    if ups.is_empty() {
        jsonrpc::write_error(
            out,
            req.id,
            code::NO_HEALTHY_UPSTREAM,
            &format!("no healthy upstream for chain {}", chain.name()),
        );
        return Served::new(Outcome::NoUpstream);
    }
    let tx_hash = if raw_tx {
        req.params.and_then(raw_tx_hash)
    } else {
        None
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(ups.len());
    for up in ups {
        let (tx, body) = (tx.clone(), body.clone());
        tokio::spawn(async move {
            let result = up.call(body, deadline).await;
            // The receiver may be gone once an answer was sent: the write still reached `up`.
            let _ = tx.send((up, result)).await;
        });
    }
    drop(tx);
    let mut first_error: Option<(Bytes, Arc<Upstream>)> = None;
    let mut last_failure: Option<CallError> = None;
    while let Ok(Some((up, result))) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
        match result {
            Ok(resp) => {
                let Ok(reply) = serde_json::from_slice::<Reply<'_>>(&resp) else {
                    continue;
                };
                match reply.error {
                    None => return answer(req, &resp, up, 1, out),
                    Some(err) => {
                        let known = serde_json::from_str::<ErrorObject>(err.get())
                            .is_ok_and(|e| policy::error_means_known(&e.message));
                        if let (true, Some(hash)) = (known, &tx_hash) {
                            let quoted = format!("\"{hash}\"");
                            if let Ok(r) = serde_json::from_str::<&RawValue>(&quoted) {
                                jsonrpc::write_answer(out, req.id, "result", r);
                                return Served {
                                    outcome: Outcome::Ok,
                                    upstream: Some(up),
                                    retries: 0,
                                    verified: None,
                                    fallback: None,
                                };
                            }
                        }
                        first_error.get_or_insert((resp, up));
                    }
                }
            }
            Err(e) => last_failure = Some(e),
        }
    }
    if let Some((resp, up)) = first_error {
        return answer(req, &resp, up, 1, out);
    }
    let (outcome, c, message) = match last_failure {
        Some(e) if Instant::now() < deadline => (
            Outcome::Failed,
            code::UPSTREAMS_FAILED,
            format!("every upstream failed; last: {e}"),
        ),
        _ => (
            Outcome::Deadline,
            code::DEADLINE_EXCEEDED,
            "no upstream answered before the request deadline".to_owned(),
        ),
    };
    jsonrpc::write_error(out, req.id, c, &message);
    Served::new(outcome)
}

/// The hash of the transaction in the first param of `eth_sendRawTransaction` ([`tx_hash`]).
fn raw_tx_hash(params: &RawValue) -> Option<String> {
    let list: Vec<&str> = serde_json::from_str(params.get()).ok()?;
    let bytes = hex::decode(list.first()?.strip_prefix("0x")?).ok()?;
    Some(format!("0x{}", hex::encode(tx_hash(&bytes))))
}

/// The hash nodes give a raw transaction: Keccak-256 of its canonical encoding, which for
/// legacy and typed transactions is the bytes as sent — except an EIP-4844 blob transaction in
/// its network form (what `eth_sendRawTransaction` takes): `0x03 || rlp([tx_payload_body, blobs,
/// commitments, proofs])`, or EIP-7594's `0x03 || rlp([tx_payload_body, wrapper_version, blobs,
/// commitments, cell_proofs])`. Its hash covers the body only: Keccak-256 of `0x03 ||
/// rlp(tx_payload_body)`. The network form is told from the canonical one by its first item
/// being a list (the canonical form starts with the chain id, a number).
fn tx_hash(raw: &[u8]) -> [u8; 32] {
    if let Some((&0x03, rest)) = raw.split_first()
        && let Some(body) = rlp_list_payload(rest).and_then(first_list_item)
    {
        let mut h = Keccak256::new();
        h.update([0x03]);
        h.update(body);
        return h.finalize().into();
    }
    Keccak256::digest(raw).into()
}

/// The header length and payload length of the RLP list at the start of `buf` (`None` when it
/// is a byte string or truncated).
fn rlp_list_header(buf: &[u8]) -> Option<(usize, usize)> {
    let first = *buf.first()?;
    let (header, len) = match first {
        0xc0..=0xf7 => (1, usize::from(first - 0xc0)),
        0xf8..=0xff => {
            let n = usize::from(first - 0xf7);
            let len_bytes = buf.get(1..1 + n)?;
            if n > std::mem::size_of::<usize>() {
                return None;
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (1 + n, len)
        }
        _ => return None,
    };
    (buf.len() >= header.checked_add(len)?).then_some((header, len))
}

/// The payload of the RLP list at the start of `buf`.
fn rlp_list_payload(buf: &[u8]) -> Option<&[u8]> {
    let (header, len) = rlp_list_header(buf)?;
    buf.get(header..header + len)
}

/// The whole encoding of the first item of a list payload, when that item is a list.
fn first_list_item(payload: &[u8]) -> Option<&[u8]> {
    let (header, len) = rlp_list_header(payload)?;
    payload.get(..header + len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_transaction_in_network_form_hashes_its_body_only() {
        // 0x03 || rlp([body, blobs, commitments, proofs]) with a tiny stand-in body: the hash
        // is keccak(0x03 || rlp(body)), not of the whole network form.
        let body = [0xc3, 0x01, 0x02, 0x03]; // rlp([1, 2, 3])
        let mut network = vec![0x03, 0xc7];
        network.extend_from_slice(&body);
        network.extend_from_slice(&[0xc0, 0xc0, 0xc0]);
        let mut canonical = vec![0x03];
        canonical.extend_from_slice(&body);
        assert_eq!(
            tx_hash(&network),
            <[u8; 32]>::from(Keccak256::digest(&canonical))
        );
        // The canonical form (first item a number) and other types hash as sent.
        assert_eq!(
            tx_hash(&canonical),
            <[u8; 32]>::from(Keccak256::digest(&canonical))
        );
        let eip1559 = [0x02, 0xc7, 0xc3, 0x01, 0x02, 0x03, 0xc0, 0xc0, 0xc0];
        assert_eq!(
            tx_hash(&eip1559),
            <[u8; 32]>::from(Keccak256::digest(eip1559))
        );
        // Truncated or lying lengths fall back to hashing the bytes, never panic.
        for bad in [
            &[0x03][..],
            &[0x03, 0xc7, 0xc3][..],
            &[0x03, 0xff, 0xff][..],
            &[0x03, 0xf9, 0x01][..],
        ] {
            assert_eq!(tx_hash(bad), <[u8; 32]>::from(Keccak256::digest(bad)));
        }
    }

    #[test]
    fn raw_tx_hash_is_keccak_of_the_bytes() {
        // keccak256("") is the well-known empty hash.
        let p = RawValue::from_string(r#"["0x"]"#.to_owned()).expect("raw");
        assert_eq!(
            raw_tx_hash(&p).as_deref(),
            Some("0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        );
        let bad = RawValue::from_string(r#"["zz"]"#.to_owned()).expect("raw");
        assert_eq!(raw_tx_hash(&bad), None);
    }
}
