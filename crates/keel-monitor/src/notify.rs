//! Notification delivery: one bounded queue and one worker per receiver, retries with
//! exponential backoff, and the payload of each receiver kind.
//!
//! **What is kept when a receiver is down.** A notification carries the whole current state
//! of its alert group (every firing alert, and those resolved since the last notification),
//! so a newer notification of the same group supersedes a queued older one: the queue keeps
//! the *latest state per group*, and a resolve replaces the trigger it resolves. The queue
//! holds at most `queue_len` groups; when it is full, the oldest notification that only
//! announces resolutions goes first, then the oldest of all. A notification is retried
//! (1 s, 2 s, 4 s … up to `max_backoff`) until it is delivered or `give_up_after` passes.
//! Planning never waits for delivery: enqueueing is a short, non-blocking queue update.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_config::SecretUrl;
use keel_config::content::Secret;
use keel_config::monitor::{NotifyConfig, ReceiverConfig, ReceiverKind, Severity, SmtpSecurity};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, AlertState, Notification, label_text};
use crate::clock::rfc3339;
use crate::metrics::{MonitorMetrics, OutcomeLabels, ReceiverLabels};

const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const OPSGENIE_URL: &str = "https://api.opsgenie.com";

/// A receiver ready to send: config with its secrets read.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ReceiverKind,
    url: Option<SecretUrl>,
    routing_key: Option<Secret>,
    api_key: Option<Secret>,
    smtp: Option<(keel_config::monitor::SmtpConfig, Option<Secret>)>,
    min_severity: Severity,
}

impl Receiver {
    /// Checks that the receiver has what its kind needs, without reading secrets.
    pub fn check(c: &ReceiverConfig) -> Result<(), String> {
        let need = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "monitor.receivers `{}`: this kind needs {what}",
                    c.name
                ))
            }
        };
        match c.kind {
            ReceiverKind::Webhook | ReceiverKind::Slack | ReceiverKind::Alertmanager => {
                need(c.url.is_some(), "`url`")
            }
            ReceiverKind::PagerDuty => need(c.routing_key.is_some(), "`routing_key`"),
            ReceiverKind::Opsgenie => need(c.api_key.is_some(), "`api_key`"),
            ReceiverKind::Email => need(c.smtp.is_some(), "a [smtp] table"),
        }
    }

    /// Reads the receiver's secrets; the error names the receiver and the key.
    pub fn from_config(c: &ReceiverConfig) -> Result<Self, String> {
        Self::check(c)?;
        let read = |s: &Option<keel_config::content::SecretSource>, key: &str| {
            s.as_ref()
                .map(|s| {
                    s.resolve()
                        .map_err(|e| format!("monitor.receivers `{}`: {key}: {e}", c.name))
                })
                .transpose()
        };
        let routing_key = read(&c.routing_key, "routing_key")?;
        if c.kind == ReceiverKind::PagerDuty && routing_key.is_none() {
            return Err(format!(
                "monitor.receivers `{}`: pagerduty needs `routing_key`",
                c.name
            ));
        }
        let api_key = read(&c.api_key, "api_key")?;
        if c.kind == ReceiverKind::Opsgenie && api_key.is_none() {
            return Err(format!(
                "monitor.receivers `{}`: opsgenie needs `api_key`",
                c.name
            ));
        }
        let smtp = match (&c.smtp, c.kind) {
            (Some(s), _) => {
                let pw = read(&s.password, "smtp.password")?;
                Some((s.clone(), pw))
            }
            (None, ReceiverKind::Email) => {
                return Err(format!(
                    "monitor.receivers `{}`: email needs a [smtp] table",
                    c.name
                ));
            }
            (None, _) => None,
        };
        Ok(Self {
            name: c.name.clone(),
            kind: c.kind,
            url: c.url.clone(),
            routing_key,
            api_key,
            smtp,
            min_severity: c.min_severity,
        })
    }
}

/// One HTTP request to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// URL (secret).
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Value,
}

fn status_of(alerts: &[Alert]) -> &'static str {
    if alerts.iter().any(|a| a.state == AlertState::Firing) {
        "firing"
    } else {
        "resolved"
    }
}

fn common(
    alerts: &[Alert],
    f: impl Fn(&Alert) -> &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let Some(first) = alerts.first() else {
        return BTreeMap::new();
    };
    f(first)
        .iter()
        .filter(|(k, v)| alerts.iter().all(|a| f(a).get(*k) == Some(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn ends_at(a: &Alert) -> String {
    a.resolved_at
        .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339)
}

fn title(n: &Notification) -> String {
    let firing = n
        .alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .count();
    let name = n
        .group_labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| "alerts".into());
    let rest: BTreeMap<String, String> = n
        .group_labels
        .iter()
        .filter(|(k, _)| *k != "alertname")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let esc = if n.escalation { "[ESCALATED] " } else { "" };
    if firing > 0 {
        format!("{esc}[FIRING:{firing}] {name} {}", label_text(&rest))
            .trim_end()
            .to_owned()
    } else {
        format!("[RESOLVED] {name} {}", label_text(&rest))
            .trim_end()
            .to_owned()
    }
}

fn alert_line(a: &Alert) -> String {
    let summary = a
        .annotations
        .get("summary")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| label_text(&a.labels));
    format!(
        "{} [{}] {}",
        a.state.as_str().to_uppercase(),
        a.severity.as_str(),
        summary
    )
}

/// The webhook body (Alertmanager's webhook format, version 4).
pub fn webhook_body(n: &Notification, receiver: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": status_of(&n.alerts),
        "receiver": receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common(&n.alerts, |a| &a.labels),
        "commonAnnotations": common(&n.alerts, |a| &a.annotations),
        "externalURL": "",
        "escalation": n.escalation,
        "alerts": n.alerts.iter().map(|a| json!({
            "status": if a.state == AlertState::Firing { "firing" } else { "resolved" },
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.fired_at.unwrap_or(a.since)),
            "endsAt": ends_at(a),
            "generatorURL": "",
            "fingerprint": a.id,
            "acknowledgedBy": a.ack.as_ref().map(|k| k.by.clone()),
        })).collect::<Vec<_>>(),
    })
}

/// The Slack incoming-webhook body.
pub fn slack_body(n: &Notification) -> Value {
    let firing = status_of(&n.alerts) == "firing";
    let lines: Vec<String> = n.alerts.iter().map(alert_line).collect();
    let runbooks: Vec<String> = n
        .alerts
        .iter()
        .filter_map(|a| a.annotations.get("runbook_url").cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    json!({
        "text": title(n),
        "attachments": [{
            "color": if firing { "#d00000" } else { "#2eb886" },
            "title": title(n),
            "text": lines.join("\n"),
            "fields": runbooks.iter().map(|r| json!({"title": "Runbook", "value": r, "short": false})).collect::<Vec<_>>(),
            "footer": "keel",
        }],
    })
}

/// PagerDuty Events API v2 events: one per alert (trigger or resolve, dedup key = alert id).
pub fn pagerduty_events(n: &Notification, routing_key: &str) -> Vec<Value> {
    n.alerts
        .iter()
        .map(|a| {
            if a.state == AlertState::Resolved {
                return json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": a.id});
            }
            let severity = match a.severity {
                Severity::Critical => "critical",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            let summary: String = alert_line(a).chars().take(1024).collect();
            let mut ev = json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": a.id,
                "payload": {
                    "summary": summary,
                    "source": a.labels.get("upstream").or(a.labels.get("chain")).or(a.labels.get("probe")).cloned().unwrap_or_else(|| "keel".into()),
                    "severity": severity,
                    "timestamp": rfc3339(a.fired_at.unwrap_or(a.since)),
                    "component": a.labels.get("chain").cloned().unwrap_or_default(),
                    "group": n.group_labels.get("alertname").cloned().unwrap_or_default(),
                    "class": a.rule,
                    "custom_details": {"labels": a.labels, "annotations": a.annotations, "value": a.value, "escalation": n.escalation},
                },
            });
            if let Some(r) = a.annotations.get("runbook_url") {
                ev["links"] = json!([{"href": r, "text": "Runbook"}]);
            }
            ev
        })
        .collect()
}

/// Opsgenie requests: create (firing) or close (resolved), alias = alert id.
pub fn opsgenie_requests(n: &Notification, base: &str, api_key: &str) -> Vec<Request> {
    let auth = vec![("Authorization".to_owned(), format!("GenieKey {api_key}"))];
    let base = base.trim_end_matches('/');
    n.alerts
        .iter()
        .map(|a| {
            if a.state == AlertState::Resolved {
                return Request {
                    url: format!("{base}/v2/alerts/{}/close?identifierType=alias", a.id),
                    headers: auth.clone(),
                    body: json!({"source": "keel", "note": "resolved"}),
                };
            }
            let priority = match a.severity {
                Severity::Critical => "P1",
                Severity::Warning => "P3",
                Severity::Info => "P5",
            };
            let message: String = alert_line(a).chars().take(130).collect();
            Request {
                url: format!("{base}/v2/alerts"),
                headers: auth.clone(),
                body: json!({
                    "message": message,
                    "alias": a.id,
                    "description": a.annotations.get("description").cloned().unwrap_or_default(),
                    "tags": [a.rule.clone(), a.severity.as_str()],
                    "details": a.labels,
                    "priority": priority,
                    "source": "keel",
                }),
            }
        })
        .collect()
}

/// Alertmanager API v2 alerts (`POST /api/v2/alerts`). Firing alerts carry an `endsAt`
/// `valid_for` ahead, so Alertmanager resolves them by itself if keel stops re-sending.
pub fn alertmanager_body(
    n: &Notification,
    now: crate::clock::Millis,
    valid_for: Duration,
) -> Value {
    Value::Array(
        n.alerts
            .iter()
            .map(|a| {
                let end = a.resolved_at.unwrap_or(now + crate::clock::ms(valid_for));
                json!({
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.fired_at.unwrap_or(a.since)),
                    "endsAt": rfc3339(end),
                    "generatorURL": "",
                })
            })
            .collect(),
    )
}

/// The email subject and body.
pub fn email_text(n: &Notification) -> (String, String) {
    let mut body = String::new();
    for a in &n.alerts {
        body.push_str(&alert_line(a));
        body.push('\n');
        body.push_str(&format!("  labels: {}\n", label_text(&a.labels)));
        if let Some(d) = a.annotations.get("description").filter(|d| !d.is_empty()) {
            body.push_str(&format!("  {d}\n"));
        }
        if let Some(r) = a.annotations.get("runbook_url") {
            body.push_str(&format!("  runbook: {r}\n"));
        }
        body.push('\n');
    }
    (title(n), body)
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying (transport, timeout, 5xx, 429).
    Retry(String),
    /// Not worth retrying (4xx: bad key, bad payload).
    Fail(String),
}

/// One queued notification.
#[derive(Debug)]
struct Queued {
    n: Notification,
    attempts: u32,
    first: Instant,
    due: Instant,
}

/// A receiver's queue (see the module docs for what it keeps).
#[derive(Debug)]
pub struct Queue {
    items: Mutex<VecDeque<Queued>>,
    cap: usize,
    wake: Notify,
}

impl Queue {
    /// An empty queue of at most `cap` groups.
    pub fn new(cap: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            wake: Notify::new(),
        }
    }

    /// Queues `n`, superseding a queued notification of the same group. Returns how many
    /// notifications were dropped (superseded or evicted).
    pub fn push(&self, n: Notification) -> usize {
        let mut items = self.items.lock();
        let now = Instant::now();
        let mut dropped = 0;
        if let Some(pos) = items.iter().position(|q| q.n.group_key == n.group_key) {
            items.remove(pos);
            dropped += 1;
        }
        if items.len() >= self.cap {
            let victim = items
                .iter()
                .position(|q| q.n.alerts.iter().all(|a| a.state == AlertState::Resolved))
                .unwrap_or(0);
            items.remove(victim);
            dropped += 1;
        }
        items.push_back(Queued {
            n,
            attempts: 0,
            first: now,
            due: now,
        });
        drop(items);
        self.wake.notify_one();
        dropped
    }

    /// Queued notifications.
    pub fn len(&self) -> usize {
        self.items.lock().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.lock().is_empty()
    }

    /// Group keys in queue order (tests, status).
    pub fn keys(&self) -> Vec<String> {
        self.items
            .lock()
            .iter()
            .map(|q| q.n.group_key.clone())
            .collect()
    }

    fn take_due(&self) -> Result<Queued, Option<Instant>> {
        let mut items = self.items.lock();
        let now = Instant::now();
        match items.iter().position(|q| q.due <= now) {
            Some(i) => items.remove(i).ok_or(None),
            None => Err(items.iter().map(|q| q.due).min()),
        }
    }

    fn requeue(&self, q: Queued) -> bool {
        let mut items = self.items.lock();
        // A newer notification of the group arrived meanwhile: it supersedes the failed one.
        if items.iter().any(|x| x.n.group_key == q.n.group_key) || items.len() >= self.cap {
            return false;
        }
        items.push_back(q);
        true
    }
}

/// Delivers notifications to every receiver.
#[derive(Debug)]
pub struct Dispatcher {
    queues: HashMap<String, (Arc<Queue>, Severity, ReceiverKind)>,
    metrics: MonitorMetrics,
    tasks: JoinSet<()>,
}

/// How one receiver sends.
#[derive(Debug, Clone)]
struct Sender {
    receiver: Receiver,
    http: reqwest::Client,
    cfg: NotifyConfig,
}

async fn read_bounded(resp: reqwest::Response, max: usize) -> String {
    let mut resp = resp;
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= max {
            break;
        }
    }
    String::from_utf8_lossy(&buf).chars().take(200).collect()
}

impl Sender {
    async fn post(&self, req: &Request) -> Result<(), SendError> {
        let mut b = self.http.post(&req.url).json(&req.body);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let resp = b
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("request failed: {}", e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = read_bounded(resp, self.cfg.max_response_bytes).await;
        let msg = format!("HTTP {status}: {text}");
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SendError::Retry(msg))
        } else {
            Err(SendError::Fail(msg))
        }
    }

    async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let r = &self.receiver;
        let url = r.url.as_ref().map(|u| u.expose().as_str().to_owned());
        match r.kind {
            ReceiverKind::Webhook => {
                self.post(&Request {
                    url: url.unwrap_or_default(),
                    headers: vec![],
                    body: webhook_body(n, &r.name),
                })
                .await
            }
            ReceiverKind::Slack => {
                self.post(&Request {
                    url: url.unwrap_or_default(),
                    headers: vec![],
                    body: slack_body(n),
                })
                .await
            }
            ReceiverKind::PagerDuty => {
                let key = r.routing_key.as_ref().map_or("", Secret::expose);
                let url = url.unwrap_or_else(|| PAGERDUTY_URL.to_owned());
                for ev in pagerduty_events(n, key) {
                    self.post(&Request {
                        url: url.clone(),
                        headers: vec![],
                        body: ev,
                    })
                    .await?;
                }
                Ok(())
            }
            ReceiverKind::Opsgenie => {
                let key = r.api_key.as_ref().map_or("", Secret::expose);
                let base = url.unwrap_or_else(|| OPSGENIE_URL.to_owned());
                for req in opsgenie_requests(n, &base, key) {
                    self.post(&req).await?;
                }
                Ok(())
            }
            ReceiverKind::Alertmanager => {
                let base = url.unwrap_or_default();
                let body = alertmanager_body(
                    n,
                    crate::clock::Clock::now_ms(&crate::clock::SystemClock),
                    self.cfg.alertmanager_resend * 4,
                );
                self.post(&Request {
                    url: format!("{}/api/v2/alerts", base.trim_end_matches('/')),
                    headers: vec![],
                    body,
                })
                .await
            }
            ReceiverKind::Email => self.email(n).await,
        }
    }

    async fn email(&self, n: &Notification) -> Result<(), SendError> {
        use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
        let Some((smtp, password)) = &self.receiver.smtp else {
            return Err(SendError::Fail("no smtp settings".into()));
        };
        let (subject, body) = email_text(n);
        let from = smtp
            .from
            .parse()
            .map_err(|e| SendError::Fail(format!("bad from address: {e}")))?;
        let mut m = Message::builder().from(from).subject(subject);
        for to in &smtp.to {
            m = m.to(to
                .parse()
                .map_err(|e| SendError::Fail(format!("bad recipient {to}: {e}")))?);
        }
        let msg = m
            .body(body)
            .map_err(|e| SendError::Fail(format!("cannot build the message: {e}")))?;
        let builder = match smtp.security {
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                    .map_err(|e| SendError::Fail(format!("smtp setup: {e}")))?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| SendError::Fail(format!("smtp setup: {e}")))?,
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            }
        };
        let mut builder = builder.port(smtp.port).timeout(Some(self.cfg.timeout));
        if let (Some(user), Some(pw)) = (&smtp.username, password) {
            builder =
                builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                    user.clone(),
                    pw.expose().to_owned(),
                ));
        }
        let transport = builder.build();
        match transport.send(msg).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Fail(format!("smtp: {e}"))),
            Err(e) => Err(SendError::Retry(format!("smtp: {e}"))),
        }
    }
}

impl Dispatcher {
    /// Starts one worker per receiver.
    pub fn start(
        receivers: Vec<Receiver>,
        cfg: &NotifyConfig,
        metrics: MonitorMetrics,
        cancel: &CancellationToken,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let mut queues = HashMap::new();
        let mut tasks = JoinSet::new();
        for r in receivers {
            let queue = Arc::new(Queue::new(cfg.queue_len));
            queues.insert(r.name.clone(), (queue.clone(), r.min_severity, r.kind));
            let sender = Sender {
                receiver: r,
                http: http.clone(),
                cfg: cfg.clone(),
            };
            let (metrics, cancel) = (metrics.clone(), cancel.clone());
            tasks.spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = worker(sender, queue, metrics) => {}
                }
            });
        }
        Self {
            queues,
            metrics,
            tasks,
        }
    }

    /// Queues `n` for its receiver (alerts below the receiver's minimum severity left out).
    /// Never waits.
    pub fn enqueue(&self, mut n: Notification) {
        let Some((queue, min, _)) = self.queues.get(&n.receiver) else {
            tracing::warn!(receiver = %n.receiver, "a route names a receiver that does not exist");
            return;
        };
        n.alerts.retain(|a| a.severity >= *min);
        if n.alerts.is_empty() {
            return;
        }
        let receiver = n.receiver.clone();
        let dropped = queue.push(n);
        let labels = OutcomeLabels {
            receiver: receiver.clone(),
            outcome: "dropped",
        };
        if dropped > 0 {
            self.metrics
                .notifications
                .get_or_create(&labels)
                .inc_by(dropped as u64);
        }
        self.metrics
            .notify_queue
            .get_or_create(&ReceiverLabels { receiver })
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
    }

    /// Receivers of a kind (Alertmanager re-sends).
    pub fn receivers_of(&self, kind: ReceiverKind) -> Vec<String> {
        self.queues
            .iter()
            .filter(|(_, q)| q.2 == kind)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The queue of `receiver`.
    pub fn queue(&self, receiver: &str) -> Option<&Arc<Queue>> {
        self.queues.get(receiver).map(|q| &q.0)
    }

    /// Waits for the workers to end (after cancellation).
    pub async fn join(mut self) {
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                tracing::error!(error = %e, "notification worker panicked");
            }
        }
    }
}

async fn worker(sender: Sender, queue: Arc<Queue>, metrics: MonitorMetrics) {
    let name = sender.receiver.name.clone();
    let count = |outcome: &'static str| {
        metrics
            .notifications
            .get_or_create(&OutcomeLabels {
                receiver: name.clone(),
                outcome,
            })
            .inc();
    };
    loop {
        let mut item = match queue.take_due() {
            Ok(q) => q,
            Err(next) => {
                match next {
                    Some(at) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(at.into()) => {}
                            () = queue.wake.notified() => {}
                        }
                    }
                    None => queue.wake.notified().await,
                }
                continue;
            }
        };
        let result = tokio::time::timeout(sender.cfg.timeout * 2, sender.send(&item.n))
            .await
            .unwrap_or_else(|_| Err(SendError::Retry("timed out".into())));
        metrics
            .notify_queue
            .get_or_create(&ReceiverLabels {
                receiver: name.clone(),
            })
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        match result {
            Ok(()) => {
                count("sent");
                tracing::info!(receiver = %name, group = %item.n.group_key, alerts = item.n.alerts.len(), "notification sent");
            }
            Err(SendError::Fail(e)) => {
                count("failed");
                tracing::error!(receiver = %name, error = %e, "notification refused by the receiver; not retried");
            }
            Err(SendError::Retry(e)) => {
                item.attempts += 1;
                if item.first.elapsed() >= sender.cfg.give_up_after {
                    count("expired");
                    tracing::error!(receiver = %name, error = %e, attempts = item.attempts, "notification given up");
                    continue;
                }
                let backoff = sender
                    .cfg
                    .initial_backoff
                    .saturating_mul(1u32 << item.attempts.min(20).saturating_sub(1))
                    .min(sender.cfg.max_backoff);
                item.due = Instant::now() + backoff;
                tracing::warn!(receiver = %name, error = %e, attempt = item.attempts, retry_in = ?backoff, "notification failed; will retry");
                if queue.requeue(item) {
                    count("retried");
                } else {
                    count("dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, state: AlertState, severity: Severity) -> Alert {
        Alert {
            id: id.into(),
            rule: "UpstreamDown".into(),
            labels: BTreeMap::from([
                ("alertname".into(), "UpstreamDown".into()),
                ("chain".into(), "dev".into()),
                ("severity".into(), severity.as_str().into()),
                ("upstream".into(), id.into()),
            ]),
            instance: BTreeMap::new(),
            annotations: BTreeMap::from([
                ("summary".into(), format!("{id} is down")),
                (
                    "runbook_url".into(),
                    "docs/monitoring.md#upstreamdown".into(),
                ),
            ]),
            severity,
            state,
            value: 2.0,
            since: 0,
            fired_at: Some(1_000),
            resolved_at: (state == AlertState::Resolved).then_some(2_000),
            ack: None,
            escalated_at: None,
            muted: None,
        }
    }

    fn notification(group: &str, alerts: Vec<Alert>) -> Notification {
        Notification {
            receiver: "r".into(),
            group_key: group.into(),
            group_labels: BTreeMap::from([
                ("alertname".into(), "UpstreamDown".into()),
                ("chain".into(), "dev".into()),
            ]),
            alerts,
            escalation: false,
            at: 0,
        }
    }

    #[test]
    fn the_queue_keeps_the_latest_state_per_group_and_evicts_resolves_first() {
        let q = Queue::new(2);
        assert_eq!(
            q.push(notification(
                "g1",
                vec![alert("a", AlertState::Firing, Severity::Critical)]
            )),
            0
        );
        // The resolve of g1 supersedes its queued trigger.
        assert_eq!(
            q.push(notification(
                "g1",
                vec![alert("a", AlertState::Resolved, Severity::Critical)]
            )),
            1
        );
        assert_eq!(q.keys(), ["g1"]);
        q.push(notification(
            "g2",
            vec![alert("b", AlertState::Firing, Severity::Critical)],
        ));
        // Full: the resolve-only g1 goes first, the trigger g2 stays.
        assert_eq!(
            q.push(notification(
                "g3",
                vec![alert("c", AlertState::Firing, Severity::Critical)]
            )),
            1
        );
        assert_eq!(q.keys(), ["g2", "g3"]);
        // Full of triggers: the oldest goes.
        q.push(notification(
            "g4",
            vec![alert("d", AlertState::Firing, Severity::Critical)],
        ));
        assert_eq!(q.keys(), ["g3", "g4"]);
    }

    #[test]
    fn payload_shapes() {
        let n = notification(
            "g",
            vec![
                alert("a", AlertState::Firing, Severity::Critical),
                alert("b", AlertState::Resolved, Severity::Warning),
            ],
        );
        let w = webhook_body(&n, "hook");
        assert_eq!(w["version"], "4");
        assert_eq!(w["status"], "firing");
        assert_eq!(w["alerts"][1]["status"], "resolved");
        assert_eq!(w["commonLabels"]["chain"], "dev");
        assert!(w["commonLabels"].get("upstream").is_none());
        let s = slack_body(&n);
        assert!(
            s["text"]
                .as_str()
                .expect("text")
                .starts_with("[FIRING:1] UpstreamDown")
        );
        assert_eq!(s["attachments"][0]["color"], "#d00000");
        let pd = pagerduty_events(&n, "KEY");
        assert_eq!(pd[0]["event_action"], "trigger");
        assert_eq!(pd[0]["payload"]["severity"], "critical");
        assert_eq!(pd[0]["dedup_key"], "a");
        assert_eq!(
            pd[1],
            json!({"routing_key": "KEY", "event_action": "resolve", "dedup_key": "b"})
        );
        let og = opsgenie_requests(&n, "https://og.example/", "K");
        assert_eq!(og[0].url, "https://og.example/v2/alerts");
        assert_eq!(og[0].body["priority"], "P1");
        assert_eq!(
            og[1].url,
            "https://og.example/v2/alerts/b/close?identifierType=alias"
        );
        assert_eq!(og[0].headers[0].1, "GenieKey K");
        let am = alertmanager_body(&n, 10_000, Duration::from_secs(240));
        assert_eq!(am[0]["endsAt"], rfc3339(250_000));
        assert_eq!(am[1]["endsAt"], rfc3339(2_000));
        let (subject, body) = email_text(&n);
        assert!(subject.contains("FIRING:1"), "{subject}");
        assert!(
            body.contains("runbook: docs/monitoring.md#upstreamdown"),
            "{body}"
        );
    }
}
