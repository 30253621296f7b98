//! The crate's one error type.

use std::path::PathBuf;

use cid::Cid;

/// Everything that can go wrong in the content store. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Reading an input stream or writing an output stream failed.
    #[error("I/O error: {0}")]
    Stream(#[from] std::io::Error),
    /// The import options cannot be used.
    #[error("invalid import options: {0}")]
    InvalidOptions(String),
    /// A stored block no longer hashes to its CID. It is never served.
    #[error(
        "block {cid} is corrupt (its bytes do not hash to its CID); run `keel content verify` and re-add or re-import the content"
    )]
    Corrupt {
        /// The CID whose block failed verification.
        cid: Box<Cid>,
    },
    /// Bytes offered for a CID do not hash to it (CAR import, block put).
    #[error("block bytes do not match CID {cid}; the input is forged or damaged")]
    Mismatch {
        /// The CID the bytes claimed to be.
        cid: Box<Cid>,
    },
    /// The block is not in the local store (keel does not fetch from the network yet).
    #[error("block {0} not found in the local store; add or import it first")]
    NotFound(Box<Cid>),
    /// A CID uses a codec or hash function keel does not support.
    #[error("unsupported CID {cid}: {reason}")]
    Unsupported {
        /// The CID (or its string form).
        cid: String,
        /// What is unsupported.
        reason: String,
    },
    /// A CID, path or argument could not be parsed.
    #[error("invalid argument `{input}`: {reason}")]
    InvalidArgument {
        /// The offending input.
        input: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An upload's client sent nothing, or too little, for too long (see
    /// `ContentConfig::upload_min_bytes_per_second`); the upload was abandoned.
    #[error(
        "upload {reason}; abandoned (blocks already stored stay unpinned until garbage collection)"
    )]
    UploadTooSlow {
        /// What the client did: stalled, or how far below the minimum rate it fell.
        reason: String,
    },
    /// A block is not valid dag-pb / UnixFS.
    #[error("malformed block: {0}")]
    Malformed(String),
    /// A path does not exist inside a DAG.
    #[error("no link named `{name}` under {cid}")]
    NoSuchPath {
        /// The directory searched.
        cid: Box<Cid>,
        /// The missing name.
        name: String,
    },
    /// The DAG node has the wrong UnixFS kind for the operation.
    #[error("{cid} is {actual}, expected {expected}")]
    WrongKind {
        /// The node.
        cid: Box<Cid>,
        /// What it is.
        actual: &'static str,
        /// What the operation needs.
        expected: &'static str,
    },
    /// A name or path would escape the target directory or is not portable.
    #[error(
        "unsafe path `{0}`: names must not be empty, `.`, `..`, absolute or contain `/` or NUL"
    )]
    UnsafePath(String),
    /// A CAR file is malformed.
    #[error("invalid CAR: {0}")]
    Car(String),
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}; is another process using it?")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration cannot be used.
    #[error("content config: {0}")]
    Config(String),
    /// Garbage collection found a pin whose blocks cannot all be read; it removed nothing.
    #[error(
        "garbage collection removed nothing: pinned {pin} cannot be walked ({reason}); run `keel content verify`, then re-add or re-import it, or unpin it"
    )]
    BrokenPin {
        /// The pinned root.
        pin: Box<Cid>,
        /// What failed (a missing or corrupt block, a malformed node).
        reason: String,
    },
    /// A directory cannot be listed: two entries share a name, or its HAMT shards are
    /// inconsistent (a slot outside the bitfield, a sub-shard reached twice, an entry in the
    /// wrong slot). Such a DAG is refused, never partly used.
    #[error("directory {path} is refused: {reason}")]
    BadDirectory {
        /// The directory (its path where known, else its CID).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A directory listing stopped at a configured bound or its deadline.
    #[error("listing directory {path} stopped: {reason}")]
    ListingAborted {
        /// The directory (its path where known, else its CID).
        path: String,
        /// Which bound was reached, and the key that sets it.
        reason: String,
    },
    /// `get` or a tar archive refused an entry that could write or point outside the output.
    #[error("refusing to write {path}: {reason}")]
    UnsafeEntry {
        /// The entry's path in the output.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A background task failed.
    #[error("content task failed: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn corrupt(cid: &Cid) -> Self {
        Self::Corrupt {
            cid: Box::new(*cid),
        }
    }

    pub(crate) fn not_found(cid: &Cid) -> Self {
        Self::NotFound(Box::new(*cid))
    }

    /// Whether the error means "the content is not here" (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_) | Self::NoSuchPath { .. })
    }
}
