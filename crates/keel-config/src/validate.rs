//! Semantic rules checked after parsing, reported with the line of the offending key.

use std::{collections::HashSet, time::Duration};

use crate::{Config, ConfigError, error::line_of};

/// One segment of a key path: a table key or an array index.
#[derive(Debug, Clone)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A broken rule, before it is located in the source text.
#[derive(Debug)]
pub(crate) struct Violation {
    path: Vec<Seg>,
    message: String,
    fix: String,
}

impl Violation {
    pub(crate) fn new(path: Vec<Seg>, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// Turns the violation into an error naming `origin`, the key's line in `text` and the key.
    pub(crate) fn locate(self, origin: &str, text: &str) -> ConfigError {
        let key = self
            .path
            .iter()
            .map(|s| match s {
                Seg::Key(k) => (*k).to_owned(),
                Seg::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".");
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line: find_line(text, &self.path),
            key,
            message: self.message,
            fix: self.fix,
        }
    }
}

/// Line of the deepest part of `path` present in `text`.
fn find_line(text: &str, path: &[Seg]) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    find_span(doc.as_table(), path, None).map(|span| line_of(text, span.start))
}

fn find_span(table: &toml_edit::Table, path: &[Seg], best: Option<Span>) -> Option<Span> {
    let Some((Seg::Key(k), rest)) = path.split_first() else {
        return best;
    };
    let Some((key, item)) = table.get_key_value(k) else {
        return best;
    };
    let best = key.span().or(best);
    match (rest.split_first(), item) {
        (Some((Seg::Index(i), rest)), toml_edit::Item::ArrayOfTables(a)) => match a.get(*i) {
            Some(t) => find_span(t, rest, t.span().or(best)),
            None => best,
        },
        (Some((Seg::Key(_), _)), toml_edit::Item::Table(t)) => find_span(t, rest, best),
        _ => best,
    }
}

type Span = std::ops::Range<usize>;

impl Config {
    /// Checks the rules that parsing alone cannot; the first broken rule is returned.
    pub(crate) fn validate(&self) -> Result<(), Violation> {
        use Seg::{Index, Key};
        let g = &self.gateway;
        if g.max_body_bytes < 1024 {
            return Err(Violation::new(
                vec![Key("gateway"), Key("max_body_bytes")],
                format!(
                    "{} bytes is too small for any JSON-RPC request",
                    g.max_body_bytes
                ),
                "use at least 1024",
            ));
        }
        if g.max_batch_len == 0 {
            return Err(Violation::new(
                vec![Key("gateway"), Key("max_batch_len")],
                "must be at least 1",
                "use 1 to refuse batches of more than one request",
            ));
        }
        positive(
            g.request_timeout,
            vec![Key("gateway"), Key("request_timeout")],
        )?;
        if g.max_concurrent_requests == 0 {
            return Err(Violation::new(
                vec![Key("gateway"), Key("max_concurrent_requests")],
                "must be at least 1",
                "the default is 4096",
            ));
        }
        if g.workers.is_some_and(|w| !(1..=1024).contains(&w)) {
            return Err(Violation::new(
                vec![Key("gateway"), Key("workers")],
                "is out of range",
                "use 1 to 1024, or leave it out for four per core",
            ));
        }
        if g.listen == self.admin.listen && g.listen.port() != 0 {
            return Err(Violation::new(
                vec![Key("admin"), Key("listen")],
                format!("{} is also the gateway's address", g.listen),
                "give the admin listener its own port",
            ));
        }
        crate::listener::validate(&self.listeners)?;
        if let Some(c) = &self.content {
            for (d, key) in [
                (c.missing_block_timeout, "missing_block_timeout"),
                (c.request_timeout, "request_timeout"),
                (c.upload_idle_timeout, "upload_idle_timeout"),
            ] {
                positive(d, vec![Key("content"), Key(key)])?;
            }
            if c.max_concurrent_uploads == 0 {
                return Err(Violation::new(
                    vec![Key("content"), Key("max_concurrent_uploads")],
                    "is 0, which refuses every upload",
                    "use 1 or more (default 16), or turn the RPC off with rpc_listen = \"off\"",
                ));
            }
            for (n, key) in [
                (c.max_dir_entries, "max_dir_entries"),
                (c.max_dir_shard_blocks, "max_dir_shard_blocks"),
            ] {
                if n == 0 {
                    return Err(Violation::new(
                        vec![Key("content"), Key(key)],
                        "must be at least 1",
                        "leave it out for the default, or raise it for larger directories",
                    ));
                }
            }
        }
        if let Some(m) = &self.monitor {
            crate::monitor::validate(self, m)?;
        }
        let e = &self.evidence;
        if e.max_bytes < 64 * 1024 {
            return Err(Violation::new(
                vec![Key("evidence"), Key("max_bytes")],
                format!("{} bytes is too small for the evidence log", e.max_bytes),
                "use at least 65536 (64 KiB); the default is 268435456 (256 MiB)",
            ));
        }
        positive(e.max_age, vec![Key("evidence"), Key("max_age")])?;
        if self.chains.is_empty() && self.devnet.is_none() {
            return Err(Violation::new(
                vec![Key("chains")],
                "no chain is configured",
                "add a [[chains]] table with its [[chains.upstreams]], or a [devnet] table",
            ));
        }
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        if let Some(d) = &self.devnet {
            if !(1..=16).contains(&d.nodes) {
                return Err(Violation::new(
                    vec![Key("devnet"), Key("nodes")],
                    format!("{} nodes is out of range", d.nodes),
                    "use 1 to 16",
                ));
            }
            if d.block_time < Duration::from_millis(10) {
                return Err(Violation::new(
                    vec![Key("devnet"), Key("block_time")],
                    "is shorter than 10ms",
                    "use at least 10ms, e.g. \"1s\"",
                ));
            }
            chain_name(&d.name, vec![Key("devnet"), Key("name")])?;
            names.insert(d.name.as_str());
            ids.insert(d.chain_id);
        }
        for (ci, c) in self.chains.iter().enumerate() {
            let at = |k: &'static str| vec![Key("chains"), Index(ci), Key(k)];
            chain_name(&c.name, at("name"))?;
            if !names.insert(c.name.as_str()) {
                return Err(Violation::new(
                    at("name"),
                    format!("chain name `{}` is used twice", c.name),
                    "give every chain (and the devnet) its own name",
                ));
            }
            if c.chain_id == 0 || !ids.insert(c.chain_id) {
                return Err(Violation::new(
                    at("chain_id"),
                    format!("chain id {} is zero or used twice", c.chain_id),
                    "give every chain its own EIP-155 chain id",
                ));
            }
            positive(c.head_poll_interval, at("head_poll_interval"))?;
            let h = &c.health;
            if h.failure_threshold == 0 {
                return Err(Violation::new(
                    vec![
                        Key("chains"),
                        Index(ci),
                        Key("health"),
                        Key("failure_threshold"),
                    ],
                    "must be at least 1",
                    "the default is 3",
                ));
            }
            if !(h.degraded_error_rate > 0.0 && h.degraded_error_rate <= 1.0) {
                return Err(Violation::new(
                    vec![
                        Key("chains"),
                        Index(ci),
                        Key("health"),
                        Key("degraded_error_rate"),
                    ],
                    format!("{} is not a rate in (0, 1]", h.degraded_error_rate),
                    "the default is 0.2",
                ));
            }
            positive(
                h.base_ejection,
                vec![
                    Key("chains"),
                    Index(ci),
                    Key("health"),
                    Key("base_ejection"),
                ],
            )?;
            if h.max_ejection < h.base_ejection {
                return Err(Violation::new(
                    vec![Key("chains"), Index(ci), Key("health"), Key("max_ejection")],
                    "is shorter than base_ejection",
                    "make max_ejection at least base_ejection",
                ));
            }
            for (list, entries) in [("allow", &c.methods.allow), ("deny", &c.methods.deny)] {
                if let Some(pos) = entries.iter().position(|m| m.trim().is_empty() || m == "*") {
                    return Err(Violation::new(
                        vec![Key("chains"), Index(ci), Key("methods"), Key(list)],
                        format!("entry {pos} is empty or a bare `*`"),
                        "name methods (`eth_call`) or prefixes (`debug_*`)",
                    ));
                }
            }
            verify(c, ci)?;
            response_limit(c.max_response_bytes, at("max_response_bytes"))?;
            if c.upstreams.is_empty() {
                return Err(Violation::new(
                    at("upstreams"),
                    format!("chain `{}` has no upstream", c.name),
                    "add at least one [[chains.upstreams]] with a name and url",
                ));
            }
            let mut up_names = HashSet::new();
            for (ui, u) in c.upstreams.iter().enumerate() {
                let at = |k: &'static str| {
                    vec![
                        Key("chains"),
                        Index(ci),
                        Key("upstreams"),
                        Index(ui),
                        Key(k),
                    ]
                };
                if u.name.is_empty() || !up_names.insert(u.name.as_str()) {
                    return Err(Violation::new(
                        at("name"),
                        format!(
                            "upstream name `{}` is empty or used twice in chain `{}`",
                            u.name, c.name
                        ),
                        "give every upstream of a chain its own name",
                    ));
                }
                match (&u.url, &u.url_file) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(Violation::new(
                            at("url"),
                            format!(
                                "upstream `{}` needs exactly one of `url` and `url_file`",
                                u.name
                            ),
                            "set url = \"https://…\" or url_file = \"/path/to/secret\"",
                        ));
                    }
                    _ => {}
                }
                if u.weight == 0 {
                    return Err(Violation::new(
                        at("weight"),
                        "must be at least 1",
                        "use tier = \"backup\" to keep an upstream for failover only",
                    ));
                }
                if u.max_in_flight == 0 {
                    return Err(Violation::new(
                        at("max_in_flight"),
                        "must be at least 1",
                        "the default is 256",
                    ));
                }
                positive(u.request_timeout, at("request_timeout"))?;
                positive(u.connect_timeout, at("connect_timeout"))?;
                if let Some(max) = u.max_response_bytes {
                    response_limit(max, at("max_response_bytes"))?;
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// Refuses two upstreams of one chain at the same URL: one node would count twice in a
    /// quorum (and get twice its share of traffic). Run once `url_file`s are read. URLs are
    /// compared as [`node_key`] writes them; the error shows only scheme, host and port.
    pub(crate) fn distinct_upstreams(&self) -> Result<(), Violation> {
        use Seg::{Index, Key};
        for (ci, c) in self.chains.iter().enumerate() {
            let mut seen: Vec<(String, &crate::UpstreamConfig)> = Vec::new();
            for (ui, u) in c.upstreams.iter().enumerate() {
                let Some(url) = &u.url else { continue };
                let key = node_key(url.expose());
                if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                    let field = if u.url_file.is_some() {
                        "url_file"
                    } else {
                        "url"
                    };
                    return Err(Violation::new(
                        vec![
                            Key("chains"),
                            Index(ci),
                            Key("upstreams"),
                            Index(ui),
                            Key(field),
                        ],
                        format!(
                            "upstreams `{}` and `{}` of chain `{}` are the same node ({url}): it would count twice in a quorum",
                            first.name, u.name, c.name
                        ),
                        "remove one of them (URLs are compared without credentials, letter case, default port and trailing slash)",
                    ));
                }
                seen.push((key, u));
            }
        }
        Ok(())
    }
}

/// The node a URL reaches, for finding duplicates: scheme, host (lower case, without a trailing
/// dot), port (the scheme's default when absent), path without trailing slashes, and query.
/// Credentials (user info) and the fragment are left out: they do not change the node. Names
/// that resolve to the same address (`localhost` and `127.0.0.1`, DNS aliases) are not
/// resolved, so they compare as different.
fn node_key(url: &url::Url) -> String {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let port = url.port_or_known_default().unwrap_or_default();
    let path = url.path().trim_end_matches('/');
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}://{host}:{port}{path}{query}", url.scheme())
}

/// `[chains.verify]` of chain number `ci`.
fn verify(c: &crate::ChainConfig, ci: usize) -> Result<(), Violation> {
    use Seg::{Index, Key};
    let v = &c.verify;
    let at = |k: &'static str| vec![Key("chains"), Index(ci), Key("verify"), Key(k)];
    if v.quorum == 0 || v.fanout < v.quorum {
        return Err(Violation::new(
            at("fanout"),
            format!(
                "quorum {} of fanout {} cannot be reached",
                v.quorum, v.fanout
            ),
            "use 1 <= quorum <= fanout, e.g. quorum = 2, fanout = 3",
        ));
    }
    if v.hedge_after.is_some_and(|d| d.is_zero()) {
        return Err(Violation::new(
            at("hedge_after"),
            "must be longer than zero",
            "leave it out to ask all fanout upstreams at once",
        ));
    }
    if let Some(h) = &v.header_source
        && !c.upstreams.iter().any(|u| &u.name == h)
    {
        return Err(Violation::new(
            at("header_source"),
            format!("`{h}` is not an upstream of chain `{}`", c.name),
            "name one of the chain's [[chains.upstreams]]",
        ));
    }
    for (i, cp) in v.checkpoints.iter().enumerate() {
        let hex = cp.state_root.strip_prefix("0x").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Violation::new(
                vec![
                    Key("chains"),
                    Index(ci),
                    Key("verify"),
                    Key("checkpoints"),
                    Index(i),
                    Key("state_root"),
                ],
                format!("`{}` is not a 32-byte hash", cp.state_root),
                "write 0x followed by 64 hex digits, e.g. the stateRoot of eth_getBlockByNumber",
            ));
        }
    }
    for (method, mode) in &v.methods {
        if *mode != crate::VerifyMode::None && crate::never_verified(method) {
            return Err(Violation::new(
                vec![Key("chains"), Index(ci), Key("verify"), Key("methods")],
                format!(
                    "{method} cannot be verified: its answers legitimately differ between honest upstreams (or it is not a read), so a check would penalise honest ones"
                ),
                format!("remove `{method} = \"{}\"`", mode.as_str()),
            ));
        }
    }
    for (i, method) in v.client_methods.iter().enumerate() {
        let at = vec![
            Key("chains"),
            Index(ci),
            Key("verify"),
            Key("client_methods"),
            Index(i),
        ];
        if method.is_empty() || method.trim() != method {
            return Err(Violation::new(
                at,
                format!("`{method}` is not a method name"),
                "write JSON-RPC method names such as \"eth_call\"",
            ));
        }
        if crate::never_verified(method) {
            return Err(Violation::new(
                at,
                format!(
                    "{method} cannot be verified: its answers legitimately differ between honest upstreams (or it is not a read)"
                ),
                "remove it from client_methods",
            ));
        }
    }
    // Proof mode needs state roots: from `quorum` upstreams or a header source. Checkpoints
    // alone cover only their blocks, so they do not count.
    let roots = c.upstreams.len() >= v.quorum || v.header_source.is_some();
    let explicit_proof = v.mode == crate::VerifyMode::Proof
        || v.account == Some(crate::VerifyMode::Proof)
        || v.methods.values().any(|m| *m == crate::VerifyMode::Proof);
    if explicit_proof && !roots {
        return Err(Violation::new(
            at("mode"),
            format!(
                "proof mode needs state roots from {} upstreams but chain `{}` has {}",
                v.quorum,
                c.name,
                c.upstreams.len()
            ),
            "add upstreams, lower quorum, or set header_source to a node you trust",
        ));
    }
    Ok(())
}

/// Smallest `max_response_bytes`: the head poll of a busy block (its transaction hashes) must
/// fit.
const MIN_RESPONSE_BYTES: usize = 1024 * 1024;

fn response_limit(max: usize, path: Vec<Seg>) -> Result<(), Violation> {
    if max < MIN_RESPONSE_BYTES {
        return Err(Violation::new(
            path,
            format!("{max} bytes is too small: a busy block's head poll would not fit"),
            format!(
                "use at least {MIN_RESPONSE_BYTES} (1 MiB); the default is {} (160 MiB)",
                crate::DEFAULT_MAX_RESPONSE_BYTES
            ),
        ));
    }
    Ok(())
}

pub(crate) fn positive(d: Duration, path: Vec<Seg>) -> Result<(), Violation> {
    if d.is_zero() {
        return Err(Violation::new(
            path,
            "must be longer than zero",
            "use a duration such as \"500ms\" or \"5s\"",
        ));
    }
    Ok(())
}

fn chain_name(name: &str, path: Vec<Seg>) -> Result<(), Violation> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.bytes().all(|b| b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        return Ok(());
    }
    Err(Violation::new(
        path,
        format!("`{name}` is not a usable chain name"),
        "use 1 to 64 letters, digits, `-`, `_` or `.`, not only digits (the path /rpc/<digits> is the chain id)",
    ))
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigError};

    /// A chain `c` with upstreams `a` and `b`; `{a}` and `{b}` are their extra lines.
    fn two_upstreams(a: &str, b: &str) -> String {
        format!(
            "[[chains]]\nname = \"c\"\nchain_id = 1\n\n[[chains.upstreams]]\nname = \"a\"\n{a}\n\n[[chains.upstreams]]\nname = \"b\"\n{b}\n"
        )
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "keel.toml", &[])
    }

    #[test]
    fn two_upstreams_at_one_url_are_refused_naming_both_without_secrets() {
        let e = load(&two_upstreams(
            "url = \"https://node.example/v2/SECRETKEY\"",
            "url = \"https://node.example/v2/SECRETKEY\"",
        ))
        .expect_err("one node twice")
        .to_string();
        assert!(
            e.starts_with("keel.toml:11:")
                && e.contains("`chains.0.upstreams.1.url`")
                && e.contains("upstreams `a` and `b` of chain `c` are the same node")
                && e.contains("https://node.example/…")
                && e.contains("quorum"),
            "{e}"
        );
        assert!(!e.contains("SECRETKEY"), "{e}");
    }

    #[test]
    fn urls_are_compared_without_case_default_port_trailing_slash_or_credentials() {
        for (a, b) in [
            ("HTTPS://Node.Example/rpc/", "https://node.example/rpc"),
            ("https://node.example:443/rpc", "https://node.example/rpc//"),
            ("http://node.example:80", "http://NODE.EXAMPLE/"),
            ("http://node.example.:8545/", "http://node.example:8545"),
            (
                "https://user:PASSWORD@node.example/x",
                "https://other:HUNTER2@node.example/x#frag",
            ),
        ] {
            let e = load(&two_upstreams(
                &format!("url = \"{a}\""),
                &format!("url = \"{b}\""),
            ))
            .expect_err(&format!("{a} and {b} are one node"))
            .to_string();
            assert!(e.contains("same node"), "{e}");
            assert!(!e.contains("PASSWORD") && !e.contains("HUNTER2"), "{e}");
        }
        // Another port, path, query or scheme is another node.
        for (a, b) in [
            ("http://127.0.0.1:8545", "http://127.0.0.1:8546"),
            ("https://node.example/a", "https://node.example/b"),
            ("https://node.example/?key=1", "https://node.example/?key=2"),
            ("http://node.example", "https://node.example"),
        ] {
            load(&two_upstreams(
                &format!("url = \"{a}\""),
                &format!("url = \"{b}\""),
            ))
            .unwrap_or_else(|e| panic!("{a} and {b} are two nodes: {e}"));
        }
    }

    #[test]
    fn a_url_file_naming_another_upstreams_url_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("url");
        std::fs::write(&file, "https://node.example/v2/SECRETKEY\n").expect("write");
        let e = load(&two_upstreams(
            "url = \"https://node.example/v2/SECRETKEY/\"",
            &format!("url_file = \"{}\"", file.display()),
        ))
        .expect_err("one node twice")
        .to_string();
        assert!(
            e.starts_with("keel.toml:11:") && e.contains("`chains.0.upstreams.1.url_file`"),
            "{e}"
        );
        assert!(!e.contains("SECRETKEY"), "{e}");
    }

    #[test]
    fn answer_limits_default_per_chain_and_are_set_per_upstream() {
        let c = load(&two_upstreams(
            "url = \"http://127.0.0.1:1\"\nmax_response_bytes = 2097152",
            "url = \"http://127.0.0.1:2\"",
        ))
        .expect("valid");
        let chain = &c.chains[0];
        assert_eq!(chain.max_response_bytes, 160 * 1024 * 1024);
        assert_eq!(chain.upstreams[0].max_response_bytes, Some(2 << 20));
        assert_eq!(chain.upstreams[1].max_response_bytes, None);
        let text = two_upstreams(
            "url = \"http://127.0.0.1:1\"",
            "url = \"http://127.0.0.1:2\"",
        )
        .replace(
            "chain_id = 1\n",
            "chain_id = 1\nmax_response_bytes = 1048576\n",
        );
        assert_eq!(
            load(&text).expect("valid").chains[0].max_response_bytes,
            1 << 20
        );
    }

    #[test]
    fn answer_limits_too_small_for_a_head_poll_are_refused() {
        let e = load(&two_upstreams(
            "url = \"http://127.0.0.1:1\"",
            "url = \"http://127.0.0.1:2\"\nmax_response_bytes = 1000",
        ))
        .expect_err("too small")
        .to_string();
        assert!(
            e.starts_with("keel.toml:12:")
                && e.contains("`chains.0.upstreams.1.max_response_bytes`")
                && e.contains("at least 1048576"),
            "{e}"
        );
        let text = two_upstreams(
            "url = \"http://127.0.0.1:1\"",
            "url = \"http://127.0.0.1:2\"",
        )
        .replace("chain_id = 1\n", "chain_id = 1\nmax_response_bytes = 0\n");
        let e = load(&text).expect_err("zero").to_string();
        assert!(
            e.starts_with("keel.toml:4:") && e.contains("`chains.0.max_response_bytes`"),
            "{e}"
        );
    }
}
