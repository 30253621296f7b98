//! A chain, its upstreams and upstream selection.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use keel_config::{ChainConfig, Tier};
use parking_lot::Mutex;
use rand::Rng;

use crate::{
    ChainError, Upstream, UpstreamStatus,
    observed::{ObservedHeaders, parse_word},
};

/// Block hashes remembered per chain, to route by-hash requests to upstreams that have the block.
const RECENT_HASHES: usize = 1024;

/// A second choice must score below this fraction of the first to be preferred.
const CLEARLY_BETTER: f64 = 0.8;

/// What a request needs from the upstream that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anything usable.
    Any,
    /// An upstream close to the chain head (within `max_lag_blocks`).
    Head,
    /// An upstream whose head is at least this block.
    Block(u64),
}

/// A block tag whose number the chain tracks per upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTag {
    /// The head.
    Latest,
    /// The `safe` block (post-merge Ethereum: justified; anvil: 32 blocks behind).
    Safe,
    /// The `finalized` block.
    Finalized,
}

/// The passes [`Chain::select`] and [`Chain::fastest`] make over the upstreams, as (tier,
/// whether to take those known to lack the block): primaries before backups, and for a
/// specific block, every upstream that may have it before those known not to.
fn passes(need: Need) -> impl Iterator<Item = (Tier, bool)> {
    let rounds = if matches!(need, Need::Block(_)) { 2 } else { 1 };
    [false, true]
        .into_iter()
        .take(rounds)
        .flat_map(|lacking| [(Tier::Primary, lacking), (Tier::Backup, lacking)])
}

/// Whether `u` is known to lack the block `need` names (see [`Upstream::lacks_history`]).
fn lacks(u: &Upstream, need: Need, now: Instant) -> bool {
    matches!(need, Need::Block(n) if u.lacks_history(n, now))
}

/// One chain: its config, upstreams and head.
#[derive(Debug)]
pub struct Chain {
    config: ChainConfig,
    upstreams: Vec<Arc<Upstream>>,
    head: AtomicU64,
    recent: Mutex<RecentHashes>,
    observed: Mutex<ObservedHeaders>,
}

#[derive(Debug, Default)]
struct RecentHashes {
    by_hash: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl Chain {
    /// Builds the chain and its upstreams from config (no I/O).
    pub fn new(config: ChainConfig) -> Result<Self, ChainError> {
        let upstreams = config
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                Upstream::new(
                    &config.name,
                    i,
                    u,
                    config.health.clone(),
                    config.max_response_bytes,
                )
                .map(Arc::new)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config,
            upstreams,
            head: AtomicU64::new(0),
            recent: Mutex::default(),
            observed: Mutex::default(),
        })
    }

    /// Chain name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// EIP-155 chain id.
    pub fn chain_id(&self) -> u64 {
        self.config.chain_id
    }

    /// The chain's config.
    pub fn config(&self) -> &ChainConfig {
        &self.config
    }

    /// Its upstreams, in config order.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// The chain head as of the last head poll: see `refresh_head`.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    /// Recomputes the chain head from the usable upstreams' current heads: the highest head
    /// that two of them have reached when three or more are usable, else the highest. So one
    /// upstream claiming a far-future block cannot make every other one look behind (with
    /// three or more), and when the chain rewinds (a devnet reset, a reorg to a shorter chain)
    /// the head follows. With no usable upstream the last head is kept.
    pub(crate) fn refresh_head(&self) {
        let now = Instant::now();
        let mut heads: Vec<u64> = self
            .upstreams
            .iter()
            .filter(|u| u.is_verified() && u.health().is_available(now))
            .map(|u| u.head())
            .collect();
        heads.sort_unstable_by(|a, b| b.cmp(a));
        let rank = if heads.len() >= 3 { 1 } else { 0 };
        if let Some(h) = heads.get(rank) {
            self.head.store(*h, Ordering::Relaxed);
        }
    }

    /// Remembers that `hash` is block `number`.
    pub fn remember_block(&self, hash: &str, number: u64) {
        let mut r = self.recent.lock();
        let key = hash.to_ascii_lowercase();
        if r.by_hash.insert(key.clone(), number).is_none() {
            r.order.push_back(key);
            if r.order.len() > RECENT_HASHES
                && let Some(old) = r.order.pop_front()
            {
                r.by_hash.remove(&old);
            }
        }
    }

    /// Records that upstream `upstream` (its index) reported block `number` with `hash` and
    /// `state_root` (`0x` hex words; anything else is ignored). See [`Self::observed_state_root`].
    pub fn observe_header(&self, upstream: usize, number: u64, hash: &str, state_root: &str) {
        if let (Some(hash), Some(root)) = (parse_word(hash), parse_word(state_root)) {
            self.observed
                .lock()
                .record(upstream, number, hash, root, Instant::now());
        }
    }

    /// The state root of block `number` that at least `quorum` distinct usable upstreams
    /// (verified, not ejected) reported with the same block hash in a head poll within
    /// `max_age`: the header a quorum fan-out of `eth_getBlockByNumber(number)` would fetch
    /// from them, seen earlier. `None` when fewer agree, or the reports are split so that no
    /// single header has the quorum.
    pub fn observed_state_root(
        &self,
        number: u64,
        quorum: usize,
        max_age: Duration,
    ) -> Option<[u8; 32]> {
        let now = Instant::now();
        let usable = |i: usize| {
            self.upstreams
                .get(i)
                .is_some_and(|u| u.is_verified() && u.health().is_available(now))
        };
        self.observed
            .lock()
            .agreed_root(number, quorum, max_age, now, usable)
    }

    /// The state root of block `number` that upstream `upstream` (its index) reported in a head
    /// poll within `max_age`, whatever the others said: for a trusted header source.
    pub fn observed_state_root_from(
        &self,
        upstream: usize,
        number: u64,
        max_age: Duration,
    ) -> Option<[u8; 32]> {
        self.observed
            .lock()
            .agreed_root(number, 1, max_age, Instant::now(), |i| i == upstream)
    }

    /// The number of a recently seen block hash.
    pub fn block_number_of(&self, hash: &str) -> Option<u64> {
        self.recent
            .lock()
            .by_hash
            .get(&hash.to_ascii_lowercase())
            .copied()
    }

    /// Whether some usable upstream (verified, not ejected) has reached block `n`. When none
    /// has, the block is beyond every head: it does not exist yet as far as keel knows, and
    /// the chain's answer to a read of it is "not found" (`null`, or the node's error).
    pub fn has_block(&self, n: u64) -> bool {
        let now = Instant::now();
        self.upstreams
            .iter()
            .any(|u| self.serves(u, Need::Block(n), now))
    }

    /// Whether the upstream may serve a request needing `need` now.
    fn serves(&self, u: &Upstream, need: Need, now: Instant) -> bool {
        if !u.is_verified() || !u.health().is_available(now) {
            return false;
        }
        match need {
            Need::Any => true,
            Need::Head => self.head().saturating_sub(u.head()) <= self.config.max_lag_blocks,
            Need::Block(n) => u.head() >= n,
        }
    }

    /// Picks an upstream for a request needing `need`, skipping those in `exclude` (indexes of
    /// upstreams already tried). Primaries are preferred; backups serve only when no primary
    /// can. For a specific block, upstreams known to lack it (pruned; see
    /// [`Upstream::lacks_history`]) come after all others, backups included. Among candidates,
    /// two are drawn by weight; the second replaces the first only when its score is clearly
    /// better (below 80 % of the first's).
    pub fn select(&self, need: Need, exclude: &[usize]) -> Option<Arc<Upstream>> {
        let now = Instant::now();
        let mut rng = rand::rng();
        for (tier, lacking) in passes(need) {
            let eligible = |u: &Upstream| {
                u.tier() == tier
                    && !exclude.contains(&u.index())
                    && self.serves(u, need, now)
                    && lacks(u, need, now) == lacking
            };
            let Some(a) = self.draw(&mut rng, |u| eligible(u)) else {
                continue;
            };
            // The second choice wins only when clearly better: among similar upstreams the
            // weighted draw decides, so traffic follows the weights.
            let pick = match self.draw(&mut rng, |u| u.index() != a.index() && eligible(u)) {
                Some(b) if b.score() < a.score() * CLEARLY_BETTER => b,
                _ => a,
            };
            return Some(pick.clone());
        }
        None
    }

    /// One upstream among those passing `keep`, drawn with probability proportional to weight
    /// (single-pass weighted reservoir sampling; no allocation).
    fn draw(&self, rng: &mut impl Rng, keep: impl Fn(&Upstream) -> bool) -> Option<&Arc<Upstream>> {
        let mut total = 0u64;
        let mut chosen = None;
        for u in self.upstreams.iter().filter(|u| keep(u)) {
            let w = u64::from(u.weight());
            total += w;
            if rng.random_range(0..total) < w {
                chosen = Some(u);
            }
        }
        chosen
    }

    /// The highest `tag` block that at least `count` usable upstreams (verified, available,
    /// primaries and backups alike) have reached, so that `count` of them can answer for it;
    /// fewer usable upstreams lower `count` to their number. `None` when no usable upstream
    /// reports the tag.
    pub fn agreed_block(&self, tag: BlockTag, count: usize) -> Option<u64> {
        let now = Instant::now();
        let mut blocks: Vec<u64> = self
            .upstreams
            .iter()
            .filter(|u| u.is_verified() && u.health().is_available(now))
            .filter_map(|u| u.block_at(tag))
            .collect();
        blocks.sort_unstable_by(|a, b| b.cmp(a));
        blocks
            .get(count.max(1).min(blocks.len()).saturating_sub(1))
            .copied()
    }

    /// Up to `count` upstreams that serve `need`, skipping `exclude`, fastest (lowest score)
    /// first; primaries before backups, and for a specific block, upstreams known to lack it
    /// after all others (as in [`Chain::select`]).
    pub fn fastest(&self, need: Need, exclude: &[usize], count: usize) -> Vec<Arc<Upstream>> {
        let now = Instant::now();
        let mut picked: Vec<Arc<Upstream>> = Vec::with_capacity(count);
        for (tier, lacking) in passes(need) {
            let mut candidates: Vec<(f64, &Arc<Upstream>)> = self
                .upstreams
                .iter()
                .filter(|u| {
                    u.tier() == tier
                        && !exclude.contains(&u.index())
                        && self.serves(u, need, now)
                        && lacks(u, need, now) == lacking
                })
                .map(|u| (u.score(), u))
                .collect();
            candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, u) in candidates {
                if picked.len() == count {
                    return picked;
                }
                picked.push(Arc::clone(u));
            }
        }
        picked
    }

    /// Upstreams that may take a write now: verified and not ejected, in any tier.
    pub fn writable(&self) -> Vec<Arc<Upstream>> {
        let now = Instant::now();
        self.upstreams
            .iter()
            .filter(|u| u.is_verified() && u.health().is_available(now))
            .cloned()
            .collect()
    }

    /// Whether at least one upstream can serve requests.
    pub fn is_ready(&self) -> bool {
        let now = Instant::now();
        self.upstreams
            .iter()
            .any(|u| self.serves(u, Need::Any, now))
    }

    /// Status of every upstream.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        let head = self.head();
        self.upstreams
            .iter()
            .map(|u| u.status(head, self.config.max_lag_blocks))
            .collect()
    }
}

/// Every chain of the node, by name and by chain id.
#[derive(Debug, Default)]
pub struct ChainRegistry {
    chains: Vec<Arc<Chain>>,
}

impl ChainRegistry {
    /// Builds all chains from config.
    pub fn new(configs: &[ChainConfig]) -> Result<Self, ChainError> {
        let chains = configs
            .iter()
            .map(|c| Chain::new(c.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self { chains })
    }

    /// All chains, in config order.
    pub fn chains(&self) -> &[Arc<Chain>] {
        &self.chains
    }

    /// The chain called `key`, or whose chain id is `key`.
    pub fn get(&self, key: &str) -> Option<&Arc<Chain>> {
        if let Some(c) = self.chains.iter().find(|c| c.name() == key) {
            return Some(c);
        }
        let id: u64 = key.parse().ok()?;
        self.chains.iter().find(|c| c.chain_id() == id)
    }

    /// The only chain, when there is exactly one.
    pub fn only(&self) -> Option<&Arc<Chain>> {
        match self.chains.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use keel_config::{SecretUrl, UpstreamConfig};

    use super::*;

    fn chain(specs: &[(&str, u32, Tier)]) -> Chain {
        let ups = specs
            .iter()
            .enumerate()
            .map(|(i, (name, weight, tier))| {
                let mut u = UpstreamConfig::new(
                    *name,
                    SecretUrl::parse(&format!("http://127.0.0.1:{}", 1000 + i)).expect("url"),
                );
                u.weight = *weight;
                u.tier = *tier;
                u
            })
            .collect();
        let c = Chain::new(ChainConfig::new("t", 1, ups)).expect("chain");
        for u in c.upstreams() {
            u.set_chain_check(1, true);
        }
        c
    }

    fn picks(c: &Chain, need: Need, n: usize) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            let name = c
                .select(need, &[])
                .map_or("none".to_owned(), |u| u.name().to_owned());
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }

    fn eject(u: &Upstream) {
        for _ in 0..3 {
            u.health().record_failure(Instant::now(), false);
        }
    }

    #[test]
    fn backups_serve_only_when_no_primary_can() {
        let c = chain(&[
            ("p1", 1, Tier::Primary),
            ("p2", 1, Tier::Primary),
            ("b", 1, Tier::Backup),
        ]);
        assert_eq!(picks(&c, Need::Any, 500).get("b"), None);
        eject(&c.upstreams()[0]);
        assert_eq!(
            picks(&c, Need::Any, 200),
            HashMap::from([("p2".to_owned(), 200)])
        );
        eject(&c.upstreams()[1]);
        assert_eq!(
            picks(&c, Need::Any, 200),
            HashMap::from([("b".to_owned(), 200)])
        );
        eject(&c.upstreams()[2]);
        assert_eq!(
            picks(&c, Need::Any, 10),
            HashMap::from([("none".to_owned(), 10)])
        );
    }

    #[test]
    fn weights_share_traffic_among_equal_upstreams() {
        let c = chain(&[("light", 1, Tier::Primary), ("heavy", 9, Tier::Primary)]);
        // Equal latency samples: the weight decides both the draw and the score.
        for u in c.upstreams() {
            u.health().record_success(Duration::from_millis(2));
        }
        let counts = picks(&c, Need::Any, 4000);
        let heavy = counts.get("heavy").copied().unwrap_or(0);
        // 90 % expected; the bounds are 6 standard deviations wide.
        assert!(
            (3490..=3710).contains(&heavy),
            "heavy got {heavy} of 4000: {counts:?}"
        );
    }

    #[test]
    fn the_faster_upstream_wins_the_two_choices() {
        let c = chain(&[("slow", 1, Tier::Primary), ("fast", 1, Tier::Primary)]);
        c.upstreams()[0]
            .health()
            .record_success(Duration::from_millis(50));
        c.upstreams()[1]
            .health()
            .record_success(Duration::from_millis(1));
        let counts = picks(&c, Need::Any, 1000);
        // With two upstreams P2C compares both whenever two distinct ones are drawn.
        assert!(counts.get("fast").copied().unwrap_or(0) > 900, "{counts:?}");
    }

    #[test]
    fn an_upstream_known_to_lack_old_blocks_is_asked_for_them_last() {
        let c = chain(&[
            ("pruned", 1, Tier::Primary),
            ("archive", 1, Tier::Primary),
            ("backup", 1, Tier::Backup),
        ]);
        for u in c.upstreams() {
            u.set_head(10);
        }
        c.refresh_head();
        assert_eq!(
            picks(&c, Need::Block(3), 300).len(),
            2,
            "both primaries serve"
        );
        assert!(c.upstreams()[0].note_missing_history(5));
        let names =
            |ups: Vec<Arc<Upstream>>| ups.iter().map(|u| u.name().to_owned()).collect::<Vec<_>>();
        // Blocks up to 5: after every other upstream, backups included.
        assert_eq!(
            picks(&c, Need::Block(3), 100),
            HashMap::from([("archive".to_owned(), 100)])
        );
        let archive = c.upstreams()[1].index();
        assert_eq!(
            c.select(Need::Block(5), &[archive]).expect("one").name(),
            "backup"
        );
        let both = [archive, c.upstreams()[2].index()];
        assert_eq!(
            c.select(Need::Block(5), &both).expect("one").name(),
            "pruned"
        );
        assert_eq!(
            names(c.fastest(Need::Block(5), &[], 3)),
            ["archive", "backup", "pruned"]
        );
        // Newer blocks, the head and anything else: as before.
        assert_eq!(picks(&c, Need::Block(6), 300).len(), 2);
        assert_eq!(picks(&c, Need::Head, 300).len(), 2);
        assert_eq!(names(c.fastest(Need::Any, &[], 3)).len(), 3);
        assert_eq!(names(c.fastest(Need::Block(6), &[], 3))[2], "backup");
    }

    #[test]
    fn block_needs_and_lag_choose_upstreams_that_have_the_block() {
        let c = chain(&[("behind", 1, Tier::Primary), ("ahead", 1, Tier::Primary)]);
        c.upstreams()[0].set_head(5);
        c.upstreams()[1].set_head(10);
        c.refresh_head();
        assert_eq!(
            picks(&c, Need::Block(8), 100),
            HashMap::from([("ahead".to_owned(), 100)])
        );
        assert_eq!(
            picks(&c, Need::Block(11), 10),
            HashMap::from([("none".to_owned(), 10)])
        );
        // 5 blocks behind is within the default max_lag_blocks (5); 6 is not.
        assert_eq!(picks(&c, Need::Head, 300).len(), 2);
        c.upstreams()[1].set_head(11);
        c.refresh_head();
        assert_eq!(
            picks(&c, Need::Head, 100),
            HashMap::from([("ahead".to_owned(), 100)])
        );
        assert_eq!(picks(&c, Need::Any, 300).len(), 2);
    }

    #[test]
    fn a_block_beyond_every_usable_head_is_not_had() {
        let c = chain(&[("behind", 1, Tier::Primary), ("ahead", 1, Tier::Backup)]);
        c.upstreams()[0].set_head(5);
        c.upstreams()[1].set_head(10);
        c.refresh_head();
        assert!(c.has_block(10) && c.has_block(0) && !c.has_block(11));
        eject(&c.upstreams()[1]);
        assert!(
            !c.has_block(10) && c.has_block(5),
            "only usable upstreams count"
        );
        c.upstreams()[0].set_chain_check(2, false);
        assert!(!c.has_block(0), "nor refused ones");
    }

    #[test]
    fn one_upstream_claiming_a_far_block_does_not_move_the_head_and_rewinds_are_followed() {
        let c = chain(&[
            ("a", 1, Tier::Primary),
            ("b", 1, Tier::Primary),
            ("liar", 1, Tier::Primary),
        ]);
        for (u, h) in c.upstreams().iter().zip([100, 99, 1_000_000_000]) {
            u.set_head(h);
        }
        c.refresh_head();
        assert_eq!(c.head(), 100);
        assert_eq!(picks(&c, Need::Head, 300).len(), 3, "nobody looks behind");
        // Everyone rewinds (a reset devnet): the head follows down.
        for u in c.upstreams() {
            u.set_head(3);
        }
        c.refresh_head();
        assert_eq!(c.head(), 3);
        // Two upstreams: the highest counts (a lagging one must still look behind).
        let two = chain(&[("a", 1, Tier::Primary), ("b", 1, Tier::Primary)]);
        two.upstreams()[0].set_head(100);
        two.upstreams()[1].set_head(50);
        two.refresh_head();
        assert_eq!(two.head(), 100);
    }

    #[test]
    fn observed_state_roots_count_only_usable_upstreams() {
        let c = chain(&[
            ("a", 1, Tier::Primary),
            ("b", 1, Tier::Primary),
            ("c", 1, Tier::Primary),
        ]);
        let (hash, root) = (
            format!("0x{}", "01".repeat(32)),
            format!("0x{}", "02".repeat(32)),
        );
        let age = Duration::from_secs(5);
        c.observe_header(0, 5, &hash, &root);
        c.observe_header(1, 5, &hash, &root);
        // Not a 32-byte word: ignored.
        c.observe_header(2, 5, &hash, "0x02");
        assert_eq!(c.observed_state_root(5, 2, age), Some([2; 32]));
        assert_eq!(c.observed_state_root(5, 3, age), None);
        // An ejected upstream's report no longer counts.
        eject(&c.upstreams()[1]);
        assert_eq!(c.observed_state_root(5, 2, age), None);
        // A header source's report counts alone.
        assert_eq!(c.observed_state_root_from(0, 5, age), Some([2; 32]));
        assert_eq!(c.observed_state_root_from(2, 5, age), None);
    }

    #[test]
    fn excluded_and_unverified_upstreams_are_skipped() {
        let c = chain(&[("a", 1, Tier::Primary), ("b", 1, Tier::Primary)]);
        for _ in 0..50 {
            assert_eq!(
                c.select(Need::Any, &[0])
                    .map(|u| u.name().to_owned())
                    .as_deref(),
                Some("b")
            );
        }
        c.upstreams()[1].set_chain_check(5, false);
        assert!(c.select(Need::Any, &[0]).is_none());
        assert!(c.upstreams()[1].is_refused());
    }

    #[test]
    fn registry_finds_chains_by_name_and_id() {
        let r = ChainRegistry::new(&[
            ChainConfig::new("one", 1, vec![]),
            ChainConfig::new("two", 2, vec![]),
        ])
        .expect("registry");
        assert_eq!(r.get("two").map(|c| c.chain_id()), Some(2));
        assert_eq!(r.get("1").map(|c| c.name()), Some("one"));
        assert!(r.get("3").is_none() && r.only().is_none());
    }
}
