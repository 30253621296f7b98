//! `keel content` next to the Kubo RPC: the same flags give the same CIDs, and the CLI works
//! on the store (and the GC lock) of a running `keel up`.

use std::path::Path;
use std::process::Command;

use keel_config::content::ContentConfig;
use keel_content::ContentService;
use tokio_util::sync::CancellationToken;

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

/// A multipart body with one file part, as `ipfs add` sends it.
fn multipart(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n--B--\r\n");
    body
}

/// What `POST /api/v0/add?…` answers: the root CID, or the error message.
async fn rpc_add(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    bytes: &[u8],
) -> Result<String, String> {
    let resp = http
        .post(format!("{url}/api/v0/add?{query}"))
        .header("content-type", "multipart/form-data; boundary=B")
        .body(multipart("f.bin", bytes))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let last: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap();
    match last["Hash"].as_str() {
        Some(h) if status.is_success() => Ok(h.to_owned()),
        _ => Err(last["Message"].as_str().unwrap_or(&text).to_owned()),
    }
}

/// What `keel content add -Q --only-hash …` prints: the root CID, or its error.
fn cli_add(args: &[String], file: &Path) -> Result<String, String> {
    let out = Command::new(KEEL)
        .args(["content", "add", "-Q", "--only-hash"])
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// One combination of `add` flags, spelled for the CLI and for the RPC query.
#[derive(Debug, Default, Clone)]
struct Flags(Vec<(&'static str, String)>);

impl Flags {
    fn cli(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("--{k}={v}")).collect()
    }

    fn query(&self) -> String {
        let mut q = String::from("only-hash=true");
        for (k, v) in &self.0 {
            q.push_str(&format!("&{k}={v}"));
        }
        q
    }
}

/// Profile × CID version × raw leaves × chunker × links per node, each given or not, and
/// the other flags both accept, alone.
fn flag_matrix() -> Vec<Flags> {
    let mut out = Vec::new();
    for profile in [None, Some("unixfs-v0-2015"), Some("unixfs-v1-2025")] {
        for cid_version in [None, Some("0"), Some("1")] {
            for raw_leaves in [None, Some("true"), Some("false")] {
                for chunker in [None, Some("size-1000")] {
                    for links in [None, Some("3")] {
                        let mut f = Flags::default();
                        for (k, v) in [
                            ("profile", profile),
                            ("cid-version", cid_version),
                            ("raw-leaves", raw_leaves),
                            ("chunker", chunker),
                            ("max-file-links", links),
                        ] {
                            if let Some(v) = v {
                                f.0.push((k, v.to_owned()));
                            }
                        }
                        out.push(f);
                    }
                }
            }
        }
    }
    for (k, v) in [
        ("hash", "sha2-256"),
        ("hash", "blake3"),
        ("trickle", "false"),
        ("trickle", "true"),
        ("cid-version", "2"),
        ("profile", "unixfs-v9"),
        ("chunker", "rabin-1-2-3"),
        ("max-file-links", "1"),
    ] {
        out.push(Flags(vec![(k, v.to_owned())]));
    }
    out
}

/// For every combination of flags both accept, `keel content add` and `/api/v0/add` give the
/// same root CID (and refuse the same combinations, with the same reason).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_rpc_add_give_the_same_cid_for_every_flag_combination() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ContentConfig {
        gateway_listen: None,
        rpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ContentConfig::default()
    };
    let svc = ContentService::bind(&cfg, &dir.path().join("data"))
        .await
        .unwrap();
    let url = format!("http://{}", svc.local_addrs().rpc.unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(svc.run(shutdown.clone()));
    let http = reqwest::Client::new();

    // Deterministic bytes: 5 chunks at size-1000 (two levels at 3 links), one chunk otherwise.
    let bytes: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, &bytes).unwrap();

    let mut accepted = 0;
    let mut cids = std::collections::BTreeSet::new();
    for flags in flag_matrix() {
        let cli = {
            let (args, file) = (flags.cli(), file.clone());
            tokio::task::spawn_blocking(move || cli_add(&args, &file))
                .await
                .unwrap()
        };
        let rpc = rpc_add(&http, &url, &flags.query(), &bytes).await;
        match (&cli, &rpc) {
            (Ok(c), Ok(r)) => {
                assert_eq!(c, r, "CLI and RPC disagree for {flags:?}");
                accepted += 1;
                cids.insert(c.clone());
            }
            (Err(c), Err(r)) => assert!(
                c.contains(r.as_str()),
                "{flags:?}: CLI said `{c}`, RPC `{r}`"
            ),
            _ => panic!("{flags:?}: CLI gave {cli:?}, RPC {rpc:?}"),
        }
    }
    // 108 combinations of the matrix plus sha2-256 and trickle=false; the rest refused.
    assert_eq!(accepted, 110);
    // The flags matter (CID version, leaf kind, layout: 11 distinct DAGs for these bytes), so a
    // CLI and RPC that both ignored them would not pass.
    assert_eq!(cids.len(), 11, "{cids:?}");
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops `keel up` with SIGTERM and waits for it.
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// `keel up` and `keel content … --data-dir` share one store: what the node adds through its
/// Kubo RPC, the CLI reads and lists, and the CLI's GC waits for the node's unfinished upload
/// (the GC lock is the same file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_on_the_store_and_lock_of_a_running_node() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("keel.toml");
    let rpc = free_port();
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:{}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n\
             [[chains]]\nname = \"dev\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n\
             [content]\ngateway_listen = \"off\"\nrpc_listen = \"127.0.0.1:{rpc}\"\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let _up = Up(Command::new(KEEL)
        .args([
            "up",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap());
    let url = format!("http://127.0.0.1:{rpc}");
    let http = reqwest::Client::new();
    let up = keel_testkit::eventually(std::time::Duration::from_secs(30), async || {
        matches!(http.post(format!("{url}/api/v0/version")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(up, "keel up's Kubo RPC did not come up");
    let cli = |args: &[&str]| {
        let out = Command::new(KEEL)
            .arg("content")
            .args(args)
            .args(["--data-dir", data.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Added through the node, read and listed by the CLI.
    let bytes = b"added through the running node\n";
    let cid = rpc_add(&http, &url, "pin=true", bytes).await.unwrap();
    let (code, out, err) = cli(&["cat", &cid]);
    assert_eq!((code, out.as_bytes()), (Some(0), &bytes[..]), "{err}");
    assert_eq!(cli(&["pin", "ls"]).1, format!("{cid} recursive\n"));

    // An upload in progress in the node holds the GC lock that the CLI's GC takes.
    let mut upload = tokio::net::TcpStream::connect(("127.0.0.1", rpc))
        .await
        .unwrap();
    let part = b"--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\ncontent-type: application/octet-stream\r\n\r\n";
    let (first, rest) = (vec![7u8; 1000], vec![8u8; 1000]);
    let end = b"\r\n--B--\r\n";
    let len = part.len() + first.len() + rest.len() + end.len();
    let head = format!(
        "POST /api/v0/add?pin=true HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: multipart/form-data; boundary=B\r\nconnection: close\r\ncontent-length: {len}\r\n\r\n"
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    upload.write_all(part).await.unwrap();
    upload.write_all(&first).await.unwrap();
    let lock = data.join("content/gc.lock");
    let held = keel_testkit::eventually(std::time::Duration::from_secs(30), async || {
        std::fs::File::open(&lock)
            .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
    })
    .await;
    assert!(held, "the node's upload does not hold {}", lock.display());
    let (gc_tx, gc_rx) = std::sync::mpsc::channel();
    let gc = {
        let data = data.clone();
        std::thread::spawn(move || {
            let out = Command::new(KEEL)
                .args(["content", "gc", "--data-dir", data.to_str().unwrap()])
                .output()
                .unwrap();
            let _ = gc_tx.send(());
            out
        })
    };
    assert!(
        gc_rx
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "keel content gc ran while the node's upload was unfinished"
    );
    upload.write_all(&rest).await.unwrap();
    upload.write_all(end).await.unwrap();
    let mut answer = String::new();
    upload.read_to_string(&mut answer).await.unwrap();
    let slow_cid = answer
        .split("\"Hash\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no CID in {answer}"))
        .to_owned();
    let out = gc.join().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    // The upload finished (and pinned) first: nothing of it was collected.
    assert!(report.starts_with("removed 0 blocks"), "{report}");
    assert_eq!(cli(&["cat", &slow_cid]).0, Some(0));
    assert_eq!(cli(&["pin", "ls"]).1.lines().count(), 2);
}
