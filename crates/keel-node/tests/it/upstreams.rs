//! Upstream checks: wrong chains refused, secrets never shown.

use std::time::Duration;

use keel_testkit::{Anvil, config_for, eventually};
use serde_json::json;

use crate::support::{Running, call, cluster, get_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_serving_another_chain_is_refused() {
    let right = Anvil::start(&[]).await;
    let wrong = Anvil::start(&["--chain-id", "999"]).await;
    let r = Running::start(config_for(
        "dev",
        31337,
        &[("right", &right.url()), ("wrong", &wrong.url())],
    ))
    .await;
    r.ready().await;
    assert!(
        eventually(Duration::from_secs(5), async || r.state_of("wrong").await
            == "refused")
        .await
    );
    let url = r.rpc_url("dev");
    for _ in 0..50 {
        let (_, headers, v) = call(&url, "eth_chainId", json!([])).await;
        assert_eq!(v["result"], "0x7a69");
        assert_eq!(headers["x-keel-upstream"], "right");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_upstream_urls_never_reach_status_metrics_or_errors() {
    let anvil = Anvil::start(&[]).await;
    let port = anvil.url().rsplit(':').next().unwrap().to_owned();
    let live = format!("http://user:LIVESECRET@127.0.0.1:{port}/");
    let dead = "http://user:DEADSECRET@127.0.0.1:1/";
    let mut config = config_for("dev", 31337, &[("live", &live), ("dead", dead)]);
    config.gateway.request_timeout = Duration::from_secs(2);
    let r = Running::start(config).await;
    r.ready().await;
    let url = r.rpc_url("dev");
    for _ in 0..20 {
        let (_, _, v) = call(&url, "eth_chainId", json!([])).await;
        assert_eq!(v["result"], "0x7a69", "{v}");
    }
    let status = get_text(&r.admin("/status")).await;
    let metrics = get_text(&r.admin("/metrics")).await;
    assert!(status.contains("http://127.0.0.1:1/…"), "{status}");
    drop(anvil);
    let (_, _, err) = call(&url, "eth_chainId", json!([])).await;
    for text in [&status, &metrics, &err.to_string()] {
        assert!(!text.contains("SECRET"), "secret leaked: {text}");
    }
    assert!(
        metrics.contains(
            "keel_rpc_requests_total{chain=\"dev\",method=\"eth_chainId\",outcome=\"ok\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_upstream_state{chain=\"dev\",upstream=\"dead\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer() {
    let anvil = Anvil::start(&[]).await;
    let r = Running::start(config_for("dev", 31337, &[("a", &anvil.url())])).await;
    r.ready().await;
    let get = |p: &str| reqwest::get(r.admin(p));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let s = r.status().await;
    assert!(s.ready);
    assert_eq!(s.chains[0].chain_id, 31337);
    assert_eq!(s.chains[0].upstreams[0]["state"], "healthy");
    let metrics = get("/metrics").await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"));
    // promtool, Prometheus' own linter, finds no problem.
    let mut lint = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed by ./scripts/install-tools --test");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = lint.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
    }
    let out = lint.wait_with_output().await.unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool reads the Prometheus text format only, where a counter's HELP names its `_total`
    // samples; OpenMetrics (what /metrics serves) names the family without it. A counter with
    // samples is therefore "without help text" to promtool when its family's HELP is there.
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| {
            !l.strip_suffix(" no help text")
                .and_then(|m| m.strip_suffix("_total"))
                .is_some_and(|family| text.contains(&format!("# HELP {family} ")))
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(findings.is_empty(), "promtool: {report}");
    drop(anvil);
    // Status and body of one answer: readiness comes back whenever the dead upstream's
    // ejection ends and its probe is due, so two requests may see different states.
    let mut body = String::new();
    assert!(
        eventually(Duration::from_secs(5), async || {
            let resp = get("/readyz").await.unwrap();
            let status = resp.status();
            body = resp.text().await.unwrap();
            status == 503
        })
        .await
    );
    assert!(body.contains("chain dev has no healthy upstream"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_transactions_reach_every_upstream_and_known_ones_count_as_sent() {
    let (_nodes, urls, r) = cluster(
        &["--no-mining", "--timestamp", "1700000000"],
        &["a", "b", "c"],
    )
    .await;
    let raw = crate::support::signed_transfer(&urls[1]).await;
    // Node a already has it: its "already known" must not fail the send.
    let (_, _, direct) = call(&urls[0], "eth_sendRawTransaction", json!([raw])).await;
    let hash = direct["result"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (status, _, v) = call(&r.rpc_url("dev"), "eth_sendRawTransaction", json!([raw])).await;
        assert_eq!(status, 200);
        assert_eq!(v["result"], hash, "{v}");
    }
    for u in &urls {
        let (_, _, v) = call(u, "eth_getTransactionByHash", json!([hash])).await;
        assert_eq!(v["result"]["hash"], hash, "{u} did not get the transaction");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_content_store_runs_inside_the_node_when_configured() {
    let anvil = Anvil::start(&[]).await;
    let mut config = config_for("dev", 31337, &[("a", &anvil.url())]);
    config.content = Some(keel_config::content::ContentConfig {
        gateway_listen: Some("127.0.0.1:0".parse().unwrap()),
        rpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    });
    let r = Running::start(config).await;
    r.ready().await;
    let addrs = r.node.content_addrs().unwrap();
    let rpc = addrs.rpc.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{rpc}/api/v0/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["Version"].is_string(), "{v}");
    // The store lives under the node's data dir, where `keel content --data-dir` finds it.
    assert!(r.node.data_dir().join("content").is_dir());
    let gw = addrs.gateway.unwrap();
    let started = std::time::Instant::now();
    let resp = reqwest::get(format!(
        "http://{gw}/ipfs/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    ))
    .await
    .unwrap();
    assert!(
        [404, 504].contains(&resp.status().as_u16()),
        "unknown content: {}",
        resp.status()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let metrics = get_text(&r.admin("/metrics")).await;
    assert!(
        metrics.contains("keel_content_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_rpc_requests_total") || metrics.contains("keel_upstream_state"),
        "{metrics}"
    );
    r.node.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_served_only_with_a_trusted_certificate() {
    let node = Anvil::start(&[]).await;
    let front = keel_testkit::TlsFront::start(&node.url()).await;
    // Trusted through the upstream's CA file: served over TLS.
    let mut c = config_for("dev", 31337, &[("tls", &front.url())]);
    c.chains[0].upstreams[0].ca_file = Some(front.ca_file());
    let r = Running::start(c).await;
    r.ready().await;
    let (s, h, v) = call(&r.rpc_url("dev"), "eth_chainId", json!([])).await;
    assert_eq!((s, &v["result"]), (200, &json!("0x7a69")), "{v}");
    assert_eq!(h["x-keel-upstream"], "tls");
    drop(r);

    // Not trusted (the system roots do not know the CA): never used, and the head poll says why.
    let r = Running::start(config_for("dev", 31337, &[("tls", &front.url())])).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            get_text(&r.admin("/metrics")).await.lines().any(|l| {
                l.starts_with("keel_head_poll_failures_total{chain=\"dev\",upstream=\"tls\"}")
            })
        })
        .await
    );
    let (_, _, v) = call(&r.rpc_url("dev"), "eth_chainId", json!([])).await;
    assert_eq!(v["error"]["code"], -32002, "{v}");
    drop(r);

    // A CA file that cannot be read stops the node before it serves, naming the file.
    let mut c = config_for("dev", 31337, &[("tls", &front.url())]);
    c.chains[0].upstreams[0].ca_file = Some("/nonexistent/keel-ca.pem".into());
    let dir = tempfile::tempdir().unwrap();
    let e = keel_node::Node::bind(c, dir.path())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot read CA file /nonexistent/keel-ca.pem"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstream_claiming_a_far_future_head_does_not_sideline_the_others() {
    let nodes = [
        Anvil::start(&[]).await,
        Anvil::start(&[]).await,
        Anvil::start(&[]).await,
    ];
    let liar = keel_testkit::Tamper::lying(
        &nodes[2].url(),
        keel_testkit::Lie::Head("0xffffffff".into()),
    )
    .await;
    let (ua, ub, ul) = (nodes[0].url(), nodes[1].url(), liar.url());
    let r = Running::start(config_for(
        "dev",
        31337,
        &[("a", &ua), ("b", &ub), ("liar", &ul)],
    ))
    .await;
    r.ready().await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            let s = r.status().await;
            s.chains[0]
                .upstreams
                .iter()
                .any(|u| u["name"] == "liar" && u["head"] == 0xffff_ffffu64)
        })
        .await,
        "the liar's head was never polled"
    );
    let s = r.status().await;
    assert_eq!(s.chains[0].head, 0, "{s:?}");
    for u in s.chains[0].upstreams.iter().filter(|u| u["name"] != "liar") {
        assert_eq!(u["state"], "healthy", "{u}");
        assert_eq!(u["lag"], 0, "{u}");
    }
    // Head-sensitive reads keep going to every upstream, not only to the liar.
    let mut served = std::collections::HashSet::new();
    for _ in 0..60 {
        let (_, h, v) = call(
            &r.rpc_url("dev"),
            "eth_getBalance",
            json!([keel_testkit::DEV_ADDR_0, "latest"]),
        )
        .await;
        assert!(v["result"].is_string(), "{v}");
        served.insert(h["x-keel-upstream"].to_str().unwrap().to_owned());
    }
    assert!(served.contains("a") && served.contains("b"), "{served:?}");
}
