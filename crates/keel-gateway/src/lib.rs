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
//! Verified reads (opt-in per chain, per method or per request with `x-keel-verify`): quorum
//! mode fans a block-pinned read out to M upstreams and answers once N agree; proof mode checks
//! `eth_getProof` against a quorum-agreed state root ([`keel_verify`]). Minority upstreams are
//! penalised and recorded in the evidence log.
//!
//! Responses carry `x-keel-upstream` (who answered), `x-keel-retries` and `x-keel-verified`
//! (`none`, `quorum:N/M` or `proof:<block hex>`).

mod filters;
mod forward;
mod http;
pub mod jsonrpc;
pub mod metrics;
pub mod policy;
mod verify;

use std::{path::PathBuf, sync::Arc};

use keel_chain::ChainRegistry;
use keel_config::{EvidenceConfig, GatewayConfig};
use tokio::sync::Semaphore;

pub use crate::{
    http::{EXPOSED_HEADERS, router},
    metrics::GatewayMetrics,
};

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
    verifier: Arc<verify::Verifier>,
    filters: filters::Filters,
}

/// What serving one request needs besides the request.
pub(crate) struct Ctx<'a> {
    pub(crate) chain: &'a Arc<keel_chain::Chain>,
    pub(crate) verifier: &'a Arc<verify::Verifier>,
    pub(crate) filters: &'a filters::Filters,
    pub(crate) metrics: &'a GatewayMetrics,
    /// When the client's answer is due.
    pub(crate) deadline: std::time::Instant,
}

impl Gateway {
    /// A gateway over `registry`'s chains. Evidence of wrong answers found by verified reads
    /// is appended to the log in `evidence_dir` (not kept when `None`), within `evidence`'s
    /// bounds.
    pub fn new(
        registry: Arc<ChainRegistry>,
        cfg: GatewayConfig,
        metrics: GatewayMetrics,
        evidence_dir: Option<PathBuf>,
        evidence: EvidenceConfig,
    ) -> Self {
        let permits = Semaphore::new(cfg.max_concurrent_requests);
        let retention = keel_verify::evidence::Retention {
            max_bytes: evidence.max_bytes,
            max_age: evidence.max_age,
        };
        let verifier = Arc::new(verify::Verifier::new(evidence_dir, retention));
        verifier.open_log();
        Self {
            inner: Arc::new(Inner {
                registry,
                cfg,
                metrics,
                permits,
                verifier,
                filters: filters::Filters::default(),
            }),
        }
    }

    /// The chains served.
    pub fn registry(&self) -> &Arc<ChainRegistry> {
        &self.inner.registry
    }
}
