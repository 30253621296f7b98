//! The crate's one error type.

/// Why a check failed. Every variant names what was wrong precisely enough to be written into
/// evidence; none of them is retryable against the same answer (retry on another upstream).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A proof node's hash (or inline bytes) is not what its parent (or the trusted state root,
    /// for node 0) commits to: the proof does not belong to this root.
    #[error(
        "{trie} proof node {index} does not match the hash committed to by {parent}: expected {expected}, got {got}"
    )]
    NodeMismatch {
        /// `account` or `storage[i]`.
        trie: String,
        /// Index of the offending node in the proof list.
        index: usize,
        /// `the state root`, `the storage root` or `node N`.
        parent: String,
        /// The committed reference (hex).
        expected: String,
        /// keccak of the node received (hex).
        got: String,
    },
    /// A proof node is not valid RLP or not a valid trie node.
    #[error("{trie} proof node {index} is malformed: {reason}")]
    BadNode {
        /// `account` or `storage[i]`.
        trie: String,
        /// Index of the offending node in the proof list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The proof stops before the key's path is resolved (a hashed child is referenced but the
    /// next node is missing).
    #[error("{trie} proof ends after {nodes} nodes before the key is resolved")]
    ProofTooShort {
        /// `account` or `storage[i]`.
        trie: String,
        /// Number of nodes received.
        nodes: usize,
    },
    /// The proof carries nodes that the path to the key does not use.
    #[error("{trie} proof has {extra} node(s) after the key is resolved at node {resolved_at}")]
    ProofTooLong {
        /// `account` or `storage[i]`.
        trie: String,
        /// Index of the node that resolved the key.
        resolved_at: usize,
        /// Number of unused trailing nodes.
        extra: usize,
    },
    /// A proof for an empty trie was non-empty, or an empty proof was given for a non-empty trie.
    #[error("{trie} proof is empty but the root {root} is not the empty-trie root")]
    EmptyProofForNonEmptyRoot {
        /// `account` or `storage[i]`.
        trie: String,
        /// The root the proof should open.
        root: String,
    },
    /// The value the proof proves differs from the value the upstream claims.
    #[error("{field} claimed {claimed} but the proof shows {proven}")]
    ValueMismatch {
        /// Which value (`balance`, `nonce`, `codeHash`, `storageHash`, `storage[i].value`, ...).
        field: String,
        /// What the answer says.
        claimed: String,
        /// What the proof proves.
        proven: String,
    },
    /// The `eth_getProof` answer does not have the expected shape.
    #[error("eth_getProof answer is malformed: {0}")]
    BadAnswer(String),
    /// The answer is for other inputs than the ones asked (address, storage keys).
    #[error("eth_getProof answer is for {field} {got}, not the requested {expected}")]
    WrongSubject {
        /// `address` or `storageProof[i].key`.
        field: String,
        /// What was requested.
        expected: String,
        /// What the answer names.
        got: String,
    },
    /// keccak(code) is not the proven code hash.
    #[error("code hash mismatch: the proof commits to {expected}, the code hashes to {got}")]
    CodeHashMismatch {
        /// The proven code hash.
        expected: String,
        /// keccak of the bytes received.
        got: String,
    },
    /// An upstream answer repeats an object key: parsers disagree on which value such an answer
    /// holds, so it is no answer (neither compared, verified nor served).
    #[error("the answer has a duplicate key at {path}")]
    DuplicateKey {
        /// Where, e.g. `result.transactions[3].hash`.
        path: String,
    },
    /// An upstream answer (or a part of one) is not the JSON it should be.
    #[error("{what} is not valid JSON: {reason}")]
    BadJson {
        /// Which part (`the reply`, `result`, `error`).
        what: String,
        /// The parser's message.
        reason: String,
    },
    /// A hex input (address, key, hash) is not what it should be.
    #[error("invalid {what}: {reason}")]
    BadInput {
        /// Which input.
        what: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Block-tag pinning could not read the request's params.
    #[error("cannot pin the block of {method}: {reason}")]
    BadParams {
        /// The JSON-RPC method.
        method: String,
        /// What is wrong with its params.
        reason: String,
    },
    /// An evidence record is larger than [`crate::evidence::MAX_RECORD_BYTES`] even after
    /// oversized answers were replaced by their digests.
    #[error("evidence record of {size} bytes exceeds the {max}-byte limit")]
    RecordTooLarge {
        /// Serialized size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The evidence log could not be read or written; check the data directory's permissions
    /// and free space.
    #[error("evidence log {path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's error text.
        message: String,
    },
}

impl VerifyError {
    /// True when the error condemns the upstream's answer (a forged or broken proof, a value
    /// that the proof contradicts, an answer for something else): record it as evidence,
    /// penalise that upstream and retry on another one. False when the fault is on keel's or the
    /// client's side (bad input, unpinnable params, the evidence log itself): retrying on
    /// another upstream will not help.
    pub fn is_upstream_fault(&self) -> bool {
        match self {
            Self::NodeMismatch { .. }
            | Self::BadNode { .. }
            | Self::ProofTooShort { .. }
            | Self::ProofTooLong { .. }
            | Self::EmptyProofForNonEmptyRoot { .. }
            | Self::ValueMismatch { .. }
            | Self::BadAnswer(_)
            | Self::WrongSubject { .. }
            | Self::CodeHashMismatch { .. }
            | Self::DuplicateKey { .. }
            | Self::BadJson { .. } => true,
            Self::BadInput { .. }
            | Self::BadParams { .. }
            | Self::RecordTooLarge { .. }
            | Self::Io { .. } => false,
        }
    }
}

/// Result with [`VerifyError`].
pub type Result<T, E = VerifyError> = std::result::Result<T, E>;
