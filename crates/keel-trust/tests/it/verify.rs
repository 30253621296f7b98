use std::time::Duration;

use keel_trust::{Error, Manifest, PolicyParams, SignatureStatus, TrustPolicy, verify_manifest};

use crate::common::*;

#[test]
fn sign_verify_round_trip_through_json() {
    let (a, b, c) = (key(1), key(2), key(3));
    let ring = ring(2, &[&a, &b, &c]);
    let m = signed(1, &[&a, &c]);
    let back = Manifest::parse(&m.to_json().unwrap()).unwrap();
    let r = verify_manifest(&back, &ring, &opts());
    assert!(r.valid, "{:?}", r.problems);
    assert_eq!(r.valid_signatures, 2);
    assert!(r.warnings.is_empty());
}

#[test]
fn signing_twice_adds_nothing() {
    let a = key(1);
    let mut m = signed(1, &[&a]);
    assert!(!m.sign(&a).unwrap());
    assert_eq!(m.signatures.len(), 1);
}

#[test]
fn whitespace_and_key_order_do_not_matter() {
    let a = key(1);
    let ring = ring(1, &[&a]);
    let m = signed(1, &[&a]);
    let mut v: serde_json::Value = serde_json::to_value(&m).unwrap();
    // Rebuild the top-level object in reverse key order, compact.
    let obj = v.as_object_mut().unwrap();
    let mut keys: Vec<String> = obj.keys().cloned().collect();
    keys.reverse();
    let body: Vec<String> = keys
        .iter()
        .map(|k| format!("{}  :\n {}", serde_json::to_string(k).unwrap(), obj[k]))
        .collect();
    let text = format!("{{ {} }}", body.join(" ,\n"));
    let back = Manifest::parse(text.as_bytes()).unwrap();
    assert!(verify_manifest(&back, &ring, &opts()).valid);
}

#[test]
fn threshold_counts_unique_trusted_keys_only() {
    let (a, b, c, x) = (key(1), key(2), key(3), key(4));
    let ring = ring(2, &[&a, &b, &c]);
    // Duplicate of a's signature counts once; x is not trusted.
    let mut m = signed(1, &[&a, &x]);
    let dup = m.signatures[0].clone();
    m.signatures.push(dup);
    let r = verify_manifest(&m, &ring, &opts());
    assert!(!r.valid);
    assert_eq!(r.valid_signatures, 1);
    assert_eq!(codes(&r), ["below_threshold"]);
    let statuses: Vec<SignatureStatus> = r.signatures.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [
            SignatureStatus::Valid,
            SignatureStatus::UnknownKey,
            SignatureStatus::Duplicate
        ]
    );
    let msg = &r.problems[0].message;
    assert!(
        msg.contains("1 valid")
            && msg.contains("2 required")
            && msg.contains("k2")
            && msg.contains("k3"),
        "{msg}"
    );
    // A second trusted key reaches the threshold even with the unknown key's signature present.
    m.sign(&b).unwrap();
    let r = verify_manifest(&m, &ring, &opts());
    assert!(r.valid, "{:?}", r.problems);
    assert_eq!(r.warnings.len(), 2);
}

type Tamper = Box<dyn Fn(&mut Manifest)>;

#[test]
fn tampered_entries_are_detected() {
    let a = key(1);
    let ring = ring(1, &[&a]);
    let m = signed(1, &[&a]);
    let cases: Vec<Tamper> = vec![
        Box::new(|m| m.entries[0].cid.push('x')),
        Box::new(|m| m.entries[1].size += 1),
        Box::new(|m| m.entries.swap(0, 1)),
        Box::new(|m| m.entries.pop().map(drop).unwrap_or_default()),
        Box::new(|m| m.version_label = None),
        Box::new(|m| {
            m.metadata.0.insert("added".into(), 1.into());
        }),
    ];
    for (i, f) in cases.iter().enumerate() {
        let mut t = m.clone();
        f(&mut t);
        let r = verify_manifest(&t, &ring, &opts());
        assert_eq!(
            codes(&r),
            ["invalid_signature", "below_threshold"],
            "case {i}"
        );
    }
}

#[test]
fn added_unknown_field_and_truncation_are_refused() {
    let a = key(1);
    let text = String::from_utf8(signed(1, &[&a]).to_json().unwrap()).unwrap();
    let added = text.replacen('{', "{\n  \"approved_by\": \"mallory\",", 1);
    let err = Manifest::parse(added.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `approved_by`"),
        "{err}"
    );
    let dup = text.replacen('{', "{\n  \"version\": 99,", 1);
    assert!(
        Manifest::parse(dup.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("duplicate field")
    );
    let trunc = &text[..text.len() / 2];
    assert!(matches!(
        Manifest::parse(trunc.as_bytes()),
        Err(Error::Truncated { .. })
    ));
    let float = text.replace("\"size\":1000", "\"size\":1000.0");
    assert_ne!(float, text);
    assert!(Manifest::parse(float.as_bytes()).is_err());
    let v2 = text.replace("\"schema_version\": 1", "\"schema_version\": 2");
    assert_ne!(v2, text);
    assert!(matches!(
        Manifest::parse(v2.as_bytes()),
        Err(Error::UnsupportedFormat { .. })
    ));
}

#[test]
fn huge_manifests_are_bounded() {
    let big = vec![b' '; (keel_trust::manifest::MAX_MANIFEST_BYTES + 1) as usize];
    assert!(matches!(Manifest::parse(&big), Err(Error::TooLarge { .. })));
}

#[test]
fn expired_future_dated_and_too_old() {
    let a = key(1);
    let ring = ring(1, &[&a]);
    let m = signed(1, &[&a]);
    let mut o = opts();
    o.now = t0() + Duration::from_secs(91 * 86_400);
    assert_eq!(codes(&verify_manifest(&m, &ring, &o)), ["expired"]);
    o.now = t0() - Duration::from_secs(301);
    assert_eq!(codes(&verify_manifest(&m, &ring, &o)), ["future_dated"]);
    o.now = t0() - Duration::from_secs(299);
    assert!(verify_manifest(&m, &ring, &o).valid);
    // max_age shorter than the validity period.
    let mut p = params(1);
    p.max_age = Some(Duration::from_secs(86_400));
    let short = TrustPolicy::new_root(&pubs(&[&a]), &p)
        .unwrap()
        .keyring()
        .unwrap();
    o.now = t0() + Duration::from_secs(2 * 86_400);
    assert_eq!(codes(&verify_manifest(&m, &short, &o)), ["too_old"]);
}

#[test]
fn min_version_floor() {
    let a = key(1);
    let p = PolicyParams {
        min_version: 5,
        ..params(1)
    };
    let ring = TrustPolicy::new_root(&pubs(&[&a]), &p)
        .unwrap()
        .keyring()
        .unwrap();
    let r = verify_manifest(&signed(4, &[&a]), &ring, &opts());
    assert_eq!(codes(&r), ["below_min_version"]);
    assert!(r.problems[0].message.contains("rolled back"));
    assert!(verify_manifest(&signed(5, &[&a]), &ring, &opts()).valid);
}

#[test]
fn revoked_key_signatures_do_not_count() {
    let (a, b) = (key(1), key(2));
    let root = policy(1, &[&a, &b]);
    let mut next = root.successor(&pubs(&[&b]), &[a.id()], &params(1)).unwrap();
    next.sign(&a).unwrap();
    next.sign(&b).unwrap();
    let ring = keel_trust::accept_rotation(&root, &next).unwrap();
    let r = verify_manifest(&signed(1, &[&a]), &ring, &opts());
    assert_eq!(codes(&r), ["below_threshold"]);
    assert_eq!(r.signatures[0].status, SignatureStatus::Revoked);
    assert!(r.warnings[0].message.contains("revoked"));
}

#[test]
fn bad_policies_are_refused() {
    let (a, b) = (key(1), key(2));
    let zero = TrustPolicy::new_root(&pubs(&[&a]), &params(0)).unwrap_err();
    assert!(zero.to_string().contains("M = 0"), "{zero}");
    let over = TrustPolicy::new_root(&pubs(&[&a, &b]), &params(3)).unwrap_err();
    assert!(
        over.to_string().contains("M = 3 is more than the N = 2"),
        "{over}"
    );
    let dup = TrustPolicy::new_root(&pubs(&[&a, &a]), &params(1)).unwrap_err();
    assert!(dup.to_string().contains("listed twice"), "{dup}");
    // Edited on disk: M > N.
    let mut p = policy(1, &[&a]);
    p.threshold = 2;
    let text = serde_json::to_vec(&p).unwrap();
    assert!(
        TrustPolicy::parse(&text)
            .unwrap_err()
            .to_string()
            .contains("more than")
    );
}

#[test]
fn every_problem_has_its_own_message() {
    let a = key(1);
    let ring = ring(1, &[&a]);
    let mut m = signed(1, &[&a]);
    m.expires = keel_trust::Timestamp::new(t0() - Duration::from_secs(7200));
    let mut o = opts();
    o.now = t0() - Duration::from_secs(3600);
    let r = verify_manifest(&m, &ring, &o);
    let c = codes(&r);
    for want in [
        "invalid_manifest",
        "invalid_signature",
        "below_threshold",
        "expired",
        "future_dated",
    ] {
        assert!(c.contains(&want.to_owned()), "{want} missing from {c:?}");
    }
    let msgs: std::collections::HashSet<&str> =
        r.problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(msgs.len(), r.problems.len());
}
