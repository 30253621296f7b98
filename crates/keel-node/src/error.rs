//! The one error enum of keel-node.

use std::{net::SocketAddr, time::Duration};

/// Why the node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A listener could not bind.
    #[error(
        "cannot listen on {addr} for the {what}: {source}; is another process using the port? change [{what}] listen"
    )]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address tried.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The gateway's worker threads could not start.
    #[error("cannot start the gateway's worker threads: {0}")]
    Workers(std::io::Error),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The devnet could not start.
    #[error(transparent)]
    Devnet(#[from] keel_devnet::DevnetError),
    /// The chain model could not be built.
    #[error(transparent)]
    Chain(#[from] keel_chain::ChainError),
    /// The content store could not start.
    #[error(transparent)]
    Content(#[from] keel_content::Error),
    /// The monitor could not start.
    #[error(transparent)]
    Monitor(#[from] keel_monitor::MonitorError),
    /// Requests were still in flight when the grace period ended.
    #[error("requests were still in flight after the {0:?} grace period and were cut")]
    GraceExceeded(Duration),
}
