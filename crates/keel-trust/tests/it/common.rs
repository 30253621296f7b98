use std::time::{Duration, SystemTime};

use keel_trust::{
    Entry, KdfParams, Keyring, Manifest, ManifestParams, PolicyParams, PublicKey, SecretKey,
    Sha256Hex, TrustPolicy, VerifyOptions,
};

pub(crate) const FAST: KdfParams = KdfParams::INSECURE_FOR_TESTS;

/// 2026-12-01T00:00:00Z
pub(crate) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_083_200)
}

pub(crate) fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&format!("k{n}"), &[n; 32])
}

pub(crate) fn pubs(keys: &[&SecretKey]) -> Vec<PublicKey> {
    keys.iter().map(|k| k.public()).collect()
}

pub(crate) fn policy(threshold: u32, keys: &[&SecretKey]) -> TrustPolicy {
    TrustPolicy::new_root(&pubs(keys), &params(threshold)).unwrap()
}

pub(crate) fn params(threshold: u32) -> PolicyParams {
    PolicyParams {
        threshold,
        min_version: 0,
        max_age: Some(Duration::from_secs(365 * 86_400)),
        now: t0(),
    }
}

pub(crate) fn ring(threshold: u32, keys: &[&SecretKey]) -> Keyring {
    policy(threshold, keys).keyring().unwrap()
}

pub(crate) fn entries(n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            path: format!("data/part-{i:06}.bin"),
            cid: format!("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd{i}"),
            size: 1000 + i as u64,
            sha256: Some(Sha256Hex([(i % 251) as u8; 32])),
        })
        .collect()
}

pub(crate) fn manifest(version: u64) -> Manifest {
    Manifest::new(
        ManifestParams {
            name: "dataset".into(),
            version,
            version_label: Some(format!("v{version}")),
            created: t0(),
            valid_for: Duration::from_secs(90 * 86_400),
            previous: None,
            cid_profile: "unixfs-v1/cidv0/sha2-256/size-262144/balanced".into(),
            metadata: serde_json::Map::new(),
        },
        entries(3),
    )
    .unwrap()
}

pub(crate) fn signed(version: u64, keys: &[&SecretKey]) -> Manifest {
    let mut m = manifest(version);
    for k in keys {
        assert!(m.sign(k).unwrap());
    }
    m
}

pub(crate) fn opts() -> VerifyOptions {
    VerifyOptions {
        now: t0() + Duration::from_secs(3600),
        max_clock_skew: Duration::from_secs(300),
    }
}

pub(crate) fn codes(r: &keel_trust::Report) -> Vec<String> {
    let v = serde_json::to_value(r).unwrap();
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}
