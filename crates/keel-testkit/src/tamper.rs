//! A lying upstream for verification tests: an HTTP proxy in front of a real node that rewrites
//! one kind of account state ([`Lie`]) in plain answers and in `eth_getProof` answers alike.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// What a [`Tamper`] proxy lies about.
#[derive(Debug, Clone)]
pub enum Lie {
    /// `eth_getBalance` results and proof `balance`s become this quantity.
    Balance(String),
    /// `eth_getTransactionCount` results and proof `nonce`s become this quantity.
    Nonce(String),
    /// `eth_getCode` results get one more byte (`00`) at the end.
    Code,
    /// `eth_getStorageAt` results become this value (as a 32-byte word) and every proven
    /// storage `value` this quantity.
    Storage(String),
    /// Blocks from `eth_getBlockByNumber` claim this `number`, and `eth_blockNumber` answers it
    /// (a node claiming a far-future head).
    Head(String),
    /// The block `eth_getBlockByNumber("latest")` returns claims this `stateRoot`: the head
    /// tracker sees the lie, a request for the block by number does not.
    HeadStateRoot(String),
    /// Answers to `method` (except those asking for `latest`, so head polls stay honest) carry
    /// `key` twice: first with `value` (raw JSON), then with the node's own value. `key` is
    /// `result` for the top level, else a key of an object result. Parsers that keep the last
    /// key see the truth, those that keep the first see `value`.
    Duplicate {
        /// The JSON-RPC method whose answers are altered.
        method: &'static str,
        /// The key written twice.
        key: &'static str,
        /// Its first value, raw JSON.
        value: String,
    },
    /// Answers to `method` become JSON-RPC error -32601 "Method not found" (a node that does
    /// not serve it, as Hardhat does not serve `eth_getProof`).
    Unsupported(&'static str),
}

/// A tampering proxy on a free loopback port; stops when dropped.
pub struct Tamper {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Tamper {
    /// Proxies to `upstream` (an HTTP JSON-RPC URL), answering every balance with `fake`
    /// (a quantity such as `"0x1"`).
    pub async fn start(upstream: &str, fake: &str) -> Self {
        Self::lying(upstream, Lie::Balance(fake.to_owned())).await
    }

    /// Proxies to `upstream`, telling `lie` in every answer it concerns.
    pub async fn lying(upstream: &str, lie: Lie) -> Self {
        Self::spawn(upstream, Some(lie), Duration::ZERO).await
    }

    /// An honest proxy: passes every answer through unchanged.
    pub async fn honest(upstream: &str) -> Self {
        Self::spawn(upstream, None, Duration::ZERO).await
    }

    /// An honest proxy that holds every answer for `delay` (so a router prefers others).
    pub async fn slow(upstream: &str, delay: Duration) -> Self {
        Self::spawn(upstream, None, delay).await
    }

    /// A liar that holds its answers to `method` for `delay` (head polls pass at once).
    pub async fn slow_liar(
        upstream: &str,
        lie: Lie,
        method: &'static str,
        delay: Duration,
    ) -> Self {
        Self::start_with(upstream, Some(lie), delay, Some(method)).await
    }

    /// An honest proxy that holds answers to `method` for `delay` and passes everything else
    /// (head polls included) at once: it looks fast until asked `method`.
    pub async fn slow_for(upstream: &str, method: &'static str, delay: Duration) -> Self {
        Self::start_with(upstream, None, delay, Some(method)).await
    }

    async fn spawn(upstream: &str, fake: Option<Lie>, delay: Duration) -> Self {
        Self::start_with(upstream, fake, delay, None).await
    }

    async fn start_with(
        upstream: &str,
        fake: Option<Lie>,
        delay: Duration,
        delay_only: Option<&'static str>,
    ) -> Self {
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
                        forward(
                            req,
                            client.clone(),
                            upstream.clone(),
                            fake.clone(),
                            (delay, delay_only),
                        )
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
    fake: Option<Lie>,
    (delay, delay_only): (Duration, Option<&'static str>),
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if delay_only.is_none_or(|m| request["method"] == m) {
        tokio::time::sleep(delay).await;
    }
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
    if let (Lie::Duplicate { .. } | Lie::Unsupported(_), Value::Object(_)) = (&fake, &reply) {
        let body = rewrite(&request, &reply, &fake).unwrap_or_else(|| reply.to_string());
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }
    match (&request, &mut reply) {
        (Value::Array(reqs), Value::Array(replies)) => {
            for r in replies {
                let q = reqs
                    .iter()
                    .find(|q| q["id"] == r["id"])
                    .unwrap_or(&Value::Null);
                tamper(q, r, &fake);
            }
        }
        (q, r) => tamper(q, r, &fake),
    }
    let mut resp = Response::new(Full::new(Bytes::from(reply.to_string())));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The body text for a [`Lie::Duplicate`] or [`Lie::Unsupported`] answer to `request`, or
/// `None` when the lie does not concern it. Written by hand: a `Value` cannot hold a key twice.
fn rewrite(request: &Value, reply: &Value, lie: &Lie) -> Option<String> {
    let method = request["method"].as_str().unwrap_or("");
    match lie {
        Lie::Unsupported(m) if *m == method => Some(
            serde_json::json!({
                "jsonrpc": "2.0",
                "id": reply["id"],
                "error": {"code": -32601, "message": "Method not found"},
            })
            .to_string(),
        ),
        Lie::Duplicate {
            method: m,
            key,
            value,
        } if *m == method && request["params"][0] != "latest" => {
            let result = reply.get("result")?;
            let id = reply["id"].to_string();
            if *key == "result" {
                return Some(format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{value},"result":{result}}}"#
                ));
            }
            let object = result.as_object()?;
            let rest = serde_json::to_string(object).ok()?;
            let rest = rest.strip_prefix('{')?;
            let sep = if object.is_empty() { "" } else { "," };
            Some(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{{}:{value}{sep}{rest}}}"#,
                serde_json::to_string(key).ok()?
            ))
        }
        _ => None,
    }
}

fn tamper(request: &Value, reply: &mut Value, lie: &Lie) {
    let method = request["method"].as_str().unwrap_or("");
    if reply.get("result").is_none_or(Value::is_null) {
        return;
    }
    let result = &mut reply["result"];
    match (lie, method) {
        (Lie::Balance(v), "eth_getBalance") | (Lie::Nonce(v), "eth_getTransactionCount") => {
            *result = Value::String(v.clone());
        }
        (Lie::Head(v), "eth_blockNumber") => *result = Value::String(v.clone()),
        (Lie::Head(v), "eth_getBlockByNumber") => result["number"] = Value::String(v.clone()),
        (Lie::HeadStateRoot(v), "eth_getBlockByNumber") if request["params"][0] == "latest" => {
            result["stateRoot"] = Value::String(v.clone());
        }
        (Lie::Balance(v), "eth_getProof") => result["balance"] = Value::String(v.clone()),
        (Lie::Nonce(v), "eth_getProof") => result["nonce"] = Value::String(v.clone()),
        (Lie::Code, "eth_getCode") => {
            let code = result.as_str().unwrap_or("0x").to_owned();
            *result = Value::String(format!("{code}00"));
        }
        (Lie::Storage(v), "eth_getStorageAt") => {
            let digits = v.trim_start_matches("0x");
            *result = Value::String(format!("0x{digits:0>64}"));
        }
        (Lie::Storage(v), "eth_getProof") => {
            if let Some(slots) = result["storageProof"].as_array_mut() {
                for s in slots {
                    s["value"] = Value::String(v.clone());
                }
            }
        }
        _ => {}
    }
}
