//! The monitor inside a node, against real anvil upstreams: stopped, lagging and forked
//! nodes; the devnet with a node killed and restarted; the synthetic transaction probe against
//! the devnet and against a node that drops transactions; the status page.

use std::time::Duration;

use keel_config::monitor::{MonitorConfig, RuleConfig, Severity, SyntheticTxConfig};
use keel_monitor::alerts::{Alert, AlertState};
use keel_testkit::{Anvil, rpc};
use serde_json::json;

use crate::devnet::{devnet_config, kill_node};
use crate::support::Running;

const GENESIS: &str = "1700000000";

/// A fast monitor: evaluation and probes every 100 ms, the built-in rules with their `for`
/// shortened (their expressions unchanged).
fn fast_monitor() -> MonitorConfig {
    let mut m = MonitorConfig {
        evaluation_interval: Duration::from_millis(100),
        ..MonitorConfig::default()
    };
    m.chain_probe.interval = Duration::from_millis(100);
    m.status.listen = Some("127.0.0.1:0".parse().unwrap());
    m.host.enabled = false;
    m.disable_rules = vec!["UpstreamNoPeers".into()];
    for b in keel_monitor::default_rules::BUILTIN {
        if [
            "UpstreamDown",
            "UpstreamLagging",
            "UpstreamForked",
            "ChainUnavailable",
        ]
        .contains(&b.name)
        {
            m.rules.push(RuleConfig {
                name: b.name.into(),
                expr: b.expr.into(),
                for_: Duration::ZERO,
                fire_after: 2,
                resolve_after: 2,
                severity: b.severity,
                labels: Default::default(),
                summary: b.summary.into(),
                description: String::new(),
                runbook: None,
            });
        }
    }
    m
}

async fn firing(r: &Running) -> Vec<Alert> {
    let h = r.node.monitor().unwrap();
    h.alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.state == AlertState::Firing)
        .collect()
}

fn has(alerts: &[Alert], rule: &str, upstream: &str) -> bool {
    alerts
        .iter()
        .any(|a| a.rule == rule && a.labels.get("upstream").map(String::as_str) == Some(upstream))
}

async fn wait_for(r: &Running, what: &str, check: impl Fn(&[Alert]) -> bool) {
    let ok =
        keel_testkit::eventually(Duration::from_secs(60), async || check(&firing(r).await)).await;
    assert!(ok, "{what}: firing alerts are {:#?}", firing(r).await);
}

/// Mines one block with `timestamp` on each of `urls`.
async fn mine(urls: &[&str], timestamp: u64) {
    for u in urls {
        let v = rpc(u, "evm_mine", json!([timestamp])).await;
        assert!(v.get("error").is_none(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_lagging_and_forked_upstreams_are_flagged_against_the_quorum() {
    let args = ["--no-mining", "--timestamp", GENESIS];
    // a, b, c: mined in lockstep (same blocks, same hashes). lag: stops after block 2.
    // fork: mines as often, with other timestamps: its own chain at the same height.
    let a = Anvil::start(&args).await;
    let b = Anvil::start(&args).await;
    let mut c = Anvil::start(&args).await;
    let lag = Anvil::start(&args).await;
    let fork = Anvil::start(&args).await;
    let mut config = keel_testkit::config_for(
        "dev",
        31337,
        &[
            ("a", &a.url()),
            ("b", &b.url()),
            ("c", &c.url()),
            ("lag", &lag.url()),
            ("fork", &fork.url()),
        ],
    );
    config.monitor = Some(fast_monitor());
    let r = Running::start(config).await;
    r.ready().await;
    let miner = {
        let (a, b, c, lag, fork) = (a.url(), b.url(), c.url(), lag.url(), fork.url());
        tokio::spawn(async move {
            let mut t = 1_700_000_001u64;
            loop {
                mine(&[&a, &b], t).await;
                // c may be down: ignore its errors.
                let _ = reqwest::Client::new()
                    .post(&c)
                    .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": [t]}))
                    .send()
                    .await;
                if t < 1_700_000_003 {
                    mine(&[&lag], t).await;
                }
                mine(&[&fork], t + 7).await;
                t += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    wait_for(&r, "lagging and forked upstreams", |f| {
        has(f, "UpstreamLagging", "lag") && has(f, "UpstreamForked", "fork")
    })
    .await;
    let f = firing(&r).await;
    // The forked node keeps its head moving with the others: it is not lagging.
    assert!(!has(&f, "UpstreamLagging", "fork"), "{f:#?}");
    for healthy in ["a", "b", "c"] {
        assert!(
            !f.iter()
                .any(|x| x.labels.get("upstream").map(String::as_str) == Some(healthy)),
            "{healthy}: {f:#?}"
        );
    }
    let forked = f.iter().find(|x| x.rule == "UpstreamForked").unwrap();
    assert_eq!(forked.severity, Severity::Critical);
    assert!(
        forked.annotations["summary"].contains("minority fork"),
        "{forked:?}"
    );

    // Stopped: c is killed, its alert fires; restarted (it lost its chain), it is behind.
    c.kill().await;
    wait_for(&r, "stopped upstream", |f| has(f, "UpstreamDown", "c")).await;
    // The status page shows the chain degraded with the alert's summary.
    let status = r.node.monitor().unwrap().status();
    let chain = status
        .components
        .iter()
        .find(|x| x.id == "chain:dev")
        .unwrap();
    assert_eq!(
        chain.state,
        keel_monitor::status::ComponentState::Degraded,
        "{chain:?}"
    );
    c.restart().await;
    wait_for(&r, "restarted upstream resolves UpstreamDown", |f| {
        !has(f, "UpstreamDown", "c")
    })
    .await;
    // History keeps both transitions.
    let h = r.node.monitor().unwrap().history(200).await.unwrap();
    assert!(
        h.iter()
            .any(|e| e.rule == "UpstreamDown" && e.kind == "firing"),
        "{h:?}"
    );
    assert!(
        h.iter()
            .any(|e| e.rule == "UpstreamDown" && e.kind == "resolved"),
        "{h:?}"
    );
    miner.abort();
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_devnet_node_fires_and_resolves_an_alert_and_the_status_page_shows_it() {
    // `keel up`'s embedded default, monitor included, as it is (only its ports are free ones).
    let config = devnet_config();
    assert_eq!(
        config.monitor.as_ref().unwrap().evaluation_interval,
        Duration::from_secs(1)
    );
    let r = Running::start(config).await;
    r.ready().await;
    let status_url = format!("http://{}", r.node.status_addr().unwrap());
    // The first evaluation round fills the page.
    let mut html = String::new();
    let filled = keel_testkit::eventually(Duration::from_secs(30), async || {
        let page = reqwest::get(&status_url).await.unwrap();
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        html = page.text().await.unwrap();
        html.contains("devnet JSON-RPC")
    })
    .await;
    assert!(filled, "{html}");
    let killed = kill_node(&r, 1);
    // The devnet's upstreams are named node-0.. in order.
    let upstream = "node-1".to_owned();
    assert!(killed.pid > 0);
    wait_for(&r, "killed devnet node", |f| {
        has(f, "DevnetNodeRestarted", &upstream)
    })
    .await;
    let a = firing(&r)
        .await
        .into_iter()
        .find(|a| a.rule == "DevnetNodeRestarted")
        .unwrap();
    assert_eq!(
        a.annotations["summary"],
        "devnet node node-1 died and was restarted"
    );
    assert!(
        !firing(&r)
            .await
            .iter()
            .any(|a| a.labels.get("upstream").map(String::as_str) == Some("node-0"))
    );
    // The status page shows the devnet degraded meanwhile.
    let doc: serde_json::Value = reqwest::get(format!("{status_url}/status.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["components"][0]["state"], "degraded", "{doc}");
    // Restarted and caught up, the alert resolves once the minute's window has passed.
    let resolved = keel_testkit::eventually(Duration::from_secs(150), async || {
        !has(&firing(&r).await, "DevnetNodeRestarted", &upstream)
    })
    .await;
    assert!(resolved, "{:#?}", firing(&r).await);
    let h = r.node.monitor().unwrap().history(100).await.unwrap();
    assert!(
        h.iter()
            .any(|e| e.rule == "DevnetNodeRestarted" && e.kind == "resolved"),
        "{h:?}"
    );
    let doc: serde_json::Value = reqwest::get(format!("{status_url}/status.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["components"][0]["id"], "chain:devnet", "{doc}");
    assert_eq!(doc["components"][0]["days"].as_array().unwrap().len(), 90);
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_synthetic_transaction_is_included_on_the_devnet() {
    let mut config = devnet_config();
    let mut m = fast_monitor();
    // A public anvil dev key, handed over in a file as a real key would be.
    let (_keydir, key) = key_file();
    m.synthetic_tx.push(SyntheticTxConfig {
        chain: "devnet".into(),
        key: keel_config::content::SecretSource {
            file: Some(key.clone()),
            env: None,
        },
        interval: Duration::from_millis(500),
        max_blocks: 5,
        timeout: Duration::from_secs(5),
        url: None,
        gas_price: None,
    });
    config.monitor = Some(m);
    let r = Running::start(config).await;
    r.ready().await;
    let metrics = r.admin("/metrics");
    let ok = keel_testkit::eventually(Duration::from_secs(60), async || {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        text.contains("keel_synthetic_tx_ok{chain=\"devnet\"} 1")
            && text.contains("keel_synthetic_tx_included_total{chain=\"devnet\"} ")
    })
    .await;
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        ok,
        "{}",
        text.lines()
            .filter(|l| l.contains("synthetic"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !firing(&r)
            .await
            .iter()
            .any(|a| a.rule == "SyntheticTransactionNotIncluded")
    );
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_drops_transactions_fails_the_synthetic_probe() {
    let anvil = Anvil::start(&["--block-time", "1"]).await;
    let dropper = Dropper::start(&anvil.url()).await;
    let mut config = keel_testkit::config_for("dev", 31337, &[("dropper", &dropper.url())]);
    let mut m = fast_monitor();
    let (_keydir, key) = key_file();
    m.synthetic_tx.push(SyntheticTxConfig {
        chain: "dev".into(),
        key: keel_config::content::SecretSource {
            file: Some(key.clone()),
            env: None,
        },
        interval: Duration::from_millis(500),
        max_blocks: 2,
        timeout: Duration::from_secs(5),
        url: None,
        gas_price: None,
    });
    config.monitor = Some(m);
    let r = Running::start(config).await;
    r.ready().await;
    wait_for(&r, "dropped synthetic transaction", |f| {
        f.iter()
            .any(|a| a.rule == "SyntheticTransactionNotIncluded" && a.labels["chain"] == "dev")
    })
    .await;
    assert!(dropper.dropped() > 0, "the fixture saw no transaction");
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

fn key_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synthetic.key");
    std::fs::write(&path, format!("{}\n", keel_testkit::DEV_KEY_0)).unwrap();
    (dir, path)
}

/// A node that accepts `eth_sendRawTransaction` and never includes it: it answers with a hash
/// and forwards nothing (every other call goes to the real node behind it).
struct Dropper {
    addr: std::net::SocketAddr,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Dropper {
    async fn start(upstream: &str) -> Self {
        use axum::{body::Bytes, extract::State, routing::post};
        #[derive(Clone)]
        struct St {
            upstream: String,
            client: reqwest::Client,
            dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        }
        async fn handle(State(s): State<St>, body: Bytes) -> axum::response::Response {
            use axum::response::IntoResponse;
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if req["method"] == "eth_sendRawTransaction" {
                s.dropped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let hash = format!("0x{}", "11".repeat(32));
                return axum::Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": hash}))
                    .into_response();
            }
            let answer = s
                .client
                .post(&s.upstream)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match answer {
                Ok(r) => {
                    let bytes = r.bytes().await.unwrap_or_default();
                    ([("content-type", "application/json")], bytes).into_response()
                }
                Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let st = St {
            upstream: upstream.to_owned(),
            client: reqwest::Client::new(),
            dropped: dropped.clone(),
        };
        let app = axum::Router::new().route("/", post(handle)).with_state(st);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            dropped,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Dropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Debian's Prometheus scrapes a running keel (gateway traffic, verified reads, the content
/// store, the monitor and its synthetic transactions): every query of every shipped Grafana
/// dashboard returns data, and every shipped rule evaluates without error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_keel_and_every_dashboard_query_returns_data() {
    let a = Anvil::start(&[]).await;
    let b = Anvil::start(&[]).await;
    let c = Anvil::start(&[]).await;
    let mut config = keel_testkit::config_for(
        "dev",
        31337,
        &[("a", &a.url()), ("b", &b.url()), ("c", &c.url())],
    );
    let mut m = fast_monitor();
    m.host.enabled = true;
    m.host.interval = Duration::from_millis(200);
    let (_keydir, key) = key_file();
    m.synthetic_tx.push(SyntheticTxConfig {
        chain: "dev".into(),
        key: keel_config::content::SecretSource {
            file: Some(key),
            env: None,
        },
        interval: Duration::from_millis(500),
        max_blocks: 5,
        timeout: Duration::from_secs(5),
        url: None,
        gas_price: None,
    });
    config.monitor = Some(m);
    config.content = Some(keel_config::content::ContentConfig {
        gateway_listen: Some("127.0.0.1:0".parse().unwrap()),
        rpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    });
    let r = Running::start(config).await;
    r.ready().await;
    // Traffic: plain reads, quorum-verified reads, a content gateway request.
    let rpc_url = r.rpc_url("dev");
    let traffic = tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            let _ = client
                .post(&rpc_url)
                .json(
                    &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}),
                )
                .send()
                .await;
            let _ = client
                .post(&rpc_url)
                .header("x-keel-verify", "quorum")
                .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "eth_getBalance", "params": [keel_testkit::DEV_ADDR_1, "latest"]}))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let gw = r.node.content_addrs().unwrap().gateway.unwrap();
    let missing = reqwest::get(format!(
        "http://{gw}/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    ))
    .await
    .unwrap();
    assert!(missing.status().is_client_error() || missing.status().is_server_error());

    let root = keel_testkit::workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: keel\n    static_configs:\n      - targets: [\"{}\"]\n",
            root.join("deploy/prometheus/keel.rules.yml").display(),
            root.join("deploy/prometheus/slo.rules.yml").display(),
            r.node.admin_addr()
        ),
    )
    .unwrap();
    let bin = std::env::var("KEEL_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let mut prom = std::process::Command::new(&bin)
        .args([
            &format!("--config.file={}", prom_cfg.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} (Debian package prometheus): {e}"));
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let query = async |q: &str| -> serde_json::Value {
        let encoded: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let resp = reqwest::get(format!("{api}/query?query={encoded}")).await;
        match resp {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    };
    let scraped = keel_testkit::eventually(Duration::from_secs(60), async || {
        query("count_over_time(up{job=\"keel\"}[1m]) >= 5").await["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    })
    .await;
    assert!(
        scraped,
        "Prometheus did not scrape keel: {}",
        query("up").await
    );
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("deploy/grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in board["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let mut last = serde_json::Value::Null;
                let ok = keel_testkit::eventually(Duration::from_secs(60), async || {
                    last = query(expr).await;
                    last["status"] == "success"
                        && last["data"]["result"]
                            .as_array()
                            .is_some_and(|r| !r.is_empty())
                })
                .await;
                assert!(
                    ok,
                    "{}: panel {:?}: `{expr}` returns no data: {last}",
                    path.display(),
                    p["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} queries");
    // Every shipped rule evaluates against real data without error (the SLO groups run every
    // 30 s: wait for their first evaluation).
    let mut rules = serde_json::Value::Null;
    keel_testkit::eventually(Duration::from_secs(90), async || {
        rules = reqwest::get(format!("{api}/rules"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        !rules.to_string().contains("\"health\":\"unknown\"")
    })
    .await;
    let mut n = 0;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for rule in g["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule}");
            n += 1;
        }
    }
    assert!(n >= 50, "{n} rules loaded");
    traffic.abort();
    let _ = prom.kill();
    let _ = prom.wait();
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The status page rendered by headless Chromium at a phone's width: the screenshot shows the
/// page with its inline styles (the green banner and uptime bars), the DOM has the
/// components and the incident, and every request the page made went to its own origin
/// (Chromium's network log lists each request with the origin that initiated it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_chromium_and_requests_nothing_elsewhere() {
    let a = Anvil::start(&[]).await;
    let mut config = keel_testkit::config_for("dev", 31337, &[("a", &a.url())]);
    let mut m = fast_monitor();
    m.status.title = "Example <status>".into();
    config.monitor = Some(m);
    let r = Running::start(config).await;
    r.ready().await;
    let h = r.node.monitor().unwrap();
    h.open_incident(keel_monitor::service::NewIncident {
        title: "Degraded <b>RPC</b>".into(),
        impact: "minor".into(),
        components: vec!["dev JSON-RPC".into()],
        message: "Investigating".into(),
    })
    .await
    .unwrap();
    let ok = keel_testkit::eventually(Duration::from_secs(30), async || {
        h.status().state == keel_monitor::status::ComponentState::Operational
    })
    .await;
    assert!(ok, "{:?}", h.status());
    let origin = r.node.status_addr().unwrap().to_string();
    // The status page takes no body and has two paths.
    let client = reqwest::Client::new();
    let body = client
        .post(format!("http://{origin}/"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 413);
    let missing = reqwest::get(format!("http://{origin}/admin"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("content-security-policy"));
    // The admin API refuses writes a hostile page could forge.
    let silences = r.admin("/monitor/silences");
    let silence = json!({"matchers": ["alertname=X"], "duration": "1h", "created_by": "test"});
    let form = client
        .post(&silences)
        .header("content-type", "text/plain")
        .body(silence.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    let foreign = client
        .post(&silences)
        .header("origin", "http://evil.example")
        .json(&silence)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let ok = client.post(&silences).json(&silence).send().await.unwrap();
    assert_eq!(ok.status(), 201);
    let bad = client
        .post(&silences)
        .json(&json!({"matchers": ["not a matcher"], "duration": "1h", "created_by": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let err: serde_json::Value = bad.json().await.unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("is not a matcher"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("status.png");
    let chromium = std::env::var("KEEL_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let url = format!("http://{origin}/");
    fn url_of(origin: &str) -> String {
        format!("{origin}/")
    }
    let run = |extra: Vec<String>| {
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=390,844",
            "--disable-sync",
            "--no-pings",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-default-apps",
            "--disable-extensions",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra);
        args.push(url.clone());
        let out = std::process::Command::new(&chromium)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{chromium} (Debian package chromium): {e}"));
        (out, profile)
    };
    let netlog = dir.path().join("netlog.json");
    let (out, _p) = tokio::task::block_in_place(|| {
        run(vec![
            format!("--screenshot={}", shot.display()),
            format!("--log-net-log={}", netlog.display()),
        ])
    });
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // To look at it: KEEL_SCREENSHOT_OUT=/tmp/status.png
    if let Some(to) = std::env::var_os("KEEL_SCREENSHOT_OUT") {
        std::fs::copy(&shot, to).unwrap();
    }
    let (dom, _p2) = tokio::task::block_in_place(|| run(vec!["--dump-dom".into()]));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(dom.contains("All systems operational"), "{dom}");
    assert!(dom.contains("dev JSON-RPC"), "{dom}");
    assert!(
        dom.contains("Degraded &lt;b&gt;RPC&lt;/b&gt;"),
        "the incident title is escaped: {dom}"
    );
    assert!(dom.contains("Example &lt;status&gt;"), "{dom}");
    assert_eq!(dom.matches("<rect").count(), 90, "90 uptime bars");

    // The screenshot: a phone-width page whose inline styles applied (the banner's green).
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.width, 390, "{info:?}");
    let px = info.color_type.samples();
    let green = buf[..info.buffer_size()]
        .chunks(px)
        .filter(|p| {
            (i32::from(p[0]) - 0x2f).abs() < 8
                && (i32::from(p[1]) - 0x9e).abs() < 8
                && (i32::from(p[2]) - 0x5b).abs() < 8
        })
        .count();
    assert!(
        green > 390 * 20,
        "the green banner is missing ({green} green pixels)"
    );

    // Every request the page made went to its own origin. In the network log, a request's
    // `initiator` is the origin of the document that caused it (none for the navigation and for
    // the browser's own background requests).
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&netlog).unwrap()).unwrap();
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_i64()
        .unwrap();
    let page_origin = format!("http://{origin}");
    let mut navigated = false;
    let mut from_page = 0;
    for e in log["events"].as_array().unwrap() {
        if e["type"].as_i64() != Some(start_job) {
            continue;
        }
        let url = e["params"]["url"].as_str().unwrap_or("");
        if url == url_of(&page_origin) {
            navigated = true;
        }
        if e["params"]["initiator"].as_str() == Some(page_origin.as_str()) {
            from_page += 1;
            assert!(
                url.starts_with(&format!("{page_origin}/")),
                "the page requested another origin: {url}"
            );
        }
    }
    assert!(navigated, "the network log does not show the page load");
    // Chromium asks for /favicon.ico itself; the page asks for nothing else.
    assert!(from_page <= 1, "{from_page} requests from the page");
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}
