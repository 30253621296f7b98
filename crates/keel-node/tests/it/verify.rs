//! Verified answers (`x-keel-verify`, `[chains.verify]`) against real anvil nodes, honest and
//! lying (a tampering proxy rewrites balances).

use std::{path::Path, time::Duration};

use keel_config::{Config, VerifyMode};
use keel_testkit::{Anvil, DEV_ADDR_0, DEV_ADDR_1, Tamper, config_for, eventually, rpc};
use serde_json::{Value, json};

use crate::support::Running;

const FAKE: &str = "0x1";

/// A contract every anvil of [`anvils`] holds: code `CODE`, slot 0 = 0x2a.
pub(crate) const CONTRACT: &str = "0x00000000000000000000000000000000c0ffee01";
const CODE: &str = "0x602a60005260206000f3";

/// POSTs one request with `x-keel-verify: mode`; returns status, `x-keel-verified` and the JSON.
pub(crate) async fn vcall(
    url: &str,
    mode: &str,
    method: &str,
    params: Value,
) -> (u16, String, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-keel-verify", mode)
        .body(json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let verified = resp
        .headers()
        .get("x-keel-verified")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, verified, resp.json().await.unwrap())
}

pub(crate) fn evidence(data_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(data_dir.join("evidence").join("evidence.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Asserts that `r` recorded no evidence: `why` says whom it would wrongly blame.
pub(crate) fn assert_no_evidence(r: &Running, why: &str) {
    let records = evidence(r._dir.path());
    assert!(records.is_empty(), "{why}: {records:?}");
}

pub(crate) async fn ejections(r: &Running, name: &str) -> u64 {
    let s = r.status().await;
    s.chains
        .iter()
        .flat_map(|c| &c.upstreams)
        .find(|u| u["name"] == name)
        .and_then(|u| u["health"]["ejections"].as_u64())
        .unwrap()
}

/// Three anvils holding [`CONTRACT`] that mined one empty block with the same timestamp: anvil's genesis header
/// carries the empty trie's root as its stateRoot, so proofs can only be checked from block 1
/// on; and the beacon-roots contract stores the block time, so independent anvils reach the
/// same state root only when their blocks have the same timestamps (and parent hashes).
pub(crate) async fn anvils() -> ([Anvil; 3], Vec<String>) {
    // Same genesis time, so the same genesis hash (block 1 stores its parent's hash).
    let args = ["--timestamp", "1700000000"];
    let nodes = [
        Anvil::start(&args).await,
        Anvil::start(&args).await,
        Anvil::start(&args).await,
    ];
    let urls: Vec<String> = nodes.iter().map(Anvil::url).collect();
    for u in &urls {
        rpc(u, "anvil_setCode", json!([CONTRACT, CODE])).await;
        rpc(
            u,
            "anvil_setStorageAt",
            json!([CONTRACT, "0x0", format!("0x{:064x}", 0x2a)]),
        )
        .await;
        rpc(u, "evm_setNextBlockTimestamp", json!([4_000_000_000u64])).await;
        rpc(u, "evm_mine", json!([])).await;
    }
    let roots: Vec<Value> = state_roots(&urls).await;
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "{roots:?}");
    (nodes, urls)
}

pub(crate) async fn state_roots(urls: &[String]) -> Vec<Value> {
    let mut roots = Vec::new();
    for u in urls {
        let b = rpc(u, "eth_getBlockByNumber", json!(["0x1", false])).await;
        roots.push(b["result"]["stateRoot"].clone());
    }
    roots
}

pub(crate) async fn start(ups: &[(&str, &str)], edit: impl FnOnce(&mut Config)) -> Running {
    let mut c = config_for("dev", 31337, ups);
    edit(&mut c);
    let r = Running::start(c).await;
    r.ready().await;
    // Wait until every upstream is verified so that fan-outs reach all of them.
    assert!(
        eventually(Duration::from_secs(20), async || {
            let s = r.status().await;
            s.chains[0]
                .upstreams
                .iter()
                .all(|u| u["state"] == "healthy")
        })
        .await
    );
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn agreeing_upstreams_give_direct_values_and_say_how() {
    let (_nodes, urls) = anvils().await;
    let r = start(&[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])], |_| {}).await;
    let url = r.rpc_url("dev");
    let cases = [
        ("eth_getBalance", json!([DEV_ADDR_0, "latest"])),
        ("eth_getTransactionCount", json!([DEV_ADDR_0, "latest"])),
        ("eth_getCode", json!([DEV_ADDR_0, "latest"])),
        ("eth_getStorageAt", json!([DEV_ADDR_0, "0x0", "latest"])),
    ];
    for (method, params) in cases {
        let direct = rpc(&urls[0], method, params.clone()).await["result"].clone();
        let (s, v, q) = vcall(&url, "quorum", method, params.clone()).await;
        assert_eq!((s, &q["result"]), (200, &direct), "{method} quorum: {q}");
        assert!(v.starts_with("quorum:2/"), "{method}: {v}");
        let (s, v, p) = vcall(&url, "proof", method, params).await;
        assert_eq!((s, &p["result"]), (200, &direct), "{method} proof: {p}");
        assert_eq!(v, "proof:0x1", "{method}");
        assert_eq!(p["id"], 7);
    }
    // eth_getProof itself: the verified proof is served as the upstream sent it.
    let params = json!([DEV_ADDR_0, [format!("0x{:064x}", 0)], "0x1"]);
    let direct = rpc(&urls[0], "eth_getProof", params.clone()).await["result"].clone();
    let (s, v, p) = vcall(&url, "proof", "eth_getProof", params).await;
    assert_eq!((s, &p["result"]), (200, &direct), "{p}");
    assert_eq!(v, "proof:0x1");
    // Without the header nothing is verified (mode "none" by default).
    let (_, v, _) = vcall(&url, "none", "eth_blockNumber", json!([])).await;
    assert_eq!(v, "none");
    let (_, h, _) = crate::support::call(&url, "eth_chainId", json!([])).await;
    assert_eq!(h["x-keel-verified"], "none");
    // An invalid header value is a -32602 naming the header.
    let (_, _, e) = vcall(&url, "maybe", "eth_chainId", json!([])).await;
    assert_eq!(e["error"]["code"], -32602);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-keel-verify")
    );
    // Writes are never verified.
    let (_, v, w) = vcall(&url, "quorum", "eth_sendRawTransaction", json!(["0x00"])).await;
    assert_eq!(v, "none", "{w}");
    // Verified requests are counted.
    let metrics = crate::support::get_text(&r.admin("/metrics")).await;
    assert!(
        metrics.contains("keel_rpc_verified_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("keel_rpc_verify_extra_calls_total"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lying_upstream_is_outvoted_disproved_recorded_and_ejected() {
    let (_nodes, urls) = anvils().await;
    // The honest upstreams sit behind pass-through proxies too, so that latency does not keep
    // the router away from the liar (which is drawn first by weight).
    let (ha, hb) = (
        Tamper::honest(&urls[0]).await,
        Tamper::honest(&urls[1]).await,
    );
    let liar = Tamper::start(&urls[2], FAKE).await;
    let (ua, ub, liar_url) = (ha.url(), hb.url(), liar.url());
    let ups = [("a", ua.as_str()), ("b", &ub), ("liar", &liar_url)];
    // The checks are the operator's (a client's own checks never penalise: see
    // verify_client.rs): first proof mode, then quorum mode for account reads.
    let r = start(&ups, |c| {
        c.chains[0].verify.account = Some(VerifyMode::Proof)
    })
    .await;
    let url = r.rpc_url("dev");
    let dir = r._dir.path().to_owned();
    let balance = json!([DEV_ADDR_0, "latest"]);
    let honest = rpc(&urls[0], "eth_getBalance", balance.clone()).await["result"].clone();
    assert_ne!(honest, FAKE);
    let lied = rpc(&liar_url, "eth_getBalance", balance.clone()).await["result"].clone();
    assert_eq!(lied, FAKE, "the proxy lies");

    // Proof mode never answers the forged balance; a forged proof is evidence.
    assert!(
        eventually(Duration::from_secs(20), async || {
            let (s, v, p) = vcall(&url, "proof", "eth_getBalance", balance.clone()).await;
            assert_eq!((s, &p["result"]), (200, &honest), "{p}");
            assert_eq!(v, "proof:0x1");
            evidence(&dir).iter().any(|e| e["mode"] == "proof")
        })
        .await,
        "the liar's proof was never tried: {:?} {:?} {}",
        evidence(&dir),
        r.status().await,
        crate::support::get_text(&r.admin("/metrics")).await
    );
    let rec = evidence(&dir)
        .into_iter()
        .find(|e| e["mode"] == "proof")
        .unwrap();
    assert_eq!(rec["minority"], json!(["liar"]));
    assert_eq!(rec["method"], "eth_getProof");
    assert!(rec["state_root"].as_str().unwrap().starts_with("0x"));
    assert!(rec["reason"].as_str().unwrap().contains("balance"), "{rec}");
    drop(r);

    // Quorum mode answers the honest value and records the liar as the minority.
    let r = start(&ups, |c| {
        c.chains[0].verify.account = Some(VerifyMode::Quorum)
    })
    .await;
    let url = r.rpc_url("dev");
    let dir = r._dir.path().to_owned();
    assert!(
        eventually(Duration::from_secs(20), async || {
            let (s, v, q) = vcall(&url, "quorum", "eth_getBalance", balance.clone()).await;
            assert_eq!((s, &q["result"]), (200, &honest), "{q}");
            assert!(v.starts_with("quorum:2/"), "{v}");
            evidence(&dir)
                .iter()
                .any(|e| e["mode"] == "quorum" && e["minority"] == json!(["liar"]))
        })
        .await,
        "no quorum evidence: {:?}",
        evidence(&dir)
    );
    let rec = evidence(&dir)
        .into_iter()
        .find(|e| e["mode"] == "quorum")
        .unwrap();
    assert_eq!(rec["method"], "eth_getBalance", "{rec}");
    assert_eq!(rec["block"], 1, "pinned: {rec}");
    assert!(rec["params"].to_string().contains("\"0x1\""), "{rec}");
    assert!(
        eventually(Duration::from_secs(20), async || {
            if ejections(&r, "liar").await > 0 {
                return true;
            }
            vcall(&url, "quorum", "eth_getBalance", balance.clone()).await;
            false
        })
        .await,
        "the liar was not ejected after repeated disagreements"
    );
    let metrics = crate::support::get_text(&r.admin("/metrics")).await;
    assert!(
        metrics.contains("keel_rpc_verify_disagreements_total{chain=\"dev\",upstream=\"liar\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_identical_liars_win_a_quorum_but_not_a_proof() {
    let (_nodes, urls) = anvils().await;
    let l1 = Tamper::start(&urls[1], FAKE).await;
    let l2 = Tamper::start(&urls[2], FAKE).await;
    let (u1, u2) = (l1.url(), l2.url());
    let r = start(&[("honest", &urls[0]), ("l1", &u1), ("l2", &u2)], |c| {
        // Keep everyone in play: this test is about answers, not ejection.
        c.chains[0].verify.evidence_threshold = 1000;
    })
    .await;
    let url = r.rpc_url("dev");
    let honest =
        rpc(&urls[0], "eth_getBalance", json!([DEV_ADDR_0, "latest"])).await["result"].clone();
    for _ in 0..5 {
        let (s, v, p) = vcall(
            &url,
            "proof",
            "eth_getBalance",
            json!([DEV_ADDR_0, "latest"]),
        )
        .await;
        assert_eq!(
            (s, &p["result"]),
            (200, &honest),
            "proof beats numbers: {p}"
        );
        assert_eq!(v, "proof:0x1");
    }
    let proof =
        rpc(&urls[0], "eth_getProof", json!([DEV_ADDR_0, [], "0x1"])).await["result"].clone();
    let (_, v, p) = vcall(
        &url,
        "proof",
        "eth_getProof",
        json!([DEV_ADDR_0, [], "latest"]),
    )
    .await;
    assert_eq!(p["result"], proof, "a forged eth_getProof is not served");
    assert_eq!(v, "proof:0x1");
    // Quorum mode is only as good as the majority: N = 2 identical lies win (documented).
    let (s, v, q) = vcall(
        &url,
        "quorum",
        "eth_getBalance",
        json!([DEV_ADDR_0, "latest"]),
    )
    .await;
    assert_eq!((s, &q["result"]), (200, &json!(FAKE)), "{q}");
    assert!(v.starts_with("quorum:2/"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn latest_fanned_out_while_blocks_are_mined_still_agrees() {
    let node = Anvil::start(&["--block-time", "1"]).await;
    let base = node.url();
    let proxies = [
        Tamper::honest(&base).await,
        Tamper::honest(&base).await,
        Tamper::honest(&base).await,
    ];
    let urls: Vec<String> = proxies.iter().map(Tamper::url).collect();
    let r = start(&[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])], |c| {
        c.chains[0].verify.mode = keel_config::VerifyMode::Quorum;
        c.chains[0].verify.account = Some(keel_config::VerifyMode::Quorum);
        c.chains[0].verify.quorum = 3;
    })
    .await;
    let url = r.rpc_url("dev");
    let start = std::time::Instant::now();
    let mut verified = 0;
    while start.elapsed() < Duration::from_secs(4) {
        rpc(
            &base,
            "eth_sendTransaction",
            json!([{"from": DEV_ADDR_0, "to": DEV_ADDR_1, "value": "0x1"}]),
        )
        .await;
        for (method, params) in [
            ("eth_getBalance", json!([DEV_ADDR_1, "latest"])),
            ("eth_getBlockByNumber", json!(["latest", false])),
            ("eth_getTransactionCount", json!([DEV_ADDR_0])),
        ] {
            // No header: the chain's mode (quorum, 3 of 3) applies.
            let (s, h, v) = crate::support::call(&url, method, params).await;
            assert_eq!(s, 200);
            assert!(v.get("result").is_some(), "{method}: {v}");
            assert_eq!(h["x-keel-verified"], "quorum:3/3", "{method}: {v}");
            verified += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(verified >= 9);
}
