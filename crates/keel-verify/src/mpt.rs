//! Merkle-Patricia proof verification (the secure tries of Ethereum state and storage).
//!
//! A proof is the list of trie nodes on the path from the root to a key, as `eth_getProof`
//! returns them: node 0 must hash to the trusted root, and every later node must hash to the
//! reference its parent holds for the next step of the path. Children whose encoding is shorter
//! than 32 bytes are embedded in their parent and are walked in place (a proof may also repeat
//! them as separate entries; such an entry must then be byte-identical). Every node of the proof
//! must be used: trailing nodes are rejected, so no byte of a proof is unchecked.
//!
//! Every key of these tries is a 32-byte hash (64 nibbles), which fixes the trie's shape, and a
//! node that breaks it is refused even where the walk could step around it (as strict as
//! alloy-trie, reth's verifier, or stricter):
//! - a leaf's path ends exactly at nibble 64 (one that stops short or runs past the key is
//!   malformed, not a proof of absence);
//! - an extension ends before nibble 64 and leads to a branch;
//! - a branch sits above nibble 64 and carries no value (no key ends at a branch);
//! - a child embedded in its parent (encoding under 32 bytes) is itself a well-formed node at
//!   its depth, whether the walk enters it or it is a sibling of the path.

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

/// The length of every key of the account and storage tries, in nibbles (32-byte hashes).
const KEY_NIBBLES: usize = 64;

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
    /// A branch; its value is always empty (checked), so it is not kept.
    Branch {
        children: [Option<Ref<'a>>; 16],
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

/// Reads a child reference; an embedded child is decoded and checked as a node at `depth` (the
/// nibbles consumed before it), so a malformed sibling of the walked path is found too, and
/// must be a branch when `branch_only` (an extension's child).
fn child_ref(item: Item<'_>, depth: usize, branch_only: bool) -> Result<Option<Ref<'_>>, String> {
    match item {
        Item::Bytes([]) => Ok(None),
        Item::Bytes(h) if h.len() == 32 => Ok(Some(Ref::Hash(h))),
        Item::Bytes(b) => Err(format!(
            "child reference is a {}-byte string, expected a 32-byte hash",
            b.len()
        )),
        Item::List { encoded, .. } if encoded.len() < 32 => {
            // Each level of embedding is shorter than its parent: the recursion ends within
            // 16 levels.
            let node = decode_node(encoded, depth).map_err(|e| format!("embedded node: {e}"))?;
            if branch_only && !matches!(node, Node::Branch { .. }) {
                return Err(format!(
                    "embedded node is {}, must be a branch",
                    kind(&node)
                ));
            }
            Ok(Some(Ref::Inline(encoded)))
        }
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

/// What a node is called in errors.
fn kind(node: &Node<'_>) -> &'static str {
    match node {
        Node::Branch { .. } => "a branch",
        Node::Extension { .. } => "an extension",
        Node::Leaf { .. } => "a leaf",
    }
}

/// Decodes one trie node from its full RLP encoding and checks it fits the trie's shape at
/// `depth`, the number of key nibbles consumed before it (see the module docs).
fn decode_node(encoded: &[u8], depth: usize) -> Result<Node<'_>, String> {
    let Item::List { payload, .. } = rlp::decode_exact(encoded)? else {
        return Err("node is an RLP string, expected a list".into());
    };
    let items = rlp::list_items(payload)?;
    match items.len() {
        17 => {
            if depth >= KEY_NIBBLES {
                return Err(format!(
                    "branch node at nibble {depth}: every key ends at nibble {KEY_NIBBLES}, \
                     so nothing branches there"
                ));
            }
            let mut children = [None; 16];
            for (i, (slot, item)) in children.iter_mut().zip(&items[..16]).enumerate() {
                *slot =
                    child_ref(*item, depth + 1, false).map_err(|e| format!("child {i:x}: {e}"))?;
            }
            let Item::Bytes(value) = items[16] else {
                return Err("branch value is a list".into());
            };
            if !value.is_empty() {
                return Err(format!(
                    "branch node carries a {}-byte value: every key is {KEY_NIBBLES} nibbles, \
                     so no key ends at a branch",
                    value.len()
                ));
            }
            Ok(Node::Branch { children })
        }
        2 => {
            let Item::Bytes(p) = items[0] else {
                return Err("node path is a list".into());
            };
            let (path, leaf) = compact_path(p)?;
            let end = depth + path.len();
            if leaf {
                if end != KEY_NIBBLES {
                    return Err(format!(
                        "leaf at nibble {depth} has a {}-nibble path ending at nibble {end}, \
                         not at nibble {KEY_NIBBLES} where every key ends",
                        path.len()
                    ));
                }
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
                if end >= KEY_NIBBLES {
                    return Err(format!(
                        "extension at nibble {depth} has a {}-nibble path ending at nibble \
                         {end}: it must end before nibble {KEY_NIBBLES}, where a branch follows",
                        path.len()
                    ));
                }
                let child = child_ref(items[1], end, true)
                    .map_err(|e| format!("child: {e}"))?
                    .ok_or("extension without a child")?;
                Ok(Node::Extension { path, child })
            }
        }
        n => Err(format!("node has {n} items, expected 2 or 17")),
    }
}

/// Checks that `node` is a well-formed node at `depth` nibbles into a trie of 32-byte keys; for
/// fuzzing and diagnostics.
pub fn check_node(node: &[u8], depth: usize) -> Result<(), String> {
    decode_node(node, depth).map(|_| ())
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
    let mut after_extension = false; // the node walked last was an extension
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
        let decoded = decode_node(node, pos).map_err(|e| bad(current, e))?;
        if after_extension && !matches!(decoded, Node::Branch { .. }) {
            return Err(bad(
                current,
                format!(
                    "the child of an extension is {}, must be a branch",
                    kind(&decoded)
                ),
            ));
        }
        after_extension = false;
        match decoded {
            // `decode_node` checked that a branch is above the key's last nibble and a leaf ends
            // on it.
            Node::Branch { children } => match children[usize::from(key[pos])] {
                None => break None,
                Some(child) => {
                    pos += 1;
                    expected = child;
                }
            },
            Node::Extension { path, child } => {
                if key[pos..].starts_with(&path) {
                    pos += path.len();
                    expected = child;
                    after_extension = true;
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

    // Trie nodes built by hand, so that tests can build what no honest trie holds.

    fn rlp_bytes(b: &[u8]) -> Vec<u8> {
        match b {
            [x] if *x < 0x80 => vec![*x],
            _ if b.len() < 56 => [&[0x80 + u8::try_from(b.len()).unwrap()], b].concat(),
            _ => [&[0xb8, u8::try_from(b.len()).unwrap()], b].concat(),
        }
    }

    fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
        let payload = items.concat();
        let len = u8::try_from(payload.len()).unwrap();
        let header = if len < 56 {
            vec![0xc0 + len]
        } else {
            vec![0xf8, len]
        };
        [header, payload].concat()
    }

    fn compact(nibbles: &[u8], leaf: bool) -> Vec<u8> {
        let flag = if leaf { 2 } else { 0 };
        let (mut out, rest) = match nibbles {
            [first, rest @ ..] if nibbles.len() % 2 == 1 => (vec![((flag + 1) << 4) | first], rest),
            _ => (vec![flag << 4], nibbles),
        };
        out.extend(rest.chunks(2).map(|p| (p[0] << 4) | p[1]));
        out
    }

    /// How a parent refers to `node`: embedded under 32 bytes, else by hash.
    fn reference(node: &[u8]) -> Vec<u8> {
        if node.len() < 32 {
            node.to_vec()
        } else {
            rlp_bytes(&keccak(node))
        }
    }

    fn leaf(path: &[u8], value: &[u8]) -> Vec<u8> {
        rlp_list(&[rlp_bytes(&compact(path, true)), rlp_bytes(value)])
    }

    fn extension(path: &[u8], child: &[u8]) -> Vec<u8> {
        rlp_list(&[rlp_bytes(&compact(path, false)), reference(child)])
    }

    fn branch(children: &[(u8, &[u8])], value: &[u8]) -> Vec<u8> {
        let mut items = vec![vec![0x80]; 16];
        for (i, child) in children {
            items[usize::from(*i)] = reference(child);
        }
        items.push(rlp_bytes(value));
        rlp_list(&items)
    }

    /// The key whose 64 nibbles are all `n`.
    fn key(n: u8) -> [u8; 32] {
        [n * 0x11; 32]
    }

    fn walk(proof: &[Vec<u8>], key: &[u8; 32]) -> Result<Option<Vec<u8>>> {
        verify_proof("account", "the state root", &keccak(&proof[0]), key, proof)
    }

    fn refused(got: Result<Option<Vec<u8>>>, node: usize, why: &str) {
        match got {
            Err(VerifyError::BadNode { index, reason, .. }) => {
                assert_eq!(index, node, "{reason}");
                assert!(reason.contains(why), "{reason:?} does not say {why:?}");
            }
            other => panic!("expected node {node} to be refused ({why}), got {other:?}"),
        }
    }

    /// 59 nibbles of extension, then a branch whose children are embedded (each under 32
    /// bytes): a deep corner of an honest trie, walked in place. Key 1 is in it.
    fn deep_trie(sibling: &[u8]) -> Vec<Vec<u8>> {
        let found = leaf(&[1; 4], b"twenty bytes of value");
        assert!(found.len() < 32 && sibling.len() < 32);
        let b = branch(&[(1, &found), (2, sibling)], b"");
        assert!(b.len() >= 32, "the branch is a proof node of its own");
        vec![extension(&[1; 59], &b), b]
    }

    #[test]
    fn honest_tries_with_every_node_kind_are_read() {
        let one = leaf(&[1; 63], b"one");
        let two = leaf(&[2; 63], b"two");
        let root = branch(&[(1, &one), (2, &two)], b"");
        let proof = vec![root.clone(), one];
        assert_eq!(walk(&proof, &key(1)), Ok(Some(b"one".to_vec())));
        assert_eq!(walk(std::slice::from_ref(&root), &key(3)), Ok(None));
        // The leaf of another key proves absence.
        assert_eq!(walk(&[root, two], &key(2).map(|b| b ^ 1)), Ok(None));
        let deep = deep_trie(&leaf(&[2; 4], b"w"));
        assert_eq!(
            walk(&deep, &key(1)),
            Ok(Some(b"twenty bytes of value".to_vec()))
        );
        // An embedded extension into an embedded branch.
        let sub = branch(&[(3, &leaf(&[3], b"x")), (4, &leaf(&[4], b"y"))], b"");
        let deep = deep_trie(&extension(&[2; 2], &sub));
        assert_eq!(
            walk(&deep, &key(1)),
            Ok(Some(b"twenty bytes of value".to_vec()))
        );
        // A diverging extension proves absence.
        assert_eq!(walk(&deep[..1], &key(3)), Ok(None));
    }

    #[test]
    fn a_leaf_must_end_exactly_at_the_last_nibble_of_the_key() {
        // Before: a leaf running past the key (65 nibbles deep) read as absence.
        for (len, end) in [(64, 65), (62, 63)] {
            let bad = leaf(&[1; 64][..len], b"one");
            let proof = vec![branch(&[(1, &bad), (2, &leaf(&[2; 63], b"two"))], b""), bad];
            refused(
                walk(&proof, &key(1)),
                1,
                &format!(
                    "leaf at nibble 1 has a {len}-nibble path ending at nibble {end}, not at nibble 64"
                ),
            );
        }
    }

    #[test]
    fn a_branch_carrying_a_value_is_refused() {
        // Before: accepted, its value ignored.
        let one = leaf(&[1; 63], b"one");
        let root = branch(&[(1, &one), (2, &leaf(&[2; 63], b"two"))], b"x");
        refused(
            walk(&[root, one], &key(1)),
            0,
            "branch node carries a 1-byte value",
        );
        // Nor can a branch sit at the key's end: an extension must stop before it.
        let end = branch(&[(1, &leaf(&[], b"a")), (2, &leaf(&[], b"b"))], b"");
        let root = extension(&[1; 64], &end);
        refused(
            walk(&[root, end], &key(1)),
            0,
            "64-nibble path ending at nibble 64: it must end before nibble 64",
        );
    }

    #[test]
    fn an_embedded_sibling_must_be_a_well_formed_node() {
        // Before: a sibling of the path embedded in its parent was not looked at.
        for (sibling, why) in [
            // RLP fine, not a node: an even path with a padding nibble.
            (
                vec![0xc2, 0x01, 0x02],
                "child 2: embedded node: even compact path",
            ),
            // A leaf that ends one nibble short.
            (
                leaf(&[2; 3], b"w"),
                "child 2: embedded node: leaf at nibble 60 has a 3-nibble path ending at nibble 63",
            ),
            // An extension into a leaf.
            (
                extension(&[2; 2], &leaf(&[2; 2], b"w")),
                "child 2: embedded node: child: embedded node is a leaf, must be a branch",
            ),
            // Deeper down, a leaf that runs past the key.
            (
                extension(&[2; 2], &branch(&[(1, &leaf(&[2; 2], b"w"))], b"")),
                "child 2: embedded node: child: embedded node: child 1: embedded node: leaf at \
                 nibble 63 has a 2-nibble path ending at nibble 65",
            ),
            (
                vec![0xc3, 0x80, 0x80, 0x80],
                "child 2: embedded node: node has 3 items",
            ),
        ] {
            refused(walk(&deep_trie(&sibling), &key(1)), 1, why);
        }
    }

    #[test]
    fn an_extension_leads_to_a_branch() {
        let l = leaf(&[1; 54], b"a value long enough to be hashed");
        assert!(l.len() >= 32);
        refused(
            walk(&[extension(&[1; 10], &l), l], &key(1)),
            1,
            "the child of an extension is a leaf, must be a branch",
        );
        let inner = extension(&[1; 2], &branch(&[(1, &leaf(&[1; 50], b"v"))], b""));
        refused(
            walk(&[extension(&[1; 10], &inner), inner], &key(1)),
            1,
            "the child of an extension is an extension",
        );
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
