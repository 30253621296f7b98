//! The committed anvil proof: it verifies, and no single flipped byte in it does.

use std::sync::LazyLock;

use keel_verify::VerifyError;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::Case;

pub(crate) static CASE: LazyLock<Case> = LazyLock::new(|| {
    let text = include_str!("../fixtures/contract_proof.json");
    serde_json::from_str(text).unwrap()
});

#[test]
fn fixture_verifies() {
    let acct = CASE.verify().unwrap();
    assert!(acct.exists);
    assert_eq!(acct.storage.len(), 4);
    assert_eq!(acct.storage[0].value[31], 0x2a);
    assert_eq!(acct.storage[1].value, [0xff; 32]);
    assert_eq!(acct.storage[3].value, [0; 32]);
}

/// Every proof node list of the answer: (JSON pointer, number of nodes).
fn node_lists(proof: &Value) -> Vec<(String, usize)> {
    let mut lists = vec![(
        "/accountProof".to_owned(),
        proof["accountProof"].as_array().unwrap().len(),
    )];
    for (i, sp) in proof["storageProof"].as_array().unwrap().iter().enumerate() {
        lists.push((
            format!("/storageProof/{i}/proof"),
            sp["proof"].as_array().unwrap().len(),
        ));
    }
    lists
}

fn flip_hex(s: &str, byte: usize, mask: u8) -> String {
    let mut b = hex::decode(s.trim_start_matches("0x")).unwrap();
    let i = byte % b.len();
    b[i] ^= mask;
    format!("0x{}", hex::encode(b))
}

/// Flips a byte of a quantity's value, keeping it a valid quantity.
fn flip_quantity(s: &str, byte: usize, mask: u8) -> String {
    let mut w = keel_verify::proof::parse_word(s, "q").unwrap();
    w[31 - byte % 32] ^= mask;
    keel_verify::proof::quantity(&w)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn flipping_any_proof_byte_fails(list in any::<prop::sample::Index>(), node in any::<prop::sample::Index>(), byte in any::<usize>(), mask in 1u8..) {
        let lists = node_lists(&CASE.proof);
        let (ptr, len) = list.get(&lists);
        let mut answer = CASE.proof.clone();
        let node = &mut answer.pointer_mut(ptr).unwrap()[node.index(*len)];
        *node = json!(flip_hex(node.as_str().unwrap(), byte, mask));
        prop_assert!(CASE.verify_answer(&answer).is_err());
    }

    #[test]
    fn flipping_any_claimed_value_fails(field in 0usize..8, byte in any::<usize>(), mask in 1u8..) {
        let mut answer = CASE.proof.clone();
        match field {
            0 => answer["balance"] = json!(flip_quantity(answer["balance"].as_str().unwrap(), byte, mask)),
            1 => answer["nonce"] = json!(flip_quantity(answer["nonce"].as_str().unwrap(), byte % 8, mask)),
            2 => answer["codeHash"] = json!(flip_hex(answer["codeHash"].as_str().unwrap(), byte, mask)),
            3 => answer["storageHash"] = json!(flip_hex(answer["storageHash"].as_str().unwrap(), byte, mask)),
            i => {
                let v = &mut answer["storageProof"][i - 4]["value"];
                *v = json!(flip_quantity(v.as_str().unwrap(), byte, mask));
            }
        }
        let err = CASE.verify_answer(&answer).unwrap_err();
        let is_value_mismatch = matches!(err, VerifyError::ValueMismatch { .. });
        prop_assert!(is_value_mismatch, "{err}");
    }

    #[test]
    fn arbitrary_nodes_never_panic(nodes in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..6)) {
        let root = keel_verify::proof::parse_hash(&CASE.state_root).unwrap();
        let _ = keel_verify::mpt::verify_proof("account", "root", &root, &[0u8; 32], &nodes);
    }
}

/// An evidence record over the committed proof: honest, it is refuted; tampered, confirmed.
#[test]
fn evidence_records_recheck_offline() {
    use keel_verify::{
        Recheck,
        evidence::{EvidenceRecord, Mode, UpstreamAnswer},
        recheck,
    };
    let record = |proof: &Value| {
        let params = json!([CASE.address, CASE.storage_keys, CASE.block]);
        let mut r = EvidenceRecord::new(
            "devnet",
            "eth_getProof",
            serde_json::value::to_raw_value(&params).unwrap(),
            Mode::Proof,
            "test",
        );
        r.state_root = Some(CASE.state_root.clone());
        r.answers = vec![UpstreamAnswer {
            upstream: "b".to_owned(),
            result: Some(serde_json::value::to_raw_value(proof).unwrap()),
            error: None,
            digest: None,
        }];
        r.minority = vec!["b".to_owned()];
        r
    };
    assert!(matches!(recheck(&record(&CASE.proof)), Recheck::Refuted(_)));
    let mut forged = CASE.proof.clone();
    forged["balance"] = json!("0xde0b6b3a7640000");
    match recheck(&record(&forged)) {
        Recheck::Confirmed(why) => assert!(why.contains("balance"), "{why}"),
        other => panic!("{other:?}"),
    }
}
