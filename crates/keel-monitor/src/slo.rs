//! Service level objectives from the gateway's own request outcomes, and their burn rates.
//!
//! Per chain, two SLOs:
//! - **availability**: a request is bad when its outcome is `no_upstream`, `deadline` or
//!   `failed` (keel could not answer); `rejected` (refused by policy or limits: the client's
//!   fault) is not counted at all (`keel_rpc_requests_total`);
//! - **latency**: an HTTP request is good when answered within the threshold (a bucket bound of
//!   `keel_rpc_request_duration_seconds`).
//!
//! Good and total counts are kept per minute (in memory for the SLO window, persisted so a
//! restart keeps the budget). The error ratio over a window `w` is `bad(w) / total(w)`; the
//! **burn rate** is that ratio divided by the error budget `1 - objective` (burn rate 1 spends
//! the budget exactly over the SLO window). Alerts follow the SRE workbook's multi-window,
//! multi-burn-rate scheme: each pair (long, short) fires when both windows burn faster than
//! its factor, so `keel_slo_burn_rate` exports the smaller of the two:
//!
//! | long | short | factor | budget spent at that rate | severity |
//! |---|---|---|---|---|
//! | 1h | 5m | 14.4 | 2 % in 1 h | critical |
//! | 6h | 30m | 6 | 5 % in 6 h | critical |
//! | 1d | 2h | 3 | 10 % in 1 d | warning |
//! | 3d | 6h | 1 | 10 % in 3 d | warning |

use std::collections::VecDeque;

use crate::clock::Millis;
use crate::series::SeriesStore;

/// The window pairs: (long, short, long ms, short ms, factor).
pub const PAIRS: [(&str, &str, Millis, Millis, f64); 4] = [
    ("1h", "5m", 3_600_000, 300_000, 14.4),
    ("6h", "30m", 21_600_000, 1_800_000, 6.0),
    ("1d", "2h", 86_400_000, 7_200_000, 3.0),
    ("3d", "6h", 259_200_000, 21_600_000, 1.0),
];

/// Bad outcomes of `keel_rpc_requests_total` for availability.
pub const BAD_OUTCOMES: [&str; 3] = ["no_upstream", "deadline", "failed"];

/// Per-minute good/total counts of one SLO.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Target fraction of good events.
    pub objective: f64,
    window: Millis,
    minutes: VecDeque<(i64, f64, f64)>,
    last: Option<(f64, f64)>,
}

impl Budget {
    /// An SLO with `objective` over `window`.
    pub fn new(objective: f64, window: Millis) -> Self {
        Self {
            objective,
            window,
            minutes: VecDeque::new(),
            last: None,
        }
    }

    /// Restores minutes (from the database), oldest first.
    pub fn restore(&mut self, minutes: impl IntoIterator<Item = (i64, f64, f64)>) {
        self.minutes.extend(minutes);
    }

    /// Adds `good` and `total` events at `now` directly.
    pub fn add(&mut self, now: Millis, good: f64, total: f64) {
        let minute = now.div_euclid(60_000);
        match self.minutes.back_mut() {
            Some(m) if m.0 == minute => {
                m.1 += good;
                m.2 += total;
            }
            _ => self.minutes.push_back((minute, good, total)),
        }
        let oldest = (now - self.window).div_euclid(60_000);
        while self.minutes.front().is_some_and(|m| m.0 < oldest) {
            self.minutes.pop_front();
        }
    }

    /// Feeds cumulative counters (good, total) read at `now`: the increase since the last
    /// reading is added (a counter that went down restarted from zero).
    pub fn observe(&mut self, now: Millis, good: f64, total: f64) {
        let (dg, dt) = match self.last {
            Some((pg, pt)) if total >= pt && good >= pg => (good - pg, total - pt),
            Some(_) => (good, total),
            // The first reading only sets the baseline.
            None => (0.0, 0.0),
        };
        self.last = Some((good, total));
        self.add(now, dg, dt);
    }

    /// The minute being filled: (minute, good, total).
    pub fn current_minute(&self) -> Option<(i64, f64, f64)> {
        self.minutes.back().copied()
    }

    /// Bad / total over the last `w` (the minutes that started within it, the current one
    /// included), `None` without events.
    pub fn error_ratio(&self, now: Millis, w: Millis) -> Option<f64> {
        let from = (now - w + 59_999).div_euclid(60_000);
        let (mut good, mut total) = (0.0, 0.0);
        for m in self.minutes.iter().rev() {
            if m.0 < from {
                break;
            }
            good += m.1;
            total += m.2;
        }
        (total > 0.0).then(|| ((total - good) / total).max(0.0))
    }

    /// Burn rate over `w`: error ratio / error budget (0 without events).
    pub fn burn_rate(&self, now: Millis, w: Millis) -> f64 {
        let budget = (1.0 - self.objective).max(f64::MIN_POSITIVE);
        self.error_ratio(now, w).map_or(0.0, |r| r / budget)
    }

    /// Error budget left over the SLO window: 1 untouched, 0 spent, below 0 overspent.
    pub fn remaining(&self, now: Millis) -> f64 {
        1.0 - self.burn_rate(now, self.window)
    }
}

/// Cumulative (good, total) availability counts of `chain` in the store now.
pub fn availability_counts(
    store: &SeriesStore,
    chain: &str,
    now: Millis,
    lookback: Millis,
) -> Option<(f64, f64)> {
    let metric = store.interner.get("keel_rpc_requests_total")?;
    let chain_l = store.interner.get("chain")?;
    let outcome_l = store.interner.get("outcome")?;
    let chain_v = store.interner.get(chain)?;
    let (mut good, mut total) = (0.0, 0.0);
    for &id in store.of_metric(metric).0 {
        let Some(s) = store.get(id) else { continue };
        if s.label(chain_l) != Some(chain_v) {
            continue;
        }
        let Some(last) = s.last().filter(|l| l.at >= now - lookback) else {
            continue;
        };
        let outcome = s.label(outcome_l).map_or("", |o| store.interner.resolve(o));
        if outcome == "rejected" {
            continue;
        }
        total += last.value;
        if !BAD_OUTCOMES.contains(&outcome) {
            good += last.value;
        }
    }
    Some((good, total))
}

/// Cumulative (good, total) latency counts of `chain`: requests within `threshold_s`.
pub fn latency_counts(
    store: &SeriesStore,
    chain: &str,
    threshold_s: f64,
    now: Millis,
    lookback: Millis,
) -> Option<(f64, f64)> {
    let chain_l = store.interner.get("chain")?;
    let chain_v = store.interner.get(chain)?;
    let le_l = store.interner.get("le")?;
    let fresh = |name: &str, want_le: Option<f64>| -> Option<f64> {
        let metric = store.interner.get(name)?;
        let mut sum = 0.0;
        let mut found = false;
        for &id in store.of_metric(metric).0 {
            let s = store.get(id)?;
            if s.label(chain_l) != Some(chain_v) {
                continue;
            }
            if let Some(le) = want_le {
                let v: Option<f64> = s
                    .label(le_l)
                    .and_then(|l| store.interner.resolve(l).parse().ok());
                if v.is_none_or(|v| (v - le).abs() > 1e-9) {
                    continue;
                }
            }
            if let Some(l) = s.last().filter(|l| l.at >= now - lookback) {
                sum += l.value;
                found = true;
            }
        }
        found.then_some(sum)
    };
    let good = fresh(
        "keel_rpc_request_duration_seconds_bucket",
        Some(threshold_s),
    )?;
    let total = fresh("keel_rpc_request_duration_seconds_count", None)?;
    Some((good, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn burn_rate_is_error_ratio_over_budget() {
        // 99.9 %: budget 0.001. 1 % errors burn 10x.
        let mut b = Budget::new(0.999, 30 * 1440 * MIN);
        for m in 0..60 {
            b.add(m * MIN, 990.0, 1000.0);
        }
        let now = 59 * MIN;
        assert!((b.error_ratio(now, 3_600_000).expect("ratio") - 0.01).abs() < 1e-12);
        assert!((b.burn_rate(now, 3_600_000) - 10.0).abs() < 1e-9);
        // Over the 30-day window the same 60 minutes are all there is: 10x burn, so the
        // budget is overspent nine times over.
        assert!((b.remaining(now) - (1.0 - 10.0)).abs() < 1e-9);
    }

    #[test]
    fn windows_count_only_their_minutes() {
        let mut b = Budget::new(0.99, 30 * 1440 * MIN);
        // An hour of clean traffic, then five minutes of 50 % errors.
        for m in 0..60 {
            b.add(m * MIN, 100.0, 100.0);
        }
        for m in 60..65 {
            b.add(m * MIN, 50.0, 100.0);
        }
        let now = 64 * MIN + 30_000;
        // Short window (5m, minutes 60..64 inclusive): 50 % errors → burn 50.
        assert!((b.burn_rate(now, 5 * MIN) - 50.0).abs() < 1e-9);
        // Long window (1h: minutes 5..64): 250 bad of 6000 → burn ≈ 4.2.
        let long = b.burn_rate(now, 60 * MIN);
        assert!((long - 250.0 / 6000.0 / 0.01).abs() < 1e-9, "{long}");
        // The 1h/5m pair (14.4x) would not fire: the long window is below.
        assert!(long.min(b.burn_rate(now, 5 * MIN)) < 14.4);
    }

    #[test]
    fn observe_takes_counter_increases_and_resets() {
        let mut b = Budget::new(0.9, 3_600_000);
        b.observe(0, 100.0, 100.0);
        b.observe(10_000, 190.0, 200.0);
        b.observe(20_000, 5.0, 10.0);
        // Baseline, then +90/+100, then a reset counted as 5/10.
        assert_eq!(b.current_minute(), Some((0, 95.0, 110.0)));
        assert!((b.error_ratio(20_000, 60_000).expect("r") - 15.0 / 110.0).abs() < 1e-12);
        // No events: no burn.
        assert_eq!(Budget::new(0.9, 1).burn_rate(0, 1000), 0.0);
    }

    #[test]
    fn old_minutes_leave_the_slo_window() {
        let mut b = Budget::new(0.9, 10 * MIN);
        b.add(0, 0.0, 10.0);
        b.add(20 * MIN, 10.0, 10.0);
        assert_eq!(b.remaining(20 * MIN), 1.0);
    }

    #[test]
    fn counts_come_from_the_gateway_series() {
        let mut s = SeriesStore::new(600_000, 10);
        let text = "keel_rpc_requests_total{chain=\"dev\",method=\"eth_call\",outcome=\"ok\"} 90\n\
keel_rpc_requests_total{chain=\"dev\",method=\"eth_call\",outcome=\"failed\"} 6\n\
keel_rpc_requests_total{chain=\"dev\",method=\"other\",outcome=\"rejected\"} 50\n\
keel_rpc_requests_total{chain=\"dev\",method=\"eth_call\",outcome=\"rpc_error\"} 4\n\
keel_rpc_requests_total{chain=\"x\",method=\"eth_call\",outcome=\"failed\"} 9\n\
keel_rpc_request_duration_seconds_bucket{chain=\"dev\",le=\"0.5\"} 80\n\
keel_rpc_request_duration_seconds_bucket{chain=\"dev\",le=\"1.0\"} 95\n\
keel_rpc_request_duration_seconds_count{chain=\"dev\"} 100\n";
        s.ingest_text(text, 1000);
        assert_eq!(
            availability_counts(&s, "dev", 1000, 60_000),
            Some((94.0, 100.0))
        );
        assert_eq!(
            latency_counts(&s, "dev", 0.5, 1000, 60_000),
            Some((80.0, 100.0))
        );
        assert_eq!(
            latency_counts(&s, "dev", 1.0, 1000, 60_000),
            Some((95.0, 100.0))
        );
        assert_eq!(latency_counts(&s, "dev", 0.25, 1000, 60_000), None);
    }
}
