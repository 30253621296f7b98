//! A lying upstream for verification tests: an HTTP proxy in front of a real node that rewrites
//! the `result` of `eth_getBalance` and the `balance` in `eth_getProof` answers.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// A tampering proxy on a free loopback port; stops when dropped.
pub struct Tamper {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Tamper {
    /// Proxies to `upstream` (an HTTP JSON-RPC URL), answering every balance with `fake`
    /// (a quantity such as `"0x1"`).
    pub async fn start(upstream: &str, fake: &str) -> Self {
        Self::spawn(upstream, Some(fake.to_owned()), Duration::ZERO).await
    }

    /// An honest proxy: passes every answer through unchanged.
    pub async fn honest(upstream: &str) -> Self {
        Self::spawn(upstream, None, Duration::ZERO).await
    }

    /// An honest proxy that holds every answer for `delay` (so a router prefers others).
    pub async fn slow(upstream: &str, delay: Duration) -> Self {
        Self::spawn(upstream, None, delay).await
    }

    async fn spawn(upstream: &str, fake: Option<String>, delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = upstream.to_owned();
        let client = reqwest::Client::new();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (upstream, fake, client) = (upstream.clone(), fake.clone(), client.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        forward(req, client.clone(), upstream.clone(), fake.clone(), delay)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Tamper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    req: Request<Incoming>,
    client: reqwest::Client,
    upstream: String,
    fake: Option<String>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    tokio::time::sleep(delay).await;
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = client
        .post(&upstream)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let text = match answer {
        Ok(r) => r.bytes().await.unwrap_or_default(),
        Err(_) => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            return Ok(resp);
        }
    };
    let (Some(fake), Ok(mut reply)) = (fake, serde_json::from_slice::<Value>(&text)) else {
        return Ok(Response::new(Full::new(text)));
    };
    match (&request, &mut reply) {
        (Value::Array(reqs), Value::Array(replies)) => {
            for r in replies {
                let method = reqs
                    .iter()
                    .find(|q| q["id"] == r["id"])
                    .and_then(|q| q["method"].as_str())
                    .unwrap_or("");
                tamper(method, r, &fake);
            }
        }
        (q, r) => tamper(q["method"].as_str().unwrap_or(""), r, &fake),
    }
    let mut resp = Response::new(Full::new(Bytes::from(reply.to_string())));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn tamper(method: &str, reply: &mut Value, fake: &str) {
    match method {
        "eth_getBalance" if reply.get("result").is_some() => {
            reply["result"] = Value::String(fake.to_owned());
        }
        "eth_getProof" if reply["result"].get("balance").is_some() => {
            reply["result"]["balance"] = Value::String(fake.to_owned());
        }
        _ => {}
    }
}
