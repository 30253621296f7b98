//! Prometheus metrics of the content store, gateway and RPC. Each field's doc is its help text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set for HTTP metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `gateway` or `rpc`.
    pub listener: &'static str,
    /// HTTP status code.
    pub status: u16,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// All content metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Blocks written to the blockstore.
    pub blocks_written: Counter,
    /// Bytes of blocks written to the blockstore.
    pub bytes_written: Counter,
    /// Blocks stored (as of the last repo stat plus writes since).
    pub blocks_stored: Gauge,
    /// Bytes stored (as of the last repo stat plus writes since).
    pub bytes_stored: Gauge,
    /// Blocks whose bytes did not match their CID when read or verified.
    pub verification_failures: Counter,
    /// Blocks removed by garbage collection.
    pub gc_removed_blocks: Counter,
    /// File bytes imported by add (CLI and RPC).
    pub add_bytes: Counter,
    /// Seconds spent importing; add_bytes / add_seconds is the add throughput.
    pub add_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    /// HTTP requests answered, by listener and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Response body bytes sent, by listener and status.
    pub http_bytes: Family<HttpLabels, Counter>,
    /// Time to response headers, by listener and status.
    pub http_latency_seconds: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// Requests rejected by the per-IP rate limit.
    pub rate_limited: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            blocks_written: Counter::default(),
            bytes_written: Counter::default(),
            blocks_stored: Gauge::default(),
            bytes_stored: Gauge::default(),
            verification_failures: Counter::default(),
            gc_removed_blocks: Counter::default(),
            add_bytes: Counter::default(),
            add_seconds: Counter::default(),
            http_requests: Family::default(),
            http_bytes: Family::default(),
            http_latency_seconds: Family::new_with_constructor(latency),
            rate_limited: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `keel_content_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("keel_content");
        r.register(
            "blocks_written",
            "Blocks written to the blockstore",
            self.blocks_written.clone(),
        );
        r.register(
            "bytes_written",
            "Bytes of blocks written to the blockstore",
            self.bytes_written.clone(),
        );
        r.register("blocks_stored", "Blocks stored", self.blocks_stored.clone());
        r.register("bytes_stored", "Bytes stored", self.bytes_stored.clone());
        r.register(
            "verification_failures",
            "Blocks whose bytes did not match their CID when read or verified",
            self.verification_failures.clone(),
        );
        r.register(
            "gc_removed_blocks",
            "Blocks removed by garbage collection",
            self.gc_removed_blocks.clone(),
        );
        r.register(
            "add_bytes",
            "File bytes imported by add",
            self.add_bytes.clone(),
        );
        r.register(
            "add_seconds",
            "Seconds spent importing",
            self.add_seconds.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered",
            self.http_requests.clone(),
        );
        r.register(
            "http_bytes",
            "Response body bytes sent",
            self.http_bytes.clone(),
        );
        r.register(
            "http_latency_seconds",
            "Time to response headers",
            self.http_latency_seconds.clone(),
        );
        r.register(
            "rate_limited",
            "Requests rejected by the per-IP rate limit",
            self.rate_limited.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_encodes() {
        let m = Metrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        m.http_requests
            .get_or_create(&HttpLabels {
                listener: "gateway",
                status: 200,
            })
            .inc();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encode");
        assert!(
            out.contains("keel_content_http_requests_total{listener=\"gateway\",status=\"200\"} 1"),
            "{out}"
        );
        assert!(out.contains("keel_content_verification_failures_total"));
    }
}
