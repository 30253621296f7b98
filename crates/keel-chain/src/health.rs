//! Health of one upstream: latency, error rate and a circuit breaker.
//!
//! The breaker is closed while calls succeed. `failure_threshold` consecutive transport failures
//! open it: the upstream is ejected for `base_ejection`. After that, exactly one call (a client
//! request or the head tracker's poll, whichever comes first) is admitted as a probe: success
//! closes the breaker, failure opens it again for twice as long (up to `max_ejection`).

use std::time::{Duration, Instant};

use keel_config::HealthConfig;
use parking_lot::Mutex;
use serde::Serialize;

/// Weight of the newest sample in the exponentially weighted averages.
const EWMA_ALPHA: f64 = 0.1;
/// Latency samples kept for percentiles.
const WINDOW: usize = 256;

/// Health of one upstream. Cheap to update from many tasks (one short lock per call).
#[derive(Debug)]
pub struct Health {
    cfg: HealthConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    ewma_latency_us: f64,
    error_rate: f64,
    timeout_rate: f64,
    timeouts: u64,
    consecutive_failures: u32,
    breaker: Breaker,
    window: [u32; WINDOW],
    window_len: usize,
    window_next: usize,
    requests: u64,
    failures: u64,
    ejections: u64,
}

#[derive(Debug, Clone, Copy)]
enum Breaker {
    Closed,
    Open { until: Instant, backoff: Duration },
    HalfOpen { backoff: Duration },
}

/// Whether a call may go to the upstream now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed.
    Yes,
    /// The breaker was open and this call is its one probe.
    Probe,
    /// The upstream is ejected.
    No,
}

/// Coarse state shown in status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamState {
    /// Serving all traffic.
    Healthy,
    /// Serving, but lagging or erroring; avoided for head-sensitive reads when lagging.
    Degraded,
    /// The circuit breaker is open; only probes reach it.
    Ejected,
    /// Its chain id has not been confirmed yet.
    Unverified,
    /// It serves another chain; it never gets traffic.
    Refused,
}

impl UpstreamState {
    /// Numeric value for the `keel_upstream_state` gauge.
    pub fn as_gauge(self) -> i64 {
        match self {
            Self::Healthy => 0,
            Self::Degraded => 1,
            Self::Ejected => 2,
            Self::Unverified => 3,
            Self::Refused => 4,
        }
    }
}

/// A copy of the health figures, for status and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    /// Exponentially weighted latency, milliseconds.
    pub latency_ewma_ms: f64,
    /// 50th percentile of recent latencies, milliseconds.
    pub latency_p50_ms: f64,
    /// 99th percentile of recent latencies, milliseconds.
    pub latency_p99_ms: f64,
    /// Exponentially weighted error rate (all failures), 0..1.
    pub error_rate: f64,
    /// Exponentially weighted rate of timeouts, 0..1.
    pub timeout_rate: f64,
    /// Calls that timed out.
    pub timeouts: u64,
    /// Whether the circuit breaker is open or half-open.
    pub ejected: bool,
    /// Calls made.
    pub requests: u64,
    /// Calls failed.
    pub failures: u64,
    /// Times the breaker opened.
    pub ejections: u64,
}

impl Health {
    /// Fresh health: closed breaker, no samples.
    pub fn new(cfg: HealthConfig) -> Self {
        Self {
            cfg,
            inner: Mutex::new(Inner {
                ewma_latency_us: 0.0,
                error_rate: 0.0,
                timeout_rate: 0.0,
                timeouts: 0,
                consecutive_failures: 0,
                breaker: Breaker::Closed,
                window: [0; WINDOW],
                window_len: 0,
                window_next: 0,
                requests: 0,
                failures: 0,
                ejections: 0,
            }),
        }
    }

    /// Whether a call could be admitted now, without claiming the probe.
    pub fn is_available(&self, now: Instant) -> bool {
        match self.inner.lock().breaker {
            Breaker::Closed => true,
            Breaker::Open { until, .. } => now >= until,
            Breaker::HalfOpen { .. } => false,
        }
    }

    /// Admits a call, claiming the probe when the ejection time is over.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut g = self.inner.lock();
        match g.breaker {
            Breaker::Closed => Admission::Yes,
            Breaker::Open { until, backoff } if now >= until => {
                g.breaker = Breaker::HalfOpen { backoff };
                Admission::Probe
            }
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => Admission::No,
        }
    }

    /// Records a call that got an answer after `latency`.
    pub fn record_success(&self, latency: Duration) {
        let mut g = self.inner.lock();
        let us = latency.as_micros().min(u128::from(u32::MAX)) as f64;
        g.ewma_latency_us = if g.requests == 0 {
            us
        } else {
            g.ewma_latency_us + EWMA_ALPHA * (us - g.ewma_latency_us)
        };
        g.error_rate *= 1.0 - EWMA_ALPHA;
        g.timeout_rate *= 1.0 - EWMA_ALPHA;
        g.requests += 1;
        g.consecutive_failures = 0;
        let i = g.window_next;
        g.window[i] = us as u32;
        g.window_next = (i + 1) % WINDOW;
        g.window_len = (g.window_len + 1).min(WINDOW);
        g.breaker = Breaker::Closed;
    }

    /// Records a failed call (transport error, timeout, HTTP 5xx or 429) at `now`; `timeout`
    /// says whether it was a timeout. Returns true when this failure ejected the upstream.
    pub fn record_failure(&self, now: Instant, timeout: bool) -> bool {
        let mut g = self.inner.lock();
        g.error_rate += EWMA_ALPHA * (1.0 - g.error_rate);
        let t = if timeout { 1.0 } else { 0.0 };
        g.timeout_rate += EWMA_ALPHA * (t - g.timeout_rate);
        g.timeouts += u64::from(timeout);
        g.requests += 1;
        g.failures += 1;
        g.consecutive_failures = g.consecutive_failures.saturating_add(1);
        let backoff = match g.breaker {
            Breaker::HalfOpen { backoff } => (backoff * 2).min(self.cfg.max_ejection),
            Breaker::Closed if g.consecutive_failures >= self.cfg.failure_threshold => {
                self.cfg.base_ejection
            }
            Breaker::Closed | Breaker::Open { .. } => return false,
        };
        g.breaker = Breaker::Open {
            until: now + backoff,
            backoff,
        };
        g.ejections += 1;
        true
    }

    /// Releases a probe that never reached the upstream (e.g. cancelled), so another may run.
    pub fn release_probe(&self, now: Instant) {
        let mut g = self.inner.lock();
        if let Breaker::HalfOpen { backoff } = g.breaker {
            g.breaker = Breaker::Open {
                until: now,
                backoff,
            };
        }
    }

    /// Exponentially weighted latency in microseconds (0 before the first answer).
    pub fn latency_ewma_us(&self) -> f64 {
        self.inner.lock().ewma_latency_us
    }

    /// Exponentially weighted error rate, 0..1.
    pub fn error_rate(&self) -> f64 {
        self.inner.lock().error_rate
    }

    /// Whether the error rate is above the configured degraded threshold.
    pub fn is_erroring(&self) -> bool {
        self.error_rate() > self.cfg.degraded_error_rate
    }

    /// Whether the breaker is open or half-open.
    pub fn is_ejected(&self) -> bool {
        !matches!(self.inner.lock().breaker, Breaker::Closed)
    }

    /// A copy of the figures.
    pub fn snapshot(&self) -> HealthSnapshot {
        let g = self.inner.lock();
        let mut samples: Vec<u32> = g.window[..g.window_len].to_vec();
        samples.sort_unstable();
        let pct = |p: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            let i = ((samples.len() - 1) as f64 * p).round() as usize;
            f64::from(samples[i]) / 1000.0
        };
        HealthSnapshot {
            latency_ewma_ms: g.ewma_latency_us / 1000.0,
            latency_p50_ms: pct(0.50),
            latency_p99_ms: pct(0.99),
            error_rate: g.error_rate,
            timeout_rate: g.timeout_rate,
            timeouts: g.timeouts,
            ejected: !matches!(g.breaker, Breaker::Closed),
            requests: g.requests,
            failures: g.failures,
            ejections: g.ejections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(HealthConfig {
            failure_threshold: 3,
            base_ejection: Duration::from_millis(100),
            max_ejection: Duration::from_millis(350),
            degraded_error_rate: 0.2,
        })
    }

    #[test]
    fn threshold_failures_eject_then_one_probe_is_admitted() {
        let h = health();
        let t0 = Instant::now();
        assert!(!h.record_failure(t0, false));
        assert!(!h.record_failure(t0, false));
        assert!(
            h.record_failure(t0, false),
            "third consecutive failure ejects"
        );
        assert_eq!(h.admit(t0), Admission::No);
        assert!(!h.is_available(t0 + Duration::from_millis(99)));
        let later = t0 + Duration::from_millis(100);
        assert!(h.is_available(later));
        assert_eq!(h.admit(later), Admission::Probe);
        assert_eq!(h.admit(later), Admission::No, "only one probe at a time");
        h.record_success(Duration::from_millis(1));
        assert_eq!(h.admit(later), Admission::Yes);
        assert!(!h.is_ejected());
    }

    #[test]
    fn failed_probes_double_the_ejection_up_to_the_cap() {
        let h = health();
        let mut now = Instant::now();
        for _ in 0..3 {
            h.record_failure(now, false);
        }
        let mut expected = Duration::from_millis(100);
        for _ in 0..4 {
            now += expected;
            assert_eq!(h.admit(now), Admission::Probe);
            assert!(h.record_failure(now, false));
            expected = (expected * 2).min(Duration::from_millis(350));
            assert!(!h.is_available(now + expected - Duration::from_millis(1)));
            assert!(h.is_available(now + expected));
        }
    }

    #[test]
    fn a_released_probe_lets_the_next_call_probe() {
        let h = health();
        let t0 = Instant::now();
        for _ in 0..3 {
            h.record_failure(t0, false);
        }
        let later = t0 + Duration::from_millis(100);
        assert_eq!(h.admit(later), Admission::Probe);
        h.release_probe(later);
        assert_eq!(
            h.admit(later),
            Admission::Probe,
            "a cancelled probe must not block recovery"
        );
    }

    #[test]
    fn success_resets_consecutive_failures() {
        let h = health();
        let now = Instant::now();
        h.record_failure(now, false);
        h.record_failure(now, false);
        h.record_success(Duration::from_millis(2));
        assert!(!h.record_failure(now, false));
        assert!(!h.is_ejected());
    }

    #[test]
    fn snapshot_reports_percentiles_and_error_rate() {
        let h = health();
        for ms in 1..=100 {
            h.record_success(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert!((s.latency_p50_ms - 50.0).abs() <= 1.0, "{s:?}");
        assert!(s.latency_p99_ms >= 98.0, "{s:?}");
        assert_eq!(s.requests, 100);
        assert_eq!(s.error_rate, 0.0);
        h.record_failure(Instant::now(), true);
        let s = h.snapshot();
        assert!(
            s.error_rate > 0.0 && s.timeout_rate > 0.0 && s.timeouts == 1,
            "{s:?}"
        );
    }
}
