//! Stateful filters live on the upstream that created them: keel hands out its own ids and
//! sends every call on a filter there.

use std::{collections::HashMap, time::Duration};

use keel_testkit::{eventually, rpc};
use serde_json::{Value, json};

use crate::support::{call, cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_stick_to_the_upstream_that_holds_them() {
    let (mut nodes, urls, r) = cluster(&[], &["a", "b", "c"]).await;
    assert!(
        eventually(Duration::from_secs(20), async || {
            r.status().await.chains[0]
                .upstreams
                .iter()
                .all(|u| u["state"] == "healthy")
        })
        .await
    );
    let url = r.rpc_url("dev");
    // Block filters, spread over the upstreams by the router.
    let mut holder: HashMap<String, String> = HashMap::new();
    for _ in 0..12 {
        let (s, h, v) = call(&url, "eth_newBlockFilter", json!([])).await;
        assert_eq!(s, 200, "{v}");
        let id = v["result"].as_str().unwrap().to_owned();
        assert!(
            id.len() == 34 && id.starts_with("0x"),
            "keel's own id: {id}"
        );
        let up = h["x-keel-upstream"].to_str().unwrap().to_owned();
        assert!(holder.insert(id, up).is_none(), "ids are unique");
    }
    let mut spread: Vec<&String> = holder.values().collect();
    spread.sort();
    spread.dedup();
    assert!(spread.len() >= 2, "all filters on one upstream: {holder:?}");
    let (_, _, v) = call(&url, "eth_newFilter", json!([{"fromBlock": "latest"}])).await;
    let log_filter = v["result"].as_str().unwrap().to_owned();

    // A new block on every node: every filter sees it, asked where it lives.
    for u in &urls {
        rpc(u, "evm_mine", json!([])).await;
    }
    for (id, up) in &holder {
        let (s, h, v) = call(&url, "eth_getFilterChanges", json!([id])).await;
        assert_eq!(s, 200);
        assert_eq!(v["result"].as_array().map(Vec::len), Some(1), "{id}: {v}");
        assert_eq!(h["x-keel-upstream"], up.as_str());
    }
    let (_, _, v) = call(&url, "eth_getFilterChanges", json!([log_filter])).await;
    assert_eq!(v["result"], json!([]), "no logs were emitted: {v}");

    // Unknown ids are refused as a node refuses them; uninstalling is idempotent.
    let (_, _, v) = call(&url, "eth_getFilterChanges", json!(["0x1"])).await;
    assert_eq!(
        (&v["error"]["code"], &v["error"]["message"]),
        (&json!(-32000), &json!("filter not found")),
        "{v}"
    );
    let id = holder.keys().next().unwrap().clone();
    let (_, _, v) = call(&url, "eth_uninstallFilter", json!([id])).await;
    assert_eq!(v["result"], true, "{v}");
    let (_, _, v) = call(&url, "eth_uninstallFilter", json!([id])).await;
    assert_eq!(v["result"], false, "{v}");
    let (_, _, v) = call(&url, "eth_getFilterChanges", json!([id])).await;
    assert_eq!(v["error"]["code"], -32000, "{v}");
    let (_, _, v) = call(&url, "eth_getFilterChanges", json!([])).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");

    // The node holding a filter dies: calls on it say so, instead of asking another node.
    let (victim_id, victim) = holder
        .iter()
        .find(|(i, _)| **i != id)
        .map(|(i, u)| (i.clone(), u.clone()))
        .unwrap();
    let index = ["a", "b", "c"].iter().position(|n| *n == victim).unwrap();
    nodes[index].kill().await;
    let (_, _, v): (u16, _, Value) = call(&url, "eth_getFilterChanges", json!([victim_id])).await;
    assert_eq!(v["error"]["code"], -32002, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("upstream {victim}")), "{message}");
}
