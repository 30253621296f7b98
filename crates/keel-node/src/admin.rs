//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/status`.

use std::sync::{Arc, atomic::Ordering};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use keel_chain::UpstreamStatus;
use serde::{Deserialize, Serialize};

use crate::Shared;

/// What `/status` returns and `keel status` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    /// keel version.
    pub version: String,
    /// Whether the node is ready.
    pub ready: bool,
    /// Every chain.
    pub chains: Vec<ChainStatus>,
}

/// One chain in `/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainStatus {
    /// Chain name.
    pub name: String,
    /// Chain id.
    pub chain_id: u64,
    /// Highest head seen.
    pub head: u64,
    /// Whether an upstream can serve.
    pub ready: bool,
    /// Upstreams.
    pub upstreams: Vec<serde_json::Value>,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &s.metrics) {
        tracing::error!(error = %e, "metrics encoding failed");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics encoding failed\n",
        )
            .into_response();
    }
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// `Ok` when ready, else the reasons.
pub(crate) fn ready(s: &Shared) -> Result<(), Vec<String>> {
    let mut why = Vec::new();
    if s.failed.load(Ordering::SeqCst) {
        why.push("a critical task stopped; see the logs".to_owned());
    }
    if s.draining.load(Ordering::SeqCst) {
        why.push("shutting down".to_owned());
    }
    for c in s.registry.chains() {
        if !c.is_ready() {
            why.push(format!("chain {} has no healthy upstream", c.name()));
        }
    }
    if why.is_empty() { Ok(()) } else { Err(why) }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match ready(&s) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        )
            .into_response(),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Json<StatusReport> {
    let chains = s
        .registry
        .chains()
        .iter()
        .map(|c| ChainStatus {
            name: c.name().to_owned(),
            chain_id: c.chain_id(),
            head: c.head(),
            ready: c.is_ready(),
            upstreams: c.status().iter().map(to_value).collect(),
        })
        .collect();
    Json(StatusReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: ready(&s).is_ok(),
        chains,
    })
}

fn to_value(u: &UpstreamStatus) -> serde_json::Value {
    serde_json::to_value(u).unwrap_or_default()
}
