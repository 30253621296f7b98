//! Composes keel's components into one node.
//!
//! [`Node::bind`] builds everything from a [`keel_config::Config`]: the optional devnet, the
//! chain registry and its head trackers, the gateway listener and the admin listener
//! (`/metrics`, `/healthz`, `/readyz`, `/status`). Every task is owned by the node; a task that
//! ends or panics while the node runs is logged and makes `/readyz` fail.
//!
//! The gateway is served thread per core (`workers`): one current-thread runtime per core,
//! each with its own listener and upstream connections. Everything else runs on the runtime
//! that calls [`Node::bind`]. Every listener is served by `keel_listener` (header and idle
//! timeouts, connection cap, HTTP/2 limits, Host and Origin checks, `[listeners.<name>]`).
//!
//! With `[monitor]`, the monitor (keel-monitor) starts after the listeners are bound: its probes
//! and evaluation task, and its status page listener, served like the admin listener.
//!
//! [`Node::shutdown`] stops in a written order, within a grace period:
//! 1. the gateway stops accepting connections and drains requests in flight;
//! 2. the monitor stops (probes, evaluation, notification workers, status page listener),
//!    before the chains it watches go away, so a shutdown raises no alert;
//! 3. head trackers and the devnet stop;
//! 4. the admin listener stops last, so `/metrics` and `/readyz` stay visible while draining.

mod admin;
mod error;
mod workers;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use keel_chain::{ChainMetrics, ChainRegistry, HeadTracker};
use keel_config::{Config, Listener};
use keel_devnet::Devnet;
use keel_gateway::{Gateway, GatewayMetrics};
use keel_listener::{Cors, ListenerMetrics, Server, Surface};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

pub use crate::{admin::StatusReport, error::NodeError};

/// State shared with the admin listener.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Arc<ChainRegistry>,
    pub(crate) metrics: Registry,
    /// Set when a critical task ended unexpectedly.
    pub(crate) failed: AtomicBool,
    pub(crate) draining: AtomicBool,
}

/// A running keel node.
#[derive(Debug)]
pub struct Node {
    gateway_addr: SocketAddr,
    admin_addr: SocketAddr,
    data_dir: PathBuf,
    shared: Arc<Shared>,
    gateway_cancel: CancellationToken,
    background_cancel: CancellationToken,
    admin_cancel: CancellationToken,
    gateway_task: JoinSet<()>,
    admin_task: JoinSet<()>,
    tracker: HeadTracker,
    devnet: Option<Devnet>,
    content_addrs: Option<keel_content::LocalAddrs>,
    monitor: Option<keel_monitor::Monitor>,
    status_addr: Option<SocketAddr>,
    status_task: JoinSet<()>,
    status_cancel: CancellationToken,
}

impl Node {
    /// Builds and starts every configured component; returns once all listeners are bound.
    pub async fn bind(mut config: Config, data_dir: &Path) -> Result<Self, NodeError> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|source| NodeError::DataDir {
                path: data_dir.display().to_string(),
                source,
            })?;
        let background_cancel = CancellationToken::new();
        let devnet = match &config.devnet {
            Some(d) => {
                let devnet = Devnet::start(d, data_dir, background_cancel.child_token()).await?;
                config.chains.insert(0, devnet.chain_config()?);
                Some(devnet)
            }
            None => None,
        };
        let registry = Arc::new(ChainRegistry::new(&config.chains)?);
        let mut metrics = Registry::default();
        let keel_metrics = metrics.sub_registry_with_prefix("keel");
        let chain_metrics = ChainMetrics::default();
        chain_metrics.register(keel_metrics);
        let gateway_metrics = GatewayMetrics::default();
        gateway_metrics.register(keel_metrics);
        let listener_metrics = ListenerMetrics::default();
        listener_metrics.register(keel_metrics);
        if let (Some(d), Some(dc)) = (&devnet, &config.devnet) {
            devnet_metrics(d.watch(), &dc.name, keel_metrics, &background_cancel);
        }
        let content_metrics = Arc::new(keel_content::metrics::Metrics::default());
        let monitor_metrics = keel_monitor::MonitorMetrics::default();
        if config.monitor.is_some() {
            monitor_metrics.register(metrics.sub_registry_with_prefix("keel"));
        }
        if config.content.is_some() {
            // Registers its own `keel_content_` prefix.
            content_metrics.register(&mut metrics);
        }
        let tracker = HeadTracker::spawn(&registry, chain_metrics, background_cancel.child_token());

        let gateway_listeners = workers::bind(
            config.gateway.listen,
            workers::count(config.gateway.workers),
        )?;
        let admin_listener = bind(config.admin.listen, "admin").await?;
        let gateway_addr = gateway_listeners[0]
            .local_addr()
            .map_err(|source| NodeError::Bind {
                what: "gateway",
                addr: config.gateway.listen,
                source,
            })?;
        let admin_addr = local_addr(&admin_listener, "admin")?;
        let gateway_server = Arc::new(Server::new(
            Listener::Gateway,
            &config.listeners.gateway,
            gateway_addr,
            Surface::Api(Cors {
                methods: "POST",
                expose_headers: keel_gateway::EXPOSED_HEADERS,
            }),
            &listener_metrics,
        ));
        let admin_server = Arc::new(Server::new(
            Listener::Admin,
            &config.listeners.admin,
            admin_addr,
            Surface::Api(Cors {
                methods: "GET",
                expose_headers: "",
            }),
            &listener_metrics,
        ));

        let shared = Arc::new(Shared {
            registry: registry.clone(),
            metrics,
            failed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        });
        let gateway = Gateway::new(
            registry,
            config.gateway.clone(),
            gateway_metrics,
            Some(data_dir.join("evidence")),
            config.evidence,
        );
        let gateway_cancel = CancellationToken::new();
        let mut gateway_task = JoinSet::new();
        workers::spawn(
            gateway_listeners,
            &gateway_server,
            &keel_gateway::router(gateway),
            &gateway_cancel,
            &shared,
            &mut gateway_task,
        )?;
        let mut content_addrs = None;
        let mut content_gc: Option<keel_monitor::probes::host::GcHook> = None;
        if let Some(cc) = &config.content {
            // The store lives under `<data-dir>/content`, where `keel content … --data-dir`
            // finds it (and its GC lock): pass the data directory itself.
            let svc = keel_content::ContentService::bind_with_metrics(
                cc,
                data_dir,
                content_metrics.clone(),
            )
            .await?;
            content_addrs = Some(svc.local_addrs());
            let bs = svc.store().clone();
            content_gc = Some(Arc::new(move || {
                let bs = bs.clone();
                Box::pin(async move {
                    match tokio::task::spawn_blocking(move || keel_content::gc::gc(&bs)).await {
                        Ok(Ok(r)) => Ok(format!(
                            "removed {} blocks ({} bytes)",
                            r.removed.len(),
                            r.removed_bytes
                        )),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                })
            }));
            let (token, shared) = (gateway_cancel.clone(), shared.clone());
            let (listeners, metrics) = (config.listeners.clone(), listener_metrics.clone());
            gateway_task.spawn(async move {
                if let Err(e) = svc.run_with(&listeners, &metrics, token.clone()).await {
                    tracing::error!(error = %e, "content service stopped");
                }
                if !token.is_cancelled() {
                    shared.failed.store(true, Ordering::SeqCst);
                }
            });
        }
        let mut monitor = None;
        let mut status_addr = None;
        let mut status_task = JoinSet::new();
        let status_cancel = CancellationToken::new();
        let mut admin_router = admin::router(shared.clone());
        if let Some(mc) = &config.monitor {
            let text_of = shared.clone();
            let deps = keel_monitor::MonitorDeps {
                registry: shared.registry.clone(),
                metrics_text: Arc::new(move || {
                    let mut out = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut out, &text_of.metrics);
                    out
                }),
                gateway: Some(gateway_addr),
                data_dir: data_dir.to_path_buf(),
                content_gc,
                clock: Arc::new(keel_monitor::clock::SystemClock),
            };
            let mut m =
                keel_monitor::Monitor::start(mc, deps, monitor_metrics, CancellationToken::new())
                    .await?;
            admin_router = admin_router.nest("/monitor", m.admin_router());
            if let Some((listener, router)) = m.take_status_listener() {
                let addr = local_addr(&listener, "status page")?;
                status_addr = Some(addr);
                let server = Arc::new(Server::new(
                    Listener::StatusPage,
                    &config.listeners.status_page,
                    addr,
                    Surface::Public,
                    &listener_metrics,
                ));
                status_task.spawn(serve(
                    server,
                    listener,
                    router,
                    status_cancel.clone(),
                    shared.clone(),
                ));
            }
            monitor = Some(m);
        }
        let admin_cancel = CancellationToken::new();
        let mut admin_task = JoinSet::new();
        admin_task.spawn(serve(
            admin_server,
            admin_listener,
            admin_router,
            admin_cancel.clone(),
            shared.clone(),
        ));
        tracing::info!(gateway = %gateway_addr, admin = %admin_addr, data_dir = %data_dir.display(), "keel is up");
        if let Some(a) = content_addrs {
            tracing::info!(gateway = ?a.gateway, rpc = ?a.rpc, "content store is up");
        }
        Ok(Self {
            gateway_addr,
            admin_addr,
            data_dir: data_dir.to_path_buf(),
            shared,
            gateway_cancel,
            background_cancel,
            admin_cancel,
            gateway_task,
            admin_task,
            tracker,
            devnet,
            content_addrs,
            monitor,
            status_addr,
            status_task,
            status_cancel,
        })
    }

    /// Address of the monitor's status page, when it is served.
    pub fn status_addr(&self) -> Option<SocketAddr> {
        self.status_addr
    }

    /// The monitor, when `[monitor]` is configured.
    pub fn monitor(&self) -> Option<keel_monitor::MonitorHandle> {
        self.monitor.as_ref().map(keel_monitor::Monitor::handle)
    }

    /// Address the gateway listens on.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway_addr
    }

    /// Address the admin listener listens on.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Addresses of the content gateway and Kubo RPC listeners, when `[content]` is configured.
    pub fn content_addrs(&self) -> Option<keel_content::LocalAddrs> {
        self.content_addrs
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The chains served.
    pub fn chains(&self) -> &Arc<ChainRegistry> {
        &self.shared.registry
    }

    /// URLs of the devnet's nodes, when the devnet runs.
    pub fn devnet_urls(&self) -> Vec<String> {
        self.devnet.as_ref().map(Devnet::urls).unwrap_or_default()
    }

    /// The devnet's nodes (URL, pid, in lockstep), when the devnet runs.
    pub fn devnet_nodes(&self) -> Vec<keel_devnet::DevnetNode> {
        self.devnet.as_ref().map(Devnet::nodes).unwrap_or_default()
    }

    /// Whether every chain has an upstream that can serve and no critical task failed.
    pub fn is_ready(&self) -> bool {
        admin::ready(&self.shared).is_ok()
    }

    /// Resolves when a critical task (a listener) has failed.
    pub async fn failed(&mut self) {
        tokio::select! {
            _ = self.gateway_task.join_next() => {}
            _ = self.admin_task.join_next() => {}
            Some(_) = self.status_task.join_next() => {}
        }
    }

    /// Stops the node in the documented order, waiting at most `grace` for requests in flight.
    pub async fn shutdown(mut self, grace: Duration) -> Result<(), NodeError> {
        tracing::info!(grace = ?grace, "shutting down");
        self.shared.draining.store(true, Ordering::SeqCst);
        self.gateway_cancel.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.gateway_task.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("requests still in flight after the grace period; closing them");
            self.gateway_task.abort_all();
        }
        self.status_cancel.cancel();
        while self.status_task.join_next().await.is_some() {}
        if let Some(m) = self.monitor.take() {
            m.shutdown().await;
        }
        self.background_cancel.cancel();
        self.tracker.join().await;
        if let Some(d) = self.devnet.take() {
            d.join().await;
        }
        self.admin_cancel.cancel();
        while self.admin_task.join_next().await.is_some() {}
        tracing::info!("shutdown complete");
        if drained.is_err() {
            Err(NodeError::GraceExceeded(grace))
        } else {
            Ok(())
        }
    }
}

/// Labels of devnet node series: the chain and the node's upstream name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DevnetLabels {
    chain: String,
    upstream: String,
}

/// `keel_devnet_node_ready` and `keel_devnet_node_restarts`, refreshed four times a second.
fn devnet_metrics(
    watch: keel_devnet::DevnetWatch,
    chain: &str,
    registry: &mut Registry,
    cancel: &CancellationToken,
) {
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    let ready: Family<DevnetLabels, Gauge> = Family::default();
    let restarts: Family<DevnetLabels, Gauge> = Family::default();
    registry.register(
        "devnet_node_ready",
        "1 when the devnet node is in lockstep, 0 while it restarts or catches up",
        ready.clone(),
    );
    registry.register(
        "devnet_node_restarts",
        "Times the devnet node's process exited and was restarted",
        restarts.clone(),
    );
    let chain = chain.to_owned();
    let refresh = move || {
        for (i, n) in watch.nodes().iter().enumerate() {
            let l = DevnetLabels {
                chain: chain.clone(),
                upstream: format!("node-{i}"),
            };
            ready.get_or_create(&l).set(i64::from(n.ready));
            restarts
                .get_or_create(&l)
                .set(i64::try_from(n.restarts).unwrap_or(i64::MAX));
        }
    };
    refresh();
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => refresh(),
            }
        }
    });
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { what, addr, source })
}

fn local_addr(l: &TcpListener, what: &'static str) -> Result<SocketAddr, NodeError> {
    l.local_addr().map_err(|source| NodeError::Bind {
        what,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Serves `router` with `server` until `cancel`, then drains; an unexpected end marks the node
/// failed.
async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    router: axum::Router,
    cancel: CancellationToken,
    shared: Arc<Shared>,
) {
    server.serve(listener, router, cancel.cancelled()).await;
    if !cancel.is_cancelled() {
        shared.failed.store(true, Ordering::SeqCst);
        tracing::error!(listener = server.name(), "listener stopped unexpectedly");
    }
}
