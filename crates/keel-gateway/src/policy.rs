//! Which methods a chain serves, and how each is routed.

use keel_chain::{Chain, Need};
use keel_config::MethodPolicyConfig;
use serde_json::value::RawValue;

/// Namespaces refused unless the chain sets `allow_node_control = true`.
const NODE_CONTROL: &[&str] = &[
    "admin_",
    "debug_",
    "personal_",
    "miner_",
    "anvil_",
    "evm_",
    "hardhat_",
    "engine_",
];
/// Namespaces that change node state; when allowed they go to every upstream.
const BROADCAST_CONTROL: &[&str] = &["anvil_", "evm_", "hardhat_"];
/// Methods that sign with the node's own (unlocked) accounts.
const NODE_ACCOUNTS: &[&str] = &[
    "eth_sendTransaction",
    "eth_sign",
    "eth_signTransaction",
    "eth_signTypedData",
];

/// Whether `method` is for pages the operator named: node control (whether or not the chain
/// allows it) and anything signing with the node's accounts (`eth_signTypedData` covers its
/// `_v1`, `_v3`, `_v4` forms). A page admitted only by `*` never gets them.
pub fn for_trusted_pages_only(method: &str) -> bool {
    NODE_CONTROL.iter().any(|ns| method.starts_with(ns))
        || NODE_ACCOUNTS
            .iter()
            .any(|m| method == *m || (*m == "eth_signTypedData" && method.starts_with(m)))
}

/// How a method is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A read: one upstream at a time, retried elsewhere on transport failures.
    Read {
        /// What the upstream must have.
        need: Need,
        /// A `null` result may mean "not there yet": retry on an upstream with a higher head.
        null_may_be_lag: bool,
    },
    /// A write or node-control call: sent to every usable upstream at once; first success answers.
    Broadcast {
        /// For `eth_sendRawTransaction`: "already known" replies count as success, and the
        /// answer is the transaction hash computed here.
        raw_tx: bool,
    },
}

/// Whether `method` is served by `chain`; `Err` holds the refusal message.
pub fn check(chain: &Chain, method: &str) -> Result<(), String> {
    let cfg = chain.config();
    let matches = |pattern: &String| match pattern.strip_suffix('*') {
        Some(prefix) => method.starts_with(prefix),
        None => method == pattern,
    };
    if cfg.methods.deny.iter().any(matches) {
        return Err(format!(
            "method {method} is denied on chain {}",
            chain.name()
        ));
    }
    if !cfg.methods.allow.is_empty() && !cfg.methods.allow.iter().any(matches) {
        return Err(format!(
            "method {method} is not in the allow list of chain {}",
            chain.name()
        ));
    }
    if !cfg.allow_node_control
        && !explicitly_allowed(&cfg.methods, method)
        && NODE_CONTROL.iter().any(|ns| method.starts_with(ns))
    {
        return Err(format!(
            "method {method} is a node-control or admin method, refused on chain {} (set allow_node_control = true to allow it)",
            chain.name()
        ));
    }
    Ok(())
}

fn explicitly_allowed(p: &MethodPolicyConfig, method: &str) -> bool {
    p.allow.iter().any(|a| a == method)
}

/// Decides the route of `method` with `params` on `chain`.
pub fn route(chain: &Chain, method: &str, params: Option<&RawValue>) -> Route {
    match method {
        "eth_sendRawTransaction" => return Route::Broadcast { raw_tx: true },
        "eth_sendTransaction" => return Route::Broadcast { raw_tx: false },
        _ => {}
    }
    if BROADCAST_CONTROL.iter().any(|ns| method.starts_with(ns)) {
        return Route::Broadcast { raw_tx: false };
    }
    if let Some(pos) = keel_verify::pin::block_param_index(method) {
        let arg = params.and_then(|p| nth_param(p, pos));
        let need = arg.map_or(Need::Head, |a| need_of_block_arg(chain, a));
        return Route::Read {
            need,
            null_may_be_lag: matches!(need, Need::Block(_)),
        };
    }
    match method {
        "eth_getBlockByHash"
        | "eth_getBlockTransactionCountByHash"
        | "eth_getTransactionByBlockHashAndIndex"
        | "eth_getUncleCountByBlockHash"
        | "eth_getUncleByBlockHashAndIndex" => {
            let need = params
                .and_then(|p| nth_param(p, 0))
                .and_then(|a| serde_json::from_str::<&str>(a.get()).ok())
                .and_then(|h| chain.block_number_of(h))
                .map_or(Need::Any, Need::Block);
            Route::Read {
                need,
                null_may_be_lag: true,
            }
        }
        "eth_getTransactionByHash"
        | "eth_getTransactionReceipt"
        | "eth_getRawTransactionByHash" => Route::Read {
            need: Need::Head,
            null_may_be_lag: true,
        },
        "eth_blockNumber"
        | "eth_gasPrice"
        | "eth_maxPriorityFeePerGas"
        | "eth_blobBaseFee"
        | "eth_getLogs"
        | "eth_syncing" => Route::Read {
            need: Need::Head,
            null_may_be_lag: false,
        },
        _ => Route::Read {
            need: Need::Any,
            null_may_be_lag: false,
        },
    }
}

fn nth_param(params: &RawValue, n: usize) -> Option<&RawValue> {
    let list: Vec<&RawValue> = serde_json::from_str(params.get()).ok()?;
    list.get(n).copied()
}

/// What a block argument (tag, number or EIP-1898 object) needs.
fn need_of_block_arg(chain: &Chain, arg: &RawValue) -> Need {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Eip1898<'a> {
        block_number: Option<&'a str>,
        block_hash: Option<&'a str>,
    }
    if let Ok(tag) = serde_json::from_str::<&str>(arg.get()) {
        return match tag {
            "latest" | "pending" => Need::Head,
            "earliest" | "safe" | "finalized" => Need::Any,
            hex => keel_chain::parse_quantity(hex).map_or(Need::Head, Need::Block),
        };
    }
    if let Ok(obj) = serde_json::from_str::<Eip1898<'_>>(arg.get()) {
        if let Some(n) = obj.block_number.and_then(keel_chain::parse_quantity) {
            return Need::Block(n);
        }
        if let Some(n) = obj.block_hash.and_then(|h| chain.block_number_of(h)) {
            return Need::Block(n);
        }
        return Need::Any;
    }
    Need::Head
}

/// Whether an upstream error means "this node does not have it (yet)" rather than an answer.
pub fn error_means_behind(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "header not found",
        "unknown block",
        "block not found",
        "missing trie node",
        "not yet available",
        "block height is",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// The message of the JSON-RPC error object `err` when it says the node lacks the data (see
/// [`error_means_behind`]): no answer, neither right nor wrong.
pub fn lacking_message(err: &RawValue) -> Option<String> {
    serde_json::from_str::<crate::jsonrpc::ErrorObject>(err.get())
        .ok()
        .filter(|e| error_means_behind(&e.message))
        .map(|e| e.message)
}

/// Whether a broadcast error means the node already has the transaction.
pub fn error_means_known(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "already known",
        "known transaction",
        "already imported",
        "already exists",
        "transaction already in",
    ]
    .iter()
    .any(|s| m.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::{ChainConfig, SecretUrl, UpstreamConfig};

    fn chain(node_control: bool) -> Chain {
        let mut c = ChainConfig::new(
            "t",
            1,
            vec![UpstreamConfig::new(
                "a",
                SecretUrl::parse("http://127.0.0.1:1").expect("url"),
            )],
        );
        c.allow_node_control = node_control;
        c.methods.deny = vec!["eth_sign*".into()];
        Chain::new(c).expect("chain")
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("raw")
    }

    #[test]
    fn pages_admitted_by_any_origin_get_no_node_control_or_node_accounts() {
        for m in [
            "evm_mine",
            "anvil_setBalance",
            "hardhat_impersonateAccount",
            "debug_traceTransaction",
            "personal_sign",
            "eth_sendTransaction",
            "eth_sign",
            "eth_signTransaction",
            "eth_signTypedData",
            "eth_signTypedData_v4",
        ] {
            assert!(for_trusted_pages_only(m), "{m}");
        }
        for m in [
            "eth_call",
            "eth_sendRawTransaction",
            "eth_getBalance",
            "eth_signer",
            "net_version",
        ] {
            assert!(!for_trusted_pages_only(m), "{m}");
        }
    }

    #[test]
    fn node_control_is_refused_unless_allowed() {
        let c = chain(false);
        for m in [
            "anvil_mine",
            "evm_mine",
            "debug_traceTransaction",
            "admin_peers",
            "personal_sign",
            "miner_start",
            "hardhat_reset",
        ] {
            let err = check(&c, m).expect_err(m);
            assert!(err.contains("allow_node_control"), "{err}");
        }
        assert!(check(&chain(true), "evm_mine").is_ok());
        assert!(check(&c, "eth_chainId").is_ok());
        assert!(
            check(&c, "eth_signTypedData")
                .expect_err("denied")
                .contains("denied")
        );
    }

    #[test]
    fn block_arguments_decide_the_need() {
        let c = chain(false);
        let r = |m: &str, p: &str| route(&c, m, Some(&raw(p)));
        assert_eq!(
            r("eth_getBalance", r#"["0x1","0x10"]"#),
            Route::Read {
                need: Need::Block(16),
                null_may_be_lag: true
            }
        );
        assert_eq!(
            r("eth_getBalance", r#"["0x1","latest"]"#),
            Route::Read {
                need: Need::Head,
                null_may_be_lag: false
            }
        );
        assert_eq!(
            r("eth_getBalance", r#"["0x1"]"#),
            Route::Read {
                need: Need::Head,
                null_may_be_lag: false
            }
        );
        assert_eq!(
            r("eth_call", r#"[{},{"blockNumber":"0x5"}]"#),
            Route::Read {
                need: Need::Block(5),
                null_may_be_lag: true
            }
        );
        assert_eq!(
            r("eth_getStorageAt", r#"["0x1","0x0","finalized"]"#),
            Route::Read {
                need: Need::Any,
                null_may_be_lag: false
            }
        );
        c.remember_block("0xABCD", 7);
        assert_eq!(
            r("eth_getBlockByHash", r#"["0xabcd",false]"#),
            Route::Read {
                need: Need::Block(7),
                null_may_be_lag: true
            }
        );
        assert_eq!(
            r("eth_sendRawTransaction", r#"["0x00"]"#),
            Route::Broadcast { raw_tx: true }
        );
        assert_eq!(r("evm_mine", "[]"), Route::Broadcast { raw_tx: false });
        assert_eq!(
            r("eth_chainId", "[]"),
            Route::Read {
                need: Need::Any,
                null_may_be_lag: false
            }
        );
    }

    #[test]
    fn behind_and_known_errors_are_recognised() {
        assert!(error_means_behind("header not found"));
        // anvil, asked for state it does not hold (e.g. a devnet node restarted from a state dump).
        assert!(error_means_behind(
            "BlockOutOfRangeError: block height is 4 but requested was 3"
        ));
        assert!(!error_means_behind("execution reverted"));
        assert!(error_means_known("already known"));
        assert!(!error_means_known("nonce too low"));
    }
}
