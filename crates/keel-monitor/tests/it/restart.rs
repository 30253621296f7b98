//! State survives a restart: firing alerts (not fired twice), acknowledgements, silences,
//! incidents and uptime history, from the SQLite database under the data directory.

use std::sync::Arc;
use std::time::Duration;

use keel_chain::ChainRegistry;
use keel_config::monitor::{HttpProbeConfig, MonitorConfig, RuleConfig, Severity};
use keel_monitor::alerts::AlertState;
use keel_monitor::clock::ManualClock;
use keel_monitor::service::{NewIncident, SilenceRequest};
use keel_monitor::status::ComponentState;
use keel_monitor::{Monitor, MonitorDeps, MonitorMetrics};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

fn config(http_url: &str) -> MonitorConfig {
    let mut m = MonitorConfig {
        // Rounds run when the test asks (evaluate_now), not on a timer.
        evaluation_interval: Duration::from_secs(3600),
        default_rules: false,
        ..MonitorConfig::default()
    };
    m.status.listen = None;
    m.host.enabled = false;
    m.rules.push(RuleConfig {
        name: "Hot".into(),
        expr: "keel_test_temperature > 50".into(),
        for_: Duration::from_secs(60),
        fire_after: 1,
        resolve_after: 1,
        severity: Severity::Critical,
        labels: Default::default(),
        summary: "{{ $labels.room }} is at {{ $value }}".into(),
        description: String::new(),
        runbook: None,
    });
    m.http.push(HttpProbeConfig {
        name: "api".into(),
        url: keel_config::SecretUrl::parse(http_url).unwrap(),
        method: "GET".into(),
        body: None,
        headers: Default::default(),
        conditions: vec!["[STATUS] == 200".into()],
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        max_body_bytes: 1024,
        public: true,
    });
    m
}

async fn start(
    cfg: &MonitorConfig,
    dir: &std::path::Path,
    clock: &ManualClock,
    text: &Arc<Mutex<String>>,
) -> Monitor {
    let t = text.clone();
    let deps = MonitorDeps {
        registry: Arc::new(ChainRegistry::default()),
        metrics_text: Arc::new(move || t.lock().clone()),
        gateway: None,
        data_dir: dir.to_path_buf(),
        content_gc: None,
        clock: Arc::new(clock.clone()),
    };
    Monitor::start(
        cfg,
        deps,
        MonitorMetrics::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_state_silences_incidents_and_uptime_survive_a_restart() {
    // An HTTP endpoint for the probe, always up.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            l,
            axum::Router::new().route("/", axum::routing::get(|| async { "ok" })),
        )
        .await
        .unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_800_000_000_000);
    let text = Arc::new(Mutex::new(String::new()));
    let cfg = config(&url);
    let m = start(&cfg, dir.path(), &clock, &text).await;
    let h = m.handle();
    // The probe's result reaches the store through the metrics text, as in a node.
    *text.lock() =
        "keel_test_temperature{room=\"a\"} 70\nkeel_probe_up{kind=\"http\",probe=\"api\"} 1\n"
            .into();
    h.evaluate_now().await.unwrap();
    let pending = h.alerts().await.unwrap();
    assert_eq!(pending[0].state, AlertState::Pending, "{pending:?}");
    clock.advance(Duration::from_secs(61));
    *text.lock() =
        "keel_test_temperature{room=\"a\"} 71\nkeel_probe_up{kind=\"http\",probe=\"api\"} 1\n"
            .into();
    h.evaluate_now().await.unwrap();
    let firing = h.alerts().await.unwrap();
    assert_eq!(firing[0].state, AlertState::Firing, "{firing:?}");
    assert_eq!(firing[0].annotations["summary"], "a is at 71");
    h.ack(&firing[0].id, "alice", "looking").await.unwrap();
    let silence = h
        .silence(SilenceRequest {
            matchers: vec!["room=b".into()],
            starts_at: None,
            duration: "2h".into(),
            created_by: "bob".into(),
            comment: "painting".into(),
        })
        .await
        .unwrap();
    let incident = h
        .open_incident(NewIncident {
            title: "Hot room".into(),
            impact: "major".into(),
            components: vec!["api".into()],
            message: "Cooling failed".into(),
        })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(600));
    h.evaluate_now().await.unwrap();
    let before = h.status();
    let api = before
        .components
        .iter()
        .find(|c| c.id == "http:api")
        .unwrap()
        .clone();
    assert_eq!(api.state, ComponentState::Operational);
    assert_eq!(api.days.last().unwrap().uptime, Some(1.0), "{api:?}");
    m.shutdown().await;

    // Restart on the same data directory.
    let m = start(&cfg, dir.path(), &clock, &text).await;
    let h = m.handle();
    let restored = h.alerts().await.unwrap();
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(restored[0].state, AlertState::Firing);
    assert_eq!(
        restored[0].ack.as_ref().map(|a| a.by.as_str()),
        Some("alice")
    );
    assert_eq!(h.silences().await.unwrap(), vec![silence]);
    clock.advance(Duration::from_secs(10));
    h.evaluate_now().await.unwrap();
    // Still firing, not fired a second time.
    let history = h.history(100).await.unwrap();
    assert_eq!(
        history.iter().filter(|e| e.kind == "firing").count(),
        1,
        "{history:?}"
    );
    let doc = h.status();
    let api = doc.components.iter().find(|c| c.id == "http:api").unwrap();
    assert_eq!(
        api.days.last().unwrap().uptime,
        Some(1.0),
        "uptime history survived: {api:?}"
    );
    assert_eq!(doc.incidents[0].id, incident.id);
    assert_eq!(doc.incidents[0].updates[0].message, "Cooling failed");
    // It resolves once the condition stops holding.
    *text.lock() = "keel_test_temperature{room=\"a\"} 20\n".into();
    h.evaluate_now().await.unwrap();
    let history = h.history(100).await.unwrap();
    assert_eq!(
        history.iter().filter(|e| e.kind == "resolved").count(),
        1,
        "{history:?}"
    );
    m.shutdown().await;
}
