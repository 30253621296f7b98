//! The JSON-RPC gateway: the hot path of keel.
//!
//! A client request goes: read the body within `max_body_bytes` → split into a single request or
//! a batch (within `max_batch_len`) → for each entry, validate the envelope ([`jsonrpc`]) → apply
//! the chain's method policy ([`policy`]) → route: a read goes to one upstream picked by
//! [`keel_chain::Chain::select`] and is retried elsewhere on transport failures, timeouts, HTTP
//! 5xx/429 or "behind" answers within one deadline; a write is broadcast to every usable upstream
//! and the first success answers → write the answer around the upstream's raw result with the
//! client's id. Params and results are never re-serialised.
//!
//! Responses carry `x-keel-upstream` (who answered) and `x-keel-retries`.

mod forward;
mod http;
pub mod jsonrpc;
pub mod metrics;
pub mod policy;

use std::sync::Arc;

use keel_chain::ChainRegistry;
use keel_config::GatewayConfig;
use tokio::sync::Semaphore;

pub use crate::{http::router, metrics::GatewayMetrics};

/// The gateway's shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Arc<ChainRegistry>,
    cfg: GatewayConfig,
    metrics: GatewayMetrics,
    permits: Semaphore,
}

impl Gateway {
    /// A gateway over `registry`'s chains.
    pub fn new(registry: Arc<ChainRegistry>, cfg: GatewayConfig, metrics: GatewayMetrics) -> Self {
        let permits = Semaphore::new(cfg.max_concurrent_requests);
        Self {
            inner: Arc::new(Inner {
                registry,
                cfg,
                metrics,
                permits,
            }),
        }
    }

    /// The chains served.
    pub fn registry(&self) -> &Arc<ChainRegistry> {
        &self.inner.registry
    }
}
