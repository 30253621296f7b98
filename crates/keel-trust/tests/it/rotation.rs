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

/// A rotation made by hand (fields edited after `successor`), then signed by both thresholds:
/// the signatures are all there, so only the rule under test can refuse it.
fn hand_made(
    from: &TrustPolicy,
    edit: impl FnOnce(&mut TrustPolicy),
    signers: &[&keel_trust::SecretKey],
) -> TrustPolicy {
    // Listed keys: the signers that `from` does not revoke (the edit may list more).
    let keys: Vec<&keel_trust::SecretKey> = signers
        .iter()
        .copied()
        .filter(|k| !from.revoked.contains(&k.id().to_string()))
        .collect();
    let mut next = from.successor(&pubs(&keys), &[], &params(1)).unwrap();
    edit(&mut next);
    for k in signers {
        next.sign(k).unwrap();
    }
    next
}

#[test]
fn a_rotation_cannot_un_revoke_a_key() {
    let (a, b, c) = (key(1), key(2), key(3));
    let root = policy(1, &[&a, &b, &c]);
    let mut p2 = root
        .successor(&pubs(&[&b, &c]), &[a.id()], &params(1))
        .unwrap();
    p2.sign(&b).unwrap();
    let ring = accept_rotation(&root, &p2).unwrap();
    assert!(!verify_manifest(&signed(1, &[&a]), &ring, &opts()).valid);

    // Serial 3 drops the revocation and lists a again: fully signed by b, c and a.
    let p3 = hand_made(
        &p2,
        |p| {
            p.revoked.clear();
            p.keys.push(policy(1, &[&a]).keys[0].clone());
        },
        &[&b, &c, &a],
    );
    let err = accept_rotation(&p2, &p3).unwrap_err();
    let s = err.to_string();
    assert!(
        matches!(err, Error::RotationRejected { serial: 3, .. }),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "un-revokes key {}: revocations are permanent, a revoked key must stay in `revoked`",
            a.id()
        )),
        "{s}"
    );
    // Dropping the revocation alone (a not listed again) is refused just the same.
    let p3 = hand_made(&p2, |p| p.revoked.clear(), &[&b, &c]);
    let s = verify_chain(&root, &[p2.clone(), p3])
        .unwrap_err()
        .to_string();
    assert!(s.contains("un-revokes key"), "{s}");
    // Keeping it (and revoking more) is fine.
    let p3 = hand_made(&p2, |_| {}, &[&b, &c]);
    let ring = verify_chain(&root, &[p2, p3]).unwrap();
    assert!(ring.policy.revoked.contains(&a.id().to_string()));
}

#[test]
fn a_rotation_cannot_lower_min_version() {
    let (a, b) = (key(1), key(2));
    let mut p = params(1);
    p.min_version = 8;
    let mut root = TrustPolicy::new_root(&pubs(&[&a]), &p).unwrap();
    root.sign(&a).unwrap();
    let p2 = hand_made(&root, |p| p.min_version = 1, &[&a, &b]);
    let s = accept_rotation(&root, &p2).unwrap_err().to_string();
    assert!(
        s.contains("lowers min_version from 8 to 1: the version floor never goes down"),
        "{s}"
    );
    // Raised or kept: accepted.
    for v in [8, 9] {
        let p2 = hand_made(&root, |p| p.min_version = v, &[&a, &b]);
        assert_eq!(accept_rotation(&root, &p2).unwrap().policy.min_version, v);
    }
}

#[test]
fn max_age_may_be_shortened_never_dropped_or_lengthened() {
    let (a, b) = (key(1), key(2));
    let root = policy(1, &[&a]); // max age 365 days
    let year = 365 * 86_400;

    let dropped = hand_made(&root, |p| p.max_age_seconds = None, &[&a, &b]);
    let s = accept_rotation(&root, &dropped).unwrap_err().to_string();
    assert!(
        s.contains(
            "drops max_age_seconds (was 31536000s (365d)): the maximum age may be shortened, never removed"
        ),
        "{s}"
    );
    let longer = hand_made(&root, |p| p.max_age_seconds = Some(2 * year), &[&a, &b]);
    let s = accept_rotation(&root, &longer).unwrap_err().to_string();
    assert!(
        s.contains("lengthens max_age_seconds from 31536000s (365d) to 63072000s (730d)"),
        "{s}"
    );
    let shorter = hand_made(&root, |p| p.max_age_seconds = Some(30 * 86_400), &[&a, &b]);
    accept_rotation(&root, &shorter).unwrap();

    // A root without a maximum age may gain one.
    let mut p = params(1);
    p.max_age = None;
    let open = TrustPolicy::new_root(&pubs(&[&a]), &p).unwrap();
    let added = hand_made(&open, |p| p.max_age_seconds = Some(year), &[&a, &b]);
    accept_rotation(&open, &added).unwrap();

    // successor keeps the current maximum age when none is given, and refuses a longer one.
    let mut p = params(1);
    p.max_age = None;
    let kept = root.successor(&pubs(&[&b]), &[], &p).unwrap();
    assert_eq!(kept.max_age_seconds, Some(year));
    p.max_age = Some(std::time::Duration::from_secs(2 * year));
    let err = root.successor(&pubs(&[&b]), &[], &p).unwrap_err();
    assert!(
        matches!(err, Error::RotationRejected { serial: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("lengthens max_age_seconds"),
        "{err}"
    );
}

#[test]
fn every_loosened_rule_is_listed() {
    let (a, b) = (key(1), key(2));
    let mut p = params(1);
    p.min_version = 3;
    let root = TrustPolicy::new_root(&pubs(&[&a, &b]), &p).unwrap();
    let mut p2 = root.successor(&pubs(&[&a]), &[b.id()], &params(1)).unwrap();
    p2.sign(&a).unwrap();
    accept_rotation(&root, &p2).unwrap();
    let p3 = hand_made(
        &p2,
        |p| {
            p.revoked.clear();
            p.min_version = 0;
            p.max_age_seconds = None;
        },
        &[&a],
    );
    let found = keel_trust::loosened_rules(&p2, &p3);
    assert_eq!(found.len(), 3, "{found:#?}");
    let changes = keel_trust::RotationChanges::between(&p2, &p3).unwrap();
    assert_eq!(changes.refused, found);
    assert_eq!(changes.min_version, (3, 0));
    assert_eq!(changes.max_age_seconds, (Some(365 * 86_400), None));
    let text = changes.to_string();
    assert!(text.contains("min_version    3 → 0 (LOWERED)"), "{text}");
    assert!(text.contains("(REMOVED)"), "{text}");
    assert!(text.contains("REFUSED: un-revokes key"), "{text}");
}

#[test]
fn rotation_changes_name_what_a_signer_approves() {
    let (a, b, c, d) = (key(1), key(2), key(3), key(4));
    let root = policy(2, &[&a, &b, &c]);
    let mut p = params(2);
    p.min_version = 8;
    p.max_age = Some(std::time::Duration::from_secs(90 * 86_400));
    let p2 = root.successor(&pubs(&[&b, &d]), &[a.id()], &p).unwrap();
    let ch = keel_trust::RotationChanges::between(&root, &p2).unwrap();
    assert_eq!(ch.serial, (1, 2));
    assert_eq!(ch.threshold, (2, 2));
    assert_eq!(ch.key_count, (3, 2));
    assert_eq!(ch.keys_added, [format!("k4 ({})", d.id())]);
    assert_eq!(
        ch.keys_removed,
        [
            format!("k1 ({}), revoked", a.id()),
            format!(
                "k3 ({}), not revoked (a later rotation may trust it again)",
                c.id()
            )
        ]
    );
    assert_eq!(ch.revoked_added, [format!("k1 ({})", a.id())]);
    assert_eq!(ch.min_version, (0, 8));
    assert_eq!(ch.max_age_seconds, (Some(365 * 86_400), Some(90 * 86_400)));
    assert!(ch.refused.is_empty(), "{:?}", ch.refused);
    let text = ch.to_string();
    assert!(text.contains("threshold      2 of 3 → 2 of 2\n"), "{text}");
    assert!(text.contains("min_version    0 → 8 (raised)"), "{text}");
    assert!(
        text.contains("max_age        31536000s (365d) → 7776000s (90d) (shortened)"),
        "{text}"
    );
    assert!(!text.contains("REFUSED"), "{text}");
}
