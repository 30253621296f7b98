//! A minimal JSON-RPC client for talking to the devnet's own nodes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::DevnetError;

#[derive(Debug)]
pub(crate) struct Rpc {
    url: String,
    client: reqwest::Client,
}

impl Rpc {
    pub(crate) fn new(url: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            url: url.to_owned(),
            client,
        }
    }

    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value, DevnetError> {
        let err = |reason: String| DevnetError::Rpc {
            url: self.url.clone(),
            method: method.to_owned(),
            reason,
        };
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut v: Value = resp.json().await.map_err(|e| err(e.to_string()))?;
        if let Some(e) = v.get("error") {
            return Err(err(e.to_string()));
        }
        Ok(v["result"].take())
    }

    /// Hashes of pending and queued transactions.
    pub(crate) async fn pending_hashes(&self) -> Result<Vec<String>, DevnetError> {
        let v = self.call("txpool_content", json!([])).await?;
        let mut out = Vec::new();
        for section in ["pending", "queued"] {
            for by_nonce in v[section].as_object().into_iter().flat_map(|m| m.values()) {
                for tx in by_nonce.as_object().into_iter().flat_map(|m| m.values()) {
                    if let Some(h) = tx["hash"].as_str() {
                        out.push(h.to_owned());
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

pub(crate) fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}
