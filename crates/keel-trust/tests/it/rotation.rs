use keel_trust::{Error, TrustPolicy, accept_rotation, verify_chain, verify_manifest};

use crate::common::*;

fn rotate(
    from: &TrustPolicy,
    to: &[&keel_trust::SecretKey],
    m: u32,
    signers: &[&keel_trust::SecretKey],
) -> TrustPolicy {
    let mut next = from.successor(&pubs(to), &[], &params(m)).unwrap();
    for k in signers {
        next.sign(k).unwrap();
    }
    next
}

#[test]
fn valid_chain() {
    let (a, b, c, d, e) = (key(1), key(2), key(3), key(4), key(5));
    let root = policy(2, &[&a, &b, &c]);
    // 2 of old {a,b,c} and 2 of new {c,d,e}
    let p2 = rotate(&root, &[&c, &d, &e], 2, &[&a, &b, &d, &e]);
    let p3 = rotate(&p2, &[&d, &e], 1, &[&d, &e]);
    let ring = verify_chain(&root, &[p2.clone(), p3]).unwrap();
    assert_eq!(ring.policy.serial, 3);
    // Manifests now need the new keys.
    assert!(verify_manifest(&signed(1, &[&d]), &ring, &opts()).valid);
    assert!(!verify_manifest(&signed(1, &[&a, &b]), &ring, &opts()).valid);
    // A policy file round-trips.
    let back = TrustPolicy::parse(&serde_json::to_vec_pretty(&p2).unwrap()).unwrap();
    assert_eq!(back, p2);
}

#[test]
fn missing_old_threshold_signature() {
    let (a, b, c, d) = (key(1), key(2), key(3), key(4));
    let root = policy(2, &[&a, &b, &c]);
    let p2 = rotate(&root, &[&d], 1, &[&a, &d]);
    let err = accept_rotation(&root, &p2).unwrap_err();
    let s = err.to_string();
    assert!(matches!(err, Error::RotationRejected { serial: 2, .. }));
    assert!(
        s.contains("signed by 1 of the current policy's keys, needs 2"),
        "{s}"
    );
    assert!(!s.contains("of its own keys"), "{s}");
}

#[test]
fn missing_new_threshold_signature() {
    let (a, b, d, e) = (key(1), key(2), key(4), key(5));
    let root = policy(1, &[&a, &b]);
    let p2 = rotate(&root, &[&d, &e], 2, &[&a, &d]);
    let s = accept_rotation(&root, &p2).unwrap_err().to_string();
    assert!(s.contains("signed by 1 of its own keys, needs 2"), "{s}");
    assert!(s.contains("k5"), "names the missing key: {s}");
}

#[test]
fn skipped_version() {
    let (a, b) = (key(1), key(2));
    let root = policy(1, &[&a]);
    let p2 = rotate(&root, &[&b], 1, &[&a, &b]);
    let mut p3 = rotate(&p2, &[&b], 1, &[]);
    p3.serial = 4;
    p3.sign(&b).unwrap();
    let s = verify_chain(&root, &[p2, p3]).unwrap_err().to_string();
    assert!(s.contains("skips versions: expected 3"), "{s}");
}

#[test]
fn not_chained_to_current_policy() {
    let (a, b) = (key(1), key(2));
    let root = policy(1, &[&a]);
    let other = policy(1, &[&b]);
    let p2 = rotate(&other, &[&b], 1, &[&a, &b]);
    let s = accept_rotation(&root, &p2).unwrap_err().to_string();
    assert!(s.contains("previous is"), "{s}");
}

#[test]
fn revoked_old_key_cannot_approve_its_own_replacement() {
    let (a, b, c) = (key(1), key(2), key(3));
    let root = policy(1, &[&a, &b]);
    // Only a (being revoked) signs for the old side: not enough.
    let mut p2 = root
        .successor(&pubs(&[&b, &c]), &[a.id()], &params(1))
        .unwrap();
    p2.sign(&a).unwrap();
    p2.sign(&c).unwrap();
    let s = accept_rotation(&root, &p2).unwrap_err().to_string();
    assert!(
        s.contains("signed by 0 of the current policy's keys"),
        "{s}"
    );
    p2.sign(&b).unwrap();
    accept_rotation(&root, &p2).unwrap();
}

#[test]
fn resign_after_rotation() {
    let (a, b) = (key(1), key(2));
    let root = policy(1, &[&a]);
    let p2 = rotate(&root, &[&b], 1, &[&a, &b]);
    let ring = accept_rotation(&root, &p2).unwrap();
    let mut m = signed(1, &[&a]);
    assert!(!verify_manifest(&m, &ring, &opts()).valid);
    m.clear_signatures();
    m.sign(&b).unwrap();
    let r = verify_manifest(&m, &ring, &opts());
    assert!(r.valid, "{:?}", r.problems);
}
