//! Head headers the tracker saw: per block number, each upstream's (hash, stateRoot) and when it
//! was seen, so a verified read of a recent block can take the state root a quorum of upstreams
//! already reported instead of asking them again.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Block numbers kept per chain; past it the block seen least recently is dropped. Seeing a
/// block again refreshes it, so the head (seen on every poll) stays while numbers nobody
/// reports any more (older blocks, a liar's inventions) go first.
pub(crate) const OBSERVED_BLOCKS: usize = 64;

/// One upstream's report of a block's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    upstream: usize,
    hash: [u8; 32],
    root: [u8; 32],
    at: Instant,
}

/// The headers seen recently, bounded to [`OBSERVED_BLOCKS`] block numbers and one report per
/// upstream per number (its latest).
#[derive(Debug, Default)]
pub(crate) struct ObservedHeaders {
    blocks: HashMap<u64, Vec<Report>>,
}

impl ObservedHeaders {
    /// Records that `upstream` reported block `number` with `hash` and `root` at `at`,
    /// replacing its earlier report for that number (a reorg replaces the block).
    pub(crate) fn record(
        &mut self,
        upstream: usize,
        number: u64,
        hash: [u8; 32],
        root: [u8; 32],
        at: Instant,
    ) {
        let report = Report {
            upstream,
            hash,
            root,
            at,
        };
        let reports = self.blocks.entry(number).or_default();
        match reports.iter_mut().find(|r| r.upstream == upstream) {
            Some(r) => *r = report,
            None => reports.push(report),
        }
        if self.blocks.len() > OBSERVED_BLOCKS {
            let stalest = self
                .blocks
                .iter()
                .filter_map(|(n, rs)| Some((*n, rs.iter().map(|r| r.at).max()?)))
                .min_by_key(|(_, at)| *at)
                .map(|(n, _)| n);
            if let Some(n) = stalest {
                self.blocks.remove(&n);
            }
        }
    }

    /// The state root that at least `quorum` distinct upstreams passing `counts` reported for
    /// block `number` with the same hash, each within `max_age` of `now`. `None` when no such
    /// group exists, or when two groups reach `quorum` (only possible with a quorum of half the
    /// reports or less): without one clear answer, nothing is trusted.
    pub(crate) fn agreed_root(
        &self,
        number: u64,
        quorum: usize,
        max_age: Duration,
        now: Instant,
        counts: impl Fn(usize) -> bool,
    ) -> Option<[u8; 32]> {
        let fresh: Vec<&Report> = self
            .blocks
            .get(&number)?
            .iter()
            .filter(|r| now.saturating_duration_since(r.at) <= max_age && counts(r.upstream))
            .collect();
        let mut agreed = None;
        for r in &fresh {
            let same = fresh
                .iter()
                .filter(|o| (o.hash, o.root) == (r.hash, r.root))
                .count();
            if same >= quorum.max(1) {
                match agreed {
                    None => agreed = Some((r.hash, r.root)),
                    Some(a) if a == (r.hash, r.root) => {}
                    Some(_) => return None,
                }
            }
        }
        agreed.map(|(_, root)| root)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.blocks.len()
    }
}

/// Parses a `0x`-prefixed 32-byte hex word (a block hash or state root).
pub(crate) fn parse_word(s: &str) -> Option<[u8; 32]> {
    let digits = s.strip_prefix("0x")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: [u8; 32] = [1; 32];
    const R: [u8; 32] = [2; 32];
    const LIE: [u8; 32] = [9; 32];
    const MAX: Duration = Duration::from_secs(1);

    fn all(_: usize) -> bool {
        true
    }

    #[test]
    fn a_quorum_of_distinct_upstreams_is_needed() {
        let now = Instant::now();
        let mut o = ObservedHeaders::default();
        o.record(0, 7, H, R, now);
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), None);
        // The same upstream reporting again is still one upstream.
        o.record(0, 7, H, R, now);
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), None);
        o.record(1, 7, H, R, now);
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), Some(R));
        assert_eq!(o.agreed_root(7, 3, MAX, now, all), None);
        // Another block number knows nothing of it.
        assert_eq!(o.agreed_root(8, 1, MAX, now, all), None);
        // Upstreams that do not count (ejected, unverified) are left out.
        assert_eq!(o.agreed_root(7, 2, MAX, now, |u| u != 1), None);
    }

    #[test]
    fn disagreement_is_decided_by_the_quorum_or_not_at_all() {
        let now = Instant::now();
        let mut o = ObservedHeaders::default();
        o.record(0, 7, H, R, now);
        o.record(1, 7, H, R, now);
        o.record(2, 7, H, LIE, now);
        // Two honest reports outvote one lie.
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), Some(R));
        // Unanimity required: no answer.
        assert_eq!(o.agreed_root(7, 3, MAX, now, all), None);
        // Two groups reaching the quorum: no answer.
        assert_eq!(o.agreed_root(7, 1, MAX, now, all), None);
        // The same root under another hash is another header: it does not add up.
        let mut o = ObservedHeaders::default();
        o.record(0, 7, H, R, now);
        o.record(1, 7, [3; 32], R, now);
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), None);
        // A reorg: an upstream's new report for the number replaces its old one.
        o.record(1, 7, H, R, now);
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), Some(R));
        o.record(1, 7, [3; 32], LIE, now);
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), None);
    }

    #[test]
    fn old_reports_do_not_count() {
        let then = Instant::now();
        let now = then + Duration::from_millis(1500);
        let mut o = ObservedHeaders::default();
        o.record(0, 7, H, R, then);
        o.record(1, 7, H, R, now);
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), None);
        assert_eq!(o.agreed_root(7, 2, MAX * 2, now, all), Some(R));
        // Seen again: fresh again.
        o.record(0, 7, H, R, now);
        assert_eq!(o.agreed_root(7, 2, MAX, now, all), Some(R));
    }

    #[test]
    fn at_most_so_many_blocks_are_kept_and_the_stalest_go_first() {
        let start = Instant::now();
        let mut o = ObservedHeaders::default();
        // The head (block 1) is seen on every poll; another upstream reports a new number each
        // time (a liar inventing blocks).
        for i in 0..(OBSERVED_BLOCKS as u64 * 3) {
            let at = start + Duration::from_millis(i);
            o.record(0, 1, H, R, at);
            o.record(1, 1, H, R, at);
            o.record(2, 1_000_000 + i, H, LIE, at);
            assert!(o.len() <= OBSERVED_BLOCKS, "{} blocks kept", o.len());
        }
        let now = start + Duration::from_millis(OBSERVED_BLOCKS as u64 * 3);
        assert_eq!(o.agreed_root(1, 2, MAX, now, all), Some(R));
        assert_eq!(o.agreed_root(1_000_000, 1, MAX, now, all), None, "evicted");
    }

    #[test]
    fn words_parse() {
        assert_eq!(parse_word(&format!("0x{}", "02".repeat(32))), Some(R));
        assert_eq!(
            parse_word(&format!("0x{}", "AB".repeat(32))),
            Some([0xab; 32])
        );
        assert_eq!(parse_word("0x02"), None);
        assert_eq!(parse_word(&"02".repeat(32)), None);
    }
}
