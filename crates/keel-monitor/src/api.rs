//! HTTP surfaces of the monitor.
//!
//! - the **status page** (its own listener, may be public): `GET /` (HTML), `GET /status.json`;
//!   read-only, every answer with a strict Content-Security-Policy (`default-src 'none'`,
//!   inline style only, no script, no external request), `X-Content-Type-Options: nosniff`,
//!   `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`; at most `max_connections`
//!   requests at once, each answered within `request_timeout`; request bodies are refused.
//! - the **admin API** (mounted under `/monitor` on the admin listener, loopback by default):
//!   alerts, acknowledgements, silences, incidents, history. Writes need
//!   `Content-Type: application/json` and no foreign `Origin` (a hostile page in the
//!   operator's browser cannot post a form or a simple request to it).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use keel_config::monitor::StatusPageConfig;
use serde::Deserialize;

use crate::error::MonitorError;
use crate::service::{IncidentChange, MonitorHandle, NewIncident, SilenceRequest};

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[derive(Clone)]
struct PageState {
    handle: MonitorHandle,
    permits: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

async fn limits(State(s): State<PageState>, req: Request, next: Next) -> Response {
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v != "0")
        || req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "this page takes no request body\n",
        )
            .into_response();
    }
    let Ok(_permit) = s.permits.clone().try_acquire_owned() else {
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    match tokio::time::timeout(s.timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timed out\n").into_response(),
    }
}

/// The status page router.
pub fn status_router(handle: MonitorHandle, cfg: &StatusPageConfig) -> Router {
    let state = PageState {
        handle,
        permits: Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1))),
        timeout: cfg.request_timeout,
    };
    Router::new()
        .route("/", get(page))
        .route("/status.json", get(json_doc))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn_with_state(state.clone(), limits))
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(0))
        .with_state(state)
}

async fn page(State(s): State<PageState>) -> Response {
    let html = crate::status::render_html(&s.handle.status());
    let mut r = html.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

async fn json_doc(State(s): State<PageState>) -> Response {
    let mut r = Json(s.handle.status().as_ref().clone()).into_response();
    // Embeddable from other sites (read-only, public data).
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// An API error: the message is for the operator (no internals, no secrets).
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<MonitorError> for ApiError {
    fn from(e: MonitorError) -> Self {
        match e {
            MonitorError::Command(m) => Self(StatusCode::BAD_REQUEST, m),
            MonitorError::NoIncident(id) => {
                Self(StatusCode::NOT_FOUND, format!("no incident {id}"))
            }
            MonitorError::Stopped => Self(
                StatusCode::SERVICE_UNAVAILABLE,
                "the monitor is not running".into(),
            ),
            other => {
                tracing::error!(error = %other, "monitor API failed");
                Self(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see keel's log".into(),
                )
            }
        }
    }
}

/// Refuses writes a browser page could forge: they must be JSON and carry no foreign Origin.
async fn guard_writes(headers: HeaderMap, req: Request, next: Next) -> Response {
    if req.method() != axum::http::Method::GET {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send Content-Type: application/json".into(),
            )
            .into_response();
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let ok = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .is_some_and(|(_, rest)| rest == host);
            if !ok {
                return ApiError(
                    StatusCode::FORBIDDEN,
                    "cross-origin requests are refused".into(),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// The admin API (mount under `/monitor`).
pub fn admin_router(handle: MonitorHandle) -> Router {
    Router::new()
        .route("/alerts", get(alerts))
        .route("/alerts/ack", post(ack))
        .route("/silences", get(silences).post(add_silence))
        .route("/silences/{id}", delete(expire_silence))
        .route("/incidents", get(incidents).post(open_incident))
        .route("/incidents/{id}/updates", post(update_incident))
        .route("/history", get(history))
        .route("/audit", get(audit))
        .layer(middleware::from_fn(guard_writes))
        .layer(DefaultBodyLimit::max(64 << 10))
        .with_state(handle)
}

async fn alerts(State(h): State<MonitorHandle>) -> Result<Response, ApiError> {
    Ok(Json(h.alerts().await?).into_response())
}

#[derive(Deserialize)]
struct AckBody {
    target: String,
    by: String,
    #[serde(default)]
    comment: String,
}

async fn ack(State(h): State<MonitorHandle>, Json(b): Json<AckBody>) -> Result<Response, ApiError> {
    if b.by.trim().is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "`by` is required".into()));
    }
    Ok(Json(h.ack(&b.target, &b.by, &b.comment).await?).into_response())
}

async fn silences(State(h): State<MonitorHandle>) -> Result<Response, ApiError> {
    Ok(Json(h.silences().await?).into_response())
}

async fn add_silence(
    State(h): State<MonitorHandle>,
    Json(b): Json<SilenceRequest>,
) -> Result<Response, ApiError> {
    Ok((StatusCode::CREATED, Json(h.silence(b).await?)).into_response())
}

async fn expire_silence(
    State(h): State<MonitorHandle>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(h.unsilence(&id).await?).into_response())
}

#[derive(Deserialize)]
struct Days {
    #[serde(default = "fourteen")]
    days: i64,
}

fn fourteen() -> i64 {
    14
}

fn now() -> i64 {
    crate::clock::Clock::now_ms(&crate::clock::SystemClock)
}

async fn incidents(
    State(h): State<MonitorHandle>,
    Query(d): Query<Days>,
) -> Result<Response, ApiError> {
    Ok(Json(h.incidents(now(), d.days.clamp(1, 3650)).await?).into_response())
}

async fn open_incident(
    State(h): State<MonitorHandle>,
    Json(b): Json<NewIncident>,
) -> Result<Response, ApiError> {
    Ok((StatusCode::CREATED, Json(h.open_incident(b).await?)).into_response())
}

async fn update_incident(
    State(h): State<MonitorHandle>,
    Path(id): Path<i64>,
    Json(b): Json<IncidentChange>,
) -> Result<Response, ApiError> {
    Ok(Json(h.update_incident(id, b).await?).into_response())
}

#[derive(Deserialize)]
struct Limit {
    #[serde(default = "hundred")]
    limit: i64,
}

fn hundred() -> i64 {
    100
}

async fn history(
    State(h): State<MonitorHandle>,
    Query(l): Query<Limit>,
) -> Result<Response, ApiError> {
    Ok(Json(h.history(l.limit.clamp(1, 10_000)).await?).into_response())
}

async fn audit(
    State(h): State<MonitorHandle>,
    Query(l): Query<Limit>,
) -> Result<Response, ApiError> {
    let rows: Vec<serde_json::Value> = h
        .audit(l.limit.clamp(1, 10_000))
        .await?
        .into_iter()
        .map(|(at, action, detail, outcome)| {
            serde_json::json!({"at": crate::clock::rfc3339(at), "action": action, "detail": detail, "outcome": outcome})
        })
        .collect();
    Ok(Json(rows).into_response())
}
