//! The one error enum of keel-chain.

use std::time::Duration;

/// Why a call to an upstream produced no JSON-RPC answer. Each variant knows whether the same
/// request may be sent to another upstream ([`CallError::is_retryable`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The connection could not be made or broke (refused, reset, DNS).
    #[error("upstream {upstream} unreachable: {reason}")]
    Connect {
        /// Upstream name.
        upstream: String,
        /// What the transport said (never the URL).
        reason: String,
    },
    /// No answer within the deadline.
    #[error("upstream {upstream} timed out after {after:?}")]
    Timeout {
        /// Upstream name.
        upstream: String,
        /// Time waited.
        after: Duration,
    },
    /// An HTTP status other than 200.
    #[error("upstream {upstream} answered HTTP {status}")]
    Status {
        /// Upstream name.
        upstream: String,
        /// The HTTP status.
        status: u16,
    },
    /// The upstream has as many calls in flight as it may.
    #[error("upstream {upstream} is at its in-flight limit")]
    Busy {
        /// Upstream name.
        upstream: String,
    },
    /// The answer body grew past the upstream's `max_response_bytes`; it was cut off there
    /// (never read whole).
    #[error(
        "upstream {upstream} sent an answer larger than {limit} bytes (its max_response_bytes); the rest was not read"
    )]
    TooLarge {
        /// Upstream name.
        upstream: String,
        /// The limit that was passed.
        limit: usize,
    },
    /// The body was not a JSON-RPC response.
    #[error("upstream {upstream} sent an invalid response: {reason}")]
    Invalid {
        /// Upstream name.
        upstream: String,
        /// What was wrong.
        reason: String,
    },
}

impl CallError {
    /// Whether the request may be retried on another upstream: true for transport failures,
    /// timeouts, HTTP 5xx and 429, a full upstream, oversized answers and garbage responses.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::Busy { .. }
            | Self::TooLarge { .. }
            | Self::Invalid { .. } => true,
        }
    }

    /// Whether the failure says something about the upstream's health (a full upstream is
    /// merely busy).
    pub(crate) fn counts_against_health(&self) -> bool {
        !matches!(self, Self::Busy { .. })
    }
}

/// Errors of building the chain model.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// An upstream has neither `url` nor a readable `url_file` (config validation prevents it).
    #[error("upstream {upstream} of chain {chain} has no URL")]
    NoUrl {
        /// Chain name.
        chain: String,
        /// Upstream name.
        upstream: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for upstream {upstream}: {reason}")]
    Client {
        /// Upstream name.
        upstream: String,
        /// Why.
        reason: String,
    },
}
