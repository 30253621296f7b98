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
