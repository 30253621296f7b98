//! A chain, its upstreams and upstream selection.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use keel_config::{ChainConfig, Tier};
use parking_lot::Mutex;
use rand::Rng;

use crate::{ChainError, Upstream, UpstreamStatus};

/// Block hashes remembered per chain, to route by-hash requests to upstreams that have the block.
const RECENT_HASHES: usize = 1024;

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

/// One chain: its config, upstreams and head.
#[derive(Debug)]
pub struct Chain {
    config: ChainConfig,
    upstreams: Vec<Arc<Upstream>>,
    head: AtomicU64,
    recent: Mutex<RecentHashes>,
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
            .map(|(i, u)| Upstream::new(&config.name, i, u, config.health.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config,
            upstreams,
            head: AtomicU64::new(0),
            recent: Mutex::default(),
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

    /// Highest head seen from a usable upstream.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    pub(crate) fn observe_head(&self, head: u64) {
        self.head.fetch_max(head, Ordering::Relaxed);
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

    /// The number of a recently seen block hash.
    pub fn block_number_of(&self, hash: &str) -> Option<u64> {
        self.recent
            .lock()
            .by_hash
            .get(&hash.to_ascii_lowercase())
            .copied()
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
    /// can. Among candidates, two are drawn by weight and the one with the better score wins.
    pub fn select(&self, need: Need, exclude: &[usize]) -> Option<Arc<Upstream>> {
        let now = Instant::now();
        let mut rng = rand::rng();
        for tier in [Tier::Primary, Tier::Backup] {
            let eligible = |u: &Upstream| {
                u.tier() == tier && !exclude.contains(&u.index()) && self.serves(u, need, now)
            };
            let Some(a) = self.draw(&mut rng, |u| eligible(u)) else {
                continue;
            };
            let pick = match self.draw(&mut rng, |u| u.index() != a.index() && eligible(u)) {
                Some(b) if b.score() < a.score() => b,
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
