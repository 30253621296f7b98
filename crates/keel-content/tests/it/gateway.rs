//! The trustless gateway, driven without sockets (tower `oneshot`).

use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use keel_config::content::{ContentConfig, RateLimitConfig};
use keel_content::importer::import_reader;
use keel_content::{Blockstore, ImportOptions, car, gateway_router, ops};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::support::{data, write};

struct Fixture {
    _t: tempfile::TempDir,
    bs: Blockstore,
    app: axum::Router,
    file: cid::Cid,
    dir: cid::Cid,
    bytes: Vec<u8>,
}

fn fixture(cfg: ContentConfig) -> Fixture {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(&t.path().join("store")).expect("open");
    let bytes = data(700_000, 3);
    let file = import_reader(&bytes[..], &ImportOptions::cid_v1(), &bs, &|_| {})
        .expect("add")
        .cid;
    let src = t.path().join("site");
    write(&src, "a.txt", b"plain text\n");
    write(&src, "pic.png", b"\x89PNG\r\n\x1a\nnot really");
    write(&src, "sub/index.html", b"<html>hi</html>");
    write(&src, "we<ird> name", b"x");
    let dir = ops::add_path(
        Some(&bs),
        &src,
        true,
        &ImportOptions::default(),
        &|_| {},
        &mut |_| {},
    )
    .expect("add dir")
    .cid;
    let app = gateway_router(&cfg, bs.clone());
    Fixture {
        _t: t,
        bs,
        app,
        file,
        dir,
        bytes,
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> (http::response::Parts, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    (parts, bytes)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn file_headers_ranges_and_head() {
    let f = fixture(ContentConfig::default());
    let uri = format!("/ipfs/{}", f.file);
    let (p, body) = send(&f.app, get(&uri)).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(body, f.bytes);
    assert_eq!(p.headers[header::ETAG], format!("\"{}\"", f.file).as_str());
    assert!(
        p.headers[header::CACHE_CONTROL]
            .to_str()
            .expect("cc")
            .contains("immutable")
    );
    assert_eq!(p.headers[header::CONTENT_LENGTH], "700000");

    let (p, body) = send(
        &f.app,
        Request::get(&uri)
            .header(header::RANGE, "bytes=262140-262150")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(p.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &f.bytes[262_140..=262_150]);
    assert_eq!(
        p.headers[header::CONTENT_RANGE],
        "bytes 262140-262150/700000"
    );

    let (p, body) = send(
        &f.app,
        Request::get(&uri)
            .header(header::RANGE, "bytes=-5")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(
        (p.status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &f.bytes[699_995..])
    );

    let (p, _) = send(
        &f.app,
        Request::get(&uri)
            .header(header::RANGE, "bytes=800000-")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(p.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(p.headers[header::CONTENT_RANGE], "bytes */700000");

    let (p, body) = send(
        &f.app,
        Request::head(&uri).body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(p.headers[header::CONTENT_LENGTH], "700000");

    let etag = format!("\"{}\"", f.file);
    let (p, _) = send(
        &f.app,
        Request::get(&uri)
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(p.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn directories_content_types_and_listing() {
    let f = fixture(ContentConfig::default());
    let base = format!("/ipfs/{}", f.dir);
    let (p, _) = send(&f.app, get(&base)).await;
    assert_eq!(p.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(p.headers[header::LOCATION], format!("{base}/").as_str());
    let (p, body) = send(&f.app, get(&format!("{base}/"))).await;
    assert_eq!(p.status, StatusCode::OK);
    let html = String::from_utf8(body).expect("utf8");
    assert!(
        html.contains("a.txt") && html.contains("we&lt;ird&gt; name"),
        "{html}"
    );
    assert!(!html.contains("we<ird>"));
    let (p, body) = send(&f.app, get(&format!("{base}/a.txt"))).await;
    assert_eq!(body, b"plain text\n");
    assert_eq!(p.headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    let (p, _) = send(&f.app, get(&format!("{base}/pic.png"))).await;
    assert_eq!(p.headers[header::CONTENT_TYPE], "image/png");
    let (p, body) = send(&f.app, get(&format!("{base}/sub/"))).await;
    assert_eq!(
        (p.status, body.as_slice()),
        (StatusCode::OK, &b"<html>hi</html>"[..])
    );
    assert!(
        p.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );
    let (p, _) = send(&f.app, get(&format!("{base}/we%3Cird%3E%20name"))).await;
    assert_eq!(p.status, StatusCode::OK);
    let (p, _) = send(&f.app, get(&format!("{base}/missing"))).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn trustless_raw_and_car() {
    let f = fixture(ContentConfig::default());
    // ?format=raw: the block itself; its hash is the CID's digest.
    let (p, body) = send(&f.app, get(&format!("/ipfs/{}?format=raw", f.file))).await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.headers[header::CONTENT_TYPE], "application/vnd.ipld.raw");
    assert_eq!(Sha256::digest(&body).as_slice(), f.file.hash().digest());
    // Accept: application/vnd.ipld.car → a CAR that imports into a fresh store.
    let req = Request::get(format!("/ipfs/{}", f.dir))
        .header(header::ACCEPT, "application/vnd.ipld.car")
        .body(Body::empty())
        .expect("req");
    let (p, body) = send(&f.app, req).await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(
        p.headers[header::CONTENT_TYPE]
            .to_str()
            .expect("ct")
            .starts_with("application/vnd.ipld.car")
    );
    let t = tempfile::tempdir().expect("tmp");
    let fresh = Blockstore::open(t.path()).expect("open");
    let imp = car::import(&fresh, &body[..]).expect("CAR verifies");
    assert_eq!(imp.roots, vec![f.dir]);
    let mut out = Vec::new();
    ops::cat(&fresh, &format!("{}/a.txt", f.dir), &mut out).expect("cat");
    assert_eq!(out, b"plain text\n");
    let (p, _) = send(&f.app, get(&format!("/ipfs/{}?format=dag-json", f.file))).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_cid_is_404_fast_and_bad_cid_is_400() {
    let f = fixture(ContentConfig::default());
    let missing =
        keel_content::block::cid_for(cid::Version::V1, keel_content::block::RAW, b"never added");
    let start = Instant::now();
    let (p, _) = send(&f.app, get(&format!("/ipfs/{missing}"))).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(start.elapsed() < Duration::from_secs(1));
    let (p, _) = send(&f.app, get("/ipfs/not-a-cid")).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    let cbor = cid::Cid::new_v1(0x71, keel_content::block::sha256_multihash(b"x"));
    let (p, _) = send(&f.app, get(&format!("/ipfs/{cbor}"))).await;
    assert_eq!(p.status, StatusCode::NOT_IMPLEMENTED);
    let (p, _) = send(
        &f.app,
        get(&format!("/ipfs/{}/{}", f.dir, "a/".repeat(300))),
    )
    .await;
    assert_eq!(p.status, StatusCode::URI_TOO_LONG);
}

#[tokio::test]
async fn corrupt_block_is_never_served() {
    let f = fixture(ContentConfig::default());
    let p = f.bs.block_path(&f.file);
    let mut b = std::fs::read(&p).expect("read");
    b[3] ^= 1;
    std::fs::write(&p, &b).expect("write");
    for uri in [
        format!("/ipfs/{}", f.file),
        format!("/ipfs/{}?format=raw", f.file),
        format!("/ipfs/{}?format=car", f.file),
    ] {
        let (parts, body) = send(&f.app, get(&uri)).await;
        assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains(&f.file.to_string()) && text.contains("verification"),
            "{text}"
        );
    }
    // A corrupt leaf deep inside a file aborts the body: the bytes after it are never sent.
    let node = ops::resolve(&f.bs, &f.file.to_string());
    assert!(node.is_err());
}

#[tokio::test]
async fn corrupt_leaf_aborts_body() {
    let f = fixture(ContentConfig::default());
    let node = ops::resolve(&f.bs, &f.file.to_string()).expect("root");
    let leaf = node.links[2].cid;
    let p = f.bs.block_path(&leaf);
    let mut b = std::fs::read(&p).expect("read");
    b[0] ^= 1;
    std::fs::write(&p, &b).expect("write");
    let resp = f
        .app
        .clone()
        .oneshot(get(&format!("/ipfs/{}", f.file)))
        .await
        .expect("resp");
    assert_eq!(resp.status(), StatusCode::OK); // headers go out before the third leaf is read
    let collected = resp.into_body().collect().await;
    assert!(
        collected.is_err(),
        "the body must abort instead of serving corrupt bytes"
    );
}

#[tokio::test]
async fn per_ip_rate_limit() {
    let cfg = ContentConfig {
        rate_limit: Some(RateLimitConfig {
            requests_per_second: 1,
            burst: 3,
            max_tracked_clients: 100,
        }),
        ..ContentConfig::default()
    };
    let f = fixture(cfg);
    let uri = format!("/ipfs/{}?format=raw", f.file);
    let with_ip = |ip: [u8; 4]| {
        let mut r = get(&uri);
        r.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 1234,
            ))));
        r
    };
    for _ in 0..3 {
        assert_eq!(
            send(&f.app, with_ip([10, 0, 0, 1])).await.0.status,
            StatusCode::OK
        );
    }
    let (p, _) = send(&f.app, with_ip([10, 0, 0, 1])).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        send(&f.app, with_ip([10, 0, 0, 2])).await.0.status,
        StatusCode::OK
    );
    assert_eq!(f.bs.metrics().rate_limited.get(), 1);
}

#[tokio::test]
async fn small_files_are_served_from_the_verified_cache() {
    let f = fixture(ContentConfig::default());
    let small = keel_content::importer::import_reader(
        &b"cached bytes"[..],
        &ImportOptions::cid_v1(),
        &f.bs,
        &|_| {},
    )
    .expect("add")
    .cid;
    let uri = format!("/ipfs/{small}");
    let (p, body) = send(&f.app, get(&uri)).await;
    assert_eq!(
        (p.status, body.as_slice()),
        (StatusCode::OK, &b"cached bytes"[..])
    );
    // Once verified and cached, the bytes come from memory: remove the block file to prove it.
    std::fs::remove_file(f.bs.block_path(&small)).expect("rm");
    let req = Request::get(&uri)
        .header(header::RANGE, "bytes=7-")
        .body(Body::empty())
        .expect("req");
    let (p, body) = send(&f.app, req).await;
    assert_eq!(
        (p.status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"bytes"[..])
    );
    assert_eq!(p.headers[header::ETAG], format!("\"{small}\"").as_str());
    let (p, body) = send(&f.app, get(&format!("{uri}?format=raw"))).await;
    assert_eq!(
        (p.status, body.as_slice()),
        (StatusCode::OK, &b"cached bytes"[..])
    );
    // A fresh router (empty cache) sees that the block is gone.
    let fresh = gateway_router(&ContentConfig::default(), f.bs.clone());
    assert_eq!(
        send(&fresh, get(&uri)).await.0.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn resolution_past_the_deadline_is_504_not_a_hang() {
    // A zero deadline expires before the blocking store job can answer.
    let cfg = ContentConfig {
        missing_block_timeout: Duration::ZERO,
        ..ContentConfig::default()
    };
    let f = fixture(cfg);
    let start = Instant::now();
    let (p, _) = send(&f.app, get(&format!("/ipfs/{}", f.file))).await;
    assert_eq!(p.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn metrics_count_requests_and_bytes_by_status() {
    let f = fixture(ContentConfig::default());
    let (p, _) = send(&f.app, get(&format!("/ipfs/{}?format=raw", f.file))).await;
    assert_eq!(p.status, StatusCode::OK);
    send(&f.app, get("/ipfs/not-a-cid")).await;
    let mut reg = prometheus_client::registry::Registry::default();
    f.bs.metrics().register(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
    assert!(
        text.contains("keel_content_http_requests_total{listener=\"gateway\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("keel_content_http_requests_total{listener=\"gateway\",status=\"400\"} 1"),
        "{text}"
    );
    let raw_len = f.bs.get(&f.file).expect("block").len();
    assert!(
        text.contains(&format!(
            "keel_content_http_bytes_total{{listener=\"gateway\",status=\"200\"}} {raw_len}"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "keel_content_http_latency_seconds_count{listener=\"gateway\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("keel_content_blocks_written_total"));
}

/// Captures the access log through a tracing subscriber.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn access_log_redacts_client_ip_and_query() {
    let logs = Captured::default();
    let sub = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(sub);
    let f = fixture(ContentConfig::default());
    let mut req = get(&format!("/ipfs/{}?format=raw&secret=hunter2", f.file));
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [198, 51, 100, 77],
            4000,
        ))));
    assert_eq!(send(&f.app, req).await.0.status, StatusCode::OK);
    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf8");
    assert!(text.contains("keel_content::access"), "{text}");
    assert!(text.contains("198.51.100.0/24"), "{text}");
    assert!(
        !text.contains("198.51.100.77") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(text.contains("status=200"), "{text}");
}

#[tokio::test]
async fn hamt_sharded_directory_is_listed_and_traversed() {
    let f = fixture(ContentConfig::default());
    let t = tempfile::tempdir().expect("tmp");
    let src = t.path().join("sharded");
    for i in 0..50 {
        write(&src, &format!("f{i}.txt"), format!("file {i}").as_bytes());
    }
    let o = ImportOptions {
        hamt_threshold: 100,
        ..ImportOptions::default()
    };
    let dir = ops::add_path(Some(&f.bs), &src, true, &o, &|_| {}, &mut |_| {})
        .expect("add")
        .cid;
    assert_eq!(
        ops::resolve(&f.bs, &dir.to_string()).expect("root").kind,
        keel_content::unixfs::EntryKind::HamtShard
    );
    let (p, body) = send(&f.app, get(&format!("/ipfs/{dir}/"))).await;
    assert_eq!(p.status, StatusCode::OK);
    let html = String::from_utf8(body).expect("utf8");
    assert!(
        (0..50).all(|i| html.contains(&format!(">f{i}.txt<"))),
        "{html}"
    );
    let (p, body) = send(&f.app, get(&format!("/ipfs/{dir}/f42.txt"))).await;
    assert_eq!(
        (p.status, body.as_slice()),
        (StatusCode::OK, &b"file 42"[..])
    );
}
