//! Block-tag pinning: ask every upstream about the same block.
//!
//! Before a request is fanned out, `latest`, `safe`, `finalized` and an omitted (or `null`)
//! block parameter are replaced by a block number the chain's upstreams agree on. Every other
//! param keeps its exact bytes. Explicit numbers, `earliest`, `pending`, and EIP-1898 objects
//! (`{"blockHash": ...}`) are left alone. `eth_getLogs` filters (`fromBlock`/`toBlock`) are not
//! rewritten here.

use serde_json::value::RawValue;

use crate::{VerifyError, error::Result};

/// Where the block parameter of `method` sits in its params, for the methods that take one.
pub fn block_param_index(method: &str) -> Option<usize> {
    Some(match method {
        "eth_getBlockByNumber"
        | "eth_getBlockTransactionCountByNumber"
        | "eth_getTransactionByBlockNumberAndIndex"
        | "eth_getUncleByBlockNumberAndIndex"
        | "eth_getUncleCountByBlockNumber"
        | "eth_getBlockReceipts" => 0,
        "eth_getBalance"
        | "eth_getCode"
        | "eth_getTransactionCount"
        | "eth_call"
        | "eth_estimateGas"
        | "eth_createAccessList"
        | "eth_feeHistory"
        | "debug_traceCall" => 1,
        "eth_getStorageAt" | "eth_getProof" => 2,
        _ => return None,
    })
}

/// The block numbers tags resolve to. A tag whose number is `None` is left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPins {
    /// For `latest` and omitted block params.
    pub latest: u64,
    /// For `safe`.
    pub safe: Option<u64>,
    /// For `finalized`.
    pub finalized: Option<u64>,
}

impl BlockPins {
    /// Pins only `latest` and omitted params to `block`.
    pub fn latest(block: u64) -> Self {
        Self {
            latest: block,
            safe: None,
            finalized: None,
        }
    }
}

/// Params rewritten by [`pin_block`].
#[derive(Debug)]
pub struct Pinned {
    /// The params with the block parameter as a number.
    pub params: Box<RawValue>,
    /// That number.
    pub block: u64,
}

/// Rewrites `params` of `method` so that its block parameter is a number.
///
/// Returns `Ok(None)` when there is nothing to pin (the method takes no block parameter, or it
/// is already explicit), `Ok(Some(pinned))` with the rewritten array otherwise, and an error when
/// params are not an array or leave a gap before the block parameter. Whitespace between
/// elements is not kept; each element's bytes are.
pub fn pin_block(method: &str, params: &RawValue, pins: &BlockPins) -> Result<Option<Pinned>> {
    let Some(index) = block_param_index(method) else {
        return Ok(None);
    };
    let bad = |reason: &str| VerifyError::BadParams {
        method: method.to_owned(),
        reason: reason.to_owned(),
    };
    let items: Vec<&RawValue> = if params.get().trim() == "null" {
        Vec::new()
    } else {
        serde_json::from_str(params.get()).map_err(|_| bad("params are not a JSON array"))?
    };
    if items.len() < index {
        return Err(bad(&format!(
            "{} params given, the block parameter is number {}",
            items.len(),
            index + 1
        )));
    }
    let current = items.get(index).map(|r| r.get().trim());
    let number = match current {
        None | Some("null" | "\"latest\"") => Some(pins.latest),
        Some("\"safe\"") => pins.safe,
        Some("\"finalized\"") => pins.finalized,
        Some(_) => None,
    };
    let Some(number) = number else {
        return Ok(None);
    };
    let tag = format!("\"{number:#x}\"");
    let mut parts: Vec<&str> = items.iter().map(|r| r.get()).collect();
    if parts.len() == index {
        parts.push(&tag);
    } else {
        parts[index] = &tag;
    }
    let out = format!("[{}]", parts.join(","));
    RawValue::from_string(out)
        .map(|params| {
            Some(Pinned {
                params,
                block: number,
            })
        })
        .map_err(|_| bad("rewritten params are not valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(method: &str, params: &str) -> Option<String> {
        let pins = BlockPins {
            latest: 0x20,
            safe: Some(0x10),
            finalized: None,
        };
        let raw = RawValue::from_string(params.to_owned()).unwrap();
        pin_block(method, &raw, &pins)
            .unwrap()
            .map(|p| p.params.get().to_owned())
    }

    #[test]
    fn pins_tags_and_omitted_params() {
        let a = r#""0xAbC0000000000000000000000000000000000001""#;
        assert_eq!(
            pin("eth_getBalance", &format!("[{a}, \"latest\"]")).as_deref(),
            Some(format!("[{a},\"0x20\"]").as_str())
        );
        assert_eq!(
            pin("eth_getBalance", &format!("[{a}]")),
            Some(format!("[{a},\"0x20\"]"))
        );
        assert_eq!(
            pin("eth_getStorageAt", &format!("[{a},\"0x0\",\"safe\"]")),
            Some(format!("[{a},\"0x0\",\"0x10\"]"))
        );
        assert_eq!(
            pin("eth_getStorageAt", &format!("[{a},\"0x0\",\"finalized\"]")),
            None
        );
        let call = r#"{"to": "0x00", "data":"0x12"}"#;
        assert_eq!(
            pin("eth_call", &format!("[{call}]")),
            Some(format!("[{call},\"0x20\"]"))
        );
        assert_eq!(
            pin("eth_call", &format!("[{call}, null, {{\"0x1\": {{}}}}]")),
            Some(format!("[{call},\"0x20\",{{\"0x1\": {{}}}}]"))
        );
        assert_eq!(
            pin("eth_getBlockByNumber", r#"["latest", true]"#).as_deref(),
            Some(r#"["0x20",true]"#)
        );
        assert_eq!(
            pin("eth_getProof", &format!("[{a}, [\"0x1\"], \"latest\"]")),
            Some(format!("[{a},[\"0x1\"],\"0x20\"]"))
        );
    }

    #[test]
    fn leaves_explicit_blocks_and_other_methods() {
        assert_eq!(pin("eth_getBalance", r#"["0x1", "0x5"]"#), None);
        assert_eq!(pin("eth_getBalance", r#"["0x1", "pending"]"#), None);
        assert_eq!(pin("eth_getBalance", r#"["0x1", "earliest"]"#), None);
        assert_eq!(
            pin("eth_getBalance", r#"["0x1", {"blockHash": "0x12"}]"#),
            None
        );
        assert_eq!(pin("eth_sendRawTransaction", r#"["0x12"]"#), None);
        assert_eq!(pin("eth_getLogs", r#"[{"fromBlock": "latest"}]"#), None);
    }

    #[test]
    fn rejects_bad_params() {
        let raw = RawValue::from_string(r#"{"a":1}"#.to_owned()).unwrap();
        assert!(pin_block("eth_getBalance", &raw, &BlockPins::latest(1)).is_err());
        let raw = RawValue::from_string("[]".to_owned()).unwrap();
        assert!(matches!(
            pin_block("eth_getStorageAt", &raw, &BlockPins::latest(1)),
            Err(VerifyError::BadParams { .. })
        ));
    }
}
