//! Upstream and chain gauges.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{Chain, Upstream};

/// Labels of per-upstream series. The URL is never a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Chain name.
    pub chain: String,
    /// Upstream name.
    pub upstream: String,
}

/// Labels of per-chain series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabels {
    /// Chain name.
    pub chain: String,
}

/// Metrics of the chain model, refreshed by the head tracker after every poll.
#[derive(Debug, Default, Clone)]
pub struct ChainMetrics {
    /// Upstream state: 0 healthy, 1 degraded, 2 ejected, 3 unverified, 4 refused (wrong chain).
    pub upstream_state: Family<UpstreamLabels, Gauge>,
    /// Last block number seen from the upstream.
    pub upstream_head: Family<UpstreamLabels, Gauge>,
    /// Blocks the upstream is behind the chain head.
    pub upstream_lag_blocks: Family<UpstreamLabels, Gauge>,
    /// Exponentially weighted latency of the upstream's answers, seconds.
    pub upstream_latency_seconds: Family<UpstreamLabels, Gauge<f64, AtomicU64>>,
    /// Routing score of the upstream (lower is preferred).
    pub upstream_score: Family<UpstreamLabels, Gauge<f64, AtomicU64>>,
    /// Calls in flight to the upstream.
    pub upstream_in_flight: Family<UpstreamLabels, Gauge>,
    /// Times the upstream's circuit breaker opened.
    pub upstream_ejections: Family<UpstreamLabels, Gauge>,
    /// Oldest block the upstream is known to keep, when it said it lacks older ones (a pruned
    /// node); 0 when no gap is known.
    pub upstream_history_from: Family<UpstreamLabels, Gauge>,
    /// Head polls that failed.
    pub head_poll_failures: Family<UpstreamLabels, Counter>,
    /// Highest head seen on the chain.
    pub chain_head: Family<ChainLabels, Gauge>,
}

impl ChainMetrics {
    /// Registers every metric under `registry` (prefix it with `keel` first).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "upstream_state",
            "Upstream state: 0 healthy, 1 degraded, 2 ejected, 3 unverified, 4 refused",
            self.upstream_state.clone(),
        );
        registry.register(
            "upstream_head",
            "Last block number seen from the upstream",
            self.upstream_head.clone(),
        );
        registry.register(
            "upstream_lag_blocks",
            "Blocks the upstream is behind the chain head",
            self.upstream_lag_blocks.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Exponentially weighted latency of the upstream's answers",
            self.upstream_latency_seconds.clone(),
        );
        registry.register(
            "upstream_score",
            "Routing score of the upstream, lower is preferred",
            self.upstream_score.clone(),
        );
        registry.register(
            "upstream_in_flight",
            "Calls in flight to the upstream",
            self.upstream_in_flight.clone(),
        );
        registry.register(
            "upstream_ejections",
            "Times the upstream's circuit breaker opened",
            self.upstream_ejections.clone(),
        );
        registry.register(
            "upstream_history_from",
            "Oldest block the upstream is known to keep (pruned below it); 0 when no gap is known",
            self.upstream_history_from.clone(),
        );
        registry.register(
            "head_poll_failures",
            "Head polls that failed",
            self.head_poll_failures.clone(),
        );
        registry.register(
            "chain_head",
            "Highest head seen on the chain",
            self.chain_head.clone(),
        );
    }

    /// Refreshes the gauges of one upstream and of its chain.
    pub fn observe(&self, chain: &Chain, u: &Upstream) {
        let l = UpstreamLabels {
            chain: chain.name().to_owned(),
            upstream: u.name().to_owned(),
        };
        let head = chain.head();
        let snap = u.health().snapshot();
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.upstream_state
            .get_or_create(&l)
            .set(u.state(head, chain.config().max_lag_blocks).as_gauge());
        self.upstream_head.get_or_create(&l).set(as_i64(u.head()));
        self.upstream_lag_blocks
            .get_or_create(&l)
            .set(as_i64(head.saturating_sub(u.head())));
        self.upstream_latency_seconds
            .get_or_create(&l)
            .set(snap.latency_ewma_ms / 1000.0);
        self.upstream_score.get_or_create(&l).set(u.score());
        self.upstream_in_flight
            .get_or_create(&l)
            .set(as_i64(u.in_flight() as u64));
        self.upstream_ejections
            .get_or_create(&l)
            .set(as_i64(snap.ejections));
        self.upstream_history_from
            .get_or_create(&l)
            .set(as_i64(u.history_from().unwrap_or(0)));
        self.chain_head
            .get_or_create(&ChainLabels {
                chain: chain.name().to_owned(),
            })
            .set(as_i64(head));
    }
}
