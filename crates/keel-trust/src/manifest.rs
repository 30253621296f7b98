//! Content manifests: the schema, canonical signing bytes, signing, and parsing with bounds.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical::{
    HashSink, MAX_SAFE_INTEGER, Sink, StrictObject, from_hex, put_hex_str, put_key, put_object,
    put_str, put_u64, to_hex,
};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::key::SecretKey;
use crate::sig::{self, SignatureEntry};

/// The manifest schema version this build reads and writes.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;
/// The largest manifest file accepted (256 MiB, about 1.5 million entries).
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// The most entries a manifest may list.
pub const MAX_ENTRIES: usize = 2_000_000;
/// The most signatures a manifest may carry.
pub const MAX_SIGNATURES: usize = 256;
/// Domain separation for manifest signatures.
pub(crate) const MANIFEST_DOMAIN: &str = "keel-trust/manifest/v1";

/// A point in time written as RFC 3339 UTC with second precision (`2026-12-01T10:00:00Z`).
/// Any other spelling is refused when parsing, so one instant has exactly one encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(SystemTime);

impl Timestamp {
    /// `t` truncated to whole seconds.
    pub fn new(t: SystemTime) -> Self {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// The instant.
    pub fn time(self) -> SystemTime {
        self.0
    }

    /// Parses the strict form.
    ///
    /// # Errors
    /// A message saying which form is expected.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let t = humantime::parse_rfc3339(s)
            .map_err(|e| format!("{s:?} is not an RFC 3339 UTC time ({e})"))?;
        let ts = Self(t);
        if ts.to_string() != s {
            return Err(format!(
                "{s:?} must be written as RFC 3339 UTC with whole seconds, like 2026-12-01T10:00:00Z"
            ));
        }
        Ok(ts)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_seconds(self.0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A SHA-256 digest written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Hex(pub [u8; 32]);

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Sha256Hex;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 lowercase hex digits")
            }
            // Borrowing the str avoids one allocation per entry.
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Sha256Hex, E> {
                from_hex::<32>(s)
                    .map(Sha256Hex)
                    .map_err(|e| E::custom(format!("sha256: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative path with `/` separators; no `.`/`..`/empty components.
    pub path: String,
    /// Content identifier of the file's bytes, as `keel content add` gives it.
    pub cid: String,
    /// Size in bytes.
    pub size: u64,
    /// Optional SHA-256 of the file's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hex>,
}

impl Entry {
    fn put_canonical(&self, out: &mut impl Sink) -> Result<()> {
        // Keys in JCS order: cid, path, sha256, size (ASCII keys: literal bytes are their JCS form).
        out.put(b"{\"cid\":");
        put_str(out, &self.cid);
        out.put(b",\"path\":");
        put_str(out, &self.path);
        if let Some(h) = &self.sha256 {
            out.put(b",\"sha256\":");
            put_hex_str(out, &h.0);
        }
        out.put(b",\"size\":");
        put_u64(out, "entry size", self.size)?;
        out.put(b"}");
        Ok(())
    }
}

/// A signed list of content: see `docs/trust.md` for the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema version, [`MANIFEST_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Release name, e.g. "imagenet-mini". Anti-rollback state is kept per name.
    pub name: String,
    /// Monotonic release number.
    pub version: u64,
    /// Human label, e.g. "2026.12-rc1".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
    /// When the manifest was made.
    pub created: Timestamp,
    /// After this the manifest is refused.
    pub expires: Timestamp,
    /// CID of the previous release's manifest file, chaining releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// How entry CIDs were computed, e.g. "unixfs-v1/cidv0/sha2-256/size-262144/balanced".
    pub cid_profile: String,
    /// The files.
    pub entries: Vec<Entry>,
    /// Free metadata (integer-only JSON; covered by the signatures).
    #[serde(default)]
    pub metadata: StrictObject,
    /// Signatures over the canonical encoding of every other field.
    #[serde(default)]
    pub signatures: Vec<SignatureEntry>,
}

/// Fields given by whoever creates a manifest.
#[derive(Debug, Clone)]
pub struct ManifestParams {
    /// Release name.
    pub name: String,
    /// Monotonic release number.
    pub version: u64,
    /// Human label.
    pub version_label: Option<String>,
    /// Creation time.
    pub created: SystemTime,
    /// How long the manifest is valid.
    pub valid_for: Duration,
    /// CID of the previous release's manifest.
    pub previous: Option<String>,
    /// How CIDs were computed.
    pub cid_profile: String,
    /// Free metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Manifest {
    /// A new unsigned manifest; entries are sorted by path.
    ///
    /// # Errors
    /// [`Error::InvalidManifest`] when the result would break a schema rule.
    pub fn new(params: ManifestParams, mut entries: Vec<Entry>) -> Result<Self> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let created = Timestamp::new(params.created);
        let m = Self {
            schema_version: MANIFEST_SCHEMA_VERSION,
            name: params.name,
            version: params.version,
            version_label: params.version_label,
            created,
            expires: Timestamp::new(created.time() + params.valid_for),
            previous: params.previous,
            cid_profile: params.cid_profile,
            entries,
            metadata: StrictObject(params.metadata),
            signatures: Vec::new(),
        };
        let problems = m.schema_problems();
        if let Some(first) = problems.into_iter().next() {
            return Err(Error::InvalidManifest(first));
        }
        m.digest()?;
        Ok(m)
    }

    /// Parses a manifest's bytes, refusing more than [`MAX_MANIFEST_BYTES`].
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::Truncated`], [`Error::Malformed`] (unknown or duplicate
    /// fields, wrong types, floats), [`Error::UnsupportedFormat`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::TooLarge {
                what: "manifest",
                size: bytes.len() as u64,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        match serde_json::from_slice::<Self>(bytes) {
            Ok(m) if m.schema_version != MANIFEST_SCHEMA_VERSION => {
                Err(unsupported(m.schema_version))
            }
            Ok(m) => {
                if m.entries.len() > MAX_ENTRIES {
                    return Err(Error::TooLarge {
                        what: "manifest entry list",
                        size: m.entries.len() as u64,
                        limit: MAX_ENTRIES as u64,
                    });
                }
                if m.signatures.len() > MAX_SIGNATURES {
                    return Err(Error::TooLarge {
                        what: "manifest signature list",
                        size: m.signatures.len() as u64,
                        limit: MAX_SIGNATURES as u64,
                    });
                }
                Ok(m)
            }
            Err(e) => {
                // A newer schema fails on its new fields; say so rather than "unknown field".
                #[derive(Deserialize)]
                struct Peek {
                    schema_version: u32,
                }
                match serde_json::from_slice::<Peek>(bytes) {
                    Ok(p) if p.schema_version != MANIFEST_SCHEMA_VERSION => {
                        Err(unsupported(p.schema_version))
                    }
                    _ => Err(Error::json("manifest", &e)),
                }
            }
        }
    }

    /// Reads and parses a manifest file.
    ///
    /// # Errors
    /// I/O errors and those of [`Manifest::parse`].
    pub fn read(path: &Path) -> Result<Self> {
        Self::parse(&fsutil::read_bounded(path, "manifest", MAX_MANIFEST_BYTES)?)
    }

    /// JSON for humans and diffs: one field per line, one entry and one signature per line
    /// (validity never depends on the layout).
    ///
    /// # Errors
    /// Never in practice; serialization errors are reported as [`Error::Malformed`].
    pub fn to_json(&self) -> Result<Vec<u8>> {
        use std::io::Write;
        fn field<T: Serialize>(out: &mut Vec<u8>, key: &str, v: &T) -> serde_json::Result<()> {
            write!(out, "  {}: ", serde_json::to_string(key)?).map_err(serde_json::Error::io)?;
            // Nested objects (metadata) are pretty-printed and indented one level.
            let pretty = serde_json::to_string_pretty(v)?;
            out.extend_from_slice(pretty.replace('\n', "\n  ").as_bytes());
            out.extend_from_slice(b",\n");
            Ok(())
        }
        fn list<T: Serialize>(
            out: &mut Vec<u8>,
            key: &str,
            items: &[T],
            last: bool,
        ) -> serde_json::Result<()> {
            write!(out, "  {}: [", serde_json::to_string(key)?).map_err(serde_json::Error::io)?;
            for (i, item) in items.iter().enumerate() {
                out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
                serde_json::to_writer(&mut *out, item)?;
            }
            out.extend_from_slice(if items.is_empty() { b"]" } else { b"\n  ]" });
            out.extend_from_slice(if last { b"\n" } else { b",\n" });
            Ok(())
        }
        let mut out = Vec::with_capacity(256 + 200 * self.entries.len());
        let res = (|| -> serde_json::Result<()> {
            out.extend_from_slice(b"{\n");
            field(&mut out, "schema_version", &self.schema_version)?;
            field(&mut out, "name", &self.name)?;
            field(&mut out, "version", &self.version)?;
            if let Some(l) = &self.version_label {
                field(&mut out, "version_label", l)?;
            }
            field(&mut out, "created", &self.created)?;
            field(&mut out, "expires", &self.expires)?;
            if let Some(p) = &self.previous {
                field(&mut out, "previous", p)?;
            }
            field(&mut out, "cid_profile", &self.cid_profile)?;
            list(&mut out, "entries", &self.entries, false)?;
            field(&mut out, "metadata", &self.metadata)?;
            list(&mut out, "signatures", &self.signatures, true)?;
            out.extend_from_slice(b"}\n");
            Ok(())
        })();
        res.map_err(|e| Error::Malformed {
            what: "manifest",
            reason: e.to_string(),
        })?;
        Ok(out)
    }

    /// Writes the manifest atomically.
    ///
    /// # Errors
    /// I/O errors; [`Error::AlreadyExists`] unless `overwrite`.
    pub fn write(&self, path: &Path, overwrite: bool) -> Result<()> {
        fsutil::write_atomic(path, &self.to_json()?, false, overwrite)
    }

    fn put_canonical(&self, out: &mut impl Sink) -> Result<()> {
        // Keys in JCS order: cid_profile, created, entries, expires, metadata, name, previous,
        // schema_version, version, version_label. `signatures` is not signed.
        out.put(b"{");
        put_key(out, "cid_profile");
        put_str(out, &self.cid_profile);
        out.put(b",");
        put_key(out, "created");
        put_str(out, &self.created.to_string());
        out.put(b",");
        put_key(out, "entries");
        out.put(b"[");
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.put(b",");
            }
            e.put_canonical(out)?;
        }
        out.put(b"]");
        out.put(b",");
        put_key(out, "expires");
        put_str(out, &self.expires.to_string());
        out.put(b",");
        put_key(out, "metadata");
        put_object(out, &self.metadata.0)?;
        out.put(b",");
        put_key(out, "name");
        put_str(out, &self.name);
        if let Some(p) = &self.previous {
            out.put(b",");
            put_key(out, "previous");
            put_str(out, p);
        }
        out.put(b",");
        put_key(out, "schema_version");
        put_u64(out, "schema_version", u64::from(self.schema_version))?;
        out.put(b",");
        put_key(out, "version");
        put_u64(out, "version", self.version)?;
        if let Some(l) = &self.version_label {
            out.put(b",");
            put_key(out, "version_label");
            put_str(out, l);
        }
        out.put(b"}");
        Ok(())
    }

    /// The RFC 8785 encoding of every field except `signatures`.
    ///
    /// # Errors
    /// [`Error::NotCanonical`] for integers beyond 2^53 − 1.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.put_canonical(&mut out)?;
        Ok(out)
    }

    /// SHA-256 of [`Manifest::canonical_bytes`], computed without holding them in memory. This
    /// is the manifest's identity: the state file and reports use it.
    ///
    /// # Errors
    /// [`Error::NotCanonical`] for integers beyond 2^53 − 1.
    pub fn digest(&self) -> Result<[u8; 32]> {
        let mut h = HashSink::new();
        self.put_canonical(&mut h)?;
        Ok(h.finish())
    }

    /// The bytes an Ed25519 signature covers: `"keel-trust/manifest/v1\n"` followed by the 32
    /// bytes of [`Manifest::digest`].
    pub fn signing_message(digest: &[u8; 32]) -> Vec<u8> {
        sig::message(MANIFEST_DOMAIN, digest)
    }

    /// Adds a signature by `key`. Returns `false` (and changes nothing) if a valid signature by
    /// this key is already there; a stale signature by the same key is replaced.
    ///
    /// # Errors
    /// [`Error::NotCanonical`].
    pub fn sign(&mut self, key: &SecretKey) -> Result<bool> {
        let msg = Self::signing_message(&self.digest()?);
        Ok(sig::add(&mut self.signatures, key, &msg))
    }

    /// Removes every signature (before re-signing after a key rotation).
    pub fn clear_signatures(&mut self) {
        self.signatures.clear();
    }

    /// Schema rules beyond types: names, paths, CIDs, times, integer ranges.
    pub fn schema_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.name.is_empty() || self.name.len() > 256 || self.name.chars().any(char::is_control)
        {
            out.push(format!(
                "name {:?} must be 1-256 characters without control characters",
                self.name
            ));
        }
        if self.version > MAX_SAFE_INTEGER {
            out.push(format!("version {} is larger than 2^53 - 1", self.version));
        }
        if self.expires <= self.created {
            out.push(format!(
                "expires ({}) is not after created ({})",
                self.expires, self.created
            ));
        }
        if self.cid_profile.is_empty() || self.cid_profile.len() > 256 {
            out.push("cid_profile must be 1-256 characters".to_owned());
        }
        if let Some(p) = &self.previous
            && let Err(e) = check_cid(p)
        {
            out.push(format!("previous: {e}"));
        }
        // Entries written by keel are sorted by path, which proves uniqueness without hashing.
        let sorted = self.entries.windows(2).all(|w| w[0].path < w[1].path);
        let mut seen = HashSet::with_capacity(if sorted { 0 } else { self.entries.len() });
        for e in &self.entries {
            if let Err(why) = check_path(&e.path) {
                out.push(format!("entry {:?}: {why}", e.path));
            }
            if let Err(why) = check_cid(&e.cid) {
                out.push(format!("entry {:?}: {why}", e.path));
            }
            if e.size > MAX_SAFE_INTEGER {
                out.push(format!(
                    "entry {:?}: size {} is larger than 2^53 - 1",
                    e.path, e.size
                ));
            }
            if !sorted && !seen.insert(e.path.as_str()) {
                out.push(format!("entry {:?} is listed more than once", e.path));
            }
        }
        out
    }
}

fn unsupported(found: u32) -> Error {
    Error::UnsupportedFormat {
        what: "manifest",
        found: format!("schema_version {found}"),
        expected: format!("schema_version {MANIFEST_SCHEMA_VERSION}"),
    }
}

/// Checks an entry path: relative, `/`-separated, no empty, `.` or `..` components, no
/// backslashes or control characters, at most 4096 bytes.
///
/// # Errors
/// Why the path is refused.
pub fn check_path(p: &str) -> std::result::Result<(), String> {
    if p.is_empty() || p.len() > 4096 {
        return Err("path must be 1-4096 bytes".to_owned());
    }
    if p.starts_with('/') {
        return Err("path must be relative".to_owned());
    }
    if p.contains('\\') || p.chars().any(char::is_control) {
        return Err("path must not contain backslashes or control characters".to_owned());
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("path must not contain empty, '.' or '..' components".to_owned());
    }
    Ok(())
}

/// Checks the shape of a CID string (the content crate computes and compares the value).
///
/// # Errors
/// Why the string cannot be a CID.
pub fn check_cid(c: &str) -> std::result::Result<(), String> {
    if c.is_empty() || c.len() > 512 || !c.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "{c:?} is not a CID (1-512 ASCII letters and digits)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut meta = serde_json::Map::new();
        meta.insert("licence".into(), "CC-BY-4.0".into());
        meta.insert(
            "\u{e9}t\u{e9}".into(),
            serde_json::json!({"n": 3, "l": [1, "two", null]}),
        );
        Manifest::new(
            ManifestParams {
                name: "set".into(),
                version: 3,
                version_label: Some("2026.12\t\u{1}\u{7f}".into()),
                created: SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000),
                valid_for: Duration::from_secs(86_400),
                previous: Some("QmPrev".into()),
                cid_profile: "unixfs-v1/cidv0".into(),
                metadata: meta,
            },
            vec![
                Entry {
                    path: "b/x.bin".into(),
                    cid: "QmB".into(),
                    size: 5,
                    sha256: Some(Sha256Hex([9; 32])),
                },
                Entry {
                    path: "a\"q \u{e9}.txt".into(),
                    cid: "QmA".into(),
                    size: 0,
                    sha256: None,
                },
            ],
        )
        .unwrap()
    }

    #[test]
    fn hand_written_encoding_equals_generic_jcs() {
        let m = sample();
        let mut v = serde_json::to_value(&m).unwrap();
        v.as_object_mut().unwrap().remove("signatures");
        assert_eq!(
            m.canonical_bytes().unwrap(),
            crate::canonical::canonicalize(&v).unwrap()
        );
        let mut minimal = m.clone();
        minimal.previous = None;
        minimal.version_label = None;
        minimal.metadata = StrictObject::default();
        let mut v = serde_json::to_value(&minimal).unwrap();
        v.as_object_mut().unwrap().remove("signatures");
        assert_eq!(
            minimal.canonical_bytes().unwrap(),
            crate::canonical::canonicalize(&v).unwrap()
        );
    }

    #[test]
    fn timestamps_have_one_spelling() {
        assert!(Timestamp::parse("2026-12-01T10:00:00Z").is_ok());
        assert!(Timestamp::parse("2026-12-01T10:00:00.000Z").is_err());
        assert!(Timestamp::parse("2026-12-01T10:00:00+00:00").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn paths() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a/\u{0}",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path("a/b.c").is_ok());
    }

    #[test]
    fn parse_round_trip_and_whitespace_independence() {
        let m = sample();
        let pretty = m.to_json().unwrap();
        let compact = serde_json::to_vec(&m).unwrap();
        let a = Manifest::parse(&pretty).unwrap();
        let b = Manifest::parse(&compact).unwrap();
        assert_eq!(a.digest().unwrap(), m.digest().unwrap());
        assert_eq!(b.digest().unwrap(), m.digest().unwrap());
    }
}
