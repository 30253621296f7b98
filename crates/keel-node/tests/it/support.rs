//! Starting nodes and talking to them.

use std::time::Duration;

use keel_config::Config;
use keel_node::{Node, StatusReport};
use serde_json::{Value, json};
use tempfile::TempDir;

pub struct Running {
    pub node: Node,
    pub _dir: TempDir,
}

impl Running {
    pub async fn start(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::bind(config, dir.path()).await.unwrap();
        Self { node, _dir: dir }
    }

    pub fn rpc_url(&self, chain: &str) -> String {
        format!("http://{}/rpc/{chain}", self.node.gateway_addr())
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.admin_addr())
    }

    pub async fn status(&self) -> StatusReport {
        reqwest::get(self.admin("/status"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// State of upstream `name` in `/status`.
    pub async fn state_of(&self, name: &str) -> String {
        let s = self.status().await;
        s.chains
            .iter()
            .flat_map(|c| &c.upstreams)
            .find(|u| u["name"] == name)
            .map(|u| u["state"].as_str().unwrap().to_owned())
            .unwrap()
    }

    /// Waits until the node is ready.
    pub async fn ready(&self) {
        assert!(
            keel_testkit::eventually(Duration::from_secs(20), async || self.node.is_ready()).await,
            "node did not become ready: {:?}",
            self.status().await
        );
    }
}

/// POSTs `body` and returns status, headers and parsed JSON (Null for an empty body).
pub async fn post(
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}))
    };
    (status, headers, v)
}

pub async fn call(
    url: &str,
    method: &str,
    params: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    post(
        url,
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
    )
    .await
}

/// Starts one anvil per name with `args`, and a ready node serving them as chain `dev` (31337).
pub async fn cluster(
    args: &[&str],
    names: &[&str],
) -> (Vec<keel_testkit::Anvil>, Vec<String>, Running) {
    let mut nodes = Vec::new();
    for _ in names {
        nodes.push(keel_testkit::Anvil::start(args).await);
    }
    let urls: Vec<String> = nodes.iter().map(keel_testkit::Anvil::url).collect();
    let ups: Vec<(&str, &str)> = names
        .iter()
        .copied()
        .zip(urls.iter().map(String::as_str))
        .collect();
    let r = Running::start(keel_testkit::config_for("dev", 31337, &ups)).await;
    r.ready().await;
    (nodes, urls, r)
}

/// A fresh anvil started with `args` holding `source`'s blocks and current state but none of
/// its past states, as a pruned node would: state reads pinned to any past block (even the
/// head's number) get an error, reads at `latest` work.
pub async fn pruned_copy(source: &str, args: &[&str]) -> keel_testkit::Anvil {
    let pruned = keel_testkit::Anvil::start(args).await;
    let state = call(source, "anvil_dumpState", json!([])).await.2["result"].clone();
    let (_, _, v) = call(&pruned.url(), "anvil_loadState", json!([state])).await;
    assert_eq!(v["result"], true, "{v}");
    pruned
}

/// GETs `url` and returns its body.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// A signed legacy transfer of 1 wei from dev account 0 to dev account 1 (nonce 0), made by cast.
pub async fn signed_transfer(rpc_url: &str) -> String {
    cast(&[
        "mktx",
        "--private-key",
        keel_testkit::DEV_KEY_0,
        keel_testkit::DEV_ADDR_1,
        "--value",
        "1",
        "--nonce",
        "0",
        "--gas-limit",
        "21000",
        "--gas-price",
        "2000000000",
        "--chain",
        "31337",
        "--legacy",
        "--rpc-url",
        rpc_url,
    ])
    .await
}

pub async fn cast(args: &[&str]) -> String {
    let out = tokio::process::Command::new(keel_testkit::cast())
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "cast {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
