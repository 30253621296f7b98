//! [`Server`]: one listener's accept loop, connections and per-request browser checks.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo, routing::future::RouteFuture};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use keel_config::{Listener, ListenerConfig};
use pin_project_lite::pin_project;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
    time::Instant,
};
use tower::Service as _;

use crate::{
    browser::{Allowed, AnyOrigin, Guard, Refusal, Surface, Verdict},
    conn::{ConnState, Expired, InFlight, Tracked, TrackedBody},
    metrics::{ListenerMetrics, Series},
};

/// One listener: its limits, browser checks and connection slots. Share it (in an `Arc`)
/// between every socket of the listener (the gateway's workers): the connection cap is the
/// listener's, not each socket's.
#[derive(Debug)]
pub struct Server {
    name: &'static str,
    max_connections: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    builder: auto::Builder<TokioExecutor>,
    slots: Arc<Semaphore>,
    guard: Guard,
    connect_info: bool,
    series: Series,
    /// At the cap, and the warning was logged.
    full: AtomicBool,
}

impl Server {
    /// The server of `listener`, configured by `cfg` and bound to `bound` (whether it is on
    /// loopback decides the default `Host` check).
    pub fn new(
        listener: Listener,
        cfg: &ListenerConfig,
        bound: SocketAddr,
        surface: Surface,
        metrics: &ListenerMetrics,
    ) -> Self {
        let name = listener.name();
        let max_connections = cfg.max_connections_for(listener);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // The watchdog in `connection` times request heads and idle spells for both protocols;
        // hyper's own header timer would also cut HTTP/1 keep-alive at the header timeout.
        builder.http1().header_read_timeout(None).keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(cfg.http2_max_concurrent_streams)
            .max_header_list_size(cfg.http2_max_header_list_size)
            .initial_stream_window_size(cfg.http2_stream_window)
            .initial_connection_window_size(cfg.http2_connection_window)
            .keep_alive_interval(cfg.http2_keep_alive_interval)
            .keep_alive_timeout(cfg.http2_keep_alive_timeout);
        Self {
            name,
            max_connections,
            header_timeout: cfg.header_timeout,
            idle_timeout: cfg.idle_timeout,
            builder,
            slots: Arc::new(Semaphore::new(max_connections)),
            guard: Guard::new(name, cfg, bound, surface),
            connect_info: false,
            series: Series::new(metrics, name),
            full: AtomicBool::new(false),
        }
    }

    /// The listener's name (`[listeners.<name>]`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Gives handlers the client's address as axum's `ConnectInfo<SocketAddr>` (one extension
    /// per request).
    pub fn with_connect_info(mut self) -> Self {
        self.connect_info = true;
        self
    }

    /// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets every
    /// connection finish the requests in flight (idle ones close at once) and returns when all
    /// are closed. Dropping the future drops every connection.
    ///
    /// At `max_connections` the loop stops accepting until a connection closes: new
    /// connections wait in the kernel's listen backlog (each socket may hold one accepted
    /// connection waiting for a slot).
    pub async fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()>,
    ) {
        let (stop_tx, stop_rx) = watch::channel(());
        let mut connections = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = connections.join_next() => {
                    if let Err(e) = done
                        && e.is_panic()
                    {
                        tracing::error!(listener = self.name, error = %e, "a connection task panicked");
                    }
                    continue;
                }
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        if !is_connection_error(&e) {
                            // Out of file descriptors and the like: wait rather than spin.
                            tracing::error!(listener = self.name, error = %e, "accept failed; retrying in 1s");
                            tokio::select! {
                                () = &mut shutdown => break,
                                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                        }
                        continue;
                    }
                },
            };
            let slot = match self.slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    if self.full.load(Ordering::Relaxed) {
                        self.full.store(false, Ordering::Relaxed);
                    }
                    slot
                }
                Err(_) => {
                    self.series.saturated.inc();
                    if !self.full.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            listener = self.name,
                            max_connections = self.max_connections,
                            "listener at max_connections: new connections wait in the kernel backlog until one closes ([listeners.{}] max_connections)",
                            self.name
                        );
                    }
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        slot = self.slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => break,
                        },
                    }
                }
            };
            let conn = self
                .clone()
                .connection(stream, peer, router.clone(), stop_rx.clone(), slot);
            connections.spawn(conn);
        }
        drop(listener);
        let _ = stop_tx.send(());
        while let Some(done) = connections.join_next().await {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!(listener = self.name, error = %e, "a connection task panicked");
            }
        }
    }

    /// Serves one connection until it ends, its head or idle time runs out, or shutdown.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        router: Router,
        mut stop: watch::Receiver<()>,
        _slot: OwnedSemaphorePermit,
    ) {
        // Answers are small and latency-bound: never let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        self.series.accepted.inc();
        self.series.connections.inc();
        let _open = Open(&self.series.connections);
        let state = ConnState::new();
        let service = ConnService {
            server: self.clone(),
            router,
            state: state.clone(),
            peer,
        };
        let io = TokioIo::new(Tracked::new(stream, state.clone()));
        let mut conn = pin!(self.builder.serve_connection(io, service));
        let first_look = self.header_timeout.min(self.idle_timeout);
        let mut timer = pin!(tokio::time::sleep(first_look));
        let mut closing = false;
        loop {
            tokio::select! {
                // The connection first: bytes already received are served before it is judged.
                biased;
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(listener = self.name, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.changed(), if !closing => {
                    // Shutdown: finish what is in flight, take nothing new.
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = timer.as_mut() => {
                    match state.check(Instant::now(), self.header_timeout, self.idle_timeout) {
                        Ok(next) => timer.as_mut().reset(next),
                        Err(why @ Expired::Header) => {
                            self.series.closed_header.inc();
                            tracing::debug!(listener = self.name, reason = why.label(), "connection closed");
                            return;
                        }
                        Err(why @ Expired::Idle) => {
                            if closing {
                                // A graceful close that did not finish in a header timeout.
                                return;
                            }
                            self.series.closed_idle.inc();
                            tracing::trace!(listener = self.name, reason = why.label(), "closing connection");
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                            timer.as_mut().reset(Instant::now() + self.header_timeout);
                        }
                    }
                }
            }
        }
    }
}

/// Counts an open connection; its drop uncounts it.
struct Open<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The service of one connection: browser checks, then the router.
struct ConnService {
    server: Arc<Server>,
    router: Router,
    state: Arc<ConnState>,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = ConnFuture;

    fn call(&self, mut req: Request<Incoming>) -> ConnFuture {
        let in_flight = self.state.request();
        let s = &self.server;
        match s.guard.check(req.method(), req.uri(), req.headers()) {
            Verdict::Pass(allowed) => {
                if s.connect_info {
                    req.extensions_mut().insert(ConnectInfo(self.peer));
                }
                if allowed.as_ref().is_some_and(|a| a.wildcard) {
                    req.extensions_mut().insert(AnyOrigin);
                }
                ConnFuture::Route {
                    future: self.router.clone().call(req),
                    in_flight: Some(in_flight),
                    allowed,
                }
            }
            Verdict::Preflight(resp) => ConnFuture::Ready {
                resp: Some(resp.map(|b| TrackedBody::new(b, Some(in_flight)))),
            },
            Verdict::Refuse(why, resp) => {
                match why {
                    Refusal::Host => s.series.refused_host.inc(),
                    Refusal::Origin => s.series.refused_origin.inc(),
                    Refusal::CrossSite => s.series.refused_cross_site.inc(),
                };
                tracing::debug!(listener = s.name, reason = why.label(), path = %req.uri().path(), "browser request refused");
                ConnFuture::Ready {
                    resp: Some(resp.map(|b| TrackedBody::new(b, Some(in_flight)))),
                }
            }
        }
    }
}

pin_project! {
    /// The answer of [`ConnService`]: the router's, with CORS for allowed pages, or one made
    /// by the browser checks.
    #[project = ConnFutureProj]
    enum ConnFuture {
        Route {
            #[pin]
            future: RouteFuture<Infallible>,
            in_flight: Option<InFlight>,
            allowed: Option<Allowed>,
        },
        Ready {
            resp: Option<Response<TrackedBody>>,
        },
    }
}

impl Future for ConnFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConnFutureProj::Route {
                future,
                in_flight,
                allowed,
            } => {
                let Ok(mut resp) = ready!(future.poll(cx));
                if let Some(a) = allowed.take() {
                    a.decorate(&mut resp);
                }
                let in_flight = in_flight.take();
                Poll::Ready(Ok(resp.map(|b: Body| TrackedBody::new(b, in_flight))))
            }
            ConnFutureProj::Ready { resp } => Poll::Ready(Ok(resp.take().unwrap_or_default())),
        }
    }
}
