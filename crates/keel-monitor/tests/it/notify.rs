//! Each receiver against a real local receiver: an HTTP sink checking the documented payload
//! shapes of webhooks, Slack, PagerDuty Events v2 and Opsgenie; Debian's Alertmanager (the
//! alert must appear in its own API); an aiosmtpd SMTP server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use keel_config::SecretUrl;
use keel_config::content::SecretSource;
use keel_config::monitor::{
    NotifyConfig, ReceiverConfig, ReceiverKind, Severity, SmtpConfig, SmtpSecurity,
};
use keel_monitor::alerts::{Alert, AlertState, Notification};
use keel_monitor::metrics::MonitorMetrics;
use keel_monitor::notify::{Dispatcher, Receiver};
use parking_lot::Mutex;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Clone, Default)]
struct Sink {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Answer HTTP 503 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
}

async fn sink_handler(
    State(s): State<Sink>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::http::StatusCode {
    {
        let mut f = s.fail_first.lock();
        if *f > 0 {
            *f -= 1;
            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    s.hits.lock().push(Hit {
        path: uri.to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    axum::http::StatusCode::ACCEPTED
}

async fn start_sink() -> (Sink, String) {
    let sink = Sink::default();
    let app = Router::new()
        .fallback(post(sink_handler))
        .with_state(sink.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (sink, url)
}

fn alert(id: &str, state: AlertState) -> Alert {
    Alert {
        id: id.into(),
        rule: "UpstreamDown".into(),
        labels: BTreeMap::from([
            ("alertname".into(), "UpstreamDown".into()),
            ("chain".into(), "dev".into()),
            ("severity".into(), "critical".into()),
            ("upstream".into(), format!("node-{id}")),
        ]),
        instance: BTreeMap::from([
            ("chain".into(), "dev".into()),
            ("upstream".into(), format!("node-{id}")),
        ]),
        annotations: BTreeMap::from([
            (
                "summary".into(),
                format!("upstream node-{id} of dev is ejected"),
            ),
            (
                "runbook_url".into(),
                "docs/monitoring.md#upstreamdown".into(),
            ),
        ]),
        severity: Severity::Critical,
        state,
        value: 2.0,
        since: 1_700_000_000_000,
        fired_at: Some(1_700_000_000_000),
        resolved_at: (state == AlertState::Resolved).then_some(1_700_000_060_000),
        ack: None,
        escalated_at: None,
        muted: None,
    }
}

fn notification(receiver: &str, alerts: Vec<Alert>) -> Notification {
    Notification {
        receiver: receiver.into(),
        group_key: "0:alertname=\"UpstreamDown\", chain=\"dev\"".into(),
        group_labels: BTreeMap::from([
            ("alertname".into(), "UpstreamDown".into()),
            ("chain".into(), "dev".into()),
        ]),
        alerts,
        escalation: false,
        at: 1_700_000_000_000,
    }
}

fn receiver(name: &str, kind: ReceiverKind, url: Option<String>) -> ReceiverConfig {
    ReceiverConfig {
        name: name.into(),
        kind,
        url: url.map(|u| SecretUrl::parse(&u).unwrap()),
        routing_key: None,
        api_key: None,
        smtp: None,
        min_severity: Severity::Info,
    }
}

fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> SecretSource {
    let p = dir.path().join(name);
    std::fs::write(&p, value).unwrap();
    SecretSource {
        file: Some(p),
        env: None,
    }
}

fn fast() -> NotifyConfig {
    NotifyConfig {
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        ..NotifyConfig::default()
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let ok = keel_testkit::eventually(Duration::from_secs(30), async || f()).await;
    assert!(ok, "{what}");
}

#[tokio::test]
async fn http_receivers_send_the_documented_payloads_and_retry() {
    let (sink, base) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let mut pd = receiver(
        "pd",
        ReceiverKind::PagerDuty,
        Some(format!("{base}/v2/enqueue")),
    );
    pd.routing_key = Some(secret_file(&dir, "pd", "R0UT1NGKEY"));
    let mut og = receiver("og", ReceiverKind::Opsgenie, Some(base.clone()));
    og.api_key = Some(secret_file(&dir, "og", "0PSG3N1EKEY"));
    let configs = [
        receiver("hook", ReceiverKind::Webhook, Some(format!("{base}/hook"))),
        receiver(
            "slack",
            ReceiverKind::Slack,
            Some(format!("{base}/services/T000/B000/SLACKTOKEN")),
        ),
        pd,
        og,
    ];
    let receivers = configs
        .iter()
        .map(|c| Receiver::from_config(c).unwrap())
        .collect();
    let metrics = MonitorMetrics::default();
    let cancel = CancellationToken::new();
    // The sink is down for the first three requests: deliveries are retried.
    *sink.fail_first.lock() = 3;
    let d = Dispatcher::start(receivers, &fast(), metrics.clone(), &cancel);
    for r in ["hook", "slack", "pd", "og"] {
        d.enqueue(notification(r, vec![alert("1", AlertState::Firing)]));
    }
    until("four deliveries", || sink.hits.lock().len() >= 4).await;
    let hits = sink.hits.lock().clone();
    let by = |p: &str| {
        hits.iter()
            .find(|h| h.path.starts_with(p))
            .unwrap_or_else(|| panic!("{p}: {hits:?}"))
            .clone()
    };
    // Generic webhook: Alertmanager's webhook format, version 4.
    let w = by("/hook").body;
    assert_eq!(w["version"], "4");
    assert_eq!(w["status"], "firing");
    assert_eq!(w["alerts"][0]["labels"]["upstream"], "node-1");
    assert_eq!(w["alerts"][0]["startsAt"], "2023-11-14T22:13:20Z");
    // Slack incoming webhook: `text` (required), attachments with a colour.
    let s = by("/services/T000/B000/SLACKTOKEN").body;
    assert!(
        s["text"]
            .as_str()
            .unwrap()
            .starts_with("[FIRING:1] UpstreamDown"),
        "{s}"
    );
    assert_eq!(s["attachments"][0]["color"], "#d00000");
    // PagerDuty Events API v2: routing_key, event_action, dedup_key, payload.{summary,source,severity}.
    let p = by("/v2/enqueue").body;
    assert_eq!(p["routing_key"], "R0UT1NGKEY");
    assert_eq!(p["event_action"], "trigger");
    assert_eq!(p["dedup_key"], "1");
    assert_eq!(p["payload"]["severity"], "critical");
    assert_eq!(p["payload"]["source"], "node-1");
    assert!(
        p["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("ejected")
    );
    assert_eq!(p["links"][0]["href"], "docs/monitoring.md#upstreamdown");
    // Opsgenie: POST /v2/alerts with `Authorization: GenieKey …`, message and alias.
    let o = by("/v2/alerts");
    assert_eq!(o.headers["authorization"], "GenieKey 0PSG3N1EKEY");
    assert_eq!(o.body["alias"], "1");
    assert_eq!(o.body["priority"], "P1");
    assert!(o.body["message"].as_str().unwrap().len() <= 130);

    // Resolution: PagerDuty resolve with the same dedup key, Opsgenie close by alias.
    d.enqueue(notification("pd", vec![alert("1", AlertState::Resolved)]));
    d.enqueue(notification("og", vec![alert("1", AlertState::Resolved)]));
    until("two resolves", || sink.hits.lock().len() >= 6).await;
    let hits = sink.hits.lock().clone();
    let resolve = hits.iter().rev().find(|h| h.path == "/v2/enqueue").unwrap();
    assert_eq!(
        resolve.body,
        serde_json::json!({"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": "1"})
    );
    assert!(
        hits.iter()
            .any(|h| h.path == "/v2/alerts/1/close?identifierType=alias"),
        "{hits:?}"
    );
    // The retries show in the metrics; secrets never do.
    let mut reg = prometheus_client::registry::Registry::default();
    metrics.register(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(text.contains("outcome=\"retried\""), "{text}");
    assert!(
        !text.contains("SLACKTOKEN") && !text.contains("R0UT1NGKEY"),
        "{text}"
    );
    cancel.cancel();
    d.join().await;
}

#[tokio::test]
async fn a_permanent_refusal_is_not_retried_and_below_minimum_severity_nothing_is_sent() {
    let (sink, base) = start_sink().await;
    let mut quiet = receiver(
        "quiet",
        ReceiverKind::Webhook,
        Some(format!("{base}/quiet")),
    );
    quiet.min_severity = Severity::Critical;
    let receivers = vec![Receiver::from_config(&quiet).unwrap()];
    let cancel = CancellationToken::new();
    let d = Dispatcher::start(receivers, &fast(), MonitorMetrics::default(), &cancel);
    let mut warn = alert("2", AlertState::Firing);
    warn.severity = Severity::Warning;
    d.enqueue(notification("quiet", vec![warn]));
    assert!(
        d.queue("quiet").unwrap().is_empty(),
        "a warning is below the receiver's minimum"
    );
    d.enqueue(notification("quiet", vec![alert("3", AlertState::Firing)]));
    until("the critical one", || sink.hits.lock().len() == 1).await;
    cancel.cancel();
    d.join().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn alertmanager_shows_the_alert_in_its_own_api() {
    let bin =
        std::env::var("KEEL_ALERTMANAGER").unwrap_or_else(|_| "prometheus-alertmanager".into());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let port = free_port();
    let _am = Child(
        std::process::Command::new(&bin)
            .args([
                &format!("--config.file={}", cfg.display()),
                &format!("--storage.path={}", dir.path().join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} (Debian package prometheus-alertmanager; scripts/install-tools --test): {e}")),
    );
    let base = format!("http://127.0.0.1:{port}");
    let up = keel_testkit::eventually(Duration::from_secs(30), async || {
        reqwest::get(format!("{base}/-/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up, "alertmanager did not start");
    let receivers = vec![
        Receiver::from_config(&receiver(
            "am",
            ReceiverKind::Alertmanager,
            Some(base.clone()),
        ))
        .unwrap(),
    ];
    let cancel = CancellationToken::new();
    let d = Dispatcher::start(receivers, &fast(), MonitorMetrics::default(), &cancel);
    let mut a = alert("4", AlertState::Firing);
    a.fired_at = Some(keel_monitor::clock::Clock::now_ms(
        &keel_monitor::clock::SystemClock,
    ));
    d.enqueue(notification("am", vec![a]));
    let api = format!("{base}/api/v2/alerts");
    let mut seen = Value::Null;
    let found = keel_testkit::eventually(Duration::from_secs(30), async || {
        seen = reqwest::get(&api).await.unwrap().json().await.unwrap();
        seen.as_array().is_some_and(|l| {
            l.iter().any(|x| {
                x["labels"]["alertname"] == "UpstreamDown"
                    && x["labels"]["upstream"] == "node-4"
                    && x["status"]["state"] == "active"
            })
        })
    })
    .await;
    assert!(found, "{seen}");
    let got = seen
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["labels"]["upstream"] == "node-4")
        .unwrap();
    assert_eq!(
        got["annotations"]["runbook_url"],
        "docs/monitoring.md#upstreamdown"
    );
    cancel.cancel();
    d.join().await;
}

#[tokio::test]
async fn email_reaches_an_smtp_server() {
    let python = std::env::var("KEEL_PYTHON").unwrap_or_else(|_| {
        keel_testkit::workspace_root()
            .join(".tools/venv/bin/python")
            .display()
            .to_string()
    });
    let dir = tempfile::tempdir().unwrap();
    let mailbox = dir.path().join("mail");
    let port = free_port();
    let _smtp = Child(
        std::process::Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox", mailbox.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} -m aiosmtpd (pip aiosmtpd in .tools/venv; scripts/install-tools --test): {e}")),
    );
    let up = keel_testkit::eventually(Duration::from_secs(30), async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "aiosmtpd did not start");
    let mut mail = receiver("mail", ReceiverKind::Email, None);
    mail.smtp = Some(SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "keel@example.org".into(),
        to: vec!["oncall@example.org".into()],
    });
    let cancel = CancellationToken::new();
    let d = Dispatcher::start(
        vec![Receiver::from_config(&mail).unwrap()],
        &fast(),
        MonitorMetrics::default(),
        &cancel,
    );
    d.enqueue(notification("mail", vec![alert("5", AlertState::Firing)]));
    let new = mailbox.join("new");
    let mut text = String::new();
    let got = keel_testkit::eventually(Duration::from_secs(30), async || {
        if let Some(f) = std::fs::read_dir(&new)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
        {
            text = std::fs::read_to_string(f.path()).unwrap();
            return true;
        }
        false
    })
    .await;
    assert!(got, "no mail arrived");
    assert!(text.contains("Subject: [FIRING:1] UpstreamDown"), "{text}");
    assert!(text.contains("To: oncall@example.org"), "{text}");
    assert!(text.contains("upstream node-5 of dev is ejected"), "{text}");
    assert!(
        text.contains("runbook: docs/monitoring.md#upstreamdown"),
        "{text}"
    );
    cancel.cancel();
    d.join().await;
}

/// A firing alert routed to Alertmanager is re-sent while it fires: its `endsAt` in
/// Alertmanager keeps moving forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_resends_firing_alerts_to_alertmanager() {
    let bin =
        std::env::var("KEEL_ALERTMANAGER").unwrap_or_else(|_| "prometheus-alertmanager".into());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let port = free_port();
    let _am = Child(
        std::process::Command::new(&bin)
            .args([
                &format!("--config.file={}", cfg.display()),
                &format!("--storage.path={}", dir.path().join("data").display()),
                &format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        keel_testkit::eventually(Duration::from_secs(30), async || {
            reqwest::get(format!("{base}/-/ready"))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await
    );
    let mut m = keel_config::monitor::MonitorConfig {
        evaluation_interval: Duration::from_millis(100),
        default_rules: false,
        ..Default::default()
    };
    m.status.listen = None;
    m.host.enabled = false;
    m.notify.alertmanager_resend = Duration::from_millis(500);
    m.rules.push(keel_config::monitor::RuleConfig {
        name: "Hot".into(),
        expr: "keel_test_temperature > 50".into(),
        for_: Duration::ZERO,
        fire_after: 1,
        resolve_after: 1,
        severity: Severity::Critical,
        labels: Default::default(),
        summary: "hot".into(),
        description: String::new(),
        runbook: None,
    });
    m.receivers.push(receiver(
        "am",
        ReceiverKind::Alertmanager,
        Some(base.clone()),
    ));
    m.routes.push(keel_config::monitor::RouteConfig {
        matchers: Default::default(),
        receivers: vec!["am".into()],
        group_by: vec!["alertname".into()],
        group_wait: Duration::from_millis(100),
        repeat_interval: Duration::from_secs(3600),
        escalate_after: None,
        escalate_to: vec![],
        continue_: false,
    });
    let deps = keel_monitor::MonitorDeps {
        registry: Arc::new(keel_chain::ChainRegistry::default()),
        metrics_text: Arc::new(|| "keel_test_temperature{room=\"a\"} 70\n".to_owned()),
        gateway: None,
        data_dir: dir.path().to_path_buf(),
        content_gc: None,
        clock: Arc::new(keel_monitor::clock::SystemClock),
    };
    let monitor = keel_monitor::Monitor::start(
        &m,
        deps,
        MonitorMetrics::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let api = format!("{base}/api/v2/alerts");
    let ends_at = async || -> Option<String> {
        let v: Value = reqwest::get(&api).await.ok()?.json().await.ok()?;
        v.as_array()?
            .iter()
            .find(|x| x["labels"]["alertname"] == "Hot")
            .map(|x| x["endsAt"].as_str().unwrap_or("").to_owned())
    };
    let mut first = None;
    assert!(
        keel_testkit::eventually(Duration::from_secs(30), async || {
            first = ends_at().await;
            first.is_some()
        })
        .await,
        "never sent"
    );
    let first = first.unwrap();
    let moved = keel_testkit::eventually(Duration::from_secs(30), async || {
        ends_at().await.is_some_and(|e| e > first)
    })
    .await;
    assert!(moved, "endsAt stayed at {first}: not re-sent");
    monitor.shutdown().await;
}
