use super::*;

const MINIMAL: &str = r#"
[gateway]
listen = "127.0.0.1:8545"
[admin]
listen = "127.0.0.1:9545"
[[chains]]
name = "devnet"
chain_id = 31337
[[chains.upstreams]]
name = "a"
url = "http://127.0.0.1:8546"
[[chains.upstreams]]
name = "b"
url = "http://127.0.0.1:8547"
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, "keel.toml", &[])
}

#[test]
fn minimal_config_loads_with_defaults() {
    let c = load(MINIMAL).expect("valid");
    assert_eq!(c.chains.len(), 1);
    assert_eq!(c.chains[0].upstreams[1].name, "b");
    assert_eq!(c.chains[0].upstreams[0].weight, 1);
    assert_eq!(c.chains[0].head_poll_interval, Duration::from_secs(1));
    assert_eq!(c.gateway.max_batch_len, 100);
    assert!(c.devnet.is_none());
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = MINIMAL.replace("name = \"b\"", "name = \"b\"\nwieght = 3");
    let err = load(&text).expect_err("unknown key").to_string();
    assert!(err.starts_with("keel.toml:14:"), "{err}");
    assert!(err.contains("wieght"), "{err}");
    assert!(err.contains("docs/config.md"), "{err}");
}

#[test]
fn bad_value_type_is_located() {
    let text = MINIMAL.replace("chain_id = 31337", "chain_id = \"x\"");
    let err = load(&text).expect_err("bad type").to_string();
    assert!(err.starts_with("keel.toml:8:"), "{err}");
}

#[test]
fn semantic_error_names_line_key_and_fix() {
    let text = MINIMAL.replace("name = \"b\"", "name = \"b\"\nweight = 0");
    let err = load(&text).expect_err("weight 0").to_string();
    assert!(err.starts_with("keel.toml:14:"), "{err}");
    assert!(err.contains("`chains.0.upstreams.1.weight`"), "{err}");
    assert!(err.contains("backup"), "{err}");
}

#[test]
fn duplicate_upstream_names_are_refused() {
    let text = MINIMAL.replace("name = \"b\"", "name = \"a\"");
    let err = load(&text).expect_err("dup").to_string();
    assert!(err.contains("used twice"), "{err}");
    assert!(err.starts_with("keel.toml:13:"), "{err}");
}

#[test]
fn no_chains_is_refused() {
    let err = load("[gateway]\n").expect_err("no chains").to_string();
    assert!(err.contains("no chain is configured"), "{err}");
}

#[test]
fn bad_url_does_not_echo_the_secret() {
    let text = MINIMAL.replace("http://127.0.0.1:8547", "ftp://host/SECRETKEY");
    let err = load(&text).expect_err("ftp").to_string();
    assert!(err.contains("scheme `ftp`"), "{err}");
    assert!(!err.contains("SECRETKEY"), "{err}");
}

#[test]
fn secret_url_display_hides_path_query_and_credentials() {
    let u = SecretUrl::parse("https://user:pw@mainnet.example.com:8443/v3/KEY123?apikey=K2")
        .expect("url");
    let shown = format!("{u} {u:?}");
    assert!(
        !shown.contains("KEY123") && !shown.contains("K2") && !shown.contains("pw"),
        "{shown}"
    );
    assert!(
        shown.contains("https://mainnet.example.com:8443/…"),
        "{shown}"
    );
    assert_eq!(
        SecretUrl::parse("http://127.0.0.1:8545")
            .expect("url")
            .to_string(),
        "http://127.0.0.1:8545"
    );
}

#[test]
fn env_overrides_set_nested_keys_and_array_entries() {
    let overrides = [
        EnvOverride::new("KEEL_GATEWAY__LISTEN", "0.0.0.0:1234").expect("override"),
        EnvOverride::new("KEEL_CHAINS__0__UPSTREAMS__1__WEIGHT", "7").expect("override"),
        EnvOverride::new("KEEL_LOG__FORMAT", "json").expect("override"),
    ];
    let c = Config::from_toml(MINIMAL, "keel.toml", &overrides).expect("valid");
    assert_eq!(c.gateway.listen.port(), 1234);
    assert_eq!(c.chains[0].upstreams[1].weight, 7);
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(EnvOverride::new("KEEL_DATA_DIR", "x").is_none());
}

#[test]
fn env_override_of_unknown_key_is_refused_by_name() {
    let overrides = [EnvOverride::new("KEEL_GATEWAY__LISTN", "1").expect("override")];
    let err = Config::from_toml(MINIMAL, "keel.toml", &overrides)
        .expect_err("unknown")
        .to_string();
    assert!(err.contains("KEEL_GATEWAY__LISTN"), "{err}");
    assert!(err.contains("listn"), "{err}");
}

#[test]
fn url_file_is_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("url");
    std::fs::write(&file, "https://node.example/key\n").expect("write");
    let text = MINIMAL.replace(
        "url = \"http://127.0.0.1:8547\"",
        &format!("url_file = {:?}", file.display().to_string()),
    );
    let c = load(&text).expect("valid");
    assert_eq!(
        c.chains[0].upstreams[1]
            .url
            .as_ref()
            .map(|u| u.expose().as_str()),
        Some("https://node.example/key")
    );
}

#[test]
fn embedded_default_is_a_valid_devnet() {
    let c = Config::from_toml(Config::EMBEDDED_DEFAULT, "<embedded defaults>", &[]).expect("valid");
    assert_eq!(c.devnet.as_ref().map(|d| d.nodes), Some(3));
    // The devnet is monitored, with the status page on loopback.
    let m = c.monitor.as_ref().expect("monitor on by default");
    assert_eq!(
        m.status.listen,
        Some("127.0.0.1:9546".parse().expect("addr"))
    );
    assert_eq!(m.disable_rules, ["UpstreamNoPeers"]);
}

#[test]
fn example_configs_are_valid() {
    for name in ["keel.dev.toml", "keel.prod.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config")
            .join(name);
        let text = std::fs::read_to_string(&path).expect("example exists");
        Config::from_toml(&text, name, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn verify_defaults_prove_account_reads_when_roots_can_be_had() {
    let c = load(MINIMAL).expect("valid");
    let v = &c.chains[0].verify;
    assert_eq!(v.mode, VerifyMode::None);
    assert_eq!((v.quorum, v.fanout, v.evidence_threshold), (2, 3, 3));
    assert_eq!(v.late_answers, LateAnswers::Ignore);
    assert_eq!(v.fallback, Fallback::Error);
    // Two upstreams can agree on a state root: account reads are proven, the rest is not.
    assert_eq!(v.mode_for("eth_getBalance", 2), VerifyMode::Proof);
    assert_eq!(v.mode_for("eth_getStorageAt", 2), VerifyMode::Proof);
    assert_eq!(v.mode_for("eth_call", 2), VerifyMode::None);
    // One upstream cannot: nothing is verified unless a header source is named.
    assert_eq!(v.mode_for("eth_getBalance", 1), VerifyMode::None);
    let mut v = v.clone();
    v.header_source = Some("a".to_owned());
    assert_eq!(v.mode_for("eth_getBalance", 1), VerifyMode::Proof);
    v.account = Some(VerifyMode::None);
    assert_eq!(v.mode_for("eth_getBalance", 3), VerifyMode::None);
}

#[test]
fn verify_table_sets_mode_and_per_method_overrides() {
    let text = format!(
        "{MINIMAL}[chains.verify]\nmode = \"quorum\"\nquorum = 2\nfanout = 4\nevidence_threshold = 5\n[chains.verify.methods]\neth_getBalance = \"proof\"\neth_gasPrice = \"none\"\n"
    );
    let c = load(&text).expect("valid");
    let v = &c.chains[0].verify;
    assert_eq!(v.mode_for("eth_call", 4), VerifyMode::Quorum);
    assert_eq!(v.mode_for("eth_getBalance", 4), VerifyMode::Proof);
    assert_eq!(v.mode_for("eth_gasPrice", 4), VerifyMode::None);
    assert_eq!((v.quorum, v.fanout, v.evidence_threshold), (2, 4, 5));
    let bad = format!("{MINIMAL}[chains.verify]\nmode = \"maybe\"\n");
    assert!(load(&bad).is_err());
    let unknown = format!("{MINIMAL}[chains.verify]\nquorom = 2\n");
    assert!(load(&unknown).is_err());
}

#[test]
fn verify_table_takes_fan_out_fallback_and_trust_settings() {
    let root = format!("0x{}", "ab".repeat(32));
    let text = format!(
        "{MINIMAL}[chains.verify]\nhedge_after = \"20ms\"\nlate_answers = \"check\"\nfallback = \"largest\"\nheader_source = \"b\"\n[[chains.verify.checkpoints]]\nblock = 7\nstate_root = \"{root}\"\n"
    );
    let c = load(&text).expect("valid");
    let v = &c.chains[0].verify;
    assert_eq!(v.hedge_after, Some(std::time::Duration::from_millis(20)));
    assert_eq!(v.late_answers, LateAnswers::Check);
    assert_eq!(v.fallback, Fallback::Largest);
    assert_eq!(v.header_source.as_deref(), Some("b"));
    assert_eq!(
        v.checkpoints,
        vec![Checkpoint {
            block: 7,
            state_root: root
        }]
    );
}

#[test]
fn verify_settings_that_cannot_work_are_refused() {
    let cases = [
        (
            "quorum = 4\n",
            "chains.0.verify.fanout",
            "cannot be reached",
        ),
        (
            "quorum = 0\n",
            "chains.0.verify.fanout",
            "cannot be reached",
        ),
        (
            "hedge_after = \"0s\"\n",
            "chains.0.verify.hedge_after",
            "longer than zero",
        ),
        (
            "header_source = \"zz\"\n",
            "chains.0.verify.header_source",
            "`zz` is not an upstream",
        ),
        (
            "mode = \"proof\"\nquorum = 3\nfanout = 3\n",
            "chains.0.verify.mode",
            "needs state roots from 3 upstreams",
        ),
        (
            "[[chains.verify.checkpoints]]\nblock = 1\nstate_root = \"0x12\"\n",
            "chains.0.verify.checkpoints.0.state_root",
            "not a 32-byte hash",
        ),
        (
            "fallback = \"coin\"\n",
            "keel.toml:16",
            "unknown variant `coin`",
        ),
    ];
    for (table, key, problem) in cases {
        let text = format!("{MINIMAL}[chains.verify]\n{table}");
        let e = load(&text).expect_err(table).to_string();
        assert!(e.contains(key) && e.contains(problem), "{table}: {e}");
    }
    // The default with one upstream is valid: account reads fall back to unverified.
    let one = MINIMAL.replace(
        "[[chains.upstreams]]\nname = \"b\"\nurl = \"http://127.0.0.1:8547\"\n",
        "",
    );
    let c = load(&one).expect("valid");
    assert_eq!(c.chains[0].upstreams.len(), 1);
    assert_eq!(
        c.chains[0].verify.mode_for("eth_getBalance", 1),
        VerifyMode::None
    );
}

#[test]
fn gateway_workers_are_bounded() {
    let c = load(&MINIMAL.replace("[admin]", "workers = 3\n[admin]")).expect("valid");
    assert_eq!(c.gateway.workers, Some(3));
    let e = load(&MINIMAL.replace("[admin]", "workers = 0\n[admin]"))
        .expect_err("zero workers")
        .to_string();
    assert!(
        e.contains("gateway.workers") && e.contains("out of range"),
        "{e}"
    );
}

#[test]
fn content_timeouts_must_be_longer_than_zero() {
    let c = load(&format!(
        "{MINIMAL}[content]\nupload_idle_timeout = \"2s\"\n"
    ))
    .expect("valid");
    assert_eq!(
        c.content.map(|c| c.upload_idle_timeout),
        Some(Duration::from_secs(2))
    );
    let e = load(&format!(
        "{MINIMAL}[content]\nupload_idle_timeout = \"0s\"\n"
    ))
    .expect_err("zero")
    .to_string();
    assert!(
        e.starts_with("keel.toml:16:")
            && e.contains("`content.upload_idle_timeout`")
            && e.contains("longer than zero"),
        "{e}"
    );
}

#[test]
fn log_files_cover_the_retention() {
    let c = load(&format!("{MINIMAL}\n[log]\nfile = \"/tmp/keel.log\"\nfile_retention = \"2d\"\nfile_rotation = \"hourly\"\n")).expect("valid");
    assert_eq!(c.log.file_rotation.files_for(c.log.file_retention), 48);
    assert_eq!(
        LogRotation::Daily.files_for(LogConfig::default().file_retention),
        90
    );
    assert_eq!(LogRotation::Daily.files_for(Duration::from_secs(1)), 1);
}

#[test]
fn content_listing_limits_must_be_at_least_one() {
    let c = load(&format!(
        "{MINIMAL}[content]\nmax_dir_entries = 5\nmax_dir_shard_blocks = 2\n"
    ))
    .expect("valid");
    assert_eq!(
        c.content
            .map(|c| (c.max_dir_entries, c.max_dir_shard_blocks)),
        Some((5, 2))
    );
    for key in ["max_dir_entries", "max_dir_shard_blocks"] {
        let e = load(&format!("{MINIMAL}[content]\n{key} = 0\n"))
            .expect_err("zero")
            .to_string();
        assert!(
            e.contains(&format!("`content.{key}`")) && e.contains("at least 1"),
            "{e}"
        );
    }
}

#[test]
fn methods_whose_answers_differ_between_honest_nodes_are_never_verified() {
    let c = load(&format!("{MINIMAL}[chains.verify]\nmode = \"quorum\"\n")).expect("valid");
    let v = &c.chains[0].verify;
    assert_eq!(v.mode_for("eth_call", 2), VerifyMode::Quorum);
    for m in [
        "eth_blockNumber",
        "eth_gasPrice",
        "web3_clientVersion",
        "net_peerCount",
        "eth_syncing",
        "txpool_content",
        "eth_estimateGas",
    ] {
        assert_eq!(v.mode_for(m, 2), VerifyMode::None, "{m}");
        assert!(!v.client_methods.iter().any(|c| c == m), "{m}");
    }
    assert!(v.client_methods.iter().any(|c| c == "eth_call"));
    assert!(v.client_methods.iter().any(|c| c == "eth_getLogs"));
    let cases = [
        (
            "[chains.verify.methods]\neth_gasPrice = \"quorum\"\n",
            "chains.0.verify.methods",
            "eth_gasPrice cannot be verified",
        ),
        (
            "client_methods = [\"eth_call\", \"txpool_status\"]\n",
            "chains.0.verify.client_methods.1",
            "txpool_status cannot be verified",
        ),
        (
            "client_methods = [\"\"]\n",
            "chains.0.verify.client_methods.0",
            "is not a method name",
        ),
    ];
    for (table, key, problem) in cases {
        let text = format!("{MINIMAL}[chains.verify]\n{table}");
        let e = load(&text).expect_err(table).to_string();
        assert!(e.contains(key) && e.contains(problem), "{table}: {e}");
    }
    // Saying "none" for one of them is harmless.
    load(&format!(
        "{MINIMAL}[chains.verify.methods]\neth_gasPrice = \"none\"\n"
    ))
    .expect("valid");
    let c = load(&format!(
        "{MINIMAL}[chains.verify]\nclient_methods = [\"debug_traceTransaction\"]\n"
    ))
    .expect("valid");
    assert_eq!(
        c.chains[0].verify.client_methods,
        ["debug_traceTransaction"]
    );
}

#[test]
fn the_evidence_log_is_bounded() {
    let c = load(MINIMAL).expect("valid");
    assert_eq!(c.evidence.max_bytes, 256 * 1024 * 1024);
    assert_eq!(c.evidence.max_age, Duration::from_secs(90 * 24 * 3600));
    let c = load(&format!(
        "{MINIMAL}[evidence]\nmax_bytes = 1048576\nmax_age = \"7d\"\n"
    ))
    .expect("valid");
    assert_eq!(c.evidence.max_bytes, 1 << 20);
    assert_eq!(c.evidence.max_age, Duration::from_secs(7 * 24 * 3600));
    for (table, key, problem) in [
        ("max_bytes = 1000\n", "evidence.max_bytes", "too small"),
        ("max_age = \"0s\"\n", "evidence.max_age", "longer than zero"),
    ] {
        let e = load(&format!("{MINIMAL}[evidence]\n{table}"))
            .expect_err(table)
            .to_string();
        assert!(e.contains(key) && e.contains(problem), "{table}: {e}");
    }
}
