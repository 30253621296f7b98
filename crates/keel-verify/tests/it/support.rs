//! Shared helpers: fetching proofs and state roots from a node.

use keel_testkit::rpc;
use serde_json::{Value, json};

/// The `result` of a JSON-RPC call; panics on a JSON-RPC error.
pub(crate) async fn call(url: &str, method: &str, params: Value) -> Value {
    let r = rpc(url, method, params.clone()).await;
    assert!(
        r.get("error").is_none(),
        "{method} {params} failed: {}",
        r["error"]
    );
    r["result"].clone()
}

/// Everything needed to verify one proof offline.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Case {
    pub(crate) block: String,
    pub(crate) state_root: String,
    pub(crate) address: String,
    pub(crate) storage_keys: Vec<String>,
    pub(crate) proof: Value,
}

/// Mines a block, then fetches the latest block's state root and `eth_getProof` at it.
pub(crate) async fn fetch_case(url: &str, address: &str, keys: &[&str]) -> Case {
    let block = call(url, "eth_getBlockByNumber", json!(["latest", false])).await;
    let number = block["number"].as_str().unwrap().to_owned();
    let proof = call(url, "eth_getProof", json!([address, keys, number])).await;
    Case {
        block: number,
        state_root: block["stateRoot"].as_str().unwrap().to_owned(),
        address: address.to_owned(),
        storage_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        proof,
    }
}

impl Case {
    /// Verifies the case with `keel_verify`.
    pub(crate) fn verify(&self) -> keel_verify::Result<keel_verify::VerifiedAccount> {
        self.verify_answer(&self.proof)
    }

    /// Verifies `answer` in place of the case's own proof.
    pub(crate) fn verify_answer(
        &self,
        answer: &Value,
    ) -> keel_verify::Result<keel_verify::VerifiedAccount> {
        let root = keel_verify::proof::parse_hash(&self.state_root).unwrap();
        let addr = keel_verify::proof::parse_address(&self.address).unwrap();
        let keys: Vec<[u8; 32]> = self
            .storage_keys
            .iter()
            .map(|k| keel_verify::proof::parse_word(k, "key").unwrap())
            .collect();
        let raw = serde_json::value::to_raw_value(answer).unwrap();
        keel_verify::verify_account_proof(&root, &addr, &keys, &raw)
    }
}
