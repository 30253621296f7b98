//! Signature lists shared by manifests and trust policies, and how they are counted.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::canonical::{from_hex, to_hex};
use crate::key::{KeyId, PublicKey, SecretKey, verify_strict, verify_strict_checked_key};

/// One signature as stored in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// Fingerprint of the signing key (see [`KeyId`]).
    pub key_id: String,
    /// 64-byte Ed25519 signature, lowercase hex.
    pub sig: String,
}

/// What became of one signature during verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureStatus {
    /// Verifies under a trusted key; counts toward the threshold.
    Valid,
    /// By a trusted key but does not verify: the content changed after signing, or forgery.
    Invalid,
    /// By a key the policy does not list; does not count.
    UnknownKey,
    /// By a key the policy revoked; does not count.
    Revoked,
    /// A second signature by a key already seen; counts once.
    Duplicate,
    /// The key id or signature is not well-formed hex.
    Malformed,
}

/// One signature's verdict, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    /// Key id as written in the document.
    pub key_id: String,
    /// The key's name in the policy, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Verdict.
    pub status: SignatureStatus,
}

/// The domain-separated message for a document digest.
pub(crate) fn message(domain: &str, digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + 33);
    m.extend_from_slice(domain.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(digest);
    m
}

/// Adds `key`'s signature over `msg` unless a valid one is already present; drops stale ones.
pub(crate) fn add(sigs: &mut Vec<SignatureEntry>, key: &SecretKey, msg: &[u8]) -> bool {
    let public = key.public();
    let id = public.id.to_string();
    let already = sigs.iter().any(|s| {
        s.key_id == id && sig_bytes(&s.sig).is_some_and(|b| verify_strict(&public.key, msg, &b))
    });
    if already {
        return false;
    }
    sigs.retain(|s| s.key_id != id);
    sigs.push(SignatureEntry {
        key_id: id,
        sig: to_hex(&key.sign(msg)),
    });
    true
}

fn sig_bytes(s: &str) -> Option<[u8; 64]> {
    from_hex::<64>(s).ok()
}

/// The outcome of checking a signature list against a set of keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) reports: Vec<SignatureReport>,
    /// Distinct trusted keys with a valid signature.
    pub(crate) valid: HashSet<KeyId>,
}

/// Checks each signature; a key counts at most once.
pub(crate) fn tally(
    sigs: &[SignatureEntry],
    msg: &[u8],
    keys: &HashMap<KeyId, PublicKey>,
    revoked: &HashSet<KeyId>,
) -> Tally {
    let mut t = Tally::default();
    for s in sigs {
        let (status, name) = match s.key_id.parse::<KeyId>() {
            Err(_) => (SignatureStatus::Malformed, None),
            Ok(id) if revoked.contains(&id) => (SignatureStatus::Revoked, None),
            Ok(id) => match keys.get(&id) {
                None => (SignatureStatus::UnknownKey, None),
                Some(k) => {
                    let name = Some(k.name.clone());
                    match sig_bytes(&s.sig) {
                        None => (SignatureStatus::Malformed, name),
                        // Keys in a keyring passed parse_public_key.
                        Some(b) if verify_strict_checked_key(&k.key, msg, &b) => {
                            if t.valid.insert(id) {
                                (SignatureStatus::Valid, name)
                            } else {
                                (SignatureStatus::Duplicate, name)
                            }
                        }
                        Some(_) => (SignatureStatus::Invalid, name),
                    }
                }
            },
        };
        t.reports.push(SignatureReport {
            key_id: s.key_id.clone(),
            name,
            status,
        });
    }
    t
}
