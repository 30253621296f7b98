//! A fast fixture JSON-RPC upstream for benchmarks: answers every request from memory.
//!
//! `fixture-upstream 127.0.0.1:9001 [chain_id] [--delay-ms N] [--proof FILE]` serves
//! `eth_chainId` (default 1), `eth_getBlockByNumber` (a fixed block 0x10), and anything else
//! with `"0x1"`, echoing the id. `--delay-ms` holds every answer that long (a remote provider's
//! latency). `--proof FILE` (a recorded `{stateRoot, proof}` such as
//! `crates/keel-verify/tests/fixtures/contract_proof.json`) makes every block (the head is
//! 0x1000000) carry that state root and `eth_getProof` / `eth_getBalance` answer with the
//! recorded account, so proof mode verifies at any block. HTTP/1.1 keep-alive; one multi-threaded runtime.
#![allow(clippy::print_stderr)]

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned())
        .parse()
        .expect("address");
    let mut chain_id: u64 = 1;
    let mut delay = Duration::ZERO;
    let mut proof: Option<String> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--delay-ms" => {
                let ms = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--delay-ms N");
                delay = Duration::from_millis(ms);
            }
            "--proof" => proof = Some(args.next().expect("--proof FILE")),
            id => chain_id = id.parse().expect("chain id"),
        }
    }
    let chain_hex = leak(format!("\"0x{chain_id:x}\""));
    let answers: &'static Answers = Box::leak(Box::new(Answers::new(chain_hex, proof.as_deref())));
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    eprintln!("fixture-upstream listening on {addr} (chain id {chain_id})");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(req, answers, delay));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Every result the fixture gives, as raw JSON.
struct Answers {
    chain_id: &'static str,
    block: &'static str,
    proof: &'static str,
    balance: &'static str,
}

impl Answers {
    fn new(chain_id: &'static str, proof_file: Option<&str>) -> Self {
        let hash = "0x00000000000000000000000000000000000000000000000000000000000000aa";
        let Some(path) = proof_file else {
            return Self {
                chain_id,
                block: leak(format!(r#"{{"number":"0x10","hash":"{hash}"}}"#)),
                proof: "\"0x1\"",
                balance: "\"0x1\"",
            };
        };
        let text = std::fs::read_to_string(path).expect("read the proof file");
        let mut case: serde_json::Value = serde_json::from_str(&text).expect("proof file JSON");
        let root = case["stateRoot"].as_str().expect("stateRoot").to_owned();
        // Balance reads ask for no storage slot.
        case["proof"]["storageProof"] = serde_json::Value::Array(Vec::new());
        Self {
            chain_id,
            // A high head, so that any block number a benchmark asks for is "there".
            block: leak(format!(
                r#"{{"number":"0x1000000","hash":"{hash}","stateRoot":"{root}"}}"#
            )),
            balance: leak(case["proof"]["balance"].to_string()),
            proof: leak(case["proof"].to_string()),
        }
    }
}

async fn answer(
    req: Request<Incoming>,
    answers: &'static Answers,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let text = std::str::from_utf8(&body).unwrap_or("");
    let id = field(text, "\"id\":").unwrap_or("null");
    let result = if text.contains("\"eth_chainId\"") {
        answers.chain_id
    } else if text.contains("\"eth_getBlockByNumber\"") {
        answers.block
    } else if text.contains("\"eth_getProof\"") {
        answers.proof
    } else if text.contains("\"eth_getBalance\"") {
        answers.balance
    } else {
        "\"0x1\""
    };
    let out = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out)))
        .unwrap_or_default())
}

/// The raw JSON value after `key` (up to the next `,` or `}` at depth 0; ids are scalars).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = text[start..].trim_start();
    let end = rest.find([',', '}'])?;
    Some(rest[..end].trim())
}
