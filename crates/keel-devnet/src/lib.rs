//! A local chain for development: several anvil nodes that keel keeps identical.
//!
//! Every node starts from the same genesis (same chain id, accounts and genesis timestamp) with
//! automatic mining off. A miner task produces blocks in lockstep: on every tick it first makes
//! the nodes' transaction pools equal (a transaction that reached only some nodes is copied to
//! the others), then calls `evm_mine` with the same timestamp on every node. Same transactions,
//! same timestamp, same parent: the nodes produce byte-identical blocks, so the gateway can fail
//! over between them without clients noticing.
//!
//! Each node is supervised: if it dies it is restarted on the same port with backoff, loads a
//! healthy sibling's state (`anvil_dumpState` → `anvil_loadState`: blocks, transactions,
//! receipts, accounts, including changes made by node-control calls such as `anvil_setBalance`)
//! and rejoins mining once its head is identical. anvil's dump holds no past states, so the
//! restarted node answers state reads at blocks before its restart with `BlockOutOfRangeError`,
//! which the gateway takes for "this node lacks it" and retries on a sibling. Output of each
//! node goes to `<data-dir>/devnet/node-N.log`.

mod anvil;
mod error;
mod rpc;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::future::join_all;
use keel_config::{ChainConfig, DevnetConfig, SecretUrl, UpstreamConfig};
use serde_json::{Value, json};
use tokio::{sync::Mutex, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::rpc::Rpc;
pub use crate::{
    anvil::{ANVIL_PACKAGE, AnvilProcess, find_anvil},
    error::DevnetError,
};

/// A running devnet.
#[derive(Debug)]
pub struct Devnet {
    cfg: DevnetConfig,
    nodes: Vec<Arc<Node>>,
    tasks: JoinSet<()>,
}

#[derive(Debug)]
struct Node {
    index: usize,
    port: u16,
    rpc: Rpc,
    ready: AtomicBool,
    pid: AtomicU32,
    /// Times its process exited and was started again.
    restarts: std::sync::atomic::AtomicU64,
}

/// One devnet node as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetNode {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Process id of its anvil (0 while restarting).
    pub pid: u32,
    /// Whether it is in lockstep with the others (false while restarting or catching up).
    pub ready: bool,
    /// Times its process exited and was restarted.
    pub restarts: u64,
}

/// A cloneable view of the devnet's nodes, for metrics.
#[derive(Debug, Clone)]
pub struct DevnetWatch(Vec<Arc<Node>>);

impl DevnetWatch {
    /// Every node now.
    pub fn nodes(&self) -> Vec<DevnetNode> {
        self.0.iter().map(|n| n.view()).collect()
    }
}

impl Node {
    fn view(&self) -> DevnetNode {
        DevnetNode {
            url: format!("http://127.0.0.1:{}", self.port),
            pid: self.pid.load(Ordering::SeqCst),
            ready: self.ready.load(Ordering::SeqCst),
            restarts: self.restarts.load(Ordering::SeqCst),
        }
    }
}

/// What every node shares: how to start anvil, and the mining lock.
#[derive(Debug)]
struct Shared {
    anvil: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
    /// Timestamp of the last block mined; held while mining or catching a node up.
    mining: Mutex<u64>,
    /// Every node, set once all have started.
    nodes: std::sync::OnceLock<Vec<Arc<Node>>>,
}

impl Devnet {
    /// Starts `cfg.nodes` anvil nodes and the miner. Logs go under `data_dir/devnet`.
    pub async fn start(
        cfg: &DevnetConfig,
        data_dir: &Path,
        cancel: CancellationToken,
    ) -> Result<Self, DevnetError> {
        let anvil = find_anvil(cfg.anvil.as_deref())?;
        let log_dir = data_dir.join("devnet");
        tokio::fs::create_dir_all(&log_dir)
            .await
            .map_err(|source| DevnetError::Io {
                what: format!("create {}", log_dir.display()),
                source,
            })?;
        let genesis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let args: Vec<String> = [
            "--no-mining",
            // anvil answers CORS for every page by default: a web page that finds a node's
            // loopback port could preflight and drive it. keel is the nodes' only client.
            "--no-cors",
            "--chain-id",
            &cfg.chain_id.to_string(),
            "--timestamp",
            &genesis.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let shared = Arc::new(Shared {
            anvil,
            args,
            log_dir,
            mining: Mutex::new(genesis),
            nodes: std::sync::OnceLock::new(),
        });
        let mut nodes = Vec::new();
        let mut tasks = JoinSet::new();
        for index in 0..cfg.nodes {
            let process = AnvilProcess::spawn(
                &shared.anvil,
                0,
                &shared.args,
                Some(&shared.log_path(index)),
            )
            .await?;
            let node = Arc::new(Node {
                index,
                port: process.port,
                rpc: Rpc::new(&process.url()),
                ready: AtomicBool::new(true),
                pid: AtomicU32::new(process.child.id().unwrap_or(0)),
                restarts: std::sync::atomic::AtomicU64::new(0),
            });
            nodes.push(node.clone());
            let (shared, cancel) = (shared.clone(), cancel.clone());
            tasks.spawn(async move { supervise(node, process, shared, cancel).await });
        }
        let _ = shared.nodes.set(nodes.clone());
        let miner_nodes = nodes.clone();
        let (shared2, cancel2, block_time) = (shared.clone(), cancel.clone(), cfg.block_time);
        tasks.spawn(async move { mine(miner_nodes, shared2, block_time, cancel2).await });
        tracing::info!(nodes = cfg.nodes, chain_id = cfg.chain_id, "devnet started");
        Ok(Self {
            cfg: cfg.clone(),
            nodes,
            tasks,
        })
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Every node: URL, process id and whether it is in lockstep.
    pub fn nodes(&self) -> Vec<DevnetNode> {
        self.nodes.iter().map(|n| n.view()).collect()
    }

    /// A view of the nodes that outlives borrows of the devnet (metrics).
    pub fn watch(&self) -> DevnetWatch {
        DevnetWatch(self.nodes.clone())
    }

    /// The chain the gateway should serve: one upstream per node, node control allowed.
    pub fn chain_config(&self) -> Result<ChainConfig, DevnetError> {
        let upstreams = self
            .urls()
            .iter()
            .enumerate()
            .map(|(i, url)| {
                SecretUrl::parse(url).map(|u| UpstreamConfig::new(format!("node-{i}"), u))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(DevnetError::Anvil)?;
        let mut chain = ChainConfig::new(self.cfg.name.clone(), self.cfg.chain_id, upstreams);
        chain.allow_node_control = true;
        // Local nodes keel runs itself: nothing to distrust, and proofs would fail on anvil
        // (its genesis header has the empty state root; `anvil_setBalance` and friends change
        // state without a new header). `x-keel-verify` still asks for verification.
        chain.verify.account = Some(keel_config::VerifyMode::None);
        chain.head_poll_interval = self.cfg.block_time.min(Duration::from_secs(1));
        Ok(chain)
    }

    /// Waits for the supervisors and the miner to stop (after cancellation); anvil processes are
    /// killed as their supervisors end.
    pub async fn join(mut self) {
        while let Some(res) = self.tasks.join_next().await {
            if let Err(e) = res
                && e.is_panic()
            {
                tracing::error!(error = %e, "devnet task panicked");
            }
        }
    }
}

impl Shared {
    fn log_path(&self, index: usize) -> PathBuf {
        self.log_dir.join(format!("node-{index}.log"))
    }
}

/// Keeps node `node` running: restarts it with backoff when it exits, then catches it up.
async fn supervise(
    node: Arc<Node>,
    mut process: AnvilProcess,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let status = tokio::select! {
            () = cancel.cancelled() => {
                let _ = process.child.start_kill();
                let _ = process.child.wait().await;
                return;
            }
            s = process.child.wait() => s,
        };
        node.ready.store(false, Ordering::SeqCst);
        node.pid.store(0, Ordering::SeqCst);
        node.restarts.fetch_add(1, Ordering::SeqCst);
        tracing::error!(node = node.index, status = ?status.ok(), log = %shared.log_path(node.index).display(), "devnet node exited; restarting");
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
            match AnvilProcess::spawn(
                &shared.anvil,
                node.port,
                &shared.args,
                Some(&shared.log_path(node.index)),
            )
            .await
            {
                Ok(p) => {
                    node.pid.store(p.child.id().unwrap_or(0), Ordering::SeqCst);
                    process = p;
                    break;
                }
                Err(e) => {
                    tracing::error!(node = node.index, error = %e, "devnet node restart failed")
                }
            }
        }
        match catch_up(&node, &shared).await {
            Ok(head) => {
                backoff = Duration::from_millis(200);
                node.ready.store(true, Ordering::SeqCst);
                tracing::info!(
                    node = node.index,
                    head,
                    "devnet node restarted and caught up"
                );
            }
            Err(e) => {
                tracing::error!(node = node.index, error = %e, "devnet node could not catch up; it stays out of mining");
            }
        }
    }
}

/// Makes a restarted `node` identical to a ready sibling by loading the sibling's state, and
/// returns its head. Holds the mining lock, so the sibling does not move meanwhile.
///
/// Why not replay the sibling's blocks (raw transactions, then `evm_mine` with each block's
/// timestamp) to rebuild past states too: node-control calls change state without a
/// transaction, so a replay comes out different, and a replay followed by a state load was seen
/// to answer a past-state read with a wrong balance. A fresh node with the loaded state answers
/// such reads with an error instead, which the gateway retries on a sibling.
async fn catch_up(node: &Node, shared: &Shared) -> Result<u64, DevnetError> {
    let _mining = shared.mining.lock().await;
    let source = shared
        .nodes
        .get()
        .into_iter()
        .flatten()
        .find(|s| s.index != node.index && s.ready.load(Ordering::SeqCst))
        .ok_or_else(|| {
            DevnetError::Anvil("no healthy sibling to copy the chain from".to_owned())
        })?;
    let state = source.rpc.call("anvil_dumpState", json!([])).await?;
    node.rpc.call("anvil_loadState", json!([state])).await?;
    let (a, b) = (
        source
            .rpc
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?,
        node.rpc
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?,
    );
    let head = rpc::hex_u64(&b["number"])
        .ok_or_else(|| DevnetError::Anvil("latest block without a number".to_owned()))?;
    if a["hash"] != b["hash"] || !b["hash"].is_string() {
        return Err(DevnetError::Anvil(format!(
            "block {head} differs from the sibling's after loading the sibling's state; \
             restart keel to start the devnet afresh"
        )));
    }
    Ok(head)
}

/// Mines one block per `block_time` on every ready node, with one timestamp.
async fn mine(
    nodes: Vec<Arc<Node>>,
    shared: Arc<Shared>,
    block_time: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(block_time);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let mut last_ts = shared.mining.lock().await;
        let ready: Vec<&Arc<Node>> = nodes
            .iter()
            .filter(|n| n.ready.load(Ordering::SeqCst))
            .collect();
        if ready.is_empty() {
            continue;
        }
        if let Err(e) = sync_pools(&ready).await {
            tracing::warn!(error = %e, "devnet: transaction pools could not be synchronised; mining anyway");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let ts = now.max(*last_ts + 1);
        let results = join_all(ready.iter().map(|n| n.rpc.call("evm_mine", json!([ts])))).await;
        for (n, r) in ready.iter().zip(results) {
            if let Err(e) = r {
                tracing::warn!(node = n.index, error = %e, "devnet: mining failed on node");
            }
        }
        *last_ts = ts;
    }
}

/// Copies every pending transaction to the ready nodes that lack it.
async fn sync_pools(ready: &[&Arc<Node>]) -> Result<(), DevnetError> {
    let pools = join_all(ready.iter().map(|n| n.rpc.pending_hashes())).await;
    let pools: Vec<Vec<String>> = pools.into_iter().collect::<Result<_, _>>()?;
    if pools.windows(2).all(|w| w[0].len() == w[1].len())
        && pools.iter().all(|p| p.iter().all(|h| pools[0].contains(h)))
    {
        return Ok(());
    }
    for (i, pool) in pools.iter().enumerate() {
        for hash in pool {
            for (j, other) in pools.iter().enumerate() {
                if i != j && !other.contains(hash) {
                    let raw: Value = ready[i]
                        .rpc
                        .call("eth_getRawTransactionByHash", json!([hash]))
                        .await?;
                    if let Err(e) = ready[j]
                        .rpc
                        .call("eth_sendRawTransaction", json!([raw]))
                        .await
                    {
                        tracing::debug!(error = %e, "devnet: copying a transaction failed");
                    }
                }
            }
        }
    }
    Ok(())
}
