//! [`ContentService`]: binds the gateway and Kubo RPC listeners and serves them until cancelled.
//!
//! Both are served by `keel_listener` with their `[listeners.content_gateway]` and
//! `[listeners.content_rpc]` limits: header and idle timeouts, a connection cap, HTTP/2 limits,
//! the Host check on both, and on the RPC the Origin check (a web page may not drive it unless
//! its origin is listed in `allowed_origins`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use keel_config::content::ContentConfig;
use keel_config::{Listener, ListenersConfig};
use keel_listener::{Cors, ListenerMetrics, Server, Surface};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::http::{AppState, Edge, RateLimiter, edge};
use crate::metrics::Metrics;
use crate::store::Blockstore;

/// The addresses the service actually bound (useful with port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    /// Gateway listener, if enabled.
    pub gateway: Option<SocketAddr>,
    /// Kubo RPC listener, if enabled.
    pub rpc: Option<SocketAddr>,
}

/// The content component of a keel node: blockstore plus its HTTP listeners.
///
/// Lifecycle: [`ContentService::bind`] opens the store and binds the listeners (so port
/// conflicts surface before anything runs), [`ContentService::run`] serves until the token is
/// cancelled, then stops accepting and lets in-flight requests finish.
#[derive(Debug)]
pub struct ContentService {
    store: Blockstore,
    gateway: Option<(TcpListener, Router)>,
    rpc: Option<(TcpListener, Router)>,
    addrs: LocalAddrs,
}

/// The gateway router with its edge middleware, for tests without sockets.
pub fn gateway_router(cfg: &ContentConfig, store: Blockstore) -> Router {
    let state = AppState::new(store.clone(), cfg);
    crate::gateway::router(state).layer(axum::middleware::from_fn_with_state(
        Edge {
            listener: "gateway",
            metrics: store.metrics().clone(),
            limiter: cfg
                .rate_limit
                .clone()
                .map(|r| Arc::new(RateLimiter::new(r))),
            access_log: Some(cfg.access_log.clone()),
            request_timeout: Some(cfg.request_timeout),
        },
        edge,
    ))
}

/// The Kubo RPC router with its edge middleware, for tests without sockets.
pub fn rpc_router(cfg: &ContentConfig, store: Blockstore) -> Result<Router, Error> {
    let token = cfg
        .rpc_token
        .as_ref()
        .map(|s| {
            s.resolve()
                .map_err(|e| Error::Config(format!("rpc_token: {e}")))
        })
        .transpose()?;
    let state = AppState::new(store.clone(), cfg);
    Ok(
        crate::rpc::router(state, token).layer(axum::middleware::from_fn_with_state(
            Edge {
                listener: "rpc",
                metrics: store.metrics().clone(),
                limiter: None,
                access_log: None,
                // Applied per route: uploads are bounded by their pace instead.
                request_timeout: None,
            },
            edge,
        )),
    )
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

impl ContentService {
    /// Opens the store of the data directory `data_dir` (blocks under `<data_dir>/content`,
    /// the same store `keel content … --data-dir <data_dir>` uses) and binds the enabled
    /// listeners.
    pub async fn bind(cfg: &ContentConfig, data_dir: &Path) -> Result<Self, Error> {
        Self::bind_with_metrics(cfg, data_dir, Arc::new(Metrics::default())).await
    }

    /// Like [`ContentService::bind`], recording into `metrics` (register them first).
    pub async fn bind_with_metrics(
        cfg: &ContentConfig,
        data_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let dir = data_dir.to_owned();
        let store = tokio::task::spawn_blocking(move || {
            let bs = Blockstore::open_with_metrics(&dir, metrics)?;
            bs.stat()?; // sets the stored-blocks gauges
            Ok::<_, Error>(bs)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let if_non_loopback = cfg.rpc_listen.filter(|a| !a.ip().is_loopback());
        if let Some(a) = if_non_loopback
            && cfg.rpc_token.is_none()
        {
            tracing::warn!(addr = %a, "Kubo RPC listens beyond loopback without rpc_token: anyone who reaches it can write to the store");
        }
        let rpc_router = rpc_router(cfg, store.clone())?;
        let gateway = match cfg.gateway_listen {
            Some(a) => Some((listen(a).await?, gateway_router(cfg, store.clone()))),
            None => None,
        };
        let rpc = match cfg.rpc_listen {
            Some(a) => Some((listen(a).await?, rpc_router)),
            None => None,
        };
        let addrs = LocalAddrs {
            gateway: gateway.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            rpc: rpc.as_ref().and_then(|(l, _)| l.local_addr().ok()),
        };
        Ok(Self {
            store,
            gateway,
            rpc,
            addrs,
        })
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.addrs
    }

    /// The store (for in-process use by other components).
    pub fn store(&self) -> &Blockstore {
        &self.store
    }

    /// Serves both listeners with the default `[listeners]` limits until `shutdown` is
    /// cancelled, then drains in-flight requests.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        self.run_with(
            &ListenersConfig::default(),
            &ListenerMetrics::default(),
            shutdown,
        )
        .await
    }

    /// Serves both listeners with `listeners`' limits, recording into `metrics`, until
    /// `shutdown` is cancelled, then drains in-flight requests.
    pub async fn run_with(
        self,
        listeners: &ListenersConfig,
        metrics: &ListenerMetrics,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let serve = |l: Option<(TcpListener, Router)>, which: Listener, surface: Surface| {
            let token = shutdown.clone();
            let cfg = listeners.get(which).clone();
            async move {
                let Some((listener, router)) = l else {
                    return Ok(());
                };
                let addr = listener
                    .local_addr()
                    .map_err(|e| Error::Task(format!("{} listener: {e}", which.name())))?;
                let server =
                    Arc::new(Server::new(which, &cfg, addr, surface, metrics).with_connect_info());
                tracing::info!(listener = which.name(), %addr, "content listener up");
                server
                    .serve(listener, router, token.cancelled_owned())
                    .await;
                Ok(())
            }
        };
        let rpc = Surface::Api(Cors {
            methods: "POST",
            expose_headers: "X-Stream-Output, X-Chunked-Output, X-Content-Length",
        });
        let (g, r) = tokio::join!(
            serve(self.gateway, Listener::ContentGateway, Surface::Public),
            serve(self.rpc, Listener::ContentRpc, rpc),
        );
        g.and(r)
    }
}
