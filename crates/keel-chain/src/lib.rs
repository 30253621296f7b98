//! Chains, upstreams, head tracking and health scoring: the model every keel component shares.
//!
//! - [`ChainRegistry`] holds every configured [`Chain`], found by name or chain id.
//! - A [`Chain`] owns its [`Upstream`]s, the chain head (highest head seen from a usable
//!   upstream), a short memory of recent block hashes and of the head headers each upstream
//!   reported (their state roots, for verified reads), and picks upstreams for requests
//!   ([`Chain::select`]) with power-of-two-choices on score and in-flight, honouring weights,
//!   tiers, lag and the block a request needs.
//! - An [`Upstream`] is one node: pooled HTTP clients (one per current-thread runtime, so a
//!   gateway worker's calls never leave its thread) with a bounded number of calls in flight,
//!   its head, its [`Health`] (latency EWMA and percentiles, error rate, circuit breaker) and
//!   the old blocks it is known to lack (a pruned node; see [`HISTORY_MARK_TTL`]).
//! - [`HeadTracker`] polls every upstream's chain id once and its head on an interval, which also
//!   serves as the circuit breaker's half-open probe, so an ejected upstream re-enters by itself.
//!
//! Nothing here serves HTTP; the gateway, monitor and indexer call into it.

mod chain;
mod clients;
mod error;
mod health;
mod history;
mod metrics;
mod observed;
mod tls;
mod tracker;
mod upstream;

pub use crate::{
    chain::{BlockTag, Chain, ChainRegistry, Need},
    error::{CallError, ChainError},
    health::{Admission, Health, HealthSnapshot, UpstreamState},
    history::HISTORY_MARK_TTL,
    metrics::ChainMetrics,
    tracker::{HeadTracker, parse_quantity},
    upstream::{Upstream, UpstreamStatus},
};
