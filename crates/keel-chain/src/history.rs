//! What an upstream is known to lack: the state (or blocks) at and below a block, as a pruned
//! node does, learned from its own "missing trie node"-style answers.
//!
//! A pruned node keeps recent states only, so when it says it lacks block B while its head is
//! past B, it lacks every block below B too. Requests pinned to such a block then go to the
//! upstreams not known to lack it first (see `Chain::select`), saving the call that would fail.
//! The mark is a preference, never an exclusion, and it is forgotten after [`HISTORY_MARK_TTL`]
//! or as soon as the node answers for a block it was thought to lack (a node resynced as an
//! archive), so a wrong mark costs at most calls, never answers.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use parking_lot::Mutex;

/// How long a "lacks history" mark is trusted without being seen again.
pub const HISTORY_MARK_TTL: Duration = Duration::from_secs(600);

/// The blocks an upstream is known to lack: every block below `below`, as seen at `at`.
#[derive(Debug, Default)]
pub(crate) struct History {
    mark: Mutex<Option<Mark>>,
    /// Whether `mark` may hold one: routing asks per request, and most nodes never have one.
    marked: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    below: u64,
    at: Instant,
}

impl History {
    /// Records that the node lacks `block` (and so every block before it). Returns whether
    /// this is news (no mark was held), for a log line that is not repeated per request.
    pub(crate) fn lacks(&self, block: u64, now: Instant) -> bool {
        let below = block.saturating_add(1);
        let mut g = self.mark.lock();
        let fresh = (*g).filter(|m| now.saturating_duration_since(m.at) < HISTORY_MARK_TTL);
        *g = Some(Mark {
            below: fresh.map_or(below, |m| m.below.max(below)),
            at: now,
        });
        self.marked.store(true, Ordering::Relaxed);
        fresh.is_none()
    }

    /// Records that the node answered for `block`: it keeps `block` and everything after it.
    pub(crate) fn has(&self, block: u64) {
        if !self.marked.load(Ordering::Relaxed) {
            return;
        }
        let mut g = self.mark.lock();
        if let Some(m) = g.as_mut() {
            m.below = m.below.min(block);
            if m.below == 0 {
                *g = None;
                self.marked.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Whether the node is known (within [`HISTORY_MARK_TTL`]) to lack `block`.
    pub(crate) fn is_missing(&self, block: u64, now: Instant) -> bool {
        self.known_below(now).is_some_and(|below| block < below)
    }

    /// The block below which the node is known to lack history, if it is.
    pub(crate) fn known_below(&self, now: Instant) -> Option<u64> {
        if !self.marked.load(Ordering::Relaxed) {
            return None;
        }
        (*self.mark.lock())
            .filter(|m| now.saturating_duration_since(m.at) < HISTORY_MARK_TTL)
            .map(|m| m.below)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_grows_shrinks_and_expires() {
        let h = History::default();
        let t0 = Instant::now();
        assert!(!h.is_missing(0, t0));
        assert!(h.lacks(10, t0), "the first mark is news");
        assert!(!h.lacks(5, t0), "a lower one is not");
        assert!(h.is_missing(10, t0) && h.is_missing(0, t0));
        assert!(!h.is_missing(11, t0));
        // Pruning moves forward: the gap only grows from new failures.
        h.lacks(20, t0);
        assert_eq!(h.known_below(t0), Some(21));
        // An answer for block 15 proves the node keeps 15 and after.
        h.has(15);
        assert_eq!(h.known_below(t0), Some(15));
        assert!(h.is_missing(14, t0) && !h.is_missing(15, t0));
        // A mark not seen again for the TTL is forgotten.
        let later = t0 + HISTORY_MARK_TTL;
        assert!(!h.is_missing(14, later));
        assert!(h.lacks(3, later), "a mark after expiry is news again");
        assert_eq!(h.known_below(later), Some(4));
        // An answer for block 0 clears the mark.
        h.has(0);
        assert_eq!(h.known_below(later), None);
    }
}
