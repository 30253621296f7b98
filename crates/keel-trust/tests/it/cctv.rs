//! Strict Ed25519 against all 914 C2SP/CCTV edge-case vectors: every flagged vector (small-order
//! or mixed-order key or R, non-canonical encodings, a low-order residue, a k that depends on the
//! re-encoding) must be rejected, and the unflagged one (an ordinary valid signature) accepted.
//! Non-canonical S (malleability), which CCTV does not cover, is checked separately.

use ed25519_dalek::VerifyingKey;
use keel_trust::key::{parse_public_key, verify_strict};

/// Vectors in `ed25519/ed25519vectors.json` at the pinned CCTV commit.
const CCTV_VECTORS: usize = 914;

#[derive(serde::Deserialize)]
struct Vectors {
    source: String,
    vectors: Vec<Vector>,
}

#[derive(serde::Deserialize)]
struct Vector {
    number: u32,
    key: String,
    sig: String,
    msg: String,
    /// `null` in the file for a vector without flags.
    flags: Option<Vec<String>>,
}

#[test]
fn cctv_vectors_flagged_rejected_unflagged_accepted() {
    let v: Vectors =
        serde_json::from_str(include_str!("fixtures/cctv_ed25519_vectors.json")).unwrap();
    assert!(v.source.contains("C2SP/CCTV"));
    assert!(v.source.contains("all 914 vectors"));
    assert_eq!(v.vectors.len(), CCTV_VECTORS);
    let mut flags = std::collections::BTreeSet::new();
    let (mut checked, mut rejected, mut accepted) = (0, 0, 0);
    for (i, t) in v.vectors.iter().enumerate() {
        assert_eq!(t.number as usize, i, "vectors are numbered consecutively");
        let t_flags = t.flags.as_deref().unwrap_or_default();
        flags.extend(t_flags.iter().cloned());
        let key: [u8; 32] = hex::decode(&t.key).unwrap().try_into().unwrap();
        let sig: [u8; 64] = hex::decode(&t.sig).unwrap().try_into().unwrap();
        if t_flags.is_empty() {
            // An ordinary signature under an ordinary key: strictness must not cost validity.
            let vk = parse_public_key(&t.key)
                .unwrap_or_else(|e| panic!("vector {}: unflagged key refused: {e}", t.number));
            assert!(
                verify_strict(&vk, t.msg.as_bytes(), &sig),
                "vector {} (no flags) rejected",
                t.number
            );
            accepted += 1;
        } else {
            // Keys with a low-order component or a non-canonical encoding are refused when a
            // policy is loaded...
            let bad_key = t_flags.iter().any(|f| f.ends_with("_A"));
            if bad_key {
                assert!(
                    parse_public_key(&t.key).is_err(),
                    "vector {} key accepted",
                    t.number
                );
            }
            // ...and every flagged signature is refused, also under keys that are fine in
            // themselves.
            match VerifyingKey::from_bytes(&key) {
                Ok(vk) => assert!(
                    !verify_strict(&vk, t.msg.as_bytes(), &sig),
                    "vector {} verified (flags {t_flags:?})",
                    t.number
                ),
                Err(_) => assert!(
                    bad_key,
                    "vector {}: a key without _A flags should decode",
                    t.number
                ),
            }
            rejected += 1;
        }
        checked += 1;
    }
    assert_eq!(checked, CCTV_VECTORS, "every vector was checked");
    assert_eq!(rejected + accepted, CCTV_VECTORS);
    assert_eq!(
        accepted, 1,
        "CCTV has exactly one unflagged vector (number 305)"
    );
    assert_eq!(
        flags.len(),
        8,
        "every CCTV flag class is exercised: {flags:?}"
    );
}

#[test]
fn malleable_signature_with_s_plus_l_is_rejected() {
    let k = crate::common::key(9);
    let msg = b"keel";
    let sig = k.sign(msg);
    assert!(verify_strict(&k.public().key, msg, &sig));
    // S' = S + L (little-endian), the classic malleability: same point equation, non-canonical S.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut s = [0u8; 32];
    s.copy_from_slice(&sig[32..]);
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        s[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 256 bits");
    let mut mall = sig;
    mall[32..].copy_from_slice(&s);
    assert!(!verify_strict(&k.public().key, msg, &mall));
    // S with the top bits set is also rejected.
    let mut high = sig;
    high[63] |= 0xe0;
    assert!(!verify_strict(&k.public().key, msg, &high));
}
