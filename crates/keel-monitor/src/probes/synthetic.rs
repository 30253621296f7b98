//! The synthetic transaction probe: every `interval`, a configured key sends a zero-value
//! self-transfer (a legacy EIP-155 transaction signed here) through the gateway, then polls
//! its receipt about once a second. Included within `max_blocks` blocks of the block it was
//! sent at: `keel_synthetic_tx_ok` = 1 and the inclusion time and blocks are reported.
//! Refused by the gateway, or not included in time: `keel_synthetic_tx_ok` = 0. The next
//! transaction reuses the mined nonce, so it replaces one stuck in a mempool (at a higher gas
//! price).

use std::time::{Duration, Instant};

use k256::ecdsa::SigningKey;
use keel_config::monitor::SyntheticTxConfig;
use serde_json::{Value, json};
use sha3::{Digest, Keccak256};

use crate::metrics::{ChainLabels, MonitorMetrics, ProbeLabels};

/// A key able to sign transactions.
#[derive(Clone)]
pub struct TxKey {
    key: SigningKey,
    /// Its address, 20 bytes.
    pub address: [u8; 20],
}

impl std::fmt::Debug for TxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxKey(0x{})", hex::encode(self.address))
    }
}

impl TxKey {
    /// Parses a hex private key (with or without `0x`).
    pub fn parse(hex_key: &str) -> Result<Self, String> {
        let bytes = hex::decode(hex_key.trim().trim_start_matches("0x"))
            .map_err(|_| "the key is not hex".to_owned())?;
        let key =
            SigningKey::from_slice(&bytes).map_err(|_| "not a secp256k1 private key".to_owned())?;
        let point = key.verifying_key().to_encoded_point(false);
        let hash = Keccak256::digest(&point.as_bytes()[1..]);
        let mut address = [0u8; 20];
        address.copy_from_slice(&hash[12..]);
        Ok(Self { key, address })
    }

    /// `0x…` address.
    pub fn address_hex(&self) -> String {
        format!("0x{}", hex::encode(self.address))
    }

    /// Signs a zero-value transfer to itself: the raw transaction and its hash.
    pub fn self_transfer(
        &self,
        chain_id: u64,
        nonce: u64,
        gas_price: u128,
    ) -> Result<(Vec<u8>, [u8; 32]), String> {
        let fields = |v: &[u8], r: &[u8], s: &[u8]| -> Vec<u8> {
            let mut items = Vec::new();
            rlp_uint(&mut items, u128::from(nonce));
            rlp_uint(&mut items, gas_price);
            rlp_uint(&mut items, 21_000);
            rlp_bytes(&mut items, &self.address);
            rlp_uint(&mut items, 0);
            rlp_bytes(&mut items, &[]);
            rlp_bytes(&mut items, v);
            rlp_bytes(&mut items, r);
            rlp_bytes(&mut items, s);
            rlp_list(&items)
        };
        let id = trim(&chain_id.to_be_bytes()).to_vec();
        let unsigned = fields(&id, &[], &[]);
        let sighash: [u8; 32] = Keccak256::digest(&unsigned).into();
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(&sighash)
            .map_err(|e| format!("cannot sign: {e}"))?;
        // k256 signs with a low s (EIP-2) and the matching recovery id.
        let v = u128::from(chain_id) * 2 + 35 + u128::from(recid.to_byte());
        let bytes = sig.to_bytes();
        let raw = fields(
            trim(&v.to_be_bytes()),
            trim(&bytes[..32]),
            trim(&bytes[32..]),
        );
        let hash: [u8; 32] = Keccak256::digest(&raw).into();
        Ok((raw, hash))
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

fn rlp_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() == 1 && b[0] < 0x80 {
        out.push(b[0]);
    } else {
        rlp_len(out, b.len(), 0x80);
        out.extend_from_slice(b);
    }
}

fn rlp_uint(out: &mut Vec<u8>, v: u128) {
    rlp_bytes(out, trim(&v.to_be_bytes()));
}

fn rlp_len(out: &mut Vec<u8>, len: usize, base: u8) {
    if len < 56 {
        out.push(base + len as u8);
    } else {
        let l = trim(&(len as u64).to_be_bytes()).to_vec();
        out.push(base + 55 + l.len() as u8);
        out.extend_from_slice(&l);
    }
}

fn rlp_list(items: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() + 9);
    rlp_len(&mut out, items.len(), 0xc0);
    out.extend_from_slice(items);
    out
}

struct Rpc {
    http: reqwest::Client,
    url: String,
    max: usize,
}

impl Rpc {
    async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let resp = self
            .http
            .post(&self.url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .map_err(|e| format!("{method}: {}", e.without_url()))?;
        let body = super::read_capped(resp, self.max)
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{method}: not JSON: {e}"))?;
        match v.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(format!(
                "{method}: {}",
                v.get("error")
                    .map_or_else(|| "no result".to_owned(), ToString::to_string)
            )),
        }
    }

    async fn quantity(&self, method: &str, params: Value) -> Result<u64, String> {
        let v = self.call(method, params).await?;
        v.as_str()
            .and_then(keel_chain::parse_quantity)
            .ok_or_else(|| format!("{method}: not a quantity"))
    }
}

/// Runs the probe until cancelled. `url` is the gateway endpoint of the chain.
pub async fn run(
    cfg: SyntheticTxConfig,
    key: TxKey,
    chain_id: u64,
    url: String,
    metrics: MonitorMetrics,
) {
    let rpc = Rpc {
        http: reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .unwrap_or_default(),
        url,
        max: 1 << 20,
    };
    let chain = ChainLabels {
        chain: cfg.chain.clone(),
    };
    let probe = ProbeLabels {
        kind: "synthetic_tx",
        probe: cfg.chain.clone(),
    };
    let mut ticker = super::ticker(cfg.interval);
    let mut last_price: u128 = 0;
    loop {
        ticker.tick().await;
        let t0 = Instant::now();
        let outcome = once(
            &cfg,
            &key,
            chain_id,
            &rpc,
            &metrics,
            &chain,
            &mut last_price,
        )
        .await;
        metrics
            .probe_duration_seconds
            .get_or_create(&probe)
            .set(t0.elapsed().as_secs_f64());
        match outcome {
            Ok((secs, blocks)) => {
                metrics.synthetic_tx_included.get_or_create(&chain).inc();
                metrics.synthetic_tx_ok.get_or_create(&chain).set(1);
                metrics
                    .synthetic_tx_inclusion_seconds
                    .get_or_create(&chain)
                    .set(secs);
                metrics
                    .synthetic_tx_inclusion_blocks
                    .get_or_create(&chain)
                    .set(i64::try_from(blocks).unwrap_or(i64::MAX));
                metrics.probe_up.get_or_create(&probe).set(1);
                last_price = 0;
            }
            Err(e) => {
                tracing::warn!(chain = %cfg.chain, error = %e, "synthetic transaction failed");
                metrics.synthetic_tx_failed.get_or_create(&chain).inc();
                metrics.synthetic_tx_ok.get_or_create(&chain).set(0);
                metrics.probe_up.get_or_create(&probe).set(0);
                metrics.probe_failures.get_or_create(&probe).inc();
            }
        }
    }
}

async fn once(
    cfg: &SyntheticTxConfig,
    key: &TxKey,
    chain_id: u64,
    rpc: &Rpc,
    metrics: &MonitorMetrics,
    chain: &ChainLabels,
    last_price: &mut u128,
) -> Result<(f64, u64), String> {
    let nonce = rpc
        .quantity(
            "eth_getTransactionCount",
            json!([key.address_hex(), "latest"]),
        )
        .await?;
    let price = match cfg.gas_price {
        Some(p) => u128::from(p),
        None => u128::from(rpc.quantity("eth_gasPrice", json!([])).await?) * 2,
    };
    // Replacing a transaction stuck with the same nonce needs a higher price.
    let price = price.max(*last_price + *last_price / 4 + 1);
    *last_price = price;
    let (raw, hash) = key.self_transfer(chain_id, nonce, price)?;
    let sent_block = rpc.quantity("eth_blockNumber", json!([])).await?;
    let sent = Instant::now();
    metrics.synthetic_tx_sent.get_or_create(chain).inc();
    let hash_hex = format!("0x{}", hex::encode(hash));
    rpc.call(
        "eth_sendRawTransaction",
        json!([format!("0x{}", hex::encode(raw))]),
    )
    .await?;
    let poll = Duration::from_secs(1).min(cfg.interval);
    loop {
        tokio::time::sleep(poll).await;
        if let Ok(r) = rpc
            .call("eth_getTransactionReceipt", json!([hash_hex]))
            .await
            && let Some(b) = r
                .get("blockNumber")
                .and_then(Value::as_str)
                .and_then(keel_chain::parse_quantity)
        {
            return Ok((sent.elapsed().as_secs_f64(), b.saturating_sub(sent_block)));
        }
        let now_block = rpc.quantity("eth_blockNumber", json!([])).await?;
        if now_block.saturating_sub(sent_block) > cfg.max_blocks {
            return Err(format!(
                "transaction {hash_hex} not included within {} blocks ({} blocks since it was sent)",
                cfg.max_blocks,
                now_block - sent_block
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_a_transaction_from_the_known_dev_account() {
        // anvil's first dev account.
        let k = TxKey::parse("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
            .expect("key");
        assert_eq!(
            k.address_hex(),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
        let (raw, hash) = k.self_transfer(31337, 0, 2_000_000_000).expect("sign");
        assert_eq!(raw[0] & 0xc0, 0xc0, "an RLP list");
        assert_eq!(Keccak256::digest(&raw).as_slice(), hash);
        assert!(TxKey::parse("zz").is_err());
    }

    #[test]
    fn rlp_encodes_as_the_spec_examples() {
        let mut o = Vec::new();
        rlp_bytes(&mut o, b"dog");
        assert_eq!(o, [0x83, b'd', b'o', b'g']);
        let mut o = Vec::new();
        rlp_uint(&mut o, 0);
        assert_eq!(o, [0x80]);
        let mut o = Vec::new();
        rlp_uint(&mut o, 1024);
        assert_eq!(o, [0x82, 0x04, 0x00]);
        assert_eq!(rlp_list(&[]), [0xc0]);
        let long = vec![b'a'; 60];
        let mut o = Vec::new();
        rlp_bytes(&mut o, &long);
        assert_eq!(&o[..2], &[0xb8, 60]);
    }
}
