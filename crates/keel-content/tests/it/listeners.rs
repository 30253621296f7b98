//! The content listeners against hostile web pages (headers as Chromium writes them) and slow
//! clients (raw sockets).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keel_config::ListenersConfig;
use keel_config::content::ContentConfig;
use keel_content::{ContentService, LocalAddrs};
use keel_listener::ListenerMetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Longest any test waits for something that must happen.
const GUARD: Duration = Duration::from_secs(30);

struct Served {
    addrs: LocalAddrs,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve(listeners: ListenersConfig) -> Served {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = ContentConfig {
        gateway_listen: Some("127.0.0.1:0".parse().expect("addr")),
        rpc_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..ContentConfig::default()
    };
    let svc = ContentService::bind(&cfg, dir.path()).await.expect("bind");
    let addrs = svc.local_addrs();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        svc.run_with(&listeners, &ListenerMetrics::default(), token)
            .await
            .expect("serve");
    });
    Served {
        addrs,
        shutdown,
        _dir: dir,
    }
}

/// Sends one HTTP/1.1 request (`connection: close`) and returns status, head and body.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .expect("no answer")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

const BOUNDARY: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

fn multipart(content: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\ncontent-type: text/plain\r\n\r\n{content}\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes()
}

/// Headers Chromium sends when a page at https://evil.example posts a multipart form (a
/// "simple" request: no preflight, the answer is opaque but the call runs).
fn chromium_cross_site_form() -> Vec<(&'static str, String)> {
    vec![
        ("origin", "https://evil.example".to_owned()),
        ("referer", "https://evil.example/".to_owned()),
        ("sec-fetch-site", "cross-site".to_owned()),
        ("sec-fetch-mode", "no-cors".to_owned()),
        ("sec-fetch-dest", "empty".to_owned()),
        ("content-type", format!("multipart/form-data; boundary={BOUNDARY}")),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36".to_owned(),
        ),
    ]
}

fn refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn objects(rpc: SocketAddr) -> u64 {
    let (status, _, body) = send(rpc, "POST", "/api/v0/repo/stat", &[], b"").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["NumObjects"].as_u64().expect("NumObjects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_cannot_drive_the_kubo_rpc() {
    let mut listeners = ListenersConfig::default();
    listeners.content_rpc.allowed_origins = vec!["http://localhost:5173".to_owned()];
    let s = serve(listeners).await;
    let rpc = s.addrs.rpc.expect("rpc");
    let gateway = s.addrs.gateway.expect("gateway");

    // A foreign page posting a file, and asking for GC and unpinning: refused, nothing stored.
    let evil = chromium_cross_site_form();
    let (status, _, body) = send(
        rpc,
        "POST",
        "/api/v0/add",
        &refs(&evil),
        &multipart("from a web page"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("[listeners.content_rpc] allowed_origins"),
        "{body}"
    );
    for path in ["/api/v0/repo/gc", "/api/v0/pin/rm?arg=bafkqaaa"] {
        let (status, _, body) = send(rpc, "POST", path, &refs(&evil), b"").await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    assert_eq!(objects(rpc).await, 0, "a refused upload was stored");

    // DNS rebinding: the attacker's name resolving to 127.0.0.1.
    let rebinding = [
        ("host", "attacker.example:5001"),
        ("origin", "http://attacker.example:5001"),
        ("sec-fetch-site", "same-origin"),
    ];
    let (status, _, body) = send(rpc, "POST", "/api/v0/repo/stat", &rebinding, b"").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("allowed_hosts"), "{body}");

    // The listed page: preflight, then an upload it can read.
    let (status, head, _) = send(
        rpc,
        "OPTIONS",
        "/api/v0/add",
        &[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
            ("sec-fetch-mode", "cors"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 204, "{head}");
    assert!(
        head.contains("access-control-allow-origin: http://localhost:5173"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-methods: post"),
        "{head}"
    );
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, head, body) = send(
        rpc,
        "POST",
        "/api/v0/add",
        &[
            ("origin", "http://localhost:5173"),
            ("sec-fetch-site", "same-site"),
            ("content-type", &ct),
        ],
        &multipart("from the operator's own app"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("access-control-allow-origin: http://localhost:5173"),
        "{head}"
    );
    assert!(
        head.contains("access-control-expose-headers: x-stream-output"),
        "{head}"
    );
    assert!(objects(rpc).await >= 1);

    // Not a browser: unaffected.
    let (status, _, body) = send(
        rpc,
        "POST",
        "/api/v0/add",
        &[("content-type", &ct)],
        &multipart("from curl"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cid = body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["Hash"].as_str().map(str::to_owned))
        .expect("added CID");

    // The gateway serves public content to any page, but not under a rebinding name.
    let (status, _, body) = send(
        gateway,
        "GET",
        &format!("/ipfs/{cid}"),
        &[
            ("origin", "https://any.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        b"",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "from curl"));
    let (status, _, _) = send(
        gateway,
        "GET",
        &format!("/ipfs/{cid}"),
        &[("host", "attacker.example:8080")],
        b"",
    )
    .await;
    assert_eq!(status, 403);
}

/// Writes a request head that never ends; returns how long the server took to close.
async fn trickled_head(addr: SocketAddr, start: &'static str) -> Duration {
    let opened = Instant::now();
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut w) = s.into_split();
    w.write_all(start.as_bytes()).await.expect("write");
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

/// With `cap` connections open and served, one more waits until one of them closes.
async fn assert_cap(addr: SocketAddr, cap: usize, req: &str) {
    let mut open = Vec::new();
    let mut buf = [0u8; 64];
    for _ in 0..cap {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let n = tokio::time::timeout(GUARD, s.read(&mut buf))
            .await
            .expect("served")
            .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1"));
        open.push(s);
    }
    let mut waiting = TcpStream::connect(addr).await.expect("connect");
    waiting.write_all(req.as_bytes()).await.expect("write");
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.peek(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap of {cap}: {early:?}");
    open.pop();
    let n = tokio::time::timeout(GUARD, waiting.read(&mut buf))
        .await
        .expect("not served once a slot freed")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_listeners_cut_slowloris_clients_and_honour_their_caps() {
    let header = Duration::from_millis(500);
    let mut listeners = ListenersConfig::default();
    for l in [&mut listeners.content_gateway, &mut listeners.content_rpc] {
        l.header_timeout = header;
        l.max_connections = Some(2);
    }
    let s = serve(listeners).await;
    let rpc = s.addrs.rpc.expect("rpc");
    let gateway = s.addrs.gateway.expect("gateway");
    let cut = trickled_head(
        gateway,
        "GET /ipfs/bafkqaaa HTTP/1.1\r\nhost: localhost\r\n",
    )
    .await;
    assert!(cut >= header, "cut after {cut:?}");
    let cut = trickled_head(rpc, "POST /api/v0/add HTTP/1.1\r\nhost: localhost\r\n").await;
    assert!(cut >= header, "cut after {cut:?}");
    assert_cap(
        gateway,
        2,
        "GET /ipfs/bafkqaaa HTTP/1.1\r\nhost: localhost\r\n\r\n",
    )
    .await;
    assert_cap(
        rpc,
        2,
        "POST /api/v0/version HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
}
