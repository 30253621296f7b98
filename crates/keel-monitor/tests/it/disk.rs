//! Disk automation: a watermark crossed runs the configured action once per cooldown, and the
//! run is in the audit log.

use std::sync::Arc;
use std::time::Duration;

use keel_config::monitor::{DiskAction, DiskActionConfig, MonitorConfig};
use keel_monitor::{Monitor, MonitorDeps, MonitorMetrics};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crossed_watermark_runs_the_action_once_per_cooldown_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = MonitorConfig {
        evaluation_interval: Duration::from_secs(3600),
        default_rules: false,
        ..MonitorConfig::default()
    };
    m.status.listen = None;
    m.host.interval = Duration::from_millis(50);
    m.disk_actions.push(DiskActionConfig {
        path: Some(dir.path().to_path_buf()),
        // Any disk in use is above this.
        watermark: 0.000_001,
        action: DiskAction::Command,
        command: vec!["sh".into(), "-c".into(), "echo freed 42".into()],
        cooldown: Duration::from_secs(3600),
        timeout: Duration::from_secs(10),
    });
    let deps = MonitorDeps {
        registry: Arc::new(keel_chain::ChainRegistry::default()),
        metrics_text: Arc::new(String::new),
        gateway: None,
        data_dir: dir.path().to_path_buf(),
        content_gc: None,
        clock: Arc::new(keel_monitor::clock::SystemClock),
    };
    let monitor = Monitor::start(
        &m,
        deps,
        MonitorMetrics::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let h = monitor.handle();
    let mut log = Vec::new();
    let ran = keel_testkit::eventually(Duration::from_secs(30), async || {
        log = h.audit(10).await.unwrap();
        !log.is_empty()
    })
    .await;
    assert!(ran, "the action never ran");
    let (_, action, detail, outcome) = &log[0];
    assert_eq!(action, "command sh -c echo freed 42");
    assert!(
        detail.starts_with(&dir.path().display().to_string())
            && detail.ends_with("(watermark 0.0 %)"),
        "{detail}"
    );
    assert_eq!(outcome, "ok: sh exited 0: freed 42");
    // Many host samples later, the cooldown still holds it back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.audit(10).await.unwrap().len(), 1);
    monitor.shutdown().await;
}

/// The content store's size against `content_max_bytes`: the built-in rule fires after its
/// `for` (driven by an injected clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_store_near_its_limit_fires_the_built_in_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = MonitorConfig {
        evaluation_interval: Duration::from_secs(3600),
        ..MonitorConfig::default()
    };
    m.status.listen = None;
    m.host.enabled = false;
    m.host.content_max_bytes = Some(1000);
    let clock = keel_monitor::clock::ManualClock::new(1_800_000_000_000);
    let deps = MonitorDeps {
        registry: Arc::new(keel_chain::ChainRegistry::default()),
        metrics_text: Arc::new(|| "keel_content_bytes_stored 950\n".to_owned()),
        gateway: None,
        data_dir: dir.path().to_path_buf(),
        content_gc: None,
        clock: Arc::new(clock.clone()),
    };
    let monitor = Monitor::start(
        &m,
        deps,
        MonitorMetrics::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let h = monitor.handle();
    h.evaluate_now().await.unwrap();
    let alerts = h.alerts().await.unwrap();
    let a = alerts
        .iter()
        .find(|a| a.rule == "ContentStoreNearlyFull")
        .expect("pending");
    assert_eq!(a.state, keel_monitor::alerts::AlertState::Pending);
    clock.advance(Duration::from_secs(301));
    h.evaluate_now().await.unwrap();
    let alerts = h.alerts().await.unwrap();
    let a = alerts
        .iter()
        .find(|a| a.rule == "ContentStoreNearlyFull")
        .unwrap();
    assert_eq!(a.state, keel_monitor::alerts::AlertState::Firing);
    assert_eq!(
        a.annotations["summary"],
        "the content store is at 0.9500 of its limit"
    );
    monitor.shutdown().await;
}
