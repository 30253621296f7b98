//! Strict Ed25519: the C2SP/CCTV edge-case vectors must all be rejected, as must
//! non-canonical S (malleability) which CCTV does not cover.

use ed25519_dalek::VerifyingKey;
use keel_trust::key::{parse_public_key, verify_strict};

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
    flags: Vec<String>,
}

#[test]
fn cctv_vectors_are_all_rejected() {
    let v: Vectors =
        serde_json::from_str(include_str!("fixtures/cctv_ed25519_vectors.json")).unwrap();
    assert!(v.source.contains("C2SP/CCTV"));
    assert_eq!(v.vectors.len(), 83);
    let mut flags = std::collections::BTreeSet::new();
    let mut checked = 0;
    for t in &v.vectors {
        flags.extend(t.flags.iter().cloned());
        let key: [u8; 32] = hex::decode(&t.key).unwrap().try_into().unwrap();
        let sig: [u8; 64] = hex::decode(&t.sig).unwrap().try_into().unwrap();
        // Keys with a low-order component are refused when a policy is loaded...
        let bad_key = t.flags.iter().any(|f| f.ends_with("_A"));
        if bad_key {
            assert!(
                parse_public_key(&t.key).is_err(),
                "vector {} key accepted",
                t.number
            );
        }
        // ...and every signature is refused, also under keys that are fine in themselves.
        match VerifyingKey::from_bytes(&key) {
            Ok(vk) => assert!(
                !verify_strict(&vk, t.msg.as_bytes(), &sig),
                "vector {} verified",
                t.number
            ),
            Err(_) => assert!(
                bad_key,
                "vector {}: a key without _A flags should decode",
                t.number
            ),
        }
        checked += 1;
    }
    assert_eq!(checked, 83);
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
