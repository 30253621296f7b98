//! Merkle-Patricia proof verification (the secure tries of Ethereum state and storage).
//!
//! A proof is the list of trie nodes on the path from the root to a key, as `eth_getProof`
//! returns them: node 0 must hash to the trusted root, and every later node must hash to the
//! reference its parent holds for the next step of the path. Children whose encoding is shorter
//! than 32 bytes are embedded in their parent and are walked in place (a proof may also repeat
//! them as separate entries; such an entry must then be byte-identical). Every node of the proof
//! must be used: trailing nodes are rejected, so no byte of a proof is unchecked.

use sha3::{Digest, Keccak256};

use crate::{
    VerifyError,
    error::Result,
    rlp::{self, Item},
};

/// keccak256 of the RLP empty string: the root of an empty trie.
pub const EMPTY_ROOT: [u8; 32] = [
    0x56, 0xe8, 0x1f, 0x17, 0x1b, 0xcc, 0x55, 0xa6, 0xff, 0x83, 0x45, 0xe6, 0x92, 0xc0, 0xf8, 0x6e,
    0x5b, 0x48, 0xe0, 0x1b, 0x99, 0x6c, 0xad, 0xc0, 0x01, 0x62, 0x2f, 0xb5, 0xe3, 0x63, 0xb4, 0x21,
];

/// keccak256 of nothing.
pub fn keccak(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// A reference from a parent to a child node.
#[derive(Debug, Clone, Copy)]
enum Ref<'a> {
    Hash(&'a [u8]),
    Inline(&'a [u8]),
}

/// A decoded trie node. Lives on the stack for one step of the walk; boxing the branch's
/// children would cost an allocation per node for no gain.
#[allow(clippy::large_enum_variant)]
enum Node<'a> {
    Branch {
        children: [Option<Ref<'a>>; 16],
        value: &'a [u8],
    },
    Extension {
        path: Vec<u8>,
        child: Ref<'a>,
    },
    Leaf {
        path: Vec<u8>,
        value: &'a [u8],
    },
}

fn child_ref(item: Item<'_>) -> Result<Option<Ref<'_>>, String> {
    match item {
        Item::Bytes([]) => Ok(None),
        Item::Bytes(h) if h.len() == 32 => Ok(Some(Ref::Hash(h))),
        Item::Bytes(b) => Err(format!(
            "child reference is a {}-byte string, expected a 32-byte hash",
            b.len()
        )),
        Item::List { encoded, .. } if encoded.len() < 32 => Ok(Some(Ref::Inline(encoded))),
        Item::List { encoded, .. } => Err(format!(
            "embedded child node is {} bytes, must be under 32",
            encoded.len()
        )),
    }
}

/// Decodes a hex-prefix (compact) path; returns the nibbles and whether it is a leaf.
fn compact_path(b: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let Some(&first) = b.first() else {
        return Err("empty compact path".into());
    };
    let flag = first >> 4;
    let (leaf, odd) = match flag {
        0 => (false, false),
        1 => (false, true),
        2 => (true, false),
        3 => (true, true),
        f => return Err(format!("compact path flag {f} is not 0..=3")),
    };
    if !odd && first & 0x0f != 0 {
        return Err("even compact path has a non-zero padding nibble".into());
    }
    let mut nibbles = Vec::with_capacity(b.len() * 2);
    if odd {
        nibbles.push(first & 0x0f);
    }
    for byte in &b[1..] {
        nibbles.push(byte >> 4);
        nibbles.push(byte & 0x0f);
    }
    Ok((nibbles, leaf))
}

/// Decodes one trie node from its full RLP encoding.
fn decode_node(encoded: &[u8]) -> Result<Node<'_>, String> {
    let Item::List { payload, .. } = rlp::decode_exact(encoded)? else {
        return Err("node is an RLP string, expected a list".into());
    };
    let items = rlp::list_items(payload)?;
    match items.len() {
        17 => {
            let mut children = [None; 16];
            for (slot, item) in children.iter_mut().zip(&items[..16]) {
                *slot = child_ref(*item)?;
            }
            let Item::Bytes(value) = items[16] else {
                return Err("branch value is a list".into());
            };
            Ok(Node::Branch { children, value })
        }
        2 => {
            let Item::Bytes(p) = items[0] else {
                return Err("node path is a list".into());
            };
            let (path, leaf) = compact_path(p)?;
            if leaf {
                let Item::Bytes(value) = items[1] else {
                    return Err("leaf value is a list".into());
                };
                if value.is_empty() {
                    return Err("leaf value is empty".into());
                }
                Ok(Node::Leaf { path, value })
            } else {
                if path.is_empty() {
                    return Err("extension with an empty path".into());
                }
                let child = child_ref(items[1])?.ok_or("extension without a child")?;
                Ok(Node::Extension { path, child })
            }
        }
        n => Err(format!("node has {n} items, expected 2 or 17")),
    }
}

/// Checks that `node` is well-formed; for fuzzing and diagnostics.
pub fn check_node(node: &[u8]) -> Result<(), String> {
    decode_node(node).map(|_| ())
}

fn nibbles(key: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (i, b) in key.iter().enumerate() {
        out[2 * i] = b >> 4;
        out[2 * i + 1] = b & 0x0f;
    }
    out
}

/// Walks `proof` from `root` along `path` (the keccak of the key, for a secure trie).
///
/// Returns the value stored at `path` (`Some`), or `None` when the proof shows that nothing is
/// stored there (a proof of absence). `trie` names the trie in errors (`account`, `storage[0]`)
/// and `root_name` names what the root is (`the state root`, `the storage root`).
pub fn verify_proof(
    trie: &str,
    root_name: &str,
    root: &[u8; 32],
    path: &[u8; 32],
    proof: &[Vec<u8>],
) -> Result<Option<Vec<u8>>> {
    if proof.is_empty() || (proof.len() == 1 && proof[0] == [0x80]) {
        return if *root == EMPTY_ROOT {
            Ok(None)
        } else {
            Err(VerifyError::EmptyProofForNonEmptyRoot {
                trie: trie.to_owned(),
                root: hex0x(root),
            })
        };
    }
    let key = nibbles(path);
    let mut pos = 0usize; // nibbles of `key` consumed
    let mut next = 0usize; // next unused proof entry
    let mut current = 0usize; // proof entry holding the node being walked
    let mut expected = Ref::Hash(root);
    let mut parent = root_name.to_owned();
    let bad = |index: usize, reason: String| VerifyError::BadNode {
        trie: trie.to_owned(),
        index,
        reason,
    };
    let found: Option<&[u8]> = loop {
        let node: &[u8] = match expected {
            Ref::Hash(h) => {
                let Some(node) = proof.get(next) else {
                    return Err(VerifyError::ProofTooShort {
                        trie: trie.to_owned(),
                        nodes: proof.len(),
                    });
                };
                let got = keccak(node);
                if got[..] != *h {
                    return Err(VerifyError::NodeMismatch {
                        trie: trie.to_owned(),
                        index: next,
                        parent,
                        expected: hex0x(h),
                        got: hex0x(&got),
                    });
                }
                current = next;
                next += 1;
                node
            }
            Ref::Inline(bytes) => {
                if proof.get(next).is_some_and(|n| n == bytes) {
                    current = next;
                    next += 1;
                }
                bytes
            }
        };
        match decode_node(node).map_err(|e| bad(current, e))? {
            Node::Branch { children, value } => {
                if pos == key.len() {
                    break (!value.is_empty()).then_some(value);
                }
                match children[usize::from(key[pos])] {
                    None => break None,
                    Some(child) => {
                        pos += 1;
                        expected = child;
                    }
                }
            }
            Node::Extension { path, child } => {
                if key[pos..].starts_with(&path) {
                    pos += path.len();
                    expected = child;
                } else {
                    break None;
                }
            }
            Node::Leaf { path, value } => {
                break (key[pos..] == path[..]).then_some(value);
            }
        }
        parent = format!("node {current}");
    };
    if next < proof.len() {
        return Err(VerifyError::ProofTooLong {
            trie: trie.to_owned(),
            resolved_at: current,
            extra: proof.len() - next,
        });
    }
    Ok(found.map(<[u8]>::to_vec))
}

/// `0x`-prefixed lower-case hex.
pub(crate) fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_keccak_of_empty_string() {
        assert_eq!(keccak(&[0x80]), EMPTY_ROOT);
    }

    #[test]
    fn empty_proof_proves_absence_only_in_an_empty_trie() {
        let path = [1u8; 32];
        assert_eq!(verify_proof("t", "r", &EMPTY_ROOT, &path, &[]), Ok(None));
        assert_eq!(
            verify_proof("t", "r", &EMPTY_ROOT, &path, &[vec![0x80]]),
            Ok(None)
        );
        assert!(matches!(
            verify_proof("t", "r", &[0u8; 32], &path, &[]),
            Err(VerifyError::EmptyProofForNonEmptyRoot { .. })
        ));
    }

    /// A trie with one leaf: the root is keccak of the leaf node.
    fn single_leaf(path: &[u8; 32], value: &[u8]) -> ([u8; 32], Vec<u8>) {
        // leaf: [0x20 ++ path (even, leaf flag), value]
        let mut compact = vec![0x20];
        compact.extend_from_slice(path);
        let mut payload = vec![0x80 + 33];
        payload.extend(&compact);
        payload.push(0x80 + u8::try_from(value.len()).unwrap());
        payload.extend(value);
        let mut node = vec![0xc0 + u8::try_from(payload.len()).unwrap()];
        node.extend(payload);
        (keccak(&node), node)
    }

    #[test]
    fn single_leaf_trie_proves_presence_and_absence() {
        let path = [7u8; 32];
        let (root, node) = single_leaf(&path, b"hello");
        let proof = vec![node];
        assert_eq!(
            verify_proof("t", "r", &root, &path, &proof),
            Ok(Some(b"hello".to_vec()))
        );
        assert_eq!(verify_proof("t", "r", &root, &[8u8; 32], &proof), Ok(None));
        let mut long = proof.clone();
        long.push(vec![0x80]);
        assert!(matches!(
            verify_proof("t", "r", &root, &path, &long),
            Err(VerifyError::ProofTooLong { extra: 1, .. })
        ));
        assert!(matches!(
            verify_proof("t", "r", &[0u8; 32], &path, &proof),
            Err(VerifyError::NodeMismatch { index: 0, .. })
        ));
    }

    #[test]
    fn compact_paths() {
        assert_eq!(compact_path(&[0x00, 0x12]), Ok((vec![1, 2], false)));
        assert_eq!(compact_path(&[0x1a, 0x12]), Ok((vec![0xa, 1, 2], false)));
        assert_eq!(compact_path(&[0x20]), Ok((vec![], true)));
        assert_eq!(compact_path(&[0x3f]), Ok((vec![0xf], true)));
        assert!(compact_path(&[0x40]).is_err());
        assert!(compact_path(&[0x05]).is_err());
    }
}
