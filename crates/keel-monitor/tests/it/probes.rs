//! TCP/TLS and HTTP probes against real servers: nginx terminating TLS with a throwaway CA,
//! a closed port, an HTTP server answering wrongly.

use std::time::Duration;

use keel_config::monitor::{HttpProbeConfig, TcpProbeConfig};
use keel_monitor::probes::{http, tcp};

fn tcp_cfg(address: String, tls: bool, ca_file: Option<std::path::PathBuf>) -> TcpProbeConfig {
    TcpProbeConfig {
        name: "t".into(),
        address,
        tls,
        server_name: Some("localhost".into()),
        ca_file,
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        public: true,
    }
}

#[tokio::test]
async fn tls_probes_verify_the_chain_and_report_the_certificate_expiry() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let front = keel_testkit::TlsFront::start(&format!("http://{backend_addr}")).await;
    let port = front.url().rsplit(':').next().unwrap().to_owned();
    let address = format!("127.0.0.1:{port}");
    let trusted = std::sync::Arc::new(tcp::tls_config(Some(&front.ca_file())).unwrap());
    let expiry = tcp::check_once(
        &tcp_cfg(address.clone(), true, Some(front.ca_file())),
        Some(&trusted),
    )
    .await
    .unwrap()
    .expect("a TLS probe reports the expiry");
    // rcgen's default certificate is valid for decades.
    assert!(expiry > 365.0 * 86_400.0, "{expiry}");
    // Without the CA the handshake is refused: the probe fails.
    let platform = std::sync::Arc::new(tcp::tls_config(None).unwrap());
    let e = tcp::check_once(&tcp_cfg(address.clone(), true, None), Some(&platform))
        .await
        .expect_err("untrusted");
    assert!(e.contains("TLS handshake failed"), "{e}");
    // Plain TCP: connects, no expiry.
    assert_eq!(
        tcp::check_once(&tcp_cfg(address, false, None), None).await,
        Ok(None)
    );
    // A closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = tcp::check_once(&tcp_cfg(closed.to_string(), false, None), None)
        .await
        .expect_err("closed");
    assert!(e.contains("connect failed"), "{e}");
    // A missing CA file is named.
    let e =
        tcp::tls_config(Some(std::path::Path::new("/nonexistent/ca.pem"))).expect_err("missing");
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
}

#[test]
fn expiry_is_read_from_the_certificate() {
    let mut params = rcgen::CertificateParams::new(vec!["example.org".to_owned()]).unwrap();
    let in_five_days = std::time::SystemTime::now() + Duration::from_secs(5 * 86_400);
    params.not_after = in_five_days.into();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let secs = tcp::expiry_seconds(cert.der()).unwrap();
    assert!((secs - 5.0 * 86_400.0).abs() < 120.0, "{secs}");
    assert!(tcp::expiry_seconds(b"not a certificate").is_err());
}

#[tokio::test]
async fn http_probes_fail_on_status_body_and_size() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/ok",
            get(|| async { axum::Json(serde_json::json!({"status": "UP", "height": 120})) }),
        )
        .route(
            "/down",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/big", get(|| async { "x".repeat(10_000) }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let client = http::client();
    let check = async |path: &str, conditions: &[&str]| {
        let cfg = HttpProbeConfig {
            name: "p".into(),
            url: keel_config::SecretUrl::parse(&format!("{base}{path}")).unwrap(),
            method: "GET".into(),
            body: None,
            headers: Default::default(),
            conditions: conditions.iter().map(|c| (*c).to_owned()).collect(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            max_body_bytes: 1024,
            public: true,
        };
        let parsed: Vec<_> = cfg
            .conditions
            .iter()
            .map(|c| http::parse_condition(c).unwrap())
            .collect();
        http::check_once(&client, &cfg, &reqwest::Method::GET, &parsed)
            .await
            .0
    };
    assert_eq!(
        check(
            "/ok",
            &[
                "[STATUS] == 200",
                "[BODY].status == UP",
                "[BODY].height > 100",
                "[RESPONSE_TIME] < 5000"
            ]
        )
        .await,
        Ok(())
    );
    let e = check("/ok", &["[BODY].height > 200"])
        .await
        .expect_err("height");
    assert!(e.contains("got 120"), "{e}");
    let e = check("/down", &["[STATUS] == 200"]).await.expect_err("503");
    assert!(
        e.contains("[STATUS] == 200") && e.contains("got 503"),
        "{e}"
    );
    let e = check("/big", &["[STATUS] == 200"])
        .await
        .expect_err("too big");
    assert!(e.contains("larger than 1024 bytes"), "{e}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = HttpProbeConfig {
        name: "c".into(),
        url: keel_config::SecretUrl::parse(&format!("http://{closed}/secret-path?token=SECRET"))
            .unwrap(),
        method: "GET".into(),
        body: None,
        headers: Default::default(),
        conditions: vec![],
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        max_body_bytes: 1024,
        public: true,
    };
    let e = http::check_once(&client, &cfg, &reqwest::Method::GET, &[])
        .await
        .0
        .expect_err("closed");
    assert!(
        e.contains("request failed") && !e.contains("SECRET"),
        "the error hides the URL: {e}"
    );
}
