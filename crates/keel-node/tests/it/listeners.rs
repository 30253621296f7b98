//! The gateway and admin listeners against slow clients and hostile web pages: what a browser
//! sends (headers as Chromium writes them), what a slowloris client does (raw sockets).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use keel_testkit::{Anvil, config_for, rpc};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{Running, call, cast};

/// Longest any test waits for something that must happen.
const GUARD: Duration = Duration::from_secs(30);
const ADDR: &str = "0x000000000000000000000000000000000000b0b0";

/// Writes a request head that never ends, one byte every 50 ms; returns how long after the
/// connection opened the server closed it.
async fn trickled_head(addr: SocketAddr, start: &str) -> Duration {
    let opened = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut w) = s.into_split();
    w.write_all(start.as_bytes()).await.unwrap();
    tokio::spawn(async move {
        for b in b"x-slow: loris\r\n".iter().cycle() {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut buf = [0u8; 256];
    tokio::time::timeout(GUARD, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return opened.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("a client trickling its request head held the connection")
}

/// Sends `req` and reads until a complete response head, returning it (and what followed).
async fn response_head(s: &mut TcpStream, req: &str) -> String {
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(GUARD, async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before answering");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no answer");
    String::from_utf8_lossy(&got).into_owned()
}

/// With `cap` connections open and served, one more waits until one of them closes.
async fn assert_cap(addr: SocketAddr, cap: usize, req: &str) {
    let mut open = Vec::new();
    for _ in 0..cap {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(response_head(&mut s, req).await.starts_with("HTTP/1.1"));
        open.push(s);
    }
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.peek(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap of {cap}: {early:?}");
    open.pop();
    let n = tokio::time::timeout(GUARD, waiting.read(&mut buf))
        .await
        .expect("not served once a slot freed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1"), "{:?}", &buf[..n]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_admin_cut_slowloris_clients_and_honour_their_connection_caps() {
    let anvil = Anvil::start(&[]).await;
    let mut c = config_for("dev", 31337, &[("a", &anvil.url())]);
    let header = Duration::from_millis(500);
    c.listeners.gateway.header_timeout = header;
    c.listeners.admin.header_timeout = header;
    c.listeners.gateway.max_connections = Some(3);
    c.listeners.admin.max_connections = Some(2);
    let r = Running::start(c).await;
    let (gw, admin) = (r.node.gateway_addr(), r.node.admin_addr());

    let cut = trickled_head(gw, "POST /rpc/dev HTTP/1.1\r\nhost: localhost\r\n").await;
    assert!(cut >= header, "cut after {cut:?}");
    let cut = trickled_head(admin, "GET /status HTTP/1.1\r\nhost: localhost\r\n").await;
    assert!(cut >= header, "cut after {cut:?}");
    let metrics = reqwest::get(r.admin("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for listener in ["gateway", "admin"] {
        let line = format!(
            "keel_listener_closed_total{{listener=\"{listener}\",reason=\"header_timeout\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }

    // The gateway's cap is one for all its worker threads.
    assert_cap(gw, 3, "GET / HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    assert_cap(admin, 2, "GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_an_error_within_the_deadline_and_frees_its_slot() {
    let anvil = Anvil::start(&[]).await;
    let mut c = config_for("dev", 31337, &[("a", &anvil.url())]);
    let deadline = Duration::from_secs(1);
    c.gateway.request_timeout = deadline;
    c.gateway.max_concurrent_requests = 1;
    let r = Running::start(c).await;
    r.ready().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#;
    let started = Instant::now();
    let s = TcpStream::connect(r.node.gateway_addr()).await.unwrap();
    let (mut rd, mut w) = s.into_split();
    w.write_all(
        format!(
            "POST /rpc/dev HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The body, one byte every 200 ms: it would take 9 s.
    let trickle = tokio::spawn(async move {
        for b in body.bytes() {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(GUARD, async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.ends_with(b"}}") {
                return;
            }
        }
    })
    .await
    .expect("a trickled body held its request past the deadline");
    let answered = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("-32001") && text.contains("request_timeout"),
        "{text}"
    );
    assert!(answered >= deadline, "answered after {answered:?}");
    // The only slot is free again.
    let (_, _, v) = call(&r.rpc_url("dev"), "eth_chainId", json!([])).await;
    assert_eq!(v["result"], "0x7a69", "{v}");
}

/// POSTs a JSON-RPC call with `headers` to `url`; returns status, headers and body text.
async fn browser_post(
    url: &str,
    headers: &[(&str, &str)],
    method: &str,
    params: Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.text().await.unwrap())
}

/// Headers Chromium sends with `fetch(url, {method: "POST", mode: "no-cors", body})` from a
/// page at `origin` (a "simple" request: no preflight, the answer is opaque but the call runs).
fn chromium_cross_site(origin: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("origin", origin),
        ("referer", "https://evil.example/"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "no-cors"),
        ("sec-fetch-dest", "empty"),
        ("content-type", "text/plain;charset=UTF-8"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        ),
    ]
}

async fn balance(anvil: &Anvil) -> Value {
    rpc(&anvil.url(), "eth_getBalance", json!([ADDR, "latest"])).await["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_on_other_sites_cannot_drive_the_gateway() {
    let anvil = Anvil::start(&[]).await;
    let mut c = config_for("dev", 31337, &[("a", &anvil.url())]);
    // As the devnet: node control allowed.
    c.chains[0].allow_node_control = true;
    let r = Running::start(c).await;
    r.ready().await;
    let url = r.rpc_url("dev");
    let before = balance(&anvil).await;

    // fetch() from a foreign page.
    let (status, h, text) = browser_post(
        &url,
        &chromium_cross_site("https://evil.example"),
        "anvil_setBalance",
        json!([ADDR, "0x1234"]),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(h.get("access-control-allow-origin").is_none());
    assert!(
        text.contains("[listeners.gateway] allowed_origins"),
        "{text}"
    );
    // A <form enctype="text/plain" method="post"> submitted from a foreign page.
    let mut form = chromium_cross_site("https://evil.example");
    form.retain(|(k, _)| !k.starts_with("sec-fetch"));
    form.extend([
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-user", "?1"),
    ]);
    let (status, _, _) = browser_post(&url, &form, "evm_mine", json!([])).await;
    assert_eq!(status, 403);
    // DNS rebinding: the attacker's name now resolves to 127.0.0.1; to the browser the
    // request is same-origin.
    let rebinding = [
        ("host", "attacker.example:8545"),
        ("origin", "http://attacker.example:8545"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
        ("content-type", "application/json"),
    ];
    let (status, _, text) = browser_post(&url, &rebinding, "eth_accounts", json!([])).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("allowed_hosts"), "{text}");
    assert_eq!(balance(&anvil).await, before, "a refused call ran");

    // Not browsers: curl-like and cast are unaffected.
    let (_, _, v) = call(&url, "anvil_setBalance", json!([ADDR, "0x2a"])).await;
    assert_eq!(v["result"], Value::Null, "{v}");
    assert_eq!(balance(&anvil).await, "0x2a");
    assert_eq!(cast(&["chain-id", "--rpc-url", &url]).await, "31337");

    // The admin listener refuses rebinding pages too.
    let resp = reqwest::Client::new()
        .get(r.admin("/status"))
        .header("host", "attacker.example:9545")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_pages_get_cors_and_the_wildcard_never_reaches_node_control() {
    let anvil = Anvil::start(&[]).await;
    let mut c = config_for("dev", 31337, &[("a", &anvil.url())]);
    c.chains[0].allow_node_control = true;
    c.listeners.gateway.allowed_origins = vec!["http://localhost:5173".to_owned(), "*".to_owned()];
    let r = Running::start(c).await;
    r.ready().await;
    let url = r.rpc_url("dev");

    // The listed page: preflight, then any call, readable.
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-keel-verify",
        )
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-site", "same-site")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:5173");
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type,x-keel-verify"
    );
    let page = [
        ("origin", "http://localhost:5173"),
        ("sec-fetch-site", "same-site"),
        ("sec-fetch-mode", "cors"),
        ("content-type", "application/json"),
    ];
    let (status, h, text) =
        browser_post(&url, &page, "anvil_setBalance", json!([ADDR, "0x7"])).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(h["access-control-allow-origin"], "http://localhost:5173");
    assert!(
        h["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-keel-upstream")
    );
    assert_eq!(balance(&anvil).await, "0x7");

    // Any other page, through `*`: reads yes, node control and node accounts no.
    let any = [
        ("origin", "https://dapp.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "cors"),
        ("content-type", "application/json"),
    ];
    let (status, h, text) = browser_post(&url, &any, "eth_chainId", json!([])).await;
    assert_eq!(
        (status, h["access-control-allow-origin"].to_str().unwrap()),
        (200, "*")
    );
    assert!(text.contains("0x7a69"), "{text}");
    for (method, params) in [
        ("anvil_setBalance", json!([ADDR, "0x99"])),
        ("evm_mine", json!([])),
        ("eth_sendTransaction", json!([{"from": ADDR, "to": ADDR}])),
        ("eth_signTypedData_v4", json!([ADDR, {}])),
    ] {
        let (status, _, text) = browser_post(&url, &any, method, params).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], -32601, "{method}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("allowed_origins"),
            "{v}"
        );
    }
    // In a batch, entry by entry.
    let resp = reqwest::Client::new()
        .post(&url)
        .header("origin", "https://dapp.example")
        .header("content-type", "application/json")
        .body(
            json!([
                {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
                {"jsonrpc": "2.0", "id": 2, "method": "anvil_setBalance", "params": [ADDR, "0x99"]},
            ])
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v[0]["result"], "0x7a69", "{v}");
    assert_eq!(v[1]["error"]["code"], -32601, "{v}");
    assert_eq!(
        balance(&anvil).await,
        "0x7",
        "a wildcard page controlled the node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_and_its_anvil_nodes_refuse_foreign_pages() {
    let mut c = keel_config::Config::from_toml(
        keel_config::Config::EMBEDDED_DEFAULT,
        "<embedded defaults>",
        &[],
    )
    .unwrap();
    c.gateway.listen = "127.0.0.1:0".parse().unwrap();
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    let d = c.devnet.as_mut().unwrap();
    d.nodes = 1;
    d.anvil = Some(keel_testkit::anvil());
    let r = Running::start(c).await;
    r.ready().await;
    let url = r.rpc_url("devnet");
    let (status, _, text) = browser_post(
        &url,
        &chromium_cross_site("https://evil.example"),
        "anvil_setBalance",
        json!([ADDR, "0x1234"]),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    // The anvil nodes behind it answer no page's preflight: a browser sends them nothing but
    // simple requests, which their JSON-RPC refuses.
    for node in r.node.devnet_urls() {
        let resp = reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, &node)
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{node} answers CORS: {:?}",
            resp.headers()
        );
        let (_, _, text) = browser_post(
            &node,
            &chromium_cross_site("https://evil.example"),
            "anvil_setBalance",
            json!([ADDR, "0x1234"]),
        )
        .await;
        assert!(
            !text.contains("\"result\""),
            "{node} ran a text/plain call: {text}"
        );
    }
    let (_, _, v) = call(&url, "eth_getBalance", json!([ADDR, "latest"])).await;
    assert_eq!(v["result"], "0x0", "{v}");
}
