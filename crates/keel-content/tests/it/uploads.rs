//! Kubo RPC uploads against a bound ContentService, driven by a raw TCP client so the test
//! controls exactly when each byte of the body is sent: a block too large is refused before
//! its part is read, every upload takes an upload slot, a trickled upload is abandoned (and
//! its hold on garbage collection released), and a slow but steady upload is not cut by
//! `request_timeout`.

use std::net::SocketAddr;
use std::time::Duration;

use keel_config::content::ContentConfig;
use keel_content::{Blockstore, ContentService, ImportOptions, gc::gc, ops};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::support::{data, write};

/// A bound RPC listener on a fresh store, stopped on drop.
struct Rpc {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Rpc {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn rpc(cfg: ContentConfig) -> Rpc {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = ContentConfig {
        gateway_listen: None,
        rpc_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..cfg
    };
    let svc = ContentService::bind(&cfg, dir.path()).await.expect("bind");
    let addr = svc.local_addrs().rpc.expect("rpc");
    let shutdown = CancellationToken::new();
    tokio::spawn(svc.run(shutdown.clone()));
    Rpc {
        addr,
        dir,
        shutdown,
    }
}

const PART_HEAD: &str = "--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"f\"\r\ncontent-type: application/octet-stream\r\n\r\n";
const END: &str = "\r\n--B--\r\n";

/// Opens a connection and sends the request head for a multipart body of `len` bytes.
async fn start(addr: SocketAddr, path: &str, len: usize) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: multipart/form-data; boundary=B\r\nconnection: close\r\ncontent-length: {len}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.expect("write head");
    c
}

/// Reads the answer until `done` says it is complete or the server closes; the guard only
/// turns a hang into a failure.
async fn answer(c: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if done(&String::from_utf8_lossy(&got)) {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(read.is_ok(), "no answer within 60s; got so far: {text}");
    text
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_put_refuses_a_part_over_2_mib_before_reading_the_rest() {
    let rpc = rpc(ContentConfig::default()).await;
    // A part announced as 64 MiB; the client sends 2 MiB + 1 byte of it and then waits.
    let len = PART_HEAD.len() + (64 << 20) + END.len();
    let mut c = start(rpc.addr, "/api/v0/block/put", len).await;
    c.write_all(PART_HEAD.as_bytes()).await.expect("write");
    c.write_all(&data((2 << 20) + 1, 1)).await.expect("write");
    let a = answer(&mut c, |a| a.contains("\"Type\":\"error\"")).await;
    assert_eq!(status(&a), 413, "{a}");
    assert!(a.contains("block in part 1 exceeds 2097152 bytes"), "{a}");
    let bs = Blockstore::open(rpc.dir.path()).expect("open");
    assert_eq!(bs.stat().expect("stat").blocks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upload_kind_takes_an_upload_slot() {
    let rpc = rpc(ContentConfig {
        max_concurrent_uploads: 1,
        ..ContentConfig::default()
    })
    .await;
    // An add in progress takes the one slot.
    let mut holder = start(rpc.addr, "/api/v0/add", PART_HEAD.len() + 1000 + END.len()).await;
    holder.write_all(PART_HEAD.as_bytes()).await.expect("write");
    holder.write_all(&[1u8; 10]).await.expect("write");
    // Wait until the add holds its write session (then it surely holds its slot).
    let lock = rpc.dir.path().join("content/gc.lock");
    let held = eventually(|| {
        std::fs::File::open(&lock)
            .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
    })
    .await;
    assert!(held, "the add never started");
    for path in ["/api/v0/block/put", "/api/v0/dag/import", "/api/v0/add"] {
        let body = format!("{PART_HEAD}abc{END}");
        let mut c = start(rpc.addr, path, body.len()).await;
        c.write_all(body.as_bytes()).await.expect("write");
        let a = answer(&mut c, |a| a.contains("\"Type\":\"error\"")).await;
        assert_eq!(status(&a), 503, "{path}: {a}");
        assert!(a.contains("max_concurrent_uploads"), "{path}: {a}");
    }
}

/// Polls `check` every 20 ms for up to 30 s (a failure guard, not a synchronisation).
async fn eventually(check: impl Fn() -> bool) -> bool {
    for _ in 0..1500 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A client that sends one byte every 100 ms (each gap far below `upload_idle_timeout`, which
/// alone never fired) is abandoned once it falls behind the minimum rate, with a 408 (or an
/// error line in the streamed `add` answer); afterwards a GC runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_upload_is_abandoned_and_releases_gc() {
    let rpc = rpc(ContentConfig {
        upload_idle_timeout: Duration::from_secs(1),
        upload_min_bytes_per_second: 1000,
        ..ContentConfig::default()
    })
    .await;
    for path in ["/api/v0/add", "/api/v0/block/put", "/api/v0/dag/import"] {
        let len = PART_HEAD.len() + 100_000 + END.len();
        let c = start(rpc.addr, path, len).await;
        let (mut rd, mut wr) = c.into_split();
        wr.write_all(PART_HEAD.as_bytes()).await.expect("write");
        let trickler = tokio::spawn(async move {
            // Stops when the server hangs up.
            while wr.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), async {
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("\"Type\":\"error\"") {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        trickler.abort();
        let a = String::from_utf8_lossy(&got).into_owned();
        assert!(
            read.is_ok(),
            "{path}: the trickled upload was never abandoned: {a}"
        );
        assert!(
            a.contains("upload too slow:") && a.contains("under the minimum of 1000 bytes/s"),
            "{path}: {a}"
        );
        if path != "/api/v0/add" {
            assert_eq!(status(&a), 408, "{path}: {a}");
        }
        // Its write session is over: a collection runs at once.
        let dir = rpc.dir.path().to_owned();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || gc(&Blockstore::open(&dir).expect("open"))),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: gc was held off"))
        .expect("join")
        .expect("gc");
    }
}

/// `block/put` and `dag/import` answer after reading their whole body; a body sent steadily
/// over longer than `request_timeout` is stored, not cut with a 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_upload_longer_than_request_timeout_completes() {
    let rpc = rpc(ContentConfig {
        request_timeout: Duration::from_millis(200),
        ..ContentConfig::default()
    })
    .await;
    // A CAR of a three-chunk file, made in another store.
    let src = tempfile::tempdir().expect("tmp");
    let other = Blockstore::open(src.path()).expect("open");
    let file = write(src.path(), "f.bin", &data(3 << 18, 2));
    let root = ops::add_path(
        Some(&other),
        &file,
        false,
        &ImportOptions::default(),
        &|_| {},
        &mut |_| {},
    )
    .expect("add")
    .cid;
    let mut car = Vec::new();
    keel_content::car::export(&other, &root, &mut car).expect("export");
    let block = data(1000, 3);
    for (path, payload, expect) in [
        ("/api/v0/dag/import", &car, root.to_string()),
        (
            "/api/v0/block/put",
            &block,
            keel_content::block::cid_for(cid::Version::V1, keel_content::block::RAW, &block)
                .to_string(),
        ),
    ] {
        let len = PART_HEAD.len() + payload.len() + END.len();
        let mut c = start(rpc.addr, path, len).await;
        c.write_all(PART_HEAD.as_bytes()).await.expect("write");
        // Four pieces 200 ms apart: the body takes at least three request timeouts.
        let piece = payload.len().div_ceil(4);
        for p in payload.chunks(piece) {
            c.write_all(p).await.expect("write");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c.write_all(END.as_bytes()).await.expect("write");
        let a = answer(&mut c, |_| false).await;
        assert_eq!(status(&a), 200, "{path}: {a}");
        assert!(a.contains(&expect), "{path}: {a}");
    }
    let bs = Blockstore::open(rpc.dir.path()).expect("open");
    let mut out = Vec::new();
    ops::cat(&bs, &root.to_string(), &mut out).expect("cat the imported file");
    assert_eq!(out, data(3 << 18, 2));
}
