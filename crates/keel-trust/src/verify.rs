//! Verifying a manifest against a trust policy: every reason it is not acceptable, listed.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::canonical::to_hex;
use crate::manifest::{MANIFEST_SCHEMA_VERSION, Manifest};
use crate::policy::Keyring;
use crate::sig::{SignatureReport, SignatureStatus};

/// Settings of one verification.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// The time to judge expiry and age against.
    pub now: SystemTime,
    /// How far in the future `created` may be before the manifest is refused.
    pub max_clock_skew: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            now: SystemTime::now(),
            max_clock_skew: Duration::from_secs(300),
        }
    }
}

/// One reason a manifest is not acceptable (or, in [`Report::warnings`], worth knowing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The file is not a parseable manifest.
    Malformed {
        /// Parser message.
        reason: String,
    },
    /// Parsed, but breaks a schema rule (paths, names, times).
    InvalidManifest {
        /// Which rule.
        reason: String,
    },
    /// Fewer distinct trusted keys signed than the threshold.
    BelowThreshold {
        /// Distinct valid signatures.
        valid: usize,
        /// M.
        threshold: u32,
        /// Trusted keys that did not sign validly.
        missing: Vec<String>,
    },
    /// A trusted key's signature does not verify: the content changed after signing.
    InvalidSignature {
        /// Key id.
        key_id: String,
        /// Key name.
        name: String,
    },
    /// A signature by a key the policy does not list (does not count).
    UnknownKey {
        /// Key id.
        key_id: String,
    },
    /// A signature by a revoked key (does not count).
    RevokedKey {
        /// Key id.
        key_id: String,
    },
    /// A second signature by one key (counts once).
    DuplicateSignature {
        /// Key id.
        key_id: String,
    },
    /// A signature entry whose key id or signature is not well-formed.
    MalformedSignature {
        /// Key id as written.
        key_id: String,
    },
    /// `expires` has passed.
    Expired {
        /// When it expired.
        expires: String,
    },
    /// `created` is further in the future than the allowed clock skew.
    FutureDated {
        /// The claimed creation time.
        created: String,
        /// The allowed skew in seconds.
        max_skew_seconds: u64,
    },
    /// `created` is older than the policy's maximum age.
    TooOld {
        /// The creation time.
        created: String,
        /// The policy's maximum age in seconds.
        max_age_seconds: u64,
    },
    /// The version is below the policy's floor.
    BelowMinVersion {
        /// This manifest's version.
        version: u64,
        /// The policy's `min_version`.
        min_version: u64,
    },
    /// A higher version of this release was already accepted (state file).
    RolledBack {
        /// This manifest's version.
        version: u64,
        /// The highest accepted before.
        highest_accepted: u64,
    },
    /// The same version was accepted before with different content (state file).
    VersionReused {
        /// The version.
        version: u64,
        /// Digest recorded for it.
        accepted_digest: String,
        /// This manifest's digest.
        digest: String,
    },
    /// An entry's file is missing from the content directory.
    EntryMissing {
        /// Entry path.
        path: String,
    },
    /// An entry's file could not be read or its CID computed.
    EntryUnreadable {
        /// Entry path.
        path: String,
        /// Why.
        reason: String,
    },
    /// `--content` / `--gateway` were asked for but not done: the manifest is not authenticated
    /// (see [`Report::authenticated`]), so its paths were not read and nothing was fetched.
    ContentNotChecked {
        /// Why.
        reason: String,
    },
    /// An entry's file has another size.
    EntrySizeMismatch {
        /// Entry path.
        path: String,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// An entry's file has another SHA-256.
    EntrySha256Mismatch {
        /// Entry path.
        path: String,
    },
    /// An entry's bytes give another CID.
    EntryCidMismatch {
        /// Entry path.
        path: String,
        /// CID in the manifest.
        expected: String,
        /// CID of the bytes.
        actual: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { reason } => write!(f, "not a valid manifest: {reason}"),
            Self::InvalidManifest { reason } => {
                write!(f, "manifest breaks a schema rule: {reason}")
            }
            Self::BelowThreshold {
                valid,
                threshold,
                missing,
            } => write!(
                f,
                "below threshold: {valid} valid signature(s) from distinct trusted keys, {threshold} required; missing: {}",
                if missing.is_empty() {
                    "none".to_owned()
                } else {
                    missing.join(", ")
                }
            ),
            Self::InvalidSignature { key_id, name } => {
                write!(
                    f,
                    "signature by trusted key {name} ({key_id}) does not verify: the manifest changed after it was signed"
                )
            }
            Self::UnknownKey { key_id } => write!(
                f,
                "signature by unknown key {key_id} (not in the trust policy) does not count"
            ),
            Self::RevokedKey { key_id } => {
                write!(f, "signature by revoked key {key_id} does not count")
            }
            Self::DuplicateSignature { key_id } => {
                write!(f, "duplicate signature by key {key_id} counts once")
            }
            Self::MalformedSignature { key_id } => write!(
                f,
                "signature entry {key_id:?} is malformed (bad key id or signature hex)"
            ),
            Self::Expired { expires } => write!(f, "manifest expired at {expires}"),
            Self::FutureDated {
                created,
                max_skew_seconds,
            } => {
                write!(
                    f,
                    "manifest is dated in the future ({created}), beyond the allowed clock skew of {max_skew_seconds}s"
                )
            }
            Self::TooOld {
                created,
                max_age_seconds,
            } => {
                write!(
                    f,
                    "manifest created {created} is older than the policy's maximum age of {max_age_seconds}s"
                )
            }
            Self::BelowMinVersion {
                version,
                min_version,
            } => {
                write!(
                    f,
                    "version rolled back: {version} is below the policy's minimum version {min_version}"
                )
            }
            Self::RolledBack {
                version,
                highest_accepted,
            } => {
                write!(
                    f,
                    "version rolled back: {version} is below {highest_accepted}, already accepted (state file)"
                )
            }
            Self::VersionReused {
                version,
                accepted_digest,
                digest,
            } => write!(
                f,
                "version {version} was accepted before with different content (digest {accepted_digest}, now {digest}): mix-and-match or equivocation"
            ),
            Self::EntryMissing { path } => write!(f, "entry {path}: file missing"),
            Self::EntryUnreadable { path, reason } => {
                write!(f, "entry {path}: cannot check: {reason}")
            }
            Self::ContentNotChecked { reason } => {
                write!(f, "content not checked: {reason}")
            }
            Self::EntrySizeMismatch {
                path,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "entry {path}: size is {actual} bytes, manifest says {expected}"
                )
            }
            Self::EntrySha256Mismatch { path } => write!(
                f,
                "entry {path}: SHA-256 of the bytes does not match the manifest"
            ),
            Self::EntryCidMismatch {
                path,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "entry {path}: CID mismatch: the bytes give {actual}, manifest says {expected}"
                )
            }
        }
    }
}

/// A problem with its human message, as the JSON report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Human-readable message.
    pub message: String,
    /// Machine-readable code and fields.
    #[serde(flatten)]
    pub problem: Problem,
}

impl From<Problem> for Finding {
    fn from(problem: Problem) -> Self {
        Self {
            message: problem.to_string(),
            problem,
        }
    }
}

/// The verdict on one manifest. `valid` is true only when `problems` is empty.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// True only if nothing in `problems`.
    pub valid: bool,
    /// Manifest name, when it parsed.
    pub name: Option<String>,
    /// Manifest version, when it parsed.
    pub version: Option<u64>,
    /// Human label.
    pub version_label: Option<String>,
    /// SHA-256 of the canonical encoding (hex): the manifest's identity.
    pub digest: Option<String>,
    /// Serial of the trust policy used.
    pub policy_serial: Option<u64>,
    /// M.
    pub threshold: u32,
    /// Distinct trusted keys with a valid signature.
    pub valid_signatures: usize,
    /// Every signature's verdict, in document order.
    pub signatures: Vec<SignatureReport>,
    /// Reasons the manifest is refused.
    pub problems: Vec<Finding>,
    /// Things that do not make it invalid (signatures that do not count).
    pub warnings: Vec<Finding>,
}

impl Report {
    /// A report for a manifest that could not be parsed.
    pub fn malformed(reason: impl Into<String>) -> Self {
        let mut r = Self::default();
        r.problems.push(
            Problem::Malformed {
                reason: reason.into(),
            }
            .into(),
        );
        r
    }

    /// Whether the manifest is authenticated: it parsed, follows its schema, and distinct
    /// trusted keys reaching the threshold signed it (an invalid signature by another trusted
    /// key, an expiry or a version floor do not change who wrote it). Only then may its
    /// entries be read from a directory or fetched from a gateway: a manifest anyone could
    /// have written must not make the verifier read paths or download sizes of its choosing.
    pub fn authenticated(&self) -> bool {
        self.digest.is_some()
            && self.valid_signatures >= self.threshold as usize
            && !self.problems.iter().any(|p| {
                matches!(
                    p.problem,
                    Problem::Malformed { .. }
                        | Problem::InvalidManifest { .. }
                        | Problem::BelowThreshold { .. }
                )
            })
    }

    /// Adds a reason for refusal.
    pub fn push(&mut self, p: Problem) {
        self.problems.push(p.into());
        self.valid = false;
    }

    /// Adds problems (content checks, state checks).
    pub fn extend(&mut self, ps: impl IntoIterator<Item = Problem>) {
        for p in ps {
            self.push(p);
        }
    }
}

/// Verifies signatures, threshold, schema rules, times and the version floor of `m` under
/// `ring`. Anti-rollback state and content are checked separately ([`crate::State::check`],
/// [`crate::check_content`]) and added with [`Report::extend`].
pub fn verify_manifest(m: &Manifest, ring: &Keyring, opts: &VerifyOptions) -> Report {
    let policy = &ring.policy;
    let mut r = Report {
        valid: true,
        name: Some(m.name.clone()),
        version: Some(m.version),
        version_label: m.version_label.clone(),
        policy_serial: Some(policy.serial),
        threshold: policy.threshold,
        ..Report::default()
    };
    if m.schema_version != MANIFEST_SCHEMA_VERSION {
        r.push(Problem::Malformed {
            reason: format!("unsupported schema_version {}", m.schema_version),
        });
    }
    for reason in m.schema_problems() {
        r.push(Problem::InvalidManifest { reason });
    }
    let digest = match m.digest() {
        Ok(d) => d,
        Err(e) => {
            r.push(Problem::InvalidManifest {
                reason: e.to_string(),
            });
            return r;
        }
    };
    r.digest = Some(to_hex(&digest));
    let tally = ring.tally(&m.signatures, &Manifest::signing_message(&digest));
    for s in &tally.reports {
        let key_id = s.key_id.clone();
        match s.status {
            SignatureStatus::Valid => {}
            SignatureStatus::Invalid => r.push(Problem::InvalidSignature {
                key_id,
                name: s.name.clone().unwrap_or_default(),
            }),
            SignatureStatus::UnknownKey => r.warnings.push(Problem::UnknownKey { key_id }.into()),
            SignatureStatus::Revoked => r.warnings.push(Problem::RevokedKey { key_id }.into()),
            SignatureStatus::Duplicate => r
                .warnings
                .push(Problem::DuplicateSignature { key_id }.into()),
            SignatureStatus::Malformed => r
                .warnings
                .push(Problem::MalformedSignature { key_id }.into()),
        }
    }
    r.valid_signatures = tally.valid.len();
    if tally.valid.len() < policy.threshold as usize {
        r.push(Problem::BelowThreshold {
            valid: tally.valid.len(),
            threshold: policy.threshold,
            missing: ring.missing(&tally.valid),
        });
    }
    r.signatures = tally.reports;

    let now = opts.now;
    if m.expires.time() <= now {
        r.push(Problem::Expired {
            expires: m.expires.to_string(),
        });
    }
    if m.created.time() > now + opts.max_clock_skew {
        r.push(Problem::FutureDated {
            created: m.created.to_string(),
            max_skew_seconds: opts.max_clock_skew.as_secs(),
        });
    }
    if let Some(max) = policy.max_age_seconds
        && m.created.time() + Duration::from_secs(max) < now
    {
        r.push(Problem::TooOld {
            created: m.created.to_string(),
            max_age_seconds: max,
        });
    }
    if m.version < policy.min_version {
        r.push(Problem::BelowMinVersion {
            version: m.version,
            min_version: policy.min_version,
        });
    }
    r.valid = r.problems.is_empty();
    r
}
