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
    if let Some(pos) =
        keel_verify::pin::block_param_index(method).or_else(|| unpinned_block_param_index(method))
    {
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

/// Where the block parameter sits in by-number reads that verification never pins (their
/// answers are not checked), so that they too go to upstreams that have the block, and a block
/// beyond every head gets the chain's own "not found".
fn unpinned_block_param_index(method: &str) -> Option<usize> {
    match method {
        "eth_getHeaderByNumber"
        | "erigon_getHeaderByNumber"
        | "debug_getRawHeader"
        | "debug_getRawBlock"
        | "debug_getRawReceipts"
        | "debug_traceBlockByNumber"
        | "trace_block"
        | "trace_replayBlockTransactions" => Some(0),
        _ => None,
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

/// The JSON-RPC error code of EIP-4444's "pruned history unavailable", which reth, geth and
/// Nethermind answer for blocks (or receipts, logs) they no longer keep.
pub const PRUNED_HISTORY_CODE: i64 = 4444;

/// The errors with which nodes say they do not have the block or state asked for (not yet, or
/// no longer), each from the client's source: an error means "lacking" when its message
/// contains every part of one entry, case-insensitively.
const LACKING: &[&[&str]] = &[
    // geth: eth/api_backend.go, internal/ethapi (StateAndHeaderByNumber, header lookups).
    &["header not found"],
    // geth: eth/api_backend.go (StateAndHeaderByNumberOrHash).
    &["header for hash not found"],
    // geth: eth/gasprice/feehistory.go errRequestBeyondHead (eth_feeHistory past its head).
    &["request beyond head block"],
    // geth: "unknown block"; besu: RpcErrorType.UNKNOWN_BLOCK "Unknown block" (-39001).
    &["unknown block"],
    // reth: crates/rpc/rpc-eth-types/src/error/mod.rs, HeaderNotFound as -32001
    // "block not found: <id>"; besu: RpcErrorType.BLOCK_NOT_FOUND "Block not found".
    &["block not found"],
    // geth (hash scheme, pruned state): trie/errors.go MissingNodeError.
    &["missing trie node"],
    // reth: EthApiError::PrunedHistoryUnavailable (code 4444); geth: core/history/historymode.go
    // PrunedHistoryError (code 4444); Nethermind: ErrorMessages.PrunedHistoryUnavailable
    // (Nethermind.JsonRpc/ErrorCodes.cs, code 4444).
    &["pruned history unavailable"],
    // reth: crates/storage/errors/src/provider.rs ProviderError::StateAtBlockPruned,
    // "state at block #N is pruned" (sent as an internal error, -32603).
    &["state at block", "is pruned"],
    // reth: EthApiError::ExceedsMaxProofWindow (eth_getProof older than its proof window).
    &["exceeds maximum proof window"],
    // geth (path scheme): eth/state_accessor.go "historical state is not available",
    // core/state/database_history.go "historical state <root> is not available", older releases
    // "historical state not available in path scheme yet"; (hash scheme, tracing)
    // eth/state_accessor.go "required historical state unavailable (reexec=N)".
    &["historical state", "not available"],
    &["historical state", "unavailable"],
    // geth (path scheme): triedb/pathdb/reader.go, while the state history index is built:
    // "state histories haven't been fully indexed yet".
    &["histories haven't been fully indexed"],
    // erigon: core/state/history_reader_v3.go state.PrunedError.
    &["old data not available due to pruning"],
    // Nethermind: Nethermind.JsonRpc/Modules/Eth/EthRpcModule.cs GetStateFailureResult,
    // "No state available for block <hash>" (-32002).
    &["no state available for block"],
    // besu: ethereum/api/.../jsonrpc/internal/response/RpcErrorType.java
    // WORLD_STATE_UNAVAILABLE "World state unavailable".
    &["world state unavailable"],
    // A node still syncing (several clients).
    &["not yet available"],
    // anvil: "BlockOutOfRangeError: block height is N but requested was M".
    &["block height is"],
];

/// Whether an upstream error message means "this node does not have it (yet)" rather than an
/// answer: the block, its state or its history is missing on this node, and another node may
/// have it (the wordings of geth, reth, erigon, Nethermind, besu and anvil).
pub fn error_means_behind(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    LACKING
        .iter()
        .any(|parts| parts.iter().all(|p| m.contains(p)))
}

/// [`error_means_behind`] for a whole error: its code too, since EIP-4444's
/// [`PRUNED_HISTORY_CODE`] says "pruned" whatever the message. A reverted call (code 3, or
/// "execution reverted: …") is always an answer: its reason is the contract's text, and a
/// contract reverting with "header not found" must not make keel ask every upstream.
pub fn error_means_lacking(code: i64, message: &str) -> bool {
    if code == 3
        || message
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("execution reverted")
    {
        return false;
    }
    code == PRUNED_HISTORY_CODE || error_means_behind(message)
}

/// The message of the JSON-RPC error object `err` when it says the node lacks the data (see
/// [`error_means_lacking`]): no answer, neither right nor wrong.
pub fn lacking_message(err: &RawValue) -> Option<String> {
    serde_json::from_str::<crate::jsonrpc::ErrorObject>(err.get())
        .ok()
        .filter(|e| error_means_lacking(e.code, &e.message))
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
            r("eth_getHeaderByNumber", r#"["0x7fffffff"]"#),
            Route::Read {
                need: Need::Block(0x7fff_ffff),
                null_may_be_lag: true
            }
        );
        assert_eq!(
            r("debug_traceBlockByNumber", r#"["latest",{}]"#),
            Route::Read {
                need: Need::Head,
                null_may_be_lag: false
            }
        );
        assert_eq!(
            r("eth_chainId", "[]"),
            Route::Read {
                need: Need::Any,
                null_may_be_lag: false
            }
        );
    }

    /// Whether the JSON-RPC error object `{code, message}` means the node lacks the data.
    fn lacking(code: i64, message: &str) -> bool {
        let err = serde_json::json!({"code": code, "message": message}).to_string();
        lacking_message(&raw(&err)).is_some()
    }

    #[test]
    fn reth_pruned_and_missing_wordings_mean_lacking() {
        // EthApiError::PrunedHistoryUnavailable: code 4444 whatever the message says.
        assert!(lacking(4444, "pruned history unavailable"));
        assert!(lacking(4444, "something else entirely"));
        // HeaderNotFound / ReceiptsNotFound as sent: -32001 "block not found: <id>".
        assert!(lacking(-32001, "block not found: hash 0xabc"));
        assert!(lacking(-32001, "block not found: number 0x10"));
        // ProviderError::StateAtBlockPruned, sent as an internal error.
        assert!(lacking(-32603, "state at block #17000000 is pruned"));
        // EthApiError::ExceedsMaxProofWindow on eth_getProof.
        assert!(lacking(
            -32602,
            "distance to target block exceeds maximum proof window"
        ));
    }

    #[test]
    fn geth_pruned_and_missing_wordings_mean_lacking() {
        assert!(lacking(-32000, "header not found"));
        assert!(lacking(-32000, "header for hash not found"));
        assert!(lacking(-32000, "unknown block"));
        assert!(lacking(
            -32000,
            "request beyond head block: requested 2147483647, head 19000000"
        ));
        assert!(lacking(
            -32000,
            "missing trie node 1d3b7dfa4c1b5e5e0b2f6b8e5a7b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b (path ) state 0x1d3b is not available"
        ));
        // core/history PrunedHistoryError (history expiry).
        assert!(lacking(4444, "pruned history unavailable"));
        // Path scheme: the live state is recent only.
        assert!(lacking(-32000, "historical state is not available"));
        assert!(lacking(
            -32000,
            "historical state 5c8cba4f9c5e4c7e0c3f0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f is not available"
        ));
        assert!(lacking(
            -32000,
            "historical state not available in path scheme yet"
        ));
        assert!(lacking(
            -32000,
            "required historical state unavailable (reexec=128)"
        ));
        assert!(lacking(
            -32000,
            "state histories haven't been fully indexed yet"
        ));
    }

    #[test]
    fn erigon_pruned_wording_means_lacking() {
        assert!(lacking(-32000, "old data not available due to pruning"));
        assert!(lacking(
            -32000,
            "old data not available due to pruning: block tx: 5, min tx: 9 last state history bn: 2"
        ));
    }

    #[test]
    fn nethermind_pruned_and_missing_wordings_mean_lacking() {
        assert!(lacking(
            -32002,
            "No state available for block 0x3f9e020290502d1d41f4b5519e7d456f0935dea980ec310935206cac8239117e (15659481)"
        ));
        assert!(lacking(4444, "Pruned history unavailable"));
    }

    #[test]
    fn besu_missing_wordings_mean_lacking() {
        assert!(lacking(-32000, "World state unavailable"));
        assert!(lacking(-32000, "Block not found"));
        assert!(lacking(-39001, "Unknown block"));
    }

    #[test]
    fn answers_are_not_taken_for_lacking_data() {
        for (code, message) in [
            (-32000, "execution reverted"),
            (-32000, "nonce too low"),
            (-32602, "invalid argument 1: hex string without 0x prefix"),
            (-32601, "the method eth_foo does not exist/is not available"),
            (-32000, "filter not found"),
            // A contract chooses its revert reason: it cannot make keel ask every upstream.
            (3, "execution reverted: header not found"),
            (-32000, "execution reverted: pruned history unavailable"),
        ] {
            assert!(!lacking(code, message), "{code} {message}");
        }
        assert!(!lacking(3, "pruned history unavailable"));
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
