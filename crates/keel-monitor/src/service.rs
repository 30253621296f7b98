//! The monitor service: one task owns the series store, the rules, the alert book, the SLO
//! budgets and the database; a cloneable [`MonitorHandle`] sends it commands over a bounded
//! channel and reads the latest status document without waiting for it.
//!
//! Every `evaluation_interval` the task: samples keel's whole metrics registry into the
//! series store (probes write their results there too) → updates SLO budgets and burn rates →
//! evaluates every rule → applies the transitions to the alert book → plans notifications and
//! queues them (never waiting for delivery) → accounts uptime per component → writes what
//! changed to the database in one transaction → publishes the status document.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_chain::ChainRegistry;
use keel_config::monitor::{MonitorConfig, ReceiverKind, Severity};
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertBook, AlertState, HistoryEvent, Notification, Silence};
use crate::clock::{Clock, Millis, ms, rfc3339};
use crate::db::{Db, Incident, Round};
use crate::error::MonitorError;
use crate::expr::EvalCtx;
use crate::metrics::{AlertLabels, BurnLabels, MonitorMetrics, SloLabels};
use crate::notify::{Dispatcher, Receiver};
use crate::probes::host::GcHook;
use crate::rules::{Engine, Rule};
use crate::series::SeriesStore;
use crate::slo::{self, Budget};
use crate::status::{Component, ComponentState, Day, StatusDoc, date_of};

/// What the monitor needs from the node.
pub struct MonitorDeps {
    /// The chains.
    pub registry: Arc<ChainRegistry>,
    /// Encodes the node's whole metrics registry (Prometheus text).
    pub metrics_text: Arc<dyn Fn() -> String + Send + Sync>,
    /// The gateway's address (synthetic transactions go through it).
    pub gateway: Option<SocketAddr>,
    /// The data directory (database, default disk path).
    pub data_dir: PathBuf,
    /// Content garbage collection, when the content store runs.
    pub content_gc: Option<GcHook>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MonitorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorDeps")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// A silence request.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct SilenceRequest {
    /// Matchers (`alertname=UpstreamDown`, `chain=~a|b`).
    pub matchers: Vec<String>,
    /// Start (RFC 3339); default now.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// Length (humantime, `2h`).
    pub duration: String,
    /// Who.
    pub created_by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

enum Command {
    Alerts(oneshot::Sender<Vec<Alert>>),
    Ack(
        String,
        String,
        String,
        oneshot::Sender<Result<Vec<Alert>, MonitorError>>,
    ),
    Silence(
        SilenceRequest,
        oneshot::Sender<Result<Silence, MonitorError>>,
    ),
    Unsilence(String, oneshot::Sender<Result<Silence, MonitorError>>),
    Silences(oneshot::Sender<Vec<Silence>>),
    OpenIncident(NewIncident, oneshot::Sender<Result<Incident, MonitorError>>),
    UpdateIncident(
        i64,
        IncidentChange,
        oneshot::Sender<Result<Incident, MonitorError>>,
    ),
    Evaluate(oneshot::Sender<()>),
}

/// A new incident.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct NewIncident {
    /// Title.
    pub title: String,
    /// `minor`, `major`, `critical` or `maintenance`.
    #[serde(default = "minor")]
    pub impact: String,
    /// Affected components (names).
    #[serde(default)]
    pub components: Vec<String>,
    /// First timeline entry.
    pub message: String,
}

fn minor() -> String {
    "minor".to_owned()
}

/// A timeline entry for an incident.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct IncidentChange {
    /// `investigating`, `identified`, `monitoring` or `resolved`.
    pub status: String,
    /// What to say.
    pub message: String,
}

const IMPACTS: &[&str] = &["minor", "major", "critical", "maintenance"];
const STATUSES: &[&str] = &["investigating", "identified", "monitoring", "resolved"];
/// Longest incident title, message or component list item accepted, in bytes.
pub const MAX_TEXT: usize = 4096;

/// Talks to the monitor task.
#[derive(Clone)]
pub struct MonitorHandle {
    tx: mpsc::Sender<Command>,
    status: Arc<RwLock<Arc<StatusDoc>>>,
    db: Db,
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MonitorHandle")
    }
}

impl MonitorHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MonitorError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| MonitorError::Stopped)?;
        rx.await.map_err(|_| MonitorError::Stopped)
    }

    /// Pending, firing and recently resolved alerts.
    pub async fn alerts(&self) -> Result<Vec<Alert>, MonitorError> {
        self.ask(Command::Alerts).await
    }

    /// Acknowledges an alert (by id, or matchers `a=b,c=d`).
    pub async fn ack(
        &self,
        target: &str,
        by: &str,
        comment: &str,
    ) -> Result<Vec<Alert>, MonitorError> {
        self.ask(|tx| Command::Ack(target.to_owned(), by.to_owned(), comment.to_owned(), tx))
            .await?
    }

    /// Adds a silence.
    pub async fn silence(&self, req: SilenceRequest) -> Result<Silence, MonitorError> {
        self.ask(|tx| Command::Silence(req, tx)).await?
    }

    /// Ends a silence now.
    pub async fn unsilence(&self, id: &str) -> Result<Silence, MonitorError> {
        self.ask(|tx| Command::Unsilence(id.to_owned(), tx)).await?
    }

    /// Silences in force or to come.
    pub async fn silences(&self) -> Result<Vec<Silence>, MonitorError> {
        self.ask(Command::Silences).await
    }

    /// Opens an incident.
    pub async fn open_incident(&self, i: NewIncident) -> Result<Incident, MonitorError> {
        self.ask(|tx| Command::OpenIncident(i, tx)).await?
    }

    /// Adds a timeline entry to an incident.
    pub async fn update_incident(
        &self,
        id: i64,
        c: IncidentChange,
    ) -> Result<Incident, MonitorError> {
        self.ask(|tx| Command::UpdateIncident(id, c, tx)).await?
    }

    /// Incidents open or of the last `days` days.
    pub async fn incidents(&self, now: Millis, days: i64) -> Result<Vec<Incident>, MonitorError> {
        self.db.incidents(now - days * 86_400_000, 200).await
    }

    /// The newest alert history events.
    pub async fn history(&self, limit: i64) -> Result<Vec<HistoryEvent>, MonitorError> {
        self.db.history(limit).await
    }

    /// The newest disk action audit entries.
    pub async fn audit(
        &self,
        limit: i64,
    ) -> Result<Vec<(Millis, String, String, String)>, MonitorError> {
        self.db.audit_log(limit).await
    }

    /// Runs an evaluation round now and waits for it (tests, `keel alerts` after a change).
    pub async fn evaluate_now(&self) -> Result<(), MonitorError> {
        self.ask(Command::Evaluate).await
    }

    /// The latest status document.
    pub fn status(&self) -> Arc<StatusDoc> {
        self.status.read().clone()
    }
}

/// The running monitor.
pub struct Monitor {
    handle: MonitorHandle,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
    status_listener: Option<tokio::net::TcpListener>,
    status_cfg: keel_config::monitor::StatusPageConfig,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Monitor")
    }
}

/// Compiles the rule set of `cfg` (built-in rules, then the operator's: a rule with a
/// built-in's name replaces it). The error names the rule.
pub fn compile_rules(cfg: &MonitorConfig) -> Result<Vec<Rule>, MonitorError> {
    let mut configs = if cfg.default_rules {
        crate::default_rules::rules(&cfg.disable_rules)
    } else {
        Vec::new()
    };
    for r in &cfg.rules {
        configs.retain(|c| c.name != r.name);
        configs.push(r.clone());
    }
    configs
        .into_iter()
        .map(|c| {
            Rule::new(c).map_err(|e| MonitorError::Rule {
                rule: e.rule,
                error: e.error.to_string(),
            })
        })
        .collect()
}

/// Checks what config validation cannot: rule expressions, receivers named by routes, what
/// each receiver kind needs, probe conditions. Secrets are read at start, not here (so a
/// config can be checked where its secret files do not exist).
pub fn check(cfg: &MonitorConfig) -> Result<(), MonitorError> {
    compile_rules(cfg)?;
    let names: Vec<&str> = cfg.receivers.iter().map(|r| r.name.as_str()).collect();
    for (i, r) in cfg.routes.iter().enumerate() {
        for name in r.receivers.iter().chain(&r.escalate_to) {
            if !names.contains(&name.as_str()) {
                return Err(MonitorError::Config {
                    key: format!("monitor.routes.{i}"),
                    message: format!("receiver `{name}` is not defined in [[monitor.receivers]]"),
                });
            }
        }
    }
    for r in &cfg.receivers {
        Receiver::check(r).map_err(|message| MonitorError::Config {
            key: format!("monitor.receivers.{}", r.name),
            message,
        })?;
    }
    for p in &cfg.http {
        for c in &p.conditions {
            crate::probes::http::parse_condition(c).map_err(|e| MonitorError::Config {
                key: format!("monitor.http.{}.conditions", p.name),
                message: format!("`{c}`: {e}"),
            })?;
        }
    }
    Ok(())
}

impl Monitor {
    /// Opens the database, restores state, binds the status page listener and spawns the
    /// evaluation task and every probe.
    pub async fn start(
        cfg: &MonitorConfig,
        deps: MonitorDeps,
        metrics: MonitorMetrics,
        cancel: CancellationToken,
    ) -> Result<Self, MonitorError> {
        check(cfg)?;
        let rules = compile_rules(cfg)?;
        let db = Db::open(&deps.data_dir.join("monitor.db")).await?;
        let now = deps.clock.now_ms();
        let status_listener = match cfg.status.listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| MonitorError::Bind { addr, source })?,
            ),
            None => None,
        };
        metrics.rules.set(i64::try_from(rules.len()).unwrap_or(0));
        let mut store = SeriesStore::new(ms(cfg.evaluation_interval) * 4, 4096);
        let mut engine = Engine::new(rules);
        store.retain_at_least(engine.max_window() + ms(cfg.evaluation_interval));
        let mut book = AlertBook::new(&cfg.routes, &cfg.inhibit, &cfg.maintenance);
        let saved = db.alerts().await?;
        for a in &saved {
            if a.state == AlertState::Firing
                && let Some(ri) = engine.rule_index(&a.rule)
            {
                engine.restore_firing(&mut store, ri, &a.instance, a.since);
            }
        }
        let restored = saved.len();
        book.restore(saved, db.silences(now).await?);
        let mut tasks = JoinSet::new();
        let receivers: Vec<Receiver> = cfg
            .receivers
            .iter()
            .map(|r| {
                Receiver::from_config(r).map_err(|message| MonitorError::Config {
                    key: format!("monitor.receivers.{}", r.name),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        let dispatcher = Dispatcher::start(receivers, &cfg.notify, metrics.clone(), &cancel);

        // SLO budgets, restored.
        let mut budgets = Vec::new();
        if cfg.slo.enabled {
            let window = ms(cfg.slo.window);
            for c in deps.registry.chains() {
                for (kind, objective) in [
                    ("availability", cfg.slo.availability),
                    ("latency", cfg.slo.latency_target),
                ] {
                    let mut b = Budget::new(objective, window);
                    let key = format!("{}/{kind}", c.name());
                    b.restore(
                        db.slo_minutes(&key, (now - window).div_euclid(60_000))
                            .await?,
                    );
                    budgets.push(SloState {
                        key,
                        chain: c.name().to_owned(),
                        kind,
                        budget: b,
                    });
                }
            }
        }
        let status = Arc::new(RwLock::new(Arc::new(StatusDoc::empty(
            &cfg.status.title,
            now,
        ))));
        let (tx, rx) = mpsc::channel(64);
        let handle = MonitorHandle {
            tx,
            status: status.clone(),
            db: db.clone(),
        };
        // Probes.
        for c in deps.registry.chains() {
            let (c, p, m, k) = (
                c.clone(),
                cfg.chain_probe.clone(),
                metrics.clone(),
                cancel.clone(),
            );
            tasks.spawn(async move {
                tokio::select! {
                    () = k.cancelled() => {}
                    () = crate::probes::chain::run(c, p, m) => {}
                }
            });
        }
        for s in &cfg.synthetic_tx {
            let Some(chain) = deps.registry.get(&s.chain) else {
                return Err(MonitorError::Config {
                    key: "monitor.synthetic_tx.chain".into(),
                    message: format!("`{}` is not a chain of this node", s.chain),
                });
            };
            let url = match (&s.url, deps.gateway) {
                (Some(u), _) => u.expose().as_str().to_owned(),
                (None, Some(g)) => format!("http://{g}/rpc/{}", chain.name()),
                (None, None) => {
                    return Err(MonitorError::Config {
                        key: "monitor.synthetic_tx.url".into(),
                        message: "no gateway to send through; set url".into(),
                    });
                }
            };
            let key = s
                .key
                .resolve()
                .map_err(|e| MonitorError::Config {
                    key: "monitor.synthetic_tx.key".into(),
                    message: e,
                })
                .and_then(|k| {
                    crate::probes::synthetic::TxKey::parse(k.expose()).map_err(|e| {
                        MonitorError::Config {
                            key: "monitor.synthetic_tx.key".into(),
                            message: e,
                        }
                    })
                })?;
            let (s, m, k, id) = (s.clone(), metrics.clone(), cancel.clone(), chain.chain_id());
            tasks.spawn(async move {
                tokio::select! {
                    () = k.cancelled() => {}
                    () = crate::probes::synthetic::run(s, key, id, url, m) => {}
                }
            });
        }
        let http_client = crate::probes::http::client();
        for h in &cfg.http {
            let conditions = h
                .conditions
                .iter()
                .filter_map(|c| crate::probes::http::parse_condition(c).ok())
                .collect();
            let (h, m, k, c) = (
                h.clone(),
                metrics.clone(),
                cancel.clone(),
                http_client.clone(),
            );
            tasks.spawn(async move {
                tokio::select! {
                    () = k.cancelled() => {}
                    () = crate::probes::http::run(h, conditions, c, m) => {}
                }
            });
        }
        for t in &cfg.tcp {
            let tls = if t.tls {
                Some(Arc::new(
                    crate::probes::tcp::tls_config(t.ca_file.as_deref()).map_err(|message| {
                        MonitorError::Config {
                            key: format!("monitor.tcp.{}.ca_file", t.name),
                            message,
                        }
                    })?,
                ))
            } else {
                None
            };
            let (t, m, k) = (t.clone(), metrics.clone(), cancel.clone());
            tasks.spawn(async move {
                tokio::select! {
                    () = k.cancelled() => {}
                    () = crate::probes::tcp::run(t, tls, m) => {}
                }
            });
        }
        if cfg.host.enabled || !cfg.disk_actions.is_empty() {
            let paths = if cfg.host.disk_paths.is_empty() {
                vec![deps.data_dir.clone()]
            } else {
                cfg.host.disk_paths.clone()
            };
            let probe = crate::probes::host::HostProbe {
                cfg: cfg.host.clone(),
                paths: if cfg.host.enabled { paths } else { Vec::new() },
                actions: cfg
                    .disk_actions
                    .iter()
                    .map(|a| {
                        (
                            a.clone(),
                            a.path.clone().unwrap_or_else(|| deps.data_dir.clone()),
                        )
                    })
                    .collect(),
                gc: deps.content_gc.clone(),
                db: db.clone(),
                clock: deps.clock.clone(),
                metrics: metrics.clone(),
            };
            let k = cancel.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = k.cancelled() => {}
                    () = probe.run() => {}
                }
            });
        }
        let core = Core {
            cfg: cfg.clone(),
            deps,
            metrics,
            store,
            engine,
            book,
            db,
            dispatcher,
            budgets,
            status,
            uptime: HashMap::new(),
            last_tick: None,
            last_prune: None,
            am_last: HashMap::new(),
            am_resent: None,
        };
        let k = cancel.clone();
        tasks.spawn(async move { core.run(rx, k).await });
        tracing::info!(rules = handle_rules(cfg), restored, "monitor is up");
        Ok(Self {
            handle,
            tasks,
            cancel,
            status_listener,
            status_cfg: cfg.status.clone(),
        })
    }

    /// The handle.
    pub fn handle(&self) -> MonitorHandle {
        self.handle.clone()
    }

    /// The status page listener (bound in `start`) and its router, for the node to serve.
    pub fn take_status_listener(&mut self) -> Option<(tokio::net::TcpListener, axum::Router)> {
        let l = self.status_listener.take()?;
        Some((
            l,
            crate::api::status_router(self.handle.clone(), &self.status_cfg),
        ))
    }

    /// The admin API router (mounted under `/monitor` on the admin listener).
    pub fn admin_router(&self) -> axum::Router {
        crate::api::admin_router(self.handle.clone())
    }

    /// Stops every task and waits for them; the last evaluation's writes are committed.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                tracing::error!(error = %e, "monitor task panicked");
            }
        }
    }
}

fn handle_rules(cfg: &MonitorConfig) -> usize {
    compile_rules(cfg).map_or(0, |r| r.len())
}

struct SloState {
    key: String,
    chain: String,
    kind: &'static str,
    budget: Budget,
}

struct Core {
    cfg: MonitorConfig,
    deps: MonitorDeps,
    metrics: MonitorMetrics,
    store: SeriesStore,
    engine: Engine,
    book: AlertBook,
    db: Db,
    dispatcher: Dispatcher,
    budgets: Vec<SloState>,
    status: Arc<RwLock<Arc<StatusDoc>>>,
    /// Component → day → (up ms, total ms), the last 90 days.
    uptime: HashMap<String, BTreeMap<i64, (i64, i64)>>,
    last_tick: Option<Millis>,
    last_prune: Option<Instant>,
    /// Alertmanager receivers: the last notification per group, re-sent while firing.
    am_last: HashMap<(String, String), Notification>,
    am_resent: Option<Instant>,
}

impl Core {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, cancel: CancellationToken) {
        let mut ticker = crate::probes::ticker(self.cfg.evaluation_interval);
        self.load_uptime().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => self.tick().await,
                cmd = rx.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => break,
                },
            }
        }
        self.db.close().await;
        let d = self.dispatcher;
        d.join().await;
    }

    async fn load_uptime(&mut self) {
        let today = self.deps.clock.now_ms().div_euclid(86_400_000);
        for id in self.component_ids() {
            if let Ok(days) = self.db.uptime(&id, today - 89).await {
                let m = self.uptime.entry(id).or_default();
                for d in days {
                    m.insert(d.day, (d.up_ms, d.total_ms));
                }
            }
        }
    }

    fn component_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .deps
            .registry
            .chains()
            .iter()
            .map(|c| format!("chain:{}", c.name()))
            .collect();
        ids.extend(
            self.cfg
                .http
                .iter()
                .filter(|p| p.public)
                .map(|p| format!("http:{}", p.name)),
        );
        ids.extend(
            self.cfg
                .tcp
                .iter()
                .filter(|p| p.public)
                .map(|p| format!("tcp:{}", p.name)),
        );
        ids
    }

    async fn command(&mut self, c: Command) {
        let now = self.deps.clock.now_ms();
        match c {
            Command::Alerts(tx) => {
                let _ = tx.send(self.book.alerts().cloned().collect());
            }
            Command::Ack(target, by, comment, tx) => {
                let r = match self.book.ack(&target, &by, &comment, now) {
                    Ok(acked) => {
                        let history: Vec<HistoryEvent> = acked
                            .iter()
                            .map(|a| HistoryEvent {
                                alert: a.id.clone(),
                                rule: a.rule.clone(),
                                at: now,
                                kind: "acked".into(),
                                detail: format!("by {by}: {comment}"),
                            })
                            .collect();
                        let firing: Vec<Alert> = acked
                            .iter()
                            .filter(|a| a.state != AlertState::Pending)
                            .cloned()
                            .collect();
                        match self
                            .db
                            .write(Round {
                                alerts: &firing,
                                history: &history,
                                ..Round::default()
                            })
                            .await
                        {
                            Ok(()) => Ok(acked),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(MonitorError::Command(book_error(&e))),
                };
                let _ = tx.send(r);
            }
            Command::Silence(req, tx) => {
                let _ = tx.send(self.add_silence(req, now).await);
            }
            Command::Unsilence(id, tx) => {
                let r = match self.book.expire_silence(&id, now) {
                    Ok(s) => self.db.save_silence(&s).await.map(|()| s),
                    Err(e) => Err(MonitorError::Command(book_error(&e))),
                };
                let _ = tx.send(r);
            }
            Command::Silences(tx) => {
                let _ = tx.send(
                    self.book
                        .silences()
                        .iter()
                        .filter(|s| s.ends_at > now)
                        .cloned()
                        .collect(),
                );
            }
            Command::OpenIncident(i, tx) => {
                let r =
                    match validate_incident(&i.title, &i.message, Some(&i.impact), &i.components) {
                        Ok(()) => {
                            self.db
                                .open_incident(&i.title, &i.impact, &i.components, &i.message, now)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                let _ = tx.send(r);
                self.publish(now, None).await;
            }
            Command::UpdateIncident(id, c, tx) => {
                let r = if STATUSES.contains(&c.status.as_str()) {
                    match validate_incident("-", &c.message, None, &[]) {
                        Ok(()) => {
                            self.db
                                .update_incident(id, &c.status, &c.message, now)
                                .await
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    Err(MonitorError::Command(format!(
                        "status `{}` is not one of {}",
                        c.status,
                        STATUSES.join(", ")
                    )))
                };
                let _ = tx.send(r);
                self.publish(now, None).await;
            }
            Command::Evaluate(tx) => {
                self.tick().await;
                let _ = tx.send(());
            }
        }
    }

    async fn add_silence(
        &mut self,
        req: SilenceRequest,
        now: Millis,
    ) -> Result<Silence, MonitorError> {
        let d = humantime::parse_duration(&req.duration)
            .map_err(|e| MonitorError::Command(format!("duration `{}`: {e}", req.duration)))?;
        let starts_at = match &req.starts_at {
            Some(t) => crate::clock::parse_rfc3339(t)
                .ok_or_else(|| MonitorError::Command(format!("`{t}` is not an RFC 3339 time")))?,
            None => now,
        };
        if req.created_by.trim().is_empty() {
            return Err(MonitorError::Command("a silence needs created_by".into()));
        }
        let mut id = [0u8; 8];
        rand_bytes(&mut id, now);
        let s = Silence {
            id: hex::encode(id),
            matchers: req.matchers,
            starts_at,
            ends_at: starts_at + ms(d),
            created_by: req.created_by,
            comment: req.comment,
        };
        self.book
            .add_silence(s.clone())
            .map_err(|e| MonitorError::Command(book_error(&e)))?;
        self.db.save_silence(&s).await?;
        Ok(s)
    }

    async fn tick(&mut self) {
        let started = Instant::now();
        let now = self.deps.clock.now_ms();
        let interval = ms(self.cfg.evaluation_interval);
        let lookback = (interval * 3).max(60_000);
        let text = (self.deps.metrics_text)();
        self.store.ingest_text(&text, now);
        self.store
            .drop_stale(now, lookback.max(self.engine.max_window()) + interval);
        // Content store size against its limit.
        if let Some(max) = self.cfg.host.content_max_bytes
            && let Some(bytes) = self.latest("keel_content_bytes_stored")
        {
            let r = bytes / max.max(1) as f64;
            self.metrics.content_size_ratio.set(r);
            self.store.record("keel_content_size_ratio", &[], now, r);
        }
        // SLOs.
        let mut slo_rows = Vec::new();
        let threshold = self.cfg.slo.latency_threshold.as_secs_f64();
        for s in &mut self.budgets {
            let counts = match s.kind {
                "availability" => slo::availability_counts(&self.store, &s.chain, now, lookback),
                _ => slo::latency_counts(&self.store, &s.chain, threshold, now, lookback),
            };
            if let Some((good, total)) = counts {
                s.budget.observe(now, good, total);
            }
            let labels = SloLabels {
                chain: s.chain.clone(),
                slo: s.kind,
            };
            self.metrics
                .slo_objective
                .get_or_create(&labels)
                .set(s.budget.objective);
            let remaining = s.budget.remaining(now);
            self.metrics
                .slo_error_budget_remaining
                .get_or_create(&labels)
                .set(remaining);
            self.store.record(
                "keel_slo_error_budget_remaining",
                &[("chain", &s.chain), ("slo", s.kind)],
                now,
                remaining,
            );
            for (long, short, lw, sw, _) in slo::PAIRS {
                let burn = s.budget.burn_rate(now, lw).min(s.budget.burn_rate(now, sw));
                self.metrics
                    .slo_burn_rate
                    .get_or_create(&BurnLabels {
                        chain: s.chain.clone(),
                        slo: s.kind,
                        long,
                        short,
                    })
                    .set(burn);
                self.store.record(
                    "keel_slo_burn_rate",
                    &[
                        ("chain", &s.chain),
                        ("slo", s.kind),
                        ("long", long),
                        ("short", short),
                    ],
                    now,
                    burn,
                );
            }
            if let Some((minute, good, total)) = s.budget.current_minute() {
                slo_rows.push((s.key.clone(), minute, good, total));
            }
        }
        // Rules.
        let mut transitions = Vec::new();
        self.engine
            .evaluate(&mut self.store, EvalCtx { now, lookback }, &mut transitions);
        let (mut history, mut changed) = self.book.apply(self.engine.rules(), &transitions, now);
        for t in &transitions {
            if matches!(
                t.change,
                crate::rules::Change::Firing | crate::rules::Change::Resolved
            ) {
                let rule = &self.engine.rules()[t.rule].config.name;
                tracing::warn!(rule = %rule, labels = ?t.instance, value = t.value, change = ?t.change, "alert");
            }
        }
        let (notifications, planned) = self.book.plan(now);
        history.extend(planned);
        // Escalations and acks change alerts: persist the firing ones again.
        changed.extend(
            self.book
                .alerts()
                .filter(|a| a.escalated_at == Some(now))
                .cloned(),
        );
        let am = self.dispatcher.receivers_of(ReceiverKind::Alertmanager);
        for n in notifications {
            if am.contains(&n.receiver) {
                self.am_last
                    .insert((n.receiver.clone(), n.group_key.clone()), n.clone());
            }
            self.dispatcher.enqueue(n);
        }
        self.resend_alertmanager(now);
        // Uptime.
        let elapsed = self
            .last_tick
            .map_or(interval, |t| (now - t).clamp(0, interval * 2));
        self.last_tick = Some(now);
        let mut uptime_rows = Vec::new();
        let components = self.components(now);
        let day = now.div_euclid(86_400_000);
        for c in &components {
            if c.state == ComponentState::Unknown {
                continue;
            }
            let up = if c.state == ComponentState::Outage {
                0
            } else {
                elapsed
            };
            let e = self
                .uptime
                .entry(c.id.clone())
                .or_default()
                .entry(day)
                .or_insert((0, 0));
            e.0 += up;
            e.1 += elapsed;
            uptime_rows.push((c.id.clone(), day, up, elapsed));
        }
        for m in self.uptime.values_mut() {
            m.retain(|d, _| *d > day - 90);
        }
        if let Err(e) = self
            .db
            .write(Round {
                alerts: &changed,
                history: &history,
                uptime: &uptime_rows,
                slo: &slo_rows,
            })
            .await
        {
            tracing::error!(error = %e, "cannot save the monitor's state");
        }
        if self
            .last_prune
            .is_none_or(|t| t.elapsed() > Duration::from_secs(3600))
        {
            self.last_prune = Some(Instant::now());
            if let Err(e) = self.db.prune(now - ms(self.cfg.history_retention)).await {
                tracing::warn!(error = %e, "cannot prune old monitor state");
            }
        }
        // Metrics of the monitor itself.
        for state in ["pending", "firing"] {
            for sev in [Severity::Info, Severity::Warning, Severity::Critical] {
                let n = self
                    .book
                    .alerts()
                    .filter(|a| a.state.as_str() == state && a.severity == sev)
                    .count();
                self.metrics
                    .alerts
                    .get_or_create(&AlertLabels {
                        state,
                        severity: sev.as_str(),
                    })
                    .set(i64::try_from(n).unwrap_or(0));
            }
        }
        self.metrics.evaluations.inc();
        self.metrics
            .evaluation_seconds
            .set(started.elapsed().as_secs_f64());
        self.publish(now, Some(components)).await;
    }

    fn resend_alertmanager(&mut self, now: Millis) {
        if self.am_last.is_empty()
            || self
                .am_resent
                .is_some_and(|t| t.elapsed() < self.cfg.notify.alertmanager_resend)
        {
            return;
        }
        self.am_resent = Some(Instant::now());
        let mut keep = HashMap::new();
        for (k, mut n) in std::mem::take(&mut self.am_last) {
            n.alerts.retain_mut(|a| match self.book.get(&a.id) {
                Some(cur) if cur.state == AlertState::Firing && cur.muted.is_none() => {
                    *a = cur.clone();
                    true
                }
                _ => false,
            });
            if n.alerts.is_empty() {
                continue;
            }
            n.at = now;
            self.dispatcher.enqueue(n.clone());
            keep.insert(k, n);
        }
        self.am_last = keep;
    }

    fn latest(&self, metric: &str) -> Option<f64> {
        let m = self.store.interner.get(metric)?;
        let mut sum = None;
        for &id in self.store.of_metric(m).0 {
            if let Some(l) = self.store.get(id).and_then(crate::series::Series::last) {
                *sum.get_or_insert(0.0) += l.value;
            }
        }
        sum
    }

    fn probe_up(&self, kind: &str, probe: &str) -> Option<f64> {
        let m = self.store.interner.get("keel_probe_up")?;
        let (k_l, p_l) = (
            self.store.interner.get("kind")?,
            self.store.interner.get("probe")?,
        );
        let (k_v, p_v) = (
            self.store.interner.get(kind)?,
            self.store.interner.get(probe)?,
        );
        self.store
            .of_metric(m)
            .0
            .iter()
            .filter_map(|id| self.store.get(*id))
            .find(|s| s.label(k_l) == Some(k_v) && s.label(p_l) == Some(p_v))
            .and_then(crate::series::Series::last)
            .map(|l| l.value)
    }

    fn components(&self, now: Millis) -> Vec<Component> {
        let firing: Vec<&Alert> = self
            .book
            .alerts()
            .filter(|a| a.state == AlertState::Firing)
            .collect();
        let maintenance = !self.book.maintenance_now(now).is_empty();
        let mut out = Vec::new();
        for c in self.deps.registry.chains() {
            let alerts: Vec<&&Alert> = firing
                .iter()
                .filter(|a| a.labels.get("chain").map(String::as_str) == Some(c.name()))
                .collect();
            let unhealthy = c
                .status()
                .iter()
                .filter(|u| u.state != keel_chain::UpstreamState::Healthy)
                .count();
            let (state, detail) = if !c.is_ready() {
                (
                    ComponentState::Outage,
                    Some("no upstream can serve requests".to_owned()),
                )
            } else if let Some(a) = alerts.iter().max_by_key(|a| a.severity) {
                (
                    ComponentState::Degraded,
                    Some(
                        a.annotations
                            .get("summary")
                            .cloned()
                            .unwrap_or_else(|| a.rule.clone()),
                    ),
                )
            } else if unhealthy > 0 {
                (
                    ComponentState::Degraded,
                    Some(format!(
                        "{unhealthy} of {} upstreams unhealthy",
                        c.upstreams().len()
                    )),
                )
            } else {
                (ComponentState::Operational, None)
            };
            out.push(self.component(
                format!("chain:{}", c.name()),
                format!("{} JSON-RPC", c.name()),
                state,
                detail,
                maintenance,
                now,
            ));
        }
        let probes = self
            .cfg
            .http
            .iter()
            .filter(|p| p.public)
            .map(|p| ("http", p.name.clone()))
            .chain(
                self.cfg
                    .tcp
                    .iter()
                    .filter(|p| p.public)
                    .map(|p| (if p.tls { "tls" } else { "tcp" }, p.name.clone())),
            );
        for (kind, name) in probes {
            let state = match self.probe_up(kind, &name) {
                None => ComponentState::Unknown,
                Some(v) if v >= 1.0 => ComponentState::Operational,
                Some(_) => ComponentState::Outage,
            };
            let id_kind = if kind == "tls" { "tcp" } else { kind };
            out.push(self.component(
                format!("{id_kind}:{name}"),
                name.clone(),
                state,
                None,
                maintenance,
                now,
            ));
        }
        out
    }

    fn component(
        &self,
        id: String,
        name: String,
        state: ComponentState,
        detail: Option<String>,
        maintenance: bool,
        now: Millis,
    ) -> Component {
        let state = if maintenance && state != ComponentState::Operational {
            ComponentState::Maintenance
        } else {
            state
        };
        let today = now.div_euclid(86_400_000);
        let hist = self.uptime.get(&id);
        let (mut up, mut total) = (0i64, 0i64);
        let days = (today - 89..=today)
            .map(|d| {
                let v = hist.and_then(|h| h.get(&d)).copied();
                if let Some((u, t)) = v {
                    up += u;
                    total += t;
                }
                Day {
                    date: date_of(d),
                    uptime: v.filter(|(_, t)| *t > 0).map(|(u, t)| u as f64 / t as f64),
                }
            })
            .collect();
        Component {
            id,
            name,
            state,
            detail,
            uptime_90d: (total > 0).then(|| up as f64 / total as f64),
            days,
        }
    }

    async fn publish(&mut self, now: Millis, components: Option<Vec<Component>>) {
        let components = components.unwrap_or_else(|| self.status.read().components.clone());
        let incidents = self
            .db
            .incidents(now - 14 * 86_400_000, 50)
            .await
            .unwrap_or_default();
        let worst = components
            .iter()
            .map(|c| c.state)
            .filter(|s| *s != ComponentState::Unknown)
            .max();
        let state = match worst {
            Some(s) => s,
            None if components.is_empty() => ComponentState::Operational,
            None => ComponentState::Unknown,
        };
        let doc = StatusDoc {
            title: self.cfg.status.title.clone(),
            state,
            updated_at: rfc3339(now),
            components,
            maintenance: self.book.maintenance_now(now),
            incidents,
        };
        *self.status.write() = Arc::new(doc);
    }
}

fn validate_incident(
    title: &str,
    message: &str,
    impact: Option<&str>,
    components: &[String],
) -> Result<(), MonitorError> {
    if title.trim().is_empty() || message.trim().is_empty() {
        return Err(MonitorError::Command(
            "an incident needs a title and a message".into(),
        ));
    }
    if title.len() > MAX_TEXT
        || message.len() > MAX_TEXT
        || components.iter().any(|c| c.len() > 256)
        || components.len() > 64
    {
        return Err(MonitorError::Command(format!(
            "text longer than {MAX_TEXT} bytes (or a component list too long)"
        )));
    }
    if let Some(i) = impact
        && !IMPACTS.contains(&i)
    {
        return Err(MonitorError::Command(format!(
            "impact `{i}` is not one of {}",
            IMPACTS.join(", ")
        )));
    }
    Ok(())
}

fn book_error(e: &crate::alerts::BookError) -> String {
    use crate::alerts::BookError;
    match e {
        BookError::NoAlert(t) => format!("no firing alert matches `{t}`; see `keel alerts ls`"),
        BookError::BadMatcher(m) => {
            format!("`{m}` is not a matcher; write name=value, name!=value, name=~a|b or name!~a|b")
        }
        BookError::BadWindow => "the silence ends before it starts".to_owned(),
        BookError::NoSilence(id) => format!("no silence {id}"),
    }
}

fn rand_bytes(out: &mut [u8], seed: Millis) {
    use sha3::{Digest, Keccak256};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h = Keccak256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(n.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(format!("{:?}", Instant::now()).as_bytes())
        .finalize();
    let len = out.len();
    out.copy_from_slice(&h[..len]);
}
