//! Probes. Each runs on its own interval with its own timeout and writes its results to
//! [`crate::metrics::MonitorMetrics`]; the rules read them back with the rest of keel's
//! metrics. Every answer read from a target is size-bounded.
//!
//! - [`chain`]: per chain, the monitor's own calls to every upstream (`eth_syncing`,
//!   `net_peerCount`, the block at the quorum height, compared across upstreams to catch a
//!   minority fork), plus what head tracking already knows (head age, error rate);
//! - [`synthetic`]: a self-transfer through the gateway, with inclusion time;
//! - [`http`]: HTTP(S) checks with Gatus-style conditions;
//! - [`tcp`]: TCP connects and TLS handshakes with certificate expiry;
//! - [`host`]: disk (with time-to-full), CPU, memory, open files, and disk watermark actions.

pub mod chain;
pub mod host;
pub mod http;
pub mod synthetic;
pub mod tcp;

use std::time::Duration;

/// Reads at most `max` bytes of a response body; `Err` when it is longer.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(format!("answer larger than {max} bytes"));
    }
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > max {
                    return Err(format!("answer larger than {max} bytes"));
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf),
            Err(e) => return Err(format!("body broken: {}", e.without_url())),
        }
    }
}

/// A ticker that waits `every` between runs, without bursts after a slow run.
pub(crate) fn ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(every.max(Duration::from_millis(10)));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// A stable offset in `[0, interval)` from `name`: probes sharing an interval start spread
/// over it instead of all at once.
pub(crate) fn spread(name: &str, interval: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(h.finish() % ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_stable_and_within_the_interval() {
        let i = Duration::from_secs(30);
        assert_eq!(spread("a", i), spread("a", i));
        let offsets: std::collections::HashSet<u128> = (0..100)
            .map(|n| spread(&format!("ep{n}"), i).as_millis())
            .collect();
        assert!(offsets.len() > 90, "offsets spread out");
        assert!(offsets.iter().all(|o| *o < 30_000));
    }
}
