//! Browser checks through a real socket.

use keel_config::ListenerConfig;
use keel_listener::ReasonLabel;

use crate::Running;

#[tokio::test]
async fn pages_hosts_and_preflights_over_the_wire() {
    let cfg = ListenerConfig {
        allowed_origins: vec!["http://localhost:3000".to_owned()],
        ..ListenerConfig::default()
    };
    let r = Running::start(cfg).await;
    let url = format!("http://{}/echo", r.addr);
    let client = reqwest::Client::new();

    // What Chromium sends for fetch(url, {method: "POST", mode: "no-cors", body}) from a
    // foreign page: refused before the router sees it.
    let resp = client
        .post(&url)
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "no-cors")
        .header("sec-fetch-dest", "empty")
        .header("content-type", "text/plain;charset=UTF-8")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("https://evil.example")
            && text.contains("[listeners.gateway] allowed_origins"),
        "{text}"
    );

    // DNS rebinding: the page's own name, now resolving to 127.0.0.1.
    let resp = client
        .post(&url)
        .header("host", "attacker.example:8545")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("allowed_hosts"));

    // The allowed page: preflight, then the call, readable.
    let resp = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(resp.headers()["access-control-allow-methods"], "POST");
    let resp = client
        .post(&url)
        .header("origin", "http://localhost:3000")
        .header("sec-fetch-site", "same-site")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(resp.headers()["access-control-expose-headers"], "x-test");
    assert_eq!(resp.text().await.unwrap(), "hello");

    // Not a browser: unaffected.
    let resp = client.post(&url).body("plain").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "plain");

    let refused = |reason| {
        r.metrics
            .refused
            .get_or_create(&ReasonLabel {
                listener: "gateway",
                reason,
            })
            .get()
    };
    assert_eq!((refused("origin"), refused("host")), (1, 1));
}
