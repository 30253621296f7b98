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
        if let Some(c) = &self.content {
            for (d, key) in [
                (c.missing_block_timeout, "missing_block_timeout"),
                (c.request_timeout, "request_timeout"),
                (c.upload_idle_timeout, "upload_idle_timeout"),
            ] {
                positive(d, vec![Key("content"), Key(key)])?;
            }
        }
        if let Some(m) = &self.monitor {
            crate::monitor::validate(self, m)?;
        }
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
            }
        }
        Ok(())
    }
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
