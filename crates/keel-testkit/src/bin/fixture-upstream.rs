//! A fast fixture JSON-RPC upstream for benchmarks: answers every request from memory.
//!
//! `fixture-upstream 127.0.0.1:9001 [chain_id]` serves `eth_chainId` (default 1),
//! `eth_getBlockByNumber` (a fixed block 0x10), and anything else with `"0x1"`, echoing the id.
//! HTTP/1.1 keep-alive; one multi-threaded runtime.
#![allow(clippy::print_stderr)]

use std::{convert::Infallible, net::SocketAddr};

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
    let chain_id: u64 = args.next().map_or(1, |s| s.parse().expect("chain id"));
    let chain_hex: &'static str = Box::leak(format!("\"0x{chain_id:x}\"").into_boxed_str());
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    eprintln!("fixture-upstream listening on {addr} (chain id {chain_id})");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(req, chain_hex));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    chain_hex: &'static str,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = std::str::from_utf8(&body).unwrap_or("");
    let id = field(text, "\"id\":").unwrap_or("null");
    let result = if text.contains("\"eth_chainId\"") {
        chain_hex
    } else if text.contains("\"eth_getBlockByNumber\"") {
        r#"{"number":"0x10","hash":"0x00000000000000000000000000000000000000000000000000000000000000aa"}"#
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
