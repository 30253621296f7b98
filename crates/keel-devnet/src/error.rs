//! The one error enum of keel-devnet.

/// Why the devnet could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// anvil is not installed where keel looks.
    #[error(
        "anvil not found (looked in: {tried}); run ./scripts/install-tools (it installs the pinned npm package {pkg} into ./.tools), or set KEEL_ANVIL or [devnet] anvil to its path",
        pkg = crate::ANVIL_PACKAGE
    )]
    AnvilNotFound {
        /// Places searched.
        tried: String,
    },
    /// anvil could not be started.
    #[error("cannot start anvil at {path}: {source}")]
    Spawn {
        /// The binary.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// anvil misbehaved.
    #[error("devnet: {0}")]
    Anvil(String),
    /// A JSON-RPC call to a node failed.
    #[error("devnet node {url}: {method} failed: {reason}")]
    Rpc {
        /// Node URL (a loopback address, no secret).
        url: String,
        /// Method called.
        method: String,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("devnet: cannot {what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}
