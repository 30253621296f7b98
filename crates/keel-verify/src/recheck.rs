//! Offline re-checks of evidence records: does the record, on its own, show what it claims?
//!
//! A quorum record claims that each minority answer differs from the majority's; a proof
//! record claims that the minority's `eth_getProof` answer does not verify against the recorded
//! state root. Both can be checked with nothing but the record, which is what makes the evidence
//! portable. What the record cannot show offline (that the majority told the truth, that the
//! state root is the chain's) needs an archive node: replay `method` with `params` there.

use serde_json::value::RawValue;

use crate::{
    canonical_answer,
    evidence::{EvidenceRecord, Mode, UpstreamAnswer},
    proof::{parse_address, parse_hash, parse_word, verify_account_proof},
};

/// The verdict of [`recheck`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// The record shows what it claims; the text says how.
    Confirmed(String),
    /// The record does not show what it claims; the text says where it fails.
    Refuted(String),
    /// The record cannot be checked offline; the text says why.
    Unchecked(String),
}

/// Re-checks `record` with nothing but its own content.
pub fn recheck(record: &EvidenceRecord) -> Recheck {
    match record.mode {
        Mode::Quorum => recheck_quorum(record),
        Mode::Proof => recheck_proof(record),
    }
}

fn canon(record: &EvidenceRecord, a: &UpstreamAnswer) -> Result<Vec<u8>, Recheck> {
    if a.digest.is_some() {
        return Err(Recheck::Unchecked(format!(
            "{}'s answer was too large and is kept as a digest only",
            a.upstream
        )));
    }
    match canonical_answer(
        &record.method,
        record.field.as_deref(),
        a.result.as_deref(),
        a.error.as_deref(),
    ) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(Recheck::Unchecked(format!(
            "{}'s answer holds no comparable result or error",
            a.upstream
        ))),
        Err(e) => Err(Recheck::Unchecked(format!(
            "{}'s answer has no canonical form: {e}",
            a.upstream
        ))),
    }
}

fn recheck_quorum(record: &EvidenceRecord) -> Recheck {
    let find = |name: &str| record.answers.iter().find(|a| a.upstream == name);
    let mut majority: Option<Vec<u8>> = None;
    for name in &record.majority {
        let Some(a) = find(name) else {
            return Recheck::Unchecked(format!("the record holds no answer from {name}"));
        };
        let c = match canon(record, a) {
            Ok(c) => c,
            Err(r) => return r,
        };
        match &majority {
            None => majority = Some(c),
            Some(m) if *m == c => {}
            Some(_) => {
                return Recheck::Refuted(format!(
                    "the majority's answers differ from each other ({name}'s is not like the first)"
                ));
            }
        }
    }
    let Some(majority) = majority else {
        return Recheck::Unchecked("the record names no majority".to_owned());
    };
    if record.minority.is_empty() {
        return Recheck::Unchecked("the record names no minority".to_owned());
    }
    for name in &record.minority {
        let Some(a) = find(name) else {
            return Recheck::Unchecked(format!("the record holds no answer from {name}"));
        };
        match canon(record, a) {
            Ok(c) if c == majority => {
                return Recheck::Refuted(format!(
                    "{name}'s answer is canonically equal to the majority's"
                ));
            }
            Ok(_) => {}
            Err(r) => return r,
        }
    }
    let compared = record
        .field
        .as_deref()
        .map_or_else(String::new, |f| format!(" (field {f})"));
    Recheck::Confirmed(format!(
        "[{}] answered differently from [{}]{compared}",
        record.minority.join(", "),
        record.majority.join(", ")
    ))
}

fn recheck_proof(record: &EvidenceRecord) -> Recheck {
    if record.method != "eth_getProof" {
        return Recheck::Unchecked(format!(
            "{} evidence is checked against the code hash of the account proof, which the record does not hold; replay it against an archive node",
            record.method
        ));
    }
    let Some(root) = record.state_root.as_deref() else {
        return Recheck::Unchecked("the record holds no state root".to_owned());
    };
    let Ok(root) = parse_hash(root) else {
        return Recheck::Unchecked("the record's state root is not a 32-byte hash".to_owned());
    };
    let Some((address, keys)) = proof_request(&record.params) else {
        return Recheck::Unchecked(
            "the record's params are not [address, [slots], block]".to_owned(),
        );
    };
    let Some(name) = record.minority.first() else {
        return Recheck::Unchecked("the record names no minority".to_owned());
    };
    let Some(answer) = record.answers.iter().find(|a| &a.upstream == name) else {
        return Recheck::Unchecked(format!("the record holds no answer from {name}"));
    };
    let Some(result) = answer.result.as_deref() else {
        return Recheck::Unchecked(format!("{name}'s proof is not in the record"));
    };
    match verify_account_proof(&root, &address, &keys, result) {
        Err(e) => Recheck::Confirmed(format!(
            "{name}'s proof does not verify against state root 0x{}: {e}",
            hex::encode(root)
        )),
        Ok(_) => Recheck::Refuted(format!(
            "{name}'s proof verifies against state root 0x{}",
            hex::encode(root)
        )),
    }
}

/// Address and slots of `eth_getProof` params.
fn proof_request(params: &RawValue) -> Option<([u8; 20], Vec<[u8; 32]>)> {
    let list: Vec<&RawValue> = serde_json::from_str(params.get()).ok()?;
    let address: String = serde_json::from_str(list.first()?.get()).ok()?;
    let slots: Vec<String> = serde_json::from_str(list.get(1)?.get()).ok()?;
    let keys = slots
        .iter()
        .map(|s| parse_word(s, "slot"))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some((parse_address(&address).ok()?, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn answer(name: &str, result: &str) -> UpstreamAnswer {
        UpstreamAnswer {
            upstream: name.to_owned(),
            result: Some(raw(result)),
            error: None,
            digest: None,
        }
    }

    fn quorum_record(
        answers: Vec<UpstreamAnswer>,
        majority: &[&str],
        minority: &[&str],
    ) -> EvidenceRecord {
        let mut r = EvidenceRecord::new(
            "c",
            "eth_getBalance",
            raw("[\"0x01\",\"0x5\"]"),
            Mode::Quorum,
            "x",
        );
        r.answers = answers;
        r.majority = majority.iter().map(|s| (*s).to_owned()).collect();
        r.minority = minority.iter().map(|s| (*s).to_owned()).collect();
        r
    }

    #[test]
    fn quorum_records_are_confirmed_only_when_the_minority_differs() {
        let ok = quorum_record(
            vec![
                answer("a", "\"0x10\""),
                answer("b", "\"0x010\""),
                answer("c", "\"0x11\""),
            ],
            &["a", "b"],
            &["c"],
        );
        assert!(
            matches!(recheck(&ok), Recheck::Confirmed(_)),
            "{:?}",
            recheck(&ok)
        );
        // The "liar" said the same number, only formatted differently.
        let wrong = quorum_record(
            vec![
                answer("a", "\"0x10\""),
                answer("b", "\"0x10\""),
                answer("c", "\"0x0010\""),
            ],
            &["a", "b"],
            &["c"],
        );
        assert!(matches!(recheck(&wrong), Recheck::Refuted(_)));
        let split = quorum_record(
            vec![
                answer("a", "\"0x10\""),
                answer("b", "\"0x12\""),
                answer("c", "\"0x11\""),
            ],
            &["a", "b"],
            &["c"],
        );
        assert!(matches!(recheck(&split), Recheck::Refuted(_)));
        let missing = quorum_record(vec![answer("a", "\"0x10\"")], &["a", "b"], &["c"]);
        assert!(matches!(recheck(&missing), Recheck::Unchecked(_)));
    }

    #[test]
    fn header_records_compare_only_the_recorded_field() {
        let mut r = quorum_record(
            vec![
                answer("a", r#"{"stateRoot":"0x01","hash":"0xaa"}"#),
                answer("b", r#"{"stateRoot":"0x01","hash":"0xbb"}"#),
                answer("c", r#"{"stateRoot":"0x02","hash":"0xaa"}"#),
            ],
            &["a", "b"],
            &["c"],
        );
        r.method = "eth_getBlockByNumber".to_owned();
        r.field = Some("stateRoot".to_owned());
        assert!(matches!(recheck(&r), Recheck::Confirmed(_)));
    }

    #[test]
    fn a_proof_that_cannot_verify_is_confirmed() {
        let mut r = EvidenceRecord::new(
            "c",
            "eth_getProof",
            raw(r#"["0x0000000000000000000000000000000000000001",[],"0x5"]"#),
            Mode::Proof,
            "x",
        );
        r.state_root = Some(format!("0x{}", "11".repeat(32)));
        r.answers = vec![answer(
            "liar",
            r#"{"address":"0x0000000000000000000000000000000000000001","accountProof":[],"balance":"0x1","codeHash":"0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470","nonce":"0x0","storageHash":"0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421","storageProof":[]}"#,
        )];
        r.minority = vec!["liar".to_owned()];
        assert!(
            matches!(recheck(&r), Recheck::Confirmed(_)),
            "{:?}",
            recheck(&r)
        );
        r.method = "eth_getCode".to_owned();
        assert!(matches!(recheck(&r), Recheck::Unchecked(_)));
    }
}
