//! CPU cost of verifying one `eth_getProof` answer captured from anvil
//! (`tests/fixtures/contract_proof.json`), from raw JSON bytes to verified values.
//!
//! Run: `cargo bench -p keel-verify --bench proof`. Figures: docs/benchmarks-verify.md.
#![allow(missing_docs, clippy::unwrap_used)]

use serde_json::{Value, value::RawValue};

struct Input {
    root: [u8; 32],
    address: [u8; 20],
    keys: Vec<[u8; 32]>,
    answer: Box<RawValue>,
}

fn input(with_storage: bool) -> Input {
    let case: Value =
        serde_json::from_str(include_str!("../tests/fixtures/contract_proof.json")).unwrap();
    let mut proof = case["proof"].clone();
    let keys = if with_storage {
        case["storageKeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| keel_verify::proof::parse_word(k.as_str().unwrap(), "key").unwrap())
            .collect()
    } else {
        proof["storageProof"] = Value::Array(Vec::new());
        Vec::new()
    };
    Input {
        root: keel_verify::proof::parse_hash(case["stateRoot"].as_str().unwrap()).unwrap(),
        address: keel_verify::proof::parse_address(case["address"].as_str().unwrap()).unwrap(),
        keys,
        answer: serde_json::value::to_raw_value(&proof).unwrap(),
    }
}

/// `eth_getBalance`-style: the account proof only.
#[divan::bench]
fn account_only(bencher: divan::Bencher) {
    let i = input(false);
    bencher.bench(|| {
        keel_verify::verify_account_proof(&i.root, &i.address, &i.keys, divan::black_box(&i.answer))
            .unwrap()
    });
}

/// The account proof plus four storage proofs (three set slots, one unset).
#[divan::bench]
fn account_and_four_slots(bencher: divan::Bencher) {
    let i = input(true);
    bencher.bench(|| {
        keel_verify::verify_account_proof(&i.root, &i.address, &i.keys, divan::black_box(&i.answer))
            .unwrap()
    });
}

fn main() {
    divan::main();
}
