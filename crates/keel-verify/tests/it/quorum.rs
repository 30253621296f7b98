//! Quorum, pinning and evidence over real anvil answers.

use keel_testkit::{Anvil, DEV_ADDR_0, DEV_ADDR_1};
use keel_verify::{
    BlockPins, Outcome, canonical_for,
    evidence::{self, EvidenceLog, EvidenceRecord, Mode, UpstreamAnswer},
    pin_block, quorum,
};
use proptest::prelude::*;
use serde_json::{Value, json, value::RawValue};

use crate::support::call;

fn raw(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap()
}

/// Re-serializes `v` the way another client might: keys reversed, hex upper-cased,
/// quantities padded with a leading zero, pretty-printed.
fn reformat(v: &Value, quantity: bool) -> Value {
    match v {
        Value::String(s) if s.starts_with("0x") => {
            let digits = s[2..].to_ascii_uppercase();
            Value::String(if quantity {
                format!("0x0{digits}")
            } else {
                format!("0x{digits}")
            })
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| reformat(x, quantity)).collect()),
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.reverse();
            let mut out = serde_json::Map::new();
            for (k, x) in entries {
                let q = keel_verify::quorum::QUANTITY_FIELDS.contains(&k.as_str());
                out.insert(k.clone(), reformat(x, q));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn pretty_raw(v: &Value) -> Box<RawValue> {
    RawValue::from_string(serde_json::to_string_pretty(v).unwrap()).unwrap()
}

#[tokio::test]
async fn pinned_requests_agree_while_blocks_are_mined_and_a_liar_is_recorded() {
    let anvil = Anvil::start(&[]).await;
    let url = anvil.url();
    let head = call(&url, "eth_blockNumber", json!([])).await;
    let head = u64::from_str_radix(head.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    let client_params = raw(&json!([DEV_ADDR_1, "latest"]));
    let pinned = pin_block("eth_getBalance", &client_params, &BlockPins::latest(head))
        .unwrap()
        .unwrap();
    assert_eq!(pinned.block, head);
    let params: Value = serde_json::from_str(pinned.params.get()).unwrap();

    // "Upstream a" answers, then a block moving DEV_ADDR_1's balance is mined, then "b" and "c".
    let a = call(&url, "eth_getBalance", params.clone()).await;
    call(
        &url,
        "eth_sendTransaction",
        json!([{"from": DEV_ADDR_0, "to": DEV_ADDR_1, "value": "0x1"}]),
    )
    .await;
    call(&url, "evm_mine", json!([])).await;
    let b = call(&url, "eth_getBalance", params.clone()).await;
    let unpinned = call(&url, "eth_getBalance", json!([DEV_ADDR_1, "latest"])).await;
    assert_ne!(a, unpinned, "the head moved");
    // "c" lies, in another format than the others.
    let c = json!("0x000000000000000000000000000000000000000000021E19E0C9BAB2400001");

    let answers: Vec<(&str, Vec<u8>)> = [("a", &a), ("b", &b), ("c", &c)]
        .into_iter()
        .map(|(n, v)| (n, canonical_for("eth_getBalance", &raw(v))))
        .collect();
    let Outcome::Agreed {
        index,
        agreeing,
        minority,
    } = quorum(&answers, 2)
    else {
        panic!("no agreement")
    };
    assert_eq!(
        (index, agreeing, minority.clone()),
        (0, vec!["a".into(), "b".into()], vec!["c".to_owned()])
    );

    // The minority goes into the evidence log and reads back whole.
    let dir = tempfile::tempdir().unwrap();
    let log = EvidenceLog::open(dir.path()).unwrap();
    let mut rec = EvidenceRecord::new(
        "devnet",
        "eth_getBalance",
        pinned.params,
        Mode::Quorum,
        "c disagrees with 2 of 3",
    );
    rec.chain_id = Some(31337);
    rec.block = Some(head);
    rec.answers = [("a", &a), ("b", &b), ("c", &c)]
        .into_iter()
        .map(|(n, v)| UpstreamAnswer {
            upstream: n.into(),
            result: Some(raw(v)),
            error: None,
            digest: None,
        })
        .collect();
    rec.majority = vec!["a".into(), "b".into()];
    rec.minority = minority;
    let id = log.append(rec).unwrap();
    let back = evidence::show(dir.path(), id).unwrap().unwrap();
    assert_eq!(back.block, Some(head));
    assert_eq!(
        back.answers[2].result.as_ref().unwrap().get(),
        serde_json::to_string(&c).unwrap()
    );
    // Replaying the record's request against the node gives the majority answer.
    let replay: Value = serde_json::from_str(back.params.get()).unwrap();
    assert_eq!(call(&url, "eth_getBalance", replay).await, a);
}

#[tokio::test]
async fn reformatted_blocks_agree_and_changed_blocks_do_not() {
    let anvil = Anvil::start(&[]).await;
    let url = anvil.url();
    call(&url, "evm_mine", json!([])).await;
    let block = call(&url, "eth_getBlockByNumber", json!(["0x1", true])).await;
    let m = "eth_getBlockByNumber";
    let honest = canonical_for(m, &raw(&block));
    assert_eq!(
        honest,
        canonical_for(m, &pretty_raw(&reformat(&block, false)))
    );
    let mut changed = block.clone();
    changed["stateRoot"] = json!(format!("0x{}", "11".repeat(32)));
    assert_ne!(honest, canonical_for(m, &raw(&changed)));
    let mut changed = block.clone();
    changed["gasUsed"] = json!("0x1");
    assert_ne!(honest, canonical_for(m, &raw(&changed)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// The fixture proof answer, reformatted, canonicalizes the same; with any one hex digit
    /// changed (outside a quantity's leading zeros), it does not.
    #[test]
    fn canonical_is_format_blind_but_value_sensitive(pick in any::<prop::sample::Index>(), digit in 0u8..16) {
        let answer = &crate::fixture::CASE.proof;
        let m = "eth_getProof";
        let honest = canonical_for(m, &raw(answer));
        prop_assert_eq!(&honest, &canonical_for(m, &pretty_raw(&reformat(answer, false))));
        // Change one digit of one data string.
        let mut strings = Vec::new();
        collect(answer, "", &mut strings);
        let (ptr, s) = pick.get(&strings).clone();
        let mut bytes = s.into_bytes();
        let i = 2 + (usize::from(digit) * 7919) % (bytes.len() - 2);
        let new = b"0123456789abcdef"[usize::from(digit)];
        prop_assume!(!bytes[i].eq_ignore_ascii_case(&new));
        bytes[i] = new;
        let mut changed = answer.clone();
        *changed.pointer_mut(&ptr).unwrap() = Value::String(String::from_utf8(bytes).unwrap());
        prop_assert_ne!(&honest, &canonical_for(m, &raw(&changed)));
    }
}

/// `digits` × 10^`exp` spelled with `zeros` trailing zeros more and the point after `point`
/// digits (clamped), the exponent adjusted: one value, many texts.
fn spell(
    negative: bool,
    digits: &str,
    exp: i64,
    zeros: usize,
    point: usize,
    upper: bool,
) -> String {
    let d = format!("{digits}{}", "0".repeat(zeros));
    let point = point.min(d.len());
    let e = exp - zeros as i64 + (d.len() - point) as i64;
    let (whole, frac) = d.split_at(point);
    format!(
        "{}{}{}{}{}{e}",
        if negative { "-" } else { "" },
        if whole.is_empty() { "0" } else { whole },
        if frac.is_empty() { "" } else { "." },
        frac,
        if upper { "E" } else { "e" },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Two spellings of one number (any magnitude, any number of digits) canonicalize the
    /// same; a number one digit longer does not.
    #[test]
    fn numbers_compare_by_value_in_any_spelling(
        negative in any::<bool>(),
        digits in "[1-9][0-9]{0,40}",
        exp in -400i64..400,
        (za, zb) in (0usize..4, 0usize..4),
        (pa, pb) in (0usize..50, 0usize..50),
        upper in any::<bool>(),
    ) {
        let wrap = |n: &str| RawValue::from_string(format!(r#"{{"gasUsedRatio":[{n}],"x":{n}}}"#)).unwrap();
        let a = spell(negative, &digits, exp, za, pa, upper);
        let b = spell(negative, &digits, exp, zb, pb, !upper);
        let ca = keel_verify::canonical(&wrap(&a));
        prop_assert_eq!(&ca, &keel_verify::canonical(&wrap(&b)), "{} vs {}", a, b);
        // Plain spellings too, where they are short.
        if (-30..30).contains(&exp) {
            let plain = if exp >= 0 {
                format!("{digits}{}", "0".repeat(exp as usize))
            } else {
                let e = (-exp) as usize;
                let d = format!("{}{digits}", "0".repeat(e.saturating_sub(digits.len()) + 1));
                let (w, f) = d.split_at(d.len() - e);
                let w = w.trim_start_matches('0');
                format!("{}.{f}", if w.is_empty() { "0" } else { w })
            };
            let plain = if negative { format!("-{plain}") } else { plain };
            prop_assert_eq!(&ca, &keel_verify::canonical(&wrap(&plain)), "{} vs {}", a, plain);
        }
        let other = spell(negative, &format!("{digits}1"), exp - 1, zb, pb, upper);
        prop_assert_ne!(&ca, &keel_verify::canonical(&wrap(&other)), "{} vs {}", a, other);
    }
}

/// Every hex string that is data (not a quantity) under `v`, with its JSON pointer.
fn collect(v: &Value, ptr: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) if s.len() > 2 && s.starts_with("0x") => {
            out.push((ptr.to_owned(), s.clone()))
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| collect(x, &format!("{ptr}/{i}"), out)),
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !keel_verify::quorum::QUANTITY_FIELDS.contains(&k.as_str()))
            .for_each(|(k, x)| collect(x, &format!("{ptr}/{k}"), out)),
        _ => {}
    }
}
