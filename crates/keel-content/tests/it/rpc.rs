//! Kubo RPC subset: the real npm `kubo-rpc-client` against a bound ContentService, plus
//! socket-less checks of auth, error shape and malformed multipart bodies.

use std::process::Command;

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use keel_config::content::{ContentConfig, SecretSource};
use keel_content::{Blockstore, ContentService, rpc_router};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::support::{js_dir, npm_installed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_rpc_client_adds_cats_pins() {
    npm_installed();
    let t = tempfile::tempdir().expect("tmp");
    let token_file = t.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("token");
    let cfg = ContentConfig {
        gateway_listen: None,
        rpc_listen: Some("127.0.0.1:0".parse().expect("addr")),
        rpc_token: Some(SecretSource {
            file: Some(token_file),
            env: None,
        }),
        ..ContentConfig::default()
    };
    let svc = ContentService::bind(&cfg, t.path()).await.expect("bind");
    let addr = svc.local_addrs().rpc.expect("rpc addr");
    assert!(svc.local_addrs().gateway.is_none());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(svc.run(shutdown.clone()));

    let url = format!("http://{addr}/api/v0");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(js_dir().join("rpc-client.mjs"))
            .arg(url)
            .arg("s3cret-token")
            .output()
            .expect("run node")
    })
    .await
    .expect("join");
    shutdown.cancel();
    server.await.expect("join").expect("serve");
    assert!(
        out.status.success(),
        "rpc-client.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["add"], v["addRef"], "{v}");
    assert_eq!(v["addV1"], v["addV1Ref"], "{v}");
    assert!(v["add"].as_str().expect("cid").starts_with("Qm"));
    assert_eq!(v["catEqual"], true);
    assert_eq!(v["catRange"], true);
    assert_eq!(v["dir"], v["dirRef"], "{v}");
    assert_eq!(
        v["dirEntries"],
        serde_json::json!(["dir/a.txt", "dir/sub/b.txt", "dir/empty", "dir/sub", "dir"])
    );
    assert_eq!(
        v["ls"],
        serde_json::json!(["a.txt:file:12", "empty:dir:0", "sub:dir:0"])
    );
    assert_eq!(v["pinnedAfterRm"], false);
    assert_eq!(v["pinnedAfterAdd"], true);
    assert!(
        v["pinMissing"].as_str().expect("msg").contains("not found"),
        "{v}"
    );
    assert_eq!(v["blockGet"], "block data");
    assert_eq!(v["blockStat"], 10);
    assert_eq!(v["getTar"], true, "{v}");
    assert_eq!(v["dagImport"], serde_json::json!([v["dir"]]));
    assert!(v["repoObjects"].as_u64().expect("n") > 5);
    assert!(v["id"].as_str().expect("id").starts_with("12D3KooW"));
    assert!(
        v["badCat"].as_str().expect("msg").contains("not a CID"),
        "{v}"
    );
    // The unpinned CIDv1 file (a root and 4 raw leaves: 1,000,000 bytes in 256 KiB chunks) and
    // the unpinned block: 6 blocks, the block's CID among them; everything pinned still served.
    let gc: Vec<&str> = v["gc"]
        .as_array()
        .expect("gc")
        .iter()
        .map(|c| c.as_str().expect("cid"))
        .collect();
    assert_eq!(gc.len(), 6, "{v}");
    assert!(gc.contains(&v["blockPut"].as_str().expect("cid")), "{v}");
    assert!(gc.iter().all(|c| c.starts_with("bafk")), "{v}");
    assert_eq!(v["gcErrors"], serde_json::json!([]));
    assert!(
        v["catAfterGc"].as_str().expect("msg").contains("not found"),
        "{v}"
    );
    assert_eq!(v["catPinnedAfterGc"], true);
    assert_eq!(v["lsAfterGc"], 3);
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn bearer_token_and_kubo_error_shape() {
    let t = tempfile::tempdir().expect("tmp");
    // SAFETY-free: the variable name is unique to this test.
    let var = "KEEL_CONTENT_TEST_RPC_TOKEN_UNIQUE";
    let cfg = ContentConfig {
        rpc_token: Some(SecretSource {
            file: None,
            env: Some(var.to_owned()),
        }),
        ..ContentConfig::default()
    };
    assert!(
        rpc_router(&cfg, Blockstore::open(t.path()).expect("open")).is_err(),
        "unset env var must fail"
    );
    let token_file = t.path().join("tok");
    std::fs::write(&token_file, "abc").expect("write");
    let cfg = ContentConfig {
        rpc_token: Some(SecretSource {
            file: Some(token_file),
            env: None,
        }),
        ..ContentConfig::default()
    };
    let app = rpc_router(&cfg, Blockstore::open(t.path()).expect("open")).expect("router");
    let (s, v) = call(
        &app,
        Request::post("/api/v0/version")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["Type"], "error");
    let (s, _) = call(
        &app,
        Request::post("/api/v0/version")
            .header(header::AUTHORIZATION, "Bearer abd")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let auth = |r: http::request::Builder| r.header(header::AUTHORIZATION, "Bearer abc");
    let (s, v) = call(
        &app,
        auth(Request::post("/api/v0/version"))
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["Version"].is_string());
    let (s, v) = call(
        &app,
        auth(Request::post("/api/v0/cat"))
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["Message"], "argument \"arg\" is required");
    assert_eq!(v["Code"], 1);
    let missing = keel_content::block::cid_for(cid::Version::V1, keel_content::block::RAW, b"nope");
    let (s, v) = call(
        &app,
        auth(Request::post(format!("/api/v0/block/get?arg={missing}")))
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        v["Message"]
            .as_str()
            .expect("msg")
            .contains(&missing.to_string())
    );
    let (s, _) = call(
        &app,
        auth(Request::get("/api/v0/version"))
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn malformed_multipart_and_traversal_names_are_rejected() {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(t.path()).expect("open");
    let app = rpc_router(&ContentConfig::default(), bs.clone()).expect("router");
    let mp = |body: &'static str| {
        Request::post("/api/v0/add")
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XX")
            .body(Body::from(body))
            .expect("req")
    };
    // Truncated: no closing boundary, part cut short.
    let resp = app
        .clone()
        .oneshot(mp(
            "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nhel",
        ))
        .await
        .expect("resp");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("\"Type\":\"error\"") && text.contains("multipart"),
        "{text}"
    );
    // Path traversal in a part name.
    let resp = app
        .clone()
        .oneshot(mp("--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"..%2F..%2Fetc%2Fpasswd\"\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n--XX--\r\n"))
        .await
        .expect("resp");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("unsafe path"), "{text}");
    // Not multipart at all.
    let (s, _) = call(
        &app,
        Request::post("/api/v0/add")
            .body(Body::from("plain"))
            .expect("req"),
    )
    .await;
    assert!(s.is_client_error());
    assert_eq!(bs.pins().expect("pins").len(), 0);
}
