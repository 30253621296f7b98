//! Differential: keel's Merkle-Patricia proof verdicts against alloy-trie's
//! (`alloy_trie::proof::verify_proof`, the verifier reth uses), on tries built from the input.
//!
//! The input makes a trie (up to 24 keys of 32 bytes sharing prefixes, so that extension
//! nodes, deep branches and embedded nodes under 32 bytes all occur, with values of 1..64
//! bytes), built with alloy-trie's `HashBuilder`; a key to prove (present or absent); the
//! proof taken with `ProofRetainer`; and one mutation of the proof or of the question: none,
//! a flipped byte, a dropped / repeated / swapped / appended / truncated node, the proof of
//! another key, another trie's root, or a changed last node re-hashed up to a new root (so the
//! hashes hold and only the decoders judge it).
//!
//! What must hold:
//! - an unmutated proof of a present key gives its value in keel, of an absent key `None`;
//! - keel accepts (with value v) only what alloy-trie accepts with the expected value v;
//! - what keel refuses, alloy-trie refuses too, for the true value and for absence —
//!   except where keel is stricter on purpose: an unused trailing node (`ProofTooLong`), a
//!   node the spec does not allow (see `well_formed`), which alloy-trie tolerates where its
//!   walk does not look (bytes after a node, a malformed sibling reference), or a node that
//!   does not fit a trie whose keys are all 32 bytes (see `shaped`: a leaf that stops short of
//!   nibble 64, which alloy-trie reads as absence).
#![no_main]

use std::collections::BTreeMap;

use alloy_primitives::{B256, Bytes};
use alloy_rlp::Decodable;
use alloy_trie::{
    HashBuilder, Nibbles,
    nodes::{RlpNode, TrieNode},
    proof::ProofRetainer,
};
use keel_verify::{VerifyError, mpt};
use libfuzzer_sys::fuzz_target;

/// Reads the input a byte at a time; zeros once it is used up.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
}

/// The trie's keys and values: each key is the previous one with 1..=3 bytes changed, mostly
/// near the end, so keys share long prefixes.
fn make_trie(inp: &mut Input<'_>) -> BTreeMap<[u8; 32], Vec<u8>> {
    let n = 1 + usize::from(inp.byte() % 24);
    let mut key = [0u8; 32];
    for b in key.iter_mut().take(4) {
        *b = inp.byte();
    }
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let changes = 1 + inp.byte() % 3;
        for _ in 0..changes {
            let pos = inp.byte();
            // Half the changes in the last 4 bytes, the rest anywhere.
            let i = if pos & 0x80 != 0 {
                28 + usize::from(pos & 3)
            } else {
                usize::from(pos) % 32
            };
            key[i] = inp.byte();
        }
        let len = 1 + usize::from(inp.byte() % 64);
        let value: Vec<u8> = (0..len).map(|_| inp.byte()).collect();
        out.insert(key, value);
    }
    out
}

/// The root of `trie` and the proof of `target` as `eth_getProof` gives it: the root node, then
/// every node on the path that its parent references by hash. (The retainer also keeps nodes
/// under 32 bytes, which their parents embed; a proof does not list those.)
fn build(trie: &BTreeMap<[u8; 32], Vec<u8>>, target: &[u8; 32]) -> (B256, Vec<Vec<u8>>) {
    let t = Nibbles::unpack(target);
    let mut hb = HashBuilder::default().with_proof_retainer(ProofRetainer::new(vec![t]));
    for (k, v) in trie {
        hb.add_leaf(Nibbles::unpack(k), v);
    }
    let root = hb.root();
    let nodes = hb.take_proof_nodes().matching_nodes_sorted(&t);
    let proof = nodes
        .into_iter()
        .enumerate()
        .filter(|(i, (_, n))| *i == 0 || n.len() >= 32)
        .map(|(_, (_, n))| n.to_vec())
        .collect();
    (root, proof)
}

/// Replaces `node` (the last of `proof`) by `new` and re-hashes every parent up to the root:
/// each parent's 32-byte reference to the old node is replaced. `None` when a parent does not
/// hold the reference exactly once (an embedded node, or a chance repeat).
fn rehash(proof: &mut [Vec<u8>], new: Vec<u8>) -> Option<B256> {
    let last = proof.len().checked_sub(1)?;
    let mut old_hash = mpt::keccak(&proof[last]);
    proof[last] = new;
    if proof[last].len() < 32 || (last > 0 && proof[last - 1].len() < 32) {
        return None;
    }
    let mut new_hash = mpt::keccak(&proof[last]);
    for i in (0..last).rev() {
        let parent = &mut proof[i];
        let at: Vec<usize> = parent
            .windows(32)
            .enumerate()
            .filter(|(_, w)| *w == old_hash)
            .map(|(j, _)| j)
            .collect();
        let [j] = at[..] else { return None };
        old_hash = mpt::keccak(parent);
        parent[j..j + 32].copy_from_slice(&new_hash);
        new_hash = mpt::keccak(parent);
    }
    Some(B256::from(new_hash))
}

/// Whether `node` is a trie node as the Ethereum spec (yellow paper, appendix D) allows it,
/// judged through alloy-trie's decoder: canonical RLP (every byte used, the same bytes when
/// encoded again), child references that are a 32-byte hash or an embedded node under 32
/// bytes (itself well-formed), extensions with a path, leaves with a value.
fn well_formed(node: &[u8]) -> bool {
    let valid_ref = |r: &[u8]| {
        (r.len() == 33 && r[0] == 0xa0) || (r.len() < 32 && r[0] >= 0xc0 && well_formed(r))
    };
    let mut rest = node;
    let Ok(t) = TrieNode::decode(&mut rest) else {
        return false;
    };
    if !rest.is_empty() || alloy_rlp::encode(&t) != node {
        return false;
    }
    match t {
        TrieNode::Branch(b) => b.stack.iter().all(|c| !c.is_empty() && valid_ref(c)),
        TrieNode::Extension(e) => !e.key.is_empty() && !e.child.is_empty() && valid_ref(&e.child),
        TrieNode::Leaf(l) => !l.value.is_empty(),
        TrieNode::EmptyRoot => false,
    }
}

/// Whether `node`, `depth` nibbles into a trie whose keys are all 32 bytes, fits that trie's
/// shape (judged on alloy-trie's decoding): a leaf ends at nibble 64, an extension before it and
/// leads to a branch, a branch sits above it (alloy-trie's decoder already refuses branch
/// values), and each child embedded in it (under 32 bytes) fits at its own depth.
fn shaped(node: &TrieNode, depth: usize) -> bool {
    let embedded = |c: &RlpNode| TrieNode::decode(&mut &c[..]).ok();
    match node {
        TrieNode::Branch(b) => {
            depth < 64
                && b.stack
                    .iter()
                    .all(|c| c.is_hash() || embedded(c).is_some_and(|n| shaped(&n, depth + 1)))
        }
        TrieNode::Extension(e) => {
            let end = depth + e.key.len();
            !e.key.is_empty()
                && end < 64
                && (e.child.is_hash()
                    || embedded(&e.child)
                        .is_some_and(|n| matches!(n, TrieNode::Branch(_)) && shaped(&n, end)))
        }
        TrieNode::Leaf(l) => depth + l.key.len() == 64,
        TrieNode::EmptyRoot => false,
    }
}

/// Whether the nodes a walk along `path` visits fit the trie's shape ([`shaped`]), an
/// extension's child being a branch. A walk that cannot go on (a missing or undecodable node,
/// a hash that does not match) stops with `true`: that is no question of shape.
fn walk_shaped(path: &[u8; 32], proof: &[Vec<u8>]) -> bool {
    let key = Nibbles::unpack(path).to_vec();
    let Some(first) = proof.first() else {
        return true;
    };
    let mut bytes = first.clone();
    let mut next = 1;
    let mut depth = 0;
    let mut after_extension = false;
    loop {
        let Ok(node) = TrieNode::decode(&mut &bytes[..]) else {
            return true;
        };
        if !shaped(&node, depth) || (after_extension && !matches!(node, TrieNode::Branch(_))) {
            return false;
        }
        let child = match node {
            TrieNode::Branch(b) => {
                let n = key[depth];
                if !b.state_mask.is_bit_set(n) {
                    return true;
                }
                let i = (0..n).filter(|i| b.state_mask.is_bit_set(*i)).count();
                depth += 1;
                after_extension = false;
                b.stack[i].clone()
            }
            TrieNode::Extension(e) => {
                let p = e.key.to_vec();
                if !key[depth..].starts_with(&p) {
                    return true;
                }
                depth += p.len();
                after_extension = true;
                e.child
            }
            TrieNode::Leaf(_) | TrieNode::EmptyRoot => return true,
        };
        if child.is_hash() {
            match proof.get(next) {
                Some(n) if mpt::keccak(n)[..] == child[1..] => bytes = n.clone(),
                _ => return true,
            }
            next += 1;
        } else {
            bytes = child.to_vec();
            // keel also takes an embedded node repeated as a proof entry of its own.
            if proof.get(next) == Some(&bytes) {
                next += 1;
            }
        }
    }
}

/// The question and the proof, for a finding's message.
fn describe(root: &B256, path: &[u8; 32], proof: &[Vec<u8>]) -> String {
    let nodes: Vec<String> = proof.iter().map(hex::encode).collect();
    format!(
        "root {root}, path {}, proof [{}]",
        hex::encode(path),
        nodes.join(", ")
    )
}

/// alloy-trie's verdict, with its reason. alloy-trie 0.9.9 panics on some hostile proofs (an
/// extension or leaf path that takes the walked path past 64 nibbles: "Cannot extend"); that
/// is a refusal here, not a finding against keel.
fn alloy_verdict(
    root: B256,
    path: &[u8; 32],
    value: Option<Vec<u8>>,
    proof: &[Vec<u8>],
) -> Result<(), String> {
    let proof: Vec<Bytes> = proof.iter().map(|n| Bytes::copy_from_slice(n)).collect();
    // libFuzzer's panic hook aborts; keep it out of the way while alloy-trie runs.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let verdict = std::panic::catch_unwind(|| {
        alloy_trie::proof::verify_proof(root, Nibbles::unpack(path), value, &proof)
    });
    std::panic::set_hook(hook);
    match verdict {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("alloy-trie panicked".to_owned()),
    }
}

fn alloy_accepts(root: B256, path: &[u8; 32], value: Option<Vec<u8>>, proof: &[Vec<u8>]) -> bool {
    alloy_verdict(root, path, value, proof).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let trie = make_trie(&mut inp);
    let keys: Vec<&[u8; 32]> = trie.keys().collect();
    // The key to prove: a present one, or a present one with one byte changed (usually absent).
    let pick = inp.byte();
    let mut path = *keys[usize::from(pick & 0x7f) % keys.len()];
    if pick & 0x80 != 0 {
        let i = usize::from(inp.byte()) % 32;
        path[i] ^= inp.byte() | 1;
    }
    let truth = trie.get(&path).cloned();
    let (mut root, mut proof) = build(&trie, &path);

    let honest = proof.clone();
    let check_honest = |root: &B256, proof: &[Vec<u8>]| {
        let got = mpt::verify_proof("fuzz", "root", &root.0, &path, proof);
        assert_eq!(
            got.as_ref().ok(),
            Some(&truth),
            "keel refuses or misreads an honest proof: {got:?}"
        );
        assert!(
            alloy_accepts(*root, &path, truth.clone(), proof),
            "alloy-trie refuses an honest proof"
        );
    };
    check_honest(&root, &honest);

    let mutation = inp.byte() % 10;
    let n = proof.len();
    let i = usize::from(inp.byte()) % n.max(1);
    match mutation {
        1 if n > 0 => {
            let node = &mut proof[i];
            let j = usize::from(inp.byte()) % node.len().max(1);
            if let Some(b) = node.get_mut(j) {
                *b ^= inp.byte() | 1;
            }
        }
        2 if n > 0 => {
            proof.remove(i);
        }
        3 if n > 0 => {
            let node = proof[i].clone();
            proof.insert(i, node);
        }
        4 if n > 1 => {
            let j = usize::from(inp.byte()) % n;
            proof.swap(i, j);
        }
        5 => {
            let len = usize::from(inp.byte() % 40);
            proof.push((0..len).map(|_| inp.byte()).collect());
        }
        6 => proof.truncate(i),
        7 => {
            // The proof of another key, for this key.
            let other = *keys[usize::from(inp.byte()) % keys.len()];
            proof = build(&trie, &other).1;
        }
        8 => {
            // Another trie's root (the same trie without its first key).
            let mut smaller = trie.clone();
            if let Some(k) = keys.first() {
                smaller.remove(*k);
            }
            if smaller.is_empty() {
                return;
            }
            root = build(&smaller, &path).0;
        }
        9 if n > 0 => {
            // A changed last node, its hash carried up to a new root.
            let mut node = proof[n - 1].clone();
            let j = usize::from(inp.byte()) % node.len().max(1);
            match inp.byte() % 3 {
                0 => {
                    if let Some(b) = node.get_mut(j) {
                        *b ^= inp.byte() | 1;
                    }
                }
                1 => node.truncate(j),
                _ => node.insert(j, inp.byte()),
            }
            let mut changed = proof.clone();
            let Some(new_root) = rehash(&mut changed, node) else {
                return;
            };
            proof = changed;
            root = new_root;
        }
        _ => {}
    }
    if mutation == 0 || proof == honest && root == build(&trie, &path).0 {
        check_honest(&root, &proof);
        return;
    }

    let keel = mpt::verify_proof("fuzz", "root", &root.0, &path, &proof);
    match &keel {
        Ok(value) => {
            if let Err(e) = alloy_verdict(root, &path, value.clone(), &proof) {
                panic!(
                    "keel accepts {value:?} where alloy-trie refuses it ({e}) (mutation \
                     {mutation}): {}",
                    describe(&root, &path, &proof)
                );
            }
        }
        Err(e) => {
            let for_truth = alloy_accepts(root, &path, truth.clone(), &proof);
            let for_absent = alloy_accepts(root, &path, None, &proof);
            // keel is stricter on purpose about unused trailing nodes, about nodes the spec
            // does not allow (trailing bytes, a child reference of 1..31 bytes that is no
            // node, …) that alloy-trie tolerates when its walk does not need them, and about
            // nodes that do not fit a trie of 32-byte keys (a leaf short of nibble 64, an
            // extension into a leaf, a malformed embedded sibling); only a root committing to
            // such a node (mutation 9) has them.
            let stricter_on_purpose = matches!(e, VerifyError::ProofTooLong { .. })
                || proof.iter().any(|n| !well_formed(n))
                || !walk_shaped(&path, &proof);
            assert!(
                !(for_truth || for_absent) || stricter_on_purpose,
                "keel refuses ({e}) what alloy-trie accepts (value {}, absence {for_absent}) \
                 (mutation {mutation}): {}",
                if for_truth { "true" } else { "false" },
                describe(&root, &path, &proof)
            );
        }
    }
});
