//! Hostile DAGs, built block by block with the crate's own dag-pb and UnixFS encoders:
//! extraction that would escape its directory, tar archives a client would extract unsafely,
//! HAMT shards that expand without bound or lie about their slots, file sizes that overflow,
//! and DAGs whose pin check and garbage collection used to disagree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use cid::Cid;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use keel_config::content::ContentConfig;
use keel_content::block::{DAG_PB, RAW, cid_for};
use keel_content::hamt::murmur3_x64_64;
use keel_content::importer::{DirChild, import_reader};
use keel_content::pb::{DataType, PbLink, UnixFsData, encode_node};
use keel_content::unixfs::{self, ListLimits};
use keel_content::{Blockstore, Error, ImportOptions, gateway_router, gc::gc, ops, rpc_router};
use tower::ServiceExt;

fn store() -> (tempfile::TempDir, Blockstore) {
    let t = tempfile::tempdir().expect("tmp");
    let bs = Blockstore::open(&t.path().join("store")).expect("open");
    (t, bs)
}

fn fs_data(kind: DataType, data: Option<&[u8]>) -> UnixFsData {
    UnixFsData {
        kind,
        data: data.map(<[u8]>::to_vec),
        filesize: None,
        blocksizes: Vec::new(),
        hash_type: None,
        fanout: None,
    }
}

fn put_pb(bs: &Blockstore, links: &[(&str, Cid)], fs: &UnixFsData) -> Cid {
    let links: Vec<PbLink> = links
        .iter()
        .map(|(name, cid)| PbLink {
            cid: *cid,
            name: (*name).to_owned(),
            tsize: 1,
        })
        .collect();
    let block = encode_node(&links, Some(&fs.encode()));
    let cid = cid_for(cid::Version::V1, DAG_PB, &block);
    bs.put_verified(&cid, &block).expect("put");
    cid
}

/// A single-block file holding `bytes`.
fn file(bs: &Blockstore, bytes: &[u8]) -> Cid {
    let mut fs = fs_data(DataType::File, Some(bytes));
    fs.filesize = Some(bytes.len() as u64);
    put_pb(bs, &[], &fs)
}

fn raw(bs: &Blockstore, bytes: &[u8]) -> Cid {
    let cid = cid_for(cid::Version::V1, RAW, bytes);
    bs.put_verified(&cid, bytes).expect("put");
    cid
}

fn symlink(bs: &Blockstore, target: &str) -> Cid {
    put_pb(
        bs,
        &[],
        &fs_data(DataType::Symlink, Some(target.as_bytes())),
    )
}

/// A flat directory with exactly these links, in this order (duplicates allowed).
fn dir(bs: &Blockstore, entries: &[(&str, Cid)]) -> Cid {
    put_pb(bs, entries, &fs_data(DataType::Directory, None))
}

fn slot(name: &str) -> u8 {
    murmur3_x64_64(name.as_bytes()).to_be_bytes()[0]
}

/// Minimal big-endian bitfield with these slots set, as Kubo writes it.
fn bitfield(slots: &[u8]) -> Vec<u8> {
    let mut bits = [0u8; 32];
    for s in slots {
        bits[31 - usize::from(*s) / 8] |= 1 << (s % 8);
    }
    let first = bits.iter().position(|b| *b != 0).unwrap_or(31);
    bits[first..].to_vec()
}

/// A HAMT shard with these links (names already carry their slot prefix) and bitfield.
fn shard_with(bs: &Blockstore, links: &[(String, Cid)], bits: Vec<u8>, fanout: u64) -> Cid {
    let mut fs = fs_data(DataType::HamtShard, Some(&bits));
    fs.hash_type = Some(0x22);
    fs.fanout = Some(fanout);
    let links: Vec<(&str, Cid)> = links.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    put_pb(bs, &links, &fs)
}

/// Every path under `root` (files, directories, links), except below `skip`.
fn tree(root: &Path, skip: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.starts_with(skip) {
                continue;
            }
            if std::fs::symlink_metadata(&p).expect("meta").is_dir() {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// The names of the escape: a link to `.`, a link climbing through it, and a file of
/// the same name as the second link. In a HAMT the link to `.` must come first (lower slot),
/// so names are picked by slot.
struct Escape {
    dot: String,
    name: String,
}

impl Escape {
    fn new() -> Self {
        let name = ["e", "f", "g", "h", "i"]
            .into_iter()
            .find(|n| slot(n) > 8)
            .expect("a name with a slot above 8")
            .to_owned();
        let dot = std::iter::once("l".to_owned())
            .chain((0..).map(|i| format!("l{i}")))
            .find(|n| slot(n) < slot(&name))
            .expect("a link name in a lower slot");
        Self { dot, name }
    }

    fn target(&self) -> String {
        let d = &self.dot;
        format!("{d}/{d}/{d}/../../../x")
    }
}

/// Extracts `root` into `<tmp>/a/b/out` and checks that it is refused with an error naming a
/// path under `out`, and that nothing was written outside `out` (the escape aims at `<tmp>/x`).
fn assert_get_refused(t: &Path, bs: &Blockstore, root: &Cid, names: &str) -> Error {
    let work = t.join("a").join("b");
    std::fs::create_dir_all(&work).expect("mkdir");
    let out = work.join("out");
    let before = tree(t, &out);
    let res = ops::get(bs, &root.to_string(), &out);
    assert!(
        !t.join("x").exists(),
        "extraction wrote outside its directory"
    );
    assert_eq!(tree(t, &out), before, "nothing may appear outside {out:?}");
    let e = res.expect_err("the hostile DAG must be refused");
    let msg = e.to_string();
    assert!(
        msg.contains(&out.display().to_string()) && msg.contains(names),
        "the error must name the path: {msg}"
    );
    e
}

#[test]
fn get_refuses_the_escape_dag_flat() {
    let (t, bs) = store();
    let esc = Escape::new();
    let dot = symlink(&bs, ".");
    let climb = symlink(&bs, &esc.target());
    let payload = file(&bs, b"pwned");
    // Duplicate names: the second `e` would be written through the first.
    let root = dir(
        &bs,
        &[(&esc.dot, dot), (&esc.name, climb), (&esc.name, payload)],
    );
    let e = assert_get_refused(t.path(), &bs, &root, &format!("`{}`", esc.name));
    assert!(matches!(e, Error::BadDirectory { .. }), "{e}");
    // Without the duplicate, the climbing link itself is refused: it passes through a link.
    let root = dir(&bs, &[(&esc.dot, dot), (&esc.name, climb)]);
    std::fs::remove_dir_all(t.path().join("a")).expect("clean");
    let e = assert_get_refused(t.path(), &bs, &root, &format!("/out/{}", esc.name));
    assert!(matches!(e, Error::UnsafeEntry { .. }), "{e}");
}

#[test]
fn get_refuses_the_escape_dag_sharded() {
    let (t, bs) = store();
    let esc = Escape::new();
    let dot = symlink(&bs, ".");
    let climb = symlink(&bs, &esc.target());
    let payload = file(&bs, b"pwned");
    let (sd, se) = (slot(&esc.dot), slot(&esc.name));
    let named = |s: u8, n: &str| format!("{s:02X}{n}");
    // One slot used twice.
    let root = shard_with(
        &bs,
        &[
            (named(sd, &esc.dot), dot),
            (named(se, &esc.name), climb),
            (named(se, &esc.name), payload),
        ],
        bitfield(&[sd, se]),
        256,
    );
    let e = assert_get_refused(
        t.path(),
        &bs,
        &root,
        "sets 2 slots but the shard has 3 links",
    );
    assert!(matches!(e, Error::BadDirectory { .. }), "{e}");
    // The second entry in a slot its name does not hash to.
    let other = (se..=255).find(|s| *s != se && *s != sd).expect("slot");
    let root = shard_with(
        &bs,
        &[
            (named(sd, &esc.dot), dot),
            (named(se, &esc.name), climb),
            (named(other, &esc.name), payload),
        ],
        bitfield(&[sd, se, other]),
        256,
    );
    std::fs::remove_dir_all(t.path().join("a")).expect("clean");
    let e = assert_get_refused(t.path(), &bs, &root, "does not hash");
    assert!(matches!(e, Error::BadDirectory { .. }), "{e}");
    // Both listings are refused the same way (ls, gateway).
    assert!(matches!(
        ops::ls(&bs, &root.to_string()),
        Err(Error::BadDirectory { .. })
    ));
}

/// POSTs to the RPC and returns the status and the whole body, or the body's error.
async fn rpc(app: &axum::Router, uri: &str) -> (StatusCode, Result<Vec<u8>, String>) {
    let req = Request::post(uri).body(Body::empty()).expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .map_err(|e| e.to_string());
    (status, body)
}

/// A tar answer for a hostile DAG must be an error the client sees, with a message naming the
/// cause (these DAGs are small, so the error comes before the first byte), never an archive.
async fn assert_tar_refused(app: &axum::Router, arg: &str, why: &str) {
    let (status, body) = rpc(app, &format!("/api/v0/get?arg={arg}")).await;
    let body = body.unwrap_or_else(|e| panic!("{arg}: expected an error answer, got {e}"));
    assert_ne!(status, StatusCode::OK, "an archive was served for {arg}");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("Kubo error JSON");
    let msg = v["Message"].as_str().expect("Message");
    assert!(msg.contains(why), "{arg}: {msg}");
}

#[tokio::test]
async fn tar_output_is_safe_to_extract() {
    let (_t, bs) = store();
    let app = rpc_router(&ContentConfig::default(), bs.clone()).expect("router");
    let esc = Escape::new();
    let dot = symlink(&bs, ".");
    let climb = symlink(&bs, &esc.target());
    let payload = file(&bs, b"pwned");
    let dup = dir(
        &bs,
        &[(&esc.dot, dot), (&esc.name, climb), (&esc.name, payload)],
    );
    assert_tar_refused(&app, &dup.to_string(), "two entries named").await;
    let climbing = dir(&bs, &[(&esc.dot, dot), (&esc.name, climb)]);
    assert_tar_refused(&app, &climbing.to_string(), "climbs").await;
    let abs = dir(&bs, &[("passwd", symlink(&bs, "/etc/passwd"))]);
    assert_tar_refused(&app, &abs.to_string(), "absolute").await;
    let up = dir(&bs, &[("up", symlink(&bs, "../x"))]);
    assert_tar_refused(&app, &up.to_string(), "climbs out").await;
    // An entry named `..` (reachable by path) must not become the archive's top name, and
    // names that are not one component are refused below it.
    let inner = dir(&bs, &[("x", payload)]);
    let dotdot = dir(&bs, &[("..", inner)]);
    assert_tar_refused(&app, &format!("{dotdot}/.."), "top entry").await;
    assert_tar_refused(&app, &dotdot.to_string(), "one path component").await;
    let slash = dir(&bs, &[("a/../../x", payload)]);
    assert_tar_refused(&app, &slash.to_string(), "one path component").await;
}

#[tokio::test]
async fn tar_of_a_legit_tree_extracts_with_gnu_tar() {
    let (t, bs) = store();
    let app = rpc_router(&ContentConfig::default(), bs.clone()).expect("router");
    // A name that puts a multi-byte character across byte 156 of the path (the old writer
    // sliced there and panicked), a symlink climbing one level, a long link target.
    // (The CID and `/` are 60 bytes; `x` makes the two-byte characters start at odd offsets.)
    let long = format!("x{}", "é".repeat(100));
    let deep_target = format!("../{long}");
    let f1 = file(&bs, b"one");
    let f2 = file(&bs, &crate::support::data(5000, 9));
    let sub = dir(
        &bs,
        &[
            ("back", symlink(&bs, "../top.txt")),
            ("far", symlink(&bs, &deep_target)),
            ("inner.bin", f2),
        ],
    );
    let root = dir(&bs, &[(&long, f1), ("sub", sub), ("top.txt", f1)]);
    let (status, body) = rpc(&app, &format!("/api/v0/get?arg={root}")).await;
    assert_eq!(status, StatusCode::OK);
    let tar = body.expect("complete body");
    let archive = t.path().join("a.tar");
    std::fs::write(&archive, &tar).expect("write");
    let dest = t.path().join("x");
    std::fs::create_dir(&dest).expect("mkdir");
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&dest)
        .status()
        .expect("tar");
    assert!(st.success());
    let top = dest.join(root.to_string());
    assert_eq!(std::fs::read(top.join(&long)).expect("long"), b"one");
    assert_eq!(std::fs::read(top.join("top.txt")).expect("top"), b"one");
    assert_eq!(
        std::fs::read(top.join("sub/inner.bin")).expect("inner"),
        crate::support::data(5000, 9)
    );
    assert_eq!(
        std::fs::read_link(top.join("sub/back")).expect("link"),
        Path::new("../top.txt")
    );
    assert_eq!(
        std::fs::read_link(top.join("sub/far")).expect("link"),
        Path::new(&deep_target)
    );
    assert_eq!(
        std::fs::read(top.join("sub/far")).expect("through link"),
        b"one"
    );
}

/// The bomb of the issue: shards whose 256 slots all link to the same sub-shard, seven levels
/// deep (256^7 expansions). With `entries`, the last shard holds 256 entries (each expansion
/// then pushes 256 links); without, the expansion is pure CPU.
fn hamt_bomb(bs: &Blockstore, entries: bool) -> Cid {
    let all: Vec<u8> = (0..=255).collect();
    let leaf = if entries {
        let f = file(bs, b"x");
        let links: Vec<(String, Cid)> = all.iter().map(|s| (format!("{s:02X}n{s}"), f)).collect();
        shard_with(bs, &links, bitfield(&all), 256)
    } else {
        shard_with(bs, &[], Vec::new(), 256)
    };
    let mut below = leaf;
    for _ in 0..7 {
        let links: Vec<(String, Cid)> = all.iter().map(|s| (format!("{s:02X}"), below)).collect();
        below = shard_with(bs, &links, bitfield(&all), 256);
    }
    below
}

const BOMB_CHILD: &str = "KEEL_TEST_HAMT_BOMB_CHILD";

/// CPU time of the calling thread, in milliseconds (utime + stime of /proc/thread-self/stat,
/// at 100 ticks per second).
fn thread_cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")) * 10
}

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("status field")
}

/// Lists the bomb in a child process (this same test, told so by an environment variable),
/// which reports its CPU time and peak memory; the child runs under a 2 GiB address-space
/// limit and a wall-clock watchdog, so the unbounded expansion of old code fails the test
/// instead of the machine.
#[test]
fn hamt_bomb_answers_an_error_in_bounded_cpu_and_memory() {
    if let Ok(spec) = std::env::var(BOMB_CHILD) {
        let (store, cid) = spec.split_once('\n').expect("spec");
        let bs = Blockstore::open(Path::new(store)).expect("open");
        let base = status_kib("VmRSS:");
        let cpu = thread_cpu_ms();
        let res = ops::ls(&bs, cid);
        let cpu = thread_cpu_ms() - cpu;
        let peak = status_kib("VmHWM:");
        let err = res.err().map(|e| e.to_string()).unwrap_or_default();
        // The parent reads this line from the child's stdout.
        let report = format!(
            "BOMB cpu_ms={cpu} grew_kib={} error={}\n",
            peak.saturating_sub(base),
            err.replace('\n', " ")
        );
        std::io::Write::write_all(&mut std::io::stdout(), report.as_bytes()).expect("stdout");
        return;
    }
    let (t, bs) = store();
    for (entries, why) in [(false, "already reached"), (true, "does not hash")] {
        let bomb = hamt_bomb(&bs, entries);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 2097152 && exec \"$0\" \"$@\"")
            .arg(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "hostile_dag::hamt_bomb_answers_an_error_in_bounded_cpu_and_memory",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                BOMB_CHILD,
                format!("{}\n{bomb}", t.path().join("store").display()),
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if Instant::now() > deadline {
                child.kill().expect("kill");
                let _ = child.wait();
                panic!("listing the bomb (entries: {entries}) did not finish in 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
            .expect("read");
        assert!(status.success(), "child failed ({status}): {out}");
        let line = out
            .lines()
            .find_map(|l| l.split_once("BOMB ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("no report: {out}"));
        let field = |k: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .expect("field")
        };
        let error = line.split_once("error=").map(|(_, e)| e).unwrap_or("");
        assert!(
            error.contains(&bomb.to_string()) && error.contains(why),
            "entries {entries}: {error}"
        );
        assert!(field("cpu_ms=") < 1000, "{line}");
        assert!(field("grew_kib=") < 8 * 1024, "{line}");
    }
}

#[tokio::test]
async fn hamt_bomb_is_an_error_on_the_gateway_and_rpc() {
    let (_t, bs) = store();
    let bomb = hamt_bomb(&bs, false);
    let gw = gateway_router(&ContentConfig::default(), bs.clone());
    let req = Request::get(format!("/ipfs/{bomb}/"))
        .body(Body::empty())
        .expect("request");
    let resp = gw.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("already reached"), "{text}");
    let app = rpc_router(&ContentConfig::default(), bs.clone()).expect("router");
    let (status, body) = rpc(&app, &format!("/api/v0/ls?arg={bomb}")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = String::from_utf8(body.expect("body")).expect("utf8");
    assert!(body.contains("already reached"), "{body}");
}

#[test]
fn inconsistent_shards_are_refused() {
    let (_t, bs) = store();
    let f = file(&bs, b"x");
    let (a, b) = ("alpha", "beta");
    let (sa, sb) = (slot(a), slot(b));
    assert_ne!(sa, sb);
    let la = (format!("{sa:02X}{a}"), f);
    let lb = (format!("{sb:02X}{b}"), f);
    let (lo, hi) = if sa < sb { (&la, &lb) } else { (&lb, &la) };
    let ls = |c: Cid| ops::ls(&bs, &c.to_string()).map(|v| v.len());
    // The consistent shard lists.
    let good = shard_with(&bs, &[lo.clone(), hi.clone()], bitfield(&[sa, sb]), 256);
    assert_eq!(ls(good).expect("ls"), 2);
    // A bit set for a slot no link uses; a link in a slot the bitfield does not set.
    let spare = (0..=255).find(|s| *s != sa && *s != sb).expect("slot");
    let c = shard_with(
        &bs,
        &[lo.clone(), hi.clone()],
        bitfield(&[sa, sb, spare]),
        256,
    );
    assert!(
        ls(c)
            .expect_err("refused")
            .to_string()
            .contains("bitfield sets 3 slots")
    );
    let c = shard_with(&bs, std::slice::from_ref(lo), bitfield(&[spare]), 256);
    assert!(
        ls(c)
            .expect_err("refused")
            .to_string()
            .contains("not set in the bitfield")
    );
    // Links out of slot order; a link name without a slot.
    let c = shard_with(&bs, &[hi.clone(), lo.clone()], bitfield(&[sa, sb]), 256);
    assert!(
        ls(c)
            .expect_err("refused")
            .to_string()
            .contains("after a higher slot")
    );
    let c = shard_with(&bs, &[("zz".to_owned(), f)], bitfield(&[0]), 256);
    assert!(
        ls(c)
            .expect_err("refused")
            .to_string()
            .contains("two-digit slot")
    );
    // Another fanout is not silently read as 256.
    let c = shard_with(&bs, &[lo.clone(), hi.clone()], bitfield(&[sa, sb]), 64);
    assert!(matches!(ls(c), Err(Error::Unsupported { .. })));
    // A chain of single-slot sub-shards along a real name's hash, one level too deep.
    let h = murmur3_x64_64(a.as_bytes()).to_be_bytes();
    let mut below = shard_with(
        &bs,
        &[(format!("{:02X}{a}", h[7]), f)],
        bitfield(&[h[7]]),
        256,
    );
    for level in (0..8).rev() {
        below = shard_with(
            &bs,
            &[(format!("{:02X}", h[level]), below)],
            bitfield(&[h[level]]),
            256,
        );
    }
    let e = ls(below).expect_err("refused").to_string();
    assert!(e.contains("below level 8"), "{e}");
    // Path lookups check the shards on their way too.
    let c = shard_with(
        &bs,
        &[lo.clone(), lo.clone()],
        bitfield(&[slot(&lo.0[2..])]),
        256,
    );
    let name = &lo.0[2..];
    assert!(ops::resolve(&bs, &format!("{c}/{name}")).is_err());
}

/// Real (importer-built) sharded directories list within the default limits; lower limits
/// stop the listing with an error naming the key.
#[test]
fn listing_limits_stop_large_directories_with_a_clear_error() {
    let (_t, bs) = store();
    let o = ImportOptions::default();
    let f = import_reader(&b"x"[..], &o, &bs, &|_| {}).expect("file");
    let n = 5000;
    let children: Vec<DirChild> = (0..n)
        .map(|i| DirChild {
            name: format!("entry-{i}"),
            imported: f.clone(),
        })
        .collect();
    let dir = keel_content::hamt::build_sharded(children, &o, &bs).expect("shard");
    let node = ops::resolve(&bs, &dir.cid.to_string()).expect("root");
    let listed = unixfs::entries(&bs, &node).expect("list");
    let names: BTreeSet<String> = listed.iter().map(|l| l.name.clone()).collect();
    assert_eq!(names, (0..n).map(|i| format!("entry-{i}")).collect());
    let mut shard_blocks = 0u64;
    unixfs::walk_blocks(&bs, &dir.cid, &mut |c, _| {
        shard_blocks += u64::from(c.codec() == DAG_PB && *c != f.cid);
        Ok(())
    })
    .expect("walk");
    let exact = ListLimits {
        max_entries: n,
        max_shard_blocks: shard_blocks,
        deadline: None,
    };
    assert_eq!(
        unixfs::entries_with(&bs, &node, &exact)
            .expect("list")
            .len() as u64,
        n
    );
    let e = unixfs::entries_with(
        &bs,
        &node,
        &ListLimits {
            max_entries: n - 1,
            ..exact
        },
    )
    .expect_err("entries cap");
    assert!(e.to_string().contains("max_dir_entries"), "{e}");
    let e = unixfs::entries_with(
        &bs,
        &node,
        &ListLimits {
            max_shard_blocks: shard_blocks - 1,
            ..exact
        },
    )
    .expect_err("blocks cap");
    assert!(e.to_string().contains("max_dir_shard_blocks"), "{e}");
    let e = unixfs::entries_with(&bs, &node, &exact.with_deadline(Instant::now()))
        .expect_err("deadline");
    assert!(matches!(e, Error::ListingAborted { .. }), "{e}");
    // The RPC listener takes its limits from [content].
    let cfg = ContentConfig {
        max_dir_entries: 10,
        ..ContentConfig::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let app = rpc_router(&cfg, bs.clone()).expect("router");
    let (status, body) = rt.block_on(rpc(&app, &format!("/api/v0/ls?arg={}", dir.cid)));
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = String::from_utf8(body.expect("body")).expect("utf8");
    assert!(body.contains("more than 10 entries"), "{body}");
}

#[test]
fn hostile_blocksizes_do_not_overflow() {
    let (_t, bs) = store();
    let leaf = raw(&bs, b"x");
    let mut fs = fs_data(DataType::File, None);
    fs.blocksizes = vec![u64::MAX, 1];
    let root = put_pb(&bs, &[("", leaf), ("", leaf)], &fs);
    let e = ops::cat(&bs, &root.to_string(), &mut Vec::new()).expect_err("refused");
    assert!(e.to_string().contains("2^64"), "{e}");
}

/// A chain of `n` directories, each holding the next as `c`, ending at `end`.
fn chain(bs: &Blockstore, n: usize, end: Cid) -> Cid {
    (0..n).fold(end, |below, _| dir(bs, &[("c", below)]))
}

/// Every block of the DAG under `root`.
fn blocks_of(bs: &Blockstore, root: &Cid) -> Vec<Cid> {
    let mut out = Vec::new();
    unixfs::walk_blocks(bs, root, &mut |c, _| {
        out.push(*c);
        Ok(())
    })
    .expect("walk");
    out
}

/// One subtree reached by a short and a long path: whichever order the links come in, a DAG
/// that can be pinned can be collected around, and keeps all its blocks.
#[test]
fn gc_and_pin_agree_whatever_the_link_order() {
    let (_t, bs) = store();
    for shallow_first in [true, false] {
        let subtree = chain(&bs, 10, file(&bs, b"leaf"));
        let shallow = dir(&bs, &[("x", subtree)]);
        let deep = chain(&bs, 60, subtree);
        let root = if shallow_first {
            dir(&bs, &[("a", shallow), ("b", deep)])
        } else {
            dir(&bs, &[("a", deep), ("b", shallow)])
        };
        let garbage = file(&bs, format!("unpinned {root}").as_bytes());
        ops::pin_add(&bs, &root, true).expect("pin");
        let blocks = blocks_of(&bs, &root);
        assert!(blocks.len() > 70);
        gc(&bs).expect("gc must run on a DAG that was pinned");
        assert!(!bs.has(&garbage), "the collection ran");
        assert!(blocks.iter().all(|c| bs.has(c)), "every pinned block stays");
        assert!(bs.unpin(&root).expect("unpin"));
    }
}

/// Everything the importer accepts (directories nest up to 256 levels) can be pinned,
/// collected around, extracted and archived.
#[tokio::test]
async fn deeply_nested_directories_round_trip() {
    let (t, bs) = store();
    let src = t.path().join("src");
    let mut p = src.clone();
    for _ in 0..100 {
        p = p.join("d");
    }
    std::fs::create_dir_all(&p).expect("mkdir");
    std::fs::write(p.join("f"), b"deep").expect("write");
    let root = ops::add_path(
        Some(&bs),
        &src,
        true,
        &ImportOptions::default(),
        &|_| {},
        &mut |_| {},
    )
    .expect("add");
    gc(&bs).expect("gc");
    let out = t.path().join("out");
    ops::get(&bs, &root.cid.to_string(), &out).expect("get");
    let mut q = out.clone();
    for _ in 0..100 {
        q = q.join("d");
    }
    assert_eq!(std::fs::read(q.join("f")).expect("read"), b"deep");
    let app = rpc_router(&ContentConfig::default(), bs.clone()).expect("router");
    let (status, body) = rpc(&app, &format!("/api/v0/get?arg={}", root.cid)).await;
    assert_eq!(status, StatusCode::OK);
    let archive = t.path().join("deep.tar");
    std::fs::write(&archive, body.expect("complete body")).expect("write");
    let dest = t.path().join("untar");
    std::fs::create_dir(&dest).expect("mkdir");
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&dest)
        .status()
        .expect("tar");
    assert!(st.success());
    let mut q = dest.join(root.cid.to_string());
    for _ in 0..100 {
        q = q.join("d");
    }
    assert_eq!(std::fs::read(q.join("f")).expect("read"), b"deep");
}
