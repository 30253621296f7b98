use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

fn keel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(KEEL).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn version_prints_the_version() {
    let (code, out, _) = keel(&["version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("keel {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn example_configs_pass_check_config() {
    for name in ["keel.dev.toml", "keel.prod.toml"] {
        let (code, out, err) = keel(&["check-config", &example(name)]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.contains("valid"), "{out}");
    }
}

#[test]
fn each_kind_of_invalid_config_gets_its_message_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[[chains]]\nname = \"main\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:8546\"\n";
    let cases = [
        (
            format!("{base}colour = 1\n"),
            ":7:",
            "unknown field `colour`",
        ),
        (
            base.replace("chain_id = 1", "chain_id = \"one\""),
            ":3:",
            "invalid type",
        ),
        (
            format!("{base}weight = 0\n"),
            ":7:",
            "`chains.0.upstreams.0.weight`: must be at least 1",
        ),
        (
            base.replace("http://127.0.0.1:8546", "ws://x"),
            ":6:",
            "scheme `ws` is not supported",
        ),
        (
            format!("{base}[[chains]]\nname = \"main\"\nchain_id = 2\n"),
            ":8:",
            "used twice",
        ),
        (
            "[gateway]\nlisten = \"127.0.0.1:9000\"\n".to_owned(),
            "",
            "no chain is configured",
        ),
        (
            format!("[gateway]\nlisten = \"nope\"\n{base}"),
            ":2:",
            "invalid socket address",
        ),
        (
            format!("[gateway]\nrequest_timeout = \"soon\"\n{base}"),
            ":2:",
            "",
        ),
        (
            format!("{base}[[chains.upstreams]]\nname = \"b\"\n"),
            ":7:",
            "exactly one of `url` and `url_file`",
        ),
        ("[[chains]\n".to_owned(), ":1:", ""),
    ];
    for (i, (text, line, message)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = keel(&["check-config", file.to_str().unwrap()]);
        assert_eq!(code, 2, "case {i}: {err}");
        assert!(
            err.contains(&format!("bad{i}.toml{line}")),
            "case {i} should name the line: {err}"
        );
        assert!(
            err.contains(message),
            "case {i} should say `{message}`: {err}"
        );
        // keel up refuses the same file before starting anything.
        let (code, _, _) = keel(&[
            "up",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "keel up case {i}");
    }
    let (code, _, err) = keel(&["check-config", "/nonexistent/keel.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read config file /nonexistent/keel.toml"),
        "{err}"
    );
}

#[test]
fn a_missing_anvil_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(KEEL)
        .args(["up", "--data-dir", "data"])
        .current_dir(dir.path())
        .env("PATH", "/usr/bin:/bin")
        .env("KEEL_ANVIL", "/nonexistent/anvil")
        .env("KEEL_GATEWAY__LISTEN", "127.0.0.1:0")
        .env("KEEL_ADMIN__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("anvil not found") && err.contains("@foundry-rs/anvil-linux-amd64@1.7.1"),
        "{err}"
    );
}

/// Runs `keel up` with a config whose upstream URLs hold secrets, checks status and readiness
/// from outside, stops it with SIGTERM and reads everything it logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_logs_no_secret_and_stops_cleanly_on_sigterm() {
    let anvil = keel_testkit::Anvil::start(&[]).await;
    let port = anvil.url().rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    let gw = free_port();
    let admin = free_port();
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:{gw}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"debug\"\n\
             [[chains]]\nname = \"dev\"\nchain_id = 31337\nhead_poll_interval = \"100ms\"\n\
             [[chains.upstreams]]\nname = \"live\"\nurl = \"http://key:LIVESECRET@127.0.0.1:{port}/\"\n\
             [[chains.upstreams]]\nname = \"dead\"\nurl = \"http://key:DEADSECRET@127.0.0.1:1/\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(KEEL)
        .args([
            "up",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin_url = format!("http://127.0.0.1:{admin}");
    let ready = keel_testkit::eventually(Duration::from_secs(20), async || {
        matches!(reqwest::get(format!("{admin_url}/readyz")).await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(ready, "keel up did not become ready");
    let v = keel_testkit::rpc(
        &format!("http://127.0.0.1:{gw}/rpc/dev"),
        "eth_chainId",
        serde_json::json!([]),
    )
    .await;
    assert_eq!(v["result"], "0x7a69");

    let (code, table, _) = keel(&["status", "--admin", &admin_url]);
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("dev (31337)") && table.contains("live") && table.contains("dead"),
        "{table}"
    );
    assert!(table.contains("healthy"), "{table}");
    assert!(!table.contains("SECRET"), "{table}");

    // SIGTERM: clean shutdown, exit 0.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "keel did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("shutdown complete"), "{logs}");
    assert!(
        logs.contains("dead"),
        "the dead upstream's failures should be logged: {logs}"
    );
    assert!(
        !logs.contains("SECRET"),
        "a secret reached the logs: {logs}"
    );
    let (code, _, err) = keel(&["status", "--admin", &admin_url]);
    assert_eq!(code, 1);
    assert!(err.contains("is keel running"), "{err}");
}

#[test]
fn a_port_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        format!("[gateway]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[chains]]\nname = \"dev\"\nchain_id = 1\n[[chains.upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n"),
    )
    .unwrap();
    let (code, _, err) = keel(&[
        "up",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for the gateway"
        )),
        "{err}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn content_pins_and_gc_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "keel gc test\n").unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["content"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", data]);
        keel(&all)
    };
    let (code, cid, err) = run(&["add", "-Q", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let cid = cid.trim();
    let (_, pins, _) = run(&["pin", "ls"]);
    assert_eq!(pins, format!("{cid} recursive\n"));

    // Pinned: nothing to collect.
    let (code, out, err) = run(&["gc"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "removed 0 blocks (0 bytes); kept 1 blocks (21 bytes)\n"
    );

    let (code, out, err) = run(&["pin", "rm", cid]);
    assert_eq!((code, out), (0, format!("unpinned {cid}\n")), "{err}");
    // A direct pin keeps its one block (this file has no other).
    let (code, out, err) = run(&["pin", "add", "--direct", cid]);
    assert_eq!(
        (code, out),
        (0, format!("pinned {cid} directly\n")),
        "{err}"
    );
    assert_eq!(run(&["pin", "ls"]).1, format!("{cid} direct\n"));
    assert!(run(&["gc", "-q"]).1.starts_with("removed 0 blocks"));
    let (code, _, err) = run(&["pin", "rm", cid]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["pin", "rm", cid]);
    assert_eq!(code, 1);
    assert!(err.contains("is not pinned"), "{err}");

    let (code, out, err) = run(&["gc"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("removed bafk"), "{out}");
    assert_eq!(
        lines[1],
        "removed 1 blocks (21 bytes); kept 0 blocks (0 bytes)"
    );
    let (code, _, err) = run(&["cat", cid]);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn check_config_refuses_a_rule_that_does_not_parse_and_alerts_rules_prints_prometheus_rules() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keel.toml");
    std::fs::write(
        &file,
        "[devnet]\n[monitor]\n[[monitor.rules]]\nname = \"Broken\"\nexpr = \"rate(x) > 1\"\n",
    )
    .unwrap();
    let (code, _, err) = keel(&["check-config", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("rule `Broken`") && err.contains("expected `[`"),
        "{err}"
    );
    let (code, out, _) = keel(&["alerts", "rules", "--prometheus"]);
    assert_eq!(code, 0);
    assert!(out.contains("- alert: UpstreamForked"), "{out}");
    // No node to talk to: a clear error, exit 1.
    let (code, _, err) = keel(&["alerts", "ls", "--admin", "http://127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("is keel running with [monitor]"), "{err}");
}

/// `keel up` with `[log] file` writes JSON lines to the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_writes_json_logs_to_the_configured_file() {
    let anvil = keel_testkit::Anvil::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    let admin = free_port();
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[log]\nfile = \"{}\"\n\
             [[chains]]\nname = \"dev\"\nchain_id = 31337\n[[chains.upstreams]]\nname = \"a\"\nurl = \"{}\"\n",
            dir.path().join("logs/keel.log").display(),
            anvil.url()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let mut child = Command::new(KEEL)
        .args([
            "up",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let logs = dir.path().join("logs");
    let found = keel_testkit::eventually(Duration::from_secs(20), async || {
        std::fs::read_dir(&logs)
            .unwrap()
            .filter_map(Result::ok)
            .any(|f| {
                std::fs::read_to_string(f.path())
                    .unwrap_or_default()
                    .contains("keel is up")
            })
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(found, "no log file with `keel is up` in {}", logs.display());
    let file = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        file.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("keel.log."),
        "{file:?}"
    );
    let line = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .find(|l| l.contains("keel is up"))
        .unwrap()
        .to_owned();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["message"], "keel is up");
    assert!(
        v["timestamp"].is_string() && v["target"] == "keel_node",
        "{v}"
    );
}

/// `keel incidents` and `keel alerts` against a running `keel up` with `[monitor]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_and_silences_from_the_command_line() {
    let anvil = keel_testkit::Anvil::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    let admin = free_port();
    let status = free_port();
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[chains]]\nname = \"dev\"\nchain_id = 31337\n[[chains.upstreams]]\nname = \"a\"\nurl = \"{}\"\n\
             [monitor]\nevaluation_interval = \"200ms\"\n[monitor.status]\nlisten = \"127.0.0.1:{status}\"\n",
            anvil.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(KEEL)
        .args([
            "up",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin_url = format!("http://127.0.0.1:{admin}");
    let ready = keel_testkit::eventually(Duration::from_secs(20), async || {
        matches!(reqwest::get(format!("{admin_url}/readyz")).await, Ok(r) if r.status() == 200)
    })
    .await;
    assert!(ready, "keel up did not become ready");
    let a = ["--admin", admin_url.as_str()];
    let (code, out, err) = keel(
        &[
            &[
                "incidents",
                "open",
                "RPC errors",
                "--message",
                "Investigating",
                "--impact",
                "major",
                "--component",
                "dev JSON-RPC",
            ][..],
            &a,
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("#1 RPC errors [investigating, impact major] dev JSON-RPC"),
        "{out}"
    );
    let (code, out, err) = keel(
        &[
            &[
                "incidents",
                "update",
                "1",
                "--status",
                "resolved",
                "--message",
                "Fixed",
            ][..],
            &a,
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("[resolved") && out.contains("resolved: Fixed"),
        "{out}"
    );
    let (code, _, err) = keel(
        &[
            &[
                "incidents",
                "update",
                "1",
                "--status",
                "done",
                "--message",
                "x",
            ][..],
            &a,
        ]
        .concat(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("status `done` is not one of"), "{err}");
    // The status page shows the incident and its timeline.
    let page = reqwest::get(format!("http://127.0.0.1:{status}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("RPC errors") && page.contains("Fixed"),
        "{page}"
    );
    let (code, out, err) = keel(
        &[
            &[
                "alerts",
                "silence",
                "alertname=UpstreamDown",
                "upstream=a",
                "--for",
                "2h",
                "--by",
                "ops",
                "--comment",
                "upgrade",
            ][..],
            &a,
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("silence "), "{out}");
    let (code, out, _) = keel(&[&["alerts", "silences"][..], &a].concat());
    assert_eq!(code, 0);
    assert!(
        out.contains("alertname=UpstreamDown,upstream=a") && out.contains("upgrade"),
        "{out}"
    );
    let (code, _, err) = keel(&[&["alerts", "silence", "oops", "--by", "ops"][..], &a].concat());
    assert_eq!(code, 1);
    assert!(err.contains("`oops` is not a matcher"), "{err}");
    let (code, out, _) = keel(&[&["alerts", "ls"][..], &a].concat());
    assert_eq!(code, 0);
    assert!(out.starts_with("ID"), "{out}");
    let (code, _, err) = keel(&[&["alerts", "ack", "nope", "--by", "ops"][..], &a].concat());
    assert_eq!(code, 1);
    assert!(err.contains("no firing alert matches `nope`"), "{err}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}
