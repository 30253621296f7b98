//! Ed25519 keys: generation, password-encrypted private key files, public key files, key ids.
//!
//! A private key file is JSON. The 32-byte Ed25519 seed is encrypted with XChaCha20-Poly1305
//! under a key derived from the password with Argon2id (parameters stored in the file). The
//! Argon2id output is 64 bytes: the first 32 are the encryption key, the last 32 a password check
//! stored in the file, so a wrong password and a modified file give different errors. Every other
//! field of the file is authenticated as associated data.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::canonical::{self, from_hex, to_hex};
use crate::error::{Error, Result};
use crate::fsutil;

const SECRET_TYPE: &str = "keel-ed25519-secret-key";
const PUBLIC_TYPE: &str = "keel-ed25519-public-key";
const FORMAT_VERSION: u32 = 1;
/// Key files are tiny; anything bigger is not a key file.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// A password file holds one line; anything bigger is not a password file.
const MAX_PASSWORD_FILE_BYTES: u64 = 64 * 1024;

/// A key's fingerprint: the first 16 bytes of SHA-256 over the 32-byte public key, shown as 32
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 16]);

impl KeyId {
    /// The id of a public key.
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        from_hex::<16>(s)
            .map(Self)
            .map_err(|e| Error::InvalidPublicKey {
                key_id: Some(s.to_owned()),
                reason: format!("key id: {e}"),
            })
    }
}

/// A named Ed25519 public key that passed the strict checks of [`parse_public_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Human name, e.g. "alice-2026".
    pub name: String,
    /// The key.
    pub key: VerifyingKey,
    /// Its fingerprint.
    pub id: KeyId,
}

/// Parses and checks a 64-hex-digit Ed25519 public key: it must decode to a curve point, use
/// the canonical encoding, and not be of small order (such keys accept forged signatures).
///
/// # Errors
/// [`Error::InvalidPublicKey`] saying which check failed.
pub fn parse_public_key(hex: &str) -> Result<VerifyingKey> {
    let bad = |reason: String| Error::InvalidPublicKey {
        key_id: None,
        reason,
    };
    let bytes: [u8; 32] =
        from_hex(hex).map_err(|e| bad(format!("Ed25519 public keys are 32 bytes as hex: {e}")))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| bad("not a point on the Ed25519 curve".to_owned()))?;
    if key.to_edwards().compress().to_bytes() != bytes {
        return Err(bad("non-canonical point encoding".to_owned()));
    }
    if key.is_weak() {
        return Err(bad(
            "a small-order point (such a key accepts forged signatures)".to_owned(),
        ));
    }
    if !key.to_edwards().is_torsion_free() {
        return Err(bad(
            "a point with a small-order component (no honestly generated key has one)".to_owned(),
        ));
    }
    Ok(key)
}

/// Verifies an Ed25519 signature strictly (RFC 8032 §5.1.7 with canonical `S`, canonical `R`
/// and `A`, and neither of small order). Every flagged C2SP/CCTV edge-case vector is rejected.
pub fn verify_strict(key: &VerifyingKey, msg: &[u8], sig: &[u8; 64]) -> bool {
    // `VerifyingKey::verify_strict` checks S < L, rejects small-order R and A, and compares
    // the encoding of the recomputed R with the given bytes (so a non-canonical R fails).
    // On top: A must use its canonical encoding, and neither A nor R may have a small-order
    // component (no honest signer produces one; refusing them makes the result independent
    // of the verification equation used).
    let point = key.to_edwards();
    if point.compress().to_bytes() != *key.as_bytes() || !point.is_torsion_free() {
        return false;
    }
    verify_strict_checked_key(key, msg, sig)
}

/// [`verify_strict`] for a key that already passed [`parse_public_key`] (keys in a
/// [`crate::Keyring`]): skips re-checking the key.
pub(crate) fn verify_strict_checked_key(key: &VerifyingKey, msg: &[u8], sig: &[u8; 64]) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig[..32]);
    match curve25519_dalek::edwards::CompressedEdwardsY(r).decompress() {
        Some(p) if p.is_torsion_free() && p.compress().to_bytes() == r => {}
        _ => return false,
    }
    key.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
}

/// The public half as stored in `NAME.pub`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyFile {
    /// Always `keel-ed25519-public-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version, 1.
    pub version: u32,
    /// Human name.
    pub name: String,
    /// Fingerprint (derived; checked on load).
    pub key_id: String,
    /// 32-byte Ed25519 public key, lowercase hex.
    pub public_key: String,
}

impl PublicKeyFile {
    /// The file form of a public key.
    pub fn new(key: &PublicKey) -> Self {
        Self {
            kind: PUBLIC_TYPE.to_owned(),
            version: FORMAT_VERSION,
            name: key.name.clone(),
            key_id: key.id.to_string(),
            public_key: to_hex(key.key.as_bytes()),
        }
    }

    /// Parses and checks a public key file's bytes.
    ///
    /// # Errors
    /// Malformed JSON, wrong type or version, an invalid key, or a key id that does not match.
    pub fn parse(bytes: &[u8]) -> Result<PublicKey> {
        let f: Self =
            serde_json::from_slice(bytes).map_err(|e| Error::json("public key file", &e))?;
        if f.kind != PUBLIC_TYPE || f.version != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                what: "public key file",
                found: format!("{} v{}", f.kind, f.version),
                expected: format!("{PUBLIC_TYPE} v{FORMAT_VERSION}"),
            });
        }
        let key = parse_public_key(&f.public_key)?;
        let id = KeyId::of(&key);
        if id.to_string() != f.key_id {
            return Err(Error::InvalidPublicKey {
                key_id: Some(f.key_id),
                reason: format!("key_id does not match the key (the key's id is {id})"),
            });
        }
        Ok(PublicKey {
            name: f.name,
            key,
            id,
        })
    }

    /// Reads and checks a public key file.
    ///
    /// # Errors
    /// As [`PublicKeyFile::parse`], plus I/O errors.
    pub fn read(path: &Path) -> Result<PublicKey> {
        Self::parse(&fsutil::read_bounded(
            path,
            "public key file",
            MAX_KEY_FILE_BYTES,
        )?)
    }
}

/// Argon2id cost parameters, stored in every private key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The default for new keys: 64 MiB, 3 passes, 1 lane (stronger than OWASP's minimum of
    /// 19 MiB / 2 passes; about 0.3 s on one core of a current server).
    pub const DEFAULT: Self = Self {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// Cheap parameters for tests only. Never use for real keys.
    pub const INSECURE_FOR_TESTS: Self = Self {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    /// The most memory a key file may ask for when opened (4 GiB), bounding what a hostile file
    /// can make us allocate.
    pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    /// The most passes a key file may ask for.
    pub const MAX_T_COST: u32 = 64;
    /// The most lanes a key file may ask for.
    pub const MAX_P_COST: u32 = 64;

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::KdfParams { reason });
        if self.p_cost == 0 || self.p_cost > Self::MAX_P_COST {
            return bad(format!(
                "p_cost {} is outside 1..={}",
                self.p_cost,
                Self::MAX_P_COST
            ));
        }
        if self.t_cost == 0 || self.t_cost > Self::MAX_T_COST {
            return bad(format!(
                "t_cost {} is outside 1..={}",
                self.t_cost,
                Self::MAX_T_COST
            ));
        }
        if self.m_cost_kib < 8 * self.p_cost || self.m_cost_kib > Self::MAX_M_COST_KIB {
            return bad(format!(
                "m_cost_kib {} is outside {}..={}",
                self.m_cost_kib,
                8 * self.p_cost,
                Self::MAX_M_COST_KIB
            ));
        }
        Ok(())
    }

    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 64]>> {
        self.check()?;
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(64))
            .map_err(|e| Error::KdfParams {
                reason: e.to_string(),
            })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 64]);
        argon
            .hash_password_into(password, salt, out.as_mut())
            .map_err(|e| Error::Kdf(e.to_string()))?;
        Ok(out)
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The `kdf` object of a private key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfSection {
    /// Always `argon2id`.
    pub alg: String,
    /// Argon2 version, 19 (0x13).
    pub version: u32,
    /// Costs.
    #[serde(flatten)]
    pub params: KdfParams,
    /// 16 random bytes, hex.
    pub salt: String,
}

/// A private key file: header in the clear, the seed encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptedKey {
    /// Always `keel-ed25519-secret-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version, 1.
    pub version: u32,
    /// Human name.
    pub name: String,
    /// Fingerprint of the public key.
    pub key_id: String,
    /// Public key, hex.
    pub public_key: String,
    /// Key derivation.
    pub kdf: KdfSection,
    /// Always `xchacha20poly1305`.
    pub cipher: String,
    /// 24 random bytes, hex.
    pub nonce: String,
    /// Last 32 bytes of the Argon2id output, hex: tells a wrong password from a damaged file.
    pub password_check: String,
    /// 32-byte seed encrypted, followed by the 16-byte tag, hex.
    pub ciphertext: String,
}

impl EncryptedKey {
    /// Parses a private key file's bytes (without decrypting).
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::Malformed`] or [`Error::UnsupportedFormat`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let f: Self = serde_json::from_slice(bytes).map_err(|e| Error::json("key file", &e))?;
        if f.kind != SECRET_TYPE || f.version != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                what: "key file",
                found: format!("{} v{}", f.kind, f.version),
                expected: format!("{SECRET_TYPE} v{FORMAT_VERSION}"),
            });
        }
        if f.kdf.alg != "argon2id" || f.kdf.version != 0x13 || f.cipher != "xchacha20poly1305" {
            return Err(Error::UnsupportedFormat {
                what: "key file",
                found: format!("{} v{} + {}", f.kdf.alg, f.kdf.version, f.cipher),
                expected: "argon2id v19 + xchacha20poly1305".to_owned(),
            });
        }
        Ok(f)
    }

    /// Reads a private key file, refusing it if group or others can read it.
    ///
    /// # Errors
    /// [`Error::InsecureKeyPermissions`], I/O errors, and those of [`EncryptedKey::parse`].
    pub fn read(path: &Path) -> Result<Self> {
        fsutil::check_private_mode(path)?;
        Self::parse(&fsutil::read_bounded(path, "key file", MAX_KEY_FILE_BYTES)?)
    }

    /// Writes the file with mode 0600, atomically; refuses to replace an existing file unless
    /// `overwrite`.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] or I/O errors.
    pub fn write(&self, path: &Path, overwrite: bool) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| Error::Malformed {
            what: "key file",
            reason: e.to_string(),
        })?;
        json.push(b'\n');
        fsutil::write_atomic(path, &json, true, overwrite)
    }

    /// The associated data: every header field, canonically encoded.
    fn aad(&self) -> Result<Vec<u8>> {
        let mut header = serde_json::to_value(self).map_err(|e| Error::Malformed {
            what: "key file",
            reason: e.to_string(),
        })?;
        if let Some(obj) = header.as_object_mut() {
            obj.remove("ciphertext");
            obj.remove("password_check");
        }
        canonical::canonicalize(&header)
    }

    /// Decrypts the key.
    ///
    /// # Errors
    /// [`Error::WrongPassword`], [`Error::KeyFileTampered`], [`Error::KeyMismatch`], or
    /// [`Error::Malformed`] for fields that are not the right hex lengths.
    pub fn decrypt(&self, password: &[u8]) -> Result<SecretKey> {
        let malformed = |field: &str, e: String| Error::Malformed {
            what: "key file",
            reason: format!("{field}: {e}"),
        };
        let salt: [u8; 16] = from_hex(&self.kdf.salt).map_err(|e| malformed("kdf.salt", e))?;
        let nonce: [u8; 24] = from_hex(&self.nonce).map_err(|e| malformed("nonce", e))?;
        let check: [u8; 32] =
            from_hex(&self.password_check).map_err(|e| malformed("password_check", e))?;
        let ct: [u8; 48] = from_hex(&self.ciphertext).map_err(|e| malformed("ciphertext", e))?;
        let public: [u8; 32] =
            from_hex(&self.public_key).map_err(|e| malformed("public_key", e))?;

        let derived = self.kdf.params.derive(password, &salt)?;
        let (enc_key, derived_check) = derived.split_at(32);
        if !constant_time_eq(derived_check, &check) {
            return Err(Error::WrongPassword {
                key_id: self.key_id.clone(),
                name: self.name.clone(),
            });
        }
        let cipher =
            XChaCha20Poly1305::new_from_slice(enc_key).map_err(|e| Error::Kdf(e.to_string()))?;
        let aad = self.aad()?;
        let seed = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::KeyFileTampered {
                key_id: self.key_id.clone(),
                name: self.name.clone(),
            })?;
        let mut seed = Zeroizing::new(seed);
        let bytes: &[u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| Error::KeyFileTampered {
                key_id: self.key_id.clone(),
                name: self.name.clone(),
            })?;
        let signing = SigningKey::from_bytes(bytes);
        seed.zeroize();
        if signing.verifying_key().as_bytes() != &public
            || KeyId::of(&signing.verifying_key()).to_string() != self.key_id
        {
            return Err(Error::KeyMismatch {
                key_id: self.key_id.clone(),
            });
        }
        Ok(SecretKey {
            name: self.name.clone(),
            signing,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| Error::Random(e.to_string()))?;
    Ok(out)
}

/// A decrypted private key. The seed is wiped from memory when this is dropped.
pub struct SecretKey {
    name: String,
    signing: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("name", &self.name)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A new random key.
    ///
    /// # Errors
    /// [`Error::Random`] if the OS random number generator fails.
    pub fn generate(name: &str) -> Result<Self> {
        let seed = Zeroizing::new(random::<32>()?);
        Ok(Self {
            name: name.to_owned(),
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// A key from a 32-byte seed (tests and fixtures).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Self {
        Self {
            name: name.to_owned(),
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's fingerprint.
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.signing.verifying_key())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let key = self.signing.verifying_key();
        PublicKey {
            name: self.name.clone(),
            key,
            id: KeyId::of(&key),
        }
    }

    /// Signs `msg` (callers pass domain-separated digests, see [`crate::Manifest::signing_message`]).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// Encrypts the key under `password` with fresh salt and nonce.
    ///
    /// # Errors
    /// [`Error::EmptyPassword`], [`Error::KdfParams`], [`Error::Random`].
    pub fn encrypt(&self, password: &[u8], params: KdfParams) -> Result<EncryptedKey> {
        if password.is_empty() {
            return Err(Error::EmptyPassword);
        }
        let salt = random::<16>()?;
        let nonce = random::<24>()?;
        let derived = params.derive(password, &salt)?;
        let (enc_key, check) = derived.split_at(32);
        let public = self.public();
        let mut file = EncryptedKey {
            kind: SECRET_TYPE.to_owned(),
            version: FORMAT_VERSION,
            name: self.name.clone(),
            key_id: public.id.to_string(),
            public_key: to_hex(public.key.as_bytes()),
            kdf: KdfSection {
                alg: "argon2id".to_owned(),
                version: 0x13,
                params,
                salt: to_hex(&salt),
            },
            cipher: "xchacha20poly1305".to_owned(),
            nonce: to_hex(&nonce),
            password_check: to_hex(check),
            ciphertext: String::new(),
        };
        let aad = file.aad()?;
        let cipher =
            XChaCha20Poly1305::new_from_slice(enc_key).map_err(|e| Error::Kdf(e.to_string()))?;
        let seed = Zeroizing::new(self.signing.to_bytes());
        let ct = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: seed.as_slice(),
                    aad: &aad,
                },
            )
            .map_err(|e| Error::Kdf(format!("encryption failed: {e}")))?;
        file.ciphertext = to_hex(&ct);
        Ok(file)
    }
}

/// Paths written by [`new_key_files`].
#[derive(Debug, Clone)]
pub struct NewKeyFiles {
    /// `DIR/NAME.key`, mode 0600.
    pub secret: PathBuf,
    /// `DIR/NAME.pub`.
    pub public: PathBuf,
    /// The new key.
    pub key: PublicKey,
}

/// Generates a key named `name` and writes `dir/name.key` (encrypted, mode 0600) and
/// `dir/name.pub`. `dir` is created (mode 0700) if it does not exist. Refuses to replace
/// existing files.
///
/// # Errors
/// [`Error::InvalidPublicKey`] for a name that is not a plain file name, [`Error::AlreadyExists`],
/// I/O errors, and those of [`SecretKey::encrypt`].
pub fn new_key_files(
    dir: &Path,
    name: &str,
    password: &[u8],
    params: KdfParams,
) -> Result<NewKeyFiles> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(Error::Malformed {
            what: "key name",
            reason: format!(
                "{name:?}: use 1-128 ASCII letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        });
    }
    let secret_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(Error::AlreadyExists { path: p.clone() });
        }
    }
    create_key_dir(dir)?;
    let key = SecretKey::generate(name)?;
    let enc = key.encrypt(password, params)?;
    enc.write(&secret_path, false)?;
    let public = key.public();
    write_public_key_file(&public_path, &public, false)?;
    Ok(NewKeyFiles {
        secret: secret_path,
        public: public_path,
        key: public,
    })
}

/// Creates a missing key directory and its missing parents, private to the owner: a signer's
/// first key usually goes into a directory that does not exist yet (`--out ~/.keel/keys`).
fn create_key_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::io("cannot create directory", dir, e))
}

/// Writes a public key file (mode 0644).
///
/// # Errors
/// [`Error::AlreadyExists`] or I/O errors.
pub fn write_public_key_file(path: &Path, key: &PublicKey, overwrite: bool) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(&PublicKeyFile::new(key)).map_err(|e| Error::Malformed {
            what: "public key file",
            reason: e.to_string(),
        })?;
    json.push(b'\n');
    fsutil::write_atomic(path, &json, false, overwrite)
}

/// Reads a password from the first line of `path` (its line ending removed), refusing the
/// file when group or others have any permission on it, as private key files are refused.
/// The file is checked through the open handle, so it cannot be swapped between the check
/// and the read. The bytes read, and the password returned, are wiped from memory when
/// dropped; the buffer is sized once, so no copy is left behind by a reallocation.
///
/// # Errors
/// [`Error::InsecurePasswordFilePermissions`], [`Error::BadPasswordFile`] (empty first line,
/// not UTF-8, larger than 64 KiB), I/O errors.
pub fn read_password_file(path: &Path) -> Result<Zeroizing<String>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let md = file
        .metadata()
        .map_err(|e| Error::io("cannot stat", path, e))?;
    if let Some(mode) = fsutil::shared_mode(&md) {
        return Err(Error::InsecurePasswordFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let bad = |reason: &str| Error::BadPasswordFile {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let cap = usize::try_from(MAX_PASSWORD_FILE_BYTES + 1).unwrap_or(usize::MAX);
    let mut buf = Zeroizing::new(Vec::with_capacity(cap));
    file.take(MAX_PASSWORD_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("cannot read", path, e))?;
    if buf.len() as u64 > MAX_PASSWORD_FILE_BYTES {
        return Err(bad(&format!("larger than {MAX_PASSWORD_FILE_BYTES} bytes")));
    }
    let end = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    let end = if end > 0 && buf[end - 1] == b'\r' {
        end - 1
    } else {
        end
    };
    if end == 0 {
        return Err(bad("empty"));
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| bad("not UTF-8"))?;
    let mut password = Zeroizing::new(String::with_capacity(line.len()));
    password.push_str(line);
    Ok(password)
}

/// Reads and decrypts a private key file.
///
/// # Errors
/// Those of [`EncryptedKey::read`] and [`EncryptedKey::decrypt`].
pub fn open_secret_key(path: &Path, password: &[u8]) -> Result<SecretKey> {
    EncryptedKey::read(path)?.decrypt(password)
}

/// Re-encrypts a private key file under a new password (fresh salt and nonce), keeping mode
/// 0600 and replacing the file atomically.
///
/// # Errors
/// Those of [`open_secret_key`] and [`SecretKey::encrypt`].
pub fn change_password(
    path: &Path,
    old: &[u8],
    new: &[u8],
    params: KdfParams,
) -> Result<PublicKey> {
    let key = open_secret_key(path, old)?;
    let enc = key.encrypt(new, params)?;
    enc.write(path, true)?;
    Ok(key.public())
}

/// Reads either a public key file or a private key file's public half.
///
/// # Errors
/// I/O errors, or neither format parses.
pub fn read_any_public_key(path: &Path) -> Result<PublicKey> {
    let bytes = fsutil::read_bounded(path, "key file", MAX_KEY_FILE_BYTES)?;
    if let Ok(enc) = EncryptedKey::parse(&bytes) {
        let key = parse_public_key(&enc.public_key)?;
        let id = KeyId::of(&key);
        if id.to_string() != enc.key_id {
            return Err(Error::InvalidPublicKey {
                key_id: Some(enc.key_id),
                reason: format!("key_id does not match the key (its id is {id})"),
            });
        }
        return Ok(PublicKey {
            name: enc.name,
            key,
            id,
        });
    }
    PublicKeyFile::parse(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: KdfParams = KdfParams::INSECURE_FOR_TESTS;

    #[test]
    fn round_trip() {
        let k = SecretKey::from_seed("a", &[7; 32]);
        let enc = k.encrypt(b"pw", P).unwrap();
        let back = enc.decrypt(b"pw").unwrap();
        assert_eq!(back.public(), k.public());
    }

    #[test]
    fn wrong_password_is_named() {
        let enc = SecretKey::from_seed("a", &[7; 32])
            .encrypt(b"pw", P)
            .unwrap();
        assert!(matches!(
            enc.decrypt(b"nope"),
            Err(Error::WrongPassword { .. })
        ));
    }

    #[test]
    fn tampered_header_or_ciphertext_is_named() {
        let enc = SecretKey::from_seed("a", &[7; 32])
            .encrypt(b"pw", P)
            .unwrap();
        let mut renamed = enc.clone();
        renamed.name = "mallory".into();
        assert!(matches!(
            renamed.decrypt(b"pw"),
            Err(Error::KeyFileTampered { .. })
        ));
        let mut flipped = enc.clone();
        let first = if flipped.ciphertext.starts_with('0') {
            "1"
        } else {
            "0"
        };
        flipped.ciphertext.replace_range(0..1, first);
        assert!(matches!(
            flipped.decrypt(b"pw"),
            Err(Error::KeyFileTampered { .. })
        ));
    }

    #[test]
    fn weak_public_keys_are_refused() {
        assert!(parse_public_key(&"00".repeat(32)).is_err());
        assert!(parse_public_key(&format!("01{}", "00".repeat(31))).is_err());
        assert!(parse_public_key("abcd").is_err());
        assert!(parse_public_key(&"AB".repeat(32)).is_err());
        let good = to_hex(SecretKey::from_seed("a", &[1; 32]).public().key.as_bytes());
        assert!(parse_public_key(&good).is_ok());
    }

    #[test]
    fn out_of_range_params_are_refused() {
        let k = SecretKey::from_seed("a", &[7; 32]);
        let huge = KdfParams {
            m_cost_kib: u32::MAX,
            t_cost: 1,
            p_cost: 1,
        };
        assert!(matches!(
            k.encrypt(b"pw", huge),
            Err(Error::KdfParams { .. })
        ));
        assert!(matches!(k.encrypt(b"", P), Err(Error::EmptyPassword)));
    }
}
