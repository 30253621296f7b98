//! JSON-RPC edge cases through a whole node in front of one real anvil.

use std::time::Duration;

use keel_testkit::{Anvil, Tamper, config_for, eventually, rpc};
use serde_json::{Value, json};

use crate::support::{Running, call, post};

async fn node(anvil: &Anvil) -> Running {
    let mut c = config_for("dev", 31337, &[("a", &anvil.url())]);
    c.gateway.max_body_bytes = 4096;
    c.gateway.max_batch_len = 5;
    let r = Running::start(c).await;
    r.ready().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_invalid_requests_get_spec_errors() {
    let anvil = Anvil::start(&[]).await;
    let r = node(&anvil).await;
    let url = r.rpc_url("dev");

    let (status, _, v) = post(&url, "{\"jsonrpc\":").await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["error"]["code"].as_i64(), &v["id"]),
        (Some(-32700), &Value::Null),
        "{v}"
    );

    let (_, _, v) = post(&url, r#"{"jsonrpc":"2.0","id":9}"#).await;
    assert_eq!(
        (v["error"]["code"].as_i64(), v["id"].as_i64()),
        (Some(-32600), Some(9)),
        "{v}"
    );

    let (_, _, v) = post(&url, "[]").await;
    assert_eq!(v["error"]["code"], -32600, "{v}");

    let (_, _, v) = post(&url, "[1,2,3,4,5,6]").await;
    assert_eq!(v["error"]["code"], -32600);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 5"),
        "{v}"
    );

    // A batch mixing valid, invalid and notification entries: one answer per non-notification,
    // in order, invalid ones with their error.
    let (status, _, v) = post(
        &url,
        r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"foo":1},{"jsonrpc":"2.0","method":"eth_chainId"},{"jsonrpc":"2.0","id":"x","method":"eth_chainId","params":[]}]"#,
    )
    .await;
    assert_eq!(status, 200);
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3, "{v}");
    assert_eq!(
        (&arr[0]["id"], &arr[0]["result"]),
        (&json!(1), &json!("0x7a69"))
    );
    assert_eq!(
        (&arr[1]["id"], arr[1]["error"]["code"].as_i64()),
        (&Value::Null, Some(-32600))
    );
    assert_eq!(
        (&arr[2]["id"], &arr[2]["result"]),
        (&json!("x"), &json!("0x7a69"))
    );

    // An array is no request object (serde would read it positionally as jsonrpc, id, method).
    let (status, _, v) = post(&url, r#"[["2.0",1,"eth_chainId"]]"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&v[0]["id"], v[0]["error"]["code"].as_i64(), &v[0]["result"]),
        (&Value::Null, Some(-32600), &Value::Null),
        "{v}"
    );

    // A batch of notifications only and a single notification: nothing to answer.
    let (status, _, _) = post(&url, r#"[{"jsonrpc":"2.0","method":"eth_chainId"}]"#).await;
    assert_eq!(status, 204);
    let (status, _, _) = post(&url, r#"{"jsonrpc":"2.0","method":"eth_chainId"}"#).await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_every_type_come_back_byte_for_byte() {
    let anvil = Anvil::start(&[]).await;
    let r = node(&anvil).await;
    let url = r.rpc_url("dev");
    for id in [
        "0",
        "-1",
        "12345678901234567890123",
        "1.5",
        "1e3",
        "\"\"",
        "\"a\\\"b\"",
        "\"\\u00e9\"",
        "null",
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_chainId","params":[]}}"#);
        let text = reqwest::Client::new()
            .post(&url)
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"#)),
            "id {id} came back as {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_policy_and_unknown_chains() {
    let anvil = Anvil::start(&[]).await;
    let r = node(&anvil).await;
    let url = r.rpc_url("dev");

    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["{}"]}}"#,
        "a".repeat(5000)
    );
    let (status, _, v) = post(&url, big.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_i64()),
        (413, Some(-32600)),
        "{v}"
    );
    // Without a content length (chunked), the limit still holds.
    let stream = futures_stream(big);
    let resp = reqwest::Client::new()
        .post(&url)
        .body(stream)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);

    let (_, _, v) = call(&url, "anvil_mine", json!([])).await;
    assert_eq!(v["error"]["code"], -32601);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_node_control"),
        "{v}"
    );

    // Deterministic errors are answers: not retried.
    let (_, headers, v) = call(&url, "eth_getBlockByNumber", json!(["not-a-block", false])).await;
    assert!(v["error"].is_object(), "{v}");
    assert_eq!(headers["x-keel-retries"], "0");

    let (status, _, v) = call(
        &format!("http://{}/rpc/nope", r.node.gateway_addr()),
        "eth_chainId",
        json!([]),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown chain `nope`"),
        "{v}"
    );
    assert_eq!(v["chains"][0]["name"], "dev");

    // By chain id, and at / when there is one chain.
    let (_, headers, v) = call(
        &format!("http://{}/rpc/31337", r.node.gateway_addr()),
        "eth_chainId",
        json!([]),
    )
    .await;
    assert_eq!(v["result"], "0x7a69");
    assert_eq!(headers["x-keel-upstream"], "a");
    let (_, _, v) = call(
        &format!("http://{}/", r.node.gateway_addr()),
        "eth_chainId",
        json!([]),
    )
    .await;
    assert_eq!(v["result"], "0x7a69");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_served() {
    let anvil = Anvil::start(&[]).await;
    let r = node(&anvil).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = client
        .post(r.rpc_url("dev"))
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["result"], "0x7a69");
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

fn futures_stream(body: String) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .into_bytes()
        .chunks(512)
        .map(|c| Ok(c.to_vec()))
        .collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_batch_entry_holds_one_slot_not_the_entries_behind_it() {
    let anvil = Anvil::start(&[]).await;
    // Answers to eth_getCode are held for a minute; everything else passes at once.
    let slow = Tamper::slow_for(&anvil.url(), "eth_getCode", Duration::from_secs(60)).await;
    let mut c = config_for("dev", 31337, &[("a", &slow.url())]);
    c.chains[0].allow_node_control = true;
    c.gateway.request_timeout = Duration::from_secs(60);
    c.chains[0].upstreams[0].request_timeout = Duration::from_secs(60);
    let r = Running::start(c).await;
    r.ready().await;
    // One slow entry, fifteen fast ones, then one that changes state: a batch has 16 entries in
    // flight at once, so the last starts as soon as a fast one is done, not after the slow one.
    let addr = "0x000000000000000000000000000000000000ba7c";
    let mut entries = vec![
        json!({"jsonrpc": "2.0", "id": 0, "method": "eth_getCode", "params": [addr, "latest"]}),
    ];
    entries.extend(
        (1..16).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []})),
    );
    entries.push(
        json!({"jsonrpc": "2.0", "id": 16, "method": "anvil_setBalance", "params": [addr, "0x2a"]}),
    );
    let url = r.rpc_url("dev");
    let batch = tokio::spawn(async move { post(&url, Value::Array(entries).to_string()).await });
    assert!(
        eventually(Duration::from_secs(10), async || {
            rpc(&anvil.url(), "eth_getBalance", json!([addr, "latest"])).await["result"] == "0x2a"
        })
        .await,
        "the entry behind a slow one waited for it"
    );
    assert!(!batch.is_finished(), "the slow entry was not slow");
    batch.abort();
}
