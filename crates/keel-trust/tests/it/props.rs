//! Property: any single-byte change to a signed manifest's signed content is detected.

use keel_trust::{Entry, Manifest, ManifestParams, Sha256Hex, verify_manifest};
use proptest::prelude::*;

use crate::common::*;

fn arb_manifest() -> impl Strategy<Value = Manifest> {
    let entry = (
        "[a-z0-9]{1,8}(/[a-z0-9_-][a-z0-9._-]{0,7}){0,2}",
        "Qm[1-9A-HJ-NP-Za-km-z]{10,44}",
        0u64..1 << 40,
        any::<Option<[u8; 32]>>(),
    )
        .prop_map(|(path, cid, size, sha)| Entry {
            path,
            cid,
            size,
            sha256: sha.map(Sha256Hex),
        });
    (
        "[ -~]{1,20}",
        0u64..1 << 50,
        proptest::option::of("[ -~]{0,12}"),
        proptest::collection::vec(entry, 0..6),
        proptest::collection::btree_map(
            "[a-z]{1,6}",
            prop_oneof![
                any::<i32>().prop_map(serde_json::Value::from),
                "[ -~]{0,8}".prop_map(serde_json::Value::from)
            ],
            0..4,
        ),
    )
        .prop_map(|(name, version, label, entries, meta)| {
            let mut entries = entries;
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            entries.dedup_by(|a, b| a.path == b.path);
            Manifest::new(
                ManifestParams {
                    name,
                    version,
                    version_label: label,
                    created: t0(),
                    valid_for: std::time::Duration::from_secs(86_400),
                    previous: None,
                    cid_profile: "p".into(),
                    metadata: meta.into_iter().collect(),
                },
                entries,
            )
            .unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_single_byte_change_to_signed_content_is_detected(m in arb_manifest(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let a = key(1);
        let ring = ring(1, &[&a]);
        let mut m = m;
        m.sign(&a).unwrap();
        prop_assert!(verify_manifest(&m, &ring, &opts()).valid);

        // Rebuild the document from the signed canonical bytes with one byte changed.
        let mut canon = m.canonical_bytes().unwrap();
        let i = pos.index(canon.len());
        prop_assume!(canon[i] != byte);
        canon[i] = byte;
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&canon) else { return Ok(()) }; // unparseable: rejected
        v["signatures"] = serde_json::to_value(&m.signatures).unwrap();
        let Ok(changed) = Manifest::parse(&serde_json::to_vec(&v).unwrap()) else { return Ok(()) }; // schema error: rejected
        let r = verify_manifest(&changed, &ring, &opts());
        prop_assert!(!r.valid, "byte {i} -> {byte:#04x} went unnoticed");
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::parse(&bytes);
        let _ = keel_trust::EncryptedKey::parse(&bytes);
        let _ = keel_trust::TrustPolicy::parse(&bytes);
    }
}
