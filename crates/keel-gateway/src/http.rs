//! HTTP surface: `POST /`, `POST /rpc/{chain}` (name or chain id).
//!
//! A request's body is read only once it holds a concurrency slot, and under its deadline: a
//! client trickling its body holds one slot for at most `request_timeout`, and bodies held in
//! memory are bounded by `max_concurrent_requests × max_body_bytes`. Connection limits and the
//! browser checks (Host, Origin, CORS) are the listener's (`keel_listener`); a web page admitted
//! only by `allowed_origins = ["*"]` may not call node-control or account-signing methods
//! ([`policy::for_trusted_pages_only`]).

use std::{sync::Arc, time::Instant};

use axum::{
    Extension, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use futures::{StreamExt, stream::FuturesUnordered};
use http_body_util::{BodyExt, Limited};
use keel_chain::Chain;
use keel_config::VerifyMode;
use keel_listener::AnyOrigin;
use serde_json::value::RawValue;

use crate::{
    Gateway,
    forward::{self, Outcome, Served},
    jsonrpc::{self, Body as RpcBody, code},
    metrics::{ChainLabel, RequestLabels, method_label},
    policy, verify,
};

/// Response headers a web page allowed by CORS may read.
pub const EXPOSED_HEADERS: &str =
    "x-keel-upstream, x-keel-retries, x-keel-verified, x-keel-verify-fallback";

/// Who sent a request: a web page that only `*` in `allowed_origins` admitted, or anyone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// A client with no Origin, or a page whose origin is listed by name.
    Trusted,
    /// A web page admitted by the wildcard.
    AnyPage,
}

impl Caller {
    fn of(page: Option<Extension<AnyOrigin>>) -> Self {
        if page.is_some() {
            Self::AnyPage
        } else {
            Self::Trusted
        }
    }
}

/// Batch entries in flight at once (per batch).
const BATCH_CONCURRENCY: usize = 16;

/// The gateway's router.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route("/", post(root))
        .route("/rpc/{chain}", post(by_chain))
        .fallback(not_found)
        .with_state(gateway)
}

async fn root(
    State(gw): State<Gateway>,
    page: Option<Extension<AnyOrigin>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match gw.registry().only().cloned() {
        Some(chain) => gw.handle(&chain, Caller::of(page), &headers, body).await,
        None => unknown_chain(&gw, None),
    }
}

async fn by_chain(
    State(gw): State<Gateway>,
    Path(key): Path<String>,
    page: Option<Extension<AnyOrigin>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match gw.registry().get(&key).cloned() {
        Some(chain) => gw.handle(&chain, Caller::of(page), &headers, body).await,
        None => unknown_chain(&gw, Some(&key)),
    }
}

async fn not_found(State(gw): State<Gateway>) -> Response {
    unknown_chain(&gw, None)
}

fn unknown_chain(gw: &Gateway, key: Option<&str>) -> Response {
    let chains: Vec<_> = gw
        .registry()
        .chains()
        .iter()
        .map(|c| serde_json::json!({"name": c.name(), "chain_id": c.chain_id(), "path": format!("/rpc/{}", c.name())}))
        .collect();
    let error = match key {
        Some(k) => format!("unknown chain `{k}`; POST to /rpc/<name or chain id> of a chain below"),
        None => "POST JSON-RPC to /rpc/<name or chain id> of a chain below".to_owned(),
    };
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": error, "chains": chains})),
    )
        .into_response()
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn too_large(max: usize) -> Response {
    rpc_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        code::INVALID_REQUEST,
        &format!("request body is larger than the limit of {max} bytes"),
    )
}

fn rpc_error(status: StatusCode, c: i64, message: &str) -> Response {
    let mut out = Vec::new();
    jsonrpc::write_error(&mut out, None, c, message);
    json_response(status, out)
}

impl Gateway {
    async fn handle(
        &self,
        chain: &Arc<Chain>,
        caller: Caller,
        headers: &HeaderMap,
        body: Body,
    ) -> Response {
        let start = Instant::now();
        let label = ChainLabel {
            chain: chain.name().to_owned(),
        };
        let m = &self.inner.metrics;
        let max = self.inner.cfg.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            m.refused_http.get_or_create(&label).inc();
            return too_large(max);
        }
        let verify_header = match headers.get("x-keel-verify") {
            None => None,
            Some(v) => match v.to_str().ok().and_then(verify::parse_mode) {
                Some(mode) => Some(mode),
                None => {
                    let mut resp = rpc_error(
                        StatusCode::OK,
                        code::INVALID_PARAMS,
                        "the x-keel-verify header must be none, quorum or proof",
                    );
                    resp.headers_mut()
                        .insert("x-keel-verified", HeaderValue::from_static("none"));
                    return resp;
                }
            },
        };
        let Ok(_permit) = self.inner.permits.acquire().await else {
            return rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                code::INTERNAL,
                "the gateway is shutting down",
            );
        };
        let in_flight = m.in_flight.get_or_create(&label).clone();
        in_flight.inc();
        let deadline = start + self.inner.cfg.request_timeout;
        let resp = self
            .read_and_serve(chain, caller, body, deadline, verify_header, &label)
            .await;
        in_flight.dec();
        m.request_duration_seconds
            .get_or_create(&label)
            .observe(start.elapsed().as_secs_f64());
        resp
    }

    /// Reads the body (holding a slot, by `deadline`) and serves it.
    async fn read_and_serve(
        &self,
        chain: &Arc<Chain>,
        caller: Caller,
        body: Body,
        deadline: Instant,
        verify_header: Option<VerifyMode>,
        label: &ChainLabel,
    ) -> Response {
        let m = &self.inner.metrics;
        let max = self.inner.cfg.max_body_bytes;
        let read = Limited::new(body, max).collect();
        let bytes = match tokio::time::timeout_at(deadline.into(), read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                m.refused_http.get_or_create(label).inc();
                return too_large(max);
            }
            Ok(Err(_)) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    code::PARSE_ERROR,
                    "the request body could not be read",
                );
            }
            Err(_) => {
                m.refused_http.get_or_create(label).inc();
                return rpc_error(
                    StatusCode::REQUEST_TIMEOUT,
                    code::DEADLINE_EXCEEDED,
                    &format!(
                        "the request body did not arrive within the request deadline of {:?} ([gateway] request_timeout)",
                        self.inner.cfg.request_timeout
                    ),
                );
            }
        };
        match jsonrpc::parse_body(&bytes) {
            Err(e) => rpc_error(
                StatusCode::OK,
                code::PARSE_ERROR,
                &format!("invalid JSON: {e}"),
            ),
            Ok(RpcBody::Single(raw)) => {
                self.single(chain, caller, raw, deadline, verify_header, label)
                    .await
            }
            Ok(RpcBody::Batch(entries)) => {
                self.batch(chain, caller, entries, deadline, verify_header, label)
                    .await
            }
        }
    }

    async fn single(
        &self,
        chain: &Arc<Chain>,
        caller: Caller,
        raw: &RawValue,
        deadline: Instant,
        verify_header: Option<VerifyMode>,
        label: &ChainLabel,
    ) -> Response {
        let mut out = Vec::with_capacity(256);
        let served = self
            .entry(chain, caller, raw, deadline, verify_header, &mut out)
            .await;
        let notification = out.is_empty();
        let status = match served.outcome {
            Outcome::NoUpstream => StatusCode::SERVICE_UNAVAILABLE,
            _ if notification => StatusCode::NO_CONTENT,
            _ => StatusCode::OK,
        };
        let mut resp = json_response(status, out);
        self.decorate(&mut resp, std::slice::from_ref(&served), label);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }

    async fn batch(
        &self,
        chain: &Arc<Chain>,
        caller: Caller,
        entries: Vec<&RawValue>,
        deadline: Instant,
        verify_header: Option<VerifyMode>,
        label: &ChainLabel,
    ) -> Response {
        let max = self.inner.cfg.max_batch_len;
        if entries.is_empty() {
            return rpc_error(StatusCode::OK, code::INVALID_REQUEST, "empty batch");
        }
        if entries.len() > max {
            self.inner.metrics.refused_http.get_or_create(label).inc();
            return rpc_error(
                StatusCode::OK,
                code::INVALID_REQUEST,
                &format!(
                    "batch of {} requests is longer than the limit of {max}",
                    entries.len()
                ),
            );
        }
        // At most BATCH_CONCURRENCY at once, the next started as soon as any one is done: a slow
        // entry holds one slot, not the entries behind it. Answers go back in request order.
        let mut waiting = entries.iter().copied().enumerate();
        let mut in_flight = FuturesUnordered::new();
        for (i, raw) in waiting.by_ref().take(BATCH_CONCURRENCY) {
            in_flight.push(self.entry_at(i, chain, caller, raw, deadline, verify_header));
        }
        let mut slots: Vec<Option<(Vec<u8>, Served)>> = Vec::new();
        slots.resize_with(entries.len(), || None);
        while let Some((i, done)) = in_flight.next().await {
            slots[i] = Some(done);
            if let Some((i, raw)) = waiting.next() {
                in_flight.push(self.entry_at(i, chain, caller, raw, deadline, verify_header));
            }
        }
        let results: Vec<(Vec<u8>, Served)> = slots.into_iter().flatten().collect();
        let mut body =
            Vec::with_capacity(results.iter().map(|(o, _)| o.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (out, _) in results.iter().filter(|(o, _)| !o.is_empty()) {
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(out);
        }
        body.push(b']');
        let served: Vec<Served> = results.into_iter().map(|(_, s)| s).collect();
        if body.len() == 2 {
            // Only notifications: nothing to answer.
            let mut resp = json_response(StatusCode::NO_CONTENT, Vec::new());
            self.decorate(&mut resp, &served, label);
            return resp;
        }
        let mut resp = json_response(StatusCode::OK, body);
        self.decorate(&mut resp, &served, label);
        resp
    }

    /// Serves entry `i` of a batch: its index, its answer (empty for a notification) and how.
    async fn entry_at(
        &self,
        i: usize,
        chain: &Arc<Chain>,
        caller: Caller,
        raw: &RawValue,
        deadline: Instant,
        verify_header: Option<VerifyMode>,
    ) -> (usize, (Vec<u8>, Served)) {
        let mut out = Vec::new();
        let served = self
            .entry(chain, caller, raw, deadline, verify_header, &mut out)
            .await;
        (i, (out, served))
    }

    /// Serves one entry (valid or not) and counts it.
    async fn entry(
        &self,
        chain: &Arc<Chain>,
        caller: Caller,
        raw: &RawValue,
        deadline: Instant,
        verify_header: Option<VerifyMode>,
        out: &mut Vec<u8>,
    ) -> Served {
        let (served, method) = match jsonrpc::parse_request(raw) {
            Err(invalid) => {
                jsonrpc::write_error(out, invalid.id, code::INVALID_REQUEST, &invalid.message);
                (
                    Served {
                        outcome: Outcome::Rejected,
                        upstream: None,
                        retries: 0,
                        verified: None,
                        fallback: None,
                    },
                    "other",
                )
            }
            Ok(req) if caller == Caller::AnyPage && policy::for_trusted_pages_only(&req.method) => {
                jsonrpc::write_error(
                    out,
                    req.id,
                    code::METHOD_NOT_FOUND,
                    &format!(
                        "method {} controls the node or signs with its accounts: refused to a web page that only `*` in [listeners.gateway] allowed_origins admits; list the page's origin there to trust it",
                        req.method
                    ),
                );
                (Served::new(Outcome::Rejected), method_label(&req.method))
            }
            Ok(req) => {
                let ctx = crate::Ctx {
                    chain,
                    verifier: &self.inner.verifier,
                    filters: &self.inner.filters,
                    metrics: &self.inner.metrics,
                    deadline,
                };
                (
                    forward::serve(&ctx, &req, verify_header, out).await,
                    method_label(&req.method),
                )
            }
        };
        let m = &self.inner.metrics;
        m.requests
            .get_or_create(&RequestLabels {
                chain: chain.name().to_owned(),
                method,
                outcome: served.outcome.label(),
            })
            .inc();
        served
    }

    /// Adds `x-keel-upstream`, `x-keel-retries`, `x-keel-verified` (and `x-keel-verify-fallback`
    /// when a no-agreement fallback answered), and counts retries and
    /// failovers.
    fn decorate(&self, resp: &mut Response, served: &[Served], label: &ChainLabel) {
        if served.iter().all(|s| s.verified.is_none()) {
            resp.headers_mut()
                .insert("x-keel-verified", HeaderValue::from_static("none"));
        } else {
            let mut verified: Vec<&str> = served
                .iter()
                .map(|s| s.verified.as_deref().unwrap_or("none"))
                .collect();
            verified.sort_unstable();
            verified.dedup();
            if let Ok(v) = HeaderValue::from_str(&verified.join(",")) {
                resp.headers_mut().insert("x-keel-verified", v);
            }
        }
        let mut fallbacks: Vec<&str> = served.iter().filter_map(|s| s.fallback).collect();
        if !fallbacks.is_empty() {
            fallbacks.sort_unstable();
            fallbacks.dedup();
            if let Ok(v) = HeaderValue::from_str(&fallbacks.join(",")) {
                resp.headers_mut().insert("x-keel-verify-fallback", v);
            }
        }
        let retries: u32 = served.iter().map(|s| s.retries).sum();
        let mut names: Vec<&str> = served
            .iter()
            .filter_map(|s| s.upstream.as_ref().map(|u| u.name()))
            .collect();
        names.sort_unstable();
        names.dedup();
        if !names.is_empty()
            && let Ok(v) = HeaderValue::from_str(&names.join(","))
        {
            resp.headers_mut().insert("x-keel-upstream", v);
        }
        resp.headers_mut()
            .insert("x-keel-retries", HeaderValue::from(retries));
        if retries > 0 {
            let m = &self.inner.metrics;
            m.retries.get_or_create(label).inc_by(u64::from(retries));
            let failovers = served
                .iter()
                .filter(|s| s.retries > 0 && s.upstream.is_some())
                .count() as u64;
            m.failovers.get_or_create(label).inc_by(failovers);
        }
    }
}
