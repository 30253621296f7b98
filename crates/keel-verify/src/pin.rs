//! Block-tag pinning: ask every upstream about the same block.
//!
//! Before a request is fanned out, `latest`, `safe`, `finalized` and an omitted (or `null`)
//! block parameter are replaced by a block number the chain's upstreams agree on, wherever the
//! request names them: as the block param, as the `blockNumber` of an EIP-1898 object, or as an
//! `eth_getLogs` filter's `fromBlock`/`toBlock`. Every other param keeps its exact bytes.
//! Explicit numbers, `earliest` and block hashes are fixed already; `pending` and spellings
//! keel does not read as a block are [`Pin::Moving`]: never compared across upstreams.

use serde_json::value::RawValue;

use crate::{
    VerifyError,
    error::Result,
    json::{self, Node},
};

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

/// What [`pin_request`] made of a request's block.
#[derive(Debug)]
pub enum Pin {
    /// The method takes no block parameter keel knows of (by-hash reads, `eth_chainId`, ...).
    NoBlock,
    /// The block is fixed already: an explicit number, `earliest` (block 0), or a block hash
    /// (`block` is then `None`). The params can be sent as they are.
    Fixed {
        /// The block number, when the request names one.
        block: Option<u64>,
    },
    /// A tag (`latest`, `safe`, `finalized`, spelled as a string, inside an EIP-1898 object or
    /// an `eth_getLogs` filter) or an omitted block param, rewritten to a number.
    Pinned(Pinned),
    /// The block moves and cannot be fixed here: `pending`, a tag no upstream reports yet
    /// (`safe` on a pre-merge chain), or a spelling keel does not read as a block (`"Latest"`,
    /// `7`, `{"blockNumber":"pending"}`), which upstreams may read differently. Answers for it
    /// legitimately differ between honest upstreams.
    Moving {
        /// The block param as the client wrote it.
        block: String,
    },
}

/// Rewrites `params` of `method` so that its block parameter is a number.
///
/// Returns `Ok(None)` when there is nothing to pin (the method takes no block parameter, its
/// block is already explicit, or it moves: see [`pin_request`] for the distinction), and
/// `Ok(Some(pinned))` with the rewritten params otherwise.
pub fn pin_block(method: &str, params: &RawValue, pins: &BlockPins) -> Result<Option<Pinned>> {
    Ok(match pin_request(method, params, pins)? {
        Pin::Pinned(p) => Some(p),
        _ => None,
    })
}

/// Reads the block parameter of `method` in `params` and pins it (see [`Pin`]).
///
/// A block is read the way upstreams read it: JSON escapes are decoded (`"\u006catest"` is
/// `latest`), `null` and an omitted param mean `latest`, an EIP-1898 object's `blockNumber` is a
/// block param of its own, and `eth_getLogs` filters have two (`fromBlock`, `toBlock`, each
/// `latest` when omitted) unless they name a `blockHash`. Every other param keeps its exact
/// bytes; whitespace between elements is not kept. An error when params are not an array (or
/// `eth_getLogs`'s filter not an object), leave a gap before the block parameter, or repeat a
/// key in a block object.
pub fn pin_request(method: &str, params: &RawValue, pins: &BlockPins) -> Result<Pin> {
    if method == "eth_getLogs" {
        return pin_logs(params, pins);
    }
    let Some(index) = block_param_index(method) else {
        return Ok(Pin::NoBlock);
    };
    let bad = |reason: &str| VerifyError::BadParams {
        method: method.to_owned(),
        reason: reason.to_owned(),
    };
    let items = param_list(params).ok_or_else(|| bad("params are not a JSON array"))?;
    if items.len() < index {
        return Err(bad(&format!(
            "{} params given, the block parameter is number {}",
            items.len(),
            index + 1
        )));
    }
    let block = match items.get(index) {
        None => Block::Tag(Tag::Latest),
        Some(raw) => read_block(raw).map_err(|reason| bad(&reason))?,
    };
    let number = match block {
        Block::Number(n) => return Ok(Pin::Fixed { block: Some(n) }),
        Block::Hash => return Ok(Pin::Fixed { block: None }),
        Block::Moving => {
            return Ok(Pin::Moving {
                block: items
                    .get(index)
                    .map_or_else(|| "(omitted)".to_owned(), |r| r.get().trim().to_owned()),
            });
        }
        Block::Tag(tag) => match pins.get(tag) {
            Some(n) => n,
            None => {
                return Ok(Pin::Moving {
                    block: tag.name().to_owned(),
                });
            }
        },
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
            Pin::Pinned(Pinned {
                params,
                block: number,
            })
        })
        .map_err(|_| bad("rewritten params are not valid JSON"))
}

/// Whether any string in `params`, at any depth, reads as a moving block tag (`latest`,
/// `pending`, `safe`, `finalized`, in any case, with any surrounding whitespace): the param of
/// a method whose block position keel does not know, which must not be checked by comparing
/// upstreams. Returns the string found.
pub fn moving_tag(params: &RawValue) -> Option<String> {
    fn walk(n: &Node) -> Option<String> {
        match n {
            Node::String(s) => {
                let t = s.trim();
                ["latest", "pending", "safe", "finalized"]
                    .iter()
                    .any(|tag| t.eq_ignore_ascii_case(tag))
                    .then(|| s.clone())
            }
            Node::Array(items) => items.iter().find_map(walk),
            Node::Object(entries) => entries.iter().find_map(|(_, v)| walk(v)),
            _ => None,
        }
    }
    json::parse(params.get(), "params")
        .ok()
        .and_then(|n| walk(&n))
}

/// A block tag that [`BlockPins`] resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Latest,
    Safe,
    Finalized,
}

impl Tag {
    fn name(self) -> &'static str {
        match self {
            Self::Latest => "latest",
            Self::Safe => "safe",
            Self::Finalized => "finalized",
        }
    }
}

impl BlockPins {
    fn get(&self, tag: Tag) -> Option<u64> {
        match tag {
            Tag::Latest => Some(self.latest),
            Tag::Safe => self.safe,
            Tag::Finalized => self.finalized,
        }
    }
}

/// One block param, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Number(u64),
    Hash,
    Tag(Tag),
    Moving,
}

fn param_list(params: &RawValue) -> Option<Vec<&RawValue>> {
    if params.get().trim() == "null" {
        return Some(Vec::new());
    }
    serde_json::from_str(params.get()).ok()
}

/// Reads one block param (`Err` for a block object with repeated keys).
fn read_block(raw: &RawValue) -> std::result::Result<Block, String> {
    let text = raw.get().trim();
    if text == "null" {
        return Ok(Block::Tag(Tag::Latest));
    }
    if text.starts_with('{') {
        return read_block_object(raw);
    }
    match serde_json::from_str::<String>(text) {
        Ok(s) => Ok(read_block_text(&s)),
        // A JSON number, array or boolean: some nodes may take `7` for block 7, others refuse.
        Err(_) => Ok(Block::Moving),
    }
}

fn read_block_text(s: &str) -> Block {
    match s {
        "latest" => return Block::Tag(Tag::Latest),
        "safe" => return Block::Tag(Tag::Safe),
        "finalized" => return Block::Tag(Tag::Finalized),
        "earliest" => return Block::Number(0),
        _ => {}
    }
    let Some(digits) = s.strip_prefix("0x") else {
        return Block::Moving;
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Block::Moving;
    }
    if digits.len() == 64 {
        // geth and others take a 32-byte hex string for a block hash.
        return Block::Hash;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        // geth refuses a quantity with leading zeros, others read the number.
        return Block::Moving;
    }
    u64::from_str_radix(digits, 16).map_or(Block::Moving, Block::Number)
}

/// An EIP-1898 block object: `{"blockHash": h, "requireCanonical": b}` or
/// `{"blockNumber": n}`, where `n` is read like any block param.
fn read_block_object(raw: &RawValue) -> std::result::Result<Block, String> {
    let node = json::parse(raw.get(), "block").map_err(|e| e.to_string())?;
    let Node::Object(entries) = &node else {
        return Ok(Block::Moving);
    };
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    match (node.get("blockHash"), node.get("blockNumber")) {
        (Some(Node::String(_)), None)
            if keys
                .iter()
                .all(|k| ["blockHash", "requireCanonical"].contains(k)) =>
        {
            Ok(Block::Hash)
        }
        (None, Some(Node::String(n))) if keys.len() == 1 => Ok(match read_block_text(n) {
            Block::Hash => Block::Moving,
            b => b,
        }),
        _ => Ok(Block::Moving),
    }
}

/// `eth_getLogs`: pins `fromBlock` and `toBlock` (each `latest` when omitted) unless the
/// filter names a `blockHash`. The block returned is `toBlock`'s.
fn pin_logs(params: &RawValue, pins: &BlockPins) -> Result<Pin> {
    let bad = |reason: &str| VerifyError::BadParams {
        method: "eth_getLogs".to_owned(),
        reason: reason.to_owned(),
    };
    let items = param_list(params).ok_or_else(|| bad("params are not a JSON array"))?;
    let Some(filter) = items.first() else {
        return Err(bad("the filter object is missing"));
    };
    // Repeated keys would let keel pin one `toBlock` while the upstream reads another.
    json::check_unique_keys(filter.get(), "filter").map_err(|e| bad(&e.to_string()))?;
    let mut fields: Vec<(String, &RawValue)> =
        serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(filter.get())
            .map_err(|_| bad("the filter is not a JSON object"))?
            .into_iter()
            .collect();
    if fields.iter().any(|(k, _)| k == "blockHash") {
        return Ok(Pin::Fixed { block: None });
    }
    let mut changed = false;
    let mut to_block = 0;
    let mut rewritten: Vec<(&str, String)> = Vec::new();
    for key in ["fromBlock", "toBlock"] {
        let given = fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        let block = match given {
            None => Block::Tag(Tag::Latest),
            Some(raw) => {
                let text = raw.get().trim();
                if text.starts_with('{') {
                    // Filters take block numbers, not EIP-1898 objects.
                    Block::Moving
                } else {
                    read_block(raw).map_err(|reason| bad(&reason))?
                }
            }
        };
        let number = match block {
            Block::Number(n) => n,
            Block::Tag(tag) => match pins.get(tag) {
                Some(n) => {
                    changed = true;
                    rewritten.push((key, format!("\"{n:#x}\"")));
                    n
                }
                None => {
                    return Ok(Pin::Moving {
                        block: format!("{key} {}", tag.name()),
                    });
                }
            },
            Block::Hash | Block::Moving => {
                return Ok(Pin::Moving {
                    block: format!("{key} {}", given.map_or("(omitted)", |r| r.get().trim())),
                });
            }
        };
        if key == "toBlock" {
            to_block = number;
        }
    }
    if !changed {
        return Ok(Pin::Fixed {
            block: Some(to_block),
        });
    }
    let raws: Vec<Box<RawValue>> = rewritten
        .iter()
        .map(|(_, v)| RawValue::from_string(v.clone()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("rewritten filter is not valid JSON"))?;
    for ((key, _), raw) in rewritten.iter().zip(&raws) {
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some(f) => f.1 = raw,
            None => fields.push(((*key).to_owned(), raw)),
        }
    }
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                serde_json::to_string(k).unwrap_or_default(),
                v.get()
            )
        })
        .collect();
    let mut parts: Vec<String> = items.iter().map(|r| r.get().to_owned()).collect();
    parts[0] = format!("{{{}}}", body.join(","));
    RawValue::from_string(format!("[{}]", parts.join(",")))
        .map(|params| {
            Pin::Pinned(Pinned {
                params,
                block: to_block,
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

    fn classify(method: &str, params: &str) -> String {
        let pins = BlockPins {
            latest: 0x20,
            safe: None,
            finalized: Some(0x8),
        };
        let raw = RawValue::from_string(params.to_owned()).unwrap();
        match pin_request(method, &raw, &pins).unwrap() {
            Pin::NoBlock => "none".into(),
            Pin::Fixed { block } => format!("fixed {block:?}"),
            Pin::Pinned(p) => format!("pinned {} {}", p.block, p.params.get()),
            Pin::Moving { block } => format!("moving {block}"),
        }
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
        let a = r#""0x00000000000000000000000000000000000000aa""#;
        assert_eq!(
            classify("eth_getBalance", &format!("[{a},\"0x5\"]")),
            "fixed Some(5)"
        );
        assert_eq!(
            classify("eth_getBalance", &format!("[{a},\"earliest\"]")),
            "fixed Some(0)"
        );
        let hash = format!("\"0x{}\"", "ab".repeat(32));
        assert_eq!(
            classify("eth_getBalance", &format!("[{a},{hash}]")),
            "fixed None"
        );
        assert_eq!(
            classify(
                "eth_getBalance",
                &format!("[{a},{{\"blockHash\":{hash},\"requireCanonical\":true}}]")
            ),
            "fixed None"
        );
        assert_eq!(
            classify(
                "eth_getBalance",
                &format!("[{a},{{\"blockNumber\":\"0x7\"}}]")
            ),
            "fixed Some(7)"
        );
        assert_eq!(
            classify("eth_getTransactionReceipt", &format!("[{hash}]")),
            "none"
        );
        assert_eq!(classify("eth_blockNumber", "[]"), "none");
    }

    #[test]
    fn latest_is_pinned_however_it_is_spelled() {
        let a = r#""0x00000000000000000000000000000000000000aa""#;
        // JSON escapes decode to the tag the upstream reads.
        assert_eq!(
            classify("eth_getBalance", &format!(r#"[{a},"\u006catest"]"#)),
            format!("pinned 32 [{a},\"0x20\"]")
        );
        assert_eq!(
            classify("eth_getBalance", &format!("[{a}, null]")),
            format!("pinned 32 [{a},\"0x20\"]")
        );
        // EIP-1898 objects naming a tag become the number.
        assert_eq!(
            classify(
                "eth_getBalance",
                &format!(r#"[{a},{{"blockNumber":"latest"}}]"#)
            ),
            format!("pinned 32 [{a},\"0x20\"]")
        );
        assert_eq!(
            classify(
                "eth_getBalance",
                &format!(r#"[{a},{{"blockNumber":"finalized"}}]"#)
            ),
            format!("pinned 8 [{a},\"0x8\"]")
        );
        // What cannot be fixed is said to move, never left for upstreams to read their way.
        for block in [
            r#""pending""#,
            r#""Latest""#,
            r#"" latest""#,
            r#""LATEST""#,
            r#""safe""#,
            "7",
            "true",
            r#""0x""#,
            r#""0x05""#,
            r#""0xfffffffffffffffff""#,
            r#""123""#,
            r#"{"blockNumber":"pending"}"#,
            r#"{"blockNumber":"0x1","blockHash":"0x2"}"#,
            r#"{"blockNumber":"0x1","extra":1}"#,
        ] {
            let got = classify("eth_getBalance", &format!("[{a},{block}]"));
            assert!(got.starts_with("moving "), "{block}: {got}");
        }
        // A block object whose keys repeat is refused: keel and the upstream could read
        // different ones.
        let raw = RawValue::from_string(format!(
            r#"[{a},{{"blockNumber":"0x1","blockNumber":"latest"}}]"#
        ))
        .unwrap();
        assert!(matches!(
            pin_request("eth_getBalance", &raw, &BlockPins::latest(1)),
            Err(VerifyError::BadParams { .. })
        ));
    }

    #[test]
    fn log_filters_are_pinned_too() {
        assert_eq!(
            classify(
                "eth_getLogs",
                r#"[{"fromBlock":"0x1","toBlock":"0x5","address":"0xaa"}]"#
            ),
            "fixed Some(5)"
        );
        assert_eq!(
            classify("eth_getLogs", r#"[{"blockHash":"0x12"}]"#),
            "fixed None"
        );
        // Omitted bounds are latest.
        assert_eq!(
            classify("eth_getLogs", r#"[{"address":"0xaa","topics":[]}]"#),
            r#"pinned 32 [{"address":"0xaa","topics":[],"fromBlock":"0x20","toBlock":"0x20"}]"#
        );
        assert_eq!(
            classify(
                "eth_getLogs",
                r#"[{"fromBlock":"0x1","toBlock":"finalized"}]"#
            ),
            r#"pinned 8 [{"fromBlock":"0x1","toBlock":"0x8"}]"#
        );
        assert_eq!(
            classify(
                "eth_getLogs",
                r#"[{"fromBlock":"earliest","toBlock":"\u006catest"}]"#
            ),
            r#"pinned 32 [{"fromBlock":"earliest","toBlock":"0x20"}]"#
        );
        for filter in [
            r#"{"toBlock":"pending"}"#,
            r#"{"fromBlock":"safe","toBlock":"0x5"}"#,
            r#"{"fromBlock":"Latest"}"#,
            r#"{"fromBlock":{"blockNumber":"0x1"}}"#,
        ] {
            let got = classify("eth_getLogs", &format!("[{filter}]"));
            assert!(got.starts_with("moving "), "{filter}: {got}");
        }
        let raw =
            RawValue::from_string(r#"[{"toBlock":"0x1","toBlock":"latest"}]"#.to_owned()).unwrap();
        assert!(matches!(
            pin_request("eth_getLogs", &raw, &BlockPins::latest(1)),
            Err(VerifyError::BadParams { .. })
        ));
    }

    #[test]
    fn moving_tags_are_found_anywhere() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        assert_eq!(moving_tag(&raw(r#"["0x1"]"#)), None);
        assert_eq!(
            moving_tag(&raw(r#"["0x1", [" Pending "]]"#)).as_deref(),
            Some(" Pending ")
        );
        assert_eq!(
            moving_tag(&raw(r#"[{"a":{"b":"latest"}}]"#)).as_deref(),
            Some("latest")
        );
        assert_eq!(moving_tag(&raw(r#"["earliest", "0x5"]"#)), None);
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
