//! Test helpers shared by keel's integration tests (dev-dependency only).
//!
//! - [`anvil`] / [`cast`]: the real Foundry binaries installed by `scripts/install-tools` into
//!   `<workspace>/.tools` (or given by `KEEL_ANVIL` / `KEEL_CAST`).
//! - [`Anvil`]: an anvil process on a free loopback port, killed when dropped, restartable on
//!   the same port.
//! - [`rpc`]: one JSON-RPC call, returning the whole response object.
//! - [`config_for`]: a node config on free ports in front of given upstream URLs.
//! - [`TlsFront`]: Debian's nginx terminating TLS (a throwaway CA) in front of a node.
//! - [`Tamper`]: a lying upstream (a proxy that rewrites balances, nonces, code or storage) for
//!   verification tests.
//! - [`Scripted`]: an upstream whose answers a test chooses per request (huge or endless bodies,
//!   chosen errors), passing the rest to a real node.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

mod scripted;
mod tamper;
mod tls;

pub use scripted::{Reply, Scripted};
pub use tamper::{Lie, Tamper};
pub use tls::TlsFront;

use keel_config::{ChainConfig, Config, SecretUrl, UpstreamConfig};
use keel_devnet::AnvilProcess;
use serde_json::{Value, json};

/// Private key of anvil's first default account (public test mnemonic).
pub const DEV_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Address of anvil's first default account.
pub const DEV_ADDR_0: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// Address of anvil's second default account.
pub const DEV_ADDR_1: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn tool(name: &str, var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".tools/node_modules/.bin").join(name);
    assert!(
        p.is_file(),
        "{name} is not installed at {}; run ./scripts/test (it installs the pinned tools) or set {var}",
        p.display()
    );
    p
}

/// Path of anvil.
pub fn anvil() -> PathBuf {
    tool("anvil", "KEEL_ANVIL")
}

/// Path of cast.
pub fn cast() -> PathBuf {
    tool("cast", "KEEL_CAST")
}

/// An anvil node for a test.
#[derive(Debug)]
pub struct Anvil {
    process: Option<AnvilProcess>,
    port: u16,
    args: Vec<String>,
}

impl Anvil {
    /// Starts anvil on a free port with extra `args`.
    pub async fn start(args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let process = AnvilProcess::spawn(&anvil(), 0, &args, None).await.unwrap();
        Self {
            port: process.port,
            process: Some(process),
            args,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the process and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.child.kill().await.unwrap();
        }
    }

    /// Starts it again on the same port with the same arguments.
    pub async fn restart(&mut self) {
        self.kill().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match AnvilProcess::spawn(&anvil(), self.port, &self.args, None).await {
                Ok(p) => {
                    self.process = Some(p);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("anvil restart failed: {e}"),
            }
        }
    }
}

/// Sends one JSON-RPC request and returns the response object.
pub async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A node config on free loopback ports with one chain in front of `upstreams` (name, URL).
/// Reads are not verified (account reads included): tests about verification opt in with
/// `x-keel-verify` or `[chains.verify]`.
pub fn config_for(chain: &str, chain_id: u64, upstreams: &[(&str, &str)]) -> Config {
    let ups = upstreams
        .iter()
        .map(|(name, url)| UpstreamConfig::new(*name, SecretUrl::parse(url).unwrap()))
        .collect();
    let mut chain = ChainConfig::new(chain, chain_id, ups);
    chain.head_poll_interval = Duration::from_millis(100);
    chain.health.base_ejection = Duration::from_millis(200);
    chain.health.max_ejection = Duration::from_secs(1);
    chain.verify.account = Some(keel_config::VerifyMode::None);
    let mut c = Config::default();
    c.gateway.listen = "127.0.0.1:0".parse().unwrap();
    // Two serving threads: several workers, without a dozen threads per node in parallel tests.
    c.gateway.workers = Some(2);
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.chains.push(chain);
    c
}

/// Polls `check` every 50 ms until it holds or `timeout` passes; returns whether it held.
/// For conditions that change through background work with no event to await (heads, health).
pub async fn eventually(timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
