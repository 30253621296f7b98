//! Canonical forms of JSON-RPC results, and the N-of-M quorum decision.
//!
//! Two upstreams that return the same value must never disagree because of formatting, and two
//! that return different values must never agree. The canonical form is compact JSON with:
//! - object keys sorted (bytewise), no whitespace;
//! - every `0x` hex string lower-cased (hashes, addresses and data compare case-insensitively);
//! - hex *quantities* stripped of leading zeros (`0x01`, `0x0001` → `0x1`; `0x`, `0x00` → `0x0`)
//!   — a string is a quantity when it is the value of a known quantity field
//!   ([`QUANTITY_FIELDS`], or an array under one), or the whole result of a method that returns
//!   a quantity ([`canonical_for`] with one of [`QUANTITY_METHODS`]). Data strings keep their
//!   length: `0x00` and `0x0000` stay different, as do `0x` and `0x00`;
//! - JSON numbers written in the shortest form (`1.0` → `1`, `1e2` → `100`).

use serde_json::value::RawValue;

use crate::{
    error::Result,
    json::{self, Node},
};

/// Object fields whose hex values are quantities in the Ethereum JSON-RPC spec (blocks,
/// transactions, receipts, logs, proofs, fee history, withdrawals).
pub const QUANTITY_FIELDS: &[&str] = &[
    "amount",
    "balance",
    "baseFeePerBlobGas",
    "baseFeePerGas",
    "blobGasPrice",
    "blobGasUsed",
    "blobGasUsedRatio",
    "blockNumber",
    "chainId",
    "cumulativeGasUsed",
    "difficulty",
    "effectiveGasPrice",
    "excessBlobGas",
    "gas",
    "gasLimit",
    "gasPrice",
    "gasUsed",
    "index",
    "logIndex",
    "maxFeePerBlobGas",
    "maxFeePerGas",
    "maxPriorityFeePerGas",
    "nonce",
    "number",
    "oldestBlock",
    "r",
    "reward",
    "s",
    "size",
    "status",
    "timestamp",
    "totalDifficulty",
    "transactionIndex",
    "type",
    "v",
    "validatorIndex",
    "value",
    "yParity",
];

/// Methods whose whole result is a quantity.
pub const QUANTITY_METHODS: &[&str] = &[
    "eth_blobBaseFee",
    "eth_blockNumber",
    "eth_chainId",
    "eth_estimateGas",
    "eth_gasPrice",
    "eth_getBalance",
    "eth_getBlockTransactionCountByHash",
    "eth_getBlockTransactionCountByNumber",
    "eth_getTransactionCount",
    "eth_getUncleCountByBlockHash",
    "eth_getUncleCountByBlockNumber",
    "eth_maxPriorityFeePerGas",
    "eth_newBlockFilter",
    "eth_newFilter",
];

/// The canonical bytes of `result`, with no knowledge of the method: a bare hex string result
/// is compared as data (case-insensitive, length kept). Prefer [`canonical_for`].
///
/// A value with no canonical form (duplicate keys, nesting deeper than 128) is compared by its
/// raw bytes here; [`canonical_answer`], which the gateway uses, refuses it instead.
pub fn canonical(result: &RawValue) -> Vec<u8> {
    canonical_with(result, false)
}

/// The canonical bytes of `result` for `method`: like [`canonical`], and a bare hex result of a
/// [`QUANTITY_METHODS`] method is compared as a quantity (`0x01` = `0x1`).
pub fn canonical_for(method: &str, result: &RawValue) -> Vec<u8> {
    canonical_with(result, QUANTITY_METHODS.contains(&method))
}

/// The bytes an upstream's whole answer is compared by: `r` + [`canonical_for`] of a result,
/// `e` + [`canonical`] of an error, or with `field`, `f` + the canonical form of that field of an
/// object result (the header quorum compares `stateRoot` alone: honest independent nodes may
/// differ in hash and timestamp). `Ok(None)` when there is neither a result nor an error, or the
/// field is missing.
///
/// Strict where [`canonical`] is lenient: a result or error with a duplicate object key at any
/// depth is [`crate::VerifyError::DuplicateKey`] (its path starts with `result` or `error`), and one
/// that is not JSON (or nests deeper than 128) is [`crate::VerifyError::BadJson`]. Such an answer
/// means different things to different parsers: it is no answer, neither right nor wrong.
pub fn canonical_answer(
    method: &str,
    field: Option<&str>,
    result: Option<&RawValue>,
    error: Option<&RawValue>,
) -> Result<Option<Vec<u8>>> {
    let mut out = String::new();
    match (field, error, result) {
        (Some(f), None, Some(r)) => {
            let node = json::parse(r.get(), "result")?;
            let Some(value) = node.get(f) else {
                return Ok(None);
            };
            out.push('f');
            write_node(&mut out, value, false);
        }
        (_, Some(e), _) => {
            let node = json::parse(e.get(), "error")?;
            out.push('e');
            write_node(&mut out, &node, false);
        }
        (None, None, Some(r)) => {
            let node = json::parse(r.get(), "result")?;
            out.push('r');
            write_node(&mut out, &node, QUANTITY_METHODS.contains(&method));
        }
        (_, None, None) => return Ok(None),
    }
    Ok(Some(out.into_bytes()))
}

fn canonical_with(result: &RawValue, quantity: bool) -> Vec<u8> {
    match json::parse(result.get(), "result") {
        Ok(node) => {
            let mut out = String::with_capacity(result.get().len());
            write_node(&mut out, &node, quantity);
            out.into_bytes()
        }
        Err(_) => result.get().as_bytes().to_vec(),
    }
}

fn is_hex(s: &str) -> Option<&str> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    digits
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(digits)
}

fn write_string(out: &mut String, s: &str, quantity: bool) {
    let canon = match is_hex(s) {
        Some(digits) if quantity => {
            let t = digits.trim_start_matches('0');
            format!("0x{}", if t.is_empty() { "0" } else { t }).to_ascii_lowercase()
        }
        Some(digits) => format!("0x{}", digits.to_ascii_lowercase()),
        None => s.to_owned(),
    };
    // Serializing a string cannot fail.
    out.push_str(&serde_json::to_string(&canon).unwrap_or_default());
}

fn write_node(out: &mut String, v: &Node, quantity: bool) {
    match v {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Number(n) => out.push_str(n),
        Node::String(s) => write_string(out, s, quantity),
        Node::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_node(out, item, quantity);
            }
            out.push(']');
        }
        // Entries are sorted by key already.
        Node::Object(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k, false);
                out.push(':');
                write_node(out, v, QUANTITY_FIELDS.contains(&k.as_str()));
            }
            out.push('}');
        }
    }
}

/// The decision over a set of answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// At least `n` answers are canonically equal and no other group also reaches `n`.
    Agreed {
        /// Index (into the answers) of the first agreeing answer: serve that one.
        index: usize,
        /// Upstreams in the agreeing group, in answer order.
        agreeing: Vec<String>,
        /// Upstreams that answered something else, in answer order (evidence, penalties).
        minority: Vec<String>,
    },
    /// No group reaches `n`, or two groups do (so `n` was at most half of the answers).
    NoAgreement {
        /// The groups of equal answers, largest first: upstream names.
        groups: Vec<Vec<String>>,
        /// A one-line description fit for a JSON-RPC error message, e.g.
        /// `no 2 of 3 upstreams agree: [a] vs [b] vs [c]`.
        description: String,
    },
}

/// Groups `answers` (upstream name, canonical bytes) by equality and decides whether `n` agree.
///
/// Never picks silently: a tie between two groups that both reach `n` is [`Outcome::NoAgreement`].
/// `n == 0` is treated as 1.
pub fn quorum<U: AsRef<str>, B: AsRef<[u8]>>(answers: &[(U, B)], n: usize) -> Outcome {
    let n = n.max(1);
    // (first index, members) per distinct canonical answer, in first-seen order.
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, (_, bytes)) in answers.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(first, _)| answers[*first].1.as_ref() == bytes.as_ref())
        {
            Some((_, members)) => members.push(i),
            None => groups.push((i, vec![i])),
        }
    }
    let name = |i: &usize| answers[*i].0.as_ref().to_owned();
    let winners = groups.iter().filter(|(_, m)| m.len() >= n).count();
    if let (1, Some((first, members))) = (winners, groups.iter().find(|(_, m)| m.len() >= n)) {
        let agreeing = members.iter().map(name).collect();
        let minority = (0..answers.len())
            .filter(|i| !members.contains(i))
            .map(|i| name(&i))
            .collect();
        return Outcome::Agreed {
            index: *first,
            agreeing,
            minority,
        };
    }
    groups.sort_by_key(|(_, m)| std::cmp::Reverse(m.len()));
    let groups: Vec<Vec<String>> = groups
        .iter()
        .map(|(_, m)| m.iter().map(name).collect())
        .collect();
    let parts: Vec<String> = groups
        .iter()
        .map(|g| format!("[{}]", g.join(", ")))
        .collect();
    let description = if winners > 1 {
        format!(
            "{winners} groups of upstreams each reach {n} but disagree: {}",
            parts.join(" vs ")
        )
    } else if answers.is_empty() {
        format!("no {n} upstreams agree: no answers")
    } else {
        format!(
            "no {n} of {} upstreams agree: {}",
            answers.len(),
            parts.join(" vs ")
        )
    };
    Outcome::NoAgreement {
        groups,
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        String::from_utf8(canonical(&RawValue::from_string(s.to_owned()).unwrap())).unwrap()
    }

    fn cf(m: &str, s: &str) -> String {
        String::from_utf8(canonical_for(
            m,
            &RawValue::from_string(s.to_owned()).unwrap(),
        ))
        .unwrap()
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        assert_eq!(c(r#"{ "b": 1, "a" : [1, 2] }"#), r#"{"a":[1,2],"b":1}"#);
        assert_eq!(c(r#"{"a":[1,2],"b":1}"#), c("{\n\"b\":1,\"a\":[ 1,2 ]}"));
        assert_eq!(c("1.0"), "1");
        assert_eq!(c("1e2"), "100");
    }

    #[test]
    fn hex_case_and_quantity_zeros() {
        assert_eq!(c(r#""0xABcd""#), r#""0xabcd""#);
        assert_eq!(c(r#""0x00""#), r#""0x00""#);
        assert_ne!(c(r#""0x00""#), c(r#""0x0000""#));
        assert_ne!(c(r#""0x""#), c(r#""0x00""#));
        assert_eq!(
            cf("eth_getBalance", r#""0x01""#),
            cf("eth_getBalance", r#""0x1""#)
        );
        assert_eq!(
            cf("eth_getBalance", r#""0xAB""#),
            cf("eth_getBalance", r#""0xab""#)
        );
        assert_eq!(cf("eth_getBalance", r#""0x""#), r#""0x0""#);
        assert_ne!(cf("eth_call", r#""0x01""#), cf("eth_call", r#""0x1""#));
        let a = r#"{"number":"0x0A","hash":"0xAB","logsBloom":"0x00", "baseFeePerGas":["0x01"]}"#;
        let b = r#"{"baseFeePerGas":["0x1"],"hash":"0xab","number":"0xa","logsBloom":"0x00"}"#;
        assert_eq!(c(a), c(b));
        assert_ne!(c(a), c(&b.replace("\"0x00\"", "\"0x0\"")));
        assert_eq!(c(r#""plain TEXT""#), r#""plain TEXT""#);
    }

    #[test]
    fn answers_with_duplicate_keys_have_no_canonical_form() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        // Before: the last key won the comparison while the first was served.
        let liar = raw(r#"{"balance":"0x1","balance":"0x2"}"#);
        let honest = raw(r#"{"balance":"0x2"}"#);
        assert!(matches!(
            canonical_answer("eth_x", None, Some(&liar), None),
            Err(crate::VerifyError::DuplicateKey { ref path }) if path == "result.balance"
        ));
        assert!(canonical_answer("eth_x", None, Some(&honest), None).is_ok());
        // Only one field compared, but a duplicate anywhere still condemns the answer.
        let header = raw(r#"{"stateRoot":"0x1","hash":"0x2","hash":"0x3"}"#);
        assert!(matches!(
            canonical_answer("eth_getBlockByNumber", Some("stateRoot"), Some(&header), None),
            Err(crate::VerifyError::DuplicateKey { ref path }) if path == "result.hash"
        ));
        let err = raw(r#"{"code":1,"message":"a","message":"b"}"#);
        assert!(matches!(
            canonical_answer("eth_x", None, None, Some(&err)),
            Err(crate::VerifyError::DuplicateKey { ref path }) if path == "error.message"
        ));
        assert_eq!(
            canonical_answer("eth_getBalance", None, Some(&raw(r#""0x01""#)), None).unwrap(),
            Some(br#"r"0x1""#.to_vec())
        );
    }

    #[test]
    fn quorum_decides() {
        let ans = [("a", "x"), ("b", "y"), ("c", "x")];
        assert_eq!(
            quorum(&ans, 2),
            Outcome::Agreed {
                index: 0,
                agreeing: vec!["a".into(), "c".into()],
                minority: vec!["b".into()]
            }
        );
        let Outcome::NoAgreement {
            description,
            groups,
        } = quorum(&ans, 3)
        else {
            panic!("agreed")
        };
        assert_eq!(description, "no 3 of 3 upstreams agree: [a, c] vs [b]");
        assert_eq!(groups.len(), 2);
        let tie = [("a", "x"), ("b", "y")];
        assert!(matches!(
            quorum(&tie, 1),
            Outcome::NoAgreement { ref description, .. } if description.contains("2 groups")
        ));
        let none: [(&str, &str); 0] = [];
        assert!(matches!(quorum(&none, 1), Outcome::NoAgreement { .. }));
    }
}
