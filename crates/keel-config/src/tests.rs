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
fn verify_defaults_keep_answers_unverified() {
    let c = load(MINIMAL).expect("valid");
    let v = &c.chains[0].verify;
    assert_eq!(v.mode, VerifyMode::None);
    assert_eq!((v.quorum, v.fanout, v.evidence_threshold), (2, 3, 3));
    assert_eq!(v.mode_for("eth_getBalance"), VerifyMode::None);
}

#[test]
fn verify_table_sets_mode_and_per_method_overrides() {
    let text = format!(
        "{MINIMAL}[chains.verify]\nmode = \"quorum\"\nquorum = 3\nfanout = 4\nevidence_threshold = 5\n[chains.verify.methods]\neth_getBalance = \"proof\"\neth_gasPrice = \"none\"\n"
    );
    let c = load(&text).expect("valid");
    let v = &c.chains[0].verify;
    assert_eq!(v.mode_for("eth_call"), VerifyMode::Quorum);
    assert_eq!(v.mode_for("eth_getBalance"), VerifyMode::Proof);
    assert_eq!(v.mode_for("eth_gasPrice"), VerifyMode::None);
    assert_eq!((v.quorum, v.fanout, v.evidence_threshold), (3, 4, 5));
    let bad = format!("{MINIMAL}[chains.verify]\nmode = \"maybe\"\n");
    assert!(load(&bad).is_err());
    let unknown = format!("{MINIMAL}[chains.verify]\nquorom = 2\n");
    assert!(load(&unknown).is_err());
}
