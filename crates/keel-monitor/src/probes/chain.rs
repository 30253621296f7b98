//! Chain probes: per chain, every `interval`, each upstream is asked `eth_syncing`,
//! `net_peerCount` and for its block at the quorum height (one below the chain head, which at
//! least two usable upstreams reached). The block hash a strict majority of at least two
//! upstreams report is the quorum's; an upstream reporting another hash at that height is on
//! a minority fork, even while its own head keeps moving.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keel_chain::{Chain, Upstream};
use keel_config::monitor::ChainProbeConfig;
use serde_json::Value;

use crate::metrics::{MonitorMetrics, ProbeLabels, UpstreamLabels};

struct Answer {
    ok: bool,
    syncing: Option<bool>,
    peers: Option<i64>,
    hash: Option<String>,
    took: Duration,
}

async fn call(
    u: &Upstream,
    method: &str,
    params: Value,
    timeout: Duration,
    max: usize,
) -> Result<Value, String> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let bytes = u
        .call(Bytes::from(body.to_string()), Instant::now() + timeout)
        .await
        .map_err(|e| e.to_string())?;
    if bytes.len() > max {
        return Err(format!("answer larger than {max} bytes"));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    match v.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(v
            .get("error")
            .map_or_else(|| "no result".to_owned(), ToString::to_string)),
    }
}

async fn probe_upstream(u: Arc<Upstream>, height: Option<u64>, cfg: ChainProbeConfig) -> Answer {
    let t0 = Instant::now();
    let (syncing, peers, block) = tokio::join!(
        call(
            &u,
            "eth_syncing",
            Value::Array(vec![]),
            cfg.timeout,
            cfg.max_response_bytes
        ),
        call(
            &u,
            "net_peerCount",
            Value::Array(vec![]),
            cfg.timeout,
            cfg.max_response_bytes
        ),
        async {
            match height {
                Some(h) => Some(
                    call(
                        &u,
                        "eth_getBlockByNumber",
                        serde_json::json!([format!("0x{h:x}"), false]),
                        cfg.timeout,
                        cfg.max_response_bytes,
                    )
                    .await,
                ),
                None => None,
            }
        }
    );
    let took = t0.elapsed();
    Answer {
        ok: syncing.is_ok(),
        syncing: syncing.ok().map(|v| v != Value::Bool(false)),
        peers: peers
            .ok()
            .and_then(|v| v.as_str().and_then(keel_chain::parse_quantity))
            .and_then(|p| i64::try_from(p).ok()),
        hash: block.and_then(Result::ok).and_then(|b| {
            b.get("hash")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        }),
        took,
    }
}

/// The hash a strict majority (at least two) of `hashes` agree on.
pub fn quorum_hash<'a>(hashes: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut n = 0;
    for h in hashes {
        *counts.entry(h).or_default() += 1;
        n += 1;
    }
    counts
        .into_iter()
        .find(|(_, c)| *c >= 2 && *c * 2 > n)
        .map(|(h, _)| h.to_owned())
}

/// Probes every upstream of `chain` until cancelled.
pub async fn run(chain: Arc<Chain>, cfg: ChainProbeConfig, metrics: MonitorMetrics) {
    let mut ticker = super::ticker(cfg.interval);
    let mut heads: HashMap<usize, (u64, Instant)> = HashMap::new();
    loop {
        ticker.tick().await;
        let head = chain.head();
        let height = (head > 0).then(|| head.saturating_sub(1));
        let ups: Vec<Arc<Upstream>> = chain
            .upstreams()
            .iter()
            .filter(|u| u.is_verified())
            .cloned()
            .collect();
        let answers = futures::future::join_all(
            ups.iter()
                .map(|u| probe_upstream(u.clone(), height, cfg.clone())),
        )
        .await;
        let quorum = quorum_hash(answers.iter().filter_map(|a| a.hash.as_deref()));
        let now = Instant::now();
        for u in chain.upstreams() {
            let e = heads.entry(u.index()).or_insert((u.head(), now));
            if e.0 != u.head() {
                *e = (u.head(), now);
            }
            let l = UpstreamLabels {
                chain: chain.name().to_owned(),
                upstream: u.name().to_owned(),
            };
            if u.is_verified() {
                metrics
                    .upstream_head_age_seconds
                    .get_or_create(&l)
                    .set(now.duration_since(e.1).as_secs_f64());
            }
            metrics
                .upstream_error_rate
                .get_or_create(&l)
                .set(u.health().error_rate());
        }
        for (u, a) in ups.iter().zip(answers) {
            let l = UpstreamLabels {
                chain: chain.name().to_owned(),
                upstream: u.name().to_owned(),
            };
            let p = ProbeLabels {
                kind: "chain",
                probe: format!("{}/{}", chain.name(), u.name()),
            };
            metrics.probe_up.get_or_create(&p).set(i64::from(a.ok));
            metrics
                .probe_duration_seconds
                .get_or_create(&p)
                .set(a.took.as_secs_f64());
            if !a.ok {
                metrics.probe_failures.get_or_create(&p).inc();
            }
            if let Some(s) = a.syncing {
                metrics.upstream_syncing.get_or_create(&l).set(i64::from(s));
            }
            metrics
                .upstream_peers
                .get_or_create(&l)
                .set(a.peers.unwrap_or(-1));
            let forked = match (&quorum, &a.hash) {
                (Some(q), Some(h)) => h != q,
                _ => false,
            };
            if forked {
                tracing::warn!(
                    chain = chain.name(),
                    upstream = u.name(),
                    height,
                    "upstream's block differs from the quorum's: minority fork"
                );
            }
            metrics
                .upstream_forked
                .get_or_create(&l)
                .set(i64::from(forked));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::quorum_hash;

    #[test]
    fn the_quorum_hash_needs_a_strict_majority_of_two_or_more() {
        assert_eq!(quorum_hash(["a", "a", "b"]).as_deref(), Some("a"));
        assert_eq!(quorum_hash(["a", "b", "c"]), None);
        assert_eq!(quorum_hash(["a", "a", "b", "b"]), None);
        assert_eq!(quorum_hash(["a"]), None);
        assert_eq!(quorum_hash(["a", "a"]).as_deref(), Some("a"));
    }
}
