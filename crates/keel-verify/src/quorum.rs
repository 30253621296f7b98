//! Canonical forms of JSON-RPC results, and the N-of-M quorum decision.
//!
//! Two upstreams that return the same value must never disagree because of formatting, and two
//! that return different values must never agree. The canonical form is compact JSON with:
//! - every `0x` hex string lower-cased (hashes, addresses and data compare case-insensitively),
//!   object keys included;
//! - object keys sorted (bytewise, once lower-cased, so that key order never depends on hex
//!   case; keys equal once lower-cased, such as `0xab` and `0xAB`, are ordered by their
//!   canonical values), no whitespace;
//! - hex *quantities* stripped of leading zeros (`0x01`, `0x0001` → `0x1`; `0x`, `0x00` → `0x0`)
//!   — a string is a quantity when it is the value of a known quantity field
//!   ([`QUANTITY_FIELDS`], or an array under one), or the whole result of a method that returns
//!   a quantity ([`canonical_for`] with one of [`QUANTITY_METHODS`]). Data strings keep their
//!   length: `0x00` and `0x0000` stay different, as do `0x` and `0x00`;
//! - JSON numbers compared by exact value, whatever their spelling (`1.0` = `1`, `1e2` = `100`,
//!   `0.5` = `5e-1`, `510e121` = `5.1e123`; integers beyond u64 exactly; see
//!   [`json::Node::Number`]).

use std::{borrow::Cow, fmt::Write as _};

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

/// A key as the canonical form writes it: a `0x` hex key lower-cased (`0X` prefix included).
fn canonical_key(k: &str) -> Cow<'_, str> {
    match is_hex(k) {
        Some(_) if k.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Owned(k.to_ascii_lowercase()),
        _ => Cow::Borrowed(k),
    }
}

fn write_string(out: &mut String, s: &str, quantity: bool) {
    match is_hex(s) {
        Some(digits) if quantity => {
            let t = digits.trim_start_matches('0');
            out.push_str("\"0x");
            push_lower(out, if t.is_empty() { "0" } else { t });
            out.push('"');
        }
        Some(digits) => {
            out.push_str("\"0x");
            push_lower(out, digits);
            out.push('"');
        }
        None => push_json_string(out, s),
    }
}

/// Hex digits, lower-cased (they need no escaping).
fn push_lower(out: &mut String, digits: &str) {
    out.extend(digits.chars().map(|c| c.to_ascii_lowercase()));
}

/// `s` as a JSON string, escaped as serde_json escapes.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte: a char boundary.
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
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
        Node::Object(entries) => write_object(out, entries),
    }
}

fn write_object(out: &mut String, entries: &[(String, Node)]) {
    let quantity = |k: &str| QUANTITY_FIELDS.contains(&k);
    let keys: Vec<Cow<'_, str>> = entries.iter().map(|(k, _)| canonical_key(k)).collect();
    // Entries are sorted by key as written; only lower-cased keys can move. Values written
    // ahead of time (to order keys equal once lower-cased) are kept, not written twice.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    let mut written: Vec<Option<String>> = Vec::new();
    if keys.iter().any(|k| matches!(k, Cow::Owned(_))) {
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        written.resize(entries.len(), None);
        let mut i = 0;
        while i < order.len() {
            let same = order[i..]
                .iter()
                .take_while(|&&x| keys[x] == keys[order[i]])
                .count();
            if same > 1 {
                let group = &mut order[i..i + same];
                for &x in group.iter() {
                    let mut w = String::new();
                    write_node(&mut w, &entries[x].1, quantity(&entries[x].0));
                    written[x] = Some(w);
                }
                group.sort_by(|&a, &b| written[a].cmp(&written[b]));
            }
            i += same;
        }
    }
    out.push('{');
    for (n, &x) in order.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        write_string(out, &keys[x], false);
        out.push(':');
        match written.get_mut(x).and_then(Option::take) {
            Some(w) => out.push_str(&w),
            None => write_node(out, &entries[x].1, quantity(&entries[x].0)),
        }
    }
    out.push('}');
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
    fn numbers_compare_by_value_whatever_their_spelling() {
        // Before: read through f64, `510e121` and `5.1e123` could differ, and values a float
        // cannot tell apart agreed.
        assert_eq!(c("510e121"), c("5.1e123"));
        assert_eq!(
            c(r#"{"gasUsedRatio":[0.5,0.25]}"#),
            c(r#"{"gasUsedRatio":[5e-1,25E-2]}"#)
        );
        assert_eq!(c("18446744073709551616"), c("1.8446744073709551616e19"));
        assert_ne!(c("9007199254740993"), c("9007199254740992"));
        assert_ne!(c("0.1"), c("0.10000000000000001"));
        assert_ne!(c("442442444444444444444444"), c("442442444444444444444445"));
        assert_eq!(c("[1e400]"), c("[10e399]"));
        assert_eq!(
            canonical_answer(
                "eth_x",
                None,
                Some(&RawValue::from_string("[1e400]".into()).unwrap()),
                None
            )
            .unwrap(),
            Some(b"r[1e400]".to_vec())
        );
    }

    #[test]
    fn key_order_does_not_depend_on_hex_case() {
        // Before: keys were sorted as written, then lower-cased.
        assert_eq!(c(r#"{"0xab":1,"0xZ":2}"#), c(r#"{"0xAB":1,"0xZ":2}"#));
        assert_eq!(c(r#"{"0xAB":1,"0xZ":2}"#), r#"{"0xZ":2,"0xab":1}"#);
        // Objects keyed by address (trace state diffs), in both cases and orders.
        let lower = r#"{"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed":{"balance":"0x1"},"0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359":{"balance":"0x2"}}"#;
        let mixed = r#"{"0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359":{"balance":"0x02"},"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed":{"balance":"0x01"}}"#;
        assert_eq!(c(lower), c(mixed));
        // Keys equal once lower-cased are ordered by value, so no input order shows through.
        let a = c(r#"{"0xab":1,"0xAB":2}"#);
        assert_eq!(a, r#"{"0xab":1,"0xab":2}"#);
        assert_eq!(a, c(r#"{"0xAB":1,"0xab":2}"#));
        assert_eq!(a, c(r#"{"0xAB":2,"0xab":1}"#));
        assert_ne!(a, c(r#"{"0xab":1,"0xAB":1}"#));
        assert_ne!(c(r#"{"0xab":1,"0xAB":1}"#), c(r#"{"0xab":1}"#));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "plain",
            "q\"b\\s/",
            "\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}\u{7f}",
            "é€😀",
        ] {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(c(&json), json);
        }
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
