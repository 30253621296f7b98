//! Fuzz manifest, key file and trust policy parsing: never panic, and whatever parses must
//! encode canonically without panicking and survive a round trip with the same digest; a
//! parsed policy's review (what `keel trust sign` shows) never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = keel_trust::Manifest::parse(data) {
        let _ = m.schema_problems();
        if let Ok(d) = m.digest() {
            let json = m.to_json().expect("a parsed manifest serializes");
            let back = keel_trust::Manifest::parse(&json).expect("a serialized manifest parses");
            assert_eq!(back.digest().ok(), Some(d), "round trip changed the digest");
        }
    }
    if let Ok(k) = keel_trust::EncryptedKey::parse(data) {
        // Only cheap parameters are worth trying; decrypt must fail cleanly, never panic.
        if k.kdf.params.m_cost_kib <= 64 && k.kdf.params.t_cost <= 1 {
            let _ = k.decrypt(b"password");
        }
    }
    let _ = keel_trust::PublicKeyFile::parse(data);
    if let Ok(p) = keel_trust::TrustPolicy::parse(data) {
        let _ = p.digest();
        // What a signer is shown; a policy loosens nothing relative to itself.
        let _ = keel_trust::PolicySummary::of(&p).to_string();
        assert!(keel_trust::loosened_rules(&p, &p).is_empty());
        if let Ok(c) = keel_trust::RotationChanges::between(&p, &p) {
            let _ = c.to_string();
            assert!(c.keys_added.is_empty() && c.keys_removed.is_empty());
        }
    }
});
