//! The anti-rollback state file: the highest version accepted per manifest name (with its
//! digest) and the highest trust policy serial accepted.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::verify::{Problem, Report};

const STATE_SCHEMA_VERSION: u32 = 1;
const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// What was accepted for one manifest name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// Highest version accepted.
    pub version: u64,
    /// Digest of the manifest accepted at that version.
    pub digest: String,
}

/// The state file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Schema version, 1.
    pub schema_version: u32,
    /// Highest trust policy serial accepted.
    #[serde(default)]
    pub policy_serial: u64,
    /// Per manifest name.
    #[serde(default)]
    pub manifests: BTreeMap<String, Accepted>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            schema_version: STATE_SCHEMA_VERSION,
            policy_serial: 0,
            manifests: BTreeMap::new(),
        }
    }
}

impl State {
    /// Loads the state file; a missing file is an empty state.
    ///
    /// # Errors
    /// [`Error::State`] for an unreadable or malformed file (never silently reset: that would
    /// reopen rollback).
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Ok(Self::default());
        }
        let bad = |reason: String| Error::State {
            path: path.to_owned(),
            reason,
        };
        let bytes = fsutil::read_bounded(path, "state file", MAX_STATE_BYTES)
            .map_err(|e| bad(e.to_string()))?;
        let s: Self = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "{e}; fix or restore it (deleting it disables rollback protection)"
            ))
        })?;
        if s.schema_version != STATE_SCHEMA_VERSION {
            return Err(bad(format!(
                "unsupported schema_version {}",
                s.schema_version
            )));
        }
        Ok(s)
    }

    /// Writes the state atomically.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| Error::State {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        fsutil::write_atomic(path, &json, false, true)
    }

    /// Loads the state file, applies `change` and saves the result, all under an exclusive
    /// lock on `<path>.lock`: keel processes verifying at the same time (a deploy script run
    /// twice, one verify per manifest in parallel) then never lose each other's updates, and a
    /// check done inside `change` sees every update made before it. Waits for the lock.
    ///
    /// # Errors
    /// [`Error::State`] as [`State::load`], I/O errors on the lock or the write, or what
    /// `change` returns (then nothing is written).
    pub fn update<T>(path: &Path, change: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("cannot open the lock file", &lock_path, e))?;
        lock.lock()
            .map_err(|e| Error::io("cannot lock", &lock_path, e))?;
        let mut state = Self::load(path)?;
        let before = state.clone();
        let out = change(&mut state)?;
        if state != before {
            state.save(path)?;
        }
        Ok(out)
    }

    /// Problems of a verified manifest against what was accepted before: a lower version
    /// (rollback), or the same version with other content (mix-and-match).
    pub fn check(&self, name: &str, version: u64, digest: &str) -> Vec<Problem> {
        match self.manifests.get(name) {
            Some(a) if version < a.version => vec![Problem::RolledBack {
                version,
                highest_accepted: a.version,
            }],
            Some(a) if version == a.version && digest != a.digest => {
                vec![Problem::VersionReused {
                    version,
                    accepted_digest: a.digest.clone(),
                    digest: digest.to_owned(),
                }]
            }
            _ => Vec::new(),
        }
    }

    /// Checks the report's manifest against this state and adds any problem to it.
    pub fn check_report(&self, report: &mut Report) {
        if let (Some(name), Some(version), Some(digest)) =
            (&report.name, report.version, &report.digest)
        {
            let ps = self.check(name, version, digest);
            report.extend(ps);
        }
    }

    /// Records a valid report's manifest as accepted (only raises the version).
    pub fn record(&mut self, report: &Report) {
        if !report.valid {
            return;
        }
        if let (Some(name), Some(version), Some(digest)) =
            (&report.name, report.version, &report.digest)
        {
            let newer = self.manifests.get(name).is_none_or(|a| version > a.version);
            if newer {
                self.manifests.insert(
                    name.clone(),
                    Accepted {
                        version,
                        digest: digest.clone(),
                    },
                );
            }
        }
        if let Some(serial) = report.policy_serial {
            self.policy_serial = self.policy_serial.max(serial);
        }
    }

    /// Refuses a trust policy older than one accepted before.
    ///
    /// # Errors
    /// [`Error::RotationRejected`] when `serial` is below the recorded serial.
    pub fn check_policy(&self, serial: u64) -> Result<()> {
        if serial < self.policy_serial {
            return Err(Error::RotationRejected {
                serial,
                reason: format!(
                    "trust policy rolled back: serial {serial} is below serial {} already accepted (state file); pass the newer policy chain",
                    self.policy_serial
                ),
            });
        }
        Ok(())
    }
}
