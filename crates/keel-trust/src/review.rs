//! What a signer is about to approve, in words: a root policy's rules, or everything a rotation
//! changes. `keel trust sign` and `keel trust rotate --key` print this and ask before signing,
//! because a signature is over a digest nobody can read.

use std::collections::HashMap;
use std::fmt;

use crate::error::Result;
use crate::policy::{PolicyKey, TrustPolicy, describe_age, unsigned_rotation_problems};

/// "name (key id)".
fn named(k: &PolicyKey) -> String {
    format!("{} ({})", k.name, k.key_id)
}

fn age(a: Option<u64>) -> String {
    a.map_or_else(|| "none".to_owned(), describe_age)
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// A policy on its own (a root, or a rotation reviewed without the policy it replaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    /// Its serial.
    pub serial: u64,
    /// Digest of the policy it claims to follow, if any.
    pub previous: Option<String>,
    /// M.
    pub threshold: u32,
    /// Trusted keys as "name (id)".
    pub keys: Vec<String>,
    /// Revoked key ids.
    pub revoked: Vec<String>,
    /// Version floor.
    pub min_version: u64,
    /// Maximum manifest age in seconds.
    pub max_age_seconds: Option<u64>,
}

impl PolicySummary {
    /// Describes `p`.
    pub fn of(p: &TrustPolicy) -> Self {
        Self {
            serial: p.serial,
            previous: p.previous.clone(),
            threshold: p.threshold,
            keys: p.keys.iter().map(named).collect(),
            revoked: p.revoked.clone(),
            min_version: p.min_version,
            max_age_seconds: p.max_age_seconds,
        }
    }
}

impl fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.previous {
            None => writeln!(f, "trust policy serial {} (root)", self.serial)?,
            Some(d) => writeln!(
                f,
                "trust policy serial {} (follows the policy with digest {d})",
                self.serial
            )?,
        }
        writeln!(
            f,
            "  threshold      {} of {}",
            self.threshold,
            self.keys.len()
        )?;
        writeln!(f, "  keys           {}", list(&self.keys))?;
        writeln!(f, "  revoked        {}", list(&self.revoked))?;
        writeln!(f, "  min_version    {}", self.min_version)?;
        writeln!(f, "  max_age        {}", age(self.max_age_seconds))
    }
}

/// Everything a rotation changes, and every rule it breaks that signatures cannot fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationChanges {
    /// Serial of the current policy and of the rotation.
    pub serial: (u64, u64),
    /// Threshold before and after.
    pub threshold: (u32, u32),
    /// Number of trusted keys before and after.
    pub key_count: (usize, usize),
    /// Keys trusted from now on, as "name (id)".
    pub keys_added: Vec<String>,
    /// Keys no longer trusted, as "name (id)", each saying whether it is revoked.
    pub keys_removed: Vec<String>,
    /// Keys kept under another name, as "id: old → new".
    pub keys_renamed: Vec<String>,
    /// Newly revoked keys, as "name (id)" where the current policy names them, else the id.
    pub revoked_added: Vec<String>,
    /// Version floor before and after.
    pub min_version: (u64, u64),
    /// Maximum manifest age before and after, in seconds.
    pub max_age_seconds: (Option<u64>, Option<u64>),
    /// Rules the rotation breaks whatever its signatures (serial, `previous`, loosened rules):
    /// see [`crate::unsigned_rotation_problems`]. Signing such a rotation is pointless.
    pub refused: Vec<String>,
}

impl RotationChanges {
    /// What `next` changes relative to `current`.
    ///
    /// # Errors
    /// [`crate::Error::NotCanonical`] when `current` cannot be encoded.
    pub fn between(current: &TrustPolicy, next: &TrustPolicy) -> Result<Self> {
        let old: HashMap<&str, &PolicyKey> = current
            .keys
            .iter()
            .map(|k| (k.key_id.as_str(), k))
            .collect();
        let new: HashMap<&str, &PolicyKey> =
            next.keys.iter().map(|k| (k.key_id.as_str(), k)).collect();
        let keys_added = next
            .keys
            .iter()
            .filter(|k| !old.contains_key(k.key_id.as_str()))
            .map(named)
            .collect();
        let keys_removed = current
            .keys
            .iter()
            .filter(|k| !new.contains_key(k.key_id.as_str()))
            .map(|k| {
                if next.revoked.contains(&k.key_id) {
                    format!("{}, revoked", named(k))
                } else {
                    format!(
                        "{}, not revoked (a later rotation may trust it again)",
                        named(k)
                    )
                }
            })
            .collect();
        let keys_renamed = next
            .keys
            .iter()
            .filter_map(|k| {
                let o = old.get(k.key_id.as_str())?;
                (o.name != k.name).then(|| format!("{}: {} → {}", k.key_id, o.name, k.name))
            })
            .collect();
        let revoked_added = next
            .revoked
            .iter()
            .filter(|id| !current.revoked.contains(id))
            .map(|id| {
                old.get(id.as_str())
                    .map_or_else(|| id.clone(), |k| named(k))
            })
            .collect();
        Ok(Self {
            serial: (current.serial, next.serial),
            threshold: (current.threshold, next.threshold),
            key_count: (current.keys.len(), next.keys.len()),
            keys_added,
            keys_removed,
            keys_renamed,
            revoked_added,
            min_version: (current.min_version, next.min_version),
            max_age_seconds: (current.max_age_seconds, next.max_age_seconds),
            refused: unsigned_rotation_problems(current, next)?,
        })
    }
}

impl fmt::Display for RotationChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unchanged = |same: bool| if same { " (unchanged)" } else { "" };
        writeln!(
            f,
            "trust policy rotation: serial {} → {}",
            self.serial.0, self.serial.1
        )?;
        let (t0, t1) = self.threshold;
        let (n0, n1) = self.key_count;
        writeln!(
            f,
            "  threshold      {t0} of {n0} → {t1} of {n1}{}",
            unchanged(t0 == t1 && n0 == n1)
        )?;
        writeln!(f, "  keys added     {}", list(&self.keys_added))?;
        writeln!(f, "  keys removed   {}", list(&self.keys_removed))?;
        if !self.keys_renamed.is_empty() {
            writeln!(f, "  keys renamed   {}", self.keys_renamed.join(", "))?;
        }
        writeln!(f, "  newly revoked  {}", list(&self.revoked_added))?;
        let (v0, v1) = self.min_version;
        let how = match v1.cmp(&v0) {
            std::cmp::Ordering::Equal => " (unchanged)",
            std::cmp::Ordering::Greater => " (raised)",
            std::cmp::Ordering::Less => " (LOWERED)",
        };
        writeln!(f, "  min_version    {v0} → {v1}{how}")?;
        let (a0, a1) = self.max_age_seconds;
        let how = match (a0, a1) {
            (x, y) if x == y => " (unchanged)",
            (None, Some(_)) => " (added)",
            (Some(_), None) => " (REMOVED)",
            (Some(x), Some(y)) if y < x => " (shortened)",
            _ => " (LENGTHENED)",
        };
        writeln!(f, "  max_age        {} → {}{how}", age(a0), age(a1))?;
        for r in &self.refused {
            writeln!(f, "  REFUSED: {r}")?;
        }
        Ok(())
    }
}
