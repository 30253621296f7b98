//! Arbitrary bytes into the proof decoder: as trie nodes walked from a root, as one node, and
//! as an `eth_getProof` JSON answer. None of it may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a node at any depth of a trie of 32-byte keys (0..=64 nibbles, 64 being past a key).
    let depth = data.first().map_or(0, |b| usize::from(*b) % 65);
    let _ = keel_verify::mpt::check_node(data, depth);
    // Split the input into nodes at 0xfe bytes; the root is the first node's hash so
    // the walk goes past node 0.
    let nodes: Vec<Vec<u8>> = data.split(|b| *b == 0xfe).map(<[u8]>::to_vec).collect();
    let root = keel_verify::mpt::keccak(&nodes[0]);
    let path = keel_verify::mpt::keccak(data);
    let _ = keel_verify::mpt::verify_proof("fuzz", "root", &root, &path, &nodes);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(raw) = serde_json::value::RawValue::from_string(text.to_owned())
    {
        let _ = keel_verify::verify_account_proof(&root, &[0u8; 20], &[[0u8; 32]], &raw);
    }
});
