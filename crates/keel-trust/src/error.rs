//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `keel-trust`, each message saying what to do about it.
///
/// Verification of a manifest does not fail with this type: a manifest that parses but is not
/// acceptable produces a [`crate::Report`] listing every [`crate::Problem`]. This type is for
/// inputs that cannot be used at all (unreadable files, wrong passwords, malformed documents).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot read", "cannot write", …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A private key file is readable by group or others.
    #[error(
        "private key file {path} is readable by group or others (mode {mode:04o}); \
         run `chmod 600 {path}` and consider the key exposed if others could log in"
    )]
    InsecureKeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A password file is readable by group or others.
    #[error(
        "password file {path} is readable by group or others (mode {mode:04o}); \
         run `chmod 600 {path}` and consider the password exposed if others could log in"
    )]
    InsecurePasswordFilePermissions {
        /// The password file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A password file holds no password.
    #[error("password file {path} is {reason}; put the password on its first line")]
    BadPasswordFile {
        /// The password file.
        path: PathBuf,
        /// What is wrong ("empty", "not UTF-8", "larger than 65536 bytes").
        reason: String,
    },
    /// A file that would be created already exists.
    #[error("{path} already exists; choose another name or directory, or remove it first")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A JSON document ended early.
    #[error("{what} is truncated (JSON ends early at line {line}, column {column})")]
    Truncated {
        /// Which kind of document ("key file", "manifest", "trust policy", …).
        what: &'static str,
        /// Line where the input ended.
        line: usize,
        /// Column where the input ended.
        column: usize,
    },
    /// A JSON document is not valid or does not follow its schema.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// Which kind of document.
        what: &'static str,
        /// What is wrong, with line and column where known.
        reason: String,
    },
    /// A document is larger than this crate accepts.
    #[error("{what} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Which kind of document.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A document of a type or schema version this build does not understand.
    #[error(
        "{what} has type/version {found:?}; this keel understands {expected:?}; upgrade keel or check the file"
    )]
    UnsupportedFormat {
        /// Which kind of document.
        what: &'static str,
        /// What the document says.
        found: String,
        /// What this build understands.
        expected: String,
    },
    /// The password does not open this key.
    #[error("wrong password for key {key_id} ({name})")]
    WrongPassword {
        /// Key id from the file.
        key_id: String,
        /// Key name from the file.
        name: String,
    },
    /// The password was right but the encrypted key or its header was changed.
    #[error(
        "key file for {key_id} ({name}) was modified or corrupted: the password is right but the \
         encrypted key fails authentication; restore the file from a backup"
    )]
    KeyFileTampered {
        /// Key id from the file.
        key_id: String,
        /// Key name from the file.
        name: String,
    },
    /// The decrypted private key does not belong to the public key in the same file.
    #[error(
        "key file for {key_id}: the decrypted private key does not match the public key in the file; restore it from a backup"
    )]
    KeyMismatch {
        /// Key id from the file.
        key_id: String,
    },
    /// Argon2id parameters are out of the accepted range.
    #[error("Argon2id parameters {reason}")]
    KdfParams {
        /// What is out of range.
        reason: String,
    },
    /// Deriving the key from the password failed.
    #[error("Argon2id key derivation failed: {0}")]
    Kdf(String),
    /// The password is empty.
    #[error("the password is empty; choose a password (a long passphrase is best)")]
    EmptyPassword,
    /// A public key is not a usable Ed25519 key.
    #[error("invalid public key{}: {reason}", key_id.as_ref().map(|k| format!(" {k}")).unwrap_or_default())]
    InvalidPublicKey {
        /// The key id, where known.
        key_id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A trust policy breaks a rule (threshold, duplicate keys, …).
    #[error("invalid trust policy: {0}")]
    InvalidPolicy(String),
    /// A manifest breaks a rule of its schema.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// A value cannot be encoded canonically (floats, integers beyond 2^53 - 1).
    #[error("cannot encode canonically: {0}")]
    NotCanonical(String),
    /// A new trust policy is not accepted as the successor of the current one.
    #[error("trust policy rotation to serial {serial} rejected: {reason}")]
    RotationRejected {
        /// Serial of the rejected policy.
        serial: u64,
        /// Why.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// The anti-rollback state file cannot be used.
    #[error("state file {path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Classifies a serde_json error on a document of kind `what`.
    pub(crate) fn json(what: &'static str, e: &serde_json::Error) -> Self {
        if e.is_eof() {
            Self::Truncated {
                what,
                line: e.line(),
                column: e.column(),
            }
        } else {
            Self::Malformed {
                what,
                reason: e.to_string(),
            }
        }
    }
}
