//! What a client may ask for with `x-keel-verify`, against honest (and lying) anvil nodes: no
//! client can get an honest upstream penalised, ejected or recorded, whatever it asks; blocks
//! are pinned however they are spelled, or refused; the evidence log stays within its bound.

use std::{path::Path, time::Duration};

use keel_config::{LateAnswers, VerifyMode};
use keel_testkit::{DEV_ADDR_0, Tamper, eventually, rpc};
use serde_json::{Value, json};

use crate::{
    support::{Running, get_text},
    verify::{anvils, assert_no_evidence, ejections, start, vcall},
    verify_policy::metric,
};

/// POSTs `body` as is with `x-keel-verify: mode`; returns `x-keel-verified` and the JSON.
async fn raw_vcall(url: &str, mode: &str, body: &str) -> (String, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-keel-verify", mode)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let verified = resp
        .headers()
        .get("x-keel-verified")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (verified, resp.json().await.unwrap())
}

/// Every upstream of `r` has never been ejected and is healthy now.
async fn assert_nobody_penalised(r: &Running, names: &[&str]) {
    for name in names {
        assert_eq!(ejections(r, name).await, 0, "{name} was ejected");
    }
    let s = r.status().await;
    for u in &s.chains[0].upstreams {
        assert_eq!(u["state"], "healthy", "{u}");
    }
}

/// The questions an attacker asks with `x-keel-verify: quorum` (or `proof`): ones whose honest
/// answers differ, and `latest` spelled so that a literal comparison would not pin it.
const ATTACK: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_gasPrice","params":[]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"web3_clientVersion","params":[]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"net_peerCount","params":[]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_syncing","params":[]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["\u006catest",false]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["Latest",false]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",{"blockNumber":"latest"}]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","pending"]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{"toBlock":"pending"}]}"#,
    r#"{"jsonrpc":"2.0","id":1,"method":"eth_getLogs","params":[{}]}"#,
];

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hammering_quorum_gets_no_honest_upstream_ejected() {
    let (_nodes, urls) = anvils().await;
    // Honest nodes at different heads: c mined three more blocks, so head, gas price and the
    // block at each node's own `latest` differ between them without anyone lying.
    rpc(&urls[2], "anvil_mine", json!(["0x3"])).await;
    let names = ["a", "b", "c"];
    let r = start(&[("a", &urls[0]), ("b", &urls[1]), ("c", &urls[2])], |_| {}).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            r.status().await.chains[0].upstreams[2]["head"] == 4
        })
        .await
    );
    let url = r.rpc_url("dev");
    for _ in 0..8 {
        for body in ATTACK {
            for mode in ["quorum", "proof"] {
                raw_vcall(&url, mode, body).await;
            }
        }
    }
    assert_nobody_penalised(&r, &names).await;
    assert_no_evidence(&r, "a client's questions");

    // What each question got: refusals naming why, or a pinned and verified answer.
    let refused = |v: &Value, why: &str| {
        assert_eq!(v["error"]["code"], -32602, "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("x-keel-verify") && m.contains(why), "{m}");
    };
    for (body, why) in [
        (ATTACK[0], "legitimately differ"),
        (ATTACK[1], "legitimately differ"),
        (ATTACK[2], "legitimately differ"),
        (ATTACK[3], "legitimately differ"),
        (ATTACK[4], "legitimately differ"),
        (ATTACK[6], "moves"),
        (ATTACK[8], "moves"),
        (ATTACK[9], "moves"),
    ] {
        let (v, answer) = raw_vcall(&url, "quorum", body).await;
        refused(&answer, why);
        assert_eq!(v, "none", "{body}");
    }
    // `latest` escaped, or inside an EIP-1898 object, is pinned to block 1 (the highest all
    // three have): every node answers the same block.
    let (v, answer) = raw_vcall(&url, "quorum", ATTACK[5]).await;
    assert_eq!(answer["result"]["number"], "0x1", "{answer}");
    assert!(v.starts_with("quorum:"), "{v}");
    let balance =
        rpc(&urls[0], "eth_getBalance", json!([DEV_ADDR_0, "0x1"])).await["result"].clone();
    let (v, answer) = raw_vcall(&url, "quorum", ATTACK[7]).await;
    assert_eq!(answer["result"], balance, "{answer}");
    assert!(v.starts_with("quorum:"), "{v}");
    let (v, answer) = raw_vcall(&url, "quorum", ATTACK[10]).await;
    assert!(answer["result"].is_array(), "{answer}");
    assert!(v.starts_with("quorum:"), "{v}");
    // A method the operator did not open to clients is refused as such, and `none` is
    // always granted.
    let (_, _, answer) = vcall(&url, "quorum", "eth_feeHistory", json!(["0x1", "0x1", []])).await;
    refused(&answer, "client_methods");
    let (_, v, answer) = vcall(&url, "none", "eth_blockNumber", json!([])).await;
    assert_eq!(v, "none");
    // One node's head, unverified.
    assert!(
        answer["result"] == "0x1" || answer["result"] == "0x4",
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clients_check_never_penalises_or_records_even_a_liar() {
    let (_nodes, urls) = anvils().await;
    let (ha, hb) = (
        Tamper::honest(&urls[0]).await,
        Tamper::honest(&urls[1]).await,
    );
    let liar = Tamper::start(&urls[2], "0x1").await;
    let (ua, ub, ul) = (ha.url(), hb.url(), liar.url());
    let ups = [("a", ua.as_str()), ("b", &ub), ("liar", &ul)];
    // The config verifies nothing: every check below is the client's.
    let r = start(&ups, |c| {
        c.chains[0].verify.late_answers = LateAnswers::Check
    })
    .await;
    let url = r.rpc_url("dev");
    let params = json!([DEV_ADDR_0, "latest"]);
    let honest = rpc(&urls[0], "eth_getBalance", params.clone()).await["result"].clone();
    let mut outvoted = 0.0;
    for _ in 0..12 {
        for mode in ["quorum", "proof"] {
            let (_, v, answer) = vcall(&url, mode, "eth_getBalance", params.clone()).await;
            assert_eq!(answer["result"], honest, "{mode}: {answer}");
            assert!(v.starts_with("quorum:2/") || v == "proof:0x1", "{v}");
        }
        outvoted = metric(
            &r,
            "keel_rpc_verify_client_disagreements_total{chain=\"dev\",upstream=\"liar\"}",
        )
        .await;
    }
    // The client got the truth, but a client's check blames nobody: the operator decides
    // what counts as evidence. The liar was seen all the same.
    assert_nobody_penalised(&r, &["a", "b", "liar"]).await;
    assert_no_evidence(&r, "a client's checks");
    assert!(outvoted >= 1.0, "the liar was never outvoted");
    let metrics = get_text(&r.admin("/metrics")).await;
    assert!(
        !metrics.contains("keel_rpc_verify_disagreements_total{chain=\"dev\",upstream=\"liar\"}"),
        "{metrics}"
    );
    drop(r);
    // The same questions asked by the config do blame it.
    let r = start(&ups, |c| {
        c.chains[0].verify.account = Some(VerifyMode::Quorum);
        c.chains[0].verify.late_answers = LateAnswers::Check;
    })
    .await;
    let url = r.rpc_url("dev");
    assert!(
        eventually(Duration::from_secs(20), async || {
            vcall(&url, "quorum", "eth_getBalance", params.clone()).await;
            ejections(&r, "liar").await > 0
        })
        .await,
        "the operator's check did not eject the liar"
    );
}

/// Every record of the evidence log in `dir` (all segments) and the bytes its files hold, read
/// while the gateway may be writing: a file renamed during the listing is counted once (by
/// inode), one deleted is skipped.
fn log_of(dir: &Path) -> (Vec<Value>, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut records = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (records, 0);
    };
    for e in entries.flatten() {
        let Ok(meta) = std::fs::metadata(e.path()) else {
            continue;
        };
        if !seen.insert(meta.ino()) {
            continue;
        }
        bytes += meta.len();
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        records.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    (records, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_evidence_log_stays_within_its_bound_under_a_flood_of_lies() {
    let (_nodes, urls) = anvils().await;
    // The liar usually answers first, so most requests record it before they are answered
    // (late answers are ignored: no record is written in the background, and the log can be
    // measured between requests).
    let slow = Duration::from_millis(20);
    let (ha, hb) = (
        Tamper::slow_for(&urls[0], "eth_getBalance", slow).await,
        Tamper::slow_for(&urls[1], "eth_getBalance", slow).await,
    );
    let liar = Tamper::start(&urls[2], "0x1").await;
    let (ua, ub, ul) = (ha.url(), hb.url(), liar.url());
    let max = 64 * 1024;
    let r = start(&[("a", &ua), ("b", &ub), ("liar", &ul)], |c| {
        let v = &mut c.chains[0].verify;
        v.account = Some(VerifyMode::Quorum);
        v.late_answers = LateAnswers::Ignore;
        // The liar stays in play.
        v.evidence_threshold = u32::MAX;
        c.evidence.max_bytes = max;
    })
    .await;
    let url = r.rpc_url("dev");
    let dir = r._dir.path().join("evidence");
    let params = json!([DEV_ADDR_0, "latest"]);
    // Until well over the bound has been written (a record is about 1 KiB).
    let mut written = 0;
    for _ in 0..2000 {
        vcall(&url, "quorum", "eth_getBalance", params.clone()).await;
        let (records, bytes) = log_of(&dir);
        assert!(bytes <= max, "{bytes} bytes in the evidence log");
        written = records
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .max()
            .unwrap_or(0);
        if written >= 300 {
            break;
        }
    }
    assert!(written >= 300, "only {written} records written");
    let (records, bytes) = log_of(&dir);
    assert!(bytes <= max, "{bytes}");
    // The newest records are kept, the oldest went.
    let ids: Vec<u64> = records.iter().filter_map(|r| r["id"].as_u64()).collect();
    assert!(ids.contains(&written) && !ids.contains(&1), "{ids:?}");
    assert!(ids.len() > 10, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_past_its_age_is_deleted_when_keel_starts() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("evidence");
    std::fs::create_dir_all(&dir).unwrap();
    let line = r#"{"id":1,"time":"2020-01-01T00:00:00.000Z","chain":"dev","method":"eth_getBalance","params":[],"mode":"quorum","answers":[],"majority":[],"minority":["x"],"reason":"r"}"#;
    let (old, young) = (dir.join("evidence.1.jsonl"), dir.join("evidence.2.jsonl"));
    for path in [&old, &young] {
        std::fs::write(path, format!("{line}\n")).unwrap();
    }
    let day = Duration::from_secs(24 * 3600);
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - 100 * day)
        .unwrap();
    drop(f);
    let mut c = keel_testkit::config_for("dev", 31337, &[("a", "http://127.0.0.1:9")]);
    c.evidence.max_age = 90 * day;
    let node = keel_node::Node::bind(c, data.path()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || !old.exists()).await,
        "the old segment is still there"
    );
    assert!(young.exists());
    drop(node);
}
