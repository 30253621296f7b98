//! Browser checks: which names a listener answers to (against DNS rebinding) and which web
//! pages may call it (against cross-site requests), with CORS answered only for those pages.
//!
//! A web page can make the operator's browser send requests to any address, loopback included:
//! it cannot read the answers (CORS) but the request runs, and a page whose name re-resolves to
//! 127.0.0.1 (DNS rebinding) is even same-origin with the listener and reads everything. So:
//!
//! 1. **Host.** On a listener bound to loopback, the request's `Host` must be an IP address,
//!    `localhost`, `*.localhost` (none of which a rebinding page can produce: the browser sends
//!    the name in the page's URL) or a name listed in `allowed_hosts`. Beyond loopback any name
//!    is accepted unless `allowed_hosts` is set.
//! 2. **Origin** (API listeners). A request carrying `Origin` was sent by a web page; it is
//!    served only when the origin is listed in `allowed_origins` (or the list holds `*`).
//!    A preflight (`OPTIONS` with `Access-Control-Request-Method`) from such an origin is
//!    answered here; CORS headers are added to the answers to allowed pages only.
//! 3. **Browsers without `Origin`** (older browsers, `<form>` posts through some redirects):
//!    a request that can change state (not `GET`/`HEAD`) is refused when `Sec-Fetch-Site` says
//!    `cross-site` or `same-site`, when its `Referer` is a page not allowed, or, with neither,
//!    when its `User-Agent` is a browser's (`Mozilla/…`), as Kubo does. Clients that are not
//!    browsers (curl, cast, SDKs) send none of these and are unaffected.
//!
//! The checks read a few headers and compare strings: no allocation for requests that pass.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::body::Body;
use http::{
    HeaderMap, HeaderValue, Method, Response, StatusCode, Uri,
    header::{self, HOST, ORIGIN, REFERER, USER_AGENT},
};
use keel_config::ListenerConfig;

/// How a listener faces browsers.
#[derive(Debug, Clone, Copy)]
pub enum Surface {
    /// An API: browser requests must come from an allowed origin (Host checked too).
    Api(Cors),
    /// Public content any page may read (the content gateway): only the Host is checked; the
    /// handlers answer CORS themselves.
    Public,
}

/// What an API listener tells allowed pages in CORS answers.
#[derive(Debug, Clone, Copy)]
pub struct Cors {
    /// `Access-Control-Allow-Methods`, e.g. `"POST"`.
    pub methods: &'static str,
    /// `Access-Control-Expose-Headers`: response headers a page may read (empty: none).
    pub expose_headers: &'static str,
}

/// Marks a request sent by a web page that only `*` in `allowed_origins` admitted. Handlers
/// find it in the request's extensions and refuse what a page must never do unless its
/// origin is listed by name (node control, signing with the node's accounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnyOrigin;

/// Why a request was refused (metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `Host` is not a name of the listener.
    Host,
    /// `Origin` (or `Referer`) is not an allowed page.
    Origin,
    /// A browser request without `Origin` that may change state.
    CrossSite,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Origin => "origin",
            Self::CrossSite => "cross_site",
        }
    }
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Serve it; with `Some`, a page allowed to read the answer sent it.
    Pass(Option<Allowed>),
    /// A preflight, answered here.
    Preflight(Response<Body>),
    /// Refused, with this answer.
    Refuse(Refusal, Response<Body>),
}

/// An allowed page: what its answers carry.
#[derive(Debug)]
pub(crate) struct Allowed {
    /// `Access-Control-Allow-Origin`: the origin itself, or `*` for a wildcard admission.
    allow_origin: HeaderValue,
    /// Admitted only by `*`.
    pub(crate) wildcard: bool,
    /// `Access-Control-Expose-Headers` (empty: none).
    expose_headers: &'static str,
}

impl Allowed {
    /// Adds the CORS headers the page needs to read `resp`.
    pub(crate) fn decorate<B>(self, resp: &mut Response<B>) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin);
        if !self.wildcard {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        if !self.expose_headers.is_empty() {
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(self.expose_headers),
            );
        }
    }
}

#[derive(Debug)]
enum Hosts {
    Any,
    /// IP addresses, localhost names and these.
    Only(Vec<HostPattern>),
}

#[derive(Debug)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Subdomains(String),
}

impl HostPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(n) => n.eq_ignore_ascii_case(name),
            Self::Subdomains(suffix) => {
                name.len() > suffix.len() && ends_with_ignore_case(name, suffix)
            }
        }
    }
}

#[derive(Debug)]
struct Origins {
    any: bool,
    listed: Vec<String>,
}

impl Origins {
    /// Whether the page at `origin` may call.
    fn admit(&self, origin: &str) -> Option<bool> {
        if self.listed.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            Some(false)
        } else if self.any {
            Some(true)
        } else {
            None
        }
    }
}

/// The browser checks of one listener.
#[derive(Debug)]
pub(crate) struct Guard {
    listener: &'static str,
    hosts: Hosts,
    /// `None` on a public surface: no origin checks.
    origins: Option<Origins>,
    cors: Option<Cors>,
}

impl Guard {
    /// The checks of `listener` (its `[listeners.<name>]` name), bound to `bound`.
    pub(crate) fn new(
        listener: &'static str,
        cfg: &ListenerConfig,
        bound: SocketAddr,
        surface: Surface,
    ) -> Self {
        let hosts = match &cfg.allowed_hosts {
            Some(list) if list.iter().any(|h| h == "*") => Hosts::Any,
            Some(list) => Hosts::Only(
                list.iter()
                    .map(|h| match h.strip_prefix('*') {
                        Some(suffix) => HostPattern::Subdomains(suffix.to_ascii_lowercase()),
                        None => HostPattern::Exact(h.to_ascii_lowercase()),
                    })
                    .collect(),
            ),
            None if bound.ip().is_loopback() => Hosts::Only(Vec::new()),
            None => Hosts::Any,
        };
        let (origins, cors) = match surface {
            Surface::Public => (None, None),
            Surface::Api(cors) => (
                Some(Origins {
                    any: cfg.allowed_origins.iter().any(|o| o == "*"),
                    listed: cfg
                        .allowed_origins
                        .iter()
                        .filter(|o| o.as_str() != "*")
                        .cloned()
                        .collect(),
                }),
                Some(cors),
            ),
        };
        Self {
            listener,
            hosts,
            origins,
            cors,
        }
    }

    /// Checks one request.
    pub(crate) fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Verdict {
        if let Hosts::Only(patterns) = &self.hosts {
            let host = match uri.authority() {
                Some(a) => Some(Ok(a.as_str())),
                None => headers.get(HOST).map(HeaderValue::to_str),
            };
            match host {
                // No name at all (HTTP/1.0): not a browser.
                None => {}
                Some(Ok(h)) if host_allowed(h, patterns) => {}
                Some(h) => {
                    let shown = h.unwrap_or("(not text)");
                    return Verdict::Refuse(
                        Refusal::Host,
                        self.refusal(format!(
                            "keel: the {l} listener is not known by the name `{h}`; refused, as a \
                             DNS-rebinding page would use such a name. Reach it by IP address or \
                             localhost, or list the name in [listeners.{l}] allowed_hosts.\n",
                            l = self.listener,
                            h = shorten(shown),
                        )),
                    );
                }
            }
        }
        let Some(origins) = &self.origins else {
            return Verdict::Pass(None);
        };
        if let Some(origin) = headers.get(ORIGIN) {
            let admitted = origin.to_str().ok().and_then(|o| origins.admit(o));
            let Some(wildcard) = admitted else {
                return Verdict::Refuse(
                    Refusal::Origin,
                    self.refusal(format!(
                        "keel: a web page at {o} may not call the {l} listener; cross-origin \
                         request refused. List the origin in [listeners.{l}] allowed_origins \
                         to allow it (docs/security.md).\n",
                        o = shorten(origin.to_str().unwrap_or("(not text)")),
                        l = self.listener,
                    )),
                );
            };
            let allowed = Allowed {
                allow_origin: if wildcard {
                    HeaderValue::from_static("*")
                } else {
                    origin.clone()
                },
                wildcard,
                expose_headers: self.cors.map_or("", |c| c.expose_headers),
            };
            if method == Method::OPTIONS
                && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
            {
                return Verdict::Preflight(self.preflight(&allowed, headers));
            }
            return Verdict::Pass(Some(allowed));
        }
        if method == Method::GET || method == Method::HEAD {
            // Reads: a page cannot see the answer without CORS, and they change nothing.
            return Verdict::Pass(None);
        }
        let cross_site = match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
            Some(b"cross-site" | b"same-site") => true,
            Some(_) => false,
            None => match headers.get(REFERER) {
                Some(r) => r
                    .to_str()
                    .ok()
                    .and_then(referer_origin)
                    .and_then(|o| origins.admit(o))
                    .is_none(),
                None => headers
                    .get(USER_AGENT)
                    .is_some_and(|ua| ua.as_bytes().starts_with(b"Mozilla/")),
            },
        };
        if cross_site {
            return Verdict::Refuse(
                Refusal::CrossSite,
                self.refusal(format!(
                    "keel: a browser request from another site to the {l} listener is refused: \
                     it has no allowed Origin. Pages must be listed in [listeners.{l}] \
                     allowed_origins (docs/security.md).\n",
                    l = self.listener,
                )),
            );
        }
        Verdict::Pass(None)
    }

    fn preflight(&self, allowed: &Allowed, req: &HeaderMap) -> Response<Body> {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            allowed.allow_origin.clone(),
        );
        if let Some(cors) = &self.cors {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(cors.methods),
            );
        }
        if let Some(asked) = req.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        // Chrome's Private Network Access: a public page calling a loopback or private address
        // asks first; an allowed page may.
        if req
            .get("access-control-request-private-network")
            .is_some_and(|v| v.as_bytes() == b"true")
        {
            h.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        resp
    }

    fn refusal(&self, message: String) -> Response<Body> {
        let mut resp = Response::new(Body::from(message));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

/// At most 100 characters of a client-sent value, for messages.
fn shorten(s: &str) -> &str {
    match s.char_indices().nth(100) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Whether `authority` (`name[:port]`, `[v6][:port]`, possibly `user@…`) is acceptable.
fn host_allowed(authority: &str, patterns: &[HostPattern]) -> bool {
    let a = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = a.strip_prefix('[') {
        // An IPv6 literal, and nothing else may be bracketed.
        return rest.split_once(']').is_some_and(|(ip, port)| {
            ip.parse::<Ipv6Addr>().is_ok()
                && (port.is_empty()
                    || port
                        .strip_prefix(':')
                        .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
        });
    }
    let name = match a.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return false,
        None => a,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return false;
    }
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || ends_with_ignore_case(name, ".localhost")
        || patterns.iter().any(|p| p.matches(name))
}

/// `scheme://authority` of a `Referer` URL.
fn referer_origin(r: &str) -> Option<&str> {
    let start = r.find("://")? + 3;
    let end = r[start..]
        .find(['/', '?', '#'])
        .map_or(r.len(), |e| start + e);
    Some(&r[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: Surface = Surface::Api(Cors {
        methods: "POST",
        expose_headers: "x-keel-upstream",
    });

    fn guard(origins: &[&str], hosts: Option<&[&str]>, bound: &str) -> Guard {
        let cfg = ListenerConfig {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_hosts: hosts.map(|h| h.iter().map(|s| (*s).to_owned()).collect()),
            ..ListenerConfig::default()
        };
        Guard::new("gateway", &cfg, bound.parse().expect("addr"), API)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn post(g: &Guard, pairs: &[(&'static str, &'static str)]) -> Verdict {
        g.check(&Method::POST, &Uri::from_static("/"), &headers(pairs))
    }

    fn refused(v: &Verdict) -> Option<Refusal> {
        match v {
            Verdict::Refuse(r, _) => Some(*r),
            _ => None,
        }
    }

    #[test]
    fn loopback_listeners_answer_to_addresses_and_localhost_only() {
        let g = guard(&[], None, "127.0.0.1:8545");
        for ok in [
            "127.0.0.1:8545",
            "localhost:8545",
            "LOCALHOST",
            "app.localhost:8545",
            "[::1]:8545",
            "10.1.2.3",
            "localhost.:8545",
        ] {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_static(ok));
            assert!(
                matches!(
                    g.check(&Method::POST, &Uri::from_static("/"), &h),
                    Verdict::Pass(None)
                ),
                "{ok}"
            );
        }
        for bad in [
            "attacker.example:8545",
            "attacker.example",
            "localhost.attacker.example",
            "127.0.0.1.nip.io:8545",
            "[evil]:80",
            ":8545",
        ] {
            let mut h = HeaderMap::new();
            h.insert(HOST, HeaderValue::from_static(bad));
            assert_eq!(
                refused(&g.check(&Method::POST, &Uri::from_static("/"), &h)),
                Some(Refusal::Host),
                "{bad}"
            );
        }
        // Beyond loopback: any name, unless names are listed.
        let g = guard(&[], None, "0.0.0.0:8545");
        assert!(matches!(
            post(&g, &[("host", "rpc.example.com")]),
            Verdict::Pass(None)
        ));
        let g = guard(
            &[],
            Some(&["rpc.example.com", "*.corp.example"]),
            "0.0.0.0:8545",
        );
        assert!(matches!(
            post(&g, &[("host", "RPC.example.com:443")]),
            Verdict::Pass(None)
        ));
        assert!(matches!(
            post(&g, &[("host", "a.corp.example")]),
            Verdict::Pass(None)
        ));
        assert!(matches!(
            post(&g, &[("host", "192.0.2.7:8545")]),
            Verdict::Pass(None)
        ));
        assert_eq!(
            refused(&post(&g, &[("host", "corp.example")])),
            Some(Refusal::Host)
        );
        assert_eq!(
            refused(&post(&g, &[("host", "evil.example")])),
            Some(Refusal::Host)
        );
    }

    #[test]
    fn pages_need_an_allowed_origin() {
        let g = guard(&["http://localhost:3000"], None, "127.0.0.1:8545");
        assert_eq!(
            refused(&post(&g, &[("origin", "https://evil.example")])),
            Some(Refusal::Origin)
        );
        assert_eq!(
            refused(&post(&g, &[("origin", "null")])),
            Some(Refusal::Origin)
        );
        match post(&g, &[("origin", "http://localhost:3000")]) {
            Verdict::Pass(Some(a)) => {
                assert!(!a.wildcard);
                assert_eq!(a.allow_origin, "http://localhost:3000");
            }
            other => panic!("{other:?}"),
        }
        // `*` admits every page, marked as such.
        let g = guard(&["*"], None, "127.0.0.1:8545");
        match post(&g, &[("origin", "https://dapp.example")]) {
            Verdict::Pass(Some(a)) => {
                assert!(a.wildcard);
                assert_eq!(a.allow_origin, "*");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn browsers_without_origin_may_not_change_state() {
        let g = guard(&["https://app.example"], None, "127.0.0.1:8545");
        assert_eq!(
            refused(&post(&g, &[("sec-fetch-site", "cross-site")])),
            Some(Refusal::CrossSite)
        );
        assert_eq!(
            refused(&post(&g, &[("sec-fetch-site", "same-site")])),
            Some(Refusal::CrossSite)
        );
        assert!(matches!(
            post(&g, &[("sec-fetch-site", "same-origin")]),
            Verdict::Pass(None)
        ));
        assert_eq!(
            refused(&post(&g, &[("referer", "https://evil.example/page?x")])),
            Some(Refusal::CrossSite)
        );
        assert!(matches!(
            post(&g, &[("referer", "https://app.example/page")]),
            Verdict::Pass(None)
        ));
        assert_eq!(
            refused(&post(
                &g,
                &[("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")]
            )),
            Some(Refusal::CrossSite)
        );
        // Not browsers.
        assert!(matches!(
            post(&g, &[("user-agent", "curl/8.5.0")]),
            Verdict::Pass(None)
        ));
        assert!(matches!(post(&g, &[]), Verdict::Pass(None)));
        // Reads without Origin pass (an <img>, a link): nothing changes, nothing is readable.
        let h = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(matches!(
            g.check(&Method::GET, &Uri::from_static("/"), &h),
            Verdict::Pass(None)
        ));
    }

    #[test]
    fn preflights_are_answered_for_allowed_pages_only() {
        let g = guard(&["http://localhost:3000"], None, "127.0.0.1:8545");
        let h = headers(&[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-keel-verify",
            ),
            ("access-control-request-private-network", "true"),
        ]);
        let Verdict::Preflight(resp) = g.check(&Method::OPTIONS, &Uri::from_static("/"), &h) else {
            panic!("not answered as a preflight");
        };
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let rh = resp.headers();
        assert_eq!(rh["access-control-allow-origin"], "http://localhost:3000");
        assert_eq!(rh["access-control-allow-methods"], "POST");
        assert_eq!(
            rh["access-control-allow-headers"],
            "content-type,x-keel-verify"
        );
        assert_eq!(rh["access-control-allow-private-network"], "true");
        let h = headers(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ]);
        assert_eq!(
            refused(&g.check(&Method::OPTIONS, &Uri::from_static("/"), &h)),
            Some(Refusal::Origin)
        );
    }

    #[test]
    fn public_surfaces_check_the_host_only() {
        let cfg = ListenerConfig::default();
        let g = Guard::new(
            "content_gateway",
            &cfg,
            "127.0.0.1:8080".parse().expect("addr"),
            Surface::Public,
        );
        assert!(matches!(
            g.check(
                &Method::GET,
                &Uri::from_static("/"),
                &headers(&[
                    ("origin", "https://any.example"),
                    ("host", "localhost:8080")
                ])
            ),
            Verdict::Pass(None)
        ));
        assert_eq!(
            refused(&g.check(
                &Method::GET,
                &Uri::from_static("/"),
                &headers(&[("host", "attacker.example")])
            )),
            Some(Refusal::Host)
        );
    }

    #[test]
    fn referer_origins() {
        assert_eq!(
            referer_origin("https://a.example/x?y"),
            Some("https://a.example")
        );
        assert_eq!(
            referer_origin("http://localhost:3000"),
            Some("http://localhost:3000")
        );
        assert_eq!(referer_origin("nonsense"), None);
    }
}
