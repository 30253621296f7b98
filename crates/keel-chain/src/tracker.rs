//! Head tracking: one polling task per upstream.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{BlockTag, CallError, Chain, ChainMetrics, ChainRegistry, Upstream};

const CHAIN_ID_REQ: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
const LATEST_REQ: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["latest",false]}"#;
const SAFE_REQ: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["safe",false]}"#;
const FINALIZED_REQ: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["finalized",false]}"#;

/// Largest answer read for a head poll (a block with its transaction hashes, not the
/// transactions: about 150 KiB for a full mainnet block), or the upstream's own
/// `max_response_bytes` when smaller: a broken or hostile upstream cannot make every poll hold
/// a full-size answer.
const HEAD_POLL_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The `safe` and `finalized` blocks are polled on every this many head polls: they move once
/// per epoch on Ethereum, and verified reads only need a number no newer than the real one.
const FINALITY_EVERY: u32 = 4;

/// Polls every upstream of every chain: its chain id until confirmed, then its latest block on
/// the chain's `head_poll_interval`, recording its number, hash and state root with the chain
/// (`Chain::observe_header`). Polls go through the upstream's circuit breaker, so they are
/// also the probes that let an ejected upstream back in.
#[derive(Debug)]
pub struct HeadTracker {
    tasks: JoinSet<()>,
}

impl HeadTracker {
    /// Starts one task per upstream; they stop when `cancel` fires.
    pub fn spawn(
        registry: &ChainRegistry,
        metrics: ChainMetrics,
        cancel: CancellationToken,
    ) -> Self {
        let mut tasks = JoinSet::new();
        for chain in registry.chains() {
            for up in chain.upstreams() {
                let (chain, up, metrics, cancel) =
                    (chain.clone(), up.clone(), metrics.clone(), cancel.clone());
                tasks.spawn(async move {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = poll_loop(&chain, &up, &metrics) => {}
                    }
                });
            }
        }
        Self { tasks }
    }

    /// Waits for every polling task to end (after cancellation). A panicked task is reported.
    pub async fn join(mut self) {
        while let Some(res) = self.tasks.join_next().await {
            if let Err(e) = res
                && e.is_panic()
            {
                tracing::error!(error = %e, "head tracker task panicked");
            }
        }
    }
}

async fn poll_loop(chain: &Chain, up: &Upstream, metrics: &ChainMetrics) {
    let interval = chain.config().head_poll_interval;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    let mut polls: u32 = 0;
    loop {
        ticker.tick().await;
        let timeout = interval.max(Duration::from_secs(1));
        let result = poll_once(chain, up, timeout).await;
        match result {
            Ok(()) => {
                if polls.is_multiple_of(FINALITY_EVERY) {
                    poll_finality(up, timeout).await;
                }
                polls = polls.wrapping_add(1);
                if last_error.take().is_some() {
                    tracing::info!(
                        chain = chain.name(),
                        upstream = up.name(),
                        head = up.head(),
                        "upstream answers again"
                    );
                }
            }
            Err(PollError::Call(e)) => {
                if !matches!(&e, CallError::Connect { reason, .. } if reason == "ejected") {
                    metrics
                        .head_poll_failures
                        .get_or_create(&crate::metrics::UpstreamLabels {
                            chain: chain.name().to_owned(),
                            upstream: up.name().to_owned(),
                        })
                        .inc();
                    let msg = e.to_string();
                    if last_error.as_deref() != Some(&msg) {
                        tracing::warn!(chain = chain.name(), error = %msg, "head poll failed");
                        last_error = Some(msg);
                    }
                }
            }
            Err(PollError::WrongChain(reported)) => {
                tracing::error!(
                    chain = chain.name(),
                    upstream = up.name(),
                    expected = chain.chain_id(),
                    reported,
                    "upstream refused: it serves chain id {reported}, not {}; fix its url or move it to the right chain",
                    chain.chain_id()
                );
                metrics.observe(chain, up);
                return;
            }
        }
        metrics.observe(chain, up);
    }
}

enum PollError {
    Call(CallError),
    WrongChain(u64),
}

impl From<CallError> for PollError {
    fn from(e: CallError) -> Self {
        Self::Call(e)
    }
}

#[derive(Deserialize)]
struct Reply<T> {
    result: Option<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockHead {
    number: String,
    hash: String,
    /// Absent on chains whose headers carry none.
    state_root: Option<String>,
}

async fn poll_once(chain: &Chain, up: &Upstream, timeout: Duration) -> Result<(), PollError> {
    if !up.is_verified() {
        let body = up
            .call_capped(
                Bytes::from_static(CHAIN_ID_REQ),
                Instant::now() + timeout,
                HEAD_POLL_MAX_BYTES,
            )
            .await?;
        let id = serde_json::from_slice::<Reply<String>>(&body)
            .ok()
            .and_then(|r| r.result)
            .and_then(|hex| parse_quantity(&hex))
            .ok_or_else(|| invalid(up, "eth_chainId did not return a hex number"))?;
        let ok = id == chain.chain_id();
        up.set_chain_check(id, ok);
        if !ok {
            return Err(PollError::WrongChain(id));
        }
        tracing::info!(chain = chain.name(), upstream = up.name(), url = %up.url(), "upstream chain id confirmed");
    }
    let body = up
        .call_capped(
            Bytes::from_static(LATEST_REQ),
            Instant::now() + timeout,
            HEAD_POLL_MAX_BYTES,
        )
        .await?;
    let head = serde_json::from_slice::<Reply<BlockHead>>(&body)
        .ok()
        .and_then(|r| r.result)
        .ok_or_else(|| invalid(up, "eth_getBlockByNumber(latest) returned no block"))?;
    let number =
        parse_quantity(&head.number).ok_or_else(|| invalid(up, "block number is not hex"))?;
    // Observed before the head moves: a read pinned to this block may find its root at once.
    if let Some(root) = &head.state_root {
        chain.observe_header(up.index(), number, &head.hash, root);
    }
    up.set_head(number);
    chain.remember_block(&head.hash, number);
    chain.refresh_head();
    Ok(())
}

/// Polls the upstream's `safe` and `finalized` blocks. An upstream that does not know the tags
/// (pre-merge chains, some L2s) answers with an error or `null`: the tag is then unknown for it.
async fn poll_finality(up: &Upstream, timeout: Duration) {
    #[derive(Deserialize)]
    struct Number {
        number: String,
    }
    for (tag, req) in [
        (BlockTag::Safe, SAFE_REQ),
        (BlockTag::Finalized, FINALIZED_REQ),
    ] {
        let Ok(body) = up
            .call_capped(
                Bytes::from_static(req),
                Instant::now() + timeout,
                HEAD_POLL_MAX_BYTES,
            )
            .await
        else {
            return;
        };
        let number = serde_json::from_slice::<Reply<Number>>(&body)
            .ok()
            .and_then(|r| r.result)
            .and_then(|b| parse_quantity(&b.number));
        up.set_block_at(tag, number);
    }
}

fn invalid(up: &Upstream, reason: &str) -> CallError {
    CallError::Invalid {
        upstream: up.name().to_owned(),
        reason: reason.to_owned(),
    }
}

/// Parses a JSON-RPC `0x…` quantity that fits in a `u64` (block numbers, chain ids).
pub fn parse_quantity(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}
