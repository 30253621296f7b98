//! Trust policies: which keys are trusted, how many must sign, version floors and maximum age,
//! and rotation from one policy to the next (TUF-style: both thresholds must sign).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::canonical::{self, MAX_SAFE_INTEGER, to_hex};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::key::{KeyId, PublicKey, SecretKey, parse_public_key};
use crate::manifest::Timestamp;
use crate::sig::{self, SignatureEntry, SignatureStatus, Tally};

/// The trust policy schema version this build reads and writes.
pub const POLICY_SCHEMA_VERSION: u32 = 1;
const POLICY_DOMAIN: &str = "keel-trust/policy/v1";
const MAX_POLICY_BYTES: u64 = 4 * 1024 * 1024;
const MAX_KEYS: usize = 1024;

/// A trusted key as listed in a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyKey {
    /// Fingerprint (checked against the key on load).
    pub key_id: String,
    /// Human name.
    pub name: String,
    /// Ed25519 public key, lowercase hex.
    pub public_key: String,
}

/// `trust.json`: see `docs/trust.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicy {
    /// Schema version, [`POLICY_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// 1 for a root policy, +1 for every rotation.
    pub serial: u64,
    /// When this policy was made.
    pub created: Timestamp,
    /// How many distinct trusted keys must sign (M of N).
    pub threshold: u32,
    /// The trusted keys (N).
    pub keys: Vec<PolicyKey>,
    /// Ids of keys that must never count again (kept across rotations).
    #[serde(default)]
    pub revoked: Vec<String>,
    /// Manifests with a lower version are refused (anti-rollback floor).
    #[serde(default)]
    pub min_version: u64,
    /// Manifests created longer ago than this are refused (anti-freeze), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// SHA-256 (hex) of the previous policy's canonical encoding; absent in a root policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Signatures over the canonical encoding of every other field.
    #[serde(default)]
    pub signatures: Vec<SignatureEntry>,
}

/// A policy whose keys and numbers have been checked, ready to verify with.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub(crate) keys: HashMap<KeyId, PublicKey>,
    pub(crate) revoked: HashSet<KeyId>,
    /// Copy of the policy.
    pub policy: TrustPolicy,
}

impl Keyring {
    /// The trusted keys.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    pub(crate) fn tally(&self, sigs: &[SignatureEntry], msg: &[u8]) -> Tally {
        sig::tally(sigs, msg, &self.keys, &self.revoked)
    }

    /// Trusted keys without a valid signature, sorted by name, as "name (id)".
    pub(crate) fn missing(&self, valid: &HashSet<KeyId>) -> Vec<String> {
        let mut v: Vec<&PublicKey> = self
            .keys
            .values()
            .filter(|k| !valid.contains(&k.id))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v.into_iter()
            .map(|k| format!("{} ({})", k.name, k.id))
            .collect()
    }
}

/// Settings for a new policy.
#[derive(Debug, Clone)]
pub struct PolicyParams {
    /// M.
    pub threshold: u32,
    /// Floor for manifest versions.
    pub min_version: u64,
    /// Maximum manifest age.
    pub max_age: Option<Duration>,
    /// Creation time.
    pub now: SystemTime,
}

impl TrustPolicy {
    /// A root policy (serial 1) trusting `keys` with threshold M.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] for M = 0, M > N, duplicate keys.
    pub fn new_root(keys: &[PublicKey], params: &PolicyParams) -> Result<Self> {
        let p = Self {
            schema_version: POLICY_SCHEMA_VERSION,
            serial: 1,
            created: Timestamp::new(params.now),
            threshold: params.threshold,
            keys: keys.iter().map(policy_key).collect(),
            revoked: Vec::new(),
            min_version: params.min_version,
            max_age_seconds: params.max_age.map(|d| d.as_secs()),
            previous: None,
            signatures: Vec::new(),
        };
        p.keyring()?;
        Ok(p)
    }

    /// The next policy: serial + 1, chained to this one by digest, keeping earlier revocations
    /// and adding `revoke`, keeping the version floor (`params.min_version` can only raise it)
    /// and the maximum age (`params.max_age = None` keeps this policy's). It still needs
    /// signatures from a threshold of this policy's keys and a threshold of its own (see
    /// [`accept_rotation`]).
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`] for bad thresholds, or a revoked key still listed;
    /// [`Error::RotationRejected`] for a longer maximum age (see [`loosened_rules`]).
    pub fn successor(
        &self,
        keys: &[PublicKey],
        revoke: &[KeyId],
        params: &PolicyParams,
    ) -> Result<Self> {
        let mut revoked: Vec<String> = self.revoked.clone();
        for id in revoke {
            let s = id.to_string();
            if !revoked.contains(&s) {
                revoked.push(s);
            }
        }
        let p = Self {
            schema_version: POLICY_SCHEMA_VERSION,
            serial: self.serial + 1,
            created: Timestamp::new(params.now),
            threshold: params.threshold,
            keys: keys.iter().map(policy_key).collect(),
            revoked,
            min_version: params.min_version.max(self.min_version),
            max_age_seconds: params.max_age.map(|d| d.as_secs()).or(self.max_age_seconds),
            previous: Some(to_hex(&self.digest()?)),
            signatures: Vec::new(),
        };
        p.keyring()?;
        let loosened = loosened_rules(self, &p);
        if !loosened.is_empty() {
            return Err(Error::RotationRejected {
                serial: p.serial,
                reason: loosened.join("; "),
            });
        }
        Ok(p)
    }

    /// Checks every rule and builds the key map.
    ///
    /// # Errors
    /// [`Error::InvalidPolicy`], [`Error::InvalidPublicKey`], [`Error::UnsupportedFormat`].
    pub fn keyring(&self) -> Result<Keyring> {
        if self.schema_version != POLICY_SCHEMA_VERSION {
            return Err(Error::UnsupportedFormat {
                what: "trust policy",
                found: format!("schema_version {}", self.schema_version),
                expected: format!("schema_version {POLICY_SCHEMA_VERSION}"),
            });
        }
        let n = self.keys.len();
        if n == 0 {
            return Err(Error::InvalidPolicy("it lists no keys".to_owned()));
        }
        if n > MAX_KEYS {
            return Err(Error::InvalidPolicy(format!(
                "it lists {n} keys; the limit is {MAX_KEYS}"
            )));
        }
        if self.threshold == 0 {
            return Err(Error::InvalidPolicy(
                "threshold M = 0 would accept unsigned manifests; use 1 or more".to_owned(),
            ));
        }
        if self.threshold as usize > n {
            return Err(Error::InvalidPolicy(format!(
                "threshold M = {} is more than the N = {n} keys listed; nothing could ever be valid",
                self.threshold
            )));
        }
        if self.serial == 0 || self.serial > MAX_SAFE_INTEGER || self.min_version > MAX_SAFE_INTEGER
        {
            return Err(Error::InvalidPolicy(
                "serial must be 1..2^53-1 and min_version at most 2^53-1".to_owned(),
            ));
        }
        if self
            .max_age_seconds
            .is_some_and(|s| s == 0 || s > MAX_SAFE_INTEGER)
        {
            return Err(Error::InvalidPolicy(
                "max_age_seconds must be 1..2^53-1".to_owned(),
            ));
        }
        let mut revoked = HashSet::new();
        for r in &self.revoked {
            let id: KeyId = r.parse().map_err(|_| {
                Error::InvalidPolicy(format!("revoked entry {r:?} is not a key id"))
            })?;
            revoked.insert(id);
        }
        let mut keys = HashMap::new();
        for k in &self.keys {
            let key = parse_public_key(&k.public_key).map_err(|e| {
                Error::InvalidPolicy(format!("key {:?} ({}): {e}", k.name, k.key_id))
            })?;
            let id = KeyId::of(&key);
            if id.to_string() != k.key_id {
                return Err(Error::InvalidPolicy(format!(
                    "key {:?}: key_id {} does not match its key (id {id})",
                    k.name, k.key_id
                )));
            }
            if revoked.contains(&id) {
                return Err(Error::InvalidPolicy(format!(
                    "key {:?} ({id}) is both trusted and revoked",
                    k.name
                )));
            }
            if keys
                .insert(
                    id,
                    PublicKey {
                        name: k.name.clone(),
                        key,
                        id,
                    },
                )
                .is_some()
            {
                return Err(Error::InvalidPolicy(format!(
                    "key {id} is listed twice; a key counts once"
                )));
            }
        }
        Ok(Keyring {
            keys,
            revoked,
            policy: self.clone(),
        })
    }

    /// Parses and checks a policy.
    ///
    /// # Errors
    /// Parse errors and those of [`TrustPolicy::keyring`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let p: Self = serde_json::from_slice(bytes).map_err(|e| Error::json("trust policy", &e))?;
        p.keyring()?;
        Ok(p)
    }

    /// Reads, parses and checks a policy file.
    ///
    /// # Errors
    /// I/O errors and those of [`TrustPolicy::parse`].
    pub fn read(path: &Path) -> Result<Self> {
        Self::parse(&fsutil::read_bounded(
            path,
            "trust policy",
            MAX_POLICY_BYTES,
        )?)
    }

    /// Writes the policy atomically.
    ///
    /// # Errors
    /// I/O errors; [`Error::AlreadyExists`] unless `overwrite`.
    pub fn write(&self, path: &Path, overwrite: bool) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| Error::Malformed {
            what: "trust policy",
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        fsutil::write_atomic(path, &json, false, overwrite)
    }

    /// SHA-256 of the RFC 8785 encoding of every field but `signatures`.
    ///
    /// # Errors
    /// [`Error::NotCanonical`] for integers beyond 2^53 − 1.
    pub fn digest(&self) -> Result<[u8; 32]> {
        use sha2::Digest;
        let mut v = serde_json::to_value(self).map_err(|e| Error::Malformed {
            what: "trust policy",
            reason: e.to_string(),
        })?;
        if let Some(o) = v.as_object_mut() {
            o.remove("signatures");
        }
        Ok(sha2::Sha256::digest(canonical::canonicalize(&v)?).into())
    }

    /// Adds `key`'s signature (nothing if already validly signed by it).
    ///
    /// # Errors
    /// [`Error::NotCanonical`].
    pub fn sign(&mut self, key: &SecretKey) -> Result<bool> {
        let msg = sig::message(POLICY_DOMAIN, &self.digest()?);
        Ok(sig::add(&mut self.signatures, key, &msg))
    }

    fn tally_with(&self, ring: &Keyring, extra_revoked: &HashSet<KeyId>) -> Result<Tally> {
        let msg = sig::message(POLICY_DOMAIN, &self.digest()?);
        let revoked: HashSet<KeyId> = ring.revoked.union(extra_revoked).copied().collect();
        Ok(sig::tally(&self.signatures, &msg, &ring.keys, &revoked))
    }
}

fn policy_key(k: &PublicKey) -> PolicyKey {
    PolicyKey {
        key_id: k.id.to_string(),
        name: k.name.clone(),
        public_key: to_hex(k.key.as_bytes()),
    }
}

/// What a rotation from `current` to `next` would loosen, one message per rule; empty when it
/// loosens nothing. A rotation may only tighten what consumers rely on:
///
/// - every key `current` revokes stays revoked (revocations are permanent, so a revoked key can
///   never be trusted again);
/// - `min_version` never goes down (the anti-rollback floor);
/// - `max_age_seconds` may be added or shortened, never removed or lengthened (the
///   anti-freeze bound).
///
/// Loosening any of them takes a new root policy, pinned out of band (`keel trust init`).
pub fn loosened_rules(current: &TrustPolicy, next: &TrustPolicy) -> Vec<String> {
    let mut out = Vec::new();
    for id in &current.revoked {
        if !next.revoked.contains(id) {
            out.push(format!(
                "un-revokes key {id}: revocations are permanent, a revoked key must stay in `revoked`"
            ));
        }
    }
    if next.min_version < current.min_version {
        out.push(format!(
            "lowers min_version from {} to {}: the version floor never goes down",
            current.min_version, next.min_version
        ));
    }
    match (current.max_age_seconds, next.max_age_seconds) {
        (Some(old), None) => out.push(format!(
            "drops max_age_seconds (was {}): the maximum age may be shortened, never removed",
            describe_age(old)
        )),
        (Some(old), Some(new)) if new > old => out.push(format!(
            "lengthens max_age_seconds from {} to {}: the maximum age may be shortened, never lengthened",
            describe_age(old),
            describe_age(new)
        )),
        _ => {}
    }
    out
}

/// Seconds, and the same in whole days or hours when it divides evenly: `31536000 (365d)`.
pub(crate) fn describe_age(seconds: u64) -> String {
    if seconds >= 86_400 && seconds.is_multiple_of(86_400) {
        format!("{seconds}s ({}d)", seconds / 86_400)
    } else if seconds >= 3_600 && seconds.is_multiple_of(3_600) {
        format!("{seconds}s ({}h)", seconds / 3_600)
    } else {
        format!("{seconds}s")
    }
}

/// Every rule of [`accept_rotation`] that does not depend on signatures, one message per
/// failure: serial + 1, `previous` names `current`, nothing loosened ([`loosened_rules`]).
/// Empty when `next` is a well-formed successor still waiting for signatures.
///
/// # Errors
/// [`Error::NotCanonical`] when `current` cannot be encoded to compute its digest.
pub fn unsigned_rotation_problems(
    current: &TrustPolicy,
    next: &TrustPolicy,
) -> Result<Vec<String>> {
    let mut reasons = Vec::new();
    if next.serial != current.serial + 1 {
        if next.serial <= current.serial {
            reasons.push(format!(
                "serial {} is not newer than the current serial {} (rollback)",
                next.serial, current.serial
            ));
        } else {
            reasons.push(format!(
                "serial {} skips versions: expected {}",
                next.serial,
                current.serial + 1
            ));
        }
    }
    let expect_prev = to_hex(&current.digest()?);
    if next.previous.as_deref() != Some(expect_prev.as_str()) {
        reasons.push(format!(
            "previous is {:?}, expected the current policy's digest {expect_prev}",
            next.previous
        ));
    }
    reasons.extend(loosened_rules(current, next));
    Ok(reasons)
}

/// Accepts `next` as the successor of `current` only if: it is well-formed; its serial is
/// exactly one more; it names `current`'s digest as `previous`; it loosens no rule (see
/// [`loosened_rules`]: revocations kept, `min_version` not lowered, `max_age_seconds` not
/// removed or lengthened); a threshold of `current`'s keys signed it (keys that `next` revokes
/// do not count); and a threshold of its own keys signed it.
///
/// # Errors
/// [`Error::RotationRejected`] listing every failed rule, or the errors of
/// [`TrustPolicy::keyring`].
pub fn accept_rotation(current: &TrustPolicy, next: &TrustPolicy) -> Result<Keyring> {
    let cur = current.keyring()?;
    let nxt = next.keyring()?;
    let mut reasons = unsigned_rotation_problems(current, next)?;
    let old = next.tally_with(&cur, &nxt.revoked)?;
    if old.valid.len() < current.threshold as usize {
        reasons.push(format!(
            "signed by {} of the current policy's keys, needs {} (missing: {}){}",
            old.valid.len(),
            current.threshold,
            cur.missing(&old.valid).join(", "),
            not_counted(&old)
        ));
    }
    let new = next.tally_with(&nxt, &HashSet::new())?;
    if new.valid.len() < next.threshold as usize {
        reasons.push(format!(
            "signed by {} of its own keys, needs {} (missing: {}){}",
            new.valid.len(),
            next.threshold,
            nxt.missing(&new.valid).join(", "),
            not_counted(&new)
        ));
    }
    if reasons.is_empty() {
        Ok(nxt)
    } else {
        Err(Error::RotationRejected {
            serial: next.serial,
            reason: reasons.join("; "),
        })
    }
}

fn not_counted(t: &Tally) -> String {
    let v: Vec<String> = t
        .reports
        .iter()
        .filter(|r| {
            !matches!(
                r.status,
                SignatureStatus::Valid | SignatureStatus::UnknownKey
            )
        })
        .map(|r| format!("{} {:?}", r.key_id, r.status))
        .collect();
    if v.is_empty() {
        String::new()
    } else {
        format!("; not counted: {}", v.join(", "))
    }
}

/// Follows a chain of rotations from a pinned `root`, accepting each step with
/// [`accept_rotation`], and returns the last policy's keyring.
///
/// # Errors
/// The first rejected step.
pub fn verify_chain(root: &TrustPolicy, chain: &[TrustPolicy]) -> Result<Keyring> {
    let mut ring = root.keyring()?;
    let mut current = root;
    for next in chain {
        ring = accept_rotation(current, next)?;
        current = next;
    }
    Ok(ring)
}
