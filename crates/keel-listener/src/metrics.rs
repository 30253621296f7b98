//! Listener metrics, registered under the node's `keel_` prefix as `keel_listener_…`.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Labels of per-listener series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// `gateway`, `admin`, `content_gateway` or `content_rpc`.
    pub listener: &'static str,
}

/// Labels of per-listener series with a reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The listener.
    pub listener: &'static str,
    /// Why.
    pub reason: &'static str,
}

/// Every listener's metrics. Cloning shares the series.
#[derive(Debug, Clone, Default)]
pub struct ListenerMetrics {
    /// Connections open now.
    pub connections: Family<ListenerLabel, Gauge>,
    /// Connections accepted.
    pub accepted: Family<ListenerLabel, Counter>,
    /// Connections that found the listener at `max_connections` and waited for a slot.
    pub saturated: Family<ListenerLabel, Counter>,
    /// Connections keel closed: `header_timeout` (no complete request head in time) or
    /// `idle_timeout`.
    pub closed: Family<ReasonLabel, Counter>,
    /// Requests refused by the browser checks: `host` (DNS rebinding), `origin` (a page not
    /// allowed), `cross_site` (a browser request without Origin that could change state).
    pub refused: Family<ReasonLabel, Counter>,
}

impl ListenerMetrics {
    /// Registers every series in `registry` (give it the node's `keel` sub-registry).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("listener");
        r.register(
            "connections",
            "Connections open now",
            self.connections.clone(),
        );
        r.register("accepted", "Connections accepted", self.accepted.clone());
        r.register(
            "saturated",
            "Connections that found the listener at max_connections and waited for a slot",
            self.saturated.clone(),
        );
        r.register(
            "closed",
            "Connections closed by keel (header_timeout, idle_timeout)",
            self.closed.clone(),
        );
        r.register(
            "refused",
            "Requests refused by the browser checks (host, origin, cross_site)",
            self.refused.clone(),
        );
    }
}

/// The series of one listener, looked up once.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) connections: Gauge,
    pub(crate) accepted: Counter,
    pub(crate) saturated: Counter,
    pub(crate) closed_header: Counter,
    pub(crate) closed_idle: Counter,
    pub(crate) refused_host: Counter,
    pub(crate) refused_origin: Counter,
    pub(crate) refused_cross_site: Counter,
}

impl Series {
    pub(crate) fn new(m: &ListenerMetrics, listener: &'static str) -> Self {
        // One statement per lookup: `get_or_create` returns a read guard, and a second lookup
        // of a new label in the same family while it lives would wait for ever on the write lock.
        let l = ListenerLabel { listener };
        let r = |reason| ReasonLabel { listener, reason };
        let connections = m.connections.get_or_create(&l).clone();
        let accepted = m.accepted.get_or_create(&l).clone();
        let saturated = m.saturated.get_or_create(&l).clone();
        let closed_header = m.closed.get_or_create(&r("header_timeout")).clone();
        let closed_idle = m.closed.get_or_create(&r("idle_timeout")).clone();
        let refused_host = m.refused.get_or_create(&r("host")).clone();
        let refused_origin = m.refused.get_or_create(&r("origin")).clone();
        let refused_cross_site = m.refused.get_or_create(&r("cross_site")).clone();
        Self {
            connections,
            accepted,
            saturated,
            closed_header,
            closed_idle,
            refused_host,
            refused_origin,
            refused_cross_site,
        }
    }
}
