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
    // Once verified and cached, the bytes come from memory: damage the block file to prove it
    // (the cache only checks that the block is still stored).
    std::fs::write(f.bs.block_path(&small), b"damaged byte").expect("damage");
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
    // A fresh router (empty cache) reads the block and refuses it.
    let fresh = gateway_router(&ContentConfig::default(), f.bs.clone());
    assert_eq!(
        send(&fresh, get(&uri)).await.0.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

/// Content removed by `pin rm` and a garbage collection is no longer served, also not from
/// the in-memory cache of small files, whoever ran the collection.
#[tokio::test]
async fn cached_files_are_gone_after_pin_rm_and_gc() {
    let f = fixture(ContentConfig::default());
    let t = tempfile::tempdir().expect("tmp");
    let p = write(t.path(), "small.txt", b"collect me");
    let small = ops::add_path(
        Some(&f.bs),
        &p,
        false,
        &ImportOptions::cid_v1(),
        &|_| {},
        &mut |_| {},
    )
    .expect("add")
    .cid;
    for uri in [
        format!("/ipfs/{small}"),
        format!("/ipfs/{small}?format=raw"),
    ] {
        let (p, body) = send(&f.app, get(&uri)).await;
        assert_eq!(
            (p.status, body.as_slice()),
            (StatusCode::OK, &b"collect me"[..])
        );
    }
    // A GC through another handle on the store (as `keel content gc` in another process).
    let other = Blockstore::open(f.bs.root().parent().expect("data dir")).expect("open");
    assert!(other.unpin(&small).expect("unpin"));
    let removed = keel_content::gc::gc(&other).expect("gc").removed;
    assert!(
        removed.iter().any(|c| c.hash() == small.hash()),
        "{removed:?}"
    );
    for uri in [
        format!("/ipfs/{small}"),
        format!("/ipfs/{small}?format=raw"),
    ] {
        let (p, body) = send(&f.app, get(&uri)).await;
        assert_eq!(
            p.status,
            StatusCode::NOT_FOUND,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// Identity CIDs carry their bytes in the URL: a link author could make them any HTML page.
/// They are never served as HTML (or by their name's extension) on the gateway's origin.
#[tokio::test]
async fn identity_cids_are_never_served_as_html() {
    use cid::multihash::Multihash;
    use keel_content::block::{DAG_PB, RAW};
    use keel_content::pb::{DataType, PbLink, UnixFsData, encode_node};

    let f = fixture(ContentConfig::default());
    let identity = |codec: u64, bytes: &[u8]| {
        cid::Cid::new_v1(codec, Multihash::<64>::wrap(0x00, bytes).expect("fits"))
    };
    // keel's CIDs hold digests of up to 64 bytes: enough for a page that loads any script.
    let page = b"<html><script src=//e.example/x></script>";
    let unixfs = |kind: DataType, data: Option<Vec<u8>>| {
        UnixFsData {
            kind,
            filesize: data.as_ref().map(|d| d.len() as u64),
            data,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
        }
        .encode()
    };
    let raw_page = identity(RAW, page);
    let pb_page = identity(
        DAG_PB,
        &encode_node(&[], Some(&unixfs(DataType::File, Some(page.to_vec())))),
    );
    // A stored plain-text file, and identity directories naming things `*.html`.
    let text = ops::add_path(
        Some(&f.bs),
        &write(f._t.path(), "plain.txt", b"just text"),
        false,
        &ImportOptions::cid_v1(),
        &|_| {},
        &mut |_| {},
    )
    .expect("add")
    .cid;
    let link = |name: &str, cid: cid::Cid| PbLink {
        cid,
        name: name.to_owned(),
        tsize: 10,
    };
    let dir_data = unixfs(DataType::Directory, None);
    let named = identity(
        DAG_PB,
        &encode_node(&[link("t.html", text)], Some(&dir_data)),
    );
    let tiny = identity(RAW, b"<b>hi</b>");
    let site = identity(
        DAG_PB,
        &encode_node(&[link("index.html", tiny)], Some(&dir_data)),
    );
    for (uri, expect) in [
        (format!("/ipfs/{raw_page}"), "application/octet-stream"),
        (format!("/ipfs/{pb_page}"), "application/octet-stream"),
        (format!("/ipfs/{site}/"), "application/octet-stream"),
        (
            format!("/ipfs/{site}/index.html"),
            "application/octet-stream",
        ),
        // Stored bytes under a name from the URL: typed by their content, not the name.
        (format!("/ipfs/{named}/t.html"), "text/plain; charset=utf-8"),
    ] {
        // Twice: the second answer may come from the cache.
        for _ in 0..2 {
            let (p, _) = send(&f.app, get(&uri)).await;
            assert_eq!(p.status, StatusCode::OK, "{uri}");
            assert_eq!(p.headers[header::CONTENT_TYPE], expect, "{uri}");
            assert_eq!(
                p.headers[header::X_CONTENT_TYPE_OPTIONS],
                "nosniff",
                "{uri}"
            );
        }
    }
    // Stored HTML is still HTML.
    let (p, _) = send(&f.app, get(&format!("/ipfs/{}/sub/", f.dir))).await;
    assert_eq!(p.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
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

/// A tree whose path `a/b/file.bin` crosses two HAMT-sharded directories (the root and `a`,
/// where `b` shares its first-level slot with a sibling, so a sub-shard is on the path) and a
/// flat one (`b`), with siblings at every level that a path CAR must leave out.
struct PathFixture {
    _t: tempfile::TempDir,
    bs: Blockstore,
    app: axum::Router,
    root: cid::Cid,
    file: Vec<u8>,
}

fn path_fixture() -> PathFixture {
    use keel_content::hamt::murmur3_x64_64;
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(&t.path().join("store")).expect("open");
    let src = t.path().join("tree");
    let file = data(700_000, 9); // CIDv0 defaults: three leaves under a root node
    write(&src, "a/b/file.bin", &file);
    write(&src, "a/b/other.txt", b"sibling in b");
    write(&src, "top.txt", b"sibling at the root");
    write(&src, "z/deep/x.txt", b"another subtree");
    for i in 0..40 {
        write(&src, &format!("a/f{i}.txt"), format!("file {i}").as_bytes());
    }
    let slot = murmur3_x64_64(b"b").to_be_bytes()[0];
    let twin = (0..)
        .map(|i| format!("c{i}"))
        .find(|n| murmur3_x64_64(n.as_bytes()).to_be_bytes()[0] == slot)
        .expect("a name in b's slot");
    write(&src, &format!("a/{twin}"), b"shares b's slot");
    let opts = ImportOptions {
        hamt_threshold: 100,
        ..ImportOptions::default()
    };
    let root = ops::add_path(Some(&bs), &src, true, &opts, &|_| {}, &mut |_| {})
        .expect("add")
        .cid;
    let app = gateway_router(&ContentConfig::default(), bs.clone());
    PathFixture {
        _t: t,
        bs,
        app,
        root,
        file,
    }
}

/// Parses a CAR with the crate's reader (which verifies every block against its CID).
fn parse_car(body: &[u8]) -> (Vec<cid::Cid>, Vec<(cid::Cid, Vec<u8>)>) {
    let mut r = car::CarReader::new(body).expect("CAR header");
    let roots = r.roots().to_vec();
    let mut blocks = Vec::new();
    while let Some((c, d)) = r.next_block().expect("block verifies") {
        assert!(keel_content::block::matches(&c, d), "{c}");
        blocks.push((c, d.to_vec()));
    }
    (roots, blocks)
}

fn unixfs_of(block: &[u8]) -> (keel_content::pb::PbNode, keel_content::pb::UnixFsData) {
    let pb = keel_content::pb::decode_node(block).expect("dag-pb");
    let fs = keel_content::pb::UnixFsData::decode(pb.data.as_deref().expect("data")).expect("fs");
    (pb, fs)
}

/// What a trustless client does with the CAR alone: walk `path` from `root`, looking names up
/// in flat directories by name and in HAMT shards by the murmur3 hash of the name, and return
/// the blocks it needed (in order) and the terminal CID.
fn client_walk(
    blocks: &std::collections::HashMap<cid::Cid, Vec<u8>>,
    root: cid::Cid,
    path: &[&str],
) -> (Vec<cid::Cid>, cid::Cid) {
    use keel_content::pb::DataType;
    let mut needed = Vec::new();
    let mut cur = root;
    for name in path {
        needed.push(cur);
        let (pb, fs) = unixfs_of(blocks.get(&cur).expect("path block in the CAR"));
        cur = match fs.kind {
            DataType::Directory => {
                pb.links
                    .iter()
                    .find(|l| l.name == *name)
                    .expect("entry")
                    .cid
            }
            DataType::HamtShard => {
                let hash = keel_content::hamt::murmur3_x64_64(name.as_bytes()).to_be_bytes();
                let mut links = pb.links;
                let mut level = 0;
                loop {
                    let slot = format!("{:02X}", hash[level]);
                    let l = links
                        .iter()
                        .find(|l| l.name.starts_with(&slot))
                        .expect("slot")
                        .clone();
                    if l.name == slot {
                        needed.push(l.cid);
                        links = unixfs_of(blocks.get(&l.cid).expect("sub-shard in the CAR"))
                            .0
                            .links;
                        level += 1;
                    } else {
                        assert_eq!(&l.name[2..], *name);
                        break l.cid;
                    }
                }
            }
            k => panic!("{k:?} on the path"),
        };
    }
    (needed, cur)
}

/// File bytes from the CAR's blocks alone.
fn reassemble(blocks: &std::collections::HashMap<cid::Cid, Vec<u8>>, c: &cid::Cid) -> Vec<u8> {
    let b = blocks.get(c).expect("file block in the CAR");
    if c.codec() == keel_content::block::RAW {
        return b.clone();
    }
    let (pb, fs) = unixfs_of(b);
    let mut out = fs.data.unwrap_or_default();
    for l in &pb.links {
        out.extend(reassemble(blocks, &l.cid));
    }
    out
}

#[tokio::test]
async fn car_of_a_path_holds_the_proof_then_the_terminal_dag() {
    let f = path_fixture();
    let uri = format!("/ipfs/{}/a/b/file.bin?format=car", f.root);
    let (p, body) = send(&f.app, get(&uri)).await;
    assert_eq!(
        p.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        p.headers[header::CONTENT_TYPE],
        "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    );
    assert_eq!(
        p.headers[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"{}.car\"", f.root).as_str()
    );
    // (a) the header root is the requested root CID, not the file's.
    let (roots, blocks) = parse_car(&body);
    assert_eq!(roots, vec![f.root]);
    let map: std::collections::HashMap<_, _> = blocks.iter().cloned().collect();
    assert_eq!(map.len(), blocks.len(), "each block once");
    // (b) every block on the path is present (and verified by the reader), in path order,
    // and the path crosses a HAMT sub-shard.
    let (needed, terminal) = client_walk(&map, f.root, &["a", "b", "file.bin"]);
    assert!(
        needed.len() >= 4,
        "root shard, a's shard and sub-shard, b: {needed:?}"
    );
    let shards = needed
        .iter()
        .filter(|c| unixfs_of(&map[*c]).1.kind == keel_content::pb::DataType::HamtShard)
        .count();
    assert_eq!(shards, needed.len() - 1, "all but b are shards: {needed:?}");
    let order: Vec<cid::Cid> = blocks.iter().map(|(c, _)| *c).collect();
    assert_eq!(&order[..needed.len()], &needed[..]);
    // Then exactly the terminal file's DAG: nothing from the siblings.
    let mut file_dag = Vec::new();
    keel_content::unixfs::walk_blocks(&f.bs, &terminal, &mut |c, _| {
        file_dag.push(*c);
        Ok(())
    })
    .expect("walk");
    assert_eq!(file_dag.len(), 4, "root node and three leaves");
    assert_eq!(&order[needed.len()..], &file_dag[..]);
    let whole = keel_content::unixfs::walk_blocks(&f.bs, &f.root, &mut |_, _| Ok(())).expect("all");
    assert!(
        blocks.len() < whole as usize / 4,
        "{} of {whole}",
        blocks.len()
    );
    // (c) the file reassembles from the CAR alone.
    assert_eq!(reassemble(&map, &terminal), f.file);
    // (d) a verifying import into a fresh store serves `cat ROOT/a/b/file.bin`.
    let t = tempfile::tempdir().expect("tmp");
    let fresh = Blockstore::open(t.path()).expect("open");
    let imp = car::import(&fresh, &body[..]).expect("import verifies");
    assert_eq!((imp.roots, imp.blocks), (vec![f.root], blocks.len() as u64));
    let mut out = Vec::new();
    ops::cat(&fresh, &format!("{}/a/b/file.bin", f.root), &mut out).expect("cat");
    assert_eq!(out, f.file);
    let sibling = ops::cat(
        &fresh,
        &format!("{}/a/b/other.txt", f.root),
        &mut Vec::new(),
    );
    assert!(sibling.expect_err("not in the CAR").is_not_found());
    // `keel content import` (ops::import_car): blocks stored, the partial root not pinned,
    // and the error says why.
    let car_file = t.path().join("path.car");
    std::fs::write(&car_file, &body).expect("write");
    let t2 = tempfile::tempdir().expect("tmp");
    let fresh2 = Blockstore::open(t2.path()).expect("open");
    let msg = ops::import_car(&fresh2, &car_file)
        .expect_err("partial root cannot be pinned")
        .to_string();
    assert!(
        msg.contains("not pinned") && msg.contains(&f.root.to_string()),
        "{msg}"
    );
    let mut out = Vec::new();
    ops::cat(&fresh2, &format!("{}/a/b/file.bin", f.root), &mut out).expect("cat");
    assert_eq!(out, f.file);

    // The npm reference reader `@ipld/car` parses it, sees the same root and blocks, and every
    // block's SHA-256 matches its CID.
    let js = crate::support::car_check(&car_file);
    assert_eq!(js["roots"], serde_json::json!([f.root.to_string()]));
    let js_blocks: Vec<String> = serde_json::from_value(js["blocks"].clone()).expect("blocks");
    let ours: Vec<String> = blocks.iter().map(|(c, _)| c.to_string()).collect();
    assert_eq!(js_blocks, ours);

    // The Accept header gives the same CAR.
    let req = Request::get(format!("/ipfs/{}/a/b/file.bin", f.root))
        .header(header::ACCEPT, "application/vnd.ipld.car; version=1")
        .body(Body::empty())
        .expect("req");
    let (p, body2) = send(&f.app, req).await;
    assert_eq!((p.status, &body2), (StatusCode::OK, &body));
}

#[tokio::test]
async fn car_dag_scopes_and_unsupported_parameters() {
    let f = path_fixture();
    let car_at = |rest: &str| format!("/ipfs/{}/{rest}", f.root);
    // dag-scope=block: the proof, then only the file's root block.
    let (p, body) = send(
        &f.app,
        get(&car_at("a/b/file.bin?format=car&dag-scope=block")),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK);
    let (roots, blocks) = parse_car(&body);
    assert_eq!(roots, vec![f.root]);
    let map: std::collections::HashMap<_, _> = blocks.iter().cloned().collect();
    let (needed, terminal) = client_walk(&map, f.root, &["a", "b", "file.bin"]);
    let order: Vec<cid::Cid> = blocks.iter().map(|(c, _)| *c).collect();
    assert_eq!(order, [needed.clone(), vec![terminal]].concat());
    let etag_block = p.headers[header::ETAG].clone();

    // dag-scope=entity on a flat directory: its block, not its entries.
    let (_, body) = send(&f.app, get(&car_at("a/b?format=car&dag-scope=entity"))).await;
    let (_, blocks) = parse_car(&body);
    let map: std::collections::HashMap<_, _> = blocks.iter().cloned().collect();
    let (needed, b) = client_walk(&map, f.root, &["a", "b"]);
    let order: Vec<cid::Cid> = blocks.iter().map(|(c, _)| *c).collect();
    assert_eq!(order, [needed, vec![b]].concat());
    // ... and on a file: the whole file.
    let (_, body) = send(
        &f.app,
        get(&car_at("a/b/file.bin?format=car&dag-scope=entity")),
    )
    .await;
    let (_, blocks) = parse_car(&body);
    let map: std::collections::HashMap<_, _> = blocks.iter().cloned().collect();
    let (_, file) = client_walk(&map, f.root, &["a", "b", "file.bin"]);
    assert_eq!(reassemble(&map, &file), f.file);
    // ... and on a HAMT-sharded directory: all its shard blocks (enough to list its 40 files,
    // `b` and b's slot twin), no entries.
    let (_, body) = send(&f.app, get(&car_at("a?format=car&dag-scope=entity"))).await;
    let (_, blocks) = parse_car(&body);
    let map: std::collections::HashMap<_, _> = blocks.iter().cloned().collect();
    let (_, a) = client_walk(&map, f.root, &["a"]);
    let t = tempfile::tempdir().expect("tmp");
    let fresh = Blockstore::open(t.path()).expect("open");
    car::import(&fresh, &body[..]).expect("import");
    let node = keel_content::unixfs::load(&fresh, &a).expect("a");
    assert_eq!(
        keel_content::unixfs::entries(&fresh, &node)
            .expect("list")
            .len(),
        42
    );
    assert!(ops::cat(&fresh, &format!("{}/a/f1.txt", f.root), &mut Vec::new()).is_err());

    // dag-scope=all (default) on a directory: everything under it.
    let (p, body) = send(&f.app, get(&car_at("a/b?format=car"))).await;
    let etag_all = p.headers[header::ETAG].clone();
    let t = tempfile::tempdir().expect("tmp");
    let fresh = Blockstore::open(t.path()).expect("open");
    car::import(&fresh, &body[..]).expect("import");
    let mut out = Vec::new();
    ops::cat(&fresh, &format!("{}/a/b/other.txt", f.root), &mut out).expect("cat");
    assert_eq!(out, b"sibling in b");
    // Different scopes and paths are different representations.
    assert_ne!(etag_block, etag_all);
    let (p, _) = send(&f.app, get(&car_at("a/b/file.bin?format=car"))).await;
    assert_ne!(p.headers[header::ETAG], etag_all);
    // HEAD: headers only.
    let (p, body) = send(
        &f.app,
        Request::head(car_at("a/b?format=car"))
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!((p.status, body.len()), (StatusCode::OK, 0));
    // A missing path is a 404 before any CAR byte.
    let (p, _) = send(&f.app, get(&car_at("a/nope?format=car"))).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);

    // Unsupported parameters: 400 naming them.
    for (q, accept, named) in [
        ("format=car&dag-scope=bogus", None, "dag-scope"),
        ("format=car&entity-bytes=0:10", None, "entity-bytes"),
        ("format=car&car-dups=y", None, "dups=y"),
        ("format=car&car-version=2", None, "version=2"),
        ("format=car&car-order=foo", None, "order=foo"),
        ("", Some("application/vnd.ipld.car; version=2"), "version=2"),
        ("", Some("application/vnd.ipld.car; dups=y"), "dups=y"),
    ] {
        let mut req = Request::get(car_at(&format!("a/b?{q}")));
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let (p, body) = send(&f.app, req.body(Body::empty()).expect("req")).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{q} {accept:?}: {text}");
        assert!(text.contains(named), "{q}: {text}");
    }
    // Supported ones are accepted.
    let (p, _) = send(
        &f.app,
        get(&car_at(
            "a/b?format=car&car-version=1&car-order=dfs&car-dups=n&dag-scope=all",
        )),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK);
}

#[tokio::test]
async fn car_probe_identity_cid() {
    // The trustless gateway probe: bafkqaaa (identity, empty) gives a CAR naming it, no blocks.
    let f = path_fixture();
    let (p, body) = send(&f.app, get("/ipfs/bafkqaaa?format=car")).await;
    assert_eq!(p.status, StatusCode::OK);
    let (roots, blocks) = parse_car(&body);
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].to_string(), "bafkqaaa");
    assert!(blocks.is_empty());
}
