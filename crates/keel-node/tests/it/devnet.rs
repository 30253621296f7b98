//! The embedded devnet: `keel up` with defaults, driven by cast.

use std::time::Duration;

use keel_config::Config;
use keel_testkit::{DEV_ADDR_1, DEV_KEY_0};
use serde_json::json;

use crate::support::{Running, call, cast};

pub(crate) fn devnet_config() -> Config {
    let mut c = Config::from_toml(Config::EMBEDDED_DEFAULT, "<embedded defaults>", &[]).unwrap();
    c.gateway.listen = "127.0.0.1:0".parse().unwrap();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    if let Some(m) = c.monitor.as_mut() {
        m.status.listen = Some("127.0.0.1:0".parse().unwrap());
    }
    let d = c.devnet.as_mut().unwrap();
    d.block_time = Duration::from_millis(300);
    d.anvil = Some(keel_testkit::anvil());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_works_against_the_devnet_and_nodes_stay_identical() {
    let r = Running::start(devnet_config()).await;
    r.ready().await;
    let url = r.rpc_url("devnet");
    assert_eq!(cast(&["chain-id", "--rpc-url", &url]).await, "31337");
    // Blocks are being mined by keel.
    let first: u64 = cast(&["block-number", "--rpc-url", &url])
        .await
        .parse()
        .unwrap();
    assert!(
        keel_testkit::eventually(Duration::from_secs(10), async || {
            cast(&["block-number", "--rpc-url", &url])
                .await
                .parse::<u64>()
                .unwrap()
                > first
        })
        .await,
        "the devnet does not mine"
    );
    let balance = cast(&["balance", DEV_ADDR_1, "--rpc-url", &url]).await;
    assert_eq!(balance, "10000000000000000000000");
    // A transaction through the gateway: cast waits for the receipt.
    let receipt = cast_send(&url, "1").await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    let block = receipt["blockNumber"].as_str().unwrap().to_owned();
    let balance = cast(&["balance", DEV_ADDR_1, "--rpc-url", &url]).await;
    assert_eq!(balance, "10000000000000000000001");
    // Every node has the same block with the same hash: the devnet mines in lockstep.
    let urls = r.node.devnet_urls();
    assert_eq!(urls.len(), 3);
    let mut hashes = Vec::new();
    for u in &urls {
        let (_, _, v) = call(u, "eth_getBlockByNumber", json!([block, false])).await;
        hashes.push(v["result"]["hash"].clone());
    }
    assert!(
        hashes.iter().all(|h| h == &hashes[0] && h.is_string()),
        "{hashes:?}"
    );
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_devnet_node_is_restarted_and_catches_up() {
    let r = Running::start(devnet_config()).await;
    r.ready().await;
    let url = r.rpc_url("devnet");
    cast(&[
        "send",
        "--private-key",
        DEV_KEY_0,
        DEV_ADDR_1,
        "--value",
        "5",
        "--rpc-url",
        &url,
    ])
    .await;
    let victim_node = kill_node(&r, 1);
    let victim = victim_node.url.clone();
    // It comes back on the same port with the same chain (loaded from a sibling).
    let healthy = keel_testkit::eventually(Duration::from_secs(30), async || {
        let a = keel_testkit::rpc(&r.node.devnet_urls()[0], "eth_getBlockByNumber", json!(["latest", false])).await;
        let b = reqwest::Client::new()
            .post(&victim)
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":[a["result"]["number"], false]}))
            .send()
            .await;
        match b {
            Ok(resp) => {
                let b: serde_json::Value = resp.json().await.unwrap_or_default();
                b["result"]["hash"] == a["result"]["hash"] && a["result"]["hash"].is_string()
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(healthy, "the restarted node did not catch up");
    assert!(
        eventually_ready(&r, 1).await,
        "the restarted node did not rejoin mining"
    );
    assert_ne!(r.node.devnet_nodes()[1].pid, victim_node.pid);
    let balance = cast(&["balance", DEV_ADDR_1, "--rpc-url", &victim]).await;
    assert_eq!(balance, "10000000000000000000005");
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_devnet_node_catches_up_after_node_control_state_changes() {
    const FUNDED: &str = "0x00000000000000000000000000000000000bee01";
    const FUNDED_LATE: &str = "0x00000000000000000000000000000000000bee02";
    let r = Running::start(devnet_config()).await;
    r.ready().await;
    let url = r.rpc_url("devnet");
    let nodes = r.node.devnet_urls();
    // A transaction first: its block and receipt must survive the restart.
    let receipt = cast_send(&url, "7").await;
    let tx_block = receipt["blockNumber"].clone();
    // A state change without a transaction, broadcast to every node, then mined into a block.
    set_balance(&url, &nodes, FUNDED, "0x1234567890").await;
    let after_set = block_number(&nodes[0]).await;
    assert!(
        keel_testkit::eventually(Duration::from_secs(10), async || {
            block_number(&nodes[0]).await > after_set
        })
        .await,
        "no block was mined after the balance change"
    );
    // One more change and the kill right after it: no block may contain it yet (then it is only in
    // the sibling's latest state, which no header shows).
    set_balance(&url, &nodes, FUNDED_LATE, "0xabcdef").await;
    let victim_node = kill_node(&r, 1);
    let victim = victim_node.url.clone();
    assert!(
        keel_testkit::eventually(Duration::from_secs(30), async || {
            let n = &r.node.devnet_nodes()[1];
            n.ready && n.pid != victim_node.pid && n.pid > 0
        })
        .await,
        "the restarted node did not catch up and rejoin mining: {:?}",
        r.node.devnet_nodes()
    );
    // Asked directly, the restarted node has both balances and a sibling's chain.
    for (addr, want) in [(FUNDED, "0x1234567890"), (FUNDED_LATE, "0xabcdef")] {
        let got = keel_testkit::rpc(&victim, "eth_getBalance", json!([addr, "latest"])).await;
        assert_eq!(got["result"], want, "{addr}: {got}");
    }
    let head = block_number(&victim).await;
    assert_eq!(
        block_hash(&victim, head).await,
        block_hash(&nodes[0], head).await
    );
    // It has the blocks and receipts from before its restart, but not the past states: asked
    // for one it errs rather than guess, and through the gateway a sibling answers.
    let tx_hash = receipt["transactionHash"].clone();
    let got = keel_testkit::rpc(&victim, "eth_getTransactionReceipt", json!([tx_hash])).await;
    assert_eq!(got["result"]["blockNumber"], tx_block, "{got}");
    let past = keel_testkit::rpc(&victim, "eth_getBalance", json!([DEV_ADDR_1, tx_block])).await;
    assert!(past["error"]["message"].is_string(), "{past}");
    let want = keel_testkit::rpc(&nodes[0], "eth_getBalance", json!([DEV_ADDR_1, tx_block])).await;
    assert!(want["result"].is_string(), "{want}");
    for _ in 0..10 {
        let (_, _, v) = call(&url, "eth_getBalance", json!([DEV_ADDR_1, tx_block])).await;
        assert_eq!(v["result"], want["result"], "{v}");
    }
    // It mines in lockstep again: later blocks are the same on it as on its siblings.
    let later = head + 3;
    assert!(
        keel_testkit::eventually(Duration::from_secs(10), async || {
            block_number(&victim).await >= later && block_number(&nodes[2]).await >= later
        })
        .await,
        "the restarted node does not advance with the others"
    );
    let hash = block_hash(&victim, later).await;
    assert!(hash.is_string(), "{hash}");
    assert_eq!(hash, block_hash(&nodes[0], later).await);
    assert_eq!(hash, block_hash(&nodes[2], later).await);
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Sets `addr`'s balance through the gateway and waits until every node has it (the gateway
/// answers with the first node and sends to the others in the background).
async fn set_balance(gateway: &str, nodes: &[String], addr: &str, wei: &str) {
    let (_, _, v) = call(gateway, "anvil_setBalance", json!([addr, wei])).await;
    assert!(v.get("error").is_none(), "{v}");
    assert!(
        keel_testkit::eventually(Duration::from_secs(10), async || {
            let mut all = true;
            for n in nodes {
                let got = keel_testkit::rpc(n, "eth_getBalance", json!([addr, "latest"])).await;
                all &= got["result"] == wei;
            }
            all
        })
        .await,
        "the balance change did not reach every node"
    );
}

/// Kills devnet node `i` with SIGKILL; returns it as it was.
pub(crate) fn kill_node(r: &Running, i: usize) -> keel_devnet::DevnetNode {
    let node = r.node.devnet_nodes()[i].clone();
    assert!(node.pid > 0 && node.ready, "{node:?}");
    std::process::Command::new("kill")
        .args(["-9", &node.pid.to_string()])
        .status()
        .unwrap();
    node
}

/// `cast send` of `wei` from dev account 0 to dev account 1 through `url`: the receipt.
async fn cast_send(url: &str, wei: &str) -> serde_json::Value {
    let receipt = cast(&[
        "send",
        "--private-key",
        DEV_KEY_0,
        DEV_ADDR_1,
        "--value",
        wei,
        "--rpc-url",
        url,
        "--json",
    ])
    .await;
    serde_json::from_str(&receipt).unwrap()
}

async fn block_number(url: &str) -> u64 {
    let v = keel_testkit::rpc(url, "eth_blockNumber", json!([])).await;
    u64::from_str_radix(v["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

async fn block_hash(url: &str, number: u64) -> serde_json::Value {
    let v = keel_testkit::rpc(
        url,
        "eth_getBlockByNumber",
        json!([format!("0x{number:x}"), false]),
    )
    .await;
    v["result"]["hash"].clone()
}

async fn eventually_ready(r: &Running, i: usize) -> bool {
    keel_testkit::eventually(Duration::from_secs(10), async || {
        r.node.devnet_nodes()[i].ready
    })
    .await
}
