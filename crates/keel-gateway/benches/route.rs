//! In-process cost of the gateway's routing path for one proxied request, without network:
//! envelope parse → policy → verification mode (none: an unverified read) → route → upstream
//! pick → upstream body → reply parse → answer → metrics. Run: `cargo bench -p keel-gateway --bench route` (divan prints time and allocations).
#![allow(missing_docs, clippy::unwrap_used)]

use keel_chain::Chain;
use keel_config::{ChainConfig, SecretUrl, UpstreamConfig, VerifyMode};
use keel_gateway::{
    GatewayMetrics,
    jsonrpc::{self, Body, Reply},
    metrics::RequestLabels,
    policy::{self, Route},
};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","latest"]}"#;
const REPLY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":"0x21e19e0c9bab2400000"}"#;

fn chain() -> Chain {
    let ups = (0..3)
        .map(|i| {
            UpstreamConfig::new(
                format!("u{i}"),
                SecretUrl::parse(&format!("http://127.0.0.1:{}", 9000 + i)).unwrap(),
            )
        })
        .collect();
    let mut cfg = ChainConfig::new("bench", 1, ups);
    // The unverified read path (account reads would be proven by default).
    cfg.verify.account = Some(VerifyMode::None);
    let chain = Chain::new(cfg).unwrap();
    for u in chain.upstreams() {
        u.set_chain_check(1, true);
    }
    chain
}

fn main() {
    divan::main();
}

#[divan::bench]
fn proxied_request_path(b: divan::Bencher) {
    let chain = chain();
    let metrics = GatewayMetrics::default();
    b.bench_local(|| {
        let Ok(Body::Single(raw)) = jsonrpc::parse_body(divan::black_box(REQUEST)) else {
            unreachable!()
        };
        let req = jsonrpc::parse_request(raw).unwrap();
        policy::check(&chain, &req.method).unwrap();
        let mode = chain
            .config()
            .verify
            .mode_for(&req.method, chain.upstreams().len());
        assert_eq!(mode, VerifyMode::None);
        let Route::Read { need, .. } = policy::route(&chain, &req.method, req.params) else {
            unreachable!()
        };
        let up = chain.select(need, &[]).unwrap();
        let body = bytes::Bytes::from(jsonrpc::upstream_body(&req));
        let reply: Reply<'_> = serde_json::from_slice(divan::black_box(REPLY)).unwrap();
        let mut out = Vec::with_capacity(256);
        jsonrpc::write_answer(&mut out, req.id, "result", reply.result.unwrap());
        metrics
            .requests
            .get_or_create(&RequestLabels {
                chain: chain.name().to_owned(),
                method: "eth_getBalance",
                outcome: "ok",
            })
            .inc();
        divan::black_box((up, body, out));
    });
}
