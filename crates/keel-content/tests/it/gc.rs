//! Garbage collection: what pins keep stays and is still served, the rest goes; a broken pin
//! stops the collection before anything is removed; an unfinished write holds it off, and a
//! waiting collection holds off new writes.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use cid::Cid;
use keel_content::importer::Imported;
use keel_content::store::PinKind;
use keel_content::{Blockstore, Error, ImportOptions, gc::gc, ops, unixfs};

use crate::support::{data, write};

fn add(bs: &Blockstore, dir: &Path, name: &str, bytes: &[u8]) -> Imported {
    let p = write(dir, name, bytes);
    ops::add_path(
        Some(bs),
        &p,
        false,
        &ImportOptions::default(),
        &|_| {},
        &mut |_| {},
    )
    .expect("add")
}

/// Every block of the DAG under `root`, as stored (multihash) keys.
fn blocks_of(bs: &Blockstore, root: &Cid) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    unixfs::walk_blocks(bs, root, &mut |c, _| {
        out.insert(c.hash().to_bytes());
        Ok(())
    })
    .expect("walk");
    out
}

fn cat(bs: &Blockstore, cid: &Cid) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    ops::cat(bs, &cid.to_string(), &mut out).map(|_| out)
}

#[test]
fn gc_keeps_what_pins_reach_and_removes_the_rest() {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(t.path()).expect("open");
    // Three 256 KiB chunks each; the unpinned file shares its first chunk with the kept one.
    let kept_bytes = data(3 << 18, 1);
    let mut doomed_bytes = kept_bytes[..1 << 18].to_vec();
    doomed_bytes.extend(data(2 << 18, 2));
    let kept = add(&bs, t.path(), "kept.bin", &kept_bytes);
    let doomed = add(&bs, t.path(), "doomed.bin", &doomed_bytes);
    assert!(bs.unpin(&doomed.cid).expect("unpin"));
    // A direct pin keeps one block, not what it links to.
    let direct = add(&bs, t.path(), "direct.bin", &data(2 << 18, 3));
    assert!(bs.unpin(&direct.cid).expect("unpin"));
    ops::pin_add(&bs, &direct.cid, false).expect("pin direct");

    let keep: BTreeSet<Vec<u8>> = blocks_of(&bs, &kept.cid)
        .into_iter()
        .chain([direct.cid.hash().to_bytes()])
        .collect();
    let all: BTreeSet<Vec<u8>> = [&kept, &doomed, &direct]
        .iter()
        .flat_map(|i| blocks_of(&bs, &i.cid))
        .collect();
    let before = bs.stat().expect("stat");

    let r = gc(&bs).expect("gc");
    let removed: BTreeSet<Vec<u8>> = r.removed.iter().map(|c| c.hash().to_bytes()).collect();
    assert_eq!(removed, &all - &keep);
    assert_eq!(r.kept, keep.len() as u64);
    let after = bs.stat().expect("stat");
    assert_eq!(after.blocks, before.blocks - removed.len() as u64);
    assert_eq!(after.bytes, before.bytes - r.removed_bytes);
    assert_eq!(after.bytes, r.kept_bytes);

    assert_eq!(cat(&bs, &kept.cid).expect("kept"), kept_bytes);
    assert!(cat(&bs, &doomed.cid).is_err_and(|e| e.is_not_found()));
    assert!(bs.get(&direct.cid).is_ok(), "the direct pin's block stays");
    assert!(cat(&bs, &direct.cid).is_err_and(|e| e.is_not_found()));
    assert!(gc(&bs).expect("gc again").removed.is_empty());
}

#[test]
fn a_broken_pin_stops_gc_before_anything_is_removed() {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(t.path()).expect("open");
    let pinned = add(&bs, t.path(), "pinned.bin", &data(3 << 18, 4));
    let unpinned = add(&bs, t.path(), "unpinned.bin", &data(3 << 18, 5));
    assert!(bs.unpin(&unpinned.cid).expect("unpin"));
    let root = keel_content::pb::decode_node(&bs.get(&pinned.cid).expect("root")).expect("node");
    let leaf = root.links[1].cid;
    bs.delete(&leaf).expect("lose a leaf");
    let before = bs.stat().expect("stat");

    let e = gc(&bs).expect_err("a pin cannot be walked");
    let msg = e.to_string();
    assert!(
        matches!(e, Error::BrokenPin { .. })
            && msg.contains(&pinned.cid.to_string())
            && msg.contains(&leaf.to_string())
            && msg.contains("removed nothing"),
        "{msg}"
    );
    assert_eq!(bs.stat().expect("stat"), before);
    assert!(cat(&bs, &unpinned.cid).is_ok());
}

#[test]
fn gc_waits_for_an_unfinished_write_and_keeps_what_it_pins() {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(t.path()).expect("open");
    // An add in progress: its blocks are written, its root not pinned yet.
    let session = bs.write_session().expect("session");
    let file = keel_content::importer::import_file(
        &std::fs::File::open(write(t.path(), "f.bin", &data(3 << 18, 6))).expect("open"),
        &ImportOptions::default(),
        &bs,
        &|_| {},
    )
    .expect("import");
    let (tx, rx) = mpsc::channel();
    let gc_bs = bs.clone();
    let collector = std::thread::spawn(move || tx.send(gc(&gc_bs)).expect("send"));
    // Without the lock the collection would finish here, removing the unpinned blocks.
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "gc ran during a write session"
    );
    bs.pin(&file.cid, PinKind::Recursive).expect("pin");
    drop(session);
    let r = rx.recv().expect("gc result").expect("gc");
    collector.join().expect("join");
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    assert!(cat(&bs, &file.cid).is_ok());
}

#[test]
fn a_waiting_gc_holds_off_new_writes_so_a_stream_of_them_cannot_starve_it() {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(t.path()).expect("open");
    let unpinned = add(&bs, t.path(), "u.bin", &data(1000, 7));
    assert!(bs.unpin(&unpinned.cid).expect("unpin"));

    let running = bs.write_session().expect("session");
    let gc_bs = bs.clone();
    let collector = std::thread::spawn(move || gc(&gc_bs));
    // The collector is queued once new sessions are refused (it holds the gate while it waits
    // for the running one). Without the gate they would be let in for ever.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bs.try_write_session().expect("try").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "a waiting gc never held off new sessions"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A new writer waits behind the collector, and gets in only after it swept.
    let (tx, rx) = mpsc::channel();
    let writer_bs = bs.clone();
    let writer = std::thread::spawn(move || {
        let _s = writer_bs.write_session().expect("session");
        tx.send(writer_bs.has(&unpinned.cid)).expect("send");
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a new session got in ahead of a waiting gc"
    );
    drop(running);
    let r = collector.join().expect("join").expect("gc");
    assert_eq!(r.removed.len(), 1);
    assert!(
        !rx.recv().expect("writer"),
        "the writer got in before the sweep"
    );
    writer.join().expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_abandoned_so_it_cannot_hold_gc_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let t = tempfile::tempdir().expect("tmp");
    let cfg = keel_config::content::ContentConfig {
        gateway_listen: None,
        rpc_listen: Some("127.0.0.1:0".parse().expect("addr")),
        upload_idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let svc = keel_content::ContentService::bind(&cfg, t.path())
        .await
        .expect("bind");
    let addr = svc.local_addrs().rpc.expect("rpc");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(svc.run(shutdown.clone()));

    // An add that sends one and a half chunks of a file announced as 10 MB, then nothing.
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = "POST /api/v0/add HTTP/1.1\r\nhost: localhost\r\ncontent-type: multipart/form-data; boundary=B\r\ncontent-length: 10000000\r\n\r\n--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\ncontent-type: application/octet-stream\r\n\r\n";
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(&data(3 << 17, 8)).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("\"Type\":\"error\"") {
            let n = conn.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        read.is_ok(),
        "the stalled upload was never abandoned: {answer}"
    );
    assert!(
        answer.contains("upload stalled: nothing received for 300ms"),
        "{answer}"
    );

    // Its session is over: a collection runs at once.
    let dir = t.path().to_owned();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || gc(&Blockstore::open(&dir).expect("open"))),
    )
    .await
    .expect("gc was held off")
    .expect("join")
    .expect("gc");
    shutdown.cancel();
    server.await.expect("join").expect("serve");
}
