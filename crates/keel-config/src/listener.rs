//! `[listeners]`: connection limits and browser checks of every HTTP listener.
//!
//! One table per listener (`[listeners.gateway]`, `[listeners.admin]`,
//! `[listeners.content_gateway]`, `[listeners.content_rpc]`, `[listeners.status_page]`), each with the same keys. Every key
//! has a default; `max_connections` has one per listener ([`Listener::default_max_connections`]).
//! The listeners' addresses stay where they were (`[gateway] listen`, `[admin] listen`,
//! `[content] gateway_listen` / `rpc_listen`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::validate::{Seg, Violation};

/// The HTTP listeners of a node, named as their `[listeners.<name>]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The JSON-RPC gateway (`[gateway] listen`).
    Gateway,
    /// The admin listener (`[admin] listen`).
    Admin,
    /// The content store's trustless HTTP gateway (`[content] gateway_listen`).
    ContentGateway,
    /// The content store's Kubo RPC API (`[content] rpc_listen`).
    ContentRpc,
    /// The monitor's status page (`[monitor.status] listen`).
    StatusPage,
}

impl Listener {
    /// Every listener.
    pub const ALL: [Self; 5] = [
        Self::Gateway,
        Self::Admin,
        Self::ContentGateway,
        Self::ContentRpc,
        Self::StatusPage,
    ];

    /// Its name in `[listeners.<name>]`, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Admin => "admin",
            Self::ContentGateway => "content_gateway",
            Self::ContentRpc => "content_rpc",
            Self::StatusPage => "status_page",
        }
    }

    /// `max_connections` when unset: sized for what each listener serves (many clients on the
    /// gateway, a few scrapers on admin, readers on the content gateway, tools on the RPC).
    pub fn default_max_connections(self) -> usize {
        match self {
            Self::Gateway => 4096,
            Self::Admin => 64,
            Self::ContentGateway => 1024,
            Self::ContentRpc => 128,
            Self::StatusPage => 1024,
        }
    }
}

/// `[listeners]`: one table per listener.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    /// The JSON-RPC gateway.
    pub gateway: ListenerConfig,
    /// The admin listener.
    pub admin: ListenerConfig,
    /// The content store's trustless HTTP gateway (when `[content]` enables it).
    pub content_gateway: ListenerConfig,
    /// The content store's Kubo RPC API (when `[content]` enables it).
    pub content_rpc: ListenerConfig,
    /// The monitor's status page (when `[monitor]` serves it).
    pub status_page: ListenerConfig,
}

impl ListenersConfig {
    /// The table of `listener`.
    pub fn get(&self, listener: Listener) -> &ListenerConfig {
        match listener {
            Listener::Gateway => &self.gateway,
            Listener::Admin => &self.admin,
            Listener::ContentGateway => &self.content_gateway,
            Listener::ContentRpc => &self.content_rpc,
            Listener::StatusPage => &self.status_page,
        }
    }
}

/// `[listeners.<name>]`: limits and browser checks of one listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Most connections open at once. At the cap the listener stops accepting until one closes;
    /// new connections wait in the kernel's listen backlog. Unset: the listener's default
    /// ([`Listener::default_max_connections`]).
    pub max_connections: Option<usize>,
    /// A connection must deliver a complete request head within this long: from its opening,
    /// and for HTTP/1 from the first byte of each following request. Slower ones are closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/1 keep-alive and
    /// HTTP/2 alike).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTP/2: most requests (streams) in flight at once on one connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2: largest request header list, in bytes (decoded, as HTTP/2 counts it).
    pub http2_max_header_list_size: u32,
    /// HTTP/2: flow-control window of each request body, in bytes: how much a client may send
    /// on one stream before keel reads it.
    pub http2_stream_window: u32,
    /// HTTP/2: flow-control window of a whole connection, in bytes.
    pub http2_connection_window: u32,
    /// HTTP/2: interval of keep-alive pings.
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_interval: Duration,
    /// HTTP/2: a connection whose peer does not answer a keep-alive ping within this long is
    /// closed.
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_timeout: Duration,
    /// Web pages allowed to call this listener from a browser: exact origins
    /// (`https://app.example`, `http://localhost:3000`), `null`, or `*` for every page. Browser
    /// requests from any other origin are refused with 403, and CORS is answered only for
    /// these. On the gateway, `*` admits pages for ordinary calls but never for node control
    /// or signing with the node's accounts (list an origin to trust it with those). Default:
    /// none. Not used by the content gateway, which serves public content to every page.
    pub allowed_origins: Vec<String>,
    /// Names clients may reach this listener by (the request's `Host`): exact names
    /// (`rpc.example.com`), `*.example.com` for subdomains, or `*` for any. IP addresses,
    /// `localhost` and `*.localhost` are always accepted. Unset: any name when the listener is
    /// bound beyond loopback, none other on loopback (so a DNS-rebinding page cannot reach it).
    pub allowed_hosts: Option<Vec<String>>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            max_connections: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            http2_max_concurrent_streams: 100,
            http2_max_header_list_size: 16 << 10,
            http2_stream_window: 1 << 20,
            http2_connection_window: 1 << 20,
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(20),
            allowed_origins: Vec::new(),
            allowed_hosts: None,
        }
    }
}

impl ListenerConfig {
    /// `max_connections`, or the default of `listener` when unset.
    pub fn max_connections_for(&self, listener: Listener) -> usize {
        self.max_connections
            .unwrap_or_else(|| listener.default_max_connections())
    }
}

/// Largest HTTP/2 flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: u32 = (1 << 31) - 1;
/// HTTP/2's initial window; smaller ones would stall every body.
const MIN_WINDOW: u32 = 65_535;

/// Whether `origin` is a serialized web origin: `scheme://host[:port]`, nothing after.
pub fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
}

/// Checks `[listeners]`.
pub(crate) fn validate(l: &ListenersConfig) -> Result<(), Violation> {
    use Seg::Key;
    for which in Listener::ALL {
        let c = l.get(which);
        let at = |k: &'static str| vec![Key("listeners"), Key(which.name()), Key(k)];
        if c.max_connections == Some(0) {
            return Err(Violation::new(
                at("max_connections"),
                "must be at least 1",
                format!(
                    "leave it out for the default of {}",
                    which.default_max_connections()
                ),
            ));
        }
        for (d, key) in [
            (c.header_timeout, "header_timeout"),
            (c.idle_timeout, "idle_timeout"),
            (c.http2_keep_alive_interval, "http2_keep_alive_interval"),
            (c.http2_keep_alive_timeout, "http2_keep_alive_timeout"),
        ] {
            if d.is_zero() {
                return Err(Violation::new(
                    at(key),
                    "must be longer than zero",
                    "use a duration such as \"10s\"",
                ));
            }
        }
        if c.http2_max_concurrent_streams == 0 {
            return Err(Violation::new(
                at("http2_max_concurrent_streams"),
                "must be at least 1",
                "the default is 100",
            ));
        }
        if c.http2_max_header_list_size < 1024 {
            return Err(Violation::new(
                at("http2_max_header_list_size"),
                format!(
                    "{} bytes is too small for any request's headers",
                    c.http2_max_header_list_size
                ),
                "use at least 1024; the default is 16384",
            ));
        }
        for (w, key) in [
            (c.http2_stream_window, "http2_stream_window"),
            (c.http2_connection_window, "http2_connection_window"),
        ] {
            if !(MIN_WINDOW..=MAX_WINDOW).contains(&w) {
                return Err(Violation::new(
                    at(key),
                    format!("{w} bytes is not a usable HTTP/2 window"),
                    format!("use {MIN_WINDOW} to {MAX_WINDOW}; the default is 1048576"),
                ));
            }
        }
        if matches!(which, Listener::ContentGateway | Listener::StatusPage)
            && !c.allowed_origins.is_empty()
        {
            return Err(Violation::new(
                at("allowed_origins"),
                format!(
                    "the {} serves public, read-only pages to every web page",
                    which.name()
                ),
                "remove the key; allowed_hosts still applies",
            ));
        }
        if let Some(bad) = c
            .allowed_origins
            .iter()
            .find(|o| !(o.as_str() == "*" || o.as_str() == "null" || is_origin(o)))
        {
            return Err(Violation::new(
                at("allowed_origins"),
                format!("`{bad}` is not an origin"),
                "write scheme://host[:port] with no path or trailing slash (as a browser sends it in Origin), `null`, or `*`",
            ));
        }
        if let Some(hosts) = &c.allowed_hosts
            && let Some(bad) = hosts.iter().find(|h| !is_host_pattern(h))
        {
            return Err(Violation::new(
                at("allowed_hosts"),
                format!("`{bad}` is not a host name"),
                "write a name without scheme, port or path (`rpc.example.com`), `*.example.com`, or `*`",
            ));
        }
    }
    Ok(())
}

fn is_host_pattern(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    h == "*"
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_host_patterns() {
        assert!(is_origin("https://app.example"));
        assert!(is_origin("http://localhost:3000"));
        assert!(is_origin("chrome-extension://abcdef"));
        assert!(!is_origin("https://app.example/"));
        assert!(!is_origin("app.example"));
        assert!(!is_origin("https://"));
        assert!(is_host_pattern("rpc.example.com"));
        assert!(is_host_pattern("*.example.com"));
        assert!(is_host_pattern("*"));
        assert!(!is_host_pattern("rpc.example.com:8545"));
        assert!(!is_host_pattern("https://rpc.example.com"));
        assert!(!is_host_pattern("*."));
    }

    #[test]
    fn partial_tables_keep_the_listener_default() {
        let l: ListenersConfig =
            toml::from_str("[admin]\nheader_timeout = \"2s\"\n").expect("parse");
        assert_eq!(l.admin.header_timeout, Duration::from_secs(2));
        assert_eq!(l.admin.max_connections_for(Listener::Admin), 64);
        assert_eq!(l.gateway.max_connections_for(Listener::Gateway), 4096);
    }

    #[test]
    fn mistakes_are_refused_naming_line_and_key() {
        let base = "[devnet]\n[listeners.gateway]\n";
        for (bad, key, hint) in [
            (
                "allowed_origins = [\"https://app.example/\"]",
                "listeners.gateway.allowed_origins",
                "no path",
            ),
            (
                "allowed_hosts = [\"rpc.example:8545\"]",
                "listeners.gateway.allowed_hosts",
                "without scheme, port",
            ),
            (
                "max_connections = 0",
                "listeners.gateway.max_connections",
                "4096",
            ),
            (
                "header_timeout = \"0s\"",
                "listeners.gateway.header_timeout",
                "longer than zero",
            ),
            (
                "http2_stream_window = 1024",
                "listeners.gateway.http2_stream_window",
                "65535",
            ),
        ] {
            let text = format!("{base}{bad}\n");
            let err = crate::Config::from_toml(&text, "keel.toml", &[])
                .expect_err(bad)
                .to_string();
            assert!(err.starts_with("keel.toml:3:"), "{err}");
            assert!(err.contains(key) && err.contains(hint), "{err}");
        }
        for public in ["content_gateway", "status_page"] {
            let err = crate::Config::from_toml(
                &format!("[devnet]\n[listeners.{public}]\nallowed_origins = [\"*\"]\n"),
                "keel.toml",
                &[],
            )
            .expect_err("public listener origins")
            .to_string();
            assert!(
                err.contains(&format!("listeners.{public}.allowed_origins"))
                    && err.contains("public, read-only pages"),
                "{err}"
            );
        }
        let ok = crate::Config::from_toml(
            "[devnet]\n[listeners.gateway]\nallowed_origins = [\"*\", \"http://localhost:3000\"]\nallowed_hosts = [\"*.example.com\"]\n",
            "keel.toml",
            &[],
        )
        .expect("valid");
        assert_eq!(ok.listeners.gateway.allowed_origins.len(), 2);
    }
}
