//! Failover, lag and total outage against real anvil upstreams.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use keel_testkit::{Anvil, DEV_ADDR_0, config_for, eventually};
use serde_json::json;

use crate::support::{Running, call, cluster};

const GENESIS: &[&str] = &["--timestamp", "1700000000"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_upstream_under_load_fails_no_request() {
    let (mut nodes, urls, r) = cluster(GENESIS, &["a", "b", "c"]).await;
    let url = r.rpc_url("dev");
    let expected = call(&urls[0], "eth_getBalance", json!([DEV_ADDR_0, "latest"]))
        .await
        .2["result"]
        .clone();

    const TOTAL: usize = 3000;
    const WORKERS: usize = 64;
    let sent = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (sent, client, url, expected) =
            (sent.clone(), client.clone(), url.clone(), expected.clone());
        workers.spawn(async move {
            let mut failures = Vec::new();
            while sent.fetch_add(1, Ordering::SeqCst) < TOTAL {
                let body = json!({"jsonrpc":"2.0","id":7,"method":"eth_getBalance","params":[DEV_ADDR_0, "latest"]});
                match client.post(&url).json(&body).send().await {
                    Ok(resp) => {
                        let v: serde_json::Value = resp.json().await.unwrap_or_default();
                        if v["result"] != expected {
                            failures.push(v.to_string());
                        }
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        });
    }
    // Kill one upstream with 2,500 reads still to go, and time its ejection while the load runs.
    assert!(
        eventually(Duration::from_secs(30), async || sent
            .load(Ordering::SeqCst)
            >= 500)
        .await
    );
    nodes[1].kill().await;
    let killed_at = Instant::now();
    let chain = r.node.chains().get("dev").unwrap().clone();
    let ejected = eventually(Duration::from_secs(5), async || {
        chain.upstreams()[1].health().is_ejected()
    })
    .await;
    let ejection = killed_at.elapsed();
    let sent_by_then = sent.load(Ordering::SeqCst);
    assert!(ejected, "the dead upstream was not ejected");
    assert!(sent_by_then < TOTAL, "the ejection must happen under load");
    println!(
        "ejected {ejection:?} after the kill, under load ({sent_by_then} of {TOTAL} requests sent)"
    );
    let mut failures = Vec::new();
    while let Some(res) = workers.join_next().await {
        failures.extend(res.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} client requests failed, first: {}",
        failures.len(),
        failures[0]
    );
    assert!(sent.load(Ordering::SeqCst) >= TOTAL);
    assert_eq!(r.state_of("b").await, "ejected");
    // It comes back by itself once restarted.
    nodes[1].restart().await;
    assert!(
        eventually(Duration::from_secs(10), async || r.state_of("b").await
            == "healthy")
        .await,
        "restarted upstream did not re-enter: {:?}",
        r.status().await
    );
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_upstream_gets_no_head_reads_until_it_catches_up() {
    let (_nodes, urls, r) = cluster(
        &["--no-mining", "--timestamp", "1700000000"],
        &["a", "b", "slow"],
    )
    .await;
    for u in &urls[..2] {
        call(u, "anvil_mine", json!(["0x14"])).await;
    }
    assert!(
        eventually(Duration::from_secs(5), async || r.state_of("slow").await
            == "degraded")
        .await
    );
    let url = r.rpc_url("dev");
    for _ in 0..100 {
        let (status, headers, v) = call(&url, "eth_blockNumber", json!([])).await;
        assert_eq!(status, 200);
        assert_eq!(v["result"], "0x14", "a lagging node answered a head read");
        assert_ne!(headers["x-keel-upstream"], "slow");
    }
    // A historical read may still go to it.
    call(&urls[2], "anvil_mine", json!(["0x14"])).await;
    assert!(
        eventually(Duration::from_secs(5), async || r.state_of("slow").await
            == "healthy")
        .await
    );
    let mut served_by_slow = 0;
    for _ in 0..200 {
        let (_, headers, v) = call(&url, "eth_blockNumber", json!([])).await;
        assert_eq!(v["result"], "0x14");
        served_by_slow += usize::from(headers["x-keel-upstream"] == "slow");
    }
    assert!(
        served_by_slow > 0,
        "the recovered upstream never got traffic again"
    );
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_upstreams_down_gives_a_clear_error_in_time_then_recovers() {
    let mut nodes = [Anvil::start(GENESIS).await, Anvil::start(GENESIS).await];
    let urls: Vec<String> = nodes.iter().map(Anvil::url).collect();
    let mut config = config_for("dev", 31337, &[("a", &urls[0]), ("b", &urls[1])]);
    config.gateway.request_timeout = Duration::from_secs(2);
    let r = Running::start(config).await;
    r.ready().await;
    for n in &mut nodes {
        n.kill().await;
    }
    let url = r.rpc_url("dev");
    for _ in 0..5 {
        let started = Instant::now();
        let (status, headers, v) = call(&url, "eth_chainId", json!([])).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        let code = v["error"]["code"].as_i64().unwrap();
        assert!([-32002, -32003].contains(&code), "{v}");
        if code == -32002 {
            assert_eq!(status, 503);
            assert_eq!(headers["retry-after"], "1");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("no healthy upstream"),
                "{v}"
            );
        }
    }
    assert!(eventually(Duration::from_secs(5), async || !r.node.is_ready()).await);
    // Once every upstream is ejected, requests are refused at once with 503 (a request that
    // happens to be an ejected upstream's probe gets -32003 instead; both are clear errors).
    assert!(
        eventually(Duration::from_secs(5), async || {
            let (status, _, v) = call(&url, "eth_chainId", json!([])).await;
            status == 503 && v["error"]["code"] == -32002
        })
        .await
    );
    nodes[0].restart().await;
    assert!(
        eventually(Duration::from_secs(10), async || call(
            &url,
            "eth_chainId",
            json!([])
        )
        .await
        .2["result"]
            == "0x7a69")
        .await,
        "no recovery after an upstream returned"
    );
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_serves_only_while_no_primary_can() {
    let mut primary = Anvil::start(GENESIS).await;
    let backup = Anvil::start(GENESIS).await;
    let mut config = config_for(
        "dev",
        31337,
        &[("primary", &primary.url()), ("backup", &backup.url())],
    );
    config.chains[0].upstreams[1].tier = keel_config::Tier::Backup;
    let r = Running::start(config).await;
    r.ready().await;
    assert!(
        eventually(Duration::from_secs(5), async || r.state_of("backup").await
            == "healthy")
        .await
    );
    let url = r.rpc_url("dev");
    for _ in 0..50 {
        let (_, headers, v) = call(&url, "eth_chainId", json!([])).await;
        assert_eq!(v["result"], "0x7a69");
        assert_eq!(headers["x-keel-upstream"], "primary");
    }
    primary.kill().await;
    for _ in 0..50 {
        let (_, headers, v) = call(&url, "eth_chainId", json!([])).await;
        assert_eq!(v["result"], "0x7a69", "{v}");
        assert_eq!(headers["x-keel-upstream"], "backup");
    }
    primary.restart().await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            call(&url, "eth_chainId", json!([])).await.1["x-keel-upstream"] == "primary"
        })
        .await,
        "traffic did not return to the primary"
    );
}

/// An upstream one block behind (within `max_lag_blocks`) still serves head reads, but never
/// answers `null` for data it does not have yet: the request goes to one that has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_a_slightly_lagging_upstream_lacks_is_fetched_from_one_that_has_it() {
    let (_nodes, urls, r) = cluster(
        &["--no-mining", "--timestamp", "1700000000"],
        &["a", "b", "slow"],
    )
    .await;
    let raw = crate::support::signed_transfer(&urls[0]).await;
    let mut hash = serde_json::Value::Null;
    for u in &urls[..2] {
        hash = call(u, "eth_sendRawTransaction", json!([raw])).await.2["result"].clone();
        call(u, "evm_mine", json!([1_700_000_100u64])).await;
    }
    let block = call(&urls[0], "eth_getBlockByNumber", json!(["0x1", false]))
        .await
        .2["result"]
        .clone();
    assert_eq!(
        block,
        call(&urls[1], "eth_getBlockByNumber", json!(["0x1", false]))
            .await
            .2["result"]
    );
    // The slow node is behind by one block: still healthy (max_lag_blocks = 5).
    assert!(
        eventually(Duration::from_secs(5), async || r
            .node
            .chains()
            .get("dev")
            .unwrap()
            .head()
            == 1)
        .await
    );
    assert_eq!(r.state_of("slow").await, "healthy");
    let url = r.rpc_url("dev");
    for _ in 0..60 {
        let (_, h, v) = call(&url, "eth_getTransactionReceipt", json!([hash])).await;
        assert_eq!(
            v["result"]["status"],
            "0x1",
            "receipt missing (answered by {:?}): {v}",
            h.get("x-keel-upstream")
        );
        let (_, h, v) = call(&url, "eth_getBlockByNumber", json!(["0x1", false])).await;
        assert_eq!(
            v["result"]["hash"],
            block["hash"],
            "block 1 missing (answered by {:?})",
            h.get("x-keel-upstream")
        );
        let (_, _, v) = call(&url, "eth_getBlockByHash", json!([block["hash"], false])).await;
        assert_eq!(v["result"]["number"], "0x1", "{v}");
    }
}

/// A node without a block's state (pruned, or restarted from a state dump) answers a read at
/// that block with an error: another upstream that keeps the state answers instead, even at the
/// same head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_a_node_no_longer_keeps_is_read_from_one_that_does() {
    let archive = Anvil::start(GENESIS).await;
    let raw = crate::support::signed_transfer(&archive.url()).await;
    let (_, _, v) = call(&archive.url(), "eth_sendRawTransaction", json!([raw])).await;
    assert!(v["result"].is_string(), "{v}");
    call(&archive.url(), "evm_mine", json!([])).await;
    let pruned = crate::support::pruned_copy(&archive.url(), GENESIS).await;
    let past = json!([DEV_ADDR_0, "0x1"]);
    let want = call(&archive.url(), "eth_getBalance", past.clone()).await.2;
    assert!(want["result"].is_string(), "{want}");
    let lacking = call(&pruned.url(), "eth_getBalance", past.clone()).await.2;
    assert!(lacking["error"].is_object(), "{lacking}");

    // The archive is a backup: the pruned node is always asked first.
    let mut c = config_for(
        "dev",
        31337,
        &[("pruned", &pruned.url()), ("archive", &archive.url())],
    );
    c.chains[0].upstreams[1].tier = keel_config::Tier::Backup;
    let r = Running::start(c).await;
    r.ready().await;
    let url = r.rpc_url("dev");
    // The first read learns that the pruned node lacks block 1 (one retry); later ones go
    // straight to the archive.
    for i in 0..20 {
        let (_, h, v) = call(&url, "eth_getBalance", past.clone()).await;
        assert_eq!(v["result"], want["result"], "{v}");
        let retries = if i == 0 { "1" } else { "0" };
        assert_eq!(
            (&h["x-keel-upstream"], &h["x-keel-retries"]),
            (&"archive".parse().unwrap(), &retries.parse().unwrap()),
            "read {i}"
        );
    }
    let status = r.status().await;
    let history_from = |name: &str| {
        let ups = &status.chains[0].upstreams;
        ups.iter().find(|u| u["name"] == name).expect(name)["history_from"].clone()
    };
    assert_eq!(
        (history_from("pruned"), history_from("archive")),
        (json!(2), json!(null))
    );
    // Also a gauge, refreshed after each head poll.
    assert!(
        eventually(Duration::from_secs(10), async || {
            let m = crate::support::get_text(&r.admin("/metrics")).await;
            m.contains("keel_upstream_history_from{chain=\"dev\",upstream=\"pruned\"} 2\n")
                && m.contains("keel_upstream_history_from{chain=\"dev\",upstream=\"archive\"} 0\n")
        })
        .await
    );
    // Reads at the head still go to the pruned node alone.
    let (_, h, v) = call(&url, "eth_getBalance", json!([DEV_ADDR_0, "latest"])).await;
    assert!(v["result"].is_string(), "{v}");
    assert_eq!(h["x-keel-upstream"], "pruned");
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}
