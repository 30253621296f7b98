//! What upstreams answer, through the whole node: answers too large to read, errors saying a
//! node lacks the data (pruned history), blocks beyond every upstream's head, and the hash of an
//! "already known" blob transaction.

use std::time::Duration;

use keel_testkit::{Anvil, Reply, Scripted, config_for, eventually};
use serde_json::{Value, json};

use crate::support::{Running, call, post};

/// Whether `request` is one of the head tracker's polls (chain id, latest/safe/finalized block),
/// which a scripted upstream passes through so that it stays verified and in the rotation.
fn head_poll(request: &Value) -> bool {
    request["method"] == "eth_chainId"
        || (request["method"] == "eth_getBlockByNumber"
            && matches!(
                request["params"][0].as_str(),
                Some("latest" | "safe" | "finalized")
            ))
}

/// A ready node serving chain `dev` from `upstreams` (name, URL), with the chain's answer limit
/// at its smallest (1 MiB).
async fn node(upstreams: &[(&str, &str)]) -> Running {
    let mut config = config_for("dev", 31337, upstreams);
    config.chains[0].max_response_bytes = 1 << 20;
    let r = Running::start(config).await;
    r.ready().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_gets_a_clear_error_naming_the_upstream_and_is_not_read() {
    let anvil = Anvil::start(&[]).await;
    let evil = Scripted::start(Some(&anvil.url()), |q| {
        if head_poll(q) {
            Reply::Forward
        } else {
            Reply::Endless
        }
    })
    .await;
    let r = node(&[("evil", &evil.url())]).await;
    let url = r.rpc_url("dev");
    let (_, _, v) = call(&url, "eth_getLogs", json!([{"fromBlock": "0x0"}])).await;
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(v["error"]["code"], -32003, "{v}");
    assert!(
        message.contains("upstream evil") && message.contains("larger than 1048576 bytes"),
        "{v}"
    );
    // The same in a batch, entry by entry.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{}]},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_getLogs", "params": [{}]},
    ]);
    let (_, _, v) = post(&url, batch.to_string()).await;
    for entry in v.as_array().unwrap() {
        assert!(
            entry["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("upstream evil") && m.contains("larger than")),
            "{entry}"
        );
    }
    // Each answer was cut off and its connection closed, so what the upstream could push is
    // bounded by the limit and socket buffers, not by how long it keeps sending.
    assert!(
        eventually(Duration::from_secs(10), async || evil.open_bodies() == 0).await,
        "a connection to the endless upstream was left open"
    );
    assert_eq!(evil.closed_bodies(), 3);
    let sent = evil.endless_bytes_sent();
    assert!(sent < 3 * (64 << 20), "{sent} bytes were sent");
    // Its health counts every oversized answer as a failure.
    let chain = r.node.chains().get("dev").unwrap().clone();
    let failures = chain.upstreams()[0].health().snapshot().failures;
    assert!(failures >= 3, "{failures} failures recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_answer_is_asked_elsewhere_and_penalises_its_upstream() {
    let anvil = Anvil::start(&[]).await;
    let evil = Scripted::start(Some(&anvil.url()), |q| {
        if head_poll(q) {
            Reply::Forward
        } else {
            Reply::Endless
        }
    })
    .await;
    let mut config = config_for(
        "dev",
        31337,
        &[("evil", &evil.url()), ("honest", &anvil.url())],
    );
    config.chains[0].max_response_bytes = 1 << 20;
    // The honest node is a backup: every read goes to the evil upstream first while it is not
    // ejected.
    config.chains[0].upstreams[1].tier = keel_config::Tier::Backup;
    let r = Running::start(config).await;
    r.ready().await;
    let url = r.rpc_url("dev");
    let mut retried = 0;
    for _ in 0..10 {
        let (_, h, v) = call(&url, "eth_getLogs", json!([{"fromBlock": "0x0"}])).await;
        assert_eq!(v["result"], json!([]), "{v}");
        assert_eq!(h["x-keel-upstream"], "honest");
        retried += h["x-keel-retries"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap();
    }
    assert!(retried >= 1, "the evil upstream was never asked");
    assert!(
        eventually(Duration::from_secs(10), async || evil.closed_bodies()
            == u64::from(retried))
        .await,
        "{} connections closed for {retried} retries",
        evil.closed_bodies()
    );
    let chain = r.node.chains().get("dev").unwrap().clone();
    let (evil_health, honest_health) = (
        chain.upstreams()[0].health().snapshot(),
        chain.upstreams()[1].health().snapshot(),
    );
    assert_eq!(evil_health.failures, u64::from(retried));
    assert_eq!(
        evil_health.timeouts, 0,
        "cut off at the limit, not waited out"
    );
    assert!(evil_health.error_rate > 0.0);
    assert_eq!(honest_health.failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_reth_answer_is_asked_elsewhere_and_marks_the_node_pruned() {
    let anvil = Anvil::start(&[]).await;
    let (_, _, v) = call(&anvil.url(), "anvil_mine", json!(["0x5"])).await;
    assert!(v.get("error").is_none(), "{v}");
    // reth with history expiry: 4444 "pruned history unavailable" for any numbered block.
    let pruned = Scripted::start(Some(&anvil.url()), |q| {
        if head_poll(q) {
            Reply::Forward
        } else {
            Reply::error(q, 4444, "pruned history unavailable")
        }
    })
    .await;
    let mut config = config_for(
        "dev",
        31337,
        &[("pruned", &pruned.url()), ("archive", &anvil.url())],
    );
    // The archive is a backup: the pruned node is asked first.
    config.chains[0].upstreams[1].tier = keel_config::Tier::Backup;
    let r = Running::start(config).await;
    r.ready().await;
    let chain = r.node.chains().get("dev").unwrap().clone();
    assert!(
        eventually(Duration::from_secs(10), async || chain.upstreams()[0]
            .head()
            >= 5)
        .await
    );
    let url = r.rpc_url("dev");
    let expected = call(&anvil.url(), "eth_getBlockByNumber", json!(["0x1", false]))
        .await
        .2;
    let (_, h, v) = call(&url, "eth_getBlockByNumber", json!(["0x1", false])).await;
    assert_eq!(v["result"], expected["result"], "{v}");
    assert_eq!(h["x-keel-upstream"], "archive");
    assert_eq!(h["x-keel-retries"], "1");
    // The pruned node is known to lack block 1 and before, and asked for them last.
    assert_eq!(chain.upstreams()[0].history_from(), Some(2));
    let (_, h, v) = call(&url, "eth_getBlockByNumber", json!(["0x0", false])).await;
    assert_eq!(v["result"]["number"], "0x0", "{v}");
    assert_eq!(h["x-keel-upstream"], "archive");
    assert_eq!(h["x-keel-retries"], "0");
}

/// By-number reads of a block, `{b}` standing for it.
const BY_NUMBER: &[(&str, &str)] = &[
    ("eth_getBlockByNumber", r#"["{b}", false]"#),
    ("eth_getBlockByNumber", r#"["{b}", true]"#),
    ("eth_getBlockTransactionCountByNumber", r#"["{b}"]"#),
    ("eth_getUncleCountByBlockNumber", r#"["{b}"]"#),
    (
        "eth_getTransactionByBlockNumberAndIndex",
        r#"["{b}", "0x0"]"#,
    ),
    ("eth_getUncleByBlockNumberAndIndex", r#"["{b}", "0x0"]"#),
    ("eth_getBlockReceipts", r#"["{b}"]"#),
    ("eth_getHeaderByNumber", r#"["{b}"]"#),
    (
        "eth_getBalance",
        r#"["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "{b}"]"#,
    ),
    (
        "eth_getBalance",
        r#"["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", {"blockNumber": "{b}"}]"#,
    ),
    (
        "eth_getTransactionCount",
        r#"["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "{b}"]"#,
    ),
    (
        "eth_getCode",
        r#"["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "{b}"]"#,
    ),
    (
        "eth_getStorageAt",
        r#"["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x0", "{b}"]"#,
    ),
    (
        "eth_getProof",
        r#"["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", [], "{b}"]"#,
    ),
    (
        "eth_call",
        r#"[{"to": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"}, "{b}"]"#,
    ),
];

/// The request objects of [`BY_NUMBER`] for block `block`, ids from 1.
fn by_number(block: &str) -> Vec<Value> {
    BY_NUMBER
        .iter()
        .enumerate()
        .map(|(i, (method, params))| {
            let params: Value = serde_json::from_str(&params.replace("{b}", block)).unwrap();
            json!({"jsonrpc": "2.0", "id": i + 1, "method": method, "params": params})
        })
        .collect()
}

/// What a node answered, without the envelope: `{"result": …}` or `{"error": …}`.
fn answer_of(v: &Value) -> Value {
    match v.get("error") {
        Some(e) => json!({"error": e}),
        None => json!({"result": v["result"]}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_beyond_every_head_gets_the_chains_own_answer() {
    let (_nodes, urls, r) = crate::support::cluster(&[], &["a", "b"]).await;
    let url = r.rpc_url("dev");
    let client = reqwest::Client::new();
    for block in ["0x7fffffff", "0x1"] {
        let requests = by_number(block);
        let mut expected = Vec::new();
        for q in &requests {
            let direct = post(&urls[0], q.to_string()).await.2;
            expected.push(answer_of(&direct));
        }
        // Sanity: anvil says "not there" (null or an error), never "no upstream".
        assert!(
            expected
                .iter()
                .any(|e| e["result"].is_null() && e.get("error").is_none())
        );
        assert!(expected.iter().any(|e| e.get("error").is_some()));
        for verify in [None, Some("quorum"), Some("proof")] {
            // A client may ask for a check only on the methods [chains.verify] client_methods
            // lists; for the others it gets -32602 before any upstream is asked.
            let expected: Vec<Value> = requests
                .iter()
                .zip(&expected)
                .map(|(q, want)| {
                    let method = q["method"].as_str().unwrap();
                    if verify.is_some() && !keel_config::CLIENT_METHODS.contains(&method) {
                        json!({"error": {"code": -32602}})
                    } else {
                        want.clone()
                    }
                })
                .collect();
            let same = |got: &Value, want: &Value| match want["error"]["code"].as_i64() {
                Some(-32602) => got["error"]["code"] == -32602,
                _ => got == want,
            };
            for (q, want) in requests.iter().zip(&expected) {
                let mut b = client.post(&url).json(q);
                if let Some(mode) = verify {
                    b = b.header("x-keel-verify", mode);
                }
                let resp = b.send().await.unwrap();
                assert_eq!(resp.headers()["x-keel-verified"], "none");
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v["id"], q["id"]);
                assert!(
                    same(&answer_of(&v), want),
                    "{block} {verify:?} {q}: {v} against {want}"
                );
            }
            // The same in one batch.
            let mut b = client.post(&url).json(&requests);
            if let Some(mode) = verify {
                b = b.header("x-keel-verify", mode);
            }
            let v: Value = b.send().await.unwrap().json().await.unwrap();
            let entries = v.as_array().unwrap();
            assert_eq!(entries.len(), requests.len());
            for (entry, want) in entries.iter().zip(&expected) {
                assert!(
                    same(&answer_of(entry), want),
                    "batch {block} {verify:?}: {entry} against {want}"
                );
            }
        }
    }
}

/// Private key of anvil's second default account (public test mnemonic).
const DEV_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_already_known_blob_transaction_is_answered_with_its_real_hash() {
    // Nodes that do not mine: a transaction sent twice is "already imported", not mined.
    let (_nodes, urls, r) = crate::support::cluster(&["--no-mining"], &["a", "b"]).await;
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob.txt");
    std::fs::write(&blob, "keel blob transaction test").unwrap();
    let blob = blob.to_str().unwrap();
    // EIP-4844's network form, and EIP-7594's (cell proofs), each made by cast.
    for (key, format) in [
        (keel_testkit::DEV_KEY_0, Some("--eip4844")),
        (DEV_KEY_1, None),
    ] {
        let mut args = vec![
            "mktx",
            "--private-key",
            key,
            keel_testkit::DEV_ADDR_1,
            "--blob",
            "--path",
            blob,
            "--nonce",
            "0",
            "--gas-limit",
            "21000",
            "--gas-price",
            "3000000000",
            "--priority-gas-price",
            "1000000000",
            "--blob-gas-price",
            "1000000000",
            "--chain",
            "31337",
            "--rpc-url",
            &urls[0],
        ];
        args.extend(format);
        let raw = crate::support::cast(&args).await;
        assert!(raw.starts_with("0x03"), "{}", &raw[..10]);
        // Every node takes it and says its hash.
        let mut hashes = Vec::new();
        for u in &urls {
            let (_, _, v) = call(u, "eth_sendRawTransaction", json!([raw])).await;
            hashes.push(v["result"].as_str().expect("a hash").to_owned());
        }
        assert_eq!(hashes[0], hashes[1]);
        // Through keel every node answers "already imported": keel answers the hash itself.
        let (_, _, v) = call(&r.rpc_url("dev"), "eth_sendRawTransaction", json!([raw])).await;
        assert_eq!(v["result"], hashes[0], "{format:?}: {v}");
        // The node knows the transaction by that hash.
        let (_, _, v) = call(&urls[0], "eth_getTransactionByHash", json!([hashes[0]])).await;
        assert_eq!(v["result"]["type"], "0x3", "{v}");
    }
}
