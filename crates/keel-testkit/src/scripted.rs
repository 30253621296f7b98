//! A scripted upstream: an HTTP JSON-RPC server whose answer to each request is chosen by a
//! test's function, for faults a real node never makes (a huge or endless answer, a declared
//! length that never comes, a reth-style error for chosen requests), passing the rest to a real
//! node behind it.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    Request, Response,
    body::{Body, Frame, Incoming},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// What a [`Scripted`] upstream does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Pass it to the node behind (an HTTP 502 when there is none).
    Forward,
    /// Answer with this body (HTTP 200, `application/json`).
    Body(String),
    /// HTTP 200 with a body that never ends: the start of a JSON-RPC answer, then 64 KiB chunks
    /// of `a` for as long as the client reads.
    Endless,
    /// HTTP 200 declaring a `content-length` of this many bytes, then sending nothing.
    Declared(u64),
}

impl Reply {
    /// A JSON-RPC error answer to `request` (its id echoed).
    pub fn error(request: &Value, code: i64, message: &str) -> Self {
        Self::Body(
            json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": code, "message": message}})
                .to_string(),
        )
    }

    /// A JSON-RPC result answer to `request` (its id echoed).
    pub fn result(request: &Value, result: Value) -> Self {
        Self::Body(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}).to_string())
    }
}

type Script = dyn Fn(&Value) -> Reply + Send + Sync;

#[derive(Debug, Default)]
struct Stats {
    /// Bytes of endless bodies handed to the connection (sent or in its buffers).
    endless_sent: AtomicU64,
    /// Endless or declared bodies not yet dropped (their connection is still open).
    open: AtomicU64,
    /// Endless or declared bodies dropped (their connection closed).
    closed: AtomicU64,
}

/// A scripted upstream on a free loopback port; stops when dropped.
pub struct Scripted {
    addr: SocketAddr,
    stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    /// Serves every request with `script(request)`; [`Reply::Forward`] passes the request to
    /// `behind` (an HTTP JSON-RPC URL), when given.
    pub async fn start(
        behind: Option<&str>,
        script: impl Fn(&Value) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let script: Arc<Script> = Arc::new(script);
        let behind = behind.map(str::to_owned);
        let client = reqwest::Client::new();
        let task_stats = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (script, behind, client, stats) = (
                    Arc::clone(&script),
                    behind.clone(),
                    client.clone(),
                    Arc::clone(&task_stats),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        answer(
                            req,
                            Arc::clone(&script),
                            behind.clone(),
                            client.clone(),
                            Arc::clone(&stats),
                        )
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, stats, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes of [`Reply::Endless`] bodies handed to connections so far (what the client read,
    /// plus what sits in socket buffers).
    pub fn endless_bytes_sent(&self) -> u64 {
        self.stats.endless_sent.load(Ordering::Relaxed)
    }

    /// Endless or declared bodies still being served (their client has not closed them).
    pub fn open_bodies(&self) -> u64 {
        self.stats.open.load(Ordering::Relaxed)
    }

    /// Endless or declared bodies whose connection was closed.
    pub fn closed_bodies(&self) -> u64 {
        self.stats.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type AnyBody = BoxBody<Bytes, Infallible>;

async fn answer(
    req: Request<Incoming>,
    script: Arc<Script>,
    behind: Option<String>,
    client: reqwest::Client,
    stats: Arc<Stats>,
) -> Result<Response<AnyBody>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let json = |body: AnyBody| {
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        resp
    };
    Ok(match script(&request) {
        Reply::Body(text) => json(full(Bytes::from(text))),
        Reply::Endless => json(Held::endless(stats).boxed()),
        Reply::Declared(n) => {
            let mut resp = json(Held::silent(stats).boxed());
            resp.headers_mut()
                .insert(hyper::header::CONTENT_LENGTH, n.into());
            resp
        }
        Reply::Forward => {
            let answer = match &behind {
                Some(url) => client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .ok(),
                None => None,
            };
            match answer {
                Some(r) => json(full(r.bytes().await.unwrap_or_default())),
                None => {
                    let mut resp = Response::new(full(Bytes::new()));
                    *resp.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                    resp
                }
            }
        }
    })
}

fn full(b: Bytes) -> AnyBody {
    Full::new(b).boxed()
}

/// 64 KiB of `a`.
static CHUNK: [u8; 65536] = [b'a'; 65536];

/// A body held open: endless (`a` forever) or silent (nothing ever). Counted in [`Stats`].
struct Held {
    stats: Arc<Stats>,
    endless: bool,
    started: bool,
}

impl Held {
    fn endless(stats: Arc<Stats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Self {
            stats,
            endless: true,
            started: false,
        }
    }

    fn silent(stats: Arc<Stats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Self {
            stats,
            endless: false,
            started: false,
        }
    }
}

impl Body for Held {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.endless {
            // Never wakes: the connection is held until the client gives up.
            return Poll::Pending;
        }
        let chunk = if self.started {
            Bytes::from_static(&CHUNK)
        } else {
            self.started = true;
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":""#)
        };
        self.stats
            .endless_sent
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
    }
}
