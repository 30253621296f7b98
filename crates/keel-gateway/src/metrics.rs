//! Gateway metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of per-request counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Chain name.
    pub chain: String,
    /// Method, or `other` for methods outside the known set (bounds cardinality).
    pub method: &'static str,
    /// `ok`, `rpc_error`, `rejected`, `no_upstream`, `deadline` or `failed`.
    pub outcome: &'static str,
}

/// Labels of per-chain series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabel {
    /// Chain name.
    pub chain: String,
}

/// Labels of verified-request series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerifyLabels {
    /// Chain name.
    pub chain: String,
    /// `quorum` or `proof` (the mode actually used).
    pub mode: &'static str,
    /// `verified` (answered with a checked value), `fallback` (answered unverified, as the
    /// chain's `verify.fallback` setting allows) or `failed`.
    pub outcome: &'static str,
}

/// Labels of the state-root series of proof-mode reads.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RootLabels {
    /// Chain name.
    pub chain: String,
    /// Where the root came from: `checkpoint` (configured), `remembered` (agreed by an earlier
    /// read), `observed` (the head tracker's polls) or `fetched` (asked for now).
    pub source: &'static str,
}

/// Labels of per-upstream series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Chain name.
    pub chain: String,
    /// Upstream name (never its URL).
    pub upstream: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Metrics of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// JSON-RPC requests (batch entries count one each) by chain, method and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to answer an HTTP request, seconds.
    pub request_duration_seconds: Family<ChainLabel, Histogram, fn() -> Histogram>,
    /// Upstream attempts beyond the first.
    pub retries: Family<ChainLabel, Counter>,
    /// Requests answered by another upstream than the first one tried.
    pub failovers: Family<ChainLabel, Counter>,
    /// HTTP requests being processed.
    pub in_flight: Family<ChainLabel, Gauge>,
    /// Bodies refused for size, batches refused for length, unknown chains.
    pub refused_http: Family<ChainLabel, Counter>,
    /// Verified reads by chain, mode and outcome.
    pub verified_requests: Family<VerifyLabels, Counter>,
    /// Upstream calls made by verified reads beyond the first; divided by
    /// `verified_requests` it is the extra upstream calls per verified request.
    pub verify_extra_calls: Family<VerifyLabels, Counter>,
    /// Disagreements with a quorum and failed proofs, by upstream.
    pub disagreements: Family<UpstreamLabels, Counter>,
    /// Disagreements and failed proofs found by checks clients asked for (which penalise
    /// nobody), by upstream.
    pub client_disagreements: Family<UpstreamLabels, Counter>,
    /// State roots proof-mode reads checked against, by where each came from.
    pub verify_roots: Family<RootLabels, Counter>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_duration_seconds: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            failovers: Family::default(),
            in_flight: Family::default(),
            refused_http: Family::default(),
            verified_requests: Family::default(),
            verify_extra_calls: Family::default(),
            disagreements: Family::default(),
            client_disagreements: Family::default(),
            verify_roots: Family::default(),
        }
    }
}

impl GatewayMetrics {
    /// Registers every metric (prefix the registry with `keel` first).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "rpc_requests",
            "JSON-RPC requests by chain, method and outcome",
            self.requests.clone(),
        );
        r.register(
            "rpc_request_duration_seconds",
            "Time to answer an HTTP request",
            self.request_duration_seconds.clone(),
        );
        r.register(
            "rpc_retries",
            "Upstream attempts beyond the first",
            self.retries.clone(),
        );
        r.register(
            "rpc_failovers",
            "Requests answered by another upstream than the first tried",
            self.failovers.clone(),
        );
        r.register(
            "rpc_in_flight",
            "HTTP requests being processed",
            self.in_flight.clone(),
        );
        r.register(
            "rpc_refused_http",
            "HTTP requests refused before JSON-RPC (size, batch length)",
            self.refused_http.clone(),
        );
        r.register(
            "rpc_verified_requests",
            "Verified reads by chain, mode and outcome",
            self.verified_requests.clone(),
        );
        r.register(
            "rpc_verify_extra_calls",
            "Upstream calls of verified reads beyond the first",
            self.verify_extra_calls.clone(),
        );
        r.register(
            "rpc_verify_disagreements",
            "Disagreements with a quorum and failed proofs, by upstream",
            self.disagreements.clone(),
        );
        r.register(
            "rpc_verify_client_disagreements",
            "Disagreements and failed proofs found by checks clients asked for, by upstream (no penalty)",
            self.client_disagreements.clone(),
        );
        r.register(
            "rpc_verify_roots",
            "State roots of proof-mode reads by where they came from",
            self.verify_roots.clone(),
        );
    }
}

/// The method as a metric label: itself when it is a well-known method, else `other`.
pub(crate) fn method_label(method: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "eth_accounts",
        "eth_blobBaseFee",
        "eth_blockNumber",
        "eth_call",
        "eth_chainId",
        "eth_createAccessList",
        "eth_estimateGas",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_getBalance",
        "eth_getBlockByHash",
        "eth_getBlockByNumber",
        "eth_getBlockReceipts",
        "eth_getBlockTransactionCountByHash",
        "eth_getBlockTransactionCountByNumber",
        "eth_getCode",
        "eth_getFilterChanges",
        "eth_getFilterLogs",
        "eth_getLogs",
        "eth_getProof",
        "eth_getRawTransactionByHash",
        "eth_getStorageAt",
        "eth_getTransactionByBlockHashAndIndex",
        "eth_getTransactionByBlockNumberAndIndex",
        "eth_getTransactionByHash",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_maxPriorityFeePerGas",
        "eth_newBlockFilter",
        "eth_newFilter",
        "eth_sendRawTransaction",
        "eth_sendTransaction",
        "eth_syncing",
        "eth_uninstallFilter",
        "net_version",
        "net_listening",
        "web3_clientVersion",
        "evm_mine",
        "anvil_mine",
    ];
    KNOWN
        .iter()
        .find(|k| **k == method)
        .copied()
        .unwrap_or("other")
}
