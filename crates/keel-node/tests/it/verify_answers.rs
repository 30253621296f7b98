//! Upstream answers that mean different things to different parsers: a key written twice is a
//! failed answer from that upstream, never a vote, and never served.

use std::time::Duration;

use keel_config::VerifyMode;
use keel_testkit::{DEV_ADDR_0, Lie, Tamper, eventually, rpc};
use serde_json::{Value, json};

use crate::{
    support::Running,
    verify::{anvils, start},
};

/// POSTs one request (operator-verified: no header) and returns `x-keel-verified` and the raw
/// body text.
async fn call_raw(url: &str, method: &str, params: Value) -> (String, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(json!({"jsonrpc": "2.0", "id": 3, "method": method, "params": params}).to_string())
        .send()
        .await
        .unwrap();
    let verified = resp
        .headers()
        .get("x-keel-verified")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (verified, resp.text().await.unwrap())
}

/// Whether `text` holds a JSON object with a key written twice, at any depth.
fn has_duplicate_key(text: &str) -> bool {
    matches!(
        keel_verify::json::reply(text.as_bytes()),
        Err(keel_verify::VerifyError::DuplicateKey { .. })
    )
}

/// The health failures `/status` counts for upstream `name`.
async fn failures(r: &Running, name: &str) -> u64 {
    r.status().await.chains[0]
        .upstreams
        .iter()
        .find(|u| u["name"] == name)
        .and_then(|u| u["health"]["failures"].as_u64())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_with_a_duplicated_key_is_a_failed_answer_never_served() {
    let (_nodes, urls) = anvils().await;
    // The liar answers first (the honest nodes are slowed down) and writes a key twice: a lie
    // first, the truth last. Keeping the last key, it agrees with the honest nodes; keeping
    // the first, a client reads the lie. Once at the top level, once inside the result.
    let cases = [
        (
            "eth_getBalance",
            json!([DEV_ADDR_0, "0x1"]),
            "result",
            "\"0x1\"".to_owned(),
        ),
        (
            "eth_getBlockByNumber",
            json!(["0x1", false]),
            "hash",
            format!("\"0x{}\"", "66".repeat(32)),
        ),
    ];
    for (method, params, key, value) in cases {
        let honest = rpc(&urls[0], method, params.clone()).await["result"].clone();
        let slow = Duration::from_millis(300);
        let (ha, hb) = (
            Tamper::slow_for(&urls[0], method, slow).await,
            Tamper::slow_for(&urls[1], method, slow).await,
        );
        let lie = Lie::Duplicate { method, key, value };
        let liar = Tamper::lying(&urls[2], lie).await;
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let lied = reqwest::Client::new()
            .post(liar.url())
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(has_duplicate_key(&lied), "the proxy duplicates: {lied}");
        let (ua, ub, ul) = (ha.url(), hb.url(), liar.url());
        let r = start(&[("a", &ua), ("b", &ub), ("liar", &ul)], |c| {
            let v = &mut c.chains[0].verify;
            v.account = Some(VerifyMode::Quorum);
            v.methods
                .insert("eth_getBlockByNumber".to_owned(), VerifyMode::Quorum);
        })
        .await;
        // The slowed head polls report block 1 too.
        assert!(
            eventually(Duration::from_secs(10), async || {
                r.status().await.chains[0]
                    .upstreams
                    .iter()
                    .all(|u| u["head"] == 1)
            })
            .await
        );
        let url = r.rpc_url("dev");
        let before = failures(&r, "liar").await;
        for _ in 0..3 {
            let (verified, text) = call_raw(&url, method, params.clone()).await;
            assert!(!has_duplicate_key(&text), "{method} served: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["result"], honest, "{text}");
            assert_eq!(verified, "quorum:2/3", "{method}");
        }
        // The liar's answers count as failures of that upstream.
        assert!(failures(&r, "liar").await >= before + 3, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_with_a_duplicated_state_root_is_no_vote_for_it() {
    let (_nodes, urls) = anvils().await;
    // Blocks 2 and 3 mined at once on every node (same timestamps, so the same state roots):
    // block 2 was never a head, so its root is not observed by the head polls and proof mode
    // asks the upstreams for its header.
    for u in &urls {
        rpc(u, "anvil_mine", json!(["0x2", "0x1"])).await;
    }
    let params = json!([DEV_ADDR_0, "0x2"]);
    let honest = rpc(&urls[0], "eth_getBalance", params.clone()).await["result"].clone();
    let header = |u: &str| {
        let u = u.to_owned();
        async move { rpc(&u, "eth_getBlockByNumber", json!(["0x2", false])).await["result"].clone() }
    };
    assert_eq!(
        header(&urls[0]).await["stateRoot"],
        header(&urls[2]).await["stateRoot"]
    );
    let (ha, hb) = (
        Tamper::slow_for(&urls[0], "eth_getBlockByNumber", Duration::from_millis(300)).await,
        Tamper::slow_for(&urls[1], "eth_getBlockByNumber", Duration::from_millis(300)).await,
    );
    let liar = Tamper::lying(
        &urls[2],
        Lie::Duplicate {
            method: "eth_getBlockByNumber",
            key: "stateRoot",
            value: format!("\"0x{}\"", "66".repeat(32)),
        },
    )
    .await;
    let (ua, ub, ul) = (ha.url(), hb.url(), liar.url());
    let r = start(&[("a", &ua), ("b", &ub), ("liar", &ul)], |c| {
        c.chains[0].verify.account = Some(VerifyMode::Proof);
    })
    .await;
    // The slowed head polls report block 3 too.
    assert!(
        eventually(Duration::from_secs(10), async || {
            r.status().await.chains[0]
                .upstreams
                .iter()
                .all(|u| u["head"] == 3)
        })
        .await
    );
    let url = r.rpc_url("dev");
    let before = failures(&r, "liar").await;
    let (verified, text) = call_raw(&url, "eth_getBalance", params.clone()).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["result"], honest, "{text}");
    assert_eq!(verified, "proof:0x2");
    // The root came from the upstreams' headers, not from the head polls.
    assert_eq!(crate::verify_policy::roots(&r, "fetched").await, 1.0);
    assert!(
        eventually(Duration::from_secs(5), async || {
            failures(&r, "liar").await > before
        })
        .await,
        "the liar's header was not counted as a failure"
    );
}
