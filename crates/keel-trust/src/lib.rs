//! # keel-trust: keys, signed manifests, M-of-N trust policies
//!
//! Datasets and models are published as versioned **manifests** listing content by CID.
//! This crate decides whether a manifest was approved by enough of the right people, is
//! current, and has not been rolled back or mixed with another release.
//!
//! ```text
//!  key        Ed25519 keys; private halves encrypted at rest (Argon2id + XChaCha20-Poly1305),
//!             files 0600, refused when group/world readable; key id = SHA-256(pk)[..16]
//!  canonical  RFC 8785 (JCS) for integer-only JSON: what is signed is independent of
//!             whitespace and key order
//!  manifest   schema v1: name, version (+label), created/expires, entries (path, cid, size,
//!             sha256?), previous, cid_profile, metadata, signatures; bounded parsing
//!  policy     trust.json: keys, threshold M of N, revoked keys, min_version, max_age;
//!             rotation = serial + 1, signed by M_old of the old keys and M_new of the new,
//!             and it may only tighten: revocations kept, floors never lowered
//!  review     what a signer approves, in words: a policy, or what a rotation changes
//!  verify     every reason a manifest is refused, as a Report (human text + JSON codes)
//!  state      anti-rollback state file: highest version (and its digest) per name
//!  content    directory listing for `manifest create`, and checking bytes against entries
//! ```
//!
//! Signatures never cover JSON text directly: each covers
//! `domain || "\n" || SHA-256(JCS(document without "signatures"))` with the domain
//! `keel-trust/manifest/v1` or `keel-trust/policy/v1`, and are checked with strict Ed25519
//! (canonical encodings, no small-order points). See `docs/trust.md` for the threat model.
//!
//! CIDs are computed by the caller (the `keel` binary passes the content importer), so this
//! crate does not depend on the content crate.

pub mod canonical;
mod content;
mod error;
mod fsutil;
pub mod key;
pub mod manifest;
pub mod policy;
mod review;
mod sig;
mod state;
mod verify;

pub use content::{
    CidFn, check_content, check_entry_file, entries_from_dir, hash_file, list_files,
};
pub use error::{Error, Result};
pub use key::{EncryptedKey, KdfParams, KeyId, PublicKey, PublicKeyFile, SecretKey};
pub use manifest::{Entry, Manifest, ManifestParams, Sha256Hex, Timestamp};
pub use policy::{
    Keyring, PolicyParams, TrustPolicy, accept_rotation, loosened_rules,
    unsigned_rotation_problems, verify_chain,
};
pub use review::{PolicySummary, RotationChanges};
pub use sig::{SignatureEntry, SignatureReport, SignatureStatus};
pub use state::{Accepted, State};
pub use verify::{Finding, Problem, Report, VerifyOptions, verify_manifest};

/// Reads `path` and verifies it under `ring`; a file that cannot be read or parsed gives a
/// report with one [`Problem::Malformed`] instead of an error, so callers always get a report.
pub fn verify_manifest_file(
    path: &std::path::Path,
    ring: &Keyring,
    opts: &VerifyOptions,
) -> (Option<Manifest>, Report) {
    match Manifest::read(path) {
        Ok(m) => {
            let r = verify_manifest(&m, ring, opts);
            (Some(m), r)
        }
        Err(e) => {
            let mut r = Report::malformed(e.to_string());
            r.threshold = ring.policy.threshold;
            r.policy_serial = Some(ring.policy.serial);
            (None, r)
        }
    }
}
