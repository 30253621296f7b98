//! The serving layer of every keel HTTP listener: the gateway's workers, the admin listener,
//! and the content store's gateway and Kubo RPC API.
//!
//! A [`Server`] serves an axum `Router` on a `TcpListener` with the limits of its
//! `[listeners.<name>]` table (`keel_config::ListenerConfig`):
//!
//! - **Header timeout**: a connection must deliver a complete request head within
//!   `header_timeout` of opening, and for HTTP/1 of the first byte of each next request; a
//!   slowloris client is closed then. On HTTP/2 the first request must arrive within it;
//!   pings and window updates are not requests.
//! - **Idle timeout**: a connection with no request in flight for `idle_timeout` is closed
//!   (HTTP/1 keep-alive and HTTP/2 alike; an HTTP/2 stream whose headers never complete is no
//!   request).
//! - **Connection cap**: at `max_connections` open connections the accept loop stops until one
//!   closes; new connections wait in the kernel's listen backlog. Every socket of a listener
//!   (the gateway's `SO_REUSEPORT` workers) shares one cap.
//! - **HTTP/2 limits**: concurrent streams, header list size, flow-control windows and
//!   keep-alive pings, so one connection holds at most `streams × body limit` of request bodies.
//! - **Browser checks** ([`Surface`]): the `Host` a request names (against DNS rebinding) and
//!   the web page that sent it (`Origin`, `Sec-Fetch-Site`, `Referer`), with CORS answered only
//!   to allowed pages; see `browser` for the rules. A page admitted only by `*` is marked with
//!   [`AnyOrigin`] for the handlers.
//! - **Graceful drain**: when the shutdown future resolves, the listener stops accepting, idle
//!   connections close and in-flight requests finish; the caller bounds that with its grace
//!   period by dropping the future.
//! - `TCP_NODELAY` on every connection.
//!
//! What it costs per request: a few header lookups and string comparisons, one uncontended
//! atomic increment and decrement, and no allocation beyond what axum itself makes. Upgrades
//! (WebSocket) are not served yet: an upgraded connection would leave the connection count.
//!
//! [`ListenerMetrics`] counts open, accepted and capped connections, closes by timeout and
//! refusals by reason.

mod browser;
mod conn;
mod metrics;
mod server;

pub use crate::{
    browser::{AnyOrigin, Cors, Surface},
    metrics::{ListenerLabel, ListenerMetrics, ReasonLabel},
    server::Server,
};
